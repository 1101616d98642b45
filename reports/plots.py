"""The report's figures, drawn with seaborn from tidy frames and saved as PNG and SVG.

(a) ``quality_vs_compression``: FID and IS against compression ratio, a line per objective, bands over seeds.
(b) ``pareto``: FID against CPU latency and against parameters, one point per run, the Pareto front drawn.
(c) ``training_curves``: generator, discriminator and distillation losses against step, per width.
(d) ``samples``: every run's fixed-(z, y) sample grid at 1.5x its pixels, a row per width (teacher first), a
    column per objective (scratch first).
Each function returns the figure, or None when the results hold nothing to draw.
"""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, and the same output on every machine

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullLocator  # noqa: E402

from bench.engine.layout import SCRATCH, STATUS_DONE  # noqa: E402
from reports.load import Results, losses, objective_label, samples  # noqa: E402
from reports.metrics import BY_COLUMN, LOWER  # noqa: E402

RATIO_LABEL = "compression by parameters (teacher / student params, ×, log scale)"
REAL_REFERENCE = "real-test"
SAVE_DPI = 130  # the PNGs' dots per inch


@contextmanager
def _style():
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        yield


def save(fig: Figure, directory: Path, name: str) -> Path:
    """Write ``{name}.png`` and ``{name}.svg`` under ``directory``, close the figure, return the PNG path."""
    directory.mkdir(parents=True, exist_ok=True)
    png = directory / f"{name}.png"
    with matplotlib.rc_context({"svg.hashsalt": name}):  # stable SVG ids: reruns give identical files
        fig.savefig(png, dpi=SAVE_DPI, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(directory / f"{name}.svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return png


def _objectives(results: Results, runs: pd.DataFrame | None = None) -> list[str]:
    """Objectives in legend order: scratch first, then the distillation objectives in the grid's order."""
    runs = results.runs if runs is None else runs
    grid_order = [str(kd) for kd in results.grid.get("kd", []) if isinstance(kd, str)]
    rank = {kd: i for i, kd in enumerate(grid_order)}
    kds = sorted(runs["kd"].unique(), key=lambda kd: (kd != SCRATCH, rank.get(kd, len(rank)), kd))
    return [objective_label(kd) for kd in kds]


def _palette(order: list[str]) -> dict[str, tuple]:
    colours = sns.color_palette("colorblind", n_colors=max(len(order), 3))
    return dict(zip(order, colours, strict=False))


def _better(column: str) -> str:
    metric = BY_COLUMN.get(column)
    if metric is None or metric.better is None:
        return ""
    return " (lower is better)" if metric.better == LOWER else " (higher is better)"


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == STATUS_DONE]


def _wide_range(values: pd.Series) -> bool:
    """Whether positive values span more than a decade and a half: then a log axis reads better."""
    values = values[np.isfinite(values)]
    return bool(len(values) and (values > 0).all() and values.max() / values.min() > 30)


def _reference_line(ax, y: float, label: str, colour: str, style: str) -> None:
    ax.axhline(y, color=colour, linestyle=style, linewidth=1.1, zorder=1)
    ax.annotate(
        label,
        xy=(0.99, y),
        xycoords=("axes fraction", "data"),
        ha="right",
        va="bottom",
        fontsize=8,
        color=colour,
        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
    )


def _plain_log_ticks(ax) -> None:
    """Log-axis tick labels as plain numbers (0.1, 1, 10) rather than powers of ten."""
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    low, high = ax.get_xlim()
    if 0 < low and high / low < 10:  # within a decade matplotlib labels minor ticks, as powers of ten
        ax.xaxis.set_minor_formatter(plain)


def _width_axis(ax, tidy: pd.DataFrame, x: str) -> None:
    """A top axis naming the student width at each compression ratio."""
    at = tidy.groupby("width")[x].median().dropna()
    top = ax.secondary_xaxis("top")
    top.set_xticks(at.to_numpy(), labels=[str(w) for w in at.index])
    top.xaxis.set_minor_locator(NullLocator())
    top.set_xlabel("generator width (first-layer channels)", fontsize=8)
    top.tick_params(labelsize=8)


def _legend_right(grid: sns.FacetGrid, title: str) -> None:
    """The figure legend outside the panels, right of them, where no annotation can run under it."""
    grid.tight_layout()  # labels and titles set after relplot's own layout must not overlap
    sns.move_legend(grid, "center left", bbox_to_anchor=(1.0, 0.5), title=title, frameon=False)
    grid.figure.subplots_adjust(right=0.98)  # reclaim the margin FacetGrid kept for its own legend


def quality_vs_compression(results: Results) -> Figure | None:
    """FID and IS (LeNet, and Inception when measured) against compression by parameters, hue = objective."""
    runs = _finished(results.runs)
    columns = [c for c in ("fid_lenet", "is_lenet", "fid_inception", "is_inception") if c in runs]
    columns = [c for c in columns if runs[c].notna().any()]
    if not columns or "ratio_params" not in runs or runs["ratio_params"].isna().all():
        return None
    labels = {c: BY_COLUMN[c].label for c in columns}
    tidy = runs.melt(
        id_vars=["run_id", "dataset", "width", "objective", "seed", "role", "ratio_params"],
        value_vars=columns,
        var_name="column",
        value_name="value",
    ).dropna(subset=["value", "ratio_params"])
    tidy["metric"] = tidy["column"].map(labels)
    order = _objectives(results, runs)
    with _style():
        grid = sns.relplot(
            data=tidy,
            kind="line",
            x="ratio_params",
            y="value",
            hue="objective",
            style="objective",
            hue_order=order,
            style_order=order,
            palette=_palette(order),
            markers=True,
            dashes=False,
            errorbar=("ci", 95),
            col="metric",
            col_order=[labels[c] for c in columns],
            col_wrap=2 if len(columns) > 2 else None,
            height=3.6,
            aspect=1.3,
            facet_kws={"sharey": False},
            seed=0,  # the bootstrap's: the same results always draw the same bands
        )
        grid.set(xscale="log")
        grid.set_titles("")  # the y label names the metric; the top axis needs the room
        references = results.references
        for column in columns:
            ax = grid.axes_dict[labels[column]]
            ax.set_xlabel(RATIO_LABEL)
            ax.set_ylabel(f"{labels[column]}{_better(column)}")
            teacher_rows = tidy[(tidy["column"] == column) & (tidy["role"] == "teacher")]
            teacher = teacher_rows["value"]
            if len(teacher):
                label = f"teacher (width {int(teacher_rows['width'].iloc[0])}): {teacher.mean():.3g}"
                _reference_line(ax, teacher.mean(), label, "0.25", "--")
            if not references.empty and column in references and "reference" in references:
                real = references.loc[references["reference"] == REAL_REFERENCE, column].dropna()
                if len(real):
                    _reference_line(ax, real.mean(), f"real test data: {real.mean():.3g}", "tab:green", ":")
            shown = pd.concat([tidy.loc[tidy["column"] == column, "value"], pd.Series([ax.get_ylim()[0]])])
            if _wide_range(shown.iloc[:-1]):
                ax.set_yscale("log")
            _width_axis(ax, tidy[tidy["column"] == column], "ratio_params")
            _plain_log_ticks(ax)
        _legend_right(grid, "objective")
        grid.figure.suptitle("Sample quality against compression (bands: 95% bootstrap CI over seeds)", y=1.06)
    return grid.figure


def pareto_front(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The rows of ``frame`` no other row beats on both ``x`` and ``y`` (lower is better), by ``x``."""
    ordered = frame.dropna(subset=[x, y]).sort_values([x, y], kind="stable")
    best = ordered[y].cummin()
    keep = ordered[y] < best.shift(fill_value=math.inf)
    return ordered[keep.to_numpy()]


DEVICE_NAMES = {"cpu": "CPU", "cuda": "GPU"}


def fastest_backends(latency: pd.DataFrame) -> dict[str, str]:
    """Per device, the backend with the lowest median batch-1 latency among those that timed every model the
    device timed (a backend that failed on some model would win by leaving out the hard ones)."""
    best = {}
    for device, rows in latency.groupby("device"):
        single = rows[rows["batch"] == rows["batch"].min()]
        counts = single.groupby("backend")["run_id"].nunique()
        complete = counts[counts == counts.max()].index
        medians = single[single["backend"].isin(complete)].groupby("backend")["p50_ms"].median()
        best[device] = str(medians.idxmin())
    return best


def _fastest_latency(results: Results, runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """``runs`` with a ``latency_{device}_fastest`` column per device (batch 1, the fastest backend's p50) and the
    axis labels that say which backend; without latency.csv, the eager columns of results.csv."""
    if results.latency.empty:
        eager = {f"latency_ms_{dev}": f"{name} latency, batch 1 (ms, log scale)" for dev, name in DEVICE_NAMES.items()}
        return runs, eager
    labels = {}
    for device, backend in fastest_backends(results.latency).items():
        rows = results.latency[(results.latency["device"] == device) & (results.latency["backend"] == backend)]
        single = rows[rows["batch"] == rows["batch"].min()].set_index("run_id")["p50_ms"]
        column = f"latency_{device}_fastest"
        runs = runs.assign(**{column: runs["run_id"].map(single)})
        name = DEVICE_NAMES.get(device, device)
        labels[column] = f"{name} latency, batch 1, {backend} (fastest backend; ms, log scale)"
    return runs, labels


def pareto(results: Results) -> Figure | None:
    """FID against CPU latency (and GPU latency; the fastest backend's, batch 1) and against parameters: one
    point per model (width x objective, the median over seeds; each run faint behind it), the Pareto front of
    the models outlined and every model on it labelled with its width."""
    runs, latency_labels = _fastest_latency(results, _finished(results.runs))
    quality = "fid_lenet" if "fid_lenet" in runs and runs["fid_lenet"].notna().any() else None
    costs = {**latency_labels, "g_params": "generator parameters (log scale)"}
    costs = {c: label for c, label in costs.items() if c in runs and runs[c].notna().any()}
    if quality is None or not costs:
        return None
    tidy = runs.melt(
        id_vars=["run_id", "width", "objective", "seed", quality],
        value_vars=list(costs),
        var_name="cost",
        value_name="x",
    ).dropna(subset=["x", quality])
    tidy["cost"] = tidy["cost"].map(costs)
    models = tidy.groupby(["cost", "width", "objective"], as_index=False)[["x", quality]].median()
    order = _objectives(results, runs)
    palette = _palette(order)
    several_seeds = tidy.groupby(["cost", "width", "objective"]).size().max() > 1
    with _style():
        grid = sns.relplot(
            data=models,
            kind="scatter",
            x="x",
            y=quality,
            hue="objective",
            style="objective",
            hue_order=order,
            style_order=order,
            palette=palette,
            col="cost",
            col_order=list(costs.values()),
            col_wrap=2 if len(costs) > 2 else None,
            s=70,
            alpha=0.9,
            height=3.6,
            aspect=1.2,
            facet_kws={"sharex": False},
            zorder=3,
        )
        grid.set(xscale="log")
        for label, ax in grid.axes_dict.items():
            if several_seeds:  # every run, faint, behind its model's median
                each = tidy[tidy["cost"] == label]
                ax.scatter(each["x"], each[quality], s=14, alpha=0.35, zorder=2,
                           color=[palette[objective] for objective in each["objective"]])  # fmt: skip
            front = pareto_front(models[models["cost"] == label], "x", quality)
            ax.step(front["x"], front[quality], where="post", color="black", linewidth=1.2, zorder=1)
            ax.scatter(front["x"], front[quality], s=190, facecolors="none", edgecolors="black", linewidths=1.2)
            for index, row in enumerate(front.itertuples()):  # every front model, labels alternating sides
                ax.annotate(
                    f"w{row.width}",
                    (row.x, getattr(row, quality)),
                    xytext=(8, 6) if index % 2 == 0 else (-8, -12),
                    ha="left" if index % 2 == 0 else "right",
                    textcoords="offset points",
                    fontsize=8,
                )
            ax.set_xlabel(label)
            if "latency" in label:
                _plain_log_ticks(ax)
            ax.set_ylabel(f"{BY_COLUMN[quality].label}{_better(quality)}")
            ax.set_title(f"FID against {label.split(',')[0].split(' (')[0]}")
        _legend_right(grid, "objective\n(median over seeds" + ("; faint: each run)" if several_seeds else ")"))
        front_handle = Line2D([], [], color="black", marker="o", markerfacecolor="none", markersize=10,
                              label="Pareto front\n(w = width)")  # fmt: skip
        grid.figure.legend(handles=[front_handle], loc="lower left", bbox_to_anchor=(1.0, 0.08), frameon=False,
                           fontsize=8)  # fmt: skip
    return grid.figure


TERMS = {
    "loss_g_gan": "generator, adversarial",
    "loss_d": "discriminator",
    "loss_kd": "distillation term",
}
MAX_POINTS = 200  # per curve: longer logs are averaged over bins of consecutive steps


def _binned(tidy: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Mean loss per run, term and bin of steps, bins shared by all runs so seeds stay aligned."""
    steps = np.sort(tidy["step"].unique())
    if len(steps) <= max_points:
        return tidy
    size = int(math.ceil((steps[-1] + 1) / max_points))
    tidy = tidy.assign(step=(tidy["step"] // size) * size + size // 2)
    keys = [col for col in tidy.columns if col != "loss"]
    return tidy.groupby(keys, as_index=False, sort=False)["loss"].mean()


def training_curves(results: Results) -> Figure | None:
    """Generator, discriminator and distillation losses against step; row = width, hue = objective."""
    frame = losses(results)
    if frame.empty:
        return None
    if "loss_g_gan" not in frame and "loss_g" in frame:
        frame = frame.rename(columns={"loss_g": "loss_g_gan"})
    terms = [t for t in TERMS if t in frame]
    tidy = frame.melt(
        id_vars=["run_id", "width", "objective", "kd", "seed", "status", "step"],
        value_vars=terms,
        var_name="term",
        value_name="loss",
    )
    tidy = tidy[~((tidy["term"] == "loss_kd") & (tidy["kd"] == SCRATCH))]  # no teacher, no distillation term
    tidy = tidy[np.isfinite(tidy["loss"])]
    if tidy.empty:
        return None
    tidy = _binned(tidy.assign(term=tidy["term"].map(TERMS)))
    order = _objectives(results)
    rows = [TERMS[t] for t in terms if TERMS[t] in set(tidy["term"])]
    statuses = sorted(tidy["status"].unique(), key=lambda status: (status != STATUS_DONE, status))
    style = {"style": "status", "style_order": statuses} if len(statuses) > 1 else {}  # diverged: dashed
    with _style():
        grid = sns.relplot(
            data=tidy,
            kind="line",
            x="step",
            y="loss",
            hue="objective",
            hue_order=order,
            palette=_palette(order),
            col="term",
            col_order=rows,
            row="width",
            row_order=sorted(tidy["width"].unique(), reverse=True),
            errorbar=("pi", 100),  # the range over seeds: bootstrapping every step would take minutes
            height=2.0,
            aspect=1.6,
            linewidth=1.0,
            facet_kws={"sharey": "col", "margin_titles": True},
            **style,
        )
        grid.set_titles(row_template="width {row_name}", col_template="{col_name}")
        grid.set_axis_labels("training step (batches)", "loss (batch mean)")
        _legend_right(grid, "" if style else "objective")  # with two semantics each has its own heading
        grid.figure.suptitle("Training losses (lines: mean over seeds, bands: range over seeds)", y=1.02)
    return grid.figure


def _pick_seed(runs: pd.DataFrame, available: dict[str, Path]) -> int | None:
    with_samples = runs[runs["run_id"].isin(available)]
    if with_samples.empty:
        return None
    teachers = with_samples[with_samples["role"] == "teacher"]
    return int((teachers if len(teachers) else with_samples)["seed"].min())


SAMPLE_SCALE = 1.5  # screen pixels per sample pixel: tiles at least at their native 28 px, in a 1200 px page


def sample_grid(results: Results) -> Figure | None:
    """Each run's sample PNG for one seed, at 1.5x its pixel size: one row per width, widest (the teacher)
    first, one column per objective, scratch first."""
    available = samples(results)
    seed = _pick_seed(results.runs, available)
    if seed is None:
        return None
    runs = results.runs[(results.runs["seed"] == seed) & results.runs["run_id"].isin(available)]
    order = _objectives(results, runs)
    widths = sorted(runs["width"].unique(), reverse=True)
    first = imread(available[runs["run_id"].iloc[0]])
    cell_w = first.shape[1] * SAMPLE_SCALE / SAVE_DPI + 0.35
    cell_h = first.shape[0] * SAMPLE_SCALE / SAVE_DPI + 0.35
    teacher_width = None
    with _style(), sns.axes_style("white"):
        fig, axes = plt.subplots(
            len(widths), len(order), figsize=(cell_w * len(order), cell_h * len(widths) + 0.5), squeeze=False
        )
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        for (i, width), (j, objective) in itertools.product(enumerate(widths), enumerate(order)):
            match = runs[(runs["width"] == width) & (runs["objective"] == objective)]
            if match.empty:
                continue
            run = match.sort_values("role", ascending=False).iloc[0]  # the teacher before a same-width student
            image = imread(available[run["run_id"]])
            axes[i, j].imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
            if run["role"] == "teacher":
                teacher_width = width
            if run["status"] != STATUS_DONE:  # a failed run says so above its tile, in red
                axes[i, j].set_title(f"{objective} ({run['status']})", fontsize=9, color="tab:red")
            for spine in axes[i, j].spines.values():
                spine.set_visible(True)
                spine.set_linewidth(0.5)
                spine.set_color("0.75")
        for j, objective in enumerate(order):
            if not axes[0, j].get_title():
                axes[0, j].set_title(objective, fontsize=10, fontweight="bold")
        for i, width in enumerate(widths):
            name = f"width {width}" + ("\n(teacher)" if width == teacher_width else "")
            axes[i, 0].set_ylabel(name, fontsize=10, fontweight="bold")
        fig.suptitle(f"Samples at fixed (z, y), seed {seed}; each image row runs through classes 0-9", fontsize=11)
        fig.tight_layout(rect=(0, 0, 1, 0.985))
    return fig


def speedup_vs_macs(results: Results) -> Figure | None:
    """Measured speed-up against MAC reduction, a panel per backend and device: each student's latency
    relative to its seed's teacher behind the same backend, device and batch size (median over seeds), against
    the teacher's MACs over its own. The line y = x is what fewer MACs promise."""
    timed = results.latency
    if timed.empty or "g_macs" not in timed or not (timed["role"] == "teacher").any():
        return None
    keys = ["dataset", "seed", "backend", "device", "batch"]
    teachers = timed[timed["role"] == "teacher"][keys + ["p50_ms", "g_macs"]]
    tidy = timed[timed["role"] != "teacher"].merge(teachers, on=keys, suffixes=("", "_teacher"))
    if tidy.empty:
        return None
    tidy["speed-up (teacher latency / student latency, ×)"] = tidy["p50_ms_teacher"] / tidy["p50_ms"]
    tidy["MAC reduction (teacher MACs / student MACs, ×)"] = tidy["g_macs_teacher"] / tidy["g_macs"]
    tidy["batch size"] = tidy["batch"].astype(int).astype(str)
    tidy["device"] = tidy["device"].map(lambda device: DEVICE_NAMES.get(device, device))
    x, y = "MAC reduction (teacher MACs / student MACs, ×)", "speed-up (teacher latency / student latency, ×)"
    models = tidy.groupby(["device", "backend", "batch size", "width", "objective"], as_index=False)[[x, y]].median()
    batches = sorted(models["batch size"].unique(), key=int)
    with _style():
        grid = sns.relplot(
            data=models, kind="scatter", x=x, y=y, hue="batch size", hue_order=batches, style="objective",
            col="backend", row="device", s=55, height=3.0, aspect=1.1, palette="viridis",
            facet_kws={"margin_titles": True},
        )  # fmt: skip
        grid.set(xscale="log", yscale="log")
        low = min(models[x].min(), models[y].min()) / 1.5
        high = max(models[x].max(), models[y].max()) * 1.5
        for ax in grid.axes.flat:
            ax.plot([low, high], [low, high], color="black", linestyle="--", linewidth=1, zorder=1)
            ax.axhline(1.0, color="grey", linestyle=":", linewidth=1, zorder=1)
            ax.set_xlim(low, high)
            ax.set_ylim(low, high)
            _plain_log_ticks(ax)
        _legend_right(grid, "")
        grid.figure.suptitle("Measured speed-up against MAC reduction (dashed: y = x, what MACs promise)", y=1.03)
    return grid.figure


FIGURES = {
    "quality_vs_compression": quality_vs_compression,
    "pareto": pareto,
    "speedup_vs_macs": speedup_vs_macs,
    "training_curves": training_curves,
    "samples": sample_grid,
}
