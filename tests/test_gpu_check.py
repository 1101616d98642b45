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
