"""The finished runs of a results directory: their records, their model files and the generators rebuilt from
them. A run whose files are damaged is left out, with one warning line, and a grid run makes it again."""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import nn

from bench.base.io import file_intact
from bench.base.layout import (
    GENERATOR_FILE,
    RESULT_FILE,
    RUNS_DIR,
    STATUS_DONE,
)
from bench.engine.methods import load_generator, method_of
from bench.engine.records import (
    RunRecord,
    UnreadableRecordError,
    read_record,
    run_dir,
)
from bench.engine.spec import RunSpec
from data import DataShape, ImageDataset


def finished_records(results_dir: Path) -> list[RunRecord]:
    """Every record of ``results_dir`` whose run finished (status done); a ``result.json`` that cannot be read is
    left out (the grid run that finds it recomputes it)."""
    finished = []
    for path in sorted((Path(results_dir) / RUNS_DIR).glob(f"*/{RESULT_FILE}")):
        try:
            record = read_record(path)
        except UnreadableRecordError:
            continue
        if record.status == STATUS_DONE:
            finished.append(record)
    return finished


def damaged_files(results_dir: Path, record: RunRecord) -> list[str]:
    """The files a finished run's generator is rebuilt from that are missing, empty or truncated."""
    if record.status != STATUS_DONE or record.metrics.get("given_checkpoint"):
        return []
    directory = run_dir(results_dir, record.spec)
    damaged = [name for name in method_of(record.spec).files(record.spec) if not file_intact(directory / name)]
    source = record.spec.source() if record.spec.derived else None  # a derived model is rebuilt on its source
    if source is not None:
        source_dir = run_dir(results_dir, source)
        files = method_of(source).files(source)
        damaged += [f"its source's {name}" for name in files if not file_intact(source_dir / name)]
    return damaged


def finished_checkpoints(results_dir: Path) -> dict[str, tuple[RunSpec, Path]]:
    """Run id -> (spec, generator checkpoint), for every run of ``results_dir`` that finished (status done) and
    still has its files; one whose files are damaged is left out with one warning line (a grid run makes it
    again)."""
    checkpoints = {}
    for record in finished_records(results_dir):
        damaged = damaged_files(results_dir, record)
        if damaged:
            warnings.warn(f"run {record.run_id}: {', '.join(damaged)} missing or truncated: left out (run the grid "
                          "again to make it again)", RuntimeWarning, stacklevel=2)  # fmt: skip
            continue
        checkpoints[record.run_id] = (record.spec, checkpoint_of(results_dir, record))
    return checkpoints


def checkpoint_of(results_dir: Path, record: RunRecord) -> Path:
    """Where a finished run's generator is: a given teacher's checkpoint, else its run's ``generator.pt``."""
    given = record.metrics.get("given_checkpoint")
    return Path(given) if given else run_dir(results_dir, record.spec) / GENERATOR_FILE


def load_checkpoints(finished: dict[str, tuple[RunSpec, Path]], data: ImageDataset | DataShape) -> dict[str, nn.Module]:
    """Run id -> generator (eval mode), for the ``finished_checkpoints`` given."""
    return {run_id: load_generator(checkpoint, spec, data).eval() for run_id, (spec, checkpoint) in finished.items()}


def finished_generators(results_dir: Path, data: ImageDataset | DataShape) -> dict[str, nn.Module]:
    """Run id -> generator (eval mode), for every run of ``results_dir`` that finished (status done)."""
    return load_checkpoints(finished_checkpoints(results_dir), data)


def saved_at(results_dir: Path, spec: RunSpec, checkpoint: Path) -> float:
    """When a finished model was last written: a given checkpoint's time, else that of the newest file its method
    rebuilds it from (an openvino-int8 model has no generator.pt: its IR files)."""
    if checkpoint.parent != run_dir(results_dir, spec):
        return checkpoint.stat().st_mtime
    return max((checkpoint.parent / name).stat().st_mtime for name in method_of(spec).files(spec))
