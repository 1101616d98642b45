"""``python -m bench.latency RUN_DIR``: re-time the saved generators of a finished results directory.

Nothing is retrained: the checkpoints (``runs/*/generator.pt``) are the input, so the same directory can be
re-timed on another machine. Writes ``latency.csv`` atomically in RUN_DIR (or ``--out``) and prints a table
of median latencies. Bad input is one ``error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from bench.base.errors import OneLineParser, UserError, one_line_warnings, report

DEVICES = ("auto", "cpu", "cuda")


def _tokens(text: str, flag: str) -> list[str]:
    tokens = [t for t in text.replace(",", " ").split() if t]
    if not tokens:
        raise UserError(f"{flag} is empty: give a comma-separated list")
    return tokens


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,16,256"`` -> (1, 16, 256); anything but distinct positive integers is a ``UserError``."""
    batches = []
    for token in _tokens(text, "--batches"):
        try:
            batches.append(int(token))
        except ValueError:
            raise UserError(f"--batches: {token!r} is not an integer batch size") from None
    return tuple(batches)


def parse_backends(text: str) -> tuple[str, ...]:
    from bench.latency import BACKENDS

    return tuple(BACKENDS.check(name) for name in _tokens(text, "--backends"))


def latency_devices(name: str) -> tuple[str, ...]:
    """``auto``: the CPU, and CUDA when a GPU is present; ``cuda`` without one is a ``DeviceError``."""
    import torch

    from bench.engine.device import resolve_device

    if name == "auto":
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    return (resolve_device(name).type,)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m bench.latency",
        description="Re-time the saved generators of a finished results directory (no retraining): every "
        "backend, device and batch size, in interleaved rounds; writes latency.csv.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a results directory a benchmark wrote (its --out)")
    parser.add_argument("--backends", help="comma-separated backends (default: every one that runs on the device)")
    parser.add_argument("--batches", default="1,16,256", help="comma-separated batch sizes (default: 1,16,256)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="auto: the CPU, and CUDA when present")
    parser.add_argument("--rounds", type=int, default=16, help="interleaved rounds (default: 16)")
    parser.add_argument("--calls-per-round", type=int, default=64, help="most calls per round and cell (64)")
    parser.add_argument("--seconds-per-cell", type=float, default=2.0, help="timed seconds a cell aims at (2)")
    parser.add_argument("--noise-threshold", type=float, default=0.10, help="re-time above this noise (0.10)")
    parser.add_argument("--threads", type=int, help="torch (and ONNX Runtime) threads (default: every core)")
    parser.add_argument("--data-root", help="where the dataset lies, if grid.json's data_root is not right here")
    parser.add_argument("--out", help="the CSV to write (default: RUN_DIR/latency.csv)")
    parser.add_argument("--quiet", action="store_true", help="print only the path of the CSV")
    return parser


def summary_table(rows, value: str = "p50_ms") -> str:
    """A Markdown table of ``value`` per model (rows) and device / backend / batch (columns); non-ok cells
    show their status."""
    import pandas as pd

    frame = pd.DataFrame([asdict(row) for row in rows])
    if frame.empty:
        return "(no measurement)"
    shown = frame[value].map(lambda v: f"{v:.3g}" if isinstance(v, float) and math.isfinite(v) else "")
    frame["shown"] = shown.where(frame["status"] == "ok", frame["status"])
    frame["column"] = frame["device"] + " " + frame["backend"] + " b" + frame["batch"].astype(str)
    order = list(dict.fromkeys(frame.sort_values(["device", "batch"], kind="stable")["column"]))
    table = frame.pivot(index="run_id", columns="column", values="shown")[order]
    return table.loc[list(dict.fromkeys(frame["run_id"]))].to_markdown()


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.latency import time_models, write_latency_csv
    from bench.latency.saved import saved_generators
    from bench.latency.settings import SpeedSpec

    settings = SpeedSpec(
        backends=parse_backends(args.backends) if args.backends is not None else None,
        batches=parse_batches(args.batches),
        devices=latency_devices(args.device),
        rounds=args.rounds,
        calls_per_round=args.calls_per_round,
        min_calls_per_round=min(SpeedSpec.min_calls_per_round, max(args.calls_per_round, 1)),
        seconds_per_cell=args.seconds_per_cell,
        noise_threshold=args.noise_threshold,
    )
    from bench.engine.cpuload import checked_threads, set_thread_budget

    set_thread_budget(checked_threads(args.threads))
    out = Path(args.out) if args.out else Path(args.run_dir) / "latency.csv"
    if out.is_dir():
        out = out / "latency.csv"
    models = saved_generators(Path(args.run_dir), args.data_root)
    started = time.perf_counter()

    def say(message: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - started:6.0f} s] {message}", file=sys.stderr, flush=True)

    say(f"{len(models)} generator(s) from {args.run_dir}, {torch.get_num_threads()} thread(s)")
    rows = time_models(models, settings, progress=say)
    path = write_latency_csv(rows, out.parent, out.name, keep_runs=models)  # other backends' rows stay
    if not args.quiet:
        print(summary_table(rows))
        print()
        ok = sum(row.status == "ok" for row in rows)
        print(f"{ok} of {len(rows)} measurements ok, {time.perf_counter() - started:.0f} s")
    print(f"latency: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = one_line_warnings
    try:
        return run(build_parser().parse_args(argv))
    except (UserError, OSError) as err:  # OSError: the system refused a path
        return report(err)
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
