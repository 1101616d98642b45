"""Run the whole grid in this process."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from bench.base.errors import UserError
from bench.engine.terminal import bars
from bench.executors import Executor, ExecutorOptions, register_executor
from bench.grid.cohorts import run_cohorts
from bench.grid.finish import finish_grid
from bench.grid.plan import schedule
from bench.grid.prepare import prepare_grid
from bench.grid.spec import GridSpec


def run_local(grid: GridSpec, progress: bool = True) -> Path:
    """Run the whole grid in this process, cohort by cohort (on CUDA with graphs, every seed's cohort of a phase
    in one loop); returns the results directory."""
    ctx, specs, cohorts = prepare_grid(grid, progress)
    for batch in tqdm(schedule(cohorts, ctx.trains_together), desc="grid", unit="loop", disable=not bars(progress)):
        run_cohorts(ctx, batch)
    return finish_grid(ctx, specs, cohorts)


def check_local_options(options: ExecutorOptions, device: str) -> None:
    if options != ExecutorOptions():
        raise UserError("--ray-address, --gpus-per-run and --cpus-per-run need --executor ray")


register_executor(
    Executor(
        name="local",
        run=lambda grid, options, progress: run_local(grid, progress),
        check=check_local_options,
        description="this process (default)",
    )
)
