"""One call that verifies the suite on a GPU and writes every figure it measured into one folder.

``python -m bench.harness.gpu_check --data-root DIR --out DIR`` (``make gpu-check``) runs, each stage in its own
process with its own time limit, so that one failing stage leaves the others' results:

1. ``env``: the device, versions, ``nvidia-smi``.
2. ``equivalence``: one cohort trained a few hundred steps eagerly, graphed, and graphed with a stream per
   member, from the same weights on the same batches; the largest weight difference of each against eager,
   beside that of a second eager run (the GPU's own run-to-run noise).
3. ``perf``: the loop benchmark (``bench.harness.perf``): the reference loop against the harness in every mode.
4. ``coverage``: one epoch of a small grid per model family (``gans.families()``, the families' grids side by
   side) with every registered method, every quality backbone and every latency backend that runs on CUDA;
   it passes when every results.csv row is ``done`` and every latency.csv row ``ok`` (or ``skipped``: a
   combination the backend or the model declares it does not run, such as a CUDA graph on the CPU) and every
   backend timed a model on the GPU.
5. ``stacked``: the stacked-seed benchmark (``bench.harness.stacked``): the paper preset's widths, each trained for
   its three seeds as one ``torch.func.vmap`` model against three separate runs; the measurement the lever waits
   for before the grid adopts it.
6. ``paper-3-seeds``: the paper preset end to end for its three seeds (``run_bench.py``): training, every
   measurement, report.

and, asked for by ``--stages``: ``paper`` (the paper preset for one seed; ``paper-3-seeds`` holds it) and
``parity`` (a short ``bench.harness.parity`` on the paper preset: reference-loop FID over seeds against the
harness). The default stages share ``--budget-s`` (9 minutes); a stage given less than ``MIN_STAGE_S`` is
skipped, and ``paper-3-seeds``, last, takes whatever is left. ``env`` and ``equivalence`` have about twice what
they took on an H200 (8 and 24 s), which with 20 s of ``paper-3-seeds``' rest pays for ``stacked``'s 45 s.

While it runs, ``nvidia-smi`` samples the GPU's utilisation and memory; ``summary.md`` has one row per stage
(name, status, seconds, notes: mean utilisation, peak memory, runs done) and the utilisation inside each paper
stage's training windows (from the ``train_started_at`` / ``train_finished_at`` columns of its results), beside
its abridged results (wall time and peak memory of every training loop). ``--quick`` shrinks every stage (a
smoke test of the whole check). It needs only the checkout (``PYTHONPATH=.``), torch, torch-fidelity and the
dataset: no pinned versions, no network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

STAGES = ("env", "equivalence", "perf", "coverage", "stacked", "paper", "paper-3-seeds", "parity")
DEFAULT_STAGES = ("env", "equivalence", "perf", "coverage", "stacked", "paper-3-seeds")
PAPER_STAGES = ("paper", "paper-3-seeds")  # run_bench.py on the paper preset: their results are summarised
UTIL_FILE = "nvidia-smi.csv"
MIN_STAGE_S = 20  # a stage given less than this is skipped, not started
BUDGET_S = 540  # the default stages' wall time together: 9 minutes
COVERAGE_DIR = "coverage"
LATENCY_PASS = ("ok", "skipped")  # skipped: a backend or a model that declares it does not run on that device


@dataclass(frozen=True)
class Stage:
    """One stage: the command it runs and how long it may take."""

    name: str
    command: list[str]
    timeout_s: int


def stage_commands(args: argparse.Namespace) -> list[Stage]:
    """Every stage's command line; ``--quick`` shrinks each to seconds."""
    out, data, py = Path(args.out), args.data_root, sys.executable
    quick = args.quick
    perf = [
        py, "-m", "bench.harness.perf", "--device", "cuda", "--dataset", "mnist", "--data-root", data,
        "--batch-size", "128", "--steps", "20" if quick else "40", "--repeats", "1",
        "--widths", "16,512" if quick else "16,32,64,128,256,512", "--out", str(out / "perf"),
    ]  # fmt: skip
    paper = [
        py, "run_bench.py", "--preset", "paper", "--seeds", "1314", "--device", "cuda", "--data-root", data,
        "--out", str(out / "paper"), "--quiet",
        *(["--epochs", "1", "--widths", "16,128", "--fid-samples", "2000"] if quick else []),
    ]  # fmt: skip
    parity = [
        py, "-m", "bench.harness.parity", "--preset", "paper", "--device", "cuda", "--data-root", data,
        "--seeds", "1314,1315" if quick else "1314,1315,1316", "--epochs", "1",
        "--widths", "32" if quick else "128", "--fid-samples", "1000" if quick else "2000",
        "--out", str(out / "parity"), "--cache-dir", str(out / "paper" / "cache"), "--no-progress",
    ]  # fmt: skip
    own = [py, "-m", "bench.harness.gpu_check", "--data-root", data, "--out", str(out), *(["--quick"] if quick else [])]
    all_stages = {
        "env": Stage("env", [py, "-m", "bench.harness.gpu_check", "--env", "--out", str(out)], 20),
        "equivalence": Stage("equivalence", [*own, "--equivalence"], 45),
        "perf": Stage("perf", perf, 120),
        "coverage": Stage("coverage", [*own, "--coverage"], 150),
        "stacked": Stage("stacked", stacked_command(py, out, data, quick), 45),
        "paper": Stage("paper", paper, 200 if quick else 300),
        "paper-3-seeds": Stage("paper-3-seeds", paper_three_seeds(py, out, data, quick), BUDGET_S),
        "parity": Stage("parity", parity, 200),
    }
    return [all_stages[name] for name in args.stages.split(",")]


