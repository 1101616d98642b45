"""The report as a document: an outline of headings, paragraphs, tables and figures, rendered to
``report.md`` (tables as Markdown, figures as relative PNG links) and a self-contained ``report.html``
(tables as HTML, figures as base64 data URIs)."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.base.layout import STATUS_DONE, STATUS_MISMATCH
from reports import agreement, deployment, verdicts  # noqa: F401  imported for the tables they register
from reports.load import Results, method_labels, several_methods
from reports.plots import FIGURES, quality_panels, save
from reports.summary import grid_summary
from reports.tables import Table, all_tables, write_table
from reports.timing import batch_text, flag_columns, headline_basis
from reports.verdicts import unresolved_text, verdict_sentences

TABLES_DIR = "tables"
FIGURES_DIR = "figures"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class TableBlock:
    table: Table


@dataclass(frozen=True)
class FigureBlock:
    path: Path | None  # the PNG; None when there was nothing to draw
    alt: str
    caption: str


Block = Heading | Paragraph | TableBlock | FigureBlock


def _listing(values) -> str:
    return ", ".join(str(value) for value in values)


def grid_line(results: Results) -> str:
    """One line: preset, dataset, widths, methods (where several), objectives, seeds, epochs, device and date."""
    grid, runs = results.grid, results.runs

    def pick(key: str, fallback) -> str:
        value = grid.get(key)
        if value is None or value == []:
            return fallback if fallback else UNKNOWN
        return _listing(value) if isinstance(value, list | tuple) else str(value)

    epochs = pick("epochs", _listing(sorted(runs["epochs"].unique())) if "epochs" in runs else "")
    device = pick("device", "")
    if "device_name_cuda" in runs and runs["device_name_cuda"].notna().any() and "device" not in grid:
        device = _listing(sorted(runs["device_name_cuda"].dropna().unique()))
    date = pick("started_at", "")
    date = date[:10] if len(date) >= 10 and date[4] == "-" else date
    source = "" if grid else " (grid.json missing: grid read from results.csv)"
    cpu = grid.get("cpu")
    device += f"; CPU {cpu_text(cpu)}" if isinstance(cpu, dict) else ""
    datasets = _listing(sorted(runs["dataset"].unique()))
    objectives = _listing(sorted(runs["kd"].unique(), key=lambda kd: (kd != "none", kd)))
    methods = method_labels(runs)
    return (
        f"Grid: preset {pick('preset', '')}, dataset {pick('dataset', datasets)}, "
        f"widths {pick('widths', _listing(sorted(runs['width'].unique())))}, "
        + (f"methods {_listing(methods)}, " if len(methods) > 1 else "")
        + f"objectives {pick('kd', objectives)}, "
        f"seeds {pick('seeds', _listing(sorted(runs['seed'].unique())))}, epochs {epochs}; "
        f"device {device}; date {date}{source}."
    )


def cpu_text(cpu: dict) -> str:
    """A recorded CPU kind in a few words: model, instruction sets, ATen's kernels, the int8 engine."""
    isa = ", ".join(str(name) for name in cpu.get("isa", [])) or "no AVX2"
    return (
        f"{cpu.get('model', UNKNOWN)} ({isa}; ATen {cpu.get('aten_capability', UNKNOWN)}; "
        f"int8 engine {cpu.get('quantized_engine', UNKNOWN)})"
    )


def _run_counts(results: Results) -> str:
    status = results.runs["status"].value_counts()
    parts = [f"{count} {state}" for state, count in status.items()]
    text = f"{len(results.runs)} runs: {', '.join(parts)}."
    if results.unreadable:
        text += f" Left out, their result.json unreadable: {', '.join(results.unreadable)}."
    if results.gone:
        text += f" Left out, their result.json gone from runs/: {', '.join(results.gone)}."
    kinds = results.grid.get("cpu_kinds", [])
    if isinstance(kinds, list) and len(kinds) > 1:
        text += (
            f" Runs of this grid were made on {len(kinds)} CPU kinds ({'; '.join(map(str, kinds))}): the same seed "
            "gives FIDs a few per cent apart on different kinds."
        )
    return text


