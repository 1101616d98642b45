"""The report's tables, each built as numbers (written as CSV) and as text (written as Markdown and LaTeX).

A model is one ``GROUP``: a dataset, a compression method (width, or pruning with its channel ranking), its
quantization, a width and a distillation objective; its seeds are averaged.

1. ``best-by-size``: the lowest-FID model within each width's stored size, and the best of another method.
2. ``cost`` and ``quality``: per model, mean ± 95% interval over seeds; cost with run status; quality below the
   real-data and untrained-generator rows of ``references.csv``, which calibrate every score. Two tables rather
   than one, so that each fits a page and a screen.
3. ``sizes``: the original project's size table reproduced from our measured bytes, in its units, with the
   pruned and quantized generators below it.
4. ``gain``: what distillation changes against no distillation with the same method, width and seed.
5. ``train-once``: train once or train each: at every width cut from a once-for-all generator or trained online,
   the FID and training seconds of every way to a model of that width, then each way's total over those widths,
   a shared once-for-all generator (supernet) or teacher counted once.
6. ``runs``: every run, diverged ones included, with its headline numbers.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.base.layout import SCRATCH, SOURCE_CHECKED, STATUS_DONE, TEACHER_WIDTH, WIDTH
from bench.base.metric_registry import BACKBONE_NAMES, PRIMARY_BACKBONE
from bench.base.registry import Registry
from reports.load import (
    LABELS,
    MODEL_KEYS,
    REPORT_ORDER,
    STORED_AS_FP32,
    Results,
    add_labels,
    in_report_order,
    several_methods,
)
from reports.metrics import (
    BY_COLUMN,
    COST,
    LOWER,
    QUALITY,
    Metric,
    direction_note,
    format_value,
    has_values,
    present,
    summary_texts,
)
from reports.stats import STATS, summarise
from reports.timing import (
    batch_text,
    flag_note,
    flagged_groups,
    headline_basis,
    mark,
    noise_threshold,
    speed_label,
)

GROUP = MODEL_KEYS  # one model
SETTINGS = [key for key in GROUP if key != "kd"]  # what a distilled model is paired on with a scratch one

ABSENT = "–"


@dataclass(frozen=True)
class Table:
    """One table: ``data`` is what the CSV holds, ``display`` the same rows as text for Markdown and LaTeX.

    A display cell longer than ``MAX_CELL`` characters (or holding a line break) is shown on several lines: joined
    by ``<br>`` in Markdown and HTML, stacked in LaTeX."""

    name: str  # file stem
    title: str
    caption: str
    data: pd.DataFrame
    display: pd.DataFrame

    def markdown(self) -> str:
        return _tabulate(self.display, "pipe", lambda lines: "<br>".join(lines))

    def latex(self) -> str:
        """booktabs LaTeX whose header cells wrap onto short lines: long headers, not values, set a table's width."""
        lines = _tabulate(self.display, "latex_booktabs", _latex_lines).splitlines()
        header = lines.index("\\toprule") + 1
        cells = [_stacked(str(label)) for label in self.display.columns]
        lines[header] = " & ".join(cells) + " \\\\"
        return "\n".join(lines)

    def html(self) -> str:
        return _tabulate(self.display, "html", lambda lines: "<br>".join(html.escape(line) for line in lines))


MAX_CELL = 60  # characters per line of a table cell: longer text wraps at its spaces


def cell_lines(text: str, width: int = MAX_CELL) -> list[str]:
    """``text`` as the lines a table shows: its own line breaks kept, each line wrapped at ``width`` characters
    (a single word longer than that stays whole)."""
    return [
        line
        for part in text.split("\n")
        for line in textwrap.wrap(part, width, break_long_words=False, break_on_hyphens=False) or [""]
    ]


def _tabulate(display: pd.DataFrame, fmt: str, join: Callable[[list[str]], str]) -> str:
    """``display`` in tabulate's ``fmt``; a cell of several lines (``cell_lines``) is written by ``join``, in place
    of a placeholder that tabulate's escaping leaves as it is."""
    if display.empty:
        if not len(display.columns):
            return ABSENT
        return _tabulate(pd.DataFrame([[ABSENT] * len(display.columns)], columns=display.columns), fmt, join)
    text = display.fillna(ABSENT).astype(str)
    align = ["left" if _is_label(text[col]) else "right" for col in text]
    wrapped: dict[str, str] = {}

    def placeholder(cell: str) -> str:
        lines = cell_lines(cell)
        if len(lines) == 1:
            return cell
        key = f"WRAPPEDCELL{len(wrapped)}X"
        wrapped[key] = join(lines)
        return key

    table = tabulate(
        [[placeholder(cell) for cell in row] for row in text.values.tolist()],
        headers=list(text.columns),
        tablefmt=fmt,
        disable_numparse=True,  # keep the digits we chose: tabulate would re-format "12.30" as "12.3"
        colalign=align,
    )
    for key, cell in wrapped.items():
        table = table.replace(key, cell, 1)
    return table


def _latex_lines(lines: list[str]) -> str:
    body = " \\\\ ".join(_latex_escape(line) for line in lines)
    return "\\begin{tabular}[t]{@{}l@{}}" + body + "\\end{tabular}"


HEADER_LINE = 11  # characters per line of a LaTeX header cell


def _stacked(label: str) -> str:
    """A header cell as lines of at most ``HEADER_LINE`` characters, stacked in a one-column tabular."""
    lines = [_latex_escape(line) for line in textwrap.wrap(label, HEADER_LINE, break_long_words=False)] or [""]
    return "\\begin{tabular}[b]{@{}c@{}}" + " \\\\ ".join(lines) + "\\end{tabular}"


def _is_label(column: pd.Series) -> bool:
    """Whether a column holds text (aligned left) rather than numbers, intervals and dashes (aligned right)."""
    numeric = column.str.replace(r"[\d,.±×\s–\-+]", "", regex=True)
    return bool((numeric != "").any())


