"""A grid planned as cohorts: per seed, one cohort per phase, in the order the methods' phases need each other."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import gans
from bench.base.io import file_sha256
from bench.base.layout import SCRATCH
from bench.engine.checkpoints import safe_torch_load
from bench.engine.methods import method_of, needs, phase_of, phases
from bench.engine.spec import RunSpec
from bench.grid.spec import GridSpec


@dataclass(frozen=True)
class Cohort:
    """Runs of one seed and phase, trained (or derived) together; ``teacher`` is the run they distil from or are
    pruned from."""

    seed: int
    phase: str  # one of bench.engine.methods.phases()
    specs: tuple[RunSpec, ...]
    teacher: RunSpec | None = None

    @property
    def name(self) -> str:
        return f"seed {self.seed} {self.phase} ({len(self.specs)} runs)"

    @property
    def trained(self) -> bool:
        """Whether its runs train in a loop (else they are derived from finished runs, without training)."""
        return method_of(self.specs[0]).trained

    @property
    def needs_teacher(self) -> bool:
        """Whether its runs start from, or distil from, the seed's finished teacher."""
        return any(needs(spec) == spec.teacher() for spec in self.specs)


def plan(specs: list[RunSpec]) -> list[Cohort]:
    """Per seed, one cohort per phase that has runs, in ``phases()`` order."""
    cohorts = []
    for seed in dict.fromkeys(spec.seed for spec in specs):
        of_seed = [spec for spec in specs if spec.seed == seed]
        teacher = of_seed[0].teacher()
        for phase in phases():
            chosen = tuple(spec for spec in of_seed if phase_of(spec) == phase)
            if chosen:
                cohorts.append(Cohort(seed, phase, chosen, teacher))
    return cohorts


def schedule(cohorts: list[Cohort], together: bool) -> list[list[Cohort]]:
    """Batches of cohorts run at once: every seed's cohort of a phase, phase after phase (``together``), or one
    cohort at a time."""
    if not together:
        return [[cohort] for cohort in cohorts]
    batches = [[cohort for cohort in cohorts if cohort.phase == phase] for phase in phases()]
    return [batch for batch in batches if batch]


def teacher_width_of(path: Path, family: str) -> int:
    """The width (first-layer channels) of the ``family`` generator saved at ``path``."""
    return gans.width_of(family, safe_torch_load(path), f"checkpoint {path}")


def grid_runs(grid: GridSpec) -> list[RunSpec]:
    """Every run of the grid; with a given teacher checkpoint, its width and hash enter every spec."""
    if grid.teacher is None:
        _warn_if_narrow_teacher(grid, grid.teacher_width)
        return grid.runs()
    width = gans.check_width(teacher_width_of(Path(grid.teacher), grid.family), "teacher width")
    _warn_if_narrow_teacher(grid, width)
    return grid.runs(teacher_sha=file_sha256(Path(grid.teacher))[:16], teacher_width=width)


def _warn_if_narrow_teacher(grid: GridSpec, teacher_width: int) -> None:
    wider = sorted(w for w in grid.widths if w > teacher_width)
    if wider and any(kd != SCRATCH for kd in grid.kd):
        warnings.warn(
            f"the teacher (width {teacher_width}) is narrower than the students of width "
            f"{', '.join(map(str, wider))}: they distil from a smaller generator",
            UserWarning,
            stacklevel=3,
        )
