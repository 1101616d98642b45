"""Shared fixtures: where the real MNIST lies beside the project, and a fixed CPU thread count."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# One thread everywhere, subprocesses included: results are bit-identical only at equal thread counts, and
# processes running side by side on two cores must not oversubscribe them.
os.environ["OMP_NUM_THREADS"] = "1"

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
# the domain classifier and real-data statistics, trained and computed once per test session
CACHE_DIR = Path(tempfile.mkdtemp(prefix="gan-kd-bench-cache-"))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from data import get_dataset

    return get_dataset("digits")


@pytest.fixture(scope="session")
def classifier_cache() -> Path:
    """The session's cache directory: the digits classifier is trained once for every test."""
    return CACHE_DIR


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA}")
    return SHARED_DATA


def state_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s state_dict: what a test compares before and after."""
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def fails_cleanly(main, capsys, args: list[str], expected: str) -> str:
    """``main(args)`` exits 2 with one ``error:`` line on stderr that contains ``expected``; returns that line."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expected in err, err
    return err


class NanLoss(torch.nn.Module):
    """A distillation term that is NaN from the first step: what makes a member diverge on purpose."""

    def forward(self, student_images, *rest):
        return student_images.mean() * float("nan")


@pytest.fixture(scope="session")
def nan_objective() -> str:
    """The name of a registered objective whose loss is NaN (registered once per session: names are unique)."""
    from distill import OBJECTIVES

    if "test-nan" not in OBJECTIVES:
        OBJECTIVES.add("test-nan", lambda student_channels, teacher_channels: NanLoss())
    return "test-nan"


def spec(width: int = 16, kd="none", seed=7, epochs=1, batch_size=64, kd_weight=1.0, teacher_width=64, lr=2e-4):
    """A run spec on digits with a width-64 teacher: what the training tests train."""
    from bench.engine.spec import RunSpec

    return RunSpec("digits", width, kd, kd_weight, seed, epochs, batch_size, lr=lr, teacher_width=teacher_width)


def teacher_for(digits, seed=3):
    """A fixed width-64 teacher with clearly non-zero outputs (DCGAN init gives near-zero images in eval)."""
    from bench.engine.models import build_models

    generator, _ = build_models(spec(64, seed=seed), digits)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for weight in generator.parameters():
            weight.data.normal_(0.0, 0.3)
    return generator.eval()


TIMING = (
    "train_seconds",
    "train_own_seconds",
    "latency",
    "throughput",
    "finished_at",
    "train_started_at",
    "threads_",
    "device_name",
    "seconds_",
)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame if any(c.startswith(t) or t in c for t in TIMING)])


def tiny_grid_args(out: Path, *extra: str) -> list[str]:
    """A grid that exercises every stage in seconds: teacher 64, students 16 and 32, scratch and pixel-l1 (the width
    method alone: ``extra`` may name others)."""
    return [
        "--widths", "16,32", "--teacher-width", "64", "--epochs", "2", "--fid-samples", "100", "--methods", "width",
        "--log-every", "5", "--quiet", "--no-report", "--cache-dir", str(CACHE_DIR), "--out", str(out),
        "--latency-backends", "eager", "--latency-batches", "1,4", "--latency-seconds", "0.02", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory) -> Path:
    """One finished tiny grid, shared by every test that only reads results."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("tiny") / "results"
    assert main(tiny_grid_args(out)) == 0
    return out


def assert_stopped_run_resumes_exactly(make, step, dataset, directory: Path):
    """A two-epoch run stopped at its 30th step (the 8th of its second epoch, at 22 steps an epoch) and resumed
    ends where the same run trained straight does: every module and the loss log. ``make(run_dir)`` builds the
    member, ``step`` is its method's update. Returns the resumed member."""
    from bench.engine import preempt

    cpu = torch.device("cpu")
    straight = make(directory / "straight")
    train_cohort([straight], dataset, None, cpu, progress=False, log_every=4)
    stopped, calls = make(directory / "stopped"), {"n": 0}

    def stop_midway(member, *args):
        calls["n"] += 1
        if calls["n"] == 30:
            preempt.request_stop()
        return step(member, *args)

    stopped.step = stop_midway
    try:
        with pytest.raises(preempt.Preempted, match="stopped at step 8 of epoch 2"):
            train_cohort([stopped], dataset, None, cpu, progress=False, log_every=4)
    finally:
        preempt._requested = False
    resumed = make(directory / "stopped")
    assert (resumed.start_epoch, resumed.start_step) == (1, 8)
    train_cohort([resumed], dataset, None, cpu, progress=False, log_every=4)
    for module in ("generator", "objective", "discriminator"):
        assert same_state(state_of(getattr(straight, module)), state_of(getattr(resumed, module)))
    assert straight.log == resumed.log
    return resumed


def train_cohort(members, dataset, teacher, device, **options) -> None:
    """Train one seed's cohort as the grid does (``train_cohorts`` with one group); ``options``: ``LoopOptions``."""
    from bench.engine.train import LoopOptions, TrainGroup, train_cohorts

    train_cohorts([TrainGroup(members, teacher)], dataset, device, LoopOptions(**options))