def write_table(table: Table, directory: Path) -> list[Path]:
    """Write ``{name}.csv``, ``{name}.md`` and ``{name}.tex`` under ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    csv, md, tex = (directory / f"{table.name}.{ext}" for ext in ("csv", "md", "tex"))
    table.data.to_csv(csv, index=False)
    md.write_text(f"**{table.title}**\n\n{table.markdown()}\n\n{table.caption}\n", encoding="utf-8")
    tex.write_text(
        "% generated by `python -m reports`; needs \\usepackage{booktabs}, \\usepackage{graphicx} and a UTF-8 "
        "LaTeX (2018 or later)\n"
        "\\begin{table}[htbp]\n\\centering\n"
        f"\\caption{{{_latex_escape(table.title)}. {_latex_escape(table.caption)}}}\n"
        f"\\label{{tab:{table.name}}}\n"
        # small type and tight columns; a table still wider than the text is scaled down to fit, never up
        "\\footnotesize\\setlength{\\tabcolsep}{4pt}\n"
        f"\\setbox0=\\hbox{{%\n{table.latex()}%\n}}\n"
        "\\ifdim\\wd0>\\linewidth\\resizebox{\\linewidth}{!}{\\box0}\\else\\box0\\fi\n"
        "\\end{table}\n",
        encoding="utf-8",
    )
    return [csv, md, tex]


TableBuilder = Callable[[Results], "Table | None"]  # None: the results hold nothing the table would show


class TableRegistry(Registry[TableBuilder]):
    """The report's tables by name (the file stem of each), each with the function that builds it from the results.

    A module that registers tables is imported by ``reports.document``; a table the report's outline does not
    place itself is shown under "More tables"."""

    def remove(self, name: str) -> TableBuilder:
        """Take ``name``'s entry out again (a table registered for a while, as a test does)."""
        return self._entries.pop(self.check(name))


TABLES = TableRegistry("report table")


def register_table(name: str) -> Callable[[TableBuilder], TableBuilder]:
    """Decorator: register a function ``results -> Table | None`` as the table ``name``."""
    return TABLES.register(name)


def all_tables(results: Results) -> list[Table]:
    """Every registered table the results give, in registration order (a builder that returns None is left out).

    Raises ``ValueError`` when a builder's table is not named as it was registered: its files would be misnamed."""
    tables = []
    for name in TABLES:
        table = TABLES[name](results)
        if table is not None and table.name != name:
            raise ValueError(f"report table {name!r} built a table named {table.name!r}")
        tables += [table] if table is not None else []
    return tables


def _latex_escape(text: str) -> str:
    special = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\^{}",
        "<": r"\textless{}",
        ">": r"\textgreater{}",
        "`": "",
    }
    return "".join(special.get(char, char) for char in text)


def _labelled(data: pd.DataFrame) -> pd.DataFrame:
    """Per-model ``data`` with its labels after the model keys, in the report's order."""
    data = add_labels(data)
    front = [*GROUP, *LABELS]
    return in_report_order(data[front + [col for col in data if col not in front]])


def _several_datasets(results: Results) -> bool:
    return results.runs["dataset"].nunique() > 1


