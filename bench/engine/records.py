"""Per-run result records and the grid's ``results.csv``, rebuilt from them.

Each run directory holds ``spec.json`` and, once finished, ``result.json`` (written atomically). The CSV is
derived data: it is rebuilt from every ``result.json`` after each run, so a crash can never leave it out of
step with the runs, and compression ratios are computed there, against the teacher of the same seed.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from bench.base.errors import UserError
from bench.base.io import atomic_write_json, atomic_write_text, quarantine, read_json
from bench.base.layout import (
    LATENCY_CSV,
    RESULT_FILE,
    RESULTS_CSV,
    RUNS_DIR,
    SOURCE_CHECKED,
    STATUS_DONE,
)
from bench.base.metric_registry import ratio_columns
from bench.engine.methods import spec_columns, spec_from_columns
from bench.engine.spec import SCHEMA_VERSION, RunSpec

HEADLINE_BACKEND = "eager"  # the speed columns of results.csv: plain PyTorch, as a user runs it


class IncompatibleResultsError(UserError):
    """A results directory written by another schema version."""


@dataclass(frozen=True)
class RunRecord:
    """What one finished run produced: its spec, how it ended, and every measurement as flat columns."""

    spec: RunSpec
    status: str
    metrics: dict[str, float | int | str | None] = field(default_factory=dict)
    diverged_step: int | None = None
    finished_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    def row(self) -> dict:
        """One flat row of ``results.csv``."""
        role = "teacher" if self.spec.is_teacher else "student"
        return {
            "run_id": self.run_id,
            "role": role,
            **spec_columns(self.spec),
            "status": self.status,
            "diverged_step": self.diverged_step,
            **self.metrics,
            "finished_at": self.finished_at,
            "schema_version": self.schema_version,
        }


def run_dir(results_dir: Path, spec: RunSpec) -> Path:
    return Path(results_dir) / RUNS_DIR / spec.run_id


def write_record(results_dir: Path, record: RunRecord) -> Path:
    path = run_dir(results_dir, record.spec) / RESULT_FILE
    atomic_write_json(path, {**asdict(record), "spec": spec_columns(record.spec), "run_id": record.run_id})
    return path


class UnreadableRecordError(Exception):
    """A ``result.json`` that is not a record of this schema's shape (truncated, garbage, foreign keys)."""


def read_record(path: Path) -> RunRecord:
    try:
        raw = read_json(path)
    except (OSError, ValueError) as err:
        raise UnreadableRecordError(f"{type(err).__name__}: {err}") from None
    if not isinstance(raw, dict):
        raise UnreadableRecordError("not a JSON object")
    if "schema_version" not in raw or "spec" not in raw:  # {} or another tool's file: not a record of any version
        raise UnreadableRecordError("not a run record of this suite")
    check_schema(raw["schema_version"], path)
    if raw.pop("run_id", Path(path).parent.name) != Path(path).parent.name:
        raise UnreadableRecordError("the record of another run")
    try:
        record = RunRecord(**{**raw, "spec": spec_from_columns(raw["spec"])})
    except (KeyError, TypeError, ValueError, UserError) as err:
        raise UnreadableRecordError(f"{type(err).__name__}: {err}") from None
    if record.run_id != Path(path).parent.name:  # its spec does not hash to its directory: not this run's
        raise UnreadableRecordError("a spec that is not its run's")
    if record.spec.derived and record.status == STATUS_DONE and SOURCE_CHECKED not in record.metrics:
        # made before derived models were checked against their source: its scores may be a wrong kernel's
        raise UnreadableRecordError("a derived model never checked against its float source")
    return record


def find_record(results_dir: Path, spec: RunSpec, heal: bool = True) -> RunRecord | None:
    """The finished record of ``spec`` in ``results_dir``, or None if it has not finished.

    An unreadable record counts as unfinished: with ``heal`` it is moved aside (one warning), so the run is
    trained again; without, it is left where it is (a dry run touches nothing).
    """
    path = run_dir(results_dir, spec) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        return read_record(path)
    except UnreadableRecordError as err:
        if heal:
            quarantine(path, str(err))
        return None


