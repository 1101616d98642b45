"""The report's answers to the suite's first questions: what distilling from the teacher buys, and how small a
model keeps the teacher's quality.

Both read the tables' per-model summaries (``reports.tables``); a sentence is written only where the seeds
support it: a distillation effect where its 95% Student-t interval over seed pairs excludes zero.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd

from bench.base.metric_registry import BACKBONE_NAMES
from reports.load import Results, several_methods
from reports.metrics import (
    BY_COLUMN,
    MIN_SEEDS_FOR_INTERVAL,
    Metric,
    format_value,
    on_every_backbone,
    summary_texts,
)
from reports.stats import STATS
from reports.tables import ABSENT, Table, gain_table, key_columns, per_model, register_table

VERDICT_COLUMN = "fid_lenet"  # the verdicts' metric: FID on the suite's own backbone, measured for every grid
ISO_QUALITY = 0.10  # "keeps the teacher's quality": FID within 10% of the teacher's


def fid_metrics(runs: pd.DataFrame) -> list[Metric]:
    """The all-class FID of every backbone that scored these runs, the primary one first."""
    return on_every_backbone("fid", runs)


def _verdict(mean: float, ci: float, n: float, low: float, high: float, metric: Metric) -> str:
    """What the paired differences of one model say, in words a reader can act on, on the same basis as the number
    beside it: the 95% interval from three pairs or more, the range of the two pairs from two."""
    if not math.isfinite(mean):
        return ABSENT
    if not math.isfinite(n) or n < 2:
        return "one seed pair: no interval"
    better = (mean < 0) == (metric.better == "lower")
    if n < MIN_SEEDS_FOR_INTERVAL:
        if low <= 0 <= high:
            return "the two seed pairs differ in sign: no verdict"
        return f"both seed pairs: distillation {'helps' if better else 'hurts'} (two pairs: no interval)"
    if not math.isfinite(ci) or abs(mean) <= ci:
        return "no difference the seeds resolve (the interval includes 0)"
    return "distillation helps" if better else "distillation hurts"


def _agreement(row: pd.Series, metrics: list[Metric]) -> str:
    """Whether every backbone's FID moves the same way under distillation (the sign of the mean difference)."""
    signs = {m.backbone: row.get(f"{m.report_name}_gain_mean") for m in metrics}
    signs = {name: value for name, value in signs.items() if value is not None and math.isfinite(value)}
    if len(signs) < 2:
        return "one backbone"
    if len({value < 0 for value in signs.values()}) == 1:
        return "yes"
    return "no: " + ", ".join(f"{BACKBONE_NAMES[name]} {value:+.3g}" for name, value in signs.items())


@register_table("distillation")
def distillation_table(results: Results) -> Table:
    """Per distilled model (method, width, objective): FID with distillation minus FID without, paired by seed,
    on every backbone; the verdict of the primary backbone's interval, and whether the backbones agree."""
    gain = gain_table(results).data
    metrics = fid_metrics(results.runs)
    primary = BY_COLUMN[VERDICT_COLUMN]
    stem = f"{primary.report_name}_gain"
    data = gain.copy()
    data["verdict"] = [
        _verdict(*(row.get(f"{stem}_{stat}", math.nan) for stat in STATS), primary) for _, row in data.iterrows()
    ]
    data["backbones_agree"] = [_agreement(row, metrics) for _, row in data.iterrows()]
    names = {"dataset": "dataset", "method_label": "method", "width": "width", "objective": "objective",
             "pairs": "seed pairs"}  # fmt: skip
    display = key_columns(results, data, names)
    for metric in metrics:
        change = replace(metric, bounds=(None, None))
        display[f"{metric.label}: distilled − scratch"] = summary_texts(change, data, f"{metric.report_name}_gain")
    display["verdict (FID, LeNet)"] = data["verdict"]
    display["backbones agree"] = data["backbones_agree"]
    methods = " within each method (a pruned model against the same pruning fine-tuned without it)" if (
        several_methods(results.runs)) else ""  # fmt: skip
    caption = (
        f"Each distilled model against the model trained the same way without distillation{methods}, paired by "
        "seed (same batches and noise): FID with minus FID without, mean over seed pairs with its 95% Student-t "
        "interval from three pairs, the range of the two from two, the value from one. Negative: distillation "
        "lowers FID (better). Verdict: from three pairs or more, where the 95% interval of the LeNet FID difference "
        "excludes 0; from two, where both pairs have the same sign (said as such: two pairs give no interval); "
        "backbones agree "
        "when every backbone's mean difference has the same sign."
    )
    return Table("distillation", "What distillation buys", caption, data, display)


