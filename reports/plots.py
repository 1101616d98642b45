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
from matplotlib.transforms import Bbox  # noqa: E402

from bench.base.layout import PRUNE, SCRATCH, STATUS_DONE, WIDTH  # noqa: E402
from bench.base.metric_registry import PRIMARY_BACKBONE  # noqa: E402
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
from reports.metrics import BY_COLUMN, LOWER, Metric, on_every_backbone  # noqa: E402
from reports.timing import DEVICE_NAMES, batch_text, headline_basis  # noqa: E402

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


def _semantics(results: Results, runs: pd.DataFrame) -> dict:
    """seaborn's hue and style arguments for the models of ``runs``: with one method, objectives by colour and
    marker; with several, methods by colour (the ``METHOD`` column of a plot frame) and objectives by marker. A
    method or objective has the same colour in every figure, whichever of the results' models a figure draws."""
    objectives = _objectives(results, runs)
    if several_methods(runs):
        hue, order, every = METHOD, method_labels(runs), method_labels(results.runs)
    else:
        hue, order, every = "objective", objectives, _objectives(results, results.runs)
    palette = _palette(every)
    return {"hue": hue, "hue_order": order, "palette": {key: palette[key] for key in order}, "style": "objective",
            "style_order": objectives}  # fmt: skip


def _legend_title(semantics: dict, note: str = "") -> str:
    """The legend's title: the name of what colours and markers tell where they tell the same, then ``note``;
    with colours for methods and markers for objectives seaborn heads each part itself."""
    name = semantics["hue"] if semantics["hue"] == semantics["style"] else ""
    return "\n".join(part for part in (name, f"({note})" if note else "") if part)