def load_text(results: Results) -> str:
    """One sentence when some timings were taken while other processes kept the machine busy."""
    latency = results.latency
    if "loaded" not in latency or latency.empty:
        return ""
    loaded = latency[latency["loaded"].astype(str).str.lower() == "true"]
    if loaded.empty:
        return ""
    return (
        f"Machine load: {len(loaded)} of {len(latency)} timings were taken while other processes kept "
        f"{loaded['other_load'].max():.1f} cores busy at most (latency.csv: loaded, other_load); their latencies "
        "are inflated. Time them again on a quiet machine: python -m bench.latency RESULTS_DIR."
    )


def mismatch_text(results: Results) -> str:
    """One paragraph naming every derived model left out because it does not compute what its source does."""
    runs = results.runs[results.runs["status"] == STATUS_MISMATCH]
    if runs.empty:
        return ""
    reasons = runs["mismatch_reason"] if "mismatch_reason" in runs else pd.Series(UNKNOWN, index=runs.index)
    named = [
        f"{row.series}, width {row.width}, seed {row.seed}: {reason}"
        for row, reason in zip(runs.itertuples(), reasons.fillna(UNKNOWN), strict=True)
    ]
    return (
        f"Mismatch: {len(runs)} derived model(s) left out of every verdict, the Pareto front, the best model at each "
        f"size and the smallest model that keeps the teacher's quality, because their images are not their float "
        f"source's: {'; '.join(named)}."
    )


def _quality_caption(results: Results) -> str:
    panels = quality_panels(results.runs[results.runs["status"] == STATUS_DONE])
    names = ", ".join(metric.label for metric in panels) or "FID and IS"
    return (
        f"{names}: a panel each, for every feature network that scored the grid, against compression by parameters "
        "(by stored bytes where some models are quantized), log scale; the top axis names the width of the "
        "generators trained at that width. Lines: mean over seeds; dots: each seed (no band: with a few seeds an "
        "interval drawn as a band would mislead). Dashed: the teacher; dotted: the real test split, the floor a "
        "perfect generator reaches; a log scale wherever the values drawn span more than a decade. Diverged runs "
        "are left out."
    )


def _pareto_caption(results: Results) -> str:
    latency = results.latency
    if latency.empty:
        basis = headline_basis(results)
        timed = f"{basis.backend} PyTorch's latency at {batch_text(basis.latency_batch)} (results.csv)"
    else:
        first = latency[latency["batch"] == latency["batch"].min()]
        backends = ", ".join(sorted(first["backend"].unique()))
        timed = (
            f"its latency at {batch_text(int(first['batch'].iloc[0]))} behind the fastest of the backends that timed "
            f"it ({backends}; torch.ao quantized models are timed in eager PyTorch only, openvino-int8 ones behind "
            "OpenVINO)"
        )
    return (
        f"FID (log scale) against the generator's size as stored (a quantized model's payload) and {timed}, one "
        "point per model (the median over seeds), every method on one chart. The black step line joins the Pareto "
        "front over all models: those no other model beats on both cost and FID (lower is better for both); each is "
        "labelled with its method's initial (w: trained at that width, p: pruned to that width's parameter count), "
        "its width and any quantization, a grey line joining a label pushed away from its point to make room."
        + _flagged_latency(results)
    )


def _flagged_latency(results: Results) -> str:
    latency = results.latency
    if latency.empty:
        return ""
    flagged = int(flag_columns(latency[latency["batch"] == latency["batch"].min()]).any(axis=1).sum())
    timed = int((latency["batch"] == latency["batch"].min()).sum())
    return (
        f" {flagged} of the {timed} timings at that batch are flagged noisy or loaded in latency.csv (marked in the "
        "tables): their points may sit further right than a quiet machine would put them."
        if flagged
        else ""
    )


CAPTIONS: dict[str, str | Callable[[Results], str]] = {
    "quality_vs_compression": _quality_caption,
    "pareto": _pareto_caption,
    "speedup_vs_macs": (
        "Each student's measured speed-up over its seed's teacher (the same backend, device and batch size; "
        "median over seeds) against its MAC reduction, log scales: a panel per device, backend and batch size, "
        "colours and markers as in the other figures. Dashed: y = x, what fewer MACs promise; dotted: no speed-up. "
        "Points below the dashed line are slower than their MACs say: at small batches launch and memory overheads, "
        "not arithmetic, set the time."
    ),
    "samples": (
        "Each model's samples for the same noise and labels: one row per width, widest first (the teacher), and "
        "per method at that width; one column per objective, scratch first."
    ),
    "training_curves": (
        "Generator (adversarial part), discriminator and distillation losses per logged step of every trained "
        "model (quantized models are not trained); one row per width; colours tell objectives apart (with several "
        "methods, methods), line styles objectives; lines are means over seeds and bands their range; a log scale "
        "where a loss spans more than a decade. A diverged run stops at the step where it diverged."
    ),
}


