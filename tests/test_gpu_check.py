"""The one-call GPU check: its stages, its deadline and its summary; the GPU stages themselves run on a GPU."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd

from bench.harness import gpu_check


def test_unknown_stage_is_refused(tmp_path, capsys):
    assert gpu_check.main(["--stages", "env,warp", "--out", str(tmp_path)]) == 2
    assert "unknown stage 'warp'" in capsys.readouterr().err


def test_env_stage_runs_and_the_summary_names_the_device(tmp_path):
    assert gpu_check.main(["--stages", "env", "--out", str(tmp_path)]) == 0
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["torch"] and env["torch_fidelity"] and env["device"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| env " in summary and "| ok " in summary and env["device"] in summary


def test_stages_past_the_budget_are_skipped_not_started(tmp_path):
    assert gpu_check.main(["--stages", "env,perf", "--budget-s", "0", "--out", str(tmp_path)]) == 1
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("skipped: no time left") == 2
    assert not (tmp_path / "env.log").exists()


def test_stage_commands_run_the_paper_preset_and_share_its_cache(tmp_path):
    args = gpu_check.argparse.Namespace(out=str(tmp_path), data_root="/data", quick=False,
                                        stages="perf,paper,parity")  # fmt: skip
    stages = {stage.name: stage.command for stage in gpu_check.stage_commands(args)}
    assert stages["paper"][1:8] == ["run_bench.py", "--preset", "paper", "--seeds", "1314", "--device", "cuda"]
    assert "--epochs" not in stages["paper"]  # the preset's 25 epochs
    assert stages["parity"][stages["parity"].index("--cache-dir") + 1] == str(tmp_path / "paper" / "cache")
    assert stages["perf"][stages["perf"].index("--widths") + 1] == "16,32,64,128,256,512"


def test_busy_time_inside_the_training_windows(tmp_path):
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).astimezone()
    local = start.replace(tzinfo=None)
    lines = [f"{(local + pd.Timedelta(seconds=s)).strftime('%Y/%m/%d %H:%M:%S.%f')[:-3]}, {busy}, 100"
             for s, busy in [(0, 0), (1, 90), (2, 80), (3, 0), (4, 10)]]  # fmt: skip
    (tmp_path / gpu_check.UTIL_FILE).write_text("\n".join(lines) + "\n")
    stamp = start.timestamp()
    results = tmp_path / "results.csv"
    iso = [datetime.fromtimestamp(stamp + s, UTC).isoformat(timespec="milliseconds") for s in (0.5, 2.5)]
    pd.DataFrame({"train_started_at": [iso[0]] * 2, "train_finished_at": [iso[1]] * 2}).to_csv(results)
    windows = gpu_check.training_windows(results)
    assert windows == [(stamp + 0.5, stamp + 2.5)]
    samples = gpu_check.utilisation(tmp_path)
    assert gpu_check.mean_busy(samples, *windows[0]) == 85.0
    assert gpu_check.mean_busy(samples, stamp + 10, stamp + 20) is None


def test_the_default_stages_fit_the_budget_and_the_last_takes_what_is_left(tmp_path):
    args = gpu_check.argparse.Namespace(out=str(tmp_path), data_root="/data", quick=False,
                                        stages=",".join(gpu_check.DEFAULT_STAGES))  # fmt: skip
    stages = gpu_check.stage_commands(args)
    assert [stage.name for stage in stages] == ["env", "equivalence", "perf", "coverage", "stacked", "paper-3-seeds"]
    assert [stage.timeout_s for stage in stages[:-1]] == [20, 45, 120, 150, 45]
    assert gpu_check.BUDGET_S - sum(stage.timeout_s for stage in stages[:-1]) == 160  # the last one's rest, at least
    assert sum(stage.timeout_s for stage in stages[:-1]) + gpu_check.MIN_STAGE_S <= gpu_check.BUDGET_S == 540
    three = stages[-1].command
    assert three[three.index("--seeds") + 1] == "1314,1315,1316" and "--epochs" not in three  # the preset's own
    assert three[three.index("--cache-dir") + 1] == str(tmp_path / "paper" / "cache")
    assert stages[-3].command[1:] == ["-m", "bench.harness.gpu_check", "--data-root", "/data", "--out",
                                      str(tmp_path), "--coverage"]  # fmt: skip


def test_the_stacked_stage_times_the_paper_widths_seeds_and_batch_on_cuda(tmp_path):
    def stacked(quick: bool) -> gpu_check.Stage:
        args = gpu_check.argparse.Namespace(out=str(tmp_path), data_root="/data", quick=quick, stages="stacked")
        return gpu_check.stage_commands(args)[0]

    def value(command, flag):
        return command[command.index(flag) + 1]

    full, quick = stacked(False), stacked(True)
    assert full.command[1:3] == ["-m", "bench.harness.stacked"] and full.timeout_s == quick.timeout_s == 45
    assert value(full.command, "--device") == "cuda" and value(full.command, "--widths") == "16,32,64,128,256,512"
    assert value(full.command, "--seeds") == "3" and value(full.command, "--batch-size") == "128"
    assert value(full.command, "--out") == str(tmp_path / "stacked")
    assert value(quick.command, "--widths") == "16,512"
    assert int(value(quick.command, "--steps")) < int(value(full.command, "--steps"))
    (tmp_path / "stacked").mkdir()
    table = "| family | width | speedup |\n|---|---|---|\n| dcgan | 16 | 2.5 |\n"
    (tmp_path / "stacked" / "stacked.md").write_text(table)
    row = {"stage": "stacked", "status": "ok", "started": 0.0, "finished": 1.0, "seconds": 1.0}
    summary = gpu_check.summarise(tmp_path, [row], ["python -m bench.harness.gpu_check"])
    assert "## stacked" in summary and "| dcgan | 16 | 2.5 |" in summary


def test_coverage_grids_take_every_registered_method_family_backbone_and_cuda_backend(tmp_path, monkeypatch):
    from dataclasses import replace

    import gans
    from bench.engine.methods import METHODS
    from bench.latency import BACKENDS
    from bench.metrics.backbones import BACKBONES

    monkeypatch.setitem(METHODS._entries, "toy", replace(METHODS["width"], name="toy"))
    monkeypatch.setitem(BACKENDS._entries, "toy-gpu", replace(BACKENDS["eager"], name="toy-gpu", devices=("cuda",)))
    monkeypatch.setitem(BACKENDS._entries, "toy-cpu", replace(BACKENDS["eager"], name="toy-cpu", devices=("cpu",)))
    commands = gpu_check.coverage_commands("py", tmp_path, quick=False)
    assert list(commands) == gans.families() and len(commands) == 2

    def value(command, flag):
        return command[command.index(flag) + 1]

    for family, command in commands.items():
        assert value(command, "--family") == family and value(command, "--device") == "cuda"
        assert value(command, "--epochs") == "1"
        assert value(command, "--methods").split(",") == METHODS.names() and "toy" in value(command, "--methods")
        assert value(command, "--backbones").split(",") == BACKBONES.names() == ["lenet", "resnet"]
        assert value(command, "--latency-backends").split(",") == ["eager", "compile", "cuda-graph", "toy-gpu"]
        assert value(command, "--out") == str(tmp_path / "coverage" / family)


def write_grid(directory, statuses, cells):
    directory.mkdir(parents=True)
    pd.DataFrame({"run_id": [f"r{i}" for i in range(len(statuses))], "status": statuses}).to_csv(
        directory / "results.csv", index=False
    )
    frame = pd.DataFrame(cells, columns=["run_id", "backend", "device", "status", "error"])
    frame.to_csv(directory / "latency.csv", index=False)


CELLS = [("r0", "eager", "cpu", "ok", ""), ("r0", "eager", "cuda", "ok", ""),
         ("r0", "cuda-graph", "cpu", "skipped", "cuda-graph runs on cuda only"),
         ("r1", "cuda-graph", "cuda", "ok", "")]  # fmt: skip


def test_coverage_passes_when_every_run_is_done_and_every_cell_ran_or_was_declared_skipped(tmp_path):
    backends = ["eager", "cuda-graph"]
    write_grid(tmp_path / "good", ["done", "done"], CELLS)
    assert gpu_check.coverage_verdict(tmp_path / "good", backends) == (
        True, "2/2 runs done; 3 latency cells ok, 1 skipped"
    )  # fmt: skip
    write_grid(tmp_path / "diverged", ["done", "diverged"], CELLS)
    passed, notes = gpu_check.coverage_verdict(tmp_path / "diverged", backends)
    assert not passed and "1/2 runs done" in notes and "r1: diverged" in notes
    write_grid(tmp_path / "failed", ["done", "done"], [*CELLS, ("r1", "eager", "cuda", "failed", "prepare: boom")])
    passed, notes = gpu_check.coverage_verdict(tmp_path / "failed", backends)
    assert not passed and "eager on cuda: failed (prepare: boom)" in notes
    write_grid(tmp_path / "untimed", ["done", "done"], CELLS[:3])
    assert gpu_check.coverage_verdict(tmp_path / "untimed", backends) == (
        False, "2/2 runs done; 2 latency cells ok, 1 skipped; cuda-graph timed nothing on the GPU"
    )  # fmt: skip
    (tmp_path / "untimed" / "latency.csv").unlink()
    assert gpu_check.coverage_verdict(tmp_path / "untimed", backends) == (False, "no latency.csv")


def test_summary_has_one_row_per_stage_with_its_notes(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "cuda_backends", lambda: ["eager", "cuda-graph"])
    write_grid(tmp_path / "coverage" / "dcgan", ["done", "done"], CELLS)
    write_grid(tmp_path / "coverage" / "resnet", ["done", "diverged"], CELLS)
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    iso = [(start + pd.Timedelta(seconds=s)).isoformat() for s in (10, 70)]
    pd.DataFrame({"status": ["done", "done", "diverged"], "train_started_at": [iso[0]] * 3,
                  "train_finished_at": [iso[1]] * 3, "train_cuda_peak_mib": [100.0, 2048.4, None],
                  "width": [16, 32, 64]}).to_csv(tmp_path / "results.csv", index=False)  # fmt: skip
    (tmp_path / "paper-3-seeds").mkdir()
    (tmp_path / "results.csv").rename(tmp_path / "paper-3-seeds" / "results.csv")
    t0 = start.timestamp()
    rows = [{"stage": "coverage", "status": "exit 1", "started": t0, "finished": t0 + 5, "seconds": 5.0},
            {"stage": "paper-3-seeds", "status": "ok", "started": t0 + 5, "finished": t0 + 90, "seconds": 85.0},
            {"stage": "parity", "status": "skipped: no time left", "started": t0, "finished": t0,
             "seconds": 0.0}]  # fmt: skip
    summary = gpu_check.summarise(tmp_path, rows, ["python -m bench.harness.gpu_check"])
    table = [line for line in summary.splitlines() if line.startswith("|")][:5]
    assert [cell.strip() for cell in table[0].strip("|").split("|")] == ["name", "status", "seconds", "notes"]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert [row[:3] for row in cells] == [["coverage", "exit 1", "5"], ["paper-3-seeds", "ok", "85"],
                                          ["parity", "skipped: no time left", "0"]]  # fmt: skip
    assert cells[0][3].startswith("dcgan passed: 2/2 runs done;") and "resnet FAILED: 1/2 runs done" in cells[0][3]
    assert cells[1][3] == "2/3 runs done, training 60 s, peak 2048 MiB allocated in training"
    assert cells[2][3] == ""
    assert "## paper-3-seeds: training loops" in summary and "## paper-3-seeds: results (abridged)" in summary


def test_a_stage_out_of_time_is_stopped_with_the_processes_it_started(tmp_path, monkeypatch):
    import os
    import sys
    import time

    monkeypatch.setattr(gpu_check, "MIN_STAGE_S", 0)
    pid_file = tmp_path / "child.pid"
    script = ("import subprocess, sys; child = subprocess.Popen(['sleep', '60']); "
              "open(sys.argv[1], 'w').write(str(child.pid)); child.wait()")  # fmt: skip
    stage = gpu_check.Stage("slow", [sys.executable, "-c", script, str(pid_file)], 2)
    row = gpu_check.run_stage(stage, tmp_path, time.time() + 60)
    assert row["status"] == "timed out after 2 s" and row["seconds"] < 10
    pid = int(pid_file.read_text())
    for _ in range(50):  # the orphaned child is reaped by init once killed
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the stage's child {pid} still runs")