def key_columns(results: Results, data: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """The text columns that name each row of ``data``: {column of data: header}, less the dataset and method
    where the results hold only one."""
    shown = {col: header for col, header in labels.items()
             if not (col == "dataset" and not _several_datasets(results))
             and not (col == "method_label" and not several_methods(results.runs))}  # fmt: skip
    return pd.DataFrame({header: data[col].astype(str) for col, header in shown.items()})


def _quality_of_finished(runs: pd.DataFrame, metrics: list[Metric]) -> pd.DataFrame:
    """``runs`` with the quality metrics of unfinished (diverged) runs blanked: they are not averaged."""
    runs = runs.copy()
    unfinished = runs["status"] != STATUS_DONE
    for metric in metrics:
        if metric.quality:
            runs.loc[unfinished, metric.column] = math.nan
    return runs


def _status(group: pd.DataFrame) -> str:
    bad = group[group["status"] != STATUS_DONE]
    if bad.empty:
        return STATUS_DONE
    details = []
    for row in bad.sort_values("seed").itertuples():
        step = pd.to_numeric(getattr(row, "diverged_step", math.nan), errors="coerce")
        at = f" at step {int(step)}" if pd.notna(step) else ""
        details.append(f"seed {row.seed}{at}")
    states = "/".join(sorted(bad["status"].unique()))
    return f"{len(bad)} of {len(group)} {states} ({', '.join(details)})"


def per_model(results: Results) -> tuple[pd.DataFrame, pd.DataFrame, list[Metric]]:
    """Per model (``GROUP``): every present metric as mean ± 95% Student-t interval over seeds, with run status;
    returns (numbers, text, the metrics)."""
    runs = results.runs
    metrics = present(COST, runs) + present(QUALITY, runs)
    finished = _quality_of_finished(runs, metrics)
    for metric in metrics:
        finished[metric.column] = finished[metric.column].astype(float) * metric.scale
    summary = summarise(finished, GROUP, {m.column: m.report_name for m in metrics})
    counts = runs.groupby(GROUP).agg(
        model=("role", lambda roles: "teacher" if (roles == "teacher").any() else "student"),
        seeds=("seed", "nunique"),
        runs=("run_id", "count"),
        diverged=("status", lambda status: int((status != STATUS_DONE).sum())),
    )
    status = runs.groupby(GROUP)[["seed", "status", *(["diverged_step"] if "diverged_step" in runs else [])]]
    counts["status"] = status.apply(_status)
    data = _labelled(counts.join(summary).reset_index())

    names = {"dataset": "dataset", "model": "model", "method_label": "method", "width": "width",
             "objective": "objective", "seeds": "seeds", "status": "status"}  # fmt: skip
    display = key_columns(results, data, names)
    for metric in _shown_sizes(metrics, runs):
        display[metric.label] = summary_texts(metric, data, metric.report_name)
    return data, display, metrics


def _shown_sizes(metrics: list[Metric], runs: pd.DataFrame) -> list[Metric]:
    """``metrics`` less the stored sizes where no model is quantized (they equal the fp32 sizes), else less the fp32
    sizes (every float model's equals its stored one; the stored one is what a quantized model takes)."""
    quantized = (runs["quantize"] != "").any()
    hidden = set(STORED_AS_FP32.values()) if quantized else set(STORED_AS_FP32)
    return [metric for metric in metrics if metric.column not in hidden]


INTERVAL_NOTE = (
    "From three seeds: mean ± 95% Student-t confidence interval over seeds, written [low, high] where it is "
    "clipped to the metric's range (a precision cannot exceed 1). From two seeds: mean (lowest..highest): an "
    "interval from two values would be 12.7 standard errors wide and says nothing. A value alone comes from one "
    "seed."
)


def _half(results: Results, which: tuple[Metric, ...], keep_status: bool) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """The rows of ``per_model`` with only the metrics of ``which`` (and the status column if asked)."""
    data, display, metrics = per_model(results)
    chosen = [metric for metric in metrics if metric in which]
    stems = tuple(f"{metric.report_name}_" for metric in chosen)
    keys = [*GROUP, *LABELS, "model", "seeds", "runs", "diverged", "status"]
    data = data[[col for col in data if col in keys or col.startswith(stems)]]
    labels = {"dataset", "model", "method", "width", "objective", "seeds"} | ({"status"} if keep_status else set())
    shown = [metric.label for metric in chosen if metric.label in display]
    display = display[[col for col in display if col in labels] + shown]
    return data, display, chosen


SPEED_COLUMNS = ("latency_ms_", "throughput_ips_")  # results.csv's speed columns, per device


def _speed_cells(results: Results, data: pd.DataFrame, display: pd.DataFrame, metrics: list[Metric]):
    """``display`` with each speed column headed by its backend and batch and its cells whose timing latency.csv
    flags marked ``FLAG``; and the sentences that say how they were measured and why cells are marked."""
    basis = headline_basis(results)
    display, marked = display.copy(), []
    speed = [m for m in metrics if m.column.startswith(SPEED_COLUMNS) and m.label in display]
    for metric in speed:
        device = metric.column.rsplit("_", 1)[1]
        batch = basis.latency_batch if metric.column.startswith("latency") else basis.throughput_batch
        flags = flagged_groups(results, GROUP, device, batch).reindex(pd.MultiIndex.from_frame(data[GROUP])).eq(True)
        shown = (display[metric.label] != ABSENT).to_numpy()
        display[metric.label] = mark(list(display[metric.label]), list(flags.any(axis=1) & shown))
        marked.append(flags[shown])
        display = display.rename(columns={metric.label: speed_label(metric, basis)})
    if not speed:
        return display, ""
    cells = sum(len(flags) for flags in marked)
    measured = {
        "latency": f"its median (p50) latency per call at {batch_text(basis.latency_batch)}",
        "throughput": f"its throughput (images / s = batch / p50) at {batch_text(basis.throughput_batch)}",
    }
    parts = [text for kind, text in measured.items() if any(m.column.startswith(kind) for m in speed)]
    fastest = "" if results.latency.empty else "; the deployment table gives each model's fastest backend"
    how = f"Speed as results.csv holds it, {basis.backend} PyTorch's: {' and '.join(parts)}{fastest}."
    return display, " ".join(
        part for part in (how, flag_note(pd.concat(marked), cells, "speed cells", noise_threshold(results))) if part
    )


@register_table("cost")
def cost_table(results: Results) -> Table:
    """Per model: size, MACs, speed and compression, with run status."""
    data, display, metrics = _half(results, COST, keep_status=True)
    display, speed = _speed_cells(results, data, display, metrics)
    stored = (
        " Stored size: the generator as stored, a quantized model's payload; the fp32 sizes are in the CSV."
        if (results.runs["quantize"] != "").any()
        else ""
    )
    caption = (
        f"{INTERVAL_NOTE} Sizes and MACs are the same for every seed and carry none. Compression = the "
        f"teacher's value / this model's value; kd = none is training from scratch.{stored} "
        f"{direction_note(metrics)} {speed}"
    ).rstrip()
    return Table("cost", "Cost per model", caption, data, display)


ODD_VALUES = (
    "Two values that look wrong are not: KID is an unbiased estimate, so a model close to the data can score "
    "slightly below 0; and a collapsed or untrained generator can reach precision 1.00, because precision only asks "
    "whether each sample lies inside the real images' k-nearest-neighbour balls, and samples crowded into one "
    "dense region do. Density (how many real neighbourhoods hold each sample) and coverage (the share of real "
    "images with a sample nearby) show such a collapse: coverage near 0."
)


# references.csv's rows, as the quality table names them
REFERENCES = {"real-test": "real test images", "untrained": "untrained generator"}
REFERENCES_NOTE = (
    "The first rows calibrate every score: real test images scored against the training split as a generator's "
    "samples are (what a perfect generator reaches) and an untrained generator (the other end); n is the number "
    "of images scored, the generators' own where the test split has that many."
)


@register_table("quality")
def quality_table(results: Results) -> Table:
    """Per model: the primary backbone's scores with class consistency and teacher L1, below the real-data and
    untrained-generator rows that calibrate each one; diverged runs are left out of the means."""
    metrics = tuple(metric for metric in QUALITY if metric.backbone in (PRIMARY_BACKBONE, None))
    return _quality_table(results, metrics, "quality", "Quality per model", ODD_VALUES)


def backbone_quality_table(backbone: str, results: Results) -> Table | None:
    """The quality table of another backbone (``quality-resnet``, ...), None where it scored none of these runs:
    one table with every backbone's columns would not fit a page."""
    metrics = tuple(metric for metric in QUALITY if metric.backbone == backbone)
    if not present(metrics, results.runs):
        return None
    title = f"Quality per model on the {BACKBONE_NAMES[backbone]} backbone"
    return _quality_table(results, metrics, f"quality-{backbone}", title)


for _backbone in dict.fromkeys(
    metric.backbone for metric in QUALITY if metric.backbone not in (PRIMARY_BACKBONE, None)
):
    TABLES.add(f"quality-{_backbone}", partial(backbone_quality_table, _backbone))


def _quality_table(results: Results, which: tuple[Metric, ...], name: str, title: str, note: str = "") -> Table:
    data, display, metrics = _half(results, which, keep_status=False)
    data, display, calibrated = _with_references(results, data, display, metrics)
    caption = (
        f"{REFERENCES_NOTE + ' ' if calibrated else ''}{INTERVAL_NOTE} Quality metrics of diverged runs are left out "
        f"of the means (see the cost table's status). {direction_note(metrics)} {note}"
    ).rstrip()
    return Table(name, title, caption, data, display)


def _with_references(
    results: Results, data: pd.DataFrame, display: pd.DataFrame, metrics: list[Metric]
) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """``data`` and ``display`` below references.csv's rows (model: 'real test images (n = 360)', ...), and
    whether there were any."""
    refs = results.references
    if refs.empty or "reference" not in refs:
        return data, display, False
    refs = refs[refs["reference"].isin(list(REFERENCES))].reset_index(drop=True)
    if refs.empty:
        return data, display, False
    counts = refs.get("quality_n_fake", pd.Series(math.nan, index=refs.index))
    names = [f"{REFERENCES[ref]} (n = {int(n):,})" if pd.notna(n) else REFERENCES[ref]
             for ref, n in zip(refs["reference"], counts, strict=True)]  # fmt: skip
    numbers = pd.DataFrame({"model": names, "dataset": refs.get("dataset")})
    text = pd.DataFrame("", index=refs.index, columns=display.columns)
    text["model"] = names
    if "dataset" in display:
        text["dataset"] = refs["dataset"].astype(str)
    for metric in metrics:
        values = refs.get(metric.column, pd.Series(math.nan, index=refs.index)).astype(float) * metric.scale
        numbers[f"{metric.report_name}_mean"] = values
        if metric.label in text:
            text[metric.label] = [format_value(metric, value) for value in values]
    return (
        pd.concat([numbers, data], ignore_index=True),
        pd.concat([text, display], ignore_index=True),
        True,
    )


BUDGET_SLACK = 0.01  # a budget admits 1% more bytes: a pruned generator meets its width's parameter count to
# the nearest channel, and a checkpoint's container bytes differ slightly from one architecture to the next
BEST = ["dataset", "budget_width"]  # one row of the best-by-size table


FID, STORED, CPU_LATENCY = BY_COLUMN["fid_lenet"], BY_COLUMN["g_bytes_stored"], BY_COLUMN["latency_ms_cpu"]


def _lowest_fid(frame: pd.DataFrame) -> pd.DataFrame:
    """Per size budget, the row of ``frame`` with the lowest mean FID (the smaller model on a tie)."""
    fid_mean, stored = f"{FID.report_name}_mean", f"{STORED.report_name}_mean"
    ordered = frame.sort_values([*BEST, fid_mean, stored], ascending=[True, False, True, True], kind="stable")
    return ordered.groupby(BEST, sort=False).head(1)


def best_by_size(results: Results) -> pd.DataFrame:
    """Per size budget (each width's stored size): the lowest-FID model that fits it, and the runner-up columns
    (``runner_up_*``), the lowest-FID model of another method that fits it, and the FID margin between them."""
    fid_mean, stored = f"{FID.report_name}_mean", f"{STORED.report_name}_mean"
    fid_stats = [f"{FID.report_name}_{stat}" for stat in STATS]
    data = per_model(results)[0]
    data = data.assign(**{col: math.nan for col in (*fid_stats, stored) if col not in data})  # none fits
    at_width = data[(data["method"] == WIDTH) & (data["quantize"] == "")]
    budgets = at_width.groupby(["dataset", "width"])[stored].median().rename("budget_kib").rename_axis(BEST)
    fits = budgets.reset_index().merge(data.dropna(subset=[fid_mean, stored]), on="dataset")
    fits = fits[fits[stored] <= fits["budget_kib"] * (1 + BUDGET_SLACK)]
    best = _lowest_fid(fits)
    others = fits.merge(best[[*BEST, "method_label"]], on=BEST, suffixes=("", "_best"))
    runner_up = _lowest_fid(others[others["method_label"] != others["method_label_best"]])
    runner_columns = ["series", "method_label", "width", *fid_stats]
    runner_up = runner_up[[*BEST, *runner_columns]].rename(columns={col: f"runner_up_{col}" for col in runner_columns})
    latency_stats = [col for col in (f"{CPU_LATENCY.report_name}_{stat}" for stat in STATS) if col in data]
    columns = list(dict.fromkeys([*BEST, "budget_kib", *GROUP, *LABELS, stored, *fid_stats, *latency_stats]))
    table = best[columns].merge(runner_up, on=BEST, how="left").reset_index(drop=True)
    return table.assign(fid_margin=table[f"runner_up_{fid_mean}"] - table[fid_mean])


BEST_CAPTION = (
    "Size budget of width W = the stored size of the fp32 generator trained at width W (method width, not "
    "quantized; median over its models and seeds). A model fits a budget when its stored bytes (a quantized "
    f"model's payload) are at most the budget plus {BUDGET_SLACK:.0%}, the slack a generator pruned to width "
    "W's parameter count may need. Best = the lowest mean FID over seeds among the models that fit; "
    "runner-up = the lowest among those of another method (each quantization counts as a method of its own). "
    f"Diverged runs are left out of the means. {INTERVAL_NOTE}"
)


@register_table("best-by-size")
def best_method_table(results: Results) -> Table:
    """At each width's stored size (the size budget), the lowest-FID model that fits it, and the lowest-FID model
    of another method that fits it (the runner-up), so the margin between methods shows."""
    table = best_by_size(results)
    display = key_columns(results, table, {"dataset": "dataset", "budget_width": "budget: width"})
    display["budget (KiB)"] = [format_value(STORED, kib) for kib in table["budget_kib"]]
    display["best model"] = table["series"]
    display["width"] = table["width"].astype(str)
    display[STORED.label] = [format_value(STORED, kib) for kib in table[f"{STORED.report_name}_mean"]]
    display[FID.label] = summary_texts(FID, table, FID.report_name)
    if f"{CPU_LATENCY.report_name}_mean" in table:
        display[CPU_LATENCY.label] = summary_texts(CPU_LATENCY, table, CPU_LATENCY.report_name)
    display, speed = _speed_cells(results, table, display, [CPU_LATENCY])
    display["runner-up (another method)"] = table["runner_up_series"].fillna(ABSENT)
    display["runner-up width"] = [ABSENT if pd.isna(width) else str(int(width)) for width in table["runner_up_width"]]
    display[f"runner-up {FID.label}"] = summary_texts(FID, table, f"runner_up_{FID.report_name}")
    caption = f"{BEST_CAPTION} {speed}".rstrip()
    return Table("best-by-size", "Best model at each size", caption, table, display)


# the original project's reported sizes (its README), in KiB: its "KB" is KiB and its "MB" is 1000 KiB
ORIGINAL = {  # width: (generator KiB, discriminator KiB, the way the original wrote them)
    512: (14_300.0, 2_600.0, "14.3 MB", "2.6 MB"),
    64: (618.0, 49.0, "618 KB", "49 KB"),
    32: (271.0, 17.0, "271 KB", "17 KB"),
}
ORIGINAL_CLAIM = {32: (52.75, 153.0)}  # the compression it states, teacher vs the c=32 student


def _original_units(kib: float, width: int) -> str:
    if not math.isfinite(kib):
        return ABSENT
    return f"{kib / 1000:.1f} MB" if width == TEACHER_WIDTH else f"{kib:.0f} KB"


def _measured_bytes(runs: pd.DataFrame, width: int, column: str) -> float:
    """Median measured bytes at ``width`` (the same for every run), preferring the original's rules."""
    if column not in runs:
        return math.nan
    rows = runs[runs["width"] == width]
    if width == TEACHER_WIDTH and (rows["role"] == "teacher").any():
        rows = rows[rows["role"] == "teacher"]
    if "disc_width" in rows and rows["disc_width"].isna().any():
        rows = rows[rows["disc_width"].isna()]  # ndf = ngf, as in the original
    values = rows[column].dropna()
    return float(values.median()) if len(values) else math.nan


def _compressed_sizes(runs: pd.DataFrame, teacher_bytes: float) -> list[dict]:
    """A row per pruned or quantized generator (method x width): its median stored bytes and compression."""
    compressed = runs[(runs["method"] != WIDTH) | (runs["quantize"] != "")]
    if compressed.empty or "g_bytes_stored" not in runs:
        return []
    keys = ["method", "prune_importance", "quantize", "method_label", "width"]
    sizes = in_report_order(compressed.groupby(keys, as_index=False)["g_bytes_stored"].median())
    return [
        {"model": "student", "method": label, "width": width, "g_bytes": stored, "g_kib": stored / 1024,
         "g_compression": teacher_bytes / stored}
        for label, width, stored in zip(sizes["method_label"], sizes["width"], sizes["g_bytes_stored"], strict=True)
    ]  # fmt: skip


def _size_row_name(model: str, method: str, width: int) -> str:
    return f"{model} (c={width})" if method == WIDTH else f"{method}, c={width}"


def _original_rows(trained_narrow: pd.DataFrame) -> list[dict]:
    """A row per width of the original's table: its generator and discriminator sizes and compressions beside
    ours, measured on the models trained at that width (method width, not quantized)."""
    teacher = {part: _measured_bytes(trained_narrow, TEACHER_WIDTH, f"{part}_bytes_fp32") for part in "gd"}
    rows = []
    for width, (g_kib, d_kib, g_text, d_text) in ORIGINAL.items():
        row = {"model": "teacher" if width == TEACHER_WIDTH else "student", "method": WIDTH, "width": width}
        for index, (part, kib, text) in enumerate((("g", g_kib, g_text), ("d", d_kib, d_text))):
            ours = _measured_bytes(trained_narrow, width, f"{part}_bytes_fp32")
            claim = ORIGINAL_CLAIM.get(width, (math.nan, math.nan))[index]
            row |= {
                f"{part}_bytes": ours,
                f"{part}_kib": ours / 1024,
                f"{part}_original_kib": kib,
                f"{part}_original_text": text,
                f"{part}_ours_over_original": ours / 1024 / kib,
                f"{part}_compression": teacher[part] / ours,
                f"{part}_compression_original": claim if math.isfinite(claim) else ORIGINAL[TEACHER_WIDTH][index] / kib,
                f"{part}_compression_original_claimed": math.isfinite(claim) or width == TEACHER_WIDTH,
            }
        rows.append(row)
    return rows


def _ratio(value: float, claimed: bool = True) -> str:
    if not math.isfinite(value):
        return ABSENT
    return f"{value:.2f}" + ("" if claimed else " (implied)")


def _size_display(data: pd.DataFrame) -> pd.DataFrame:
    """The size table's text: every row of ``data``, sizes in bytes and in the original's units, then compressions."""
    names = zip(data["model"], data["method"], data["width"], strict=True)
    display = pd.DataFrame({"model": [_size_row_name(*name) for name in names]})
    for part, name in (("g", "G"), ("d", "D")):
        display[f"{name} ours (bytes)"] = [f"{b:,.0f}" if math.isfinite(b) else ABSENT for b in data[f"{part}_bytes"]]
        display[f"{name} ours (original units)"] = [
            _original_units(kib, width) for kib, width in zip(data[f"{part}_kib"], data["width"], strict=True)
        ]
        display[f"{name} original"] = data[f"{part}_original_text"].fillna(ABSENT)
        display[f"{name} ours / original"] = [_ratio(v) for v in data[f"{part}_ours_over_original"]]
    for part, name in (("g", "G"), ("d", "D")):
        display[f"{name} compression ours (×)"] = [_ratio(v) for v in data[f"{part}_compression"]]
        original = zip(data[f"{part}_compression_original"], data[f"{part}_compression_original_claimed"], strict=True)
        display[f"{name} compression original (×)"] = [_ratio(v, claimed) for v, claimed in original]
    return display


def _size_caption(missing: list[str], compressed: bool) -> str:
    return (
        "Serialized fp32 state_dict sizes (BatchNorm buffers included). The original's KB is KiB "
        "(bytes / 1024) and its MB is 1000 KiB (14,295 KiB prints as 14.3 MB). It claims 52.75× generator and 153× "
        "discriminator compression for the c=32 student; for c=64 the original ratios are implied by its "
        "sizes. Compression = teacher bytes / student bytes."
        + (f" Widths of the original's table this grid did not train ({', '.join(missing)}) are left out, "
           "as are columns without a value; the CSV keeps every row." if missing else "")
        + (" Below the original's models, the pruned and quantized generators of this grid (c = the width whose "
           "size a pruned one was cut to, or a quantized one's source width): their bytes as stored (a quantized "
           "model's payload, median over runs); compression = the teacher's bytes / theirs. The original has no "
           "counterpart." if compressed else "")
    )  # fmt: skip


@register_table("sizes")
def size_table(results: Results) -> Table:
    """The original's generator/discriminator size table next to our measured fp32 ``state_dict`` bytes, then the
    stored bytes of the pruned and quantized generators."""
    runs = results.runs
    trained_narrow = runs[(runs["method"] == WIDTH) & (runs["quantize"] == "")]  # what the original's rows were
    compressed = _compressed_sizes(runs, _measured_bytes(trained_narrow, TEACHER_WIDTH, "g_bytes_stored"))
    data = pd.DataFrame(_original_rows(trained_narrow) + compressed)
    # show what applies: the widths this grid trained, and the columns that hold a value for one of them
    trained = (data["g_bytes"].notna() | data["d_bytes"].notna()).to_numpy()
    display = _size_display(data)[trained]
    if len(display):  # with no row left the header stays, above one row of dashes
        display = display[[col for col in display if (display[col] != ABSENT).any()]]
    missing = [str(width) for width in data.loc[~trained, "width"]]
    caption = _size_caption(missing, bool(compressed))
    return Table("sizes", "Model sizes against the original project", caption, data, display)


@register_table("gain")
def gain_table(results: Results) -> Table:
    """Per model with distillation: metric with KD minus metric without, same method, width and seed."""
    runs = results.runs
    metrics = present(QUALITY, runs)
    columns = [m.column for m in metrics]
    keys = [*SETTINGS, "seed"]
    finished = runs[runs["status"] == STATUS_DONE]
    scratch = finished[finished["kd"] == SCRATCH].drop_duplicates(keys)[keys + columns]
    distilled = runs[runs["kd"] != SCRATCH]
    pairs = finished[finished["kd"] != SCRATCH][keys + ["kd"] + columns].merge(
        scratch, on=keys, suffixes=("", "_scratch")
    )
    for column in columns:
        pairs[column] = pairs[column] - pairs[f"{column}_scratch"]
    summary = summarise(pairs, GROUP, {m.column: f"{m.report_name}_gain" for m in metrics})
    counts = distilled.groupby(GROUP).agg(kd_runs=("run_id", "count"))
    counts["pairs"] = pairs.groupby(GROUP).size()
    counts["pairs"] = counts["pairs"].fillna(0).astype(int)
    counts["left_out"] = counts["kd_runs"] - counts["pairs"]
    data = _labelled(counts.join(summary).reset_index())

    names = {"dataset": "dataset", "method_label": "method", "width": "width", "objective": "objective",
             "pairs": "seed pairs", "left_out": "left out"}  # fmt: skip
    display = key_columns(results, data, names)
    for metric in metrics:
        sign = "< 0" if metric.better == LOWER else "> 0"
        change = replace(metric, bounds=(None, None))  # a difference may take either sign
        display[f"{metric.label} change ({sign} better)"] = summary_texts(change, data, f"{metric.report_name}_gain")
    method = (
        " A pruned student is compared with the one of the same pruning fine-tuned without distillation, a "
        "quantized one with the one of the same quantization."
        if several_methods(results.runs)
        else ""
    )
    caption = (
        "Change = metric of the distilled student minus metric of the scratch student of the same width "
        "and seed (same batches and noise), mean ± 95% Student-t interval over seed pairs; a value without ± "
        f"comes from one pair.{method} Pairs where either run diverged are left out. A negative change is an "
        f"improvement where lower is better, a positive one where higher is better: {direction_note(metrics)}"
    )
    return Table("gain", "Distillation gain over training from scratch", caption, data, display)


ONCE_FOR_ALL, ONLINE = "once-for-all", "online"  # the methods' names in results.csv (compress is not imported)
OWN_SECONDS, LOOP_SECONDS = "train_own_seconds", "train_seconds"
WAY = ["dataset", "method", "prune_importance", "quantize", "kd"]  # a way to a model of some width: GROUP less width
TEACHER_KEYS = ("dataset", "family", "teacher_width", "seed")  # what names a run's teacher run, where results hold it
SECONDS = {"own_s": "own_seconds", "needs_s": "needs_first_seconds", "total_s": "total_seconds"}  # CSV stems


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]`` as floats; NaN throughout where the results lack the column (written before it existed)."""
    values = frame[name] if name in frame else pd.Series(math.nan, index=frame.index)
    return pd.to_numeric(values, errors="coerce").astype(float)


def _prerequisites(shown: pd.DataFrame, floats: pd.DataFrame) -> list[tuple[str | None, ...]]:
    """Per row of ``shown``, the runs trained first that it is made from or distilled from (None for one the results
    do not hold): its ``source_run`` (a pruned model's teacher, a cut's supernet) and, for a distilled model, the
    seed's teacher; an online student needs none (its own training includes its co-trained teacher)."""
    keys = [key for key in TEACHER_KEYS if key in floats]
    teachers = floats[floats["role"] == "teacher"].drop_duplicates(keys)[[*keys, "run_id"]]
    teacher = shown[keys].merge(teachers, on=keys, how="left")["run_id"]
    needs = []
    for source, kd, method, seed_teacher in zip(
        shown["source_run"], shown["kd"], shown["method"], teacher, strict=True
    ):
        distilled = kd != SCRATCH and method != ONLINE
        found = seed_teacher if isinstance(seed_teacher, str) else None
        needs.append(tuple(dict.fromkeys([*([source] if source else []), *([found] if distilled else [])])))
    return needs


