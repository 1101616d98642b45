"""Run and grid specifications, the two presets, and their validation.

A ``RunSpec`` holds everything that changes a trained model; its hash is the run id, so the same spec always
lands in the same directory and a finished run is never redone. A ``GridSpec`` holds a whole benchmark:
the runs it expands to and how they are measured.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from bench.base.errors import UserError
from bench.base.io import is_file
from bench.base.layout import DISCRIMINATOR_FILE, PRUNE, QUANTIZE, SCRATCH, TEACHER_WIDTH, WIDTH
from gans import check_width

SCHEMA_VERSION = 1
PRECISIONS = ("fp32", "bf16")
# bounds that keep a typo from starting a run that cannot finish (or a seed torch's generators refuse)
MAX_SEED = 2**63
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536
MAX_FID_SAMPLES = 1_000_000


@dataclass(frozen=True)
class RunSpec:
    """One generator/discriminator pair to train; its fields are the spec columns of ``results.csv``."""

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
    # how the generator was made small (compress/): "width" trains a narrower one; "prune" cuts the teacher's
    # channels to the parameter count of the width-``width`` generator, then fine-tunes it
    method: str = WIDTH
    prune_importance: str | None = None  # prune: how channels are ranked ("bn", "l1")
    finetune_epochs: int = 0  # prune: epochs of fine-tuning after the cut
    quantize: str | None = None  # post-training quantization ("fp16", "bf16", "int8", "openvino-int8") of ``source()``

    def __post_init__(self) -> None:
        if self.kd == SCRATCH and self.kd_weight != 0.0:
            object.__setattr__(self, "kd_weight", 0.0)  # the weight means nothing without a teacher

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(run_key(self), sort_keys=True).encode()).hexdigest()[:10]
        method = "" if self.describe() == WIDTH else f"-{self.describe().replace('+', '-')}"
        return f"{self.dataset}-w{self.width}-{self.kd}{method}-s{self.seed}-{digest}"

    @property
    def is_teacher(self) -> bool:
        return self.teacher() == self

    @property
    def train_epochs(self) -> int:
        """Epochs of this run's own training loop: a pruned generator's fine-tuning, else ``epochs``."""
        return self.finetune_epochs if self.method == PRUNE else self.epochs

    def teacher(self) -> RunSpec:
        """The spec of the teacher this run distils from or is pruned from (itself, for the teacher run)."""
        return replace(
            self, width=self.teacher_width, kd=SCRATCH, kd_weight=0.0, disc_width=None, method=WIDTH,
            prune_importance=None, finetune_epochs=0, quantize=None,
        )  # fmt: skip

    def source(self) -> RunSpec:
        """The float run a quantized run is made from (itself for a float run)."""
        return replace(self, quantize=None)

    def derived_from(self) -> RunSpec | None:
        """The run whose generator this one was made from: a quantized run's source, a pruned run's teacher."""
        if self.quantize:
            return self.source()
        return self.teacher() if self.method == PRUNE else None

    def describe(self) -> str:
        """The method in a few characters: "width", "prune-bn", "width+int8"."""
        method = f"{self.method}-{self.prune_importance}" if self.prune_importance else self.method
        return f"{method}+{self.quantize}" if self.quantize else method


# The fields a RunSpec had when run ids were first issued (run key version 1): always hashed. A field added
# since enters the hash only when it differs from its default, so a new knob left at its default re-keys no
# finished run of any user; a field of this tuple must never be renamed or dropped.
RUN_KEY_V1_FIELDS = (
    "dataset", "width", "kd", "kd_weight", "seed", "epochs", "batch_size", "lr", "beta1", "beta2", "family",
    "disc_width", "teacher_width", "teacher_sha", "precision",
)  # fmt: skip


def run_key(spec: RunSpec) -> dict:
    """What ``spec.run_id`` hashes: every version-1 field, and every later field that is not at its default."""
    values = asdict(spec)
    key = {name: values[name] for name in RUN_KEY_V1_FIELDS}
    for spec_field in fields(spec):
        if spec_field.name not in key and values[spec_field.name] != spec_field.default:
            key[spec_field.name] = values[spec_field.name]
    return key


@dataclass(frozen=True)
class QualitySpec:
    """How generated samples are scored (bench/metrics/quality.py)."""

    fid_samples: int = 1000
    kid_subsets: int = 100  # torch-fidelity's default; KID's cost grows linearly with it
    inception_weights: str | None = None
    inception_download: bool = False
    # state_dicts of pretrained networks (bench/metrics/pretrained.py): FID, KID, precision/recall on each
    clip_weights: str | None = None
    dinov2_weights: str | None = None
    batch_size: int = 500
    # domain backbones scored (bench/metrics/backbones.py): two of different architecture and training, so that the
    # report can show whether they rank the models alike (Kendall's tau); each costs its training once per dataset
    # and seed (cached) and its scores of every model
    backbones: tuple[str, ...] = ("lenet", "resnet")

    def __post_init__(self) -> None:
        from bench.metrics.backbones import BACKBONES, PRIMARY

        object.__setattr__(self, "backbones", tuple(self.backbones))
        for name in self.backbones:
            BACKBONES.check(name)
        if len(set(self.backbones)) != len(self.backbones) or PRIMARY not in self.backbones:
            raise UserError(
                f"--backbones must be distinct and include {PRIMARY} (class consistency, density/coverage and "
                f"per-class FID rest on it), got {','.join(self.backbones) or 'none'}"
            )


@dataclass(frozen=True)
class SpeedSpec:
    """How every model is timed (bench/latency; docs/latency.md says what each knob does and why)."""

    backends: tuple[str, ...] | None = None  # None: every registered backend that runs on the device
    batches: tuple[int, ...] = (1, 16, 256)  # latency at the smallest, throughput at the largest
    devices: tuple[str, ...] = ("cpu",)  # a grid times on the CPU, and on its GPU when it has one
    rounds: int = 16
    calls_per_round: int = 64  # 16 x 64 = 1,024 calls: MLPerf single-stream's minimum query count
    min_calls_per_round: int = 8  # slow cells: 16 x 8 = 128 calls at least, so p99 lies inside the data
    seconds_per_cell: float = 2.0  # timed seconds a cell aims at; sets its calls per round within the bounds
    warmup_calls: int = 5
    noise_threshold: float = 0.10  # IQR of the per-round medians / their median
    max_retimes: int = 2
    atol: float = 1e-4  # largest |backend - eager| allowed on images in [-1, 1]

    def __post_init__(self) -> None:
        from bench.latency import BACKENDS, DEVICE_TYPES

        object.__setattr__(self, "batches", tuple(self.batches))
        object.__setattr__(self, "devices", tuple(self.devices))
        if self.backends is not None:
            object.__setattr__(self, "backends", tuple(self.backends))
            if not self.backends or len(set(self.backends)) != len(self.backends):
                raise UserError(f"latency backends must be distinct and at least one, got {self.backends}")
            for name in self.backends:
                BACKENDS.check(name)
        if not self.batches or len(set(self.batches)) != len(self.batches):
            raise UserError(f"latency batch sizes must be distinct and at least one, got {self.batches}")
        for batch in self.batches:
            _check_int(batch, "latency batch size", 1, MAX_BATCH)
        if not self.devices or any(d not in DEVICE_TYPES for d in self.devices):
            raise UserError(f"latency devices must be among {', '.join(DEVICE_TYPES)}, got {self.devices}")
        _check_int(self.rounds, "latency rounds", 2)  # the noise measure needs two rounds at least
        _check_int(self.calls_per_round, "calls per round", 1)
        _check_int(self.min_calls_per_round, "minimum calls per round", 1, self.calls_per_round)
        _check_int(self.warmup_calls, "warm-up calls", 1)
        _check_int(self.max_retimes, "re-timings", 0)
        for name in ("seconds_per_cell", "noise_threshold", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise UserError(f"latency {name.replace('_', ' ')} must be a positive number, got {value!r}")


def _check_int(value: object, what: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise UserError(f"{what} must be an integer {bound}, got {value!r}")


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
    data_root: str = "datasets"
    download: bool = False
    device: str = "auto"
    out: str = "results"
    cache_dir: str | None = None  # classifier and real-statistics cache; None: <out>/cache
    teacher: str | None = None  # a given teacher checkpoint instead of training one
    teacher_width: int = TEACHER_WIDTH
    disc_width: int | None = None
    precision: str = "fp32"
    log_every: int = 10
    samples_every_epoch: bool = False
    cuda_graphs: bool = True  # on CUDA: every training step replayed from a CUDA graph
    concurrent: bool = True  # on CUDA with graphs: members on their own streams, all seeds of a phase at once
    quality: QualitySpec = field(default_factory=QualitySpec)
    speed: SpeedSpec = field(default_factory=SpeedSpec)
    # compression methods (compress/): which run, and their settings
    methods: tuple[str, ...] = (WIDTH,)
    prune_widths: tuple[int, ...] | None = None  # parameter targets named by width; None: the grid's widths
    prune_importance: tuple[str, ...] = ("bn",)
    finetune_epochs: int = 2
    quantize: tuple[str, ...] = ("fp16", "bf16", "int8")  # modes applied to every float model when QUANTIZE runs

    def runs(self, teacher_sha: str | None = None, teacher_width: int | None = None) -> list[RunSpec]:
        """Per seed: the teacher (unless given, ``teacher_sha``), its width students, its pruned students, then
        every float model quantized to each mode."""
        teacher_width = teacher_width or self.teacher_width
        specs: list[RunSpec] = []
        for seed in self.seeds:
            base = RunSpec(
                self.dataset, teacher_width, SCRATCH, 0.0, seed, self.epochs, self.batch_size, family=self.family,
                teacher_width=teacher_width, teacher_sha=teacher_sha, precision=self.precision,
            )  # fmt: skip
            floats = [base]
            if WIDTH in self.methods:
                for kd in self.kd:
                    for width in self.widths:
                        floats.append(replace(base, width=width, kd=kd, kd_weight=self.kd_weight,
                                              disc_width=self.disc_width))  # fmt: skip
            if PRUNE in self.methods:
                for importance in self.prune_importance:
                    for kd in self.kd:
                        for width in self.pruned_widths(teacher_width):
                            floats.append(replace(base, width=width, kd=kd, kd_weight=self.kd_weight, method=PRUNE,
                                                  prune_importance=importance,
                                                  finetune_epochs=self.finetune_epochs))  # fmt: skip
            if teacher_sha is not None:
                floats.remove(base)
            floats = list(dict.fromkeys(floats))
            quantized = [replace(spec, quantize=mode) for spec in floats for mode in self.quantize]
            specs += floats + (quantized if QUANTIZE in self.methods else [])
        return specs

    def pruned_widths(self, teacher_width: int | None = None) -> tuple[int, ...]:
        """The widths whose parameter counts the pruned generators are cut to: narrower than the teacher."""
        teacher_width = teacher_width or self.teacher_width
        chosen = self.prune_widths if self.prune_widths is not None else self.widths
        return tuple(width for width in chosen if width < teacher_width)


PRESETS: dict[str, dict] = {
    # digits, under 4 minutes on a 2-core CPU, every stage exercised: a width-256 teacher keeps it that short
    "quick": dict(
        dataset="digits", widths=(16, 32, 64, 128), teacher_width=256, kd=(SCRATCH, "pixel-l1"), kd_weight=1.0,
        seeds=(1314,), epochs=6, batch_size=32, quality=QualitySpec(fid_samples=1000, kid_subsets=10),
        # every model behind eager PyTorch and OpenVINO in a few seconds each: p99 then rests on 24+ calls; noisy
        # cells are flagged, not re-timed (ONNX Runtime's export costs over a second per model: the paper preset and
        # --latency-backends eager,onnxruntime,openvino add it)
        speed=SpeedSpec(backends=("eager", "openvino"), batches=(1, 64), rounds=6, calls_per_round=16,
                        min_calls_per_round=4, seconds_per_cell=0.1, max_retimes=0),
        # every method at small scale: the teacher pruned to two widths' sizes and fine-tuned with and without
        # distillation; every float model quantized to int8 by torch.ao and by OpenVINO/NNCF (fp16/bf16 run 4-10x
        # slower than fp32 on a CPU)
        methods=(WIDTH, PRUNE, QUANTIZE), prune_widths=(32, 128), finetune_epochs=2,
        quantize=("int8", "openvino-int8"),
    ),
    # the original's setting: MNIST, 25 epochs, batch 128, three seeds, metrics on 10,000 samples
    "paper": dict(
        dataset="mnist", widths=(16, 32, 64, 128, 256, 512), kd=(SCRATCH, "pixel-l1"), kd_weight=1.0,
        seeds=(1314, 1315, 1316), epochs=25, batch_size=128, quality=QualitySpec(fid_samples=10_000),
        # fast cells get 8 x 128 = 1,024 calls; a slow one (batch 256 of a wide model on a CPU) 8 at least, so
        # that timing all 12 models behind 2 CPU backends stays near a minute or two
        speed=SpeedSpec(backends=("eager", "onnxruntime", "openvino", "cuda-graph"), rounds=8, calls_per_round=128,
                        min_calls_per_round=1, seconds_per_cell=1.0),
        # the original's grid is the width method alone; with --methods width,prune,quantize the teacher is pruned
        # to every student's size by both importances, fine-tuned 5 epochs with and without distillation, and every
        # float model quantized to fp16, bf16 and int8
        prune_importance=("bn", "l1"), finetune_epochs=5, quantize=("fp16", "bf16", "int8"),
    ),
}  # fmt: skip


def preset_values(preset: str) -> dict:
    """The settings of ``preset``, or a one-line error listing the presets."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[preset])


