"""compress/fidelity.py in a grid: a derived model that does not compute what its source does is a ``mismatch``.

The fault is injected (a quantizer that quantizes a sign-flipped copy of its generator), so the check is tested on
every machine, not only on the CPUs whose int8 kernels are wrong.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

from bench.base.layout import GRID_FILE, RESULT_FILE, RESULTS_CSV, RUNS_DIR, SOURCE_CHECKED, STATUS_MISMATCH
from bench.cli import main
from bench.engine.methods import Method
from bench.engine.records import UnreadableRecordError, read_record, run_dir, write_record
from compress import int8_kernels
from compress import quantize as quantization
from compress.fidelity import SourceCheck, Tolerance, check_against_source
from reports import build_report
from reports.load import load
from reports.tables import best_method_table, gain_table
from reports.verdicts import iso_quality_table
from tests.conftest import tiny_grid_args
from tests.test_compress import lively

QUANTIZED = ("--methods", "width,quantize", "--quantize", "int8")


def _sign_flipped_quantizer(monkeypatch) -> None:
    """``compress.quantize.quantize`` made wrong: it quantizes a copy of the generator with every weight negated."""
    real = quantization.quantize

    def wrong(generator, mode, *args, **kwargs):
        flipped = copy.deepcopy(generator)
        with torch.no_grad():
            for weight in flipped.parameters():
                weight.neg_()
        return real(flipped, mode, *args, **kwargs)

    monkeypatch.setattr(quantization, "quantize", wrong)


@pytest.fixture(scope="module")
def faulty_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("fidelity") / "results"
    with pytest.MonkeyPatch.context() as patch:
        _sign_flipped_quantizer(patch)
        assert main(tiny_grid_args(out, *QUANTIZED)) == 0
    return out


def test_a_wrong_derived_model_is_a_mismatch_with_its_errors_and_no_scores(faulty_grid):
    frame = pd.read_csv(faulty_grid / RESULTS_CSV)
    derived, floats = frame[frame["quantize"].notna()], frame[frame["quantize"].isna()]
    assert len(derived) == len(floats) == 5 and set(floats["status"]) == {"done"}
    assert set(derived["status"]) == {STATUS_MISMATCH}
    assert (derived[SOURCE_CHECKED] > quantization.TOLERANCES["int8"].mean_abs).all()
    assert (derived["source_max_abs_err"] >= derived[SOURCE_CHECKED]).all()
    assert derived["mismatch_reason"].str.contains("differs from its float source").all()
    assert derived["fid_lenet"].isna().all()  # never scored: a wrong model's FID is not a result


def test_a_mismatch_is_left_out_of_every_verdict_and_named_on_the_first_screen(faulty_grid):
    results = load(faulty_grid)
    for table in (best_method_table(results), iso_quality_table(results)):
        assert not table.data["method_label"].astype(str).str.contains("int8").any(), table.name
    gain = gain_table(results).data.set_index("method_label")  # listed with every run left out, no difference
    assert (gain.loc["width + int8", "pairs"] == 0).all() and (gain.loc["width + int8", "left_out"] == 1).all()
    assert gain.loc["width + int8"].filter(like="_gain_mean").isna().all().all()
    report = (build_report(faulty_grid) / "report.md").read_text()
    first_screen = report.split("## ")[0]
    assert "Mismatch: 5 derived model(s) left out" in first_screen
    assert "width · scratch + int8, width 64, seed 1314" in first_screen


def test_a_mismatch_is_finished_and_a_resumed_grid_leaves_it(faulty_grid):
    before = {p: p.stat().st_mtime_ns for p in (faulty_grid / RUNS_DIR).glob(f"*/{RESULT_FILE}")}
    assert main(tiny_grid_args(faulty_grid, *QUANTIZED)) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (faulty_grid / RUNS_DIR).glob(f"*/{RESULT_FILE}")}


def test_a_quantizer_that_cannot_run_correctly_here_gives_a_mismatch_with_its_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(int8_kernels, "probe_error", lambda kind, engine: 1.4)  # no engine right on this "CPU"
    out = tmp_path / "results"
    assert main(tiny_grid_args(out, *QUANTIZED, "--widths", "16")) == 0
    frame = pd.read_csv(out / RESULTS_CSV)
    derived = frame[frame["quantize"].notna()]
    assert set(derived["status"]) == {STATUS_MISMATCH}
    assert derived["mismatch_reason"].str.startswith("no int8 engine computes ConvTranspose2d correctly").all()


def test_a_derived_record_made_before_the_check_is_unfinished(faulty_grid):
    path = next((faulty_grid / RUNS_DIR).glob(f"*-int8-*/{RESULT_FILE}"))
    record = read_record(path)
    metrics = {key: value for key, value in record.metrics.items() if key != SOURCE_CHECKED}
    old = replace(record, status="done", metrics=metrics)
    copy_dir = faulty_grid.parent / "old"
    write_record(copy_dir, old)
    with pytest.raises(UnreadableRecordError, match="never checked against its float source"):
        read_record(run_dir(copy_dir, old.spec) / RESULT_FILE)
    write_record(copy_dir, replace(old, status=STATUS_MISMATCH))  # any other status holds no scores: kept
    assert read_record(run_dir(copy_dir, old.spec) / RESULT_FILE).status == STATUS_MISMATCH


def test_grid_json_records_the_cpu_kind_and_the_report_names_it(faulty_grid):
    grid = json.loads((faulty_grid / GRID_FILE).read_text())
    assert set(grid["cpu"]) == {"model", "isa", "aten_capability", "quantized_engine"}
    assert grid["cpu"]["aten_capability"] == torch.backends.cpu.get_cpu_capability()
    assert len(grid["cpu_kinds"]) == 1
    report = (faulty_grid / "report" / "report.md").read_text()
    assert f"ATen {grid['cpu']['aten_capability']}" in report.split("## ")[0]


def test_a_grid_resumed_on_another_cpu_kind_says_so_in_one_warning(faulty_grid, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    grid = json.loads((faulty_grid / GRID_FILE).read_text())
    other = {**grid["cpu"], "isa": ["AVX2"], "aten_capability": "AVX2"}
    (out / GRID_FILE).write_text(json.dumps({**grid, "cpu": other, "cpu_kinds": ["another CPU"]}))
    with pytest.warns(RuntimeWarning) as caught:
        assert main(tiny_grid_args(out, "--widths", "16", "--kd", "none", "--teacher-width", "16")) == 0
    warned = [str(w.message) for w in caught if "another CPU kind" in str(w.message)]
    assert len(warned) == 1 and "ATen AVX2" in warned[0] and "\n" not in warned[0]
    assert len(json.loads((out / GRID_FILE).read_text())["cpu_kinds"]) == 2


def test_the_check_compares_on_fixed_inputs_and_catches_nan_and_wrong_shapes():
    generator = lively("dcgan", 32)
    tolerance = Tolerance(0.01, 0.1)
    same = check_against_source(copy.deepcopy(generator), generator, tolerance)
    assert same.ok and same.mean_abs_err == same.max_abs_err == 0.0 and same.reason == ""
    assert check_against_source(copy.deepcopy(generator), generator, tolerance) == same  # fixed inputs
    broken = copy.deepcopy(generator)
    with torch.no_grad():
        next(broken.parameters()).fill_(math.nan)
    assert not check_against_source(broken, generator, tolerance).ok
    assert not SourceCheck(0.001, 0.5, tolerance).ok and SourceCheck(0.001, 0.05, tolerance).ok
    assert "0.5 at most (tolerance 0.1)" in SourceCheck(0.001, 0.5, tolerance).reason


def test_a_derived_method_must_declare_its_tolerance():
    with pytest.raises(ValueError, match="declares its tolerance"):
        Method("toy", "a derived method", lambda *a: None, lambda grid: [], ("toy",), derive=lambda *a: None)
    with pytest.raises(ValueError, match="declares its tolerance"):
        Method(
            "toy",
            "a trained method",
            lambda *a: None,
            lambda grid: [],
            ("toy",),
            start=lambda *a: None,
            tolerance=lambda spec: None,
        )