def stacked_command(py: str, out: Path, data: str, quick: bool) -> list[str]:
    """``bench.harness.stacked`` on CUDA at the paper preset's widths, seed count and batch size."""
    from bench.grid.presets import PRESETS

    paper = PRESETS["paper"]
    widths = "16,512" if quick else ",".join(str(width) for width in paper["widths"])
    return [
        py, "-m", "bench.harness.stacked", "--device", "cuda", "--dataset", "mnist", "--data-root", data,
        "--seeds", str(len(paper["seeds"])), "--batch-size", str(paper["batch_size"]), "--widths", widths,
        "--steps", "5" if quick else "20", "--repeats", "1" if quick else "3", "--out", str(out / "stacked"),
    ]  # fmt: skip


def paper_three_seeds(py: str, out: Path, data: str, quick: bool) -> list[str]:
    """``run_bench.py`` on the paper preset with its own seeds, sharing the paper stage's cache."""
    from bench.grid.presets import PRESETS

    seeds = ",".join(str(seed) for seed in PRESETS["paper"]["seeds"])
    return [
        py, "run_bench.py", "--preset", "paper", "--seeds", seeds, "--device", "cuda", "--data-root", data,
        "--out", str(out / "paper-3-seeds"), "--cache-dir", str(out / "paper" / "cache"), "--quiet",
        *(["--epochs", "1", "--widths", "16,128", "--fid-samples", "2000"] if quick else []),
    ]  # fmt: skip


def cuda_backends() -> list[str]:
    """Every registered latency backend that runs on CUDA."""
    from bench.latency import BACKENDS

    return [name for name in BACKENDS.names() if "cuda" in BACKENDS[name].devices]


def coverage_commands(py: str, out: Path, quick: bool) -> dict[str, list[str]]:
    """Family -> ``run_bench.py`` of its coverage grid: one epoch on the embedded digits, a width-16 student of a
    width-64 teacher distilled, with every method, quality backbone, CUDA latency backend and quantization mode."""
    import gans
    from bench.engine.methods import METHODS
    from bench.metrics.backbones import BACKBONES
    from compress.quantize import MODES

    return {
        family: [
            py, "run_bench.py", "--preset", "quick", "--dataset", "digits", "--family", family, "--device", "cuda",
            "--epochs", "1", "--widths", "16", "--teacher-width", "64", "--kd", "pixel-l1",
            "--methods", ",".join(METHODS.names()), "--backbones", ",".join(BACKBONES.names()),
            "--latency-backends", ",".join(cuda_backends()), "--quantize", ",".join(MODES),
            "--fid-samples", "200" if quick else "1000", "--out", str(out / COVERAGE_DIR / family), "--quiet",
        ]
        for family in gans.families()
    }  # fmt: skip