def _plot_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``method_label`` named as the legends head it."""
    return frame.rename(columns={"method_label": METHOD})


# colours no two of which are closer than 34 in CIELAB (Delta E 1976), the first ones the farthest apart: seaborn's
# "colorblind" palette drew the two int8 modes in an orange and a vermillion 26 apart, as one colour to a reader
DISTINCT_COLOURS = (
    "#0072B2", "#D55E00", "#117733", "#AA3377", "#000000", "#BCBD22", "#332288", "#17BECF", "#8C564B", "#EE6677",
)  # fmt: skip


def _palette(order: list[str]) -> dict[str, str | tuple]:
    """A colour per label of ``order``, every one distinct (beyond ten labels, evenly spaced hues)."""
    colours = DISTINCT_COLOURS if len(order) <= len(DISTINCT_COLOURS) else sns.color_palette("husl", len(order))
    return dict(zip(order, colours, strict=False))


def _better(column: str) -> str:
    metric = BY_COLUMN.get(column)
    if metric is None or metric.better is None:
        return ""
    return " (lower is better)" if metric.better == LOWER else " (higher is better)"


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == STATUS_DONE]


def _wide_range(values: pd.Series) -> bool:
    """Whether positive values span more than a decade: then a log axis reads better."""
    values = values[np.isfinite(values)]
    return bool(len(values) and (values > 0).all() and values.max() / values.min() > 10)


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
    """matplotlib's choice of which log-axis ticks to label (some minor ones too on an axis spanning a decade or two),
    each printed as a plain number: 0.03, not 3x10^-2."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def _plain_log_ticks(ax, which: str = "x") -> None:
    """Log-axis tick labels of axis ``which`` as plain numbers (0.1, 1, 10) rather than powers of ten."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    # stacked labels have room for some minor ones over two decades; side by side, over one
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1 if which == "x" else 2, 0.4)))


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


QUALITY_SCORES = ("fid", "is")  # drawn against compression on every backbone that scored the grid, a panel each


def quality_panels(runs: pd.DataFrame) -> list[Metric]:
    """The metrics ``quality_vs_compression`` draws, a panel each: every backbone's FID, then every backbone's IS,
    for the backbones the metric registry declares and these runs were scored with."""
    return [metric for score in QUALITY_SCORES for metric in on_every_backbone(score, runs)]


COMPRESSION_LABELS = {"ratio_params": RATIO_LABEL, "ratio_stored": STORED_RATIO_LABEL}


def _compression_axis(runs: pd.DataFrame) -> str:
    """Compression by parameters, or by stored bytes where some models are quantized (they keep their source's
    parameters)."""
    return "ratio_stored" if (runs["quantize"] != "").any() else "ratio_params"


def _quality_panel(ax, rows: pd.DataFrame, metric: Metric, results: Results, semantics: dict, x: str) -> None:
    """One metric's panel: every seed faint where there are several, its axis labels, the teacher and real-data
    lines, a log scale where the values span more than a decade, and the widths along the top."""
    if rows["seed"].nunique() > 1:  # every run, small and faint, around its model's mean
        colours = [semantics["palette"][key] for key in rows[semantics["hue"]]]
        ax.scatter(rows[x], rows["value"], s=12, alpha=0.45, color=colours, zorder=1, linewidths=0)
    ax.set_xlabel(COMPRESSION_LABELS[x])
    ax.set_ylabel(f"{metric.label}{_better(metric.column)}")
    lines = []
    teacher = rows[rows["role"] == "teacher"]
    if len(teacher):
        label = f"teacher (width {int(teacher['width'].iloc[0])}): {teacher['value'].mean():.3g}"
        lines.append((teacher["value"].mean(), label, "0.25", "--"))
    references = results.references
    if not references.empty and metric.column in references and "reference" in references:
        real = references.loc[references["reference"] == REAL_REFERENCE, metric.column].dropna()
        if len(real):
            lines.append((real.mean(), f"real test data: {real.mean():.3g}", "tab:green", ":"))
    for line in lines:
        _reference_line(ax, *line)
    if _wide_range(pd.concat([rows["value"], pd.Series([line[0] for line in lines], dtype=float)])):
        ax.set_yscale("log")
        _plain_log_ticks(ax, "y")
    _width_axis(ax, rows[rows[METHOD] == method_label(WIDTH)], x)
    _plain_log_ticks(ax)


def quality_vs_compression(results: Results) -> Figure | None:
    """The FID and IS of every backbone that scored the grid against compression, a panel each, a line per
    objective (and method): by parameters, or by stored bytes where some models are quantized."""
    runs = _finished(results.runs)
    metrics = quality_panels(runs)
    x = _compression_axis(runs)
    if not metrics or x not in runs or runs[x].isna().all():
        return None
    tidy = runs.melt(
        id_vars=["run_id", "dataset", "width", "method_label", "objective", "seed", "role", x],
        value_vars=[metric.column for metric in metrics],
        var_name="column",
        value_name="value",
    ).dropna(subset=["value", x])
    tidy = _plot_frame(tidy.assign(metric=tidy["column"].map({metric.column: metric.label for metric in metrics})))
    semantics = _semantics(results, runs)
    backbones = len({metric.backbone for metric in metrics})
    with _style():
        grid = sns.relplot(
            data=tidy, kind="line", x=x, y="value", **semantics, markers=True, dashes=False,
            errorbar=None,  # with a few seeds a bootstrap band means nothing: each seed is drawn instead
            col="metric", col_order=[metric.label for metric in metrics],
            col_wrap=min(max(backbones, 2), 3) if len(metrics) > 2 else None, height=3.6, aspect=1.3,
            facet_kws={"sharey": False},
        )  # fmt: skip
        grid.set(xscale="log")
        grid.set_titles("")  # the y label names the metric; the top axis needs the room
        for metric in metrics:
            _quality_panel(grid.axes_dict[metric.label], tidy[tidy["column"] == metric.column], metric, results,
                           semantics, x)  # fmt: skip
        _legend_right(grid, _legend_title(semantics))
        seeds = "lines: mean over seeds; dots: each seed" if tidy["seed"].nunique() > 1 else "one seed"
        grid.figure.suptitle(f"Sample quality against compression ({seeds})", y=1.06)
    return grid.figure


def pareto_front(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The rows of ``frame`` no other row beats on both ``x`` and ``y`` (lower is better), by ``x``."""
    ordered = frame.dropna(subset=[x, y]).sort_values([x, y], kind="stable")
    best = ordered[y].cummin()
    keep = ordered[y] < best.shift(fill_value=math.inf)
    return ordered[keep.to_numpy()]


