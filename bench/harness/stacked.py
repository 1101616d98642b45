"""Stacked-seed benchmark: one width's seeds trained as one stacked model against the same seeds trained apart.

``python -m bench.harness.stacked --out DIR`` times, for every width, training steps per second (one step: one
update of every seed) of

* **separate**: one ``bench.engine.train.train_step`` per seed, each on its own ``Member``, as the grid trains;
* **stacked**: one ``bench.engine.stacked.StackedPair.step`` for all seeds (``torch.func.vmap`` over the stacked
  parameters), each seed's batch stacked on a leading dim first.

Both make the same updates (``tests/test_stacked.py``), so their ratio is what stacking buys on this device. Each
seed's batches are drawn from its own stream before timing; warm-up steps are left out, each way is timed
``--repeats`` times, alternating, and the median is kept. The grid does not train stacked until this has been
measured on a GPU (``make gpu-check``, stage ``stacked``). A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import chain, count, islice
from pathlib import Path

import pandas as pd
import torch

import gans
from bench.base.errors import OneLineParser, UserError, report
from bench.base.io import atomic_write_text
from bench.base.layout import SCRATCH
from bench.engine.device import DEVICE_CHOICES, device_name, resolve_device, tune_for
from bench.engine.spec import RunSpec, check_int
from bench.engine.stacked import StackedPair, check_family
from bench.engine.train import BatchStream, make_member, precision_autocast, train_step
from data import ImageDataset, get_dataset

FIRST_SEED = 1314  # the paper preset's first seed; --seeds N times seeds 1314 .. 1314 + N - 1
WARMUP_STEPS = 3
MAX_SEEDS = 64
Batch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class StackedRow:
    """One width: steps per second (every seed updated once per step) of both ways, and their ratio."""

    family: str
    width: int
    seeds: int
    batch_size: int
    steps: int
    separate_steps_s: float
    stacked_steps_s: float
    speedup: float
    device: str


def seed_batches(dataset: ImageDataset, seeds: list[int], batch_size: int, nz: int, device: torch.device,
                 steps: int) -> list[list[Batch]]:  # fmt: skip
    """The first ``steps`` batches of every seed's stream (on through its epochs), drawn on ``device``."""
    images, labels = dataset.train_images.to(device), dataset.train_labels.to(device)
    streams = [BatchStream(images, labels, batch_size, nz, dataset.num_classes, seed) for seed in seeds]
    return [list(islice(chain.from_iterable(s.epoch(e) for e in count()), steps)) for s in streams]


def time_width(family: str, width: int, seeds: int, batch_size: int, steps: int, repeats: int,
               dataset: ImageDataset, device: torch.device) -> StackedRow:  # fmt: skip
    """Median steps per second of ``seeds`` runs of ``width`` trained apart and stacked, from the same start."""
    specs = [RunSpec(dataset.name, width, SCRATCH, 0.0, FIRST_SEED + i, 1, batch_size, family=family)
             for i in range(seeds)]  # fmt: skip
    stacked = StackedPair.from_specs(specs, dataset, device)
    with tempfile.TemporaryDirectory() as tmp:
        members = [make_member(spec, Path(tmp) / spec.run_id, dataset, device) for spec in specs]
    for m in members:
        m.generator.train(), m.discriminator.train()
    batches = seed_batches(dataset, [s.seed for s in specs], batch_size, members[0].generator.nz, device,
                           WARMUP_STEPS + steps)  # fmt: skip
    autocast = precision_autocast("fp32", device)

    def separate(i: int) -> None:
        for m, own in zip(members, batches, strict=True):
            train_step(m, *own[i], None, autocast)

    def together(i: int) -> None:
        stacked.step(*(torch.stack(parts) for parts in zip(*(own[i] for own in batches), strict=True)))

    for i in range(WARMUP_STEPS):
        separate(i), together(i)
    timed = range(WARMUP_STEPS, WARMUP_STEPS + steps)
    apart, joint = [], []
    for _ in range(repeats):  # alternating: a shared machine's drift touches both alike
        apart.append(_seconds(lambda: [separate(i) for i in timed], device))
        joint.append(_seconds(lambda: [together(i) for i in timed], device))
    separate_s, stacked_s = steps / statistics.median(apart), steps / statistics.median(joint)
    return StackedRow(family, width, seeds, batch_size, steps, separate_s, stacked_s, stacked_s / separate_s,
                      device_name(device))  # fmt: skip


def _seconds(call: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of ``call``, the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def parse_widths(text: str) -> list[int]:
    """The comma-separated widths of ``--widths``, each a width the families accept; a one-line error if not."""
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--widths takes comma-separated integers, got {text!r}") from None
    return [gans.check_width(width) for width in widths]


def _line(row: StackedRow) -> str:
    return (f"{row.family} width {row.width:3d} x{row.seeds} seeds: separate {row.separate_steps_s:8.1f} steps/s, "
            f"stacked {row.stacked_steps_s:8.1f} steps/s, x{row.speedup:.2f}")  # fmt: skip


def markdown(rows: list[StackedRow], device: torch.device, command: str) -> str:
    """``stacked.md``: the device, torch, the CPU and the command, then one table row per width."""
    frame = pd.DataFrame([asdict(row) for row in rows]).drop(columns=["device"])
    lines = [
        f"- device: {device_name(device)}; torch {torch.__version__}; Python {platform.python_version()}",
        f"- CPU: {device_name(torch.device('cpu'))}",
        f"- command: `{command}`",
        "- steps/s: steps of every seed together (one update of each seed per step), median of the repeats",
        "",
        frame.to_markdown(index=False, floatfmt=".2f"),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m bench.harness.stacked", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/stacked", help="where stacked.csv and stacked.md go")
    p.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    p.add_argument("--dataset", default="digits", help="only its image shape and class count matter")
    p.add_argument("--data-root", default="datasets")
    p.add_argument("--family", default="dcgan")
    p.add_argument("--seeds", type=int, default=3, help=f"how many seeds, from {FIRST_SEED}")
    p.add_argument("--widths", default="64,512")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat, after warm-up")
    p.add_argument("--repeats", type=int, default=3, help="timings per way, alternating; the median is kept")
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = p.parse_args(argv)
        check_int(args.seeds, "--seeds", 1, MAX_SEEDS)
        check_int(args.steps, "--steps", 1)
        check_int(args.repeats, "--repeats", 1)
        check_int(args.batch_size, "--batch-size", 1)
        widths = parse_widths(args.widths)
        check_family(args.family)
        device = resolve_device(args.device)
        tune_for(device)
        dataset = get_dataset(args.dataset, args.data_root)
        rows = []
        for width in widths:
            rows.append(time_width(args.family, width, args.seeds, args.batch_size, args.steps, args.repeats,
                                   dataset, device))  # fmt: skip
            print(_line(rows[-1]), flush=True)
        out = Path(args.out)
        text = markdown(rows, device, f"python -m bench.harness.stacked {' '.join(argv)}")
        atomic_write_text(out / "stacked.csv", pd.DataFrame([asdict(row) for row in rows]).to_csv(index=False))
        atomic_write_text(out / "stacked.md", text)
    except (UserError, OSError) as err:
        return report(err)
    print(text, end="")
    print(f"wrote {out / 'stacked.csv'} and {out / 'stacked.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