def check_schema(version: object, where: Path) -> None:
    if version != SCHEMA_VERSION:
        raise IncompatibleResultsError(
            f"{where} was written with results schema {version}, this version reads {SCHEMA_VERSION}: "
            "use another --out directory"
        )


def latency_headlines(results_dir: Path) -> pd.DataFrame:
    """Per run id, the speed columns of ``results.csv`` taken from ``latency.csv`` (empty when it is absent).

    Per device: eager PyTorch at batch 1 (``latency_ms_{dev}``, its p90, p99 and noise) and at the largest
    batch (``throughput_ips_{dev}``), what a user gets without a deployment step; every other backend that ran
    as ``latency_ms_{dev}_{backend}`` and ``throughput_ips_{dev}_{backend}``. An unreadable file is moved aside
    (the next grid run re-times the models).
    """
    path = Path(results_dir) / LATENCY_CSV
    if not path.is_file():
        return pd.DataFrame()
    try:
        timings = pd.read_csv(path)
        timings = timings[timings["status"] == "ok"]
        first, last = timings["batch"].min(), timings["batch"].max()
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as err:
        quarantine(path, f"unreadable: {err}")
        return pd.DataFrame()
    columns: dict[str, pd.Series] = {}
    for (device, backend), rows in timings.groupby(["device", "backend"], sort=False):
        suffix = device if backend == HEADLINE_BACKEND else f"{device}_{backend.replace('-', '_')}"
        single = rows[rows["batch"] == first].set_index("run_id")
        columns[f"latency_ms_{suffix}"] = single["p50_ms"]
        columns[f"throughput_ips_{suffix}"] = rows[rows["batch"] == last].set_index("run_id")["throughput_ips"]
        if backend == HEADLINE_BACKEND:
            for stat in ("p90_ms", "p99_ms", "noise"):
                columns[f"latency_{stat}_{device}"] = single[stat]
            columns[f"device_name_{device}"] = single["device_name"]
            columns[f"threads_{device}"] = single["threads"]
    return pd.DataFrame(columns).rename_axis("run_id").reset_index()


def results_table(results_dir: Path) -> pd.DataFrame:
    """One row per finished run, its speed from ``latency.csv``, and compression ratios against the teacher
    of the same dataset and seed."""
    rows = []
    for path in sorted((Path(results_dir) / RUNS_DIR).glob(f"*/{RESULT_FILE}")):
        try:
            rows.append(read_record(path).row())
        except UnreadableRecordError as err:
            quarantine(path, str(err))
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    speed = latency_headlines(results_dir)
    if not speed.empty:
        frame = frame.drop(columns=[c for c in speed.columns if c != "run_id" and c in frame])
        frame = frame.merge(speed, on="run_id", how="left")
    teachers = frame[frame["role"] == "teacher"].drop_duplicates(["dataset", "seed", "teacher_sha"])
    keys = ["dataset", "seed", "teacher_sha"]
    ratios = ratio_columns()  # measured column -> teacher value / this run's value
    present = [col for col in ratios if col in frame]
    merged = frame.merge(
        teachers[keys + present].rename(columns={col: f"_teacher_{col}" for col in present}),
        on=keys,
        how="left",
    )
    for col in present:
        frame[ratios[col]] = (merged[f"_teacher_{col}"] / merged[col]).to_numpy()
    order = [
        col for col in ("dataset", "seed", "kd", "width", "method", "prune_importance", "quantize") if col in frame
    ]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def write_results_csv(results_dir: Path) -> Path:
    """Rebuild ``results.csv`` from every ``result.json`` (atomically, under the directory lock)."""
    path = Path(results_dir) / RESULTS_CSV
    with directory_lock(results_dir):
        if path.exists() and not path.is_file():  # a directory (or a device) where the CSV goes
            quarantine(path, "not a file")
        atomic_write_text(path, results_table(results_dir).to_csv(index=False))
    return path


@contextmanager
def directory_lock(results_dir: Path):
    """An exclusive ``flock`` on the results directory: serialises CSV rebuilds across processes."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(results_dir) / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
