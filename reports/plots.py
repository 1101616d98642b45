"""The report's figures, drawn with seaborn from tidy frames and saved as PNG and SVG.

(a) ``quality_vs_compression``: FID and IS against compression ratio, a line per objective (and method), bands
    over seeds.
(b) ``pareto``: FID against stored size and CPU latency, one point per model, the Pareto front drawn.
(c) ``training_curves``: generator, discriminator and distillation losses against step, per width.
(d) ``samples``: every run's fixed-(z, y) sample grid at 1.5x its pixels, a row per width (teacher first) and
    method, a column per objective (scratch first).
With one method (width) the colours tell objectives apart; with several, colours tell methods apart and markers
objectives. Each function returns the figure, or None when the results hold nothing to draw.
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
from matplotlib.ticker import FuncFormatter, LogFormatter, NullLocator  # noqa: E402

from bench.base.layout import PRUNE, SCRATCH, STATUS_DONE, WIDTH  # noqa: E402
from reports.load import (  # noqa: E402
    METHOD_KEYS,
    Results,
    in_report_order,
    losses,
    method_label,
    method_labels,
    objective_label,
    samples,
    several_methods,
)
from reports.metrics import BY_COLUMN, LOWER  # noqa: E402

RATIO_LABEL = "compression by parameters (teacher / student params, ×, log scale)"
STORED_RATIO_LABEL = "compression by stored bytes (teacher / model bytes as stored, ×, log scale)"
METHOD = "method"  # the legends' heading of ``method_label``
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


def _objectives(results: Results, runs: pd.DataFrame) -> list[str]:
    """Objectives in legend order: scratch first, then the distillation objectives in the grid's order."""
    grid_order = [str(kd) for kd in results.grid.get("kd", []) if isinstance(kd, str)]
    rank = {kd: i for i, kd in enumerate(grid_order)}
    kds = sorted(runs["kd"].unique(), key=lambda kd: (kd != SCRATCH, rank.get(kd, len(rank)), kd))
    return [objective_label(kd) for kd in kds]


def _series(results: Results, runs: pd.DataFrame) -> list[str]:
    """Series labels in legend order: by method, then by objective."""
    objectives = {objective: i for i, objective in enumerate(_objectives(results, runs))}
    by_objective = runs.sort_values("objective", key=lambda column: column.map(objectives), kind="stable")
    return list(in_report_order(by_objective, by=METHOD_KEYS)["series"].unique())


def _semantics(results: Results, runs: pd.DataFrame) -> dict:
    """seaborn's hue and style arguments: with one method, objectives by colour and marker; with several,
    methods by colour (the ``METHOD`` column of a plot frame) and objectives by marker."""
    objectives = _objectives(results, runs)
    hue, order = ("objective", objectives) if not several_methods(runs) else (METHOD, method_labels(runs))
    return {"hue": hue, "hue_order": order, "palette": _palette(order), "style": "objective",
            "style_order": objectives}  # fmt: skip


def _kinds(results: Results, runs: pd.DataFrame) -> tuple[str, list[str]]:
    """The column that tells models of one width apart, and its legend order: the objective, or with several
    methods the series (method and objective)."""
    if several_methods(runs):
        return "series", _series(results, runs)
    return "objective", _objectives(results, runs)


def _legend_title(semantics: dict, note: str = "") -> str:
    """The legend's title: the name of what colours and markers tell where they tell the same, then ``note``;
    with colours for methods and markers for objectives seaborn heads each part itself."""
    name = semantics["hue"] if semantics["hue"] == semantics["style"] else ""
    return "\n".join(part for part in (name, f"({note})" if note else "") if part)


