"""Quality parity: the harness's faster loop must train models as good as the original-style loop's.

``python -m bench.harness.parity`` trains one preset's grid (teacher, then every width with and without
distillation) over several seeds twice: with the reference loop (``bench.harness.reference``, each distilled
student taught by the reference teacher of its seed) and with the harness exactly as ``run_bench.py`` runs
it (optionally a third time in bf16). The same ``QualityEvaluator`` scores every generator. For each model
it reports the seed-to-seed spread of the reference loop's FID and whether the harness's mean FID lies within
the reference mean +- 2 standard deviations over seeds.

Every reference run writes its record atomically and is skipped when found, and the harness arms are ordinary
results directories, so a killed parity run resumes where it stopped. A benchmark, not a test: it asserts
nothing, it writes ``parity.csv`` (one row per arm, model and seed) and ``parity.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from bench.base.errors import UserError
from bench.base.io import atomic_write_json, atomic_write_text, read_json
from bench.base.layout import RESULTS_CSV, SCRATCH, STATUS_DIVERGED, STATUS_DONE, WIDTH
from bench.base.metric_registry import PRIMARY_BACKBONE
from bench.engine.checkpoints import atomic_torch_save, safe_torch_load
from bench.engine.cpuload import set_thread_budget
from bench.engine.device import device_name, resolve_device, tune_for
from bench.engine.spec import RunSpec
from bench.engine.train import build_models
from bench.executors.local import run_local
from bench.grid.plan import grid_runs
from bench.grid.presets import make_grid
from bench.grid.spec import GridSpec
from bench.harness.reference import ReferenceRun, check_reference_objective
from bench.latency.settings import SpeedSpec
from bench.metrics.quality import QualityEvaluator
from data import ImageDataset, get_dataset

REFERENCE, HARNESS, HARNESS_BF16 = "reference", "harness", "harness-bf16"
COLUMNS = ("arm", "role", "width", "kd", "seed", "status", "fid_lenet", "is_lenet", "kid_lenet",
           "class_consistency", "teacher_fidelity_l1")  # fmt: skip
# parity compares quality: the harness arm's models are timed as briefly as the latency phase allows
PARITY_SPEED = SpeedSpec(backends=("eager",), batches=(1,), rounds=2, calls_per_round=1, min_calls_per_round=1,
                         seconds_per_cell=0.01, warmup_calls=1, max_retimes=0)  # fmt: skip
SPREAD_SDS = 2.0  # "within the spread": |harness mean - reference mean| <= SPREAD_SDS * reference sd


def reference_records(
    grid: GridSpec, dataset: ImageDataset, device: torch.device, out: Path, progress: bool = True
) -> list[dict]:
    """Train and score every run of ``grid`` with the reference loop, teacher first in each seed."""
    evaluator = QualityEvaluator(dataset, grid.quality, device, Path(grid.cache_dir))
    records = []
    for spec in tqdm(grid_runs(grid), desc="reference", unit="run", disable=not progress):
        path = out / f"{spec.run_id}.json"
        if not path.is_file():
            atomic_write_json(path, _train_and_score(spec, dataset, device, evaluator, out))
        records.append(read_json(path))
    return records


def _train_and_score(
    spec: RunSpec, dataset: ImageDataset, device: torch.device, evaluator: QualityEvaluator, out: Path
) -> dict:
    teacher = None
    if spec.kd != SCRATCH:
        teacher = build_models(spec.teacher(), dataset)[0]
        teacher_file = out / f"{spec.teacher().run_id}.pt"
        if not teacher_file.is_file():  # the teacher of this seed diverged
            return _row(REFERENCE, spec, STATUS_DIVERGED, {})
        teacher.load_state_dict(safe_torch_load(teacher_file, map_location="cpu"))
        teacher.to(device).eval()
    run = ReferenceRun.create(spec, dataset, device, teacher)
    run.train()
    generator = run.generator.eval()
    if not all(torch.isfinite(p).all() for p in generator.parameters()):
        return _row(REFERENCE, spec, STATUS_DIVERGED, {})
    if spec.is_teacher:
        atomic_torch_save(out / f"{spec.run_id}.pt", generator.state_dict())
    return _row(REFERENCE, spec, STATUS_DONE, evaluator.score_generator(generator, teacher))


def _row(arm: str, spec: RunSpec, status: str, metrics: dict) -> dict:
    role = "teacher" if spec.is_teacher else "student"
    row = {"arm": arm, "role": role, "width": spec.width, "kd": spec.kd, "seed": spec.seed, "status": status}
    return {key: row.get(key, metrics.get(key)) for key in COLUMNS}


def harness_records(grid: GridSpec, arm: str, progress: bool = True) -> list[dict]:
    """Run ``grid`` exactly as ``run_bench.py`` does and read its results back."""
    results = pd.read_csv(run_local(grid, progress=progress) / RESULTS_CSV)
    results["arm"] = arm
    return results[list(COLUMNS)].to_dict("records")


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model: FID over seeds of every arm, and whether each harness arm stays within the reference spread."""
    done = frame[frame["status"] == STATUS_DONE]
    stats = done.groupby(["role", "width", "kd", "arm"])["fid_lenet"].agg(["mean", "std", "min", "max", "count"])
    table = stats.unstack("arm")
    rows = []
    for (role, width, kd), values in table.iterrows():
        row = {"model": "teacher" if role == "teacher" else f"{width} {kd}"}
        ref_mean, ref_sd = values[("mean", REFERENCE)], values[("std", REFERENCE)]
        row["reference FID"] = _mean_sd(ref_mean, ref_sd, values[("count", REFERENCE)])
        row["reference min..max"] = f"{values[('min', REFERENCE)]:.1f}..{values[('max', REFERENCE)]:.1f}"
        for arm in table.columns.get_level_values("arm").unique():
            if arm == REFERENCE:
                continue
            mean = values[("mean", arm)]
            row[f"{arm} FID"] = _mean_sd(mean, values[("std", arm)], values[("count", arm)])
            row[f"{arm} within"] = "yes" if abs(mean - ref_mean) <= SPREAD_SDS * ref_sd else "no"
        rows.append(row)
    rows.sort(key=lambda row: row["model"] != "teacher")  # teacher first, students by width then objective
    return pd.DataFrame(rows)


