"""A killed grid resumes without redoing finished runs; two processes share a results directory safely."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from bench.engine.claims import CLAIM_FILE
from bench.engine.records import results_table
from tests.conftest import ROOT, comparable, tiny_grid_args


def start(out: Path) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "run_bench.py"), *tiny_grid_args(out)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"finished before it could be killed: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_kill_9_mid_grid_then_resume_matches_an_uninterrupted_run(tiny_results, tmp_path):
    out = tmp_path / "killed"
    runs = out / "runs"
    process = start(out)

    # kill once the scratch cohort is recorded and a distilled student has an epoch checkpoint
    def mid_distillation() -> bool:
        states = list(runs.glob("*pixel-l1*/state.pt"))
        return len(list(runs.glob("*/result.json"))) == 3 and bool(states)

    wait_until(mid_distillation, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p: p.stat().st_mtime_ns for p in runs.glob("*/result.json")}
    # a kill during a write leaves at most an orphan temp file, never a half-written target
    for path in runs.glob("*/*.json"):
        json.loads(path.read_text())
    for path in runs.glob("*/*.pt"):
        torch.load(path, weights_only=True)

    resumed = start(out)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished runs were not redone
    assert not list(out.rglob("*.tmp"))  # orphans of the kill are cleared when their run resumes
    pd.testing.assert_frame_equal(comparable(results_table(tiny_results)), comparable(results_table(out)))
    for run in runs.iterdir():
        assert (run / "generator.pt").read_bytes() == (tiny_results / "runs" / run.name / "generator.pt").read_bytes()


def test_two_processes_on_one_results_directory(tiny_results, tmp_path):
    """Two processes started together share the grid's runs and give what one process gives, and they did run at
    once: each run's claim file names the process that trained it, a process claims only runs that have no record
    yet, and one that finishes leaves every run recorded; so both being named means each took runs while the other
    was still at work (one trains the teacher's cohort while the other claims the distilled one and waits)."""
    out = tmp_path / "shared"
    first, second = start(out), start(out)
    assert first.wait(timeout=300) == 0, first.communicate()
    assert second.wait(timeout=300) == 0, second.communicate()
    table = results_table(out)
    assert len(table) == 5 and table["run_id"].is_unique
    pd.testing.assert_frame_equal(comparable(results_table(tiny_results)), comparable(table))
    assert pd.read_csv(out / "results.csv")["run_id"].tolist() == table["run_id"].tolist()

    trained_by = {run: int((out / "runs" / run / CLAIM_FILE).read_text()) for run in table["run_id"]}
    assert set(trained_by.values()) == {first.pid, second.pid}, f"one process did every run: {trained_by}"
    # the distilled students, trained by whichever process claimed them, started once the teacher had finished
    windows = table.set_index("run_id")[["kd", "width", "train_started_at", "train_finished_at"]]
    teacher = windows[windows["width"] == 64].iloc[0]
    distilled = windows[windows["kd"] != "none"]
    started = pd.to_datetime(distilled["train_started_at"])
    assert len(distilled) == 2 and (started >= pd.Timestamp(teacher["train_finished_at"])).all()


def test_sigterm_mid_training_saves_and_resume_matches_an_uninterrupted_run(tiny_results, tmp_path):
    out = tmp_path / "preempted"
    runs = out / "runs"
    process = start(out)
    wait_until(lambda: bool(list(runs.glob("*pixel-l1*/state.pt"))), process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("preempted (") and last.endswith("run the same command again to resume")
    assert "Traceback" not in err.decode()

    resumed = start(out)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    pd.testing.assert_frame_equal(comparable(results_table(tiny_results)), comparable(results_table(out)))
    for run in runs.iterdir():
        assert (run / "generator.pt").read_bytes() == (tiny_results / "runs" / run.name / "generator.pt").read_bytes()
