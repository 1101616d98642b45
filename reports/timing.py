"""What every speed number of the report was measured with, and which of its timings cannot be trusted as they are.

results.csv's speed columns are eager PyTorch's rows of latency.csv (bench/engine/records.py): latency at the
smallest batch timed, throughput at the largest. A table or axis that shows them names that backend and those
batches, read from latency.csv (or grid.json's speed settings where latency.csv is gone). A latency.csv row is
flagged ``noisy`` when its noise stayed above the threshold after its re-timings, and ``loaded`` when other
processes kept the machine busy while it was timed; the tables mark such cells with ``FLAG`` and say why below.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from reports.load import Results
from reports.metrics import Metric

HEADLINE_BACKEND = "eager"  # bench/engine/records.py: the backend of results.csv's speed columns
DEVICE_NAMES = {"cpu": "CPU", "cuda": "GPU"}
FLAG = "†"
# latency.csv's flag columns, and what each says about a timing
FLAGS = {
    "noisy": "its noise (IQR of the per-round medians / their median) stayed above the threshold after its re-timings",
    "loaded": "other processes kept the machine busy while it was timed",
}


@dataclass(frozen=True)
class Basis:
    """How results.csv's speed columns were measured: the backend, the latency's batch and the throughput's."""

    backend: str = HEADLINE_BACKEND
    latency_batch: int | None = None  # None: unknown (neither latency.csv nor grid.json says)
    throughput_batch: int | None = None


def headline_basis(results: Results) -> Basis:
    """The backend and batches of results.csv's latency and throughput columns, read from the timings."""
    batches = results.latency["batch"].dropna() if "batch" in results.latency else pd.Series(dtype=float)
    if batches.empty:
        speed = results.grid.get("speed")
        listed = speed.get("batches") if isinstance(speed, dict) else None
        batches = pd.Series([b for b in listed if isinstance(b, int)] if isinstance(listed, list) else [], dtype=float)
    if batches.empty:
        return Basis()
    return Basis(HEADLINE_BACKEND, int(batches.min()), int(batches.max()))


def batch_text(batch: int | None) -> str:
    """'batch 64', or 'batch unknown' where neither latency.csv nor grid.json records it."""
    return f"batch {batch}" if batch is not None else "batch unknown"


def speed_label(metric: Metric, basis: Basis) -> str:
    """A speed column's header naming its backend and batch: 'CPU latency, eager, batch 1 (ms)'; any other
    metric's own label."""
    name, _, unit = metric.label.partition(" (")
    if metric.column.startswith("latency_ms_"):
        return f"{name}, {basis.backend}, {batch_text(basis.latency_batch)} ({unit}"
    if metric.column.startswith("throughput_ips_"):
        return f"{name}, {basis.backend}, {batch_text(basis.throughput_batch)} ({unit}"
    return metric.label


def flag_columns(latency: pd.DataFrame) -> pd.DataFrame:
    """latency.csv's flag columns as booleans (a column it lacks reads as never flagged)."""
    flags = {name: latency[name].astype(str).str.lower().eq("true") if name in latency else False for name in FLAGS}
    return pd.DataFrame(flags, index=latency.index)


def flagged_rows(results: Results, device: str, batch: int | None, backend: str | None = HEADLINE_BACKEND):
    """Per run id: whether its timing on ``device`` at ``batch`` (behind ``backend``, None: any) is flagged noisy
    or loaded; a frame with one boolean column per flag."""
    latency = results.latency
    if latency.empty or batch is None:
        return pd.DataFrame(columns=list(FLAGS), dtype=bool)
    rows = latency[(latency["device"] == device) & (latency["batch"] == batch)]
    if backend is not None:
        rows = rows[rows["backend"] == backend]
    return flag_columns(rows).set_axis(rows["run_id"]).groupby(level=0).any()


def flagged_groups(results: Results, keys: list[str], device: str, batch: int | None) -> pd.DataFrame:
    """Per model (``keys`` of results.runs): whether any of its runs' headline timings is flagged, per flag."""
    flags = flagged_rows(results, device, batch)
    runs = results.runs[["run_id", *keys]].merge(flags, left_on="run_id", right_index=True, how="inner")
    return runs.groupby(keys)[list(FLAGS)].any()


def mark(texts: list[str], flagged: list[bool]) -> list[str]:
    """``texts`` with ``FLAG`` after each flagged one."""
    return [f"{text}{FLAG}" if flag else text for text, flag in zip(texts, flagged, strict=True)]


def noise_threshold(results: Results) -> float | None:
    """The noise above which a timing is flagged noisy (grid.json's speed settings); None where unrecorded."""
    speed = results.grid.get("speed")
    threshold = speed.get("noise_threshold") if isinstance(speed, dict) else None
    return float(threshold) if isinstance(threshold, int | float) else None


def flag_note(flags: pd.DataFrame, cells: int, what: str = "timings", threshold: float | None = None) -> str:
    """The footnote of the cells marked ``FLAG``: how many and why (with the noise ``threshold`` where known);
    '' where none is."""
    if flags.empty or not flags.to_numpy().any():
        return ""
    marked = int(flags.any(axis=1).sum())
    why = dict(FLAGS)
    if threshold is not None:
        why["noisy"] = why["noisy"].replace("the threshold", f"the threshold ({threshold:g})")
    reasons = "; ".join(f"{int(flags[name].sum())} {name}: {why[name]}" for name in FLAGS if flags[name].any())
    return (
        f"{FLAG} {marked} of {cells} {what} flagged in latency.csv ({reasons}); take them as approximate, or time "
        "them again on a quiet machine: python -m bench.latency RESULTS_DIR."
    )
