"""Finished runs scored on the quality columns they lack (a backbone added to a finished grid), from their saved
generators: nothing retrained, every number already held kept."""

from __future__ import annotations

from dataclasses import replace

from bench.engine.finished import checkpoint_of, finished_records
from bench.engine.methods import load_generator
from bench.engine.records import (
    RunRecord,
    write_record,
)
from bench.grid.context import GridContext, say, to_device
from bench.grid.spec import GridSpec
from bench.metrics.quality import metric_keys


def score_missing_metrics(ctx: GridContext) -> None:
    """Score every finished run whose record lacks a quality column this grid writes (a backbone or a weights
    file added to a finished grid) on those columns alone, from its saved generator: nothing is retrained, and
    every number the record already holds is kept."""
    records = finished_records(ctx.results_dir)
    lacking = {record.run_id: lacking_columns(record, ctx.grid) for record in records}
    stale = [record for record in records if lacking[record.run_id]]
    if stale:
        columns = sorted({key for record in stale for key in lacking[record.run_id]})
        say(ctx.progress, f"scoring {len(stale)} finished runs on the columns they lack: {', '.join(columns)}")
    for record in stale:
        generator = load_generator(checkpoint_of(ctx.results_dir, record), record.spec, ctx.dataset).eval()
        to_device(generator, ctx.device)
        seconds: dict[str, float] = {}
        scores = ctx.evaluator.score_generator(generator, seconds=seconds)
        added = {key: scores[key] for key in lacking[record.run_id]}
        added.update(
            {f"seconds_{part}": value for part, value in seconds.items() if f"seconds_{part}" not in record.metrics}
        )
        write_record(ctx.results_dir, replace(record, metrics={**record.metrics, **added}))


def lacking_columns(record: RunRecord, grid: GridSpec) -> list[str]:
    """The quality columns ``grid`` scores that a finished ``record`` does not hold."""
    return [key for key in metric_keys(grid.quality) if key not in record.metrics]
