"""What a grid shows, in a few plain sentences read off the report's own tables.

Each sentence restates a table the report shows below it, on the same basis: the best model within each size
budget (best-by-size), what distillation changes at each width and whether the seeds resolve it (distillation),
the smallest model that keeps the teacher's quality (iso-quality), whether the backbones order the models alike
(agreement), and the models left out because they do not compute what their float source does.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.base.layout import STATUS_MISMATCH
from reports.load import Results
from reports.tables import Table
from reports.verdicts import ISO_QUALITY, resolved

__all__ = ["grid_summary"]


def _and(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _widths(widths: list) -> str:
    """'width 64', 'widths 64 and 32'."""
    return f"width{'s' if len(widths) > 1 else ''} {_and([str(int(width)) for width in widths])}"


def _where(rows: pd.DataFrame) -> str:
    """The models of ``rows`` by their widths, per method where they hold several: 'widths 64 and 32', 'width
    models at widths 64 and 32 and prune (bn) models at width 64'."""
    methods = list(dict.fromkeys(rows["method_label"]))
    if len(methods) == 1:
        return _widths(list(rows["width"]))
    return _and([f"{method} models at {_widths(list(rows.loc[rows['method_label'] == method, 'width']))}"
                 for method in methods])  # fmt: skip


def quality_per_byte(best: Table, several: bool) -> str:
    """Which method (with one method: which objective) gives the lowest FID within each size budget below the
    teacher's; '' where no budget below the teacher's has a model."""
    data = best.data.dropna(subset=["series"])
    data = data[data["budget_width"] < data["budget_width"].max()]  # the widest budget is the teacher's own
    if data.empty:
        return ""
    kind = data["method_label"] if several else data["series"]
    clauses = []
    for index, name in enumerate(dict.fromkeys(kind)):
        budgets = list(data.loc[kind == name, "budget_width"])
        generators = f"the {_and([f'width-{int(width)}' for width in budgets])} generator{'s' * (len(budgets) > 1)}"
        within = f"within the stored size of {generators}" if index == 0 else f"within that of {generators}"
        clauses.append(f"{name} models have the lowest FID {within}" if index == 0 else f"{name} models {within}")
    return f"Most quality per byte: {'; '.join(clauses)}."


def _directions(data: pd.DataFrame, stem: str, several: bool) -> list[str]:
    """Per width, which way distillation moves the LeNet FID: 'lowers the LeNet FID at widths 128 and 32 (for every
    method compared)', 'raises it at width 64', 'is mixed at width 16 (lower for 1 of 3 methods)'."""
    lower = data.assign(lower=data[stem] < 0).groupby("width", sort=False)["lower"].agg(["sum", "count"])
    every = " for every method compared" if several else ""
    lowers, raises = list(lower.index[lower["sum"] == lower["count"]]), list(lower.index[lower["sum"] == 0])
    mixed = lower[(lower["sum"] > 0) & (lower["sum"] < lower["count"])]
    parts = [f"lowers the LeNet FID at {_widths(lowers)}{every}"] if lowers else []
    parts += [f"raises {'it' if parts else 'the LeNet FID'} at {_widths(raises)}{every}"] if raises else []
    spread = [f"width {width} (lower for {int(row['sum'])} of {int(row['count'])} methods)" for width, row in
              mixed.iterrows()]  # fmt: skip
    return parts + ([f"moves {'it' if parts else 'the LeNet FID'} either way at {_and(spread)}"] if spread else [])


def distillation_effect(distillation: Table, several: bool) -> str:
    """Which way distillation moves the LeNet FID at each width, and whether the seeds resolve it; '' without a
    pair to compare."""
    data = distillation.data
    stem = "fid_lenet_gain_mean"
    if data.empty or stem not in data or data[stem].isna().all():
        return ""
    data = data.dropna(subset=[stem])
    objectives = _and(list(dict.fromkeys(data["objective"])))
    settled = [resolved(str(verdict)) for verdict in data["verdict"]]
    if all(settled):
        seeds = "the seeds resolve every one of these differences"
    elif not any(settled):
        seeds = "the seeds resolve none of these differences" + (
            " (one seed pair each)" if data["pairs"].max() < 2 else ""
        )
    elif sum(settled) <= 3 or not several:
        seeds = f"the seeds resolve it {'for' if several else 'at'} {_where(data[settled])} only"
    else:
        seeds = f"the seeds resolve {sum(settled)} of these {len(data)} differences (see the table below)"
    return f"Distillation ({objectives}) {_and(_directions(data, stem, several))}; {seeds}."


def smallest_keeping_quality(iso: Table, teacher_kib: float) -> str:
    """The smallest model whose FID is within ``ISO_QUALITY`` of the teacher's (and how many times smaller than the
    teacher's ``teacher_kib`` it is stored), or the closest where none is."""
    data = iso.data
    if data.empty or "keeps_quality" not in data:
        return ""
    teacher = data["teacher_fid"].iloc[0]
    within = f"within {ISO_QUALITY:.0%} of the teacher's FID ({teacher:.3g})"
    keeping = data[data["keeps_quality"]].sort_values("g_stored_kib_mean", kind="stable")
    if keeping.empty:
        closest = data.sort_values("fid_lenet_mean", kind="stable").iloc[0]
        return (
            f"No model comes {within}; the closest is {closest['series']}, width {closest['width']} "
            f"(FID {closest['fid_lenet_mean']:.3g})."
        )
    row = keeping.iloc[0]
    smaller = f", {teacher_kib / row['g_stored_kib_mean']:.3g}x smaller than the teacher" if teacher_kib > 0 else ""
    return (
        f"The smallest model {within} is {row['series']}, width {row['width']}: "
        f"{row['g_stored_kib_mean']:,.1f} KiB stored{smaller}, FID {row['fid_lenet_mean']:.3g}."
    )


def backbone_agreement(agreement: Table | None) -> str:
    """Whether the backbones order the models alike by FID; '' with one backbone."""
    if agreement is None:
        return ""
    rows = agreement.data[agreement.data["metric"] == "FID"]
    parts = [
        f"{row.backbones}, Kendall's tau {row.kendall_tau:.2f} ({row.flips} of the {row.models * (row.models - 1) // 2}"
        " pairs of models ordered the other way)"
        for row in rows.itertuples()
    ]
    return f"How alike the backbones rank the models by FID: {'; '.join(parts)}." if parts else ""


def mismatched(results: Results) -> str:
    """The models left out as mismatches, each named once."""
    runs = results.runs[results.runs["status"] == STATUS_MISMATCH]
    if runs.empty:
        return ""
    names = list(dict.fromkeys(f"{row.series}, width {row.width}" for row in runs.itertuples()))
    return f"Left out as mismatches (their images are not their float source's): {_and(names)}."


def _teacher_kib(results: Results) -> float:
    runs = results.runs
    teacher = runs.loc[runs["role"] == "teacher", "g_bytes_stored"] if "g_bytes_stored" in runs else pd.Series()
    return float(teacher.median()) / 1024 if teacher.notna().any() else math.nan


def grid_summary(results: Results, tables: dict[str, Table], several_methods: bool) -> list[str]:
    """The report's "What this grid shows": at most five plain sentences, each read off a table shown below."""
    sentences = [
        quality_per_byte(tables["best-by-size"], several_methods),
        distillation_effect(tables["distillation"], several_methods),
        smallest_keeping_quality(tables["iso-quality"], _teacher_kib(results)),
        backbone_agreement(tables.get("agreement")),
        mismatched(results),
    ]
    return [sentence for sentence in sentences if sentence]