def make_grid(preset: str, **overrides) -> GridSpec:
    """The preset's grid with every non-None override applied, validated."""
    values = preset_values(preset)
    values.update({key: value for key, value in overrides.items() if value is not None})
    grid = GridSpec(preset=preset, **values)
    validate(grid)
    return grid


def validate(grid: GridSpec) -> None:
    """Raise a one-line ``UserError`` for anything that would otherwise fail deep inside a run."""
    from data import check_dataset
    from distill import check_objective
    from gans import FAMILIES

    check_dataset(grid.dataset)
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
    ]  # fmt: skip
    for failed, message in checks:
        if failed:
            raise UserError(message)
    if grid.teacher is not None and not is_file(grid.teacher):
        raise UserError(f"--teacher {grid.teacher}: no such file")
    validate_methods(grid)


def _distinct(values: tuple, flag: str, choices: tuple[str, ...]) -> None:
    if not values or len(set(values)) != len(values):
        raise UserError(f"{flag} needs distinct values, at least one, got {','.join(map(str, values)) or 'none'}")
    unknown = [value for value in values if value not in choices]
    if unknown:
        raise UserError(f"{flag}: unknown {', '.join(map(str, unknown))}; choose among {', '.join(choices)}")


def has_discriminator(teacher: str) -> bool:
    """Whether a given teacher checkpoint has its discriminator beside it (a run directory of this suite)."""
    return is_file(Path(teacher).parent / DISCRIMINATOR_FILE)


def validate_methods(grid: GridSpec) -> None:
    """The compression methods and their settings, checked like every other flag."""
    from compress.methods import METHODS
    from compress.prune import IMPORTANCES
    from compress.quantize import MODES

    _distinct(grid.methods, "--methods", tuple(METHODS.names()))
    if PRUNE in grid.methods:
        _distinct(grid.prune_importance, "--prune-importance", IMPORTANCES)
        _check_int(grid.finetune_epochs, "--finetune-epochs", 1, MAX_EPOCHS)
        for width in grid.prune_widths or ():
            check_width(width, "prune width")
        if not grid.pruned_widths():
            warnings.warn(
                f"no pruning target below the teacher's width ({grid.teacher_width}): the grid has no pruned run "
                "(--prune-widths sets the targets)",
                UserWarning,
                stacklevel=3,
            )
        if grid.teacher is not None and not has_discriminator(grid.teacher):
            raise UserError(
                f"--methods prune fine-tunes against the teacher's discriminator, and no {DISCRIMINATOR_FILE} lies "
                f"beside --teacher {grid.teacher}: give a run directory of this suite, or leave prune out of --methods"
            )
    if QUANTIZE in grid.methods:
        _distinct(grid.quantize, "--quantize", MODES)
