"""The columns of ``results.csv`` the report shows (declared in ``bench.base.metric_registry``), and how shown."""

from __future__ import annotations

import math

import pandas as pd

from bench.base.metric_registry import COST as COST_KIND
from bench.base.metric_registry import HIGHER, LOWER, Metric, shown
from bench.base.metric_registry import QUALITY as QUALITY_KIND
from reports.stats import STATS

__all__ = [
    "ALL", "BY_COLUMN", "COST", "HIGHER", "LOWER", "QUALITY", "Metric", "direction_note", "format_summary",
    "format_value", "summary_texts",
]  # fmt: skip

COST = shown(COST_KIND)
QUALITY = shown(QUALITY_KIND)
ALL = COST + QUALITY
BY_COLUMN = {metric.column: metric for metric in ALL}


def present(metrics: tuple[Metric, ...], frame: pd.DataFrame) -> list[Metric]:
    """The metrics with at least one value in ``frame``: absent backbones and devices drop out."""
    return [metric for metric in metrics if has_values(metric, frame)]


def has_values(metric: Metric, frame: pd.DataFrame) -> bool:
    return metric.column in frame and frame[metric.column].notna().any()


def direction_note(metrics: list[Metric]) -> str:
    """'Lower is better for A, B; higher for C.' for the metrics that have a better direction."""
    lower = [m.short for m in metrics if m.better == LOWER]
    higher = [m.short for m in metrics if m.better == HIGHER]
    parts = []
    if lower:
        parts.append(f"lower is better for {', '.join(lower)}")
    if higher:
        parts.append(f"higher is better for {', '.join(higher)}")
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:] if parts else ""


def decimals(value: float, digits: int) -> int:
    """Decimal places that show ``value`` with ``digits`` significant digits (0..6)."""
    if not math.isfinite(value) or value == 0:
        return min(digits - 1, 6)
    return max(0, min(6, digits - 1 - math.floor(math.log10(abs(value)))))


def format_value(metric: Metric, mean: float, ci: float = math.nan) -> str:
    """'mean ± ci' in the metric's precision; no '±' where no interval exists (one seed), '–' for no mean."""
    if mean is None or not math.isfinite(mean):
        return "–"
    show_ci = ci is not None and math.isfinite(ci) and not (metric.exact and ci == 0)
    places = 0 if metric.integer else decimals(mean, metric.digits)
    if show_ci and ci > 0 and not metric.integer:
        places = max(places, decimals(ci, 2))  # never print a non-zero interval as 0.0
    text = f"{mean:,.{places}f}"
    return f"{text} ± {ci:,.{places}f}" if show_ci else text


MIN_SEEDS_FOR_INTERVAL = 3  # below, a Student-t interval (t = 12.7 at two seeds) says nothing: show the range


def format_summary(metric: Metric, mean: float, ci: float, n: float, low: float, high: float) -> str:
    """A mean over ``n`` seeds as the report shows it: from three seeds 'mean ± ci' (Student-t 95%), or the
    interval clipped to the metric's range, 'mean [a, b]', where it would leave that range; from two seeds
    'mean (low..high)', the range of the two; from one, the value alone."""
    if mean is None or not math.isfinite(mean) or metric.exact or not math.isfinite(n) or n < 2:
        return format_value(metric, mean, ci)
    if n < MIN_SEEDS_FOR_INTERVAL:
        places = 0 if metric.integer else max(decimals(mean, metric.digits), decimals(high - low, 2))
        return f"{mean:,.{places}f} ({low:,.{places}f}..{high:,.{places}f})"
    floor, ceiling = metric.bounds
    below = floor is not None and math.isfinite(ci) and mean - ci < floor
    above = ceiling is not None and math.isfinite(ci) and mean + ci > ceiling
    if not (below or above):
        return format_value(metric, mean, ci)
    lower, upper = (floor if below else mean - ci), (ceiling if above else mean + ci)
    places = 0 if metric.integer else max(decimals(mean, metric.digits), decimals(ci, 2))
    return f"{mean:,.{places}f} [{lower:,.{places}f}, {upper:,.{places}f}]"


def summary_texts(metric: Metric, data: pd.DataFrame, stem: str) -> list[str]:
    """``format_summary`` of every row of ``data``, from its ``{stem}_mean/_ci95/_n/_min/_max`` columns (a column
    it lacks reads as unknown)."""
    columns = [data.get(f"{stem}_{stat}", pd.Series(math.nan, index=data.index)) for stat in STATS]
    return [format_summary(metric, *(float(v) for v in row)) for row in zip(*columns, strict=True)]


def on_every_backbone(score: str, frame: pd.DataFrame) -> list[Metric]:
    """The quality metrics that compute ``score`` ("fid", "is", ...) on a backbone, one per backbone that scored the
    runs of ``frame``, in the registry's order (the primary backbone first): ``fid_lenet``, ``fid_resnet``, ..."""
    return [m for m in QUALITY if m.backbone and m.column == f"{score}_{m.backbone}" and has_values(m, frame)]
