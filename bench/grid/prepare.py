"""Before anything trains: every check a user can fail, the results directory recorded, the reference rows, and
the finished runs whose files are damaged made unfinished."""

from __future__ import annotations

import platform
import warnings
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from bench.base.errors import UserError, first_line
from bench.base.io import (
    atomic_write_json,
    atomic_write_text,
    check_creatable_dir,
    check_writable_dir,
    move_aside,
    quarantine,
    read_json,
)
from bench.base.layout import (
    GRID_FILE,
    REFERENCES_CSV,
    RESULT_FILE,
)
from bench.engine.device import device_name, resolve_device
from bench.engine.finished import damaged_files
from bench.engine.machine import cpu_profile, profile_from
from bench.engine.methods import phase_of, phases
from bench.engine.records import (
    check_schema,
    find_record,
    run_dir,
)
from bench.engine.spec import SCHEMA_VERSION, RunSpec
from bench.engine.train import build_models
from bench.grid.context import GridContext, cache_dir_of, say
from bench.grid.estimate import estimate, plan_size
from bench.grid.given_teacher import record_given_teacher
from bench.grid.plan import Cohort, grid_runs, plan
from bench.grid.spec import GridSpec
from bench.latency import BACKENDS
from bench.latency.settings import SpeedSpec
from bench.metrics.measure import measure_devices
from bench.metrics.pretrained import resolve_pretrained, weights_paths
from data import ImageDataset, get_dataset
from gans import FAMILIES
from gans.plugins import check_family


def check_grid(grid: GridSpec) -> tuple[torch.device, list[RunSpec]]:
    """Everything a user can get wrong about ``grid`` but its data, checked before anything is written: the run
    and the dry run call this one function, so they refuse the same things. Returns the device and the runs."""
    device = resolve_device(grid.device)
    specs = grid_runs(grid)
    check_backends_run_here(grid.speed, device)
    check_weights_files(grid)
    check_creatable_dir(Path(grid.out), "--out")
    checked_schema_version(Path(grid.out) / GRID_FILE)
    check_creatable_dir(cache_dir_of(grid), "--cache-dir")
    return device, specs


def check_weights_files(grid: GridSpec) -> None:
    """A weights file that is missing, unsafe or does not fit its network fails here, before anything is written
    or trained (the evaluator checks them again when it is built: the check is cheap next to a grid)."""
    if any(weights_paths(grid.quality).values()):
        resolve_pretrained(grid.quality)


def check_backends_run_here(speed: SpeedSpec, device: torch.device) -> None:
    """A latency backend asked for by name that runs on none of the devices this machine times on is refused
    (asked for, it would give nothing but ``skipped`` rows)."""
    here = {measured.type for measured in measure_devices(device)}
    for name in speed.backends or ():
        backend = BACKENDS[name]
        if not set(backend.devices) & here:
            raise UserError(
                f"--latency-backends {name} runs on {', '.join(backend.devices)} only, and this machine times on "
                f"{', '.join(sorted(here))}"
            )


def prepare_grid(grid: GridSpec, progress: bool = True) -> tuple[GridContext, list[RunSpec], list[Cohort]]:
    """Validate, record the grid, write the reference rows; returns what any executor needs to run cohorts."""
    # everything a user can get wrong is checked before the results directory is touched
    device, specs = check_grid(grid)
    dataset = get_dataset(grid.dataset, grid.data_root, grid.download, grid.image_size)
    check_plugin_family(grid, dataset)
    check_writable_dir(cache_dir_of(grid), "--cache-dir")  # created for real: a root user's access checks pass
    prepare_results_dir(grid, device, dataset)
    say(progress, "preparing: the domain classifier, the real-data statistics and the reference rows")
    ctx = GridContext.create(grid, dataset, progress)
    write_references(ctx)
    cohorts = plan(specs)
    heal_finished_runs(ctx.results_dir, specs)
    pending = [spec for spec in specs if find_record(ctx.results_dir, spec) is None]
    if len(pending) < len(specs):
        say(progress, f"{len(specs) - len(pending)} of {len(specs)} runs already finished, skipped")
    size = estimate(plan_size(grid, pending, len(specs) - len(pending), dataset), pending, dataset, device)
    say(progress, size.line(device))
    if grid.teacher is not None:
        for teacher in {cohort.teacher.run_id: cohort.teacher for cohort in cohorts}.values():
            record_given_teacher(ctx, teacher)
    return ctx, specs, cohorts


def check_plugin_family(grid: GridSpec, dataset: ImageDataset) -> None:
    """A family from outside the suite keeps the contract on this data, or is refused in one line."""
    if grid.family_module is not None:
        channels, size, _ = dataset.image_shape
        check_family(FAMILIES[grid.family], channels, size, dataset.num_classes)