def fastest_latency(results: Results, runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """``runs`` with a ``latency_{device}_fastest`` column per device (at the smallest batch timed: the lowest p50
    over the backends that timed the run, so that a model one backend cannot run, such as a quantized one, keeps its
    point) and the axis labels that name that batch and those backends; without latency.csv, the eager columns of
    results.csv, labelled with their backend and batch."""
    if results.latency.empty:
        basis = headline_basis(results)
        eager = {f"latency_ms_{dev}": f"{name} latency, {basis.backend}, {batch_text(basis.latency_batch)} (ms, log "
                 "scale)" for dev, name in DEVICE_NAMES.items()}  # fmt: skip
        return runs, eager
    labels = {}
    for device, rows in results.latency.groupby("device"):
        rows = rows[rows["batch"] == rows["batch"].min()]
        column = f"latency_{device}_fastest"
        runs = runs.assign(**{column: runs["run_id"].map(rows.groupby("run_id")["p50_ms"].min())})
        backends = ", ".join(sorted(rows["backend"].unique()))
        labels[column] = (
            f"{DEVICE_NAMES.get(device, device)} latency, {batch_text(int(rows['batch'].min()))}, each model's "
            f"fastest backend\n(of {backends}; ms, log scale)"
        )
    return runs, labels


# a front label's prefix per method and what it stands for; a method not named here is written out in full
FRONT_PREFIXES = {WIDTH: ("w", "width"), PRUNE: ("p", "pruned to width"), "online": ("on", "online student"),
                  "once-for-all": ("ofa", "cut from a once-for-all generator")}  # fmt: skip


def front_prefix(method: str) -> tuple[str, str]:
    """(prefix, meaning) of ``method``'s front labels: distinct for every method."""
    return FRONT_PREFIXES.get(method, (f"{method} ", method))


def short_label(method: str, width: int, quantize: str) -> str:
    """A front point's label: the method's prefix and the width, then any quantization (``w32``, ``p32 int8``,
    ``ofa128``)."""
    return f"{front_prefix(method)[0]}{width}" + (f" {quantize}" if quantize else "")


STORED_LABEL = "generator size as stored (KiB, log scale)"
PARETO_QUALITY = f"fid_{PRIMARY_BACKBONE}"  # the Pareto charts' quality: FID on the backbone every grid scores
MODEL = ["width", METHOD, "objective", "series", "short"]  # one point of the Pareto charts


def _pareto_frames(results: Results) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]] | None:
    """The Pareto charts' data: every finished run (a row per run and cost), every model (the median over its
    seeds) and {cost column: axis label}; None where there is no FID or no cost to draw."""
    runs, latency_labels = fastest_latency(results, _finished(results.runs))
    if "g_bytes_stored" in runs:
        runs = runs.assign(g_stored_kib=runs["g_bytes_stored"] / 1024)
    costs = {"g_stored_kib": STORED_LABEL, **latency_labels}
    costs = {c: label for c, label in costs.items() if c in runs and runs[c].notna().any()}
    if PARETO_QUALITY not in runs or runs[PARETO_QUALITY].isna().all() or not costs:
        return None
    runs = runs.assign(short=[short_label(*key) for key in zip(runs["method"], runs["width"], runs["quantize"])])
    tidy = runs.melt(
        id_vars=["run_id", "width", "method_label", "objective", "series", "short", "seed", PARETO_QUALITY],
        value_vars=list(costs),
        var_name="cost",
        value_name="x",
    ).dropna(subset=["x", PARETO_QUALITY])
    tidy = _plot_frame(tidy.assign(cost=tidy["cost"].map(costs)))
    models = tidy.groupby(["cost", *MODEL], as_index=False)[["x", PARETO_QUALITY]].median()
    return tidy, models, costs


def _pareto_panel(ax, label: str, tidy: pd.DataFrame, models: pd.DataFrame, semantics: dict) -> pd.DataFrame:
    """One cost's panel: each run faint behind its model where there are several seeds, the front's step line and
    rings, axis labels and title; returns the front."""
    if tidy.groupby(["cost", *MODEL]).size().max() > 1:  # every run, faint, behind its model's median
        each = tidy[tidy["cost"] == label]
        ax.scatter(each["x"], each[PARETO_QUALITY], s=14, alpha=0.35, zorder=2,
                   color=[semantics["palette"][value] for value in each[semantics["hue"]]])  # fmt: skip
    front = pareto_front(models[models["cost"] == label], "x", PARETO_QUALITY)
    ax.step(front["x"], front[PARETO_QUALITY], where="post", color="black", linewidth=1.2, zorder=1)
    ax.scatter(front["x"], front[PARETO_QUALITY], s=FRONT_RING, facecolors="none", edgecolors="black", linewidths=1.2)
    ax.set_xlabel(label)
    _plain_log_ticks(ax, "x")
    _plain_log_ticks(ax, "y")
    ax.set_ylabel(f"{BY_COLUMN[PARETO_QUALITY].label}{_better(PARETO_QUALITY)}, log scale")
    ax.set_title(f"FID against {label.split(',')[0].split(' (')[0]}")
    return front