def _prerequisite_name(run_id: str | None, floats: pd.DataFrame) -> str:
    rows = floats[floats["run_id"] == run_id]
    if rows.empty:
        return "a run not in the results"
    if (rows["role"] == "teacher").any():
        return "teacher"
    return "supernet" if (rows["method"] == ONCE_FOR_ALL).any() else "source run"


def _seconds_basis(floats: pd.DataFrame, counted: set[str]) -> str:
    """``OWN_SECONDS`` where every run in ``counted`` has its own training time, else ``LOOP_SECONDS``: one table
    never mixes a run's own time with a loop's wall time."""
    own = _column(floats, OWN_SECONDS)[floats["run_id"].isin(counted)]
    return OWN_SECONDS if len(own) and own.notna().all() else LOOP_SECONDS


def _needed_seconds(needed: tuple[str | None, ...], seconds: dict[str, float]) -> float:
    """The seconds of the runs ``needed``, each once; NaN where nothing is needed or one's time is unknown."""
    return sum(seconds.get(run, math.nan) if run else math.nan for run in needed) if needed else math.nan


def train_once_runs(results: Results) -> tuple[pd.DataFrame, dict[str, float], str] | None:
    """The finished float runs at every width below the teacher's where a once-for-all cut or an online student
    finished, each with its own seconds (``own_s``), the runs it needs first (``needs_runs``, named in
    ``needs_first``) and their seconds (``needs_s``), and the sum (``total_s``); every float run's seconds by run id;
    and the column those seconds come from. None where no such run finished."""
    runs = results.runs.assign(teacher_width=_column(results.runs, "teacher_width").fillna(TEACHER_WIDTH))
    floats = runs[runs["quantize"] == ""]
    done = floats[floats["status"] == STATUS_DONE]
    below = done[done["width"] < done["teacher_width"]]
    anchors = below[below["method"].isin([ONCE_FOR_ALL, ONLINE])][["dataset", "width"]].drop_duplicates()
    if anchors.empty:
        return None
    shown = below.merge(anchors, on=["dataset", "width"])
    needs = _prerequisites(shown, floats)
    cut = (shown["method"] == ONCE_FOR_ALL).to_numpy()  # made from its supernet without training
    counted = set(shown.loc[~cut, "run_id"]) | {run for needed in needs for run in needed if run}
    basis = _seconds_basis(floats, counted)
    seconds = dict(zip(floats["run_id"], _column(floats, basis), strict=True))
    shown = shown.assign(
        own_s=[0.0 if is_cut else seconds[run] for run, is_cut in zip(shown["run_id"], cut, strict=True)],
        needs_runs=needs,
        needs_first=[", ".join(_prerequisite_name(run, floats) for run in needed) for needed in needs],
        needs_s=[_needed_seconds(needed, seconds) for needed in needs],
    )
    needs_nothing = shown["needs_runs"].map(len) == 0  # an unknown prerequisite's time leaves the total unknown
    return shown.assign(total_s=shown["own_s"] + shown["needs_s"].mask(needs_nothing, 0.0)), seconds, basis


