"""The run specification: everything that changes a trained model, hashed into the run's id.

The same spec always lands in the same directory, so a finished run is never redone. A compression method's own
knobs ride in ``options`` and a model derived without training (a quantized one) names its method and variant in
``derived``; both enter the hash under their own names, as the flat fields they once were, so no run id changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from bench.base.errors import UserError
from bench.base.layout import SCRATCH, TEACHER_WIDTH, WIDTH

SCHEMA_VERSION = 1
PRECISIONS = ("fp32", "bf16")
# bounds that keep a typo from starting a run that cannot finish (or a seed torch's generators refuse)
MAX_SEED = 2**63
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536

Options = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class RunSpec:
    """One generator/discriminator pair to train (or one model to derive); with its options flattened, its fields
    are the spec columns of ``results.csv``."""

    dataset: str
    width: int
    kd: str
    kd_weight: float
    seed: int
    epochs: int
    batch_size: int
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    family: str = "dcgan"
    disc_width: int | None = None
    teacher_width: int = TEACHER_WIDTH
    teacher_sha: str | None = None  # sha256 of a given teacher checkpoint, else the grid's own teacher
    precision: str = "fp32"
    image_size: int | None = None  # the data's image size where it is not the dataset's own (--image-size)
    method: str = WIDTH  # the registered method that makes the generator small (bench.engine.methods)
    options: Options = ()  # that method's per-run knobs, e.g. (("finetune_epochs", 2), ("prune_importance", "bn"))
    derived: tuple[str, str] | None = (
        None  # (method, variant) of a model derived from ``source()``: ("quantize", "int8")
    )

    def __post_init__(self) -> None:
        if self.kd == SCRATCH and self.kd_weight != 0.0:
            object.__setattr__(self, "kd_weight", 0.0)  # the weight means nothing without a teacher
        options = dict(self.options)  # a dict or pairs; a knob at None is a knob not set
        object.__setattr__(self, "options", tuple(sorted((k, v) for k, v in options.items() if v is not None)))
        if self.derived is not None:
            object.__setattr__(self, "derived", tuple(self.derived))

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(run_key(self), sort_keys=True).encode()).hexdigest()[:10]
        method = "" if self.describe() == WIDTH else f"-{self.describe().replace('+', '-')}"
        return f"{self.dataset}-w{self.width}-{self.kd}{method}-s{self.seed}-{digest}"

    @property
    def is_teacher(self) -> bool:
        return self.teacher() == self

    def teacher(self) -> RunSpec:
        """The spec of the seed's teacher, the run every other run of the seed is compared with (itself, for the
        teacher run)."""
        return replace(
            self, width=self.teacher_width, kd=SCRATCH, kd_weight=0.0, disc_width=None, method=WIDTH, options=(),
            derived=None,
        )  # fmt: skip

    def source(self) -> RunSpec:
        """The trained run a derived model is made from (itself for a trained run)."""
        return replace(self, derived=None)

    def describe(self) -> str:
        """The method in a few characters: "width", "prune-bn", "width+int8" (an option given as text names it)."""
        method = "-".join([self.method, *(value for _, value in self.options if isinstance(value, str))])
        return f"{method}+{self.derived[1]}" if self.derived else method


# The fields a RunSpec had when run ids were first issued (run key version 1): always hashed. A field added
# since enters the hash only when it differs from its default, so a new knob left at its default re-keys no
# finished run of any user; a field of this tuple must never be renamed or dropped. Options and a derivation
# enter under their own names (they were fields once: "prune_importance", "finetune_epochs", "quantize").
RUN_KEY_V1_FIELDS = (
    "dataset", "width", "kd", "kd_weight", "seed", "epochs", "batch_size", "lr", "beta1", "beta2", "family",
    "disc_width", "teacher_width", "teacher_sha", "precision",
)  # fmt: skip
_FLATTENED = ("options", "derived")


def run_key(spec: RunSpec) -> dict:
    """What ``spec.run_id`` hashes: every version-1 field, every later field that is not at its default, every
    option and the derivation."""
    values = asdict(spec)
    key = {name: values[name] for name in RUN_KEY_V1_FIELDS}
    for spec_field in fields(spec):
        name = spec_field.name
        if name not in key and name not in _FLATTENED and values[name] != spec_field.default:
            key[name] = values[name]
    key.update(spec.options)
    if spec.derived:
        key[spec.derived[0]] = spec.derived[1]
    return key


def plain_fields() -> tuple[str, ...]:
    """The spec's own columns: every field but the options and the derivation, which are flattened."""
    return tuple(f.name for f in fields(RunSpec) if f.name not in _FLATTENED)


def check_int(value: object, what: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise UserError(f"{what} must be an integer {bound}, got {value!r}")
