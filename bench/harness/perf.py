"""Training-loop benchmark: the harness's loop against a loop written the way the original project was.

``python -m bench.harness.perf`` times, for every width and objective, training steps per second of

* the **reference** loop (``bench.harness.reference``), written the way the original was: per-item PIL transforms
  through a ``DataLoader``, conditions built on the CPU each step, a loss ``.item()`` every step, one run per
  process, so a distilled student runs its own teacher forward;
* the **harness** loop (``bench.engine.train.train_cohorts``): the dataset on the device, batches and noise drawn
  there, one-hot built there, epoch checkpoints included; first each width alone, then the whole grid of a
  seed as one cohort sharing every batch and one teacher forward per step. ``--modes`` times it eagerly
  (``eager``), replayed from a CUDA graph (``graphs``) and with every member on its own stream inside the
  graph (``graphs-streams``); its figure is the marginal cost of a step (see ``harness_steps``).

Both loops make the same updates (same models, losses and optimisers), so their ratio is the loop's
overhead alone. Each is timed ``--repeats`` times, alternating, and the median kept. ``--variants`` adds, per
width, the bare update (no loop around it) in eager mode and under each way in that changes the kernels
(channels-last, ``torch.compile``, bf16 autocast): the floor a loop can reach, and what each way in buys.
This is a benchmark, not a test: it writes a CSV and a Markdown table, it asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from itertools import chain, count
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from bench.base.errors import UserError
from bench.base.io import atomic_write_text
from bench.base.layout import SCRATCH
from bench.engine.device import device_name, resolve_device, tune_for
from bench.engine.spec import RunSpec
from bench.engine.train import (
    BatchStream,
    LoopOptions,
    TrainGroup,
    build_models,
    make_member,
    precision_autocast,
    train_cohorts,
    train_step,
)  # fmt: skip
from bench.harness.reference import ReferenceRun
from data import ImageDataset, get_dataset


def reference_steps(spec: RunSpec, dataset: ImageDataset, device: torch.device, steps: int) -> float:
    """Seconds per update of ``spec`` in the original's style, over ``steps`` updates after one warm-up."""
    updates = ReferenceRun.create(spec, dataset, device, _untrained_teacher([spec], dataset, device)).updates()
    next(updates)
    return _seconds_per_call(lambda: next(updates), steps, device)


HARNESS_MODES = {
    "eager": LoopOptions(progress=False, cuda_graphs=False, concurrent=False),
    "graphs": LoopOptions(progress=False, cuda_graphs=True, concurrent=False),
    "graphs-streams": LoopOptions(progress=False, cuda_graphs=True, concurrent=True),
}


def harness_steps(
    specs: list[RunSpec], dataset: ImageDataset, device: torch.device, steps: int, workdir: Path,
    mode: str = "eager",
) -> float:  # fmt: skip
    """Seconds per update of every spec trained as one cohort by ``train_cohorts`` in ``mode`` (``HARNESS_MODES``).

    The marginal cost of a step: a fresh cohort trained for two epochs of ``steps`` steps, minus one trained
    for one epoch. What a run pays once (building the loop, a CUDA graph's warm-up and capture) cancels out,
    as it does over a real run's thousands of steps; the per-epoch checkpoint stays in.
    """
    batch = specs[0].batch_size
    subset = replace(dataset, train_images=dataset.train_images[: steps * batch],
                     train_labels=dataset.train_labels[: steps * batch])  # fmt: skip
    per_epoch = len(subset.train_labels) // batch
    teacher = _untrained_teacher(specs, dataset, device)
    fresh = Path(tempfile.mkdtemp(dir=workdir))  # no checkpoint of an earlier call may be resumed
    options = HARNESS_MODES[mode]

    def seconds(tag: str, epochs: int) -> float:
        group = TrainGroup([make_member(replace(s, epochs=epochs), fresh / tag / s.run_id, subset, device)
                            for s in specs], teacher)  # fmt: skip
        return _seconds_per_call(lambda: train_cohorts([group], subset, device, options), 1, device)

    seconds("warm-up", 1)
    marginal = seconds("two", 2) - seconds("one", 1)
    if marginal <= 0:  # the machine's noise exceeded an epoch's work: no number rather than a wrong one
        warnings.warn(f"{mode} harness: an epoch of {per_epoch} steps took no measurable time; raise --steps",
                      RuntimeWarning, stacklevel=2)  # fmt: skip
        return math.nan
    return marginal / per_epoch


VARIANTS = ("eager", "channels-last", "compile", "bf16")
WARMUP_STEPS = 3


