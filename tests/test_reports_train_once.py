"""reports/tables.py's "train once or train each" table: at every width cut from a once-for-all generator or trained
online, each way's FID and training seconds, and each way's total over those widths with a shared supernet or
teacher counted once; from a results.csv built by hand (2 seeds, teacher 256, widths 128 and 32)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from reports.load import load
from reports.tables import all_tables, runs_table, train_once_table
from tests.test_reports import _generator_params, _state_dict_bytes

SEEDS = (1, 2)
TEACHER = 256
SEED_NOISE = {1: -0.1, 2: 0.1}  # FID and seconds offsets: a model's mean over the seeds is its value below
# (method, importance, quantize, width, kd): (mean FID, mean own training seconds); a seed's seconds are the
# mean -/+ 1 (seed 1 / seed 2), so every mean below is exact
MODELS = {
    ("width", "", "", TEACHER, "none"): (5.0, 105.0),  # the seed's teacher
    ("width", "", "", 128, "none"): (7.0, 32.0),
    ("width", "", "", 32, "none"): (11.0, 11.0),
    ("width", "", "", 128, "pixel-l1"): (6.5, 42.0),
    ("width", "", "", 32, "pixel-l1"): (10.0, 15.0),
    ("prune", "bn", "", 128, "none"): (6.8, 9.0),
    ("prune", "bn", "", 32, "none"): (10.5, 6.0),
    ("once-for-all", "", "", TEACHER, "none"): (5.5, 160.0),  # the supernet
    ("once-for-all", "", "", 128, "none"): (6.0, 0.0),  # cuts: no training of their own
    ("once-for-all", "", "", 32, "none"): (9.0, 0.0),
    ("online", "", "", 32, "feature"): (9.5, 125.0),
    ("width", "", "int8", 32, "pixel-l1"): (1.0, 0.0),  # a quantized model: never in this table
}
LOOPS = {"scratch": 500.0, "distill": 300.0, "once-for-all": 0.5}  # train_seconds: the wall time of each loop


def _run_id(method: str, importance: str, quantize: str, width: int, kd: str, seed: int) -> str:
    return f"digits-{method}{importance}{quantize}-w{width}-{kd}-s{seed}"


def _loop(method: str, width: int, kd: str) -> str:
    if method == "once-for-all" and width < TEACHER:
        return "once-for-all"
    return "scratch" if kd == "none" and method != "prune" or method == "online" else "distill"


def _row(key: tuple, fid: float, own: float, seed: int) -> dict:
    method, importance, quantize, width, kd = key
    params, bn = _generator_params(width)
    teacher = _run_id("width", "", "", TEACHER, "none", seed)
    supernet = _run_id("once-for-all", "", "", TEACHER, "none", seed)
    if quantize:
        source = _run_id(method, importance, "", width, kd, seed)
    else:
        source = {"prune": teacher, "once-for-all": supernet if width < TEACHER else ""}.get(method, "")
    ofa = method == "once-for-all"
    return {
        "run_id": _run_id(*key, seed),
        "role": "teacher" if key == ("width", "", "", TEACHER, "none") else "student",
        "dataset": "digits",
        "family": "dcgan",
        "width": width,
        "teacher_width": TEACHER,
        "kd": kd,
        "seed": seed,
        "status": "done",
        "method": method,
        "prune_importance": importance,
        "finetune_epochs": 2 if method == "prune" else 0,
        "quantize": quantize,
        "source_run": source,
        "ofa_widths": "32-128" if ofa else None,
        "g_params": params,
        "g_bytes_fp32": _state_dict_bytes(params, bn),
        "fid_lenet": fid + SEED_NOISE[seed],
        "train_seconds": math.nan if quantize else LOOPS[_loop(method, width, kd)] + 10 * SEED_NOISE[seed],
        "train_own_seconds": math.nan if quantize else own + (10 * SEED_NOISE[seed] if own else 0.0),
        "supernet_train_seconds": LOOPS["scratch"] + 10 * SEED_NOISE[seed] if ofa else math.nan,
    }


def _frame() -> pd.DataFrame:
    rows = [_row(key, fid, own, seed) for seed in SEEDS for key, (fid, own) in MODELS.items()]
    # a third seed of the width-128 scratch model that diverged: its FID and time count nowhere
    failed = _row(("width", "", "", 128, "none"), 1.0, 999.0, 1) | {"run_id": "diverged", "seed": 3}
    return pd.DataFrame([*rows, failed | {"status": "diverged", "fid_lenet": math.nan}])


def _results(tmp_path: Path, frame: pd.DataFrame):
    frame.to_csv(tmp_path / "results.csv", index=False)
    return load(tmp_path)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return _results(tmp_path_factory.mktemp("train-once"), _frame())


def _rows(table) -> pd.DataFrame:
    return table.data.set_index(["row", "widths", "series"])


def test_every_way_at_each_cut_width_with_its_seconds(results):
    table = train_once_table(results)
    rows = _rows(table)
    at_128 = rows.loc["width"].loc["128"]
    assert list(at_128.index) == [
        "width · scratch",
        "width · pixel-l1",
        "once-for-all · scratch",
        "prune (bn) · scratch",
    ]
    assert list(rows.loc["width"].loc["32"].index) == [
        "width · scratch", "width · pixel-l1", "once-for-all · scratch", "online · feature",
        "prune (bn) · scratch"]  # fmt: skip
    assert at_128["own_seconds_mean"].tolist() == pytest.approx([32.0, 42.0, 0.0, 9.0])
    assert at_128["fid_lenet_mean"].tolist() == pytest.approx([7.0, 6.5, 6.0, 6.8])  # the diverged seed left out
    assert at_128["seeds"].tolist() == [2, 2, 2, 2]
    # what each needs first: nothing from scratch, the teacher when distilled or pruned, the supernet for a cut
    assert at_128["needs_first"].tolist() == ["", "teacher", "supernet", "teacher"]
    assert at_128["needs_first_seconds_mean"].tolist() == pytest.approx([math.nan, 105.0, 160.0, 105.0], nan_ok=True)
    assert at_128["total_seconds_mean"].tolist() == pytest.approx([32.0, 147.0, 160.0, 114.0])
    online = rows.loc[("width", "32", "online · feature")]  # its own time holds its co-trained teacher
    assert (online["own_seconds_mean"], online["needs_first"], online["total_seconds_mean"]) == (125.0, "", 125.0)
    assert math.isnan(online["needs_first_seconds_mean"])
    assert set(table.data["quantize"]) == {""} and set(table.data["time_basis"]) == {"train_own_seconds"}
    assert 256 not in set(table.data["width"].dropna())  # the teacher's and the supernet's width is not a row


def test_totals_count_a_supernet_and_a_teacher_once(results):
    totals = _rows(train_once_table(results)).loc["total"]
    assert list(totals.index) == [
        ("128+32", "width · scratch"), ("128+32", "width · pixel-l1"), ("128+32", "once-for-all · scratch"),
        ("32", "online · feature"), ("128+32", "prune (bn) · scratch")]  # fmt: skip
    total = totals.droplevel("widths")["total_seconds_mean"]
    assert total["once-for-all · scratch"] == pytest.approx(160.0)  # train once: the supernet's own seconds
    assert total["width · scratch"] == pytest.approx(11.0 + 32.0)  # train each: a run per width
    assert total["width · pixel-l1"] == pytest.approx(15.0 + 42.0 + 105.0)  # the teacher once, not per width
    assert total["prune (bn) · scratch"] == pytest.approx(6.0 + 9.0 + 105.0)
    assert total["online · feature"] == pytest.approx(125.0)
    pixel = totals.droplevel("widths").loc["width · pixel-l1"]
    assert (pixel["own_seconds_mean"], pixel["needs_first_seconds_mean"], pixel["seeds"]) == (57.0, 105.0, 2)
    assert pixel["needs_first"] == "teacher" and math.isnan(pixel["fid_lenet_mean"])


def test_display_and_caption(results):
    table = train_once_table(results)
    shown = table.display
    assert list(shown.columns) == ["width", "way", "FID (LeNet)", "seeds", "own training (s)", "needs first",
                                   "needs first (s)", "total (s)"]  # fmt: skip
    cut = shown[(shown["width"] == "128") & (shown["way"] == "once-for-all · scratch")].iloc[0]
    assert cut.tolist() == [
        "128",
        "once-for-all · scratch",
        "6.00 (5.90..6.10)",
        "2",
        "0.0",
        "supernet",
        "160.0",
        "160.0",
    ]
    total = shown[(shown["width"] == "every width above") & (shown["way"] == "width · scratch")].iloc[0]
    assert total.tolist() == ["every width above", "width · scratch", "–", "2", "43.0", "–", "–", "43.0"]
    assert shown.loc[shown["way"] == "online · feature", "width"].tolist() == ["32", "width 32"]
    assert "timed alone on the CPU" in table.caption and "not per-run costs" not in table.caption
    assert "teacher's forward passes" in table.caption and "co-trained teacher" in table.caption
    assert "a cut trains 0 s" in table.caption and "one supernet for all its widths" in table.caption
    assert "From two seeds: mean (lowest..highest)" in table.caption
    assert "| every width above | once-for-all · scratch |" in table.markdown()


def test_loop_times_stand_in_where_runs_have_no_own_time(tmp_path):
    frame = _frame()
    for name, frame_without in {"absent": frame.drop(columns="train_own_seconds"),
                                "empty": frame.assign(train_own_seconds=math.nan)}.items():  # fmt: skip
        (tmp_path / name).mkdir()
        table = train_once_table(_results(tmp_path / name, frame_without))
        totals = _rows(table).loc["total"].droplevel("widths")["total_seconds_mean"]
        assert totals["once-for-all · scratch"] == pytest.approx(LOOPS["scratch"])  # the supernet's loop, once
        assert totals["width · pixel-l1"] == pytest.approx(2 * LOOPS["distill"] + LOOPS["scratch"])
        assert set(table.data["time_basis"]) == {"train_seconds"}
        assert "loop wall times" in table.caption and "not per-run costs" in table.caption
        assert "timed alone on the CPU" not in table.caption


def test_absent_without_a_finished_once_for_all_or_online_model(tmp_path):
    frame = _frame()
    others = frame[~frame["method"].isin(["once-for-all", "online"])]
    assert train_once_table(_results(tmp_path, others)) is None
    (tmp_path / "failed").mkdir()
    failed = frame["method"].isin(["once-for-all", "online"])  # present, but none finished
    assert (
        train_once_table(_results(tmp_path / "failed", frame.assign(status=frame["status"].mask(failed, "diverged"))))
        is None
    )
    assert "train-once" not in [table.name for table in all_tables(_results(tmp_path, others))]


def test_every_table_builds_with_the_new_columns(results):
    names = [table.name for table in all_tables(results)]
    assert "train-once" in names and "runs" in names
    listed = runs_table(results).display.set_index("run id")
    assert listed.loc[_run_id("once-for-all", "", "", 32, "none", 1), "own train time (s)"] == "0.0"
    assert listed.loc[_run_id("width", "", "", 32, "none", 2), "own train time (s)"] == "12.0"
    assert "own train time: the run's own updates" in runs_table(results).caption


def test_each_dataset_has_its_rows_and_totals(tmp_path):
    digits = _frame()
    fashion = digits.assign(
        dataset="fashion",
        run_id=digits["run_id"].str.replace("digits-", "fashion-"),
        source_run=digits["source_run"].str.replace("digits-", "fashion-"),
        fid_lenet=digits["fid_lenet"] + 100,
        train_own_seconds=digits["train_own_seconds"] * 2,
    )
    table = train_once_table(_results(tmp_path, pd.concat([fashion, digits], ignore_index=True)))
    data = table.data
    assert data["dataset"].tolist() == ["digits"] * 14 + ["fashion"] * 14  # each dataset's widths, then its totals
    assert data["row"].tolist() == (["width"] * 9 + ["total"] * 5) * 2
    fashion_rows = data[data["dataset"] == "fashion"].set_index(["row", "widths", "series"])
    assert fashion_rows.loc[("width", "128", "width · scratch"), "fid_lenet_mean"] == pytest.approx(107.0)
    assert fashion_rows.loc[("total", "128+32", "width · pixel-l1"), "total_seconds_mean"] == pytest.approx(2 * 162.0)
    assert fashion_rows.loc[("total", "128+32", "once-for-all · scratch"), "total_seconds_mean"] == pytest.approx(320)
    assert table.display["dataset"].tolist() == data["dataset"].tolist()
    assert table.display["width"].tolist()[14:23] == ["128"] * 4 + ["32"] * 5


def test_a_teacher_not_in_the_results_leaves_the_totals_that_need_it_unknown(tmp_path):
    frame = _frame()
    table = train_once_table(_results(tmp_path, frame[frame["role"] != "teacher"]))  # a teacher given as a file
    rows = _rows(table)
    pixel = rows.loc[("width", "32", "width · pixel-l1")]
    assert pixel["needs_first"] == "a run not in the results" and pixel["own_seconds_mean"] == pytest.approx(15.0)
    assert math.isnan(pixel["needs_first_seconds_mean"]) and math.isnan(pixel["total_seconds_mean"])
    assert math.isnan(rows.loc[("total", "128+32", "prune (bn) · scratch"), "total_seconds_mean"])
    assert rows.loc[("total", "128+32", "once-for-all · scratch"), "total_seconds_mean"] == pytest.approx(160.0)
    assert set(table.data["time_basis"]) == {"train_own_seconds"}
