"""How big a plan is and about how long its training takes here: one line before anything trains.

The estimate times a few training steps of the narrowest and the widest generator the plan trains, on this
machine and device, and interpolates by parameter count for the widths between; measuring and timing come on top.
A plan whose training alone would take hours on a CPU is said to be one for a GPU.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench.base.layout import SCRATCH, WIDTH
from bench.engine import train
from bench.engine.methods import method_of, train_epochs
from bench.engine.models import build_models, count_params
from bench.engine.spec import RunSpec
from bench.grid.spec import GridSpec
from data import ImageDataset

GPU_SIZED_HOURS = 2.0  # training alone beyond this on a CPU: the plan is one for a GPU
TIMED_STEPS = 3


@dataclass(frozen=True)
class PlanSize:
    """What a plan will do: runs to train and the generator updates they take, models to derive, latency cells."""

    to_train: int
    finished: int
    to_derive: int
    steps: int
    latency_cells: int
    training_seconds: float | None = None  # the estimate, when timed

    def line(self, device: torch.device) -> str:
        estimate = "" if self.training_seconds is None else f"; training about {_duration(self.training_seconds)} here"
        return (
            f"plan: {self.to_train} runs to train ({self.steps:,} steps), {self.to_derive} models to derive, "
            f"{self.finished} finished, {self.latency_cells} latency cells{estimate} ({device.type})"
        )


def plan_size(grid: GridSpec, pending: list[RunSpec], finished: int, dataset: ImageDataset) -> PlanSize:
    """The size of ``pending`` (the runs not yet finished) and of the latency phase of every model."""
    per_epoch = max(len(dataset.train_labels) // grid.batch_size, 1)
    trained = [spec for spec in pending if method_of(spec).trained]
    backends = len(grid.speed.backends) if grid.speed.backends else 1
    models = len(pending) + finished
    return PlanSize(
        to_train=len(trained),
        finished=finished,
        to_derive=len(pending) - len(trained),
        steps=sum(train_epochs(spec) * per_epoch for spec in trained),
        latency_cells=models * backends * len(grid.speed.batches) * len(grid.speed.devices),
    )


def estimate(size: PlanSize, pending: list[RunSpec], dataset: ImageDataset, device: torch.device) -> PlanSize:
    """``size`` with its training time estimated from steps timed here; one warning when a CPU would take hours."""
    trained = [spec for spec in pending if method_of(spec).trained]
    if not trained:
        return replace(size, training_seconds=0.0)
    per_epoch = max(len(dataset.train_labels) // trained[0].batch_size, 1)
    plain = {spec: _step_runs(spec) for spec in trained}
    # runs of one width cost one step alike: each width built once
    counts = {
        run: count_params(build_models(run, dataset)[0]) for run in {run for runs in plain.values() for run in runs}
    }
    small, large = min(counts, key=counts.get), max(counts, key=counts.get)
    timed = {counts[run]: seconds_per_step(run, dataset, device) for run in (small, large)}
    low, high = min(timed), max(timed)

    def per_step(count: int) -> float:
        share = 0.0 if high == low else (count - low) / (high - low)
        return timed[low] + share * (timed[high] - timed[low])

    steps = {spec: sum(per_step(counts[run]) for run in plain[spec]) for spec in trained}
    seconds = sum(steps[spec] * train_epochs(spec) * per_epoch for spec in trained)
    if device.type == "cpu" and seconds > GPU_SIZED_HOURS * 3600:
        warnings.warn(
            f"this plan is one for a GPU: its training alone would take about {_duration(seconds)} on this CPU "
            "(narrow it with --widths, --seeds, --epochs or --methods, or run it where CUDA is)",
            UserWarning,
            stacklevel=2,
        )
    return replace(size, training_seconds=seconds)


def seconds_per_step(spec: RunSpec, dataset: ImageDataset, device: torch.device) -> float:
    """Wall seconds of one training step of a fresh pair of ``spec``'s width trained from scratch, after a warm-up
    step (nothing is written: the pair lives in a scratch directory)."""
    autocast = train.precision_autocast(spec.precision, device)
    with tempfile.TemporaryDirectory() as scratch, torch.random.fork_rng(devices=[]):
        member = train.make_member(_plain(spec), Path(scratch) / "run", dataset, device)
        stream = train.BatchStream(dataset.train_images.to(device), dataset.train_labels.to(device), spec.batch_size,
                                   member.generator.nz, dataset.num_classes, spec.seed)  # fmt: skip
        batch = next(stream.epoch(0))
        train.train_step(member, *batch, None, autocast)
        _sync(device)
        started = time.perf_counter()
        for _ in range(TIMED_STEPS):
            train.train_step(member, *batch, None, autocast)
        _sync(device)
    return (time.perf_counter() - started) / TIMED_STEPS


def _plain(spec: RunSpec) -> RunSpec:
    """A width run trained from scratch at ``spec``'s width: what one of its steps costs, near enough."""
    return replace(spec, method=WIDTH, options=(), derived=None, kd=SCRATCH, kd_weight=0.0)


def _step_runs(spec: RunSpec) -> list[RunSpec]:
    """The plain runs whose steps, together, cost about what one step of ``spec`` does: one per width its method
    trains in a step (``Method.step_widths``: an online student with its teacher, a supernet at three widths)."""
    method = method_of(spec)
    widths = method.step_widths(spec) if method.step_widths else (spec.width,)
    return [replace(_plain(spec), width=width) for width in widths]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
