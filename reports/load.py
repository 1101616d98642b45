"""Read a results directory: ``results.csv``, ``references.csv``, ``grid.json`` and each run's files.

This module is the report's only reader. The files' names come from ``bench.base.layout``, which is
torch-free (the report never imports the training code); it returns plain pandas frames and paths.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.base.layout import (
    GRID_FILE,
    LATENCY_CSV,
    LOSSES_FILE,
    REFERENCES_CSV,
    RESULT_FILE,
    RESULTS_CSV,
    RUNS_DIR,
    SAMPLES_FILE,
    SCRATCH,
    WIDTH,
)

REQUIRED_COLUMNS = ("run_id", "width", "kd", "seed", "status")


class ReportInputError(Exception):
    """A results directory the report cannot be built from; its message is one line for the user."""


@dataclass(frozen=True)
class Results:
    """Everything the report reads from one results directory."""

    directory: Path
    runs: pd.DataFrame  # results.csv, one row per finished run, defaults filled, plus the ``LABELS`` columns
    references: pd.DataFrame = field(default_factory=pd.DataFrame)  # empty when references.csv is absent
    grid: dict = field(default_factory=dict)  # empty when grid.json is absent or unreadable
    unreadable: tuple[str, ...] = ()  # runs whose result.json cannot be read: left out of every table
    gone: tuple[str, ...] = ()  # runs of results.csv whose result.json is no longer in runs/: left out too
    latency: pd.DataFrame = field(default_factory=pd.DataFrame)  # latency.csv's timed rows, with each run's keys

    def run_path(self, run_id: str, name: str) -> Path:
        return self.directory / RUNS_DIR / run_id / name


def objective_label(kd: str) -> str:
    """How a kd value is shown to readers: ``none`` is training from scratch."""
    return "scratch" if kd == SCRATCH else str(kd)


def _made_small_by(method: str, importance: str) -> str:
    """How the float generator was made small: ``width``, or ``prune (bn)`` with the channel ranking used."""
    return f"{method} ({importance})" if importance else str(method)


def _quantized(label: str, quantize: str) -> str:
    return f"{label} + {quantize}" if quantize else label


def method_label(method: str, importance: str = "", quantize: str = "") -> str:
    """How a compression method is shown: ``width``, ``prune (bn)``, with any quantization last: ``width + int8``."""
    return _quantized(_made_small_by(method, importance), quantize)


def series_label(method: str, importance: str, quantize: str, kd: str) -> str:
    """One model kind in the order it was made: ``width · scratch``, ``prune (bn) · pixel-l1``,
    ``width · pixel-l1 + int8`` (quantized last, as it is applied to the finished float model)."""
    return _quantized(f"{_made_small_by(method, importance)} · {objective_label(kd)}", quantize)


MODEL_KEYS = ["dataset", "method", "prune_importance", "quantize", "width", "kd"]  # what tells models apart
LABELS = ["method_label", "objective", "series"]


def add_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (with the model keys method, prune_importance, quantize and kd) with its ``LABELS`` columns."""
    keys = list(zip(frame["method"], frame["prune_importance"], frame["quantize"], frame["kd"], strict=True))
    return frame.assign(
        method_label=[method_label(method, importance, quantize) for method, importance, quantize, _ in keys],
        objective=frame["kd"].map(objective_label),
        series=[series_label(*key) for key in keys],
    )


QUANTIZE_ORDER = ("", "fp16", "bf16", "int8")  # float first, then by fewer stored bits
REPORT_ORDER = ("dataset", "width", "method", "prune_importance", "quantize", "kd")  # MODEL_KEYS, by importance


def _rank(column: pd.Series) -> pd.Series:
    """A sort key per column of ``REPORT_ORDER``: widest first, the width method before pruning, a float model
    before its quantized forms, scratch before the distillation objectives."""
    match column.name:
        case "width":
            return -column
        case "method":
            return column != WIDTH
        case "quantize":
            return column.map({mode: rank for rank, mode in enumerate(QUANTIZE_ORDER)}).fillna(len(QUANTIZE_ORDER))
        case "kd":
            return column.where(column != SCRATCH, "")
    return column


def in_report_order(frame: pd.DataFrame, by: tuple[str, ...] = REPORT_ORDER) -> pd.DataFrame:
    """``frame``'s rows in the order the report lists models, by the columns of ``by`` it holds."""
    keys = [col for col in by if col in frame]
    return frame.sort_values(keys, key=_rank, kind="stable").reset_index(drop=True) if keys else frame


METHOD_KEYS = ("method", "prune_importance", "quantize")


def several_methods(runs: pd.DataFrame) -> bool:
    """Whether ``runs`` hold more than one method (each quantization counts as one): then the report names them."""
    return runs["method_label"].nunique() > 1


def method_labels(runs: pd.DataFrame) -> list[str]:
    """The method labels of ``runs`` in the report's order: the width method, then pruning (by importance), each
    float before its quantizations."""
    return list(in_report_order(runs, by=METHOD_KEYS)["method_label"].unique())


