"""A damaged results directory heals: each unreadable file is reported in one line, moved aside and
recomputed; finished runs elsewhere are untouched; the report leaves unreadable runs out and names them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.base.layout import GENERATOR_FILE, LATENCY_CSV, PRUNED_FILE, RESULT_FILE, RESULTS_CSV
from bench.cli import main
from bench.engine.records import results_table
from bench.latency.cli import main as latency_main
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


EVERY_METHOD = (
    "--methods", "width,prune,quantize", "--widths", "16", "--prune-widths", "16", "--finetune-epochs", "1",
    "--quantize", "int8", "--epochs", "1",
)  # fmt: skip


@pytest.fixture(scope="module")
def methods_results(tmp_path_factory) -> Path:
    """One finished tiny grid with every method (5 float models, each in int8), shared by the tests below."""
    out = tmp_path_factory.mktemp("methods") / "results"
    assert main(tiny_grid_args(out, *EVERY_METHOD)) == 0
    return out


def _copy(results: Path, tmp_path: Path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(results, out)
    return out


def _mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob(f"runs/*/{RESULT_FILE}")}


def test_a_finished_run_without_its_files_is_made_again_alone(methods_results, tmp_path):
    out = _copy(methods_results, tmp_path)
    width = next(out.glob("runs/*-w16-none-s*"))  # a width run: its quantized copy is made again with it
    pruned = next(out.glob("runs/*-none-prune-bn-s*"))
    int8 = next(out.glob("runs/*-pixel-l1-width-int8-*"))
    (width / GENERATOR_FILE).unlink()
    (pruned / PRUNED_FILE).write_bytes((pruned / PRUNED_FILE).read_bytes()[:100])
    (int8 / GENERATOR_FILE).unlink()
    before = _mtimes(out)
    with pytest.warns(RuntimeWarning) as caught:
        assert main(tiny_grid_args(out, *EVERY_METHOD)) == 0
    remade = {width.name, pruned.name, int8.name}
    remade |= {name for name in before if name.startswith(width.name.rsplit("-s", 1)[0] + "-width-int8-")}
    remade |= {name for name in before if name.startswith(pruned.name.rsplit("-s", 1)[0] + "-int8-")}
    lines = [str(w.message) for w in caught if "made again" in str(w.message)]
    assert len(lines) == len(remade) == 5 and all("\n" not in line for line in lines)
    # the width run and the int8 run: their own generator.pt; the int8 copies of the width and pruned runs: their
    # source's files
    assert sum(": generator.pt missing or truncated" in line for line in lines) == 2
    assert sum(": pruned.pt missing or truncated" in line for line in lines) == 1
    assert sum("its source's generator.pt missing" in line for line in lines) == 1
    assert sum("its source's pruned.pt missing" in line for line in lines) == 1
    after = _mtimes(out)
    assert {name for name in before if after[name] != before[name]} == remade  # only those made again
    assert (pruned / PRUNED_FILE).stat().st_size > 100 and (width / GENERATOR_FILE).is_file()
    pd.testing.assert_frame_equal(comparable(results_table(methods_results)), comparable(results_table(out)))


def test_a_foreign_or_empty_record_and_a_results_csv_in_the_way_are_moved_aside(methods_results, tmp_path):
    out = _copy(methods_results, tmp_path)
    victim = next(out.glob("runs/*-w16-pixel-l1-s*"))
    (victim / RESULT_FILE).write_text("{}")
    (out / "runs" / "other-tool").mkdir()
    (out / "runs" / "other-tool" / RESULT_FILE).write_text('{"score": 1}')
    (out / RESULTS_CSV).unlink()
    (out / RESULTS_CSV).mkdir()
    with pytest.warns(RuntimeWarning) as caught:
        assert main(tiny_grid_args(out, *EVERY_METHOD)) == 0
    messages = [str(w.message) for w in caught]
    assert sum("not a run record of this suite" in m for m in messages) == 2
    assert any(f"{out / RESULTS_CSV} is unreadable (not a file)" in m for m in messages)
    assert (out / RESULTS_CSV).is_file() and len(pd.read_csv(out / RESULTS_CSV)) == 10


@pytest.mark.parametrize("damage", ["truncated", "empty", "other columns"])
def test_a_damaged_latency_csv_is_moved_aside_and_timed_again(methods_results, tmp_path, damage):
    out = _copy(methods_results, tmp_path)
    path = out / LATENCY_CSV
    text = {"truncated": path.read_text()[:40], "empty": "", "other columns": "a,b\n1,2\n"}[damage]
    path.write_text(text)
    with pytest.warns(RuntimeWarning, match="latency.csv is unreadable"):
        assert main(tiny_grid_args(out, *EVERY_METHOD)) == 0
    assert len(list(out.glob("latency.csv.unreadable-*"))) == 1
    assert pd.read_csv(path)["run_id"].nunique() == 10


def test_retiming_leaves_out_a_run_whose_generator_is_gone_with_one_warning(methods_results, tmp_path):
    out = _copy(methods_results, tmp_path)
    victim = next(out.glob("runs/*-w16-none-s*"))
    (victim / GENERATOR_FILE).unlink()
    args = [str(out), "--backends", "eager", "--batches", "1", "--seconds-per-cell", "0.02", "--out", str(tmp_path)]
    with pytest.warns(RuntimeWarning) as caught:
        assert latency_main(args) == 0
    lines = [str(w.message) for w in caught if "left out" in str(w.message)]
    assert f"run {victim.name}: generator.pt missing or truncated: left out" in lines[0]
    assert len(lines) == 2 and "its source's generator.pt missing" in lines[1]  # its int8 copy needs it too
    timed = pd.read_csv(tmp_path / LATENCY_CSV)
    assert victim.name not in set(timed["run_id"]) and timed["run_id"].nunique() == 8


def test_the_report_never_reports_a_run_whose_record_is_gone(tiny_results, tmp_path, capsys):
    out = _copy(tiny_results, tmp_path)
    victim = next(out.glob("runs/*-w32-none-*"))
    (victim / RESULT_FILE).unlink()
    assert report_main([str(out)]) == 0
    assert f"1 run(s) of results.csv left out, their result.json gone: {victim.name}" in capsys.readouterr().err
    assert f"their result.json gone from runs/: {victim.name}" in (out / "report" / "report.md").read_text()
    for path in out.glob(f"runs/*/{RESULT_FILE}"):
        path.unlink()
    assert report_main([str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no run whose result.json is still readable" in err
    assert report_main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: the following arguments are required")