FRONT_RING, MODEL_POINT = 190, 70  # marker areas (points squared) of a front ring and a model's point


def pareto(results: Results) -> Figure | None:
    """FID (log scale) against stored size and latency (each model's fastest backend at the smallest batch, per
    device): one point per model (method x width x objective, the median over seeds; each run faint behind it), the
    Pareto front over every model outlined and every model on it labelled with its method and width, the labels
    placed where they overlap no other label and no point."""
    frames = _pareto_frames(results)
    if frames is None:
        return None
    tidy, models, costs = frames
    semantics = _semantics(results, _finished(results.runs))
    with _style():
        grid = sns.relplot(
            data=models, kind="scatter", x="x", y=PARETO_QUALITY, **semantics, col="cost",
            col_order=list(costs.values()), col_wrap=2 if len(costs) > 2 else None, s=MODEL_POINT, alpha=0.9,
            height=3.6, aspect=1.2, facet_kws={"sharex": False}, zorder=3,
        )  # fmt: skip
        grid.set(xscale="log", yscale="log")
        for ax in grid.axes.flat:
            ax.margins(x=0.08, y=0.12)  # room for the labels of the points at the edges
        fronts = {label: _pareto_panel(ax, label, tidy, models, semantics) for label, ax in grid.axes_dict.items()}
        several_seeds = tidy.groupby(["cost", *MODEL]).size().max() > 1
        _legend_right(
            grid, _legend_title(semantics, "median over seeds" + ("; faint: each run" if several_seeds else ""))
        )
        methods = in_report_order(_finished(results.runs))["method"].unique()
        initials = ",\n".join(f"{prefix.strip()} = {meaning}" for prefix, meaning in map(front_prefix, methods))
        front_handle = Line2D([], [], color="black", marker="o", markerfacecolor="none", markersize=10,
                              label=f"Pareto front\n({initials})")  # fmt: skip
        grid.figure.canvas.draw()  # the final layout and limits: where each point and the legend lie on the page
        below = grid.legend.get_window_extent().transformed(grid.figure.transFigure.inverted())
        grid.figure.legend(handles=[front_handle], loc="upper left", bbox_to_anchor=(below.x0, below.y0),
                           frameon=False, fontsize=8)  # fmt: skip
        for label, ax in grid.axes_dict.items():
            shown = models[models["cost"] == label]
            markers = [(x, y, MODEL_POINT) for x, y in zip(shown["x"], shown[PARETO_QUALITY], strict=True)]
            front = fronts[label]
            points = list(zip(front["x"], front[PARETO_QUALITY], strict=True))
            place_labels(ax, points, list(front["short"]), markers + [(x, y, FRONT_RING) for x, y in points])
    return grid.figure


# where a label may go from its point (points right and up; the nearest first), and how far out it may be pushed
LABEL_OFFSETS = ((7, 5), (7, -5), (-7, 5), (-7, -5), (0, 9), (0, -9), (10, 0), (-10, 0))
LABEL_REACH = (1, 2, 3)


def _offset_alignment(dx: float, dy: float) -> dict:
    horizontal = "left" if dx > 0 else "right" if dx < 0 else "center"
    return {"ha": horizontal, "va": "bottom" if dy > 0 else "top" if dy < 0 else "center"}


def _annotate(ax, point: tuple[float, float], text: str, dx: float, dy: float):
    """``text`` at (dx, dy) points from ``point``; beyond the nearest offsets, with a leader line to it."""
    leader = {} if (dx, dy) in LABEL_OFFSETS else {"arrowprops": {"arrowstyle": "-", "color": "0.4", "lw": 0.6}}
    return ax.annotate(text, point, xytext=(dx, dy), textcoords="offset points", fontsize=8,
                       **_offset_alignment(dx, dy), **leader)  # fmt: skip


LABEL_WEIGHT = 10  # a label over another label, or outside the axes, is worse than a label over a point


def _overlap(a: Bbox, b: Bbox) -> float:
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _crowding(box: Bbox, taken: list[tuple[Bbox, float]], inside: Bbox) -> float:
    """How badly a label's box sits: the area it covers of the boxes already taken (markers and labels, each by its
    weight), and the area it leaves the axes, weighed as a label's."""
    outside = box.width * box.height - _overlap(box, inside)
    return sum(weight * _overlap(box, other) for other, weight in taken) + LABEL_WEIGHT * outside


