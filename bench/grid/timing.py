"""The grid's latency phase: every finished model timed together into ``latency.csv``, unless it is current."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.base.errors import first_line
from bench.base.io import quarantine
from bench.base.layout import LATENCY_CSV
from bench.engine.finished import finished_checkpoints, load_checkpoints, saved_at
from bench.engine.spec import RunSpec
from bench.grid.context import GridContext, phase, say
from bench.latency import time_models, write_latency_csv
from bench.latency.settings import SpeedSpec
from bench.metrics.measure import measure_devices


def latency_is_current(results_dir: Path, finished: dict[str, tuple[RunSpec, Path]], settings: SpeedSpec) -> bool:
    """Whether ``latency.csv`` holds exactly these runs, timed behind these backends, devices and batch sizes, and
    was written after every one of their generator files (a model made again since is timed again)."""
    path = Path(results_dir) / LATENCY_CSV
    try:
        timed = pd.read_csv(path)
        if timed.empty or not {"run_id", "backend", "device", "batch", "p50_ms", "status"} <= set(timed.columns):
            raise ValueError("not the rows of a timing")
        newest_model = max(saved_at(results_dir, spec, checkpoint) for spec, checkpoint in finished.values())
        return (  # every cell the grid times is there (others, added by python -m bench.latency, may be too)
            set(timed["run_id"].astype(str)) == set(finished)
            and (settings.backends is None or set(settings.backends) <= set(timed["backend"]))
            and set(settings.devices) <= set(timed["device"])
            and set(settings.batches) <= set(timed["batch"].astype(int))
            and path.stat().st_mtime >= newest_model
        )
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as err:  # damaged: moved aside, timed afresh
        if path.is_file():
            quarantine(path, f"{type(err).__name__}: {first_line(err)}")
        return False


def time_latency(ctx: GridContext) -> None:
    """Time every finished generator of the grid together into ``latency.csv``: in interleaved rounds, so every
    model sees the same machine load (docs/latency.md). Skipped when the file already holds these very runs."""
    devices = tuple(device.type for device in measure_devices(ctx.device))
    settings = replace(ctx.grid.speed, devices=devices)
    finished = finished_checkpoints(ctx.results_dir)  # a rerun of a timed grid loads no checkpoint
    if not finished or latency_is_current(ctx.results_dir, finished, settings):
        return
    models = load_checkpoints(finished, ctx.dataset)
    with phase(ctx.progress, f"timed {len(models)} models together on {', '.join(devices)} (latency.csv)"):
        rows = time_models(models, settings, progress=lambda message: say(ctx.progress, f"  {message}"))
    write_latency_csv(rows, ctx.results_dir, keep_runs=models)  # cells re-timed by python -m bench.latency stay