def step_seconds(spec: RunSpec, dataset: ImageDataset, device: torch.device, steps: int, repeats: int,
                 variant: str, workdir: Path) -> float:  # fmt: skip
    """Median seconds per bare ``train_step`` of ``spec`` (teacher forward included) under ``variant``.

    Nothing runs around the update (no logging, checkpoints or host syncs), so this is the floor any loop can
    reach with these kernels; the variants are the ways in that change the kernels themselves.
    """
    if variant == "bf16":
        spec = replace(spec, precision="bf16")
    member = make_member(spec, Path(tempfile.mkdtemp(dir=workdir)), dataset, device)
    teacher = _untrained_teacher([spec], dataset, device)
    models = [model for model in (member.generator, member.discriminator, teacher) if model is not None]
    if variant == "channels-last":
        for model in models:
            model.to(memory_format=torch.channels_last)
    if variant == "compile":
        torch.compiler.reset()  # each model instance is compiled afresh, never hitting the recompile limit
        for model in models:
            name = "forward_features" if hasattr(model, "forward_features") else "forward"
            setattr(model, name, torch.compile(getattr(model, name)))
    nz = member.generator.nz
    images, labels = dataset.train_images.to(device), dataset.train_labels.to(device)
    stream = BatchStream(images, labels, spec.batch_size, nz, dataset.num_classes, spec.seed)
    batches = chain.from_iterable(stream.epoch(epoch) for epoch in count())
    autocast = precision_autocast(spec.precision, device)

    def update() -> None:
        real, real_labels, z, fake_labels = next(batches)
        teacher_out = None
        if teacher is not None:
            with torch.no_grad(), autocast:
                teacher_out = teacher.forward_features(z, fake_labels)
        train_step(member, real, real_labels, z, fake_labels, teacher_out, autocast)

    for _ in range(WARMUP_STEPS):
        update()
    timings = [_seconds_per_call(update, steps, device) for _ in range(repeats)]
    if variant == "compile":
        torch.compiler.reset()
    return statistics.median(timings)


