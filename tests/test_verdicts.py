"""reports/verdicts.py and reports/agreement.py: what distillation buys, the iso-quality line, and whether the
backbones agree, on synthetic results whose answers are known."""

from __future__ import annotations

import pandas as pd
import pytest

from reports.agreement import MAX_FLIPS_LISTED, agreement_table, first_flips, flipped_pairs, kendall_tau
from reports.document import outline, report_tables
from reports.load import load
from reports.verdicts import distillation_sentences, distillation_table, iso_quality_table

SEEDS = (1, 2, 3)
SCRATCH_FID = {128: 40.0, 64: 100.0, 32: 300.0}
TEACHER_FID = 36.0
# distilled minus scratch, per seed: width 64 gains clearly, width 32's differences straddle zero
GAIN = {128: (-1.0, -0.8, -1.2), 64: (-10.0, -9.0, -11.0), 32: (4.0, -5.0, 2.0)}


def _rows(inception: bool, flip: bool) -> list[dict]:
    rows = []
    for seed in SEEDS:
        rows.append({"run_id": f"t-{seed}", "role": "teacher", "width": 256, "kd": "none", "fid_lenet": TEACHER_FID})
        for width, fid in SCRATCH_FID.items():
            rows.append({"run_id": f"s{width}-{seed}", "role": "student", "width": width, "kd": "none",
                         "fid_lenet": fid})  # fmt: skip
            rows.append({"run_id": f"d{width}-{seed}", "role": "student", "width": width, "kd": "pixel-l1",
                         "fid_lenet": fid + GAIN[width][seed - 1]})  # fmt: skip
    for row in rows:
        seed = int(row["run_id"].split("-")[1])
        row.update(dataset="digits", seed=seed, status="done", g_params=row["width"] * 1000,
                   g_bytes_fp32=row["width"] * 4000)  # fmt: skip
        if inception:  # a second backbone: the same order, or (flip) the width-32 pair the other way round
            value = row["fid_lenet"] / 2
            if flip and row["width"] == 32:
                value -= 2 * (row["fid_lenet"] - SCRATCH_FID[32])
            row["fid_inception"] = value
    return rows


def _results(tmp_path, inception: bool = False, flip: bool = False):
    pd.DataFrame(_rows(inception, flip)).to_csv(tmp_path / "results.csv", index=False)
    return load(tmp_path)


def test_the_distillation_table_shows_a_known_difference_with_its_sign(tmp_path):
    table = distillation_table(_results(tmp_path))
    by_width = table.data.set_index("width")
    assert by_width.loc[64, "fid_lenet_gain_mean"] == pytest.approx(-10.0)
    assert by_width.loc[64, "verdict"] == "distillation helps"
    assert by_width.loc[128, "verdict"] == "distillation helps"  # small, but the same sign on every seed
    assert by_width.loc[32, "verdict"].startswith("no difference")
    sentences = distillation_sentences(table)
    assert len(sentences) == 2 and any(s.startswith("At width 64, pixel-l1 distillation lowers the LeNet FID by 10")
                                       for s in sentences)  # fmt: skip
    assert not any("width 32" in sentence for sentence in sentences)  # its interval crosses zero: no sentence


def test_one_seed_gives_no_verdict_and_says_so(tmp_path):
    rows = [row for row in _rows(False, False) if row["seed"] == 1]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    results = load(tmp_path)
    table = distillation_table(results)
    assert set(table.data["verdict"]) == {"one seed pair: no interval"} and not distillation_sentences(table)
    blocks = outline(results, {t.name: t for t in report_tables(results)}, {})
    assert any(getattr(block, "text", "").startswith("One seed: the differences below") for block in blocks)


def test_the_smallest_model_within_ten_percent_of_the_teacher(tmp_path):
    table = iso_quality_table(_results(tmp_path))
    row = table.data.iloc[0]
    # distilled width 128 (mean FID 39.0) is within 10% of the teacher's 36.0 (39.6); width 64 is not
    assert row["keeps_quality"] and row["width"] == 128 and row["kd"] == "pixel-l1"
    assert "pixel-l1, width 128" in table.display.iloc[0, 0]