def coverage_verdict(results_dir: Path, backends: list[str]) -> tuple[bool, str]:
    """Whether a coverage grid passed (every run ``done``, every latency cell ``ok`` or ``skipped``, every one of
    ``backends`` timing some model on the GPU), and one line saying what it found."""
    results, latency = Path(results_dir) / "results.csv", Path(results_dir) / "latency.csv"
    if not results.is_file() or not latency.is_file():
        return False, f"no {'results.csv' if not results.is_file() else 'latency.csv'}"
    runs, cells = pd.read_csv(results), pd.read_csv(latency)
    not_done = runs[runs["status"] != "done"]
    failed = cells[~cells["status"].isin(LATENCY_PASS)]
    on_gpu = cells[cells["device"].astype(str).str.startswith("cuda") & (cells["status"] == "ok")]
    untimed = [name for name in backends if name not in set(on_gpu["backend"])]
    counts = cells["status"].value_counts()
    notes = [f"{len(runs) - len(not_done)}/{len(runs)} runs done",
             f"{counts.get('ok', 0)} latency cells ok, {counts.get('skipped', 0)} skipped"]  # fmt: skip
    notes += [f"{row.run_id}: {row.status}" for row in not_done.head(3).itertuples()]
    notes += [f"{row.backend} on {row.device}: {row.status} ({row.error})" for row in failed.head(3).itertuples()]
    notes += [f"{name} timed nothing on the GPU" for name in untimed]
    return not (len(not_done) or len(failed) or untimed or runs.empty), "; ".join(notes)


def run_coverage(out: Path, quick: bool) -> int:
    """Run every family's coverage grid side by side, each into ``coverage/<family>``; write ``coverage.md``
    with one verdict per family; 0 when every one passed."""
    commands = coverage_commands(sys.executable, out, quick)
    (out / COVERAGE_DIR).mkdir(parents=True, exist_ok=True)
    processes = {}
    for family, command in commands.items():
        print(" ".join(command), flush=True)
        with open(out / COVERAGE_DIR / f"{family}.log", "w") as log:
            processes[family] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    codes = {family: process.wait() for family, process in processes.items()}
    rows, backends = [], cuda_backends()
    for family, code in codes.items():
        passed, notes = coverage_verdict(out / COVERAGE_DIR / family, backends)
        rows.append({"family": family, "exit": code, "passed": passed and code == 0, "notes": notes})
    table = pd.DataFrame(rows).to_markdown(index=False)
    (out / COVERAGE_DIR / "coverage.md").write_text(table + "\n")
    print(table)
    return 0 if all(row["passed"] for row in rows) else 1


