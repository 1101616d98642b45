"""The columns of ``results.csv`` the report shows (declared in ``bench.metrics.registry``) and how to print them."""

from __future__ import annotations

import math

import pandas as pd

from bench.metrics.registry import COST as COST_KIND
from bench.metrics.registry import HIGHER, LOWER, Metric, shown
from bench.metrics.registry import QUALITY as QUALITY_KIND

__all__ = ["ALL", "BY_COLUMN", "COST", "HIGHER", "LOWER", "QUALITY", "Metric", "direction_note", "format_value"]

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