def test_kendall_tau_of_identical_and_reversed_rankings():
    a = pd.Series([1.0, 2.0, 3.0, 4.0])
    assert kendall_tau(a, a * 10) == pytest.approx(1.0)
    assert kendall_tau(a, -a) == pytest.approx(-1.0)
    names = pd.Series(["w", "x", "y", "z"])
    # reversed: every pair flips, the two ends first (3 ranks apart on both sides), neighbours last
    assert flipped_pairs(names, a, a.iloc[::-1].reset_index(drop=True)) == [
        ("w", "z"),
        ("w", "y"),
        ("x", "z"),
        ("w", "x"),
        ("x", "y"),
        ("y", "z"),
    ]
    # w and z swap ends: their own pair, 3 ranks apart on both sides, comes before those with x and y
    assert flipped_pairs(names, a, pd.Series([4.0, 2.0, 3.0, 1.0]))[0] == ("w", "z")


def test_the_table_shows_thefirst_flips_and_the_csv_keeps_them_all():
    pairs = "; ".join(f"m{i} / n{i}" for i in range(MAX_FLIPS_LISTED + 2))
    shown = first_flips(pairs)
    assert shown.startswith("m0 / n0; m1 / n1") and shown.endswith("; and 2 more")
    assert f"m{MAX_FLIPS_LISTED} / " not in shown
    assert first_flips("") == "–" and first_flips("a / b") == "a / b"


def test_backbones_that_disagree_are_shown_with_the_flipped_pairs(tmp_path):
    assert agreement_table(_results(tmp_path / "one")) is None  # one backbone: nothing to compare
    same = agreement_table(_results(tmp_path / "same", inception=True))
    assert same.data.loc[0, "kendall_tau"] == pytest.approx(1.0) and same.data.loc[0, "flips"] == 0
    flipped = agreement_table(_results(tmp_path / "flip", inception=True, flip=True))
    assert flipped.data.loc[0, "flips"] == 1 and flipped.data.loc[0, "kendall_tau"] < 1.0
    assert "width 32" in flipped.data.loc[0, "flipped_pairs"]
    disagreement = distillation_table(_results(tmp_path / "flip", inception=True, flip=True)).data.set_index("width")
    assert disagreement.loc[32, "backbones_agree"].startswith("no: LeNet")
    assert disagreement.loc[64, "backbones_agree"] == "yes"


@pytest.fixture(autouse=True)
def _directories(tmp_path):
    for name in ("one", "same", "flip"):
        (tmp_path / name).mkdir()


def test_the_teacher_is_named_as_such_in_flipped_pairs(tmp_path):
    rows = _rows(inception=True, flip=False)
    for row in rows:
        if row["role"] == "teacher":
            row["fid_inception"] = 1000.0  # the best model on the LeNet, the worst on the second backbone
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    table = agreement_table(load(tmp_path))
    assert table.data.loc[0, "flips"] == 6  # the teacher against each of the 6 students
    assert table.data.loc[0, "flipped_pairs"].count("teacher, width 256 / ") == 6


def test_with_two_seed_pairs_the_verdict_rests_on_the_range_shown_beside_it(tmp_path):
    """Two pairs show their range, not a Student-t interval (t = 12.7): a range that excludes 0 is reported as
    both pairs agreeing, never as 'the interval includes 0' beside numbers that exclude it."""
    rows = [row for row in _rows(False, False) if row["seed"] in (1, 2)]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    table = distillation_table(load(tmp_path))
    by_width = table.data.set_index("width")
    assert by_width.loc[128, "verdict"] == "both seed pairs: distillation helps (two pairs: no interval)"
    assert by_width.loc[64, "verdict"] == "both seed pairs: distillation helps (two pairs: no interval)"
    assert by_width.loc[32, "verdict"] == "the two seed pairs differ in sign: no verdict"  # +4 and -5
    shown = table.display["FID (LeNet): distilled − scratch"][(table.data["width"] == 128).to_numpy()]
    assert list(shown) == ["-0.900 (-1.000..-0.800)"]  # the range beside the verdict excludes 0
    assert not distillation_sentences(table)  # a sentence states a 95% interval: none from two pairs