def figure_caption(name: str, results: Results) -> str:
    """The caption of figure ``name``: its text, or what its function writes from the results."""
    caption = CAPTIONS[name]
    return caption if isinstance(caption, str) else caption(results)


def report_tables(results: Results) -> list[Table]:
    """Every registered table the results give (``reports.tables.TABLES``): those of this module's imports."""
    return all_tables(results)


def _verdict_blocks(tables: dict[str, Table]) -> list[Block]:
    """The report's first section: what distillation buys, in a table and in sentences the seeds support, the
    smallest model that keeps the teacher's quality, and whether the backbones agree."""
    blocks: list[Block] = [Heading("What distillation buys")]
    distillation = tables["distillation"]
    if distillation.data.empty:
        blocks.append(Paragraph("No model of this grid was distilled (--kd none only): nothing to compare."))
    else:
        summary = " ".join(verdict_sentences(distillation)) or unresolved_text(distillation)
        blocks += [Paragraph(summary), TableBlock(distillation)]
    if not tables["iso-quality"].data.empty:
        blocks.append(TableBlock(tables["iso-quality"]))
    if "agreement" in tables:
        blocks.append(TableBlock(tables["agreement"]))
    else:
        blocks.append(Paragraph(
            "One feature network (LeNet) scored this grid: whether another backbone orders the models the same way "
            "is not measured (--inception-weights adds Inception-v3, and the report then shows Kendall's tau between "
            "them)."
        ))  # fmt: skip
    return blocks


def _summary_blocks(results: Results, tables: dict[str, Table]) -> list[Block]:
    sentences = grid_summary(results, tables, several_methods(results.runs))
    return [Heading("What this grid shows"), Paragraph(" ".join(sentences))] if sentences else []


def outline(results: Results, tables: dict[str, Table], figures: dict[str, Path | None]) -> list[Block]:
    """The report's content in reading order; a registered table placed nowhere below comes under "More tables"."""

    def figure(name: str, alt: str) -> FigureBlock:
        return FigureBlock(figures.get(name), alt, figure_caption(name, results))

    def table(name: str) -> list[Block]:
        return [TableBlock(tables[name])] if name in tables else []

    blocks: list[Block] = [
        Paragraph(grid_line(results)),
        Paragraph(_run_counts(results)),
        *([Paragraph(text)] if (text := mismatch_text(results)) else []),
        *([Paragraph(text)] if (text := load_text(results)) else []),
        *_summary_blocks(results, tables),
        *_verdict_blocks(tables),
        Heading("Quality against cost"),
        figure("pareto", "Pareto fronts of stored size and latency against FID"),
        Heading("Best model at each size"),
        *table("best-by-size"),
        *([Heading("Train once or train each"), *table("train-once")] if "train-once" in tables else []),
        Heading("Main results"),
        *table("cost"),
        *table("quality"),
        *(TableBlock(other) for name, other in tables.items() if name.startswith("quality-")),
        Heading("Quality against compression"),
        figure("quality_vs_compression", "FID and IS against compression ratio"),
        Heading("Distillation gain on every metric"),
        *table("gain"),
        Heading("Speed against MACs"),
        figure("speedup_vs_macs", "Measured speed-up against MAC reduction, per backend and device"),
        *([Heading("Deployment"), *table("deployment")] if "deployment" in tables else []),
        Heading("Sizes against the original project"),
        *table("sizes"),
        Heading("Samples"),
        figure("samples", "Sample grids of every model"),
        Heading("Training curves"),
        figure("training_curves", "Training losses against step"),
    ]
    placed = {block.table.name for block in blocks if isinstance(block, TableBlock)} | {"runs"}
    more = [TableBlock(other) for name, other in tables.items() if name not in placed]
    more = [Heading("More tables"), *more] if more else []
    return [*blocks, *more, Heading("Every run"), *table("runs"), Paragraph(FILES_NOTE)]


