"""One call that verifies the suite on a GPU and writes every figure it measured into one folder.

``python -m bench.harness.gpu_check --data-root DIR --out DIR`` (``make gpu-check``) runs, each stage in its own
process with its own time limit, so that one failing stage leaves the others' results:

1. ``env``: the device, versions, ``nvidia-smi``.
2. ``equivalence``: one cohort trained a few hundred steps eagerly, graphed, and graphed with a stream per
   member, from the same weights on the same batches; the largest weight difference of each against eager,
   beside that of a second eager run (the GPU's own run-to-run noise).
3. ``perf``: the loop benchmark (``bench.harness.perf``): the reference loop against the harness in every mode.
4. ``paper``: the paper preset end to end for one seed (``run_bench.py``): training, every measurement, report.
5. ``parity``: a short ``bench.harness.parity`` on the paper preset: reference-loop FID over seeds against the harness.

While it runs, ``nvidia-smi`` samples the GPU's utilisation; ``summary.md`` gives the wall time of every
stage, its mean utilisation, and the utilisation inside the paper preset's training windows (from the
``train_started_at`` / ``train_finished_at`` columns of its results). ``--quick`` shrinks every stage (a
smoke test of the whole check). It needs only the checkout (``PYTHONPATH=.``), torch, torch-fidelity and the
dataset: no pinned versions, no network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

STAGES = ("env", "equivalence", "perf", "paper", "parity")
UTIL_FILE = "nvidia-smi.csv"
MIN_STAGE_S = 20  # a stage given less than this is skipped, not started


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
    equivalence = [py, "-m", "bench.harness.gpu_check", "--equivalence", "--data-root", data, "--out", str(out)]
    if quick:
        equivalence.append("--quick")
    all_stages = {
        "env": Stage("env", [py, "-m", "bench.harness.gpu_check", "--env", "--out", str(out)], 60),
        "equivalence": Stage("equivalence", equivalence, 90),
        "perf": Stage("perf", perf, 150),
        "paper": Stage("paper", paper, 200 if quick else 300),
        "parity": Stage("parity", parity, 200),
    }
    return [all_stages[name] for name in args.stages.split(",")]


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
        try:
            process = subprocess.run(stage.command, stdout=log, stderr=subprocess.STDOUT, timeout=stage.timeout_s,
                                     env=env, check=False)  # fmt: skip
            status = "ok" if process.returncode == 0 else f"exit {process.returncode}"
        except subprocess.TimeoutExpired:
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
    samples = utilisation(out)
    for row in rows:
        row["gpu_busy_pct"] = mean_busy(samples, row["started"], row["finished"])
    lines = [
        "# GPU check",
        "",
        f"- command: `{' '.join(command)}`",
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        pd.DataFrame(rows).drop(columns=["started", "finished"]).to_markdown(index=False),
    ]
    env = out / "env.json"
    if env.is_file():
        lines += ["", "## Environment", "", "```", env.read_text().strip(), "```"]
    windows = training_windows(out / "paper" / "results.csv")
    if windows:
        lines += ["", "## Paper preset: training loops", "", "| started | seconds | GPU busy % |", "|---|---|---|"]
        for start, end in windows:
            stamp = datetime.fromtimestamp(start, UTC).strftime("%H:%M:%S")
            lines.append(f"| {stamp} | {end - start:.1f} | {mean_busy(samples, start, end)} |")
    for name, table in (("equivalence", out / "equivalence.md"), ("perf", out / "perf" / "perf.md"),
                        ("parity", out / "parity" / "parity.md")):  # fmt: skip
        if table.is_file():
            lines += ["", f"## {name}", "", table.read_text().strip()]
    results = out / "paper" / "results.csv"
    if results.is_file():
        lines += ["", "## Paper preset: results (abridged)", "", _paper_table(results)]
    return "\n".join(lines) + "\n"


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
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated from {', '.join(STAGES)}")
    p.add_argument("--quick", action="store_true", help="shrink every stage: a smoke test of the check")
    p.add_argument("--budget-s", type=int, default=480, help="wall seconds for all stages (default 480: 8 min)")
    p.add_argument("--env", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--equivalence", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.env:
        write_env(out)
        return 0
    if args.equivalence:
        check_equivalence(args.data_root, out, args.quick)
        return 0
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