def _per_width(shown: pd.DataFrame) -> pd.DataFrame:
    """Per model at each width: FID and seconds over seeds (``summarise``), its seeds and what it needs first."""
    fid = shown.assign(**{FID.column: _column(shown, FID.column)})
    summary = summarise(fid, GROUP, {FID.column: FID.report_name, **SECONDS})
    counts = shown.groupby(GROUP).agg(seeds=("seed", "nunique"), needs_first=("needs_first", "first"))
    data = counts.join(summary).reset_index()
    return data.assign(row="width", widths=data["width"].astype(str))


def _totals(shown: pd.DataFrame, seconds: dict[str, float]) -> pd.DataFrame:
    """Per way, over the widths it was made at: per seed its own seconds summed plus each run it needs first once
    (one supernet for all its cuts, one teacher for all its students), averaged over the seeds that finished it at
    every one of those widths (a seed missing one would look cheaper)."""
    widths = shown.groupby(WAY)["width"].agg(lambda values: tuple(sorted(set(values), reverse=True)))
    per_seed = []
    for (*way, seed), group in shown.groupby([*WAY, "seed"]):
        if tuple(sorted(set(group["width"]), reverse=True)) != widths[tuple(way)]:
            continue
        needed = tuple(dict.fromkeys(run for runs in group["needs_runs"] for run in runs))
        needs_s = _needed_seconds(needed, seconds)
        names = ", ".join(dict.fromkeys(name for text in group["needs_first"] for name in text.split(", ") if name))
        per_seed.append({**dict(zip(WAY, way, strict=True)), "seed": seed, "needs_first": names,
                         "own_s": group["own_s"].sum(), "needs_s": needs_s,
                         "total_s": group["own_s"].sum() + (needs_s if needed else 0.0)})  # fmt: skip
    if not per_seed:
        return pd.DataFrame(columns=WAY)
    per_seed = pd.DataFrame(per_seed)
    counts = per_seed.groupby(WAY).agg(seeds=("seed", "nunique"), needs_first=("needs_first", "first"))
    data = counts.join(summarise(per_seed, WAY, SECONDS)).reset_index()
    covered = ["+".join(map(str, widths[tuple(way)])) for way in data[WAY].itertuples(index=False)]
    return data.assign(row="total", width=pd.NA, widths=covered)


