"""The dry run: every check of a real run, then the plan described; nothing written."""

from __future__ import annotations

from pathlib import Path

from bench.base.errors import DataUnavailableError
from bench.base.io import check_creatable_dir
from bench.base.layout import (
    RESULT_FILE,
    STATE_FILE,
    STATUS_DONE,
)
from bench.engine.device import device_name
from bench.engine.records import (
    find_record,
    run_dir,
)
from bench.engine.spec import RunSpec
from bench.grid.estimate import estimate, plan_size
from bench.grid.plan import plan
from bench.grid.prepare import check_grid, check_plugin_family
from bench.grid.rescore import lacking_columns
from bench.grid.spec import GridSpec
from data import get_dataset


def dry_run(grid: GridSpec, executor: str = "local") -> str:
    """Check what a run of ``grid`` needs (device, teacher, dataset, directories) and describe what it would do:
    every cohort's runs, which are finished, which resume, which would be trained. Nothing is written."""
    device, specs = check_grid(grid)
    dataset = None
    try:
        dataset = get_dataset(grid.dataset, grid.data_root, download=False, image_size=grid.image_size)
        check_plugin_family(grid, dataset)
        data = f"{grid.dataset} (on disk)"
    except DataUnavailableError:
        if not grid.download:
            raise
        check_creatable_dir(Path(grid.data_root), "--data-root")
        data = f"{grid.dataset} (would be downloaded to {grid.data_root})"
    results_dir = Path(grid.out)
    cohorts = plan(specs)
    lines = [
        f"dry run: {len(specs)} runs in {len(cohorts)} cohorts; {data}; device {device_name(device)}; "
        f"executor {executor}; results in {results_dir}",
    ]
    counts = {"finished": 0, "to train": 0}
    for cohort in cohorts:
        lines.append(f"{cohort.name}:")
        for spec in cohort.specs:
            state = _run_state(grid, spec)
            counts["to train" if state.startswith("to train") else "finished"] += 1
            lines.append(f"  {spec.run_id:56s} {spec.describe():18s} width {spec.width:3d} {spec.kd:10s} {state}")
    if dataset is not None:  # the plan's size, and its training time timed from a few steps here
        pending = [spec for spec in specs if find_record(results_dir, spec, heal=False) is None]
        size = plan_size(grid, pending, len(specs) - len(pending), dataset)
        lines.append(estimate(size, pending, dataset, device).line(device))
    lines.append(f"{counts['finished']} finished, {counts['to train']} to train; nothing was written")
    return "\n".join(lines)


def _run_state(grid: GridSpec, spec: RunSpec) -> str:
    results_dir = Path(grid.out)
    directory = run_dir(results_dir, spec)
    record = find_record(results_dir, spec, heal=False)
    if record is not None:
        lacking = lacking_columns(record, grid) if record.status == STATUS_DONE else []
        return f"finished (to be scored on {len(lacking)} columns it lacks)" if lacking else "finished"
    if (directory / RESULT_FILE).is_file():
        return "to train (its result.json is unreadable and would be moved aside)"
    if (directory / STATE_FILE).is_file():
        return "to train (resumes from its checkpoint)"
    return "to train"
