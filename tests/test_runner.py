import json

import pandas as pd
import pytest
import torch

import bench.engine.train as train
from bench.base.layout import LATENCY_CSV, RESULTS_CSV
from bench.cli import main
from bench.engine.records import results_table
from bench.grid.context import GridContext
from bench.grid.plan import plan, schedule
from bench.grid.presets import make_grid
from reports import build_report
from tests.conftest import comparable, tiny_grid_args


# columns that measure time, not what was computed
def test_plan_trains_scratch_with_the_teacher_then_the_distilled():
    grid = make_grid("quick", widths=(16, 32), seeds=(1, 2), methods=("width",))
    cohorts = plan(grid.runs())
    assert [(c.seed, c.phase) for c in cohorts] == [(1, "scratch"), (1, "distill"), (2, "scratch"), (2, "distill")]
    assert [s.width for s in cohorts[0].specs] == [256, 16, 32]  # the quick preset's teacher first
    assert cohorts[0].specs[0].is_teacher and cohorts[1].teacher == cohorts[0].specs[0]


def test_tiny_grid_csv_schema_and_values(tiny_results):
    frame = pd.read_csv(tiny_results / RESULTS_CSV)
    assert len(frame) == 5  # teacher + 2 widths x {none, pixel-l1}
    assert set(frame["status"]) == {"done"}
    teacher = frame[frame["role"] == "teacher"].iloc[0]
    assert (teacher["width"], teacher["kd"]) == (64, "none")
    params = {16: 30_910, 32: 67_196, 64: 155_896}  # generator parameters by width
    references = pd.read_csv(tiny_results / "references.csv").set_index("reference")
    real, untrained = references.loc["real-test"], references.loc["untrained"]
    for _, row in frame.iterrows():
        assert row["g_params"] == params[row["width"]]
        assert row["g_bytes_fp32"] > 4 * row["g_params"]
        assert row["ratio_params"] == pytest.approx(teacher["g_params"] / row["g_params"])
        assert row["ratio_bytes"] == pytest.approx(teacher["g_bytes_fp32"] / row["g_bytes_fp32"])
        assert row["speedup_latency_cpu"] == pytest.approx(teacher["latency_ms_cpu"] / row["latency_ms_cpu"])
        assert row["ratio_macs"] == pytest.approx(teacher["g_macs"] / row["g_macs"])
        # a generator trained for 2 epochs lies between the real data and an untrained generator
        assert real["fid_lenet"] < row["fid_lenet"] < untrained["fid_lenet"]
        # chance at worst, within the sampling noise of 100 images (one standard deviation at chance: 0.03; a
        # 2-epoch student gave 0.09 under ATEN_CPU_CAPABILITY=default)
        assert untrained["class_consistency"] - 0.06 <= row["class_consistency"] <= 1
        assert row["quality_n_fake"] == 100
    assert teacher["ratio_params"] == 1.0
    for name in ("results.csv", "references.csv", "grid.json"):
        assert (tiny_results / name).is_file()
    grid = json.loads((tiny_results / "grid.json").read_text())
    assert grid["widths"] == [16, 32] and grid["device_type"] == "cpu"


def test_run_directories_hold_their_artifacts(tiny_results):
    for run in (tiny_results / "runs").iterdir():
        names = {p.name for p in run.iterdir()}
        assert {"spec.json", "result.json", "generator.pt", "losses.csv", "samples.png"} <= names
        assert "state.pt" not in names  # the resume state goes once the run is recorded
        state = torch.load(run / "generator.pt", weights_only=True)
        assert "blocks.0.0.weight" in state


def test_rerun_skips_finished_runs_and_their_timing(tiny_results):
    timed = [*(tiny_results / "runs").glob("*/result.json"), tiny_results / LATENCY_CSV]
    before = {p: p.stat().st_mtime_ns for p in timed}
    assert main(tiny_grid_args(tiny_results)) == 0
    assert before == {p: p.stat().st_mtime_ns for p in timed}


def test_every_model_is_timed_together_and_results_take_the_eager_figures(tiny_results):
    latency = pd.read_csv(tiny_results / LATENCY_CSV)
    frame = pd.read_csv(tiny_results / RESULTS_CSV).set_index("run_id")
    assert set(latency["run_id"]) == set(frame.index)  # one phase timed every model
    assert (
        set(latency["batch"]) == {1, 4} and set(latency["backend"]) == {"eager"} and (latency["status"] == "ok").all()
    )
    assert (latency["p50_ms"] <= latency["p90_ms"]).all() and (latency["p90_ms"] <= latency["p99_ms"]).all()
    single = latency[latency["batch"] == 1].set_index("run_id")
    assert frame["latency_ms_cpu"].to_dict() == pytest.approx(single["p50_ms"].to_dict())
    largest = latency[latency["batch"] == 4].set_index("run_id")
    assert frame["throughput_ips_cpu"].to_dict() == pytest.approx(largest["throughput_ips"].to_dict())


def test_same_spec_twice_gives_identical_metrics_and_checkpoints(tiny_results, tmp_path):
    again = tmp_path / "again"
    assert main(tiny_grid_args(again)) == 0
    first, second = results_table(tiny_results), results_table(again)
    pd.testing.assert_frame_equal(comparable(first), comparable(second))
    for run in (tiny_results / "runs").iterdir():
        assert (run / "generator.pt").read_bytes() == (again / "runs" / run.name / "generator.pt").read_bytes()