FILES_NOTE = (
    f"Every table is also in {TABLES_DIR}/ as CSV (full precision), Markdown and LaTeX (booktabs, graphicx); every "
    f"figure in {FIGURES_DIR}/ as PNG and SVG."
)


def to_markdown(blocks: list[Block], report_dir: Path) -> str:
    """``report.md``: Markdown tables, figures as PNG links relative to ``report_dir``."""
    parts = []
    for block in blocks:
        match block:
            case Heading(text):
                parts.append(f"## {text}")
            case Paragraph(text):
                parts.append(text)
            case TableBlock(table):
                files = ", ".join(f"[{ext}]({TABLES_DIR}/{table.name}.{ext})" for ext in ("csv", "md", "tex"))
                parts.append(f"**{table.title}** ({files})\n\n{table.markdown()}\n\n{table.caption}")
            case FigureBlock(None, alt, _):
                parts.append(f"*Not drawn: the results hold no data for {alt.lower()}.*")
            case FigureBlock(path, alt, caption):
                link = path.relative_to(report_dir).as_posix()
                parts.append(f"![{alt}]({link})\n\n{caption} ([SVG]({Path(link).with_suffix('.svg').as_posix()}))")
    return "\n\n".join(parts) + "\n"


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
.grid { font-weight: 600; }
.table { overflow-x: auto; margin: 0.5em 0; }
table { border-collapse: collapse; font-size: 0.85em; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; }
td { white-space: nowrap; }
th { vertical-align: bottom; }
thead th { border-bottom: 2px solid #444; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3em; }
.caption, figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; height: auto; }
figure { margin: 1em 0; }
"""


def to_html(blocks: list[Block]) -> str:
    """``report.html``: one file, tables as HTML and figures as base64 data URIs, no external assets; each table
    and figure links its files beside the page (tables/, figures/)."""
    body = []
    for index, block in enumerate(blocks):
        match block:
            case Heading(text):
                body.append(f"<h2>{html.escape(text)}</h2>")
            case Paragraph(text):
                css = ' class="grid"' if index == 0 else ""
                body.append(f"<p{css}>{html.escape(text)}</p>")
            case TableBlock(table):
                rendered = table.html().replace("<table>", f"<table><caption>{html.escape(table.title)}</caption>", 1)
                files = " · ".join(
                    f'<a href="{TABLES_DIR}/{table.name}.{ext}">{label}</a>'
                    for ext, label in (("csv", "CSV"), ("md", "Markdown"), ("tex", "LaTeX"))
                )
                body.append(
                    f'<div class="table">{rendered}</div><p class="caption">{html.escape(table.caption)} ({files})</p>'
                )
            case FigureBlock(None, alt, _):
                body.append(f"<p><em>Not drawn: the results hold no data for {html.escape(alt.lower())}.</em></p>")
            case FigureBlock(path, alt, caption):
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                files = (f'<a href="{FIGURES_DIR}/{path.stem}.png">PNG</a> · '
                         f'<a href="{FIGURES_DIR}/{path.stem}.svg">SVG</a>')  # fmt: skip
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
                    f"<figcaption>{html.escape(caption)} ({files})</figcaption></figure>"
                )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>gan-kd-bench report</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>gan-kd-bench report</h1>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(results: Results, report_dir: Path, checkpoint: Callable[[], None] = lambda: None) -> Path:
    """Write the tables, figures, ``report.md`` and ``report.html`` of ``results`` under ``report_dir``.

    ``checkpoint()`` is called between tables and figures: a caller that must stop on request raises there."""
    tables = {table.name: table for table in report_tables(results)}
    for table in tables.values():
        checkpoint()
        write_table(table, report_dir / TABLES_DIR)
    figures: dict[str, Path | None] = {}
    for name, draw in FIGURES.items():
        checkpoint()
        figure = draw(results)
        if figure is None:
            for stale in (report_dir / FIGURES_DIR).glob(f"{name}.*"):
                stale.unlink()  # a figure from an earlier report must not outlive its data
        figures[name] = save(figure, report_dir / FIGURES_DIR, name) if figure is not None else None
    blocks = outline(results, tables, figures)
    (report_dir / "report.md").write_text(to_markdown(blocks, report_dir), encoding="utf-8")
    (report_dir / "report.html").write_text(to_html(blocks), encoding="utf-8")
    return report_dir