def _widths_text(covered: str, total: bool, every: str) -> str:
    """A row's width cell: its width, or what a total covers (``covered`` and ``every``: widths joined by '+')."""
    if not total:
        return covered
    if covered == every:
        return "every width above"
    return f"width {covered}" if "+" not in covered else f"widths {covered.replace('+', ', ')}"


def _seconds_text(value: float) -> str:
    return f"{value:,.1f}" if math.isfinite(value) else ABSENT


TRAIN_ONCE_TIMES = {
    OWN_SECONDS: "each run's own updates, timed alone on the CPU (train_own_seconds; the teacher's forward passes, "
    "which the distilled students trained together share, are not included)",
    LOOP_SECONDS: "training-loop wall times (train_seconds: these results hold no run's own time, as on a GPU, where "
    "the runs trained together overlap): every run trained in one loop gets the loop's time, shared by the runs "
    "trained together, so these are not per-run costs, and a total adds loops that other runs shared",
}


def _train_once_caption(basis: str) -> str:
    return (
        "Train once or train each: at every width below the teacher's where a model cut from a once-for-all "
        "generator or an online student finished, every float model of that width (quantized models and unfinished "
        "runs left out), one row per way; then per way its total over the widths above. "
        f"Seconds are {TRAIN_ONCE_TIMES[basis]}; each is a mean over seeds. Own training: the run's own; a cut "
        "trains 0 s, and an online student's time includes its co-trained teacher. Needs first: what the model is "
        "made from or distilled from, trained once and shared with other models: the seed's teacher for a "
        "distilled or pruned model; the supernet (the once-for-all generator, trained at the teacher's width with "
        "every narrower width) for a cut, and the teacher too where the supernet was distilled from it; nothing for "
        "a model trained from scratch or online. Total: own training plus needs first; on a way's row for every "
        "width above, its own training summed over those widths plus each run it needs first counted once per "
        "seed (one supernet for all its widths, one teacher for all its students), over the seeds that finished it "
        f"at every one of those widths. FID: {INTERVAL_NOTE}"
    )


