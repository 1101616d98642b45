"""The compression methods a grid can run, one registration each: how a run's generator is made and loaded.

A method is either **trained** (``start`` gives the generator/discriminator pair the grid's training loop starts
from: ``width`` a fresh narrower pair, ``prune`` the teacher's generator cut to a parameter target and the
teacher's discriminator) or **derived** (``derive`` turns a finished run's generator into a new model without
training: ``quantize``). ``load`` rebuilds the saved generator of a finished run, so latency, reports and
resumed grids read every method the same way. Adding a method is one module with these functions and one
``register_method`` call, imported at the end of this file. A derived method declares ``tolerance``: how far its
model's images may be from its source's, checked when each model is made (``compress.fidelity``).

The methods live beside ``distill/`` rather than inside the engine because each one is a model transformation
(torch-pruning, torch.ao) that a user may call on any generator; the engine only schedules them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from bench.base.layout import GENERATOR_FILE
from bench.base.registry import Registry
from bench.engine.spec import RunSpec
from compress.fidelity import Tolerance
from data import DataShape

Pair = tuple[nn.Module, nn.Module]


@dataclass(frozen=True)
class Sources:
    """What a method may start from: the run's own directory (files it saved before a crash) and the finished
    teacher of its seed (its generator and the directory holding its discriminator)."""

    run_dir: Path
    teacher_generator: nn.Module | None = None
    teacher_dir: Path | None = None


@dataclass(frozen=True)
class Method:
    """One way to make a generator small; ``start`` for a trained method, ``derive`` for a derived one."""

    name: str
    description: str  # one line for --help
    load: Callable[[Path, RunSpec, DataShape], nn.Module]  # generator file, spec, data shape -> generator
    start: Callable[[RunSpec, DataShape, Sources], Pair] | None = None
    # (source generator, spec, run directory) -> the model, saved there as the run's generator, and its columns
    derive: Callable[[nn.Module, RunSpec, Path], tuple[nn.Module, dict]] | None = None
    columns: Callable[[Path], dict] | None = None  # a trained run's own results.csv columns, read from its directory
    # a derived run's spec -> how far its model may be from its source's (compress/fidelity.py)
    tolerance: Callable[[RunSpec], Tolerance] | None = None
    # a finished run's spec -> the files of its directory its generator is rebuilt from: without them it is made
    # again
    files: Callable[[RunSpec], tuple[str, ...]] = lambda spec: (GENERATOR_FILE,)

    def __post_init__(self) -> None:
        if (self.start is None) == (self.derive is None):
            raise ValueError(f"method {self.name!r}: give exactly one of start (trained) or derive (derived)")
        if (self.derive is None) != (self.tolerance is None):
            raise ValueError(f"method {self.name!r}: a derived method, and only one, declares its tolerance")


METHODS: Registry[Method] = Registry("compression method")


def register_method(method: Method) -> Method:
    return METHODS.add(method.name, method)


def method_of(spec: RunSpec) -> Method:
    """The method that made ``spec``'s generator: its quantization when it has one, else how it was shrunk."""
    return METHODS["quantize" if spec.quantize else spec.method]


def load_generator(path: Path, spec: RunSpec, data: DataShape) -> nn.Module:
    """The generator of ``spec`` saved at ``path``, rebuilt by the method that made it."""
    return method_of(spec).load(Path(path), spec, data)


# the methods register themselves on import, in the order --help lists them
from compress import width, prune, quantize  # noqa: E402,F401  isort: skip