def _median_finite(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def _untrained_teacher(specs: list[RunSpec], dataset: ImageDataset, device: torch.device) -> nn.Module | None:
    """A freshly initialised teacher when any spec distils (its forward costs the same as a trained one's)."""
    if all(spec.kd == SCRATCH for spec in specs):
        return None
    return build_models(specs[0].teacher(), dataset)[0].to(device).eval()


def _seconds_per_call(call: Callable[[], object], calls: int, device: torch.device) -> float:
    """Mean wall seconds of ``calls`` calls, the device's queue drained before and after."""
    _sync(device)
    started = time.perf_counter()
    for _ in range(calls):
        call()
    _sync(device)
    return (time.perf_counter() - started) / calls


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class PerfRow:
    """One comparison: images per second of the reference loop and of the harness, and their ratio."""

    loop: str  # "per-width", "cohort" or "step" (a bare update, see step_seconds)
    variant: str  # the harness mode of a loop row (HARNESS_MODES), or the way in a "step" row was timed with
    kd: str
    width: str
    steps: int
    batch_size: int
    reference_img_s: float
    harness_img_s: float
    speedup: float
    device: str


def benchmark(
    dataset: ImageDataset,
    widths,
    kds,
    steps: int,
    batch_size: int,
    device: torch.device,
    repeats: int = 3,
    variants: tuple[str, ...] = (),
    modes: tuple[str, ...] = ("eager",),
) -> list[PerfRow]:
    """Every (objective, width) alone in both loops, then each objective's widths as one cohort.

    Each loop is timed ``repeats`` times, alternating, and the median is kept: a shared machine's noise
    touches both loops alike. ``modes`` are the harness's loop options timed against the reference (eager;
    CUDA graphs; graphs with every member on its own stream); ``variants`` adds one bare-update row per way
    in for every (objective, width).
    """
    name = device_name(device)
    specs = [RunSpec(dataset.name, width, kd, 1.0, 1314, 1, batch_size) for kd in kds for width in widths]
    rows: list[PerfRow] = []

    def add(loop: str, variant: str, kd: str, label: str, count: int, reference_s: float, harness_s: float) -> None:
        """``reference_s`` and ``harness_s``: seconds per step of all ``count`` runs together."""
        row = PerfRow(loop, variant, kd, label, steps, batch_size, count * batch_size / reference_s,
                      count * batch_size / harness_s, reference_s / harness_s, name)  # fmt: skip
        rows.append(row)
        print(_line(row), flush=True)

    def medians(group: list[RunSpec], workdir: Path) -> tuple[float, dict[str, float]]:
        """Median seconds per step of the group's runs one after another (reference) and as one cohort in
        every harness mode."""
        reference, harness = [], {mode: [] for mode in modes}
        for _ in range(repeats):
            reference.append(sum(reference_steps(spec, dataset, device, steps) for spec in group))
            for mode in modes:
                harness[mode].append(harness_steps(group, dataset, device, steps, workdir, mode))
        return statistics.median(reference), {mode: _median_finite(t) for mode, t in harness.items()}

    with tempfile.TemporaryDirectory() as tmp:
        reference = {}
        for spec in specs:
            reference[spec], harness = medians([spec], Path(tmp))
            for mode, seconds in harness.items():
                add("per-width", mode, spec.kd, str(spec.width), 1, reference[spec], seconds)
            for variant in variants:
                seconds = step_seconds(spec, dataset, device, steps, repeats, variant, Path(tmp))
                add("step", variant, spec.kd, str(spec.width), 1, reference[spec], seconds)
        # the whole grid of a seed: the reference trains each run alone, the harness one cohort per objective
        for kd in kds:
            group = [spec for spec in specs if spec.kd == kd]
            label = "+".join(str(spec.width) for spec in group)
            reference_s, harness = medians(group, Path(tmp))
            for mode, seconds in harness.items():
                add("cohort", mode, kd, label, len(group), reference_s, seconds)
    return rows


def _line(row: PerfRow) -> str:
    return (f"{row.loop:9s} {row.variant:13s} {row.kd:8s} width {row.width:>22s}: "
            f"reference {row.reference_img_s:9.0f} img/s, "
            f"harness {row.harness_img_s:9.0f} img/s, x{row.speedup:.2f}")  # fmt: skip


def time_preset(preset: str, seeds: tuple[int, ...], device: str, data_root: str, out: Path) -> float:
    """Wall seconds of one whole preset run (training, measurements, metrics), report excluded."""
    from bench.executors.local import run_local
    from bench.grid.presets import make_grid

    grid = make_grid(preset, seeds=seeds, device=device, data_root=data_root, out=str(out))
    started = time.perf_counter()
    run_local(grid, progress=False)
    return time.perf_counter() - started


def _default_modes(device: torch.device) -> str:
    return ",".join(HARNESS_MODES) if device.type == "cuda" else "eager"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.harness.perf", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-root", default="datasets")
    p.add_argument("--device", default="auto")
    p.add_argument("--widths", default="16,32,64,128,256,512")
    p.add_argument("--kd", default="none,pixel-l1")
    p.add_argument("--steps", type=int, default=20, help="timed steps per loop (per epoch for the harness)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="timings per loop, alternating; the median is kept")
    p.add_argument("--variants", default="", help=f"bare-update rows, comma-separated from {', '.join(VARIANTS)}")
    p.add_argument(
        "--modes",
        help=f"harness loop modes, comma-separated from {', '.join(HARNESS_MODES)} "
        "(default: all on CUDA, eager elsewhere: graphs need CUDA)",
    )
    p.add_argument("--preset", help="also time this whole preset end to end (one seed), e.g. paper")
    p.add_argument("--out", default="results/perf", help="where perf.csv and perf.md go")
    args = p.parse_args(argv)
    try:
        device = resolve_device(args.device)
        tune_for(device)
        dataset = get_dataset(args.dataset, args.data_root)
        try:
            widths = [int(w) for w in args.widths.split(",")]
        except ValueError:
            raise UserError(f"--widths takes comma-separated integers, got {args.widths!r}") from None
        variants = tuple(v for v in args.variants.split(",") if v)
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown:
            raise UserError(f"unknown variant {unknown[0]!r}: choose from {', '.join(VARIANTS)}")
        modes = tuple(m for m in (args.modes or _default_modes(device)).split(",") if m)
        unknown = sorted(set(modes) - set(HARNESS_MODES))
        if unknown or not modes:
            raise UserError(f"unknown mode {(unknown or [''])[0]!r}: choose from {', '.join(HARNESS_MODES)}")
        if device.type != "cuda" and modes != ("eager",):
            raise UserError(f"--modes {','.join(modes)}: CUDA graphs need a CUDA device, time --modes eager here")
        if args.steps < 1 or args.repeats < 1:
            raise UserError("--steps and --repeats must be at least 1")
        rows = benchmark(dataset, widths, args.kd.split(","), args.steps, args.batch_size, device, args.repeats,
                         variants, modes)  # fmt: skip
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    frame = pd.DataFrame([asdict(row) for row in rows])
    atomic_write_text(out / "perf.csv", frame.to_csv(index=False))
    lines = [
        f"- device: {device_name(device)}; torch {torch.__version__}; Python {platform.python_version()}",
        f"- command: `python -m bench.harness.perf {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        frame.drop(columns=["device"]).to_markdown(index=False, floatfmt=".2f"),
    ]
    if args.preset:
        seconds = time_preset(args.preset, (1314,), args.device, args.data_root, out / f"preset-{args.preset}")
        lines += ["", f"- whole `{args.preset}` preset, one seed, metrics included: {seconds:.0f} s wall"]
        print(f"preset {args.preset}: {seconds:.0f} s", flush=True)
    atomic_write_text(out / "perf.md", "\n".join(lines) + "\n")
    print(f"wrote {out / 'perf.csv'} and {out / 'perf.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