def run_stage(stage: Stage, out: Path, deadline: float) -> dict:
    """Run one stage within its time limit and the check's deadline, its output in ``<name>.log``; returns
    its timing row."""
    started = time.time()
    limit = min(stage.timeout_s, int(deadline - started))
    if limit < MIN_STAGE_S:
        print(f"== {stage.name}: skipped, {deadline - started:.0f} s left of --budget-s", flush=True)
        return {"stage": stage.name, "status": "skipped: no time left", "started": started, "finished": started,
                "seconds": 0.0}  # fmt: skip
    stage = Stage(stage.name, stage.command, limit)
    print(f"== {stage.name} (at most {limit} s): {' '.join(stage.command)}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(out / f"{stage.name}.log", "w") as log:
        # its own process group: a stage that runs out of time is stopped with every process it started
        process = subprocess.Popen(stage.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # fmt: skip
        try:
            code = process.wait(timeout=stage.timeout_s)
            status = "ok" if code == 0 else f"exit {code}"
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = f"timed out after {stage.timeout_s} s"
    finished = time.time()
    tail = (out / f"{stage.name}.log").read_text(errors="replace").splitlines()[-15:]
    print("\n".join(tail), flush=True)
    print(f"== {stage.name}: {status} in {finished - started:.0f} s", flush=True)
    return {"stage": stage.name, "status": status, "started": started, "finished": finished,
            "seconds": round(finished - started, 1)}  # fmt: skip


def start_sampler(out: Path) -> subprocess.Popen | None:
    """``nvidia-smi`` sampling utilisation every 200 ms into ``nvidia-smi.csv``; None where it is missing."""
    if shutil.which("nvidia-smi") is None:
        return None
    handle = open(out / UTIL_FILE, "w")  # noqa: SIM115 - the sampler process owns it until stopped
    return subprocess.Popen(
        ["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used", "--format=csv,noheader,nounits",
         "-lms", "200"],
        stdout=handle, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def utilisation(out: Path) -> pd.DataFrame:
    """The sampled utilisation as (time in epoch seconds, percent busy, MiB used)."""
    path = out / UTIL_FILE
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["time", "busy", "mib"])
    frame = pd.read_csv(path, header=None, names=["stamp", "busy", "mib"], skipinitialspace=True)
    frame["time"] = pd.to_datetime(frame["stamp"], format="%Y/%m/%d %H:%M:%S.%f").map(
        lambda t: t.tz_localize(datetime.now().astimezone().tzinfo).timestamp()
    )
    return frame[["time", "busy", "mib"]]


def mean_busy(samples: pd.DataFrame, start: float, end: float) -> float | None:
    inside = samples[(samples["time"] >= start) & (samples["time"] <= end)]
    return round(float(inside["busy"].mean()), 1) if len(inside) else None


def training_windows(results_csv: Path) -> list[tuple[float, float]]:
    """The distinct (start, end) epoch-second windows of the training loops behind a results.csv."""
    if not results_csv.is_file():
        return []
    frame = pd.read_csv(results_csv)
    if "train_started_at" not in frame:
        return []
    pairs = frame[["train_started_at", "train_finished_at"]].dropna().drop_duplicates()
    return [(datetime.fromisoformat(a).timestamp(), datetime.fromisoformat(b).timestamp()) for a, b in pairs.values]


def summarise(out: Path, rows: list[dict], command: list[str]) -> str:
    """``summary.md``: one row per stage (name, status, seconds, notes), the environment, each paper stage's
    training loops and results, and the tables the other stages wrote."""
    samples = utilisation(out)
    table = pd.DataFrame(
        [{"name": row["stage"], "status": row["status"], "seconds": row["seconds"],
          "notes": stage_notes(out, row, samples)} for row in rows],
        columns=["name", "status", "seconds", "notes"],
    )  # fmt: skip
    lines = [
        "# GPU check",
        "",
        f"- command: `{' '.join(command)}`",
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        table.to_markdown(index=False),
    ]
    env = out / "env.json"
    if env.is_file():
        lines += ["", "## Environment", "", "```", env.read_text().strip(), "```"]
    for name in PAPER_STAGES:
        lines += _paper_sections(out / name / "results.csv", name, samples)
    for name, table_file in (("equivalence", out / "equivalence.md"), ("perf", out / "perf" / "perf.md"),
                             ("coverage", out / COVERAGE_DIR / "coverage.md"),
                             ("stacked", out / "stacked" / "stacked.md"),
                             ("parity", out / "parity" / "parity.md")):  # fmt: skip
        if table_file.is_file():
            lines += ["", f"## {name}", "", table_file.read_text().strip()]
    return "\n".join(lines) + "\n"


def stage_notes(out: Path, row: dict, samples: pd.DataFrame) -> str:
    """A stage's notes: the GPU's mean utilisation and peak memory while it ran (``nvidia-smi``), and for a paper
    or coverage stage what its results hold."""
    notes = []
    inside = samples[(samples["time"] >= row["started"]) & (samples["time"] <= row["finished"])]
    if len(inside):
        notes.append(f"GPU busy {inside['busy'].mean():.0f} %, peak {inside['mib'].max():.0f} MiB used")
    if row["stage"] in PAPER_STAGES:
        notes.append(results_note(out / row["stage"] / "results.csv", samples))
    if row["stage"] == "coverage" and (out / COVERAGE_DIR).is_dir():
        backends = cuda_backends()
        for family_dir in sorted(path for path in (out / COVERAGE_DIR).iterdir() if path.is_dir()):
            passed, found = coverage_verdict(family_dir, backends)
            notes.append(f"{family_dir.name} {'passed' if passed else 'FAILED'}: {found}")
    return "; ".join(note for note in notes if note)


def results_note(results_csv: Path, samples: pd.DataFrame) -> str:
    """Runs done, training wall time, the GPU's utilisation inside the training loops and torch's peak memory."""
    if not results_csv.is_file():
        return "no results.csv"
    frame = pd.read_csv(results_csv)
    notes = [f"{(frame['status'] == 'done').sum()}/{len(frame)} runs done"]
    windows = training_windows(results_csv)
    if windows:
        busy = [mean_busy(samples, start, end) for start, end in windows]
        busy = [value for value in busy if value is not None]
        seconds = sum(end - start for start, end in windows)
        notes.append(f"training {seconds:.0f} s" + (f" at {sum(busy) / len(busy):.0f} % busy" if busy else ""))
    if "train_cuda_peak_mib" in frame and frame["train_cuda_peak_mib"].notna().any():
        notes.append(f"peak {frame['train_cuda_peak_mib'].max():.0f} MiB allocated in training")
    return ", ".join(notes)


def _paper_sections(results_csv: Path, name: str, samples: pd.DataFrame) -> list[str]:
    lines = []
    windows = training_windows(results_csv)
    if windows:
        lines += ["", f"## {name}: training loops", "", "| started | seconds | GPU busy % |", "|---|---|---|"]
        for start, end in windows:
            stamp = datetime.fromtimestamp(start, UTC).strftime("%H:%M:%S")
            lines.append(f"| {stamp} | {end - start:.1f} | {mean_busy(samples, start, end)} |")
    if results_csv.is_file():
        lines += ["", f"## {name}: results (abridged)", "", _paper_table(results_csv)]
    return lines


def _paper_table(results_csv: Path) -> str:
    frame = pd.read_csv(results_csv)
    wanted = ["width", "kd", "status", "train_seconds", "train_cuda_peak_mib", "fid_lenet", "class_consistency",
              "latency_ms_cuda", "latency_ms_cuda_graph", "throughput_ips_cuda", "latency_ms_cpu"]  # fmt: skip
    wanted += sorted(col for col in frame if col.startswith("seconds_"))
    return frame[[col for col in wanted if col in frame]].to_markdown(index=False, floatfmt=".3g")


def write_env(out: Path) -> None:
    """Device, versions and ``nvidia-smi`` into ``env.json``."""
    import torch
    import torch_fidelity

    info = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "torch_fidelity": torch_fidelity.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if shutil.which("nvidia-smi"):
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
    (out / "env.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))


def check_equivalence(data_root: str, out: Path, quick: bool) -> None:
    """Train one cohort in each loop mode from the same start; write how far each ends from eager."""
    import tempfile
    from dataclasses import replace

    import torch

    from bench.engine.spec import RunSpec
    from bench.engine.train import TrainGroup, make_member, train_cohorts
    from bench.harness.perf import HARNESS_MODES
    from data import get_dataset

    dataset = get_dataset("mnist", data_root)
    steps = 50 if quick else 300
    batch = 128
    dataset = replace(dataset, train_images=dataset.train_images[: steps * batch],
                      train_labels=dataset.train_labels[: steps * batch])  # fmt: skip
    device = torch.device("cuda")
    widths = (16, 128) if quick else (16, 64, 256)
    specs = [RunSpec("mnist", width, "none", 0.0, 1314, 1, batch, teacher_width=256) for width in widths]

    def trained(mode: str) -> tuple[list[torch.Tensor], float]:
        with tempfile.TemporaryDirectory() as tmp:
            members = [make_member(spec, Path(tmp) / spec.run_id, dataset, device) for spec in specs]
            started = time.perf_counter()
            train_cohorts([TrainGroup(members)], dataset, device, HARNESS_MODES[mode])
            seconds = time.perf_counter() - started
            print(f"{mode}: {steps} steps in {seconds:.2f} s", flush=True)
            return [torch.cat([p.detach().flatten() for p in m.generator.parameters()]) for m in members], seconds

    eager, _ = trained("eager")
    rows = []
    for mode in ("eager", "graphs", "graphs-streams"):
        weights, seconds = trained(mode)
        for spec, a, b in zip(specs, eager, weights, strict=True):
            rows.append({"mode": mode, "width": spec.width, "steps": steps, "seconds": round(seconds, 2),
                         "max_abs_diff_vs_eager": (a - b).abs().max().item(),
                         "mean_abs_weight": a.abs().mean().item()})  # fmt: skip
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g")
    text = (
        f"Generator weights after {steps} steps of a scratch cohort (widths {widths}), each mode against a "
        f"first eager run (its row 'eager' is a second eager run: the GPU's run-to-run noise).\n\n{table}\n"
    )
    (out / "equivalence.md").write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.harness.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="datasets", help="where MNIST/raw lies")
    p.add_argument("--out", default="results/gpu-check", help="the one folder every result goes to")
    p.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                   help=f"comma-separated from {', '.join(STAGES)} (default: {','.join(DEFAULT_STAGES)})")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="shrink every stage: a smoke test of the check")
    p.add_argument("--budget-s", type=int, default=BUDGET_S, help=f"wall seconds for all stages (default {BUDGET_S})")
    p.add_argument("--env", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--equivalence", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--coverage", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.env:
        write_env(out)
        return 0
    if args.equivalence:
        check_equivalence(args.data_root, out, args.quick)
        return 0
    if args.coverage:
        return run_coverage(out, args.quick)
    unknown = sorted(set(args.stages.split(",")) - set(STAGES))
    if unknown:
        print(f"error: unknown stage {unknown[0]!r}: choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    deadline = time.time() + args.budget_s
    sampler = start_sampler(out)
    try:
        rows = [run_stage(stage, out, deadline) for stage in stage_commands(args)]
    finally:
        if sampler is not None:
            sampler.terminate()
            sampler.wait()
    summary = summarise(out, rows, ["python -m bench.harness.gpu_check", *(argv if argv is not None else sys.argv[1:])])
    (out / "summary.md").write_text(summary)
    print(f"wrote {out / 'summary.md'}")
    return 0 if all(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
