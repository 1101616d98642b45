"""The grid specification: a whole benchmark, the runs it expands to, and its validation.

A ``GridSpec`` holds the axes every method shares (dataset, family, widths, objectives, seeds, training) and each
method's own settings (``settings``, by method name); ``runs`` asks every chosen method for its runs of each seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.base.errors import UserError, distinct
from bench.base.io import is_file
from bench.base.layout import SCRATCH, TEACHER_WIDTH, WIDTH
from bench.engine.methods import METHODS, Expansion, methods_in_order
from bench.engine.spec import MAX_BATCH, MAX_EPOCHS, MAX_SEED, PRECISIONS, RunSpec
from bench.engine.tensorboard import check_available
from bench.latency.settings import SpeedSpec
from bench.metrics.settings import MAX_FID_SAMPLES, QualitySpec
from gans import check_width
from gans.family import IMAGE_SIZES
from gans.plugins import load_family


@dataclass(frozen=True)
class GridSpec:
    """A whole benchmark: every run it expands to, and how they are trained and measured."""

    preset: str
    dataset: str
    widths: tuple[int, ...]
    kd: tuple[str, ...]
    kd_weight: float
    seeds: tuple[int, ...]
    epochs: int
    batch_size: int
    family: str = "dcgan"
    family_module: str | None = None  # FILE.py:NAME or package.module:NAME of a family from outside the suite
    data_root: str = "datasets"
    download: bool = False
    image_size: int | None = None  # the data's image size (28, 32 or 64); None: the dataset's own
    device: str = "auto"
    out: str = "results"
    cache_dir: str | None = None  # classifier and real-statistics cache; None: <out>/cache
    teacher: str | None = None  # a given teacher checkpoint instead of training one
    teacher_width: int = TEACHER_WIDTH
    disc_width: int | None = None
    precision: str = "fp32"
    log_every: int = 10
    samples_every_epoch: bool = False
    tensorboard: bool = False  # every run's losses, samples and final metrics as TensorBoard events
    cuda_graphs: bool = True  # on CUDA: every training step replayed from a CUDA graph
    concurrent: bool = True  # on CUDA with graphs: members on their own streams, all seeds of a phase at once
    quality: QualitySpec = field(default_factory=QualitySpec)
    speed: SpeedSpec = field(default_factory=SpeedSpec)
    methods: tuple[str, ...] = (WIDTH,)  # compression methods (bench.engine.methods) that run
    settings: dict[str, Any] = field(default_factory=dict)  # method name -> its settings; absent: its defaults

    def keyed_image_size(self) -> int | None:
        """The image size the runs are keyed by: None where it is the dataset's own (``--image-size`` not given, or
        given at that size), so that a grid at its dataset's own size keeps its run ids."""
        from data import default_size

        return None if self.image_size in (None, default_size(self.dataset)) else self.image_size

    def settings_of(self, method: str) -> Any:
        """The settings of ``method``: the grid's, else the method's defaults."""
        return self.settings.get(method) or METHODS[method].default_settings()

    def runs(self, teacher_sha: str | None = None, teacher_width: int | None = None) -> list[RunSpec]:
        """Per seed: the teacher (unless given, ``teacher_sha``), every trained method's runs, then every derived
        method's models of them."""
        teacher_width = teacher_width or self.teacher_width
        specs: list[RunSpec] = []
        for seed in self.seeds:
            teacher = RunSpec(
                self.dataset, teacher_width, SCRATCH, 0.0, seed, self.epochs, self.batch_size, family=self.family,
                teacher_width=teacher_width, teacher_sha=teacher_sha, precision=self.precision,
                image_size=self.keyed_image_size(),
            )  # fmt: skip
            trained = [teacher]
            for method in methods_in_order(self.methods):
                if method.trained:
                    trained += method.expand(self._expansion(method.name, teacher, ()))
            if teacher_sha is not None:
                trained.remove(teacher)
            trained = list(dict.fromkeys(trained))
            derived = [
                spec
                for method in methods_in_order(self.methods)
                if not method.trained
                for spec in method.expand(self._expansion(method.name, teacher, tuple(trained)))
            ]
            specs += trained + derived
        return specs

    def _expansion(self, method: str, teacher: RunSpec, trained: tuple[RunSpec, ...]) -> Expansion:
        return Expansion(
            teacher, self.widths, self.kd, self.kd_weight, self.disc_width, self.settings_of(method), trained
        )


def validate(grid: GridSpec) -> None:
    """Raise a one-line ``UserError`` for anything that would otherwise fail deep inside a run."""
    from data import check_dataset
    from distill import check_objective
    from gans import FAMILIES

    check_dataset(grid.dataset)
    if grid.family_module is not None:  # imported (once) in every process that reads the grid
        load_family(grid.family_module)
    FAMILIES.check(grid.family)
    for width in grid.widths:
        check_width(width)
    check_width(grid.teacher_width, "teacher width")
    if grid.disc_width is not None:
        check_width(grid.disc_width, "discriminator width")
    for kd in grid.kd:
        check_objective(kd)
    checks = [
        (not grid.widths, "--widths needs at least one width"),
        (not grid.kd, "--kd needs at least one objective"),
        (not grid.seeds, "--seeds needs at least one seed"),
        (any(not 0 <= seed < MAX_SEED for seed in grid.seeds), f"--seeds must lie in 0..{MAX_SEED - 1}"),
        (grid.epochs < 1, f"--epochs must be at least 1, got {grid.epochs}"),
        (grid.epochs > MAX_EPOCHS, f"--epochs must be at most {MAX_EPOCHS}, got {grid.epochs}"),
        (grid.batch_size < 2, f"--batch-size must be at least 2, got {grid.batch_size}"),
        (grid.batch_size > MAX_BATCH, f"--batch-size must be at most {MAX_BATCH}, got {grid.batch_size}"),
        (not math.isfinite(grid.kd_weight), f"--kd-weight must be a finite number, got {grid.kd_weight}"),
        (grid.kd_weight < 0, f"--kd-weight must be non-negative, got {grid.kd_weight}"),
        (grid.log_every < 1, f"--log-every must be at least 1, got {grid.log_every}"),
        (grid.quality.fid_samples < 10, f"--fid-samples must be at least 10, got {grid.quality.fid_samples}"),
        (grid.quality.fid_samples > MAX_FID_SAMPLES,
         f"--fid-samples must be at most {MAX_FID_SAMPLES}, got {grid.quality.fid_samples}"),
        (grid.precision not in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
        (grid.image_size is not None and grid.image_size not in IMAGE_SIZES,
         f"--image-size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {grid.image_size}"),
    ]  # fmt: skip
    for failed, message in checks:
        if failed:
            raise UserError(message)
    if grid.tensorboard:
        check_available()
    if grid.teacher is not None and not is_file(grid.teacher):
        raise UserError(f"--teacher {grid.teacher}: no such file")
    validate_methods(grid)


def validate_methods(grid: GridSpec) -> None:
    """The methods chosen, and each one's settings against the grid (by the method's own ``check``)."""
    distinct(grid.methods, "--methods", tuple(METHODS.names()))
    unknown = sorted(set(grid.settings) - set(METHODS.names()))
    if unknown:
        raise UserError(f"settings given for unknown methods: {', '.join(unknown)}")
    for name in grid.methods:
        method = METHODS[name]
        if method.check is not None:
            method.check(grid.settings_of(name), grid)
