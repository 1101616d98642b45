"""A teacher given as a checkpoint (``--teacher``): how it was trained, and its record, so ratios against it are
computed like any other."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bench.base.io import read_json
from bench.base.layout import (
    SPEC_FILE,
    STATUS_DONE,
)
from bench.engine.records import (
    RunRecord,
    find_record,
    write_record,
)
from bench.engine.spec import RunSpec
from bench.engine.train import build_models
from bench.grid.context import GridContext
from bench.metrics.assess import assess

TRAINING_FIELDS = ("epochs", "batch_size", "lr", "beta1", "beta2", "precision")


def as_trained(teacher: RunSpec, checkpoint: Path) -> RunSpec:
    """The given teacher's spec with how it was trained (epochs, batch size, optimiser, precision), read from the
    ``spec.json`` beside its checkpoint when it came from a run of this suite; unchanged otherwise. The seed
    stays the grid's: the teacher's record is what the grid's students are compared against."""
    try:
        trained = read_json(Path(checkpoint).parent / SPEC_FILE)
        values = {name: type(getattr(teacher, name))(trained[name]) for name in TRAINING_FIELDS}
    except (OSError, ValueError, KeyError, TypeError):
        return teacher
    if trained.get("width") != teacher.width:  # a spec.json that does not describe this generator
        return teacher
    return replace(teacher, **values)


def record_given_teacher(ctx: GridContext, teacher: RunSpec) -> None:
    """Measure a teacher given as a checkpoint, so ratios against it can be computed like any other."""
    teacher = as_trained(teacher, Path(ctx.grid.teacher))
    if find_record(ctx.results_dir, teacher) is not None:
        return
    generator = ctx.teacher_generator(teacher)
    _, discriminator = build_models(teacher, ctx.dataset)  # sizes depend on the architecture alone
    # scored against itself, as a trained teacher is: its teacher L1 is 0, not missing
    metrics = assess(generator, discriminator, generator, ctx.evaluator)
    write_record(ctx.results_dir, RunRecord(teacher, STATUS_DONE, {"given_checkpoint": ctx.grid.teacher, **metrics}))