@register_table("train-once")
def train_once_table(results: Results) -> Table | None:
    """At every width cut from a once-for-all generator or trained online, each way to a model of that width: its FID
    and training seconds, then per way the total over those widths, a shared supernet or teacher counted once;
    None where no once-for-all or online float model finished."""
    found = train_once_runs(results)
    if found is None:
        return None
    shown, seconds, basis = found
    widths = in_report_order(add_labels(_per_width(shown)))
    totals = in_report_order(
        add_labels(_totals(shown, seconds)), by=tuple(key for key in REPORT_ORDER if key != "width")
    )
    columns = ["row", "widths", *GROUP, *LABELS, "seeds", "needs_first"]
    data = pd.concat([widths, totals], ignore_index=True)
    data = data[columns + [col for col in data if col not in columns]].sort_values("dataset", kind="stable")
    data = data.reset_index(drop=True)
    data = data.assign(width=data["width"].astype("Int64"), time_basis=basis)

    every = {dataset: "+".join(map(str, sorted(set(group), reverse=True)))
             for dataset, group in widths.groupby("dataset")["width"]}  # fmt: skip
    display = key_columns(results, data, {"dataset": "dataset"})
    rows = zip(data["row"], data["widths"], data["dataset"], strict=True)
    display["width"] = [_widths_text(covered, row == "total", every[dataset]) for row, covered, dataset in rows]
    display["way"] = data["series"]
    display[FID.label] = summary_texts(FID, data, FID.report_name)
    display["seeds"] = data["seeds"].astype(int).astype(str)
    display["own training (s)"] = [_seconds_text(value) for value in data["own_seconds_mean"]]
    display["needs first"] = data["needs_first"].replace("", ABSENT)
    display["needs first (s)"] = [_seconds_text(value) for value in data["needs_first_seconds_mean"]]
    display["total (s)"] = [_seconds_text(value) for value in data["total_seconds_mean"]]
    return Table("train-once", "Train once or train each", _train_once_caption(basis), data, display)


