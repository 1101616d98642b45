"""Method ``width``: a narrower generator, trained from scratch or distilled (the suite's first method)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from bench.base.errors import CheckpointError
from bench.base.layout import SCRATCH, WIDTH
from bench.engine.checkpoints import safe_torch_load
from bench.engine.methods import Expansion, Method, Pair, Sources, register_method
from bench.engine.models import build_models
from bench.engine.spec import RunSpec
from data import DataShape


def start(spec: RunSpec, data: DataShape, sources: Sources) -> Pair:
    """A freshly initialised pair of the run's width (the same for every objective: see ``build_models``)."""
    return build_models(spec, data)


def load(path: Path, spec: RunSpec, data: DataShape) -> nn.Module:
    """A generator of ``spec``'s architecture with the weights at ``path``; a foreign file is refused."""
    generator, _ = build_models(spec, data)
    load_state(generator, path, f"a width-{spec.width} {spec.family} generator")
    return generator


def load_state(generator: nn.Module, path: Path, what: str) -> None:
    """Load the state_dict saved at ``path`` into ``generator`` (``what`` names it in the error)."""
    state = safe_torch_load(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a generator state_dict")
    try:
        generator.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit {what}: {str(err).splitlines()[0]}") from None


def expand(grid: Expansion) -> list[RunSpec]:
    """Every objective at every width: the grid's own axes (a run of the teacher's width and objective is the
    teacher itself)."""
    return [
        replace(grid.teacher, width=width, kd=kd, kd_weight=grid.kd_weight, disc_width=grid.disc_width)
        for kd in grid.kd
        for width in grid.widths
    ]


def phase(spec: RunSpec) -> str:
    """Runs from scratch (the teacher among them) train first; distilled ones once their teacher is done."""
    return "scratch" if spec.kd == SCRATCH else "distill"


register_method(
    Method(
        WIDTH,
        "a narrower generator trained from scratch or distilled (--widths, --kd)",
        load,
        expand,
        phases=("scratch", "distill"),
        phase=phase,
        start=start,
    )
)