def _mean_sd(mean: float, sd: float, count: float) -> str:
    return f"{mean:.1f} ± {sd:.1f} (n={int(count)})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.harness.parity", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="quick")
    p.add_argument("--seeds", default="1314,1315,1316", help="comma-separated; at least two for a spread")
    p.add_argument("--widths", help="comma-separated student widths (default: the preset's)")
    p.add_argument("--teacher-width", type=int, help="default: the preset's")
    p.add_argument("--epochs", type=int, help="default: the preset's")
    p.add_argument("--fid-samples", type=int, help="default: the preset's")
    p.add_argument("--data-root", default="datasets")
    p.add_argument("--device", default="auto")
    p.add_argument("--bf16", action="store_true", help="also train the harness arm in bf16 autocast")
    p.add_argument("--out", default="results/parity")
    p.add_argument("--cache-dir", help="classifier and real-statistics cache (default: OUT/cache)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    set_thread_budget()
    try:
        grid, dataset = _grid(args)
        device = resolve_device(grid.device)
        tune_for(device)
        out, progress = Path(args.out), not args.no_progress
        records = reference_records(grid, dataset, device, out / REFERENCE, progress)
        records += harness_records(replace(grid, out=str(out / HARNESS)), HARNESS, progress)
        if args.bf16:
            bf16 = replace(grid, out=str(out / HARNESS_BF16), precision="bf16")
            records += harness_records(bf16, HARNESS_BF16, progress)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    frame = pd.DataFrame(records, columns=list(COLUMNS))
    atomic_write_text(out / "parity.csv", frame.to_csv(index=False))
    summary = summarise(frame)
    lines = [
        f"- device: {device_name(device)}; torch {torch.__version__}; Python {platform.python_version()}",
        f"- command: `python -m bench.harness.parity {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- {grid.preset} preset: {grid.dataset}, {grid.epochs} epochs, batch {grid.batch_size}, teacher width "
        f"{grid.teacher_width}, seeds {', '.join(map(str, grid.seeds))}, FID on {grid.quality.fid_samples} samples",
        f"- within: |harness mean - reference mean| <= {SPREAD_SDS:g} x reference sd over seeds",
        "",
        summary.to_markdown(index=False),
    ]
    atomic_write_text(out / "parity.md", "\n".join(lines) + "\n")
    print(summary.to_markdown(index=False))
    print(f"wrote {out / 'parity.csv'} and {out / 'parity.md'}")
    return 0


def _grid(args: argparse.Namespace) -> tuple[GridSpec, ImageDataset]:
    try:
        seeds = tuple(int(seed) for seed in args.seeds.split(","))
        widths = tuple(int(width) for width in args.widths.split(",")) if args.widths else None
    except ValueError:
        raise UserError("--seeds and --widths take comma-separated integers") from None
    if len(set(seeds)) < 2:
        raise UserError("--seeds needs at least two distinct seeds to measure a spread")
    grid = make_grid(
        args.preset, seeds=seeds, widths=widths, teacher_width=args.teacher_width, epochs=args.epochs, methods=(WIDTH,),
        device=args.device, data_root=args.data_root, cache_dir=args.cache_dir or str(Path(args.out) / "cache"),
    )  # fmt: skip
    # parity compares the LeNet's FID: a second backbone would only cost its training and scoring
    grid = replace(grid, quality=replace(grid.quality, backbones=(PRIMARY_BACKBONE,)))
    if args.fid_samples is not None:
        grid = replace(grid, quality=replace(grid.quality, fid_samples=args.fid_samples))
    grid = replace(grid, speed=PARITY_SPEED)
    for kd in grid.kd:
        check_reference_objective(kd)
    return grid, get_dataset(grid.dataset, grid.data_root, grid.download, grid.image_size)


if __name__ == "__main__":
    sys.exit(main())
