"""A stop request (what SIGTERM's handler sets) is honoured in every phase: one line, exit 143, and the same
command resumes to the end.

One tiny grid with every method is run seven times in one directory: stopped while training, while measuring,
while pruning, while quantizing, while timing, while writing the report, then to completion; each stop is asked
for the first time its phase calls the function named below (as a signal arriving there would be seen at the
phase's next safe point).
"""

from __future__ import annotations

import pandas as pd
import pytest

import bench.engine.train as train
import bench.grid.cohorts as cohorts
import bench.latency.rounds as rounds
import compress.prune as prune
import compress.quantize as quantization
from bench.base.layout import LATENCY_CSV, RESULTS_CSV
from bench.cli import main
from bench.engine import preempt
from reports.plots import FIGURES
from tests.conftest import tiny_grid_args

ARGS = (
    "--methods", "width,prune,quantize", "--widths", "16", "--prune-widths", "16", "--finetune-epochs", "1",
    "--quantize", "int8", "--epochs", "1",
)  # fmt: skip


def _stopping(real):
    def wrapped(*args, **kwargs):
        preempt.request_stop()
        return real(*args, **kwargs)

    return wrapped


def _stop_training(patch):
    patch.setattr(train, "train_step", _stopping(train.train_step))


def _stop_measuring(patch):
    patch.setattr(cohorts, "assess", _stopping(cohorts.assess))


def _stop_pruning(patch):
    patch.setattr(prune, "prune_to_params", _stopping(prune.prune_to_params))


def _stop_quantizing(patch):
    patch.setattr(quantization, "quantize", _stopping(quantization.quantize))


def _stop_timing(patch):
    patch.setattr(rounds, "_timed_calls", _stopping(rounds._timed_calls))


def _stop_reporting(patch):
    patch.setitem(FIGURES, "pareto", _stopping(FIGURES["pareto"]))


PHASES = [
    ("training", _stop_training),
    ("measuring", _stop_measuring),
    ("pruning", _stop_pruning),
    ("quantizing", _stop_quantizing),
    ("while timing", _stop_timing),
    ("while writing the report", _stop_reporting),
]


def test_a_stop_in_every_phase_ends_with_one_line_and_143_and_the_grid_resumes(tmp_path, capsys):
    out = tmp_path / "results"
    args = [arg for arg in tiny_grid_args(out, *ARGS) if arg != "--no-report"]
    for phase, stop in PHASES:
        with pytest.MonkeyPatch.context() as patch:
            stop(patch)
            assert main(args) == preempt.EXIT_PREEMPTED, phase
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("preempted (stopped "), (phase, err)
        preempt._requested = False
    assert main(args) == 0
    frame = pd.read_csv(out / RESULTS_CSV)
    assert len(frame) == 2 * 5 and set(frame["status"]) == {"done"}  # 5 float models, each also in int8
    timed = pd.read_csv(out / LATENCY_CSV)
    assert set(timed["status"]) == {"ok"} and timed["run_id"].nunique() == 10
    assert (out / "report" / "report.html").is_file()