def test_given_teacher_checkpoint_is_distilled_from(tiny_results, tmp_path):
    frame = pd.read_csv(tiny_results / RESULTS_CSV)
    teacher_id = frame.loc[frame["role"] == "teacher", "run_id"].iloc[0]
    checkpoint = tiny_results / "runs" / teacher_id / "generator.pt"
    out = tmp_path / "given"
    args = tiny_grid_args(out, "--teacher", str(checkpoint), "--kd", "pixel-l1", "--widths", "16")
    assert main(args) == 0
    given = pd.read_csv(out / RESULTS_CSV)
    assert sorted(given["role"]) == ["student", "teacher"]
    assert given.loc[given["role"] == "teacher", "teacher_fidelity_l1"].iloc[0] == 0.0  # as a trained teacher's
    student = given[given["role"] == "student"].iloc[0]
    assert student["teacher_width"] == 64 and student["ratio_params"] == pytest.approx(155_896 / 30_910)
    trained_here = frame[(frame["width"] == 16) & (frame["kd"] == "pixel-l1")].iloc[0]
    assert student["teacher_fidelity_l1"] == pytest.approx(trained_here["teacher_fidelity_l1"])


def test_a_diverged_teacher_is_recorded_and_the_grid_goes_on(tmp_path, monkeypatch):
    real_step = train.train_step

    def teacher_diverges(member, *args):
        losses = real_step(member, *args)
        return losses * float("nan") if member.spec.is_teacher else losses

    monkeypatch.setattr(train, "train_step", teacher_diverges)
    out = tmp_path / "diverged"
    assert main(tiny_grid_args(out)) == 0
    frame = pd.read_csv(out / RESULTS_CSV).set_index(["width", "kd"])
    assert frame.loc[(64, "none"), "status"] == "diverged" and frame.loc[(64, "none"), "diverged_step"] == 5
    assert set(frame.loc[[(16, "none"), (32, "none")], "status"]) == {"done"}
    assert frame.loc[[(16, "none"), (32, "none")], "teacher_fidelity_l1"].isna().all()
    assert set(frame.loc[[(16, "pixel-l1"), (32, "pixel-l1")], "status"]) == {"teacher-diverged"}
    assert frame.loc[(16, "none"), "ratio_params"] == pytest.approx(155_896 / 30_910)  # sizes survive divergence
    assert (build_report(out) / "report.md").read_text().count("diverged") >= 3


def test_schedule_trains_every_seed_of_a_phase_together_or_one_cohort_at_a_time():
    cohorts = plan(make_grid("quick", widths=(16,), seeds=(1, 2), methods=("width",)).runs())
    assert schedule(cohorts, together=False) == [[c] for c in cohorts]
    together = schedule(cohorts, together=True)
    assert [[(c.seed, c.phase) for c in batch] for batch in together] == [
        [(1, "scratch"), (2, "scratch")],
        [(1, "distill"), (2, "distill")],
    ]


def test_seeds_trained_together_give_the_results_of_seeds_trained_apart(tmp_path, monkeypatch):
    args = ("--seeds", "1,2", "--epochs", "1", "--widths", "16", "--kd", "none,pixel-l1", "--backbones", "lenet")
    assert main(tiny_grid_args(tmp_path / "apart", *args)) == 0
    monkeypatch.setattr(GridContext, "trains_together", property(lambda self: True))
    assert main(tiny_grid_args(tmp_path / "together", *args)) == 0
    apart, together = results_table(tmp_path / "apart"), results_table(tmp_path / "together")
    assert len(apart) == 6
    pd.testing.assert_frame_equal(comparable(apart), comparable(together))
    windows = together.groupby("kd")[["train_started_at", "train_finished_at"]].nunique()
    assert (windows == 1).all().all()  # one training loop per phase, both seeds in it


def test_records_say_where_measuring_time_went(tiny_results):
    frame = pd.read_csv(tiny_results / RESULTS_CSV)
    for part in ("size", "quality_generate", "quality_lenet", "quality_resnet", "quality_consistency"):
        assert (frame[f"seconds_{part}"] > 0).all(), part
    started = pd.to_datetime(frame["train_started_at"])
    assert (pd.to_datetime(frame["train_finished_at"]) > started).all()


def test_a_given_teacher_is_recorded_as_it_was_trained(tiny_results, tmp_path):
    frame = pd.read_csv(tiny_results / RESULTS_CSV)
    teacher_run = tiny_results / "runs" / frame.loc[frame["role"] == "teacher", "run_id"].iloc[0]
    out = tmp_path / "one-epoch"
    assert main(tiny_grid_args(out, "--teacher", str(teacher_run), "--kd", "pixel-l1", "--widths", "16",
                               "--epochs", "1")) == 0  # fmt: skip
    given = pd.read_csv(out / RESULTS_CSV).set_index("role")
    assert given.loc["teacher", "epochs"] == 2 and given.loc["student", "epochs"] == 1  # its own, not the grid's
    assert given.loc["teacher", "ratio_params"] == 1.0  # still the reference of the grid's students