def prepare_results_dir(grid: GridSpec, device: torch.device, dataset: ImageDataset) -> Path:
    """Check the directory is ours and writable, then record the grid, the data's shape (what rebuilds a saved
    generator without the data), the device and the date."""
    results_dir = Path(grid.out)
    grid_file = results_dir / GRID_FILE
    version = checked_schema_version(grid_file)
    check_writable_dir(results_dir, "--out")
    if grid_file.is_file() and version is None:
        quarantine(grid_file, "not a grid record")
    cpu, kinds = cpu_profile(), cpu_kinds_seen(grid_file)
    atomic_write_json(
        grid_file,
        {
            **asdict(grid),
            "cpu": cpu.as_json(),
            "cpu_kinds": list(dict.fromkeys([*kinds, cpu.describe()])),
            "schema_version": SCHEMA_VERSION,
            "image_shape": list(dataset.image_shape),
            "num_classes": dataset.num_classes,
            "split": dataset.split,
            "device": device_name(device),
            "device_type": device.type,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    )
    return results_dir


def cpu_kinds_seen(grid_file: Path) -> list[str]:
    """The CPU kinds earlier runs of this grid ran on (``grid.json``), with one warning line when the last one is
    not this machine's kind: the same seed gives other numbers on another kind."""
    try:
        raw = read_json(grid_file)
    except (OSError, ValueError):
        return []
    raw = raw if isinstance(raw, dict) else {}
    previous, current = profile_from(raw.get("cpu")), cpu_profile()
    if previous is not None and previous.kind() != current.kind():
        warnings.warn(
            f"{grid_file} was last run on another CPU kind ({previous.describe()}; this one: {current.describe()}): "
            "runs made here will differ from its runs by a few per cent in FID (docs/results.md)",
            RuntimeWarning,
            stacklevel=2,
        )
    kinds = raw.get("cpu_kinds")
    return [str(kind) for kind in kinds] if isinstance(kinds, list) else []


def checked_schema_version(grid_file: Path) -> object | None:
    """The schema version a ``grid.json`` was written with, refused when it is another; None when the file is
    absent or unreadable."""
    try:
        raw = read_json(grid_file)
    except (OSError, ValueError):
        return None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version is not None:
        check_schema(version, grid_file)
    return version


def write_references(ctx: GridContext) -> None:
    """The real-data floor and the untrained-generator ceiling of every metric, once per results directory, and
    again (overwritten) when the rows on disk lack a metric the grid scores or were scored on another number of
    samples."""
    path = ctx.results_dir / REFERENCES_CSV
    if path.is_file():
        try:
            frame = pd.read_csv(path)
            if not {"dataset", "reference", "quality_n_fake"} <= set(frame.columns) or len(frame) < 2:
                raise ValueError("not the reference rows")
        except (OSError, ValueError, pd.errors.ParserError) as err:
            quarantine(path, f"{type(err).__name__}: {first_line(err)}")
        else:
            untrained_samples = list(frame.loc[frame["reference"] == "untrained", "quality_n_fake"])
            every_metric = set(ctx.evaluator.metric_keys) <= set(frame.columns)
            if every_metric and untrained_samples == [ctx.grid.quality.fid_samples]:
                return
    untrained, _ = build_models(ctx.grid.runs()[0], ctx.dataset)
    rows = [{"dataset": ctx.grid.dataset, **row} for row in ctx.evaluator.reference_rows(untrained.to(ctx.device))]
    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False))


def heal_finished_runs(results_dir: Path, specs: list[RunSpec]) -> list[str]:
    """Make unfinished every finished run whose files are damaged, and every run derived from one of them: one
    warning line each, their record and damaged files moved aside, so the grid makes them (and only them) again.
    Returns their run ids."""
    remade: list[str] = []
    for spec in sorted(specs, key=lambda spec: phases().index(phase_of(spec))):  # sources before what they made
        record = find_record(results_dir, spec)
        if record is None:
            continue
        damaged = damaged_files(results_dir, record)
        source = spec.source() if spec.derived else None
        if not damaged and (source is None or source.run_id not in remade):
            continue
        directory = run_dir(results_dir, spec)
        for name in damaged:
            move_aside(directory / name)  # a source's damaged file is moved aside when the source is healed
        move_aside(directory / RESULT_FILE)
        why = f"{', '.join(damaged)} missing or truncated" if damaged else "its source run is made again"
        warnings.warn(f"run {spec.run_id}: {why}; its record and files moved aside, made again", RuntimeWarning,
                      stacklevel=2)  # fmt: skip
        remade.append(spec.run_id)
    return remade