RUN_COLUMNS = ["fid_lenet", "is_lenet", "class_consistency", "teacher_fidelity_l1"]


@register_table("runs")
def runs_table(results: Results) -> Table:
    """Every run, diverged ones included: status, where it diverged, training time and headline quality."""
    runs = results.runs
    info = [col for col in ("diverged_step", "steps", LOOP_SECONDS, OWN_SECONDS, SOURCE_CHECKED) if col in runs]
    metrics = [m for m in QUALITY if m.column in RUN_COLUMNS and has_values(m, runs)]
    keep = ["run_id", *GROUP, *LABELS, "finetune_epochs", "source_run", "seed", "role", "status", *info]
    data = in_report_order(runs[keep + [m.column for m in metrics]].sort_values("seed", kind="stable"))
    names = {"method_label": "method", "width": "width", "objective": "objective", "seed": "seed", "status": "status"}
    display = key_columns(results, data, names)
    if "diverged_step" in data:
        display["diverged at step"] = [f"{s:.0f}" if math.isfinite(s) else ABSENT for s in data["diverged_step"]]
    if "train_seconds" in data:
        display["train time (s)"] = [_seconds_text(s) for s in data["train_seconds"]]
    own = _column(data, OWN_SECONDS)
    if own.notna().any():  # timed on a CPU: each run's own updates, where the loop's time is shared
        display["own train time (s)"] = [_seconds_text(value) for value in own]
    if SOURCE_CHECKED in data:
        display["|Δ source| mean"] = [f"{e:.2g}" if math.isfinite(e) else ABSENT for e in data[SOURCE_CHECKED]]
    for metric in metrics:
        display[metric.label] = [format_value(metric, value) for value in data[metric.column]]
    display["run id"] = data["run_id"]
    caption = (
        "One row per run; diverged runs keep their row, with the step at which training diverged."
        + (
            " |Δ source| mean: a derived model's mean absolute difference from its float source's images on fixed "
            "inputs; beyond its mode's tolerance the run is a mismatch and is not scored."
            if SOURCE_CHECKED in data
            else ""
        )
        + (
            " The CSV names the run each pruned or quantized model was made from (source_run)."
            if several_methods(runs)
            else ""
        )
        + (
            " Train time: the wall time of the training loop, shared by every run trained in it; own train time: "
            "the run's own updates, timed alone on the CPU."
            if own.notna().any()
            else ""
        )
    )
    return Table("runs", "Every run", caption, data.reset_index(drop=True), display.reset_index(drop=True))
