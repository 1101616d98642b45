"""A grid's last steps: the runs left by other processes, then scoring and timing, once, under a lock."""

from __future__ import annotations

from pathlib import Path

from bench.engine import claims
from bench.engine.records import (
    directory_lock,
    find_record,
    run_dir,
    write_results_csv,
)
from bench.engine.spec import RunSpec
from bench.grid.cohorts import run_cohort
from bench.grid.context import GridContext
from bench.grid.plan import Cohort
from bench.grid.rescore import score_missing_metrics
from bench.grid.timing import time_latency


def finish_grid(ctx: GridContext, specs: list[RunSpec], cohorts: list[Cohort]) -> Path:
    """Wait for runs another process holds, take over any it left unfinished, time every model together, then
    rebuild the CSV."""
    for spec in specs:
        if find_record(ctx.results_dir, spec) is None:
            claims.wait_for(run_dir(ctx.results_dir, spec))
    for cohort in cohorts:
        run_cohort(ctx, cohort)
    with directory_lock(ctx.results_dir):  # two processes finishing one grid score and time it once
        score_missing_metrics(ctx)
        time_latency(ctx)
    write_results_csv(ctx.results_dir)
    return ctx.results_dir
