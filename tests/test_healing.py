"""A damaged results directory heals: each unreadable file is reported in one line, moved aside and
recomputed; finished runs elsewhere are untouched; the report leaves unreadable runs out and names them."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from bench.cli import main
from bench.engine.layout import RESULTS_CSV
from bench.engine.records import results_table
from reports.__main__ import main as report_main
from tests.conftest import CACHE_DIR, comparable, tiny_grid_args


@pytest.fixture
def damaged(tiny_results, tmp_path):
    """A copy of the tiny grid (and of its cache) with one run's result, the grid record, the reference rows
    and a cached real-data statistic damaged."""
    out, cache = tmp_path / "results", tmp_path / "cache"
    shutil.copytree(tiny_results, out)
    shutil.copytree(CACHE_DIR, cache)
    victim = next(out.glob("runs/*-w16-none-*"))
    text = (victim / "result.json").read_text()
    (victim / "result.json").write_text(text[: len(text) // 2])
    (out / "grid.json").write_text('{"schema_')
    (out / "references.csv").write_text("\x00\x01garbage,,\n\n\x02")
    stat = next((cache / "fidelity").glob("lenet-digits-*-stat-fid-features.pt"))
    stat.write_bytes(stat.read_bytes()[:50])
    return out, cache, victim


def test_a_damaged_results_directory_is_healed_and_only_the_damage_redone(damaged, tiny_results, capsys):
    out, cache, victim = damaged
    untouched = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json") if p.parent != victim}
    with pytest.warns(RuntimeWarning) as caught:
        assert main([*tiny_grid_args(out), "--cache-dir", str(cache)]) == 0
    messages = [str(w.message) for w in caught if "is unreadable" in str(w.message)]
    for name in ("result.json", "grid.json", "references.csv", "stat-fid-features.pt"):
        assert sum(f"{name} is unreadable" in m for m in messages) == 1, name
    assert all("\n" not in m and m.endswith("and recomputed") for m in messages)
    assert "Traceback" not in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # finished runs elsewhere untouched
    assert len(list(victim.glob("result.json.unreadable-*"))) == 1  # moved aside, never deleted
    assert len(list(out.glob("grid.json.unreadable-*"))) == len(list(out.glob("references.csv.unreadable-*"))) == 1
    assert len(list((cache / "fidelity").glob("*.unreadable-*"))) == 1
    pd.testing.assert_frame_equal(comparable(results_table(tiny_results)), comparable(results_table(out)))
    references = pd.read_csv(out / "references.csv")
    assert list(references["reference"]) == ["real-test", "untrained"]


def test_the_report_leaves_out_and_names_unreadable_runs(tiny_results, tmp_path, capsys):
    out = tmp_path / "results"
    shutil.copytree(tiny_results, out)
    victim = next(out.glob("runs/*-w32-pixel-l1-*"))
    (victim / "result.json").write_text("{")
    assert report_main([str(out)]) == 0
    err = capsys.readouterr().err
    assert err.strip() == f"warning: 1 run(s) left out, their result.json unreadable: {victim.name}"
    report = (out / "report" / "report.md").read_text()
    assert f"Left out, their result.json unreadable: {victim.name}" in report
    quality = pd.read_csv(out / "report" / "tables" / "quality.csv")
    models = quality[quality["model"].isin(["teacher", "student"])]  # below the two reference rows
    assert len(models) == len(quality) - 2 == len(pd.read_csv(out / RESULTS_CSV)) - 1


@pytest.mark.parametrize("stale", ["samples", "backbone"])
def test_reference_rows_of_other_settings_are_scored_again(tiny_results, tmp_path, stale):
    """A resumed grid that scores another number of samples, or a backbone the rows lack, rewrites them; the
    finished runs stay as they are."""
    out = tmp_path / "results"
    shutil.copytree(tiny_results, out)
    path = out / "references.csv"
    fresh = pd.read_csv(path)
    if stale == "samples":
        old = fresh.assign(quality_n_fake=[10, 10], fid_lenet=[1.0, 2.0])
    else:
        old = fresh.drop(columns=[col for col in fresh if col.endswith("_resnet")])
    old.to_csv(path, index=False)
    runs = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    assert main(tiny_grid_args(out)) == 0
    rewritten = pd.read_csv(path)
    pd.testing.assert_frame_equal(rewritten, fresh)  # the same rows as scored the first time
    assert not list(out.glob("references.csv.unreadable-*"))  # out of date, not damaged
    assert {p: p.stat().st_mtime_ns for p in runs} == runs
