"""The columns of ``results.csv`` the report shows: their labels, units, direction and how to print them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

LOWER, HIGHER = "lower", "higher"


@dataclass(frozen=True)
class Metric:
    """One ``results.csv`` column as the report shows it."""

    column: str  # the column of results.csv
    name: str  # stem of the report's own CSV columns, with the unit it is shown in
    label: str  # header in Markdown, LaTeX and HTML tables
    short: str  # name in captions and plot facets
    scale: float = 1.0  # results.csv value * scale = shown value
    quality: bool = False  # a sample-quality metric: undefined for a diverged run
    better: str | None = None  # LOWER, HIGHER, or None when neither is better
    exact: bool = False  # identical for every seed of a group (sizes): shown without an interval
    integer: bool = False
    digits: int = 3  # significant digits shown

    def present(self, frame: pd.DataFrame) -> bool:
        return self.column in frame and frame[self.column].notna().any()


COST = (
    Metric("g_params", "g_params", "G params", "parameters", exact=True, integer=True),
    Metric("g_bytes_fp32", "g_fp32_kib", "G fp32 size (KiB)", "fp32 size", 1 / 1024, exact=True, digits=4),
    Metric("ratio_params", "ratio_params", "compression, params (×)", "compression by parameters", exact=True),
    Metric("ratio_bytes", "ratio_bytes", "compression, bytes (×)", "compression by bytes", exact=True),
    Metric("g_macs", "g_mmacs", "G MMACs / image", "MACs", 1e-6, exact=True),
    Metric("latency_ms_cpu", "latency_cpu_ms", "CPU latency (ms)", "CPU latency", better=LOWER),
    Metric("throughput_ips_cpu", "throughput_cpu_ips", "CPU throughput (img/s)", "CPU throughput", better=HIGHER),
    Metric("latency_ms_cuda", "latency_gpu_ms", "GPU latency (ms)", "GPU latency", better=LOWER),
    Metric("throughput_ips_cuda", "throughput_gpu_ips", "GPU throughput (img/s)", "GPU throughput", better=HIGHER),
)

QUALITY = (
    Metric("fid_lenet", "fid_lenet", "FID (LeNet)", "FID", quality=True, better=LOWER),
    Metric("is_lenet", "is_lenet", "IS (LeNet)", "IS", quality=True, better=HIGHER),
    Metric("kid_lenet", "kid_lenet", "KID (LeNet)", "KID", quality=True, better=LOWER),
    Metric("precision_lenet", "precision_lenet", "precision (LeNet)", "precision", quality=True, better=HIGHER),
    Metric("recall_lenet", "recall_lenet", "recall (LeNet)", "recall", quality=True, better=HIGHER),
    Metric(
        "class_consistency",
        "class_consistency",
        "class consistency",
        "class consistency",
        quality=True,
        better=HIGHER,
    ),
    Metric("teacher_fidelity_l1", "teacher_l1", "teacher L1", "teacher L1", quality=True, better=LOWER),
    Metric("fid_inception", "fid_inception", "FID (Inception)", "FID (Inception)", quality=True, better=LOWER),
    Metric("is_inception", "is_inception", "IS (Inception)", "IS (Inception)", quality=True, better=HIGHER),
    Metric("kid_inception", "kid_inception", "KID (Inception)", "KID (Inception)", quality=True, better=LOWER),
)

ALL = COST + QUALITY
BY_COLUMN = {metric.column: metric for metric in ALL}


def present(metrics: tuple[Metric, ...], frame: pd.DataFrame) -> list[Metric]:
    """The metrics with at least one value in ``frame``: absent backbones and devices drop out."""
    return [metric for metric in metrics if metric.present(frame)]


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