def load(results_dir: Path) -> Results:
    """Read ``results_dir``; raise ``ReportInputError`` when it or its results.csv is missing or empty."""
    directory = Path(results_dir)
    if not directory.is_dir():
        raise ReportInputError(f"results directory {directory} does not exist")
    runs = _read_csv(directory / RESULTS_CSV, required=True)
    missing = [col for col in REQUIRED_COLUMNS if col not in runs]
    if missing:
        raise ReportInputError(f"{directory / RESULTS_CSV} lacks the column(s) {', '.join(missing)}")
    if runs.empty:
        raise ReportInputError(f"{directory / RESULTS_CSV} holds no runs")
    references = _optional_csv(directory / REFERENCES_CSV)  # without it the floor and ceiling lines are left out
    latency = _optional_csv(directory / LATENCY_CSV)  # without it the backend comparisons are left out
    unreadable, gone = unreadable_runs(directory), gone_runs(directory, runs["run_id"].astype(str))
    runs = runs[~runs["run_id"].astype(str).isin(unreadable + gone)]
    if runs.empty:
        raise ReportInputError(f"{directory / RESULTS_CSV} holds no run whose result.json is still readable")
    runs = _normalise(runs)
    grid = _read_grid(directory / GRID_FILE)
    return Results(directory, runs, references, grid, unreadable=unreadable, gone=gone, latency=_latency(latency, runs))


def gone_runs(directory: Path, run_ids: pd.Series) -> tuple[str, ...]:
    """The run ids of results.csv whose ``result.json`` is gone from ``runs/`` (a stale CSV must not report a run
    whose record was removed); none when there is no ``runs/`` at all (a results.csv shared on its own)."""
    runs = directory / RUNS_DIR
    if not runs.is_dir():
        return ()
    return tuple(run_id for run_id in run_ids if not (runs / run_id / RESULT_FILE).exists())


def unreadable_runs(directory: Path) -> tuple[str, ...]:
    """The run ids under ``runs/`` whose ``result.json`` is not a readable JSON object."""
    bad = []
    for path in sorted((directory / RUNS_DIR).glob(f"*/{RESULT_FILE}")):
        try:
            ok = isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
        except (OSError, ValueError):
            ok = False
        if not ok:
            bad.append(path.parent.name)
    return tuple(bad)


def _optional_csv(path: Path) -> pd.DataFrame:
    """``path`` as a frame; empty when it is absent or unreadable (what it would show is left out, not the report)."""
    try:
        return _read_csv(path, required=False) if path.is_file() else pd.DataFrame()
    except ReportInputError:
        return pd.DataFrame()


LATENCY_COLUMNS = ("run_id", "backend", "device", "batch", "p50_ms", "throughput_ips", "status")


def _latency(latency: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The timed rows of ``latency.csv`` (status ok) of the report's runs, with each run's width, labels, seed
    and MACs; empty when the file lacks a column it needs."""
    if latency.empty or any(col not in latency for col in LATENCY_COLUMNS):
        return pd.DataFrame(columns=list(LATENCY_COLUMNS))
    wanted = ("run_id", *MODEL_KEYS, *LABELS, "seed", "role", "g_macs")
    keys = [col for col in wanted if col in runs]
    timed = latency[latency["status"] == "ok"]
    return timed.merge(runs[keys], on="run_id", how="inner")


def _read_csv(path: Path, required: bool) -> pd.DataFrame:
    if not path.is_file():
        raise ReportInputError(f"{path} does not exist")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        if required:
            raise ReportInputError(f"{path} is empty") from None
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReportInputError(f"{path} is not a readable CSV: {first_line}") from None


def _read_grid(path: Path) -> dict:
    try:
        grid = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the report says "unknown" for whatever the grid would have told
    return grid if isinstance(grid, dict) else {}


# what a results.csv written before pruning and quantization means by the columns it lacks (or leaves empty)
METHOD_DEFAULTS = {"method": WIDTH, "prune_importance": "", "finetune_epochs": 0, "quantize": "", "source_run": ""}
# a float model is stored as its fp32 checkpoint: where the stored size is unknown, it is the fp32 size
STORED_AS_FP32 = {"g_bytes_stored": "g_bytes_fp32", "ratio_stored": "ratio_bytes"}


def _normalise(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.copy()
    runs["width"] = runs["width"].astype(int)
    runs["seed"] = runs["seed"].astype(int)
    runs["kd"] = runs["kd"].astype(str)
    runs["status"] = runs["status"].fillna("unknown").astype(str)
    if "role" not in runs:
        runs["role"] = "student"
    if "dataset" not in runs:
        runs["dataset"] = "unknown"
    for column, default in METHOD_DEFAULTS.items():
        values = runs[column] if column in runs else pd.Series(default, index=runs.index)
        runs[column] = values.astype(object).fillna(default).astype(type(default))  # an empty column reads as NaN
    float_model = runs["quantize"] == ""
    for stored, fp32 in STORED_AS_FP32.items():
        if fp32 in runs:
            known = runs[stored] if stored in runs else pd.Series(math.nan, index=runs.index)
            runs[stored] = known.where(known.notna() | ~float_model, runs[fp32])
    return add_labels(runs)


def losses(results: Results) -> pd.DataFrame:
    """Every run's ``losses.csv`` stacked, one row per logged step, with the run's width, labels, seed."""
    keys = ["run_id", *MODEL_KEYS, *LABELS, "seed", "role", "status"]
    frames = []
    for row in results.runs[keys].itertuples(index=False):
        path = results.run_path(row.run_id, LOSSES_FILE)
        if not path.is_file():
            continue
        try:
            frame = pd.read_csv(path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
            continue  # a run killed mid-write loses its curve, not the report
        if frame.empty or "step" not in frame:
            continue
        frames.append(frame.assign(**row._asdict()))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=keys + ["step"])


def samples(results: Results) -> dict[str, Path]:
    """The sample-grid PNG of every run that has one, by run id."""
    paths = {run_id: results.run_path(run_id, SAMPLES_FILE) for run_id in results.runs["run_id"]}
    return {run_id: path for run_id, path in paths.items() if path.is_file()}