def _sentence(row: pd.Series) -> str:
    """What one resolved row says, on the basis shown beside its verdict: a 95% interval from three pairs or more,
    the range of the two pairs from two."""
    stem = f"{BY_COLUMN[VERDICT_COLUMN].report_name}_gain"
    mean, n = row[f"{stem}_mean"], int(row[f"{stem}_n"])
    method = "" if row["method_label"] == "width" else f" ({row['method_label']})"
    direction = "lowers" if mean < 0 else "raises"
    if n < MIN_SEEDS_FOR_INTERVAL:
        low, high = sorted((abs(row[f"{stem}_min"]), abs(row[f"{stem}_max"])))
        by = f"by {low:.3g} to {high:.3g} on both seed pairs (two pairs: their range, no interval)"
    else:
        by = f"by {abs(mean):.3g} ± {row[f'{stem}_ci95']:.2g} (95% interval over {n} seed pairs)"
    agree = (
        "" if row["backbones_agree"] in ("yes", "one backbone") else f"; backbones disagree ({row['backbones_agree']})"
    )
    return f"At width {row['width']}{method}, {row['objective']} distillation {direction} the LeNet FID {by}{agree}."


def resolved(verdict: str) -> bool:
    """Whether a verdict of ``_verdict`` says the seeds resolve the difference (an interval or both pairs' sign)."""
    return verdict in ("distillation helps", "distillation hurts") or verdict.startswith("both seed pairs:")


def distillation_sentences(table: Table) -> list[str]:
    """One plain sentence per model whose 95% interval excludes zero; none where the seeds cannot tell."""
    rows = table.data[table.data["verdict"].isin(["distillation helps", "distillation hurts"])]
    return [_sentence(row) for _, row in rows.iterrows()]


def verdict_sentences(table: Table) -> list[str]:
    """One plain sentence per model whose difference the seeds resolve: by a 95% interval (three pairs or more) or
    by both of two pairs having the same sign; none where the seeds cannot tell."""
    rows = table.data[[resolved(str(verdict)) for verdict in table.data["verdict"]]]
    return [_sentence(row) for _, row in rows.iterrows()]


def unresolved_text(table: Table) -> str:
    """Why no sentence of ``verdict_sentences`` was written, on the basis of the verdicts shown."""
    if table.data["pairs"].max() < 2:
        return (
            "One seed: the differences below are single runs, with no interval; run --seeds with three or more seeds "
            "before concluding."
        )
    reasons = []
    if table.data["verdict"].str.startswith("no difference").any():
        reasons.append("every 95% interval of the LeNet FID difference includes 0")
    if table.data["verdict"].str.startswith("the two seed pairs differ").any():
        reasons.append("where two seed pairs were run, they differ in sign")
    return f"No difference the seeds resolve: {'; '.join(reasons) or 'too few seed pairs'}."


@register_table("iso-quality")
def iso_quality_table(results: Results) -> Table:
    """Per method: the smallest model (by stored bytes) whose mean FID is within ``ISO_QUALITY`` of the teacher's,
    or, where none is, the method's best model and how far it stays."""
    data = per_model(results)[0]
    fid, size = BY_COLUMN[VERDICT_COLUMN], BY_COLUMN["g_bytes_stored"]
    mean, stored = f"{fid.report_name}_mean", f"{size.report_name}_mean"
    if mean not in data or stored not in data:
        empty = pd.DataFrame(columns=["method_label"])
        return Table("iso-quality", "The smallest model that keeps the teacher's quality", "", empty, empty)
    teachers = data[data["model"] == "teacher"].groupby("dataset")[mean].mean().rename("teacher_fid")
    data = data.merge(teachers, on="dataset", how="inner").dropna(subset=[mean, stored])
    data["within"] = data[mean] <= (1 + ISO_QUALITY) * data["teacher_fid"]
    students = data[data["model"] != "teacher"]
    rows = []
    for _, models in students.groupby(["dataset", "method_label"], sort=False):
        keeping = models[models["within"]].sort_values(stored, kind="stable")
        chosen = keeping.iloc[0] if len(keeping) else models.sort_values(mean, kind="stable").iloc[0]
        rows.append({**chosen.to_dict(), "keeps_quality": bool(len(keeping))})
    table = pd.DataFrame(rows)
    if table.empty:
        return Table("iso-quality", "The smallest model that keeps the teacher's quality", "", table, table)
    display = key_columns(results, table, {"dataset": "dataset", "method_label": "method"})
    display["smallest model within 10% of the teacher's FID"] = [
        f"{series}, width {width}" if keeps else f"none (best: {series}, width {width})"
        for series, width, keeps in zip(table["series"], table["width"], table["keeps_quality"], strict=True)
    ]
    display[size.label] = [format_value(size, kib) for kib in table[stored]]
    display[fid.label] = summary_texts(fid, table, fid.report_name)
    display["teacher FID"] = [format_value(fid, value) for value in table["teacher_fid"]]
    caption = (
        "Per method, the smallest model by stored size whose mean LeNet FID over seeds is at most "
        f"{1 + ISO_QUALITY:.2f} times the teacher's (same dataset); where no model of the method gets there, its "
        "best model. The teacher itself is left out."
    )
    return Table("iso-quality", "The smallest model that keeps the teacher's quality", caption, table, display)