def _plot_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``method_label`` named as the legends head it."""
    return frame.rename(columns={"method_label": METHOD})


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


class _PlainLogFormatter(LogFormatter):
    """matplotlib's choice of which log-axis ticks to label (minor ones too on an axis spanning about a decade),
    each printed as a plain number: 0.03, not 3x10^-2."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def _plain_log_ticks(ax, which: str = "x") -> None:
    """Log-axis tick labels of axis ``which`` as plain numbers (0.1, 1, 10) rather than powers of ten."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


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
    """FID and IS (LeNet, and Inception when measured) against compression, a line per objective (and method):
    by parameters, or by stored bytes where some models are quantized (they keep their source's parameters)."""
    runs = _finished(results.runs)
    columns = [c for c in ("fid_lenet", "is_lenet", "fid_inception", "is_inception") if c in runs]
    columns = [c for c in columns if runs[c].notna().any()]
    quantized = (runs["quantize"] != "").any()
    x, x_label = ("ratio_stored", STORED_RATIO_LABEL) if quantized else ("ratio_params", RATIO_LABEL)
    if not columns or x not in runs or runs[x].isna().all():
        return None
    labels = {c: BY_COLUMN[c].label for c in columns}
    tidy = runs.melt(
        id_vars=["run_id", "dataset", "width", "method_label", "objective", "seed", "role", x],
        value_vars=columns,
        var_name="column",
        value_name="value",
    ).dropna(subset=["value", x])
    tidy = _plot_frame(tidy.assign(metric=tidy["column"].map(labels)))
    semantics = _semantics(results, runs)
    with _style():
        grid = sns.relplot(
            data=tidy,
            kind="line",
            x=x,
            y="value",
            **semantics,
            markers=True,
            dashes=False,
            errorbar=None,  # with a few seeds a bootstrap band means nothing: each seed is drawn instead
            col="metric",
            col_order=[labels[c] for c in columns],
            col_wrap=2 if len(columns) > 2 else None,
            height=3.6,
            aspect=1.3,
            facet_kws={"sharey": False},
        )
        grid.set(xscale="log")
        grid.set_titles("")  # the y label names the metric; the top axis needs the room
        references = results.references
        several_seeds = tidy["seed"].nunique() > 1
        for column in columns:
            ax = grid.axes_dict[labels[column]]
            if several_seeds:  # every run, small and faint, around its model's mean
                runs_of = tidy[tidy["column"] == column]
                colours = [semantics["palette"][key] for key in runs_of[semantics["hue"]]]
                ax.scatter(runs_of[x], runs_of["value"], s=12, alpha=0.45, color=colours, zorder=1, linewidths=0)
            ax.set_xlabel(x_label)
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
            trained_at_width = tidy[(tidy["column"] == column) & (tidy[METHOD] == method_label(WIDTH))]
            _width_axis(ax, trained_at_width, x)
            _plain_log_ticks(ax)
        _legend_right(grid, _legend_title(semantics))
        seeds = "lines: mean over seeds; dots: each seed" if several_seeds else "one seed"
        grid.figure.suptitle(f"Sample quality against compression ({seeds})", y=1.06)
    return grid.figure


def pareto_front(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The rows of ``frame`` no other row beats on both ``x`` and ``y`` (lower is better), by ``x``."""
    ordered = frame.dropna(subset=[x, y]).sort_values([x, y], kind="stable")
    best = ordered[y].cummin()
    keep = ordered[y] < best.shift(fill_value=math.inf)
    return ordered[keep.to_numpy()]


DEVICE_NAMES = {"cpu": "CPU", "cuda": "GPU"}


def fastest_latency(results: Results, runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """``runs`` with a ``latency_{device}_fastest`` column per device (batch 1: the lowest p50 over the backends
    that timed the run, so that a model one backend cannot run, such as a quantized one, keeps its point) and the
    axis labels that say so; without latency.csv, the eager columns of results.csv."""
    if results.latency.empty:
        eager = {f"latency_ms_{dev}": f"{name} latency, batch 1 (ms, log scale)" for dev, name in DEVICE_NAMES.items()}
        return runs, eager
    labels = {}
    for device, rows in results.latency.groupby("device"):
        fastest = rows[rows["batch"] == rows["batch"].min()].groupby("run_id")["p50_ms"].min()
        column = f"latency_{device}_fastest"
        runs = runs.assign(**{column: runs["run_id"].map(fastest)})
        name = DEVICE_NAMES.get(device, device)
        labels[column] = f"{name} latency, batch 1 (ms, log scale; each model's fastest backend)"
    return runs, labels


def short_label(method: str, width: int, quantize: str) -> str:
    """A front point's label: the method's initial and the width, then any quantization (``w32``, ``p32 int8``)."""
    return f"{method[0]}{width}" + (f" {quantize}" if quantize else "")


STORED_LABEL = "generator size as stored (KiB, log scale)"
FRONT_INITIALS = {WIDTH: "width", PRUNE: "pruned to width"}  # what the initial of a front label stands for


def pareto(results: Results) -> Figure | None:
    """FID (log scale) against stored size and CPU latency (and GPU latency; each model's fastest backend, batch
    1): one point per model (method x width x objective, the median over seeds; each run faint behind it), the
    Pareto front over every model outlined and every model on it labelled with its method and width."""
    runs, latency_labels = fastest_latency(results, _finished(results.runs))
    quality = "fid_lenet" if "fid_lenet" in runs and runs["fid_lenet"].notna().any() else None
    if "g_bytes_stored" in runs:
        runs = runs.assign(g_stored_kib=runs["g_bytes_stored"] / 1024)
    costs = {"g_stored_kib": STORED_LABEL, **latency_labels}
    costs = {c: label for c, label in costs.items() if c in runs and runs[c].notna().any()}
    if quality is None or not costs:
        return None
    runs = runs.assign(short=[short_label(*key) for key in zip(runs["method"], runs["width"], runs["quantize"])])
    tidy = runs.melt(
        id_vars=["run_id", "width", "method_label", "objective", "series", "short", "seed", quality],
        value_vars=list(costs),
        var_name="cost",
        value_name="x",
    ).dropna(subset=["x", quality])
    tidy = _plot_frame(tidy.assign(cost=tidy["cost"].map(costs)))
    model = ["width", METHOD, "objective", "series", "short"]
    models = tidy.groupby(["cost", *model], as_index=False)[["x", quality]].median()
    semantics = _semantics(results, runs)
    palette = semantics["palette"]
    several_seeds = tidy.groupby(["cost", *model]).size().max() > 1
    with _style():
        grid = sns.relplot(
            data=models,
            kind="scatter",
            x="x",
            y=quality,
            **semantics,
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
        grid.set(xscale="log", yscale="log")
        for label, ax in grid.axes_dict.items():
            if several_seeds:  # every run, faint, behind its model's median
                each = tidy[tidy["cost"] == label]
                ax.scatter(each["x"], each[quality], s=14, alpha=0.35, zorder=2,
                           color=[palette[value] for value in each[semantics["hue"]]])  # fmt: skip
            front = pareto_front(models[models["cost"] == label], "x", quality)
            ax.step(front["x"], front[quality], where="post", color="black", linewidth=1.2, zorder=1)
            ax.scatter(front["x"], front[quality], s=190, facecolors="none", edgecolors="black", linewidths=1.2)
            for index, row in enumerate(front.itertuples()):  # every front model, labels alternating sides
                ax.annotate(
                    row.short,
                    (row.x, getattr(row, quality)),
                    xytext=(8, 6) if index % 2 == 0 else (-8, -12),
                    ha="left" if index % 2 == 0 else "right",
                    textcoords="offset points",
                    fontsize=8,
                )
            ax.set_xlabel(label)
            _plain_log_ticks(ax, "x")
            _plain_log_ticks(ax, "y")
            ax.set_ylabel(f"{BY_COLUMN[quality].label}{_better(quality)}, log scale")
            ax.set_title(f"FID against {label.split(',')[0].split(' (')[0]}")
        _legend_right(
            grid, _legend_title(semantics, "median over seeds" + ("; faint: each run" if several_seeds else ""))
        )
        initials = ",\n".join(f"{m[0]} = {FRONT_INITIALS.get(m, m)}" for m in in_report_order(runs)["method"].unique())
        front_handle = Line2D([], [], color="black", marker="o", markerfacecolor="none", markersize=10,
                              label=f"Pareto front\n({initials})")  # fmt: skip
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
    """Generator, discriminator and distillation losses against step; row = width, hue = objective (with several
    methods, series)."""
    frame = losses(results)
    if frame.empty:
        return None
    if "loss_g_gan" not in frame and "loss_g" in frame:
        frame = frame.rename(columns={"loss_g": "loss_g_gan"})
    terms = [t for t in TERMS if t in frame]
    kind, order = _kinds(results, frame)
    tidy = frame.melt(
        id_vars=["run_id", "width", kind, "kd", "seed", "status", "step"],
        value_vars=terms,
        var_name="term",
        value_name="loss",
    )
    tidy = tidy[~((tidy["term"] == "loss_kd") & (tidy["kd"] == SCRATCH))]  # no teacher, no distillation term
    tidy = tidy[np.isfinite(tidy["loss"])]
    if tidy.empty:
        return None
    tidy = _binned(tidy.assign(term=tidy["term"].map(TERMS)))
    rows = [TERMS[t] for t in terms if TERMS[t] in set(tidy["term"])]
    statuses = sorted(tidy["status"].unique(), key=lambda status: (status != STATUS_DONE, status))
    style = {"style": "status", "style_order": statuses} if len(statuses) > 1 else {}  # diverged: dashed
    with _style():
        grid = sns.relplot(
            data=tidy,
            kind="line",
            x="step",
            y="loss",
            hue=kind,
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
        _legend_right(grid, "" if style else kind)  # with two semantics each has its own heading
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
    first, and per method at that width; one column per objective, scratch first."""
    available = samples(results)
    seed = _pick_seed(results.runs, available)
    if seed is None:
        return None
    runs = results.runs[(results.runs["seed"] == seed) & results.runs["run_id"].isin(available)]
    order = _objectives(results, runs)
    rows = in_report_order(runs, by=("width", *METHOD_KEYS))
    rows = list(rows[["width", "method_label"]].drop_duplicates().itertuples(index=False, name=None))
    first = imread(available[runs["run_id"].iloc[0]])
    cell_w = first.shape[1] * SAMPLE_SCALE / SAVE_DPI + 0.35
    cell_h = first.shape[0] * SAMPLE_SCALE / SAVE_DPI + 0.35
    teacher_row = None
    with _style(), sns.axes_style("white"):
        fig, axes = plt.subplots(
            len(rows), len(order), figsize=(cell_w * len(order), cell_h * len(rows) + 0.5), squeeze=False
        )
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        for (i, (width, method)), (j, objective) in itertools.product(enumerate(rows), enumerate(order)):
            match = runs[(runs["width"] == width) & (runs["method_label"] == method) & (runs["objective"] == objective)]
            if match.empty:
                continue
            run = match.sort_values("role", ascending=False).iloc[0]  # the teacher before a same-width student
            image = imread(available[run["run_id"]])
            axes[i, j].imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
            if run["role"] == "teacher":
                teacher_row = i
            if run["status"] != STATUS_DONE:  # a failed run says so above its tile, in red
                axes[i, j].set_title(f"{objective} ({run['status']})", fontsize=9, color="tab:red")
            for spine in axes[i, j].spines.values():
                spine.set_visible(True)
                spine.set_linewidth(0.5)
                spine.set_color("0.75")
        for j, objective in enumerate(order):
            if not axes[0, j].get_title():
                axes[0, j].set_title(objective, fontsize=10, fontweight="bold")
        for i, (width, method) in enumerate(rows):
            name = f"width {width}" + (f"\n{method}" if several_methods(runs) else "")
            name += "\n(teacher)" if i == teacher_row else ""
            # across the row, not along it: a two-line method name is longer than a row of tiles is high
            axes[i, 0].set_ylabel(name, fontsize=10, fontweight="bold", rotation=0, ha="right", va="center")
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
    kind, kinds = _kinds(results, tidy)
    models = tidy.groupby(["device", "backend", "batch size", "width", kind], as_index=False)[[x, y]].median()
    batches = sorted(models["batch size"].unique(), key=int)
    with _style():
        grid = sns.relplot(
            data=models, kind="scatter", x=x, y=y, hue="batch size", hue_order=batches, style=kind,
            style_order=kinds, col="backend", row="device", s=55, height=3.0, aspect=1.1, palette="viridis",
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
            _plain_log_ticks(ax, "x")
            _plain_log_ticks(ax, "y")
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
