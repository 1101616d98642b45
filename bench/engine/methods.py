"""The registry of compression methods: what each one makes, from what, when, with which knobs.

A method is **trained** (``start`` gives the generator/discriminator pair the training loop starts from) or
**derived** (``derive`` turns a finished run's generator into a new model without training). Each declares, in its
own module (``compress/``), everything the grid needs of it: its settings dataclass and flags, how it expands a grid
into runs (``expand``), the phases its runs train in, what each run needs finished first, how its model is loaded
and which files it is rebuilt from. The orchestration reads all of it from here, so a new method is one module and
one ``register_method`` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from bench.base.errors import UserError
from bench.base.flags import Flag
from bench.base.layout import GENERATOR_FILE, SCRATCH, WIDTH
from bench.base.registry import Registry
from bench.engine.spec import RunSpec, plain_fields
from data import DataShape

Pair = tuple[nn.Module, nn.Module]


@dataclass(frozen=True)
class Sources:
    """What a method may start from: the run's own directory (files it saved before a crash), the finished
    teacher of its seed (its generator and the directory holding its discriminator) and the directory of the
    finished run its generator is made from (``made_from``), if any."""

    run_dir: Path
    teacher_generator: nn.Module | None = None
    teacher_dir: Path | None = None
    source_dir: Path | None = None


@dataclass(frozen=True)
class Expansion:
    """What a method expands into one seed's runs: the seed's teacher, the grid's axes, the method's settings and
    (for a derived method) the trained models of the seed so far."""

    teacher: RunSpec
    widths: tuple[int, ...]
    kd: tuple[str, ...]
    kd_weight: float
    disc_width: int | None
    settings: Any
    trained: tuple[RunSpec, ...] = ()


def students(spec: RunSpec) -> RunSpec | None:
    """The default ``needs``: a distilled run needs its teacher; a run trained from scratch needs nothing."""
    return spec.teacher() if spec.kd != SCRATCH else None


@dataclass(frozen=True)
class Method:
    """One way to make a generator small; ``start`` for a trained method, ``derive`` for a derived one."""

    name: str
    description: str  # one line for --help
    load: Callable[[Path, RunSpec, DataShape], nn.Module]  # generator file, spec, data shape -> generator
    expand: Callable[[Expansion], list[RunSpec]]  # one seed's runs of this method
    phases: tuple[str, ...]  # the cohorts its runs are trained (or derived) in, in order
    phase: Callable[[RunSpec], str] | None = None  # a run's phase; None: ``phases[0]``
    needs: Callable[[RunSpec], RunSpec | None] = students  # the run that must finish first
    made_from: Callable[[RunSpec], RunSpec | None] = lambda spec: None  # the run its generator is cut from
    start: Callable[[RunSpec, DataShape, Sources], Pair] | None = None
    # (spec, its generator, data shape) -> what the generator's optimiser trains beside it (compress/online.py: the
    # co-trained teacher and its feature adapters); None: the spec's --kd objective
    objective: Callable[[RunSpec, nn.Module, DataShape], nn.Module | None] | None = None
    # (member, real, labels, z, fake labels, teacher output, autocast) -> its (loss_d, loss_g_gan, loss_kd, loss_g):
    # a trained method's own update of a run; None: the training loop's ``train_step``
    step: Callable[..., Any] | None = None
    # (source generator, spec, run directory) -> the model, saved there as the run's generator, and its columns
    derive: Callable[[nn.Module, RunSpec, Path], tuple[nn.Module, dict]] | None = None
    # (run directory, its training columns) -> a trained run's own results.csv columns
    columns: Callable[[Path, dict], dict] | None = None
    # a derived run's spec -> how far its model may be from its source's (compress/fidelity.py)
    tolerance: Callable[[RunSpec], Any] | None = None
    # a finished run's spec -> the files of its directory its generator is rebuilt from: without them it is made
    # again
    files: Callable[[RunSpec], tuple[str, ...]] = lambda spec: (GENERATOR_FILE,)
    settings: type | None = None  # a frozen dataclass of its grid-level knobs, every field with a default
    flags: tuple[Flag, ...] = ()  # the command-line flags that set ``settings`` fields
    options: dict[str, Any] = field(default_factory=dict)  # per-run knobs (RunSpec.options) and their CSV default
    train_epochs: Callable[[RunSpec], int] | None = None  # epochs of its training loop; None: the spec's epochs
    check: Callable[[Any, Any], None] | None = None  # (settings, grid) -> raise UserError for what cannot run
    # (preset's settings, preset's grid, grid as narrowed by flags) -> the settings that follow the narrowing (a
    # preset's pruning targets follow --widths); None: the preset's settings as they are
    follow: Callable[[Any, Any, Any], Any] | None = None
    # a file its objective's state is saved to beside the generator when training ends: for a method whose
    # objective holds part of its models (once-for-all: the narrower widths' batch norms)
    objective_file: str | None = None
    graphs: bool = True  # whether its step may be replayed from a CUDA graph (not one that decides on the host)
    # the widths one step of a run trains (the plan's estimate times a plain step at each); None: the run's width
    step_widths: Callable[[RunSpec], tuple[int, ...]] | None = None

    def __post_init__(self) -> None:
        if (self.start is None) == (self.derive is None):
            raise ValueError(f"method {self.name!r}: give exactly one of start (trained) or derive (derived)")
        if (self.derive is None) != (self.tolerance is None):
            raise ValueError(f"method {self.name!r}: a derived method, and only one, declares its tolerance")
        clash = set(self.options) & set(plain_fields())
        if clash:
            raise ValueError(f"method {self.name!r}: options {sorted(clash)} are run spec fields already")
        if not self.phases:
            raise ValueError(f"method {self.name!r}: declare the phase(s) its runs take")
        if self.derive is not None and (self.objective is not None or self.step is not None):
            raise ValueError(f"method {self.name!r}: only a trained method has an objective or a step of its own")

    @property
    def trained(self) -> bool:
        return self.derive is None

    def phase_of(self, spec: RunSpec) -> str:
        return self.phase(spec) if self.phase else self.phases[0]

    def default_settings(self) -> Any:
        return self.settings() if self.settings else None


METHODS: Registry[Method] = Registry("compression method")


def register_method(method: Method) -> Method:
    return METHODS.add(method.name, method)


def methods_in_order(names: tuple[str, ...] | None = None) -> list[Method]:
    """The methods (all, or those named), trained ones first, each group in registration order: a derived method
    makes its models from every trained one."""
    chosen = [METHODS[name] for name in METHODS.names() if names is None or name in names]
    return [m for m in chosen if m.trained] + [m for m in chosen if not m.trained]


def phases() -> tuple[str, ...]:
    """Every phase of a seed, in the order its cohorts run: each needs only what the ones before it made."""
    return tuple(dict.fromkeys(phase for method in methods_in_order() for phase in method.phases))


def method_of(spec: RunSpec) -> Method:
    """The method that made ``spec``'s model: its derivation when it has one, else how it was made small."""
    return METHODS[spec.derived[0] if spec.derived else spec.method]