def place_labels(ax, points: list[tuple[float, float]], texts: list[str], markers: list[tuple[float, float, float]]):
    """Label each point (data coordinates) with its text at the nearest offset where the label stays inside the
    axes and overlaps no label placed before it and no marker (x, y, area in points squared); further out, with a
    leader line, where none is free nearby; where none is free at all, where it overlaps least (over a point
    rather than over a label)."""
    renderer = ax.figure.canvas.get_renderer()
    taken = []
    for (x, y), (_, _, area) in zip(ax.transData.transform([m[:2] for m in markers]), markers, strict=True):
        radius = math.sqrt(area) / 2 * ax.figure.dpi / 72
        taken.append((Bbox.from_extents(x - radius, y - radius, x + radius, y + radius), 1.0))
    inside = ax.get_window_extent(renderer)
    offsets = [(dx * reach, dy * reach) for reach in LABEL_REACH for dx, dy in LABEL_OFFSETS]
    for point, text in zip(points, texts, strict=True):
        tried = []
        for dx, dy in offsets:
            box = (annotation := _annotate(ax, point, text, dx, dy)).get_window_extent(renderer)
            annotation.remove()
            tried.append((_crowding(box, taken, inside), (dx, dy)))
            if tried[-1][0] == 0:
                break
        offset = min(tried, key=lambda attempt: attempt[0])[1]  # the first free place, else the least crowded
        taken.append((_annotate(ax, point, text, *offset).get_window_extent(renderer), LABEL_WEIGHT))


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


def _loss_frame(results: Results) -> pd.DataFrame:
    """Every trained run's losses, a row per run, term and (binned) step, the distillation term of scratch runs
    left out; empty when no run logged a finite loss."""
    frame = losses(results)
    if frame.empty:
        return frame
    if "loss_g_gan" not in frame and "loss_g" in frame:
        frame = frame.rename(columns={"loss_g": "loss_g_gan"})
    tidy = frame.melt(
        id_vars=["run_id", "width", "method_label", "series", "objective", "kd", "seed", "status", "step"],
        value_vars=[term for term in TERMS if term in frame],
        var_name="term",
        value_name="loss",
    )
    tidy = tidy[~((tidy["term"] == "loss_kd") & (tidy["kd"] == SCRATCH))]  # no teacher, no distillation term
    tidy = _plot_frame(tidy[np.isfinite(tidy["loss"])])
    return _binned(tidy.assign(term=tidy["term"].map(TERMS))) if len(tidy) else tidy


def _line_semantics(results: Results, tidy: pd.DataFrame) -> dict:
    """Colours and line styles of the loss curves, no two curves alike: a colour per model kind (with several
    methods, per method and objective: a distilled curve drawn dashed over its scratch twin shows the other colour
    in its gaps where the two coincide), a line style per objective, or with one method and a diverged run, that
    run dashed."""
    runs = results.runs[results.runs["run_id"].isin(tidy["run_id"])]
    objectives = _objectives(results, runs)
    styles = {"style": "objective", "style_order": objectives}
    if several_methods(runs):
        order = list(in_report_order(runs, by=(*METHOD_KEYS, "kd"))["series"].unique())
        return {"hue": "series", "hue_order": order, "palette": _palette(order)} | styles
    semantics = {key: value for key, value in _semantics(results, runs).items() if key.startswith(("hue", "palette"))}
    statuses = sorted(tidy["status"].unique(), key=lambda status: (status != STATUS_DONE, status))
    return semantics | ({"style": "status", "style_order": statuses} if len(statuses) > 1 else styles)


def training_curves(results: Results) -> Figure | None:
    """Generator, discriminator and distillation losses against step; a row per width, a column per term; colours
    and line styles as ``_line_semantics`` sets them, each term's axis on a log scale where it spans a decade."""
    tidy = _loss_frame(results)
    if tidy.empty:
        return None
    semantics = _line_semantics(results, tidy)
    columns = [name for name in TERMS.values() if name in set(tidy["term"])]
    with _style():
        grid = sns.relplot(
            data=tidy, kind="line", x="step", y="loss", **semantics, col="term", col_order=columns, row="width",
            row_order=sorted(tidy["width"].unique(), reverse=True),
            errorbar=("pi", 100),  # the range over seeds: bootstrapping every step would take minutes
            height=2.0, aspect=1.6, linewidth=1.0, facet_kws={"sharey": "col", "margin_titles": True},
        )  # fmt: skip
        grid.set_titles(row_template="width {row_name}", col_template="{col_name}")
        grid.set_axis_labels("training step (batches)", "loss (batch mean)")
        for column, axes in zip(columns, grid.axes.T, strict=True):
            if _wide_range(tidy.loc[tidy["term"] == column, "loss"]):
                for ax in axes:
                    ax.set_yscale("log")
                    _plain_log_ticks(ax, "y")
        _legend_right(grid, "" if "style" in semantics else semantics["hue"])  # two semantics: a heading each
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


