"""What every cohort of a grid needs, built once per process: the dataset, the device, the evaluator and the
teachers."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from bench.base.io import atomic_write_json
from bench.base.layout import (
    CACHE_DIR,
    GENERATOR_FILE,
    SPEC_FILE,
    STATUS_DONE,
)
from bench.engine import claims
from bench.engine.device import resolve_device, tune_for
from bench.engine.methods import load_generator, spec_columns
from bench.engine.records import (
    find_record,
    run_dir,
)
from bench.engine.spec import RunSpec
from bench.engine.terminal import bars
from bench.engine.train import LoopOptions
from bench.grid.spec import GridSpec
from bench.metrics.quality import QualityEvaluator
from data import ImageDataset, get_dataset
from gans.plugins import load_family


@dataclass
class GridContext:
    """What every cohort of a grid needs, built once per process (the dataset, the device, the evaluator)."""

    grid: GridSpec
    results_dir: Path
    device: torch.device
    dataset: ImageDataset
    evaluator: QualityEvaluator
    progress: bool = True
    teachers: dict[str, nn.Module] = field(default_factory=dict)

    @classmethod
    def create(cls, grid: GridSpec, dataset: ImageDataset | None = None, progress: bool = True) -> GridContext:
        if grid.family_module is not None:  # a worker process of its own: the family is imported here too
            load_family(grid.family_module)
        device = resolve_device(grid.device)
        tune_for(device)
        results_dir = Path(grid.out)
        dataset = dataset or get_dataset(grid.dataset, grid.data_root, grid.download, grid.image_size)
        evaluator = QualityEvaluator(dataset, grid.quality, device, cache_dir_of(grid))
        return cls(grid, results_dir, device, dataset, evaluator, progress)

    @property
    def trains_together(self) -> bool:
        """Every seed of a phase in one training loop: on CUDA with graphs, where concurrency pays."""
        return self.device.type == "cuda" and self.grid.cuda_graphs and self.grid.concurrent

    def loop_options(self) -> LoopOptions:
        return LoopOptions(
            log_every=self.grid.log_every, samples_every_epoch=self.grid.samples_every_epoch,
            tensorboard=self.grid.tensorboard,
            progress=bars(self.progress),
            cuda_graphs=self.grid.cuda_graphs, concurrent=self.grid.concurrent,
        )  # fmt: skip

    def teacher_generator(self, teacher: RunSpec) -> nn.Module | None:
        """The frozen teacher: a given checkpoint, or the generator the grid's teacher run saved (None if it
        diverged)."""
        if teacher.run_id not in self.teachers:
            if self.grid.teacher is not None:
                path = Path(self.grid.teacher)
            else:
                claims.wait_for(run_dir(self.results_dir, teacher))  # another process may be training it
                record = find_record(self.results_dir, teacher)
                if record is not None and record.status != STATUS_DONE:
                    return None
                path = run_dir(self.results_dir, teacher) / GENERATOR_FILE
            self.teachers[teacher.run_id] = load_generator(path, teacher, self.dataset).to(self.device).eval()
        return self.teachers[teacher.run_id]


def cache_dir_of(grid: GridSpec) -> Path:
    """Where the classifier and real-data statistics are cached: ``--cache-dir``, else ``<out>/cache``."""
    return Path(grid.cache_dir) if grid.cache_dir else Path(grid.out) / CACHE_DIR


@contextmanager
def phase(progress: bool, text: str) -> Iterator[None]:
    """One line per phase, said when it ends: ``text`` and its wall time (a terminal shows bars meanwhile)."""
    started = time.perf_counter()
    yield
    say(progress, f"{text} in {time.perf_counter() - started:.0f} s")


def say(progress: bool, text: str) -> None:
    """One line of progress on stderr, beside the bars (nothing under ``--quiet``)."""
    if progress:
        tqdm.write(text, file=sys.stderr)


def to_device(generator: nn.Module, device: torch.device) -> None:
    """Move ``generator`` to the grid's device where it runs there; an int8 model stays on the CPU."""
    if device.type in generator.devices:
        generator.to(device)


def open_run_dir(ctx: GridContext, spec: RunSpec) -> Path:
    """The claimed run's directory, cleared of half-written files and holding its ``spec.json``."""
    directory = run_dir(ctx.results_dir, spec)
    for orphan in directory.glob(".*.tmp"):  # left by a process killed mid-write; the claim is ours now
        orphan.unlink()
    atomic_write_json(directory / SPEC_FILE, {"run_id": spec.run_id, **spec_columns(spec)})
    return directory