def phase_of(spec: RunSpec) -> str:
    return method_of(spec).phase_of(spec)


def needs(spec: RunSpec) -> RunSpec | None:
    """The run whose finished model ``spec`` needs first: a derived model's source, a distilled or pruned run's
    teacher; None for a run trained from scratch."""
    return spec.source() if spec.derived else METHODS[spec.method].needs(spec)


def made_from(spec: RunSpec) -> RunSpec | None:
    """The run whose generator this one was made from (its ``source_run``): a derived model's source, a pruned
    run's teacher."""
    return spec.source() if spec.derived else METHODS[spec.method].made_from(spec)


def train_epochs(spec: RunSpec) -> int:
    """Epochs of the run's own training loop (a pruned generator's fine-tuning, say), by its method."""
    method = METHODS[spec.method]
    return method.train_epochs(spec) if method.train_epochs else spec.epochs


def load_generator(path: Path, spec: RunSpec, data: DataShape) -> nn.Module:
    """The generator of ``spec`` saved at ``path``, rebuilt by the method that made it."""
    return method_of(spec).load(Path(path), spec, data)


def spec_columns(spec: RunSpec) -> dict[str, Any]:
    """``spec`` as flat columns: its fields, every registered method's options (at their default where the run
    has none) and a column per derived method holding its variant: every record has the same columns."""
    columns: dict[str, Any] = {name: getattr(spec, name) for name in plain_fields()}
    for method in methods_in_order():
        if method.trained:
            columns.update({name: spec.option(name, default) for name, default in method.options.items()})
        else:
            columns[method.name] = spec.derived[1] if spec.derived and spec.derived[0] == method.name else None
    return columns


def spec_from_columns(columns: dict[str, Any]) -> RunSpec:
    """The spec that ``spec_columns`` flattened: the options its method declares, its derivation by column name."""
    method = columns.get("method", WIDTH)
    if method not in METHODS:
        raise UserError(f"method {method!r} is not registered")
    options = {name: columns[name] for name in METHODS[method].options if columns.get(name) is not None}
    derived = [name for name in METHODS.names() if not METHODS[name].trained and columns.get(name) is not None]
    spec = RunSpec(**{name: columns[name] for name in plain_fields() if name in columns}, options=options)
    return replace(spec, derived=(derived[0], str(columns[derived[0]]))) if derived else spec