SPEEDUP = "speed-up (×, log scale)\nteacher latency / student latency"
MAC_REDUCTION = "MAC reduction (×, log scale)\nteacher MACs / student MACs"


def _speedups(timed: pd.DataFrame) -> pd.DataFrame:
    """Every student's timing beside its seed's teacher's behind the same backend, device and batch, with its
    speed-up, its MAC reduction and the panel it is drawn in ('CPU · eager · batch 1')."""
    keys = ["dataset", "seed", "backend", "device", "batch"]
    teachers = timed[timed["role"] == "teacher"][keys + ["p50_ms", "g_macs"]]
    tidy = timed[timed["role"] != "teacher"].merge(teachers, on=keys, suffixes=("", "_teacher"))
    device = tidy["device"].map(lambda name: DEVICE_NAMES.get(name, name))
    return tidy.assign(
        **{
            SPEEDUP: tidy["p50_ms_teacher"] / tidy["p50_ms"],
            MAC_REDUCTION: tidy["g_macs_teacher"] / tidy["g_macs"],
            "panel": device + " · " + tidy["backend"] + " · batch " + tidy["batch"].astype(int).astype(str),
        }
    )[["run_id", "device", "backend", "batch", "panel", "width", "method_label", "objective", SPEEDUP, MAC_REDUCTION]]
    # fmt: skip


def speedup_vs_macs(results: Results) -> Figure | None:
    """Measured speed-up against MAC reduction, a panel per device, backend and batch size: each student's latency
    relative to its seed's teacher behind the same backend, device and batch (median over seeds), against the
    teacher's MACs over its own, coloured and marked as the other figures colour and mark models. The line y = x is
    what fewer MACs promise."""
    timed = results.latency
    if timed.empty or "g_macs" not in timed or not (timed["role"] == "teacher").any():
        return None
    tidy = _plot_frame(_speedups(timed))
    if tidy.empty:
        return None
    semantics = _semantics(results, results.runs[results.runs["run_id"].isin(tidy["run_id"])])
    panels = in_report_order(tidy, by=("device", "batch", "backend"))["panel"].unique()
    models = tidy.groupby(["panel", "width", METHOD, "objective"], as_index=False)[[MAC_REDUCTION, SPEEDUP]].median()
    with _style():
        grid = sns.relplot(
            data=models, kind="scatter", x=MAC_REDUCTION, y=SPEEDUP, **semantics, col="panel", col_order=list(panels),
            col_wrap=min(max(tidy["backend"].nunique(), 2), 3) if len(panels) > 2 else None, s=55,
            alpha=0.85, height=3.0, aspect=1.1,
        )  # fmt: skip
        grid.set(xscale="log", yscale="log")
        grid.set_titles("{col_name}")
        low = min(models[MAC_REDUCTION].min(), models[SPEEDUP].min()) / 1.5
        high = max(models[MAC_REDUCTION].max(), models[SPEEDUP].max()) * 1.5
        for ax in grid.axes.flat:
            ax.plot([low, high], [low, high], color="black", linestyle="--", linewidth=1, zorder=1)
            ax.axhline(1.0, color="grey", linestyle=":", linewidth=1, zorder=1)
            ax.set_xlim(low, high)
            ax.set_ylim(low, high)
            _plain_log_ticks(ax, "x")
            _plain_log_ticks(ax, "y")
        _legend_right(grid, _legend_title(semantics, "median over seeds"))
        grid.figure.suptitle("Measured speed-up against MAC reduction (dashed: y = x, what MACs promise)", y=1.03)
    return grid.figure


FIGURES = {
    "quality_vs_compression": quality_vs_compression,
    "pareto": pareto,
    "speedup_vs_macs": speedup_vs_macs,
    "training_curves": training_curves,
    "samples": sample_grid,
}
