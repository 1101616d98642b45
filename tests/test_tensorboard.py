"""--tensorboard: every run's logged losses, per-epoch samples and final metrics as TensorBoard events."""

from __future__ import annotations

import importlib.util

import pandas as pd
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bench.base.layout import LOSSES_FILE, RUNS_DIR
from bench.cli import main
from bench.engine.tensorboard import BOARD_DIR
from tests.conftest import fails_cleanly, tiny_grid_args


def test_every_run_has_its_losses_samples_and_metrics_as_events(tmp_path):
    out = tmp_path / "results"
    assert main(tiny_grid_args(out, "--tensorboard", "--widths", "16", "--kd", "none", "--backbones", "lenet")) == 0
    runs = pd.read_csv(out / "results.csv")
    for run_id in runs["run_id"]:
        board = EventAccumulator(str(out / BOARD_DIR / run_id), size_guidance={"images": 0, "scalars": 0}).Reload()
        logged = pd.read_csv(out / RUNS_DIR / run_id / LOSSES_FILE)
        assert [event.step for event in board.Scalars("loss/d")] == list(logged["step"])
        assert [event.value for event in board.Scalars("loss/g")] == list(logged["loss_g"].astype("float32"))
        assert [image.step for image in board.Images("samples")] == [1, 2]  # one grid per epoch (2 epochs)
        hparams = list((out / BOARD_DIR / run_id).glob("final/events.out.tfevents.*"))
        assert hparams, f"{run_id}: no hyper-parameter events"


def test_without_tensorboard_installed_the_flag_is_one_line(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    fails_cleanly(main, capsys, tiny_grid_args(tmp_path / "o", "--tensorboard"), "--tensorboard needs TensorBoard")
