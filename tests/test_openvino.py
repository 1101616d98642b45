"""OpenVINO in the suite: the ``openvino`` latency backend and the ``openvino-int8`` quantization mode, in a grid.

One tiny grid (teacher 64, width 16 from scratch and distilled) quantized to openvino-int8 and timed behind eager
PyTorch and OpenVINO: every float model has OpenVINO rows, every openvino-int8 model is checked against its
float source, reloads from its IR and is timed by OpenVINO alone; the report answers which int8 is faster.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

import compress.openvino_int8 as openvino_int8
from bench.base.layout import LATENCY_CSV, RESULTS_CSV
from bench.cli import main
from bench.latency import time_models
from bench.latency.saved import saved_generators
from compress.openvino_int8 import IR_FILES
from compress.quantize import TOLERANCES
from reports import build_report
from tests.conftest import tiny_grid_args
from tests.test_compress import lively
from tests.test_latency import TINY

ARGS = ("--methods", "width,quantize", "--quantize", "openvino-int8", "--widths", "16",
        "--latency-backends", "eager,openvino", "--epochs", "1")  # fmt: skip


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("openvino") / "results"
    assert main(tiny_grid_args(out, *ARGS)) == 0
    return out


def test_every_model_has_openvino_rows_and_openvino_int8_ones_only_those(grid):
    frame = pd.read_csv(grid / RESULTS_CSV)
    assert len(frame) == 6 and set(frame["status"]) == {"done"}  # 3 float models, each in openvino-int8
    timed = pd.read_csv(grid / LATENCY_CSV)
    openvino = timed[timed["backend"] == "openvino"]
    assert set(openvino["run_id"]) == set(frame["run_id"]) and set(openvino["status"]) == {"ok"}
    quantized = set(frame.loc[frame["quantize"] == "openvino-int8", "run_id"])
    eager = timed[timed["backend"] == "eager"].set_index("run_id")
    assert set(eager.loc[list(quantized), "status"]) == {"skipped"}
    assert (openvino["max_abs_err"] < 1e-4).all()  # checked against eager PyTorch (or itself) before timing


def test_openvino_int8_models_are_checked_recorded_and_reload_from_their_ir(grid):
    frame = pd.read_csv(grid / RESULTS_CSV)
    quantized = frame[frame["quantize"] == "openvino-int8"]
    assert (quantized["source_mean_abs_err"] <= TOLERANCES["openvino-int8"].mean_abs).all()
    assert quantized["quant_kernels"].str.startswith("openvino:").all()
    for run_id in quantized["run_id"]:
        directory = grid / "runs" / run_id
        assert all((directory / name).stat().st_size > 0 for name in IR_FILES)
        layers = json.loads((directory / "layers.json").read_text())
        assert layers and {layer["precision"] for layer in layers} == {"int8"}
    models = saved_generators(grid)
    assert {models[run_id].quantized for run_id in quantized["run_id"]} == {"openvino-int8"}


def test_a_rerun_of_the_finished_grid_times_nothing_again(grid):
    """An openvino-int8 model's files are its IR (no generator.pt): latency.csv is current for it all the same."""
    before = (grid / LATENCY_CSV).stat().st_mtime_ns
    assert main(tiny_grid_args(grid, *ARGS)) == 0
    assert (grid / LATENCY_CSV).stat().st_mtime_ns == before


def test_the_report_says_which_int8_is_faster_and_which_only_smaller(grid):
    report = build_report(grid)
    table = pd.read_csv(report / "tables" / "deployment.csv")
    assert len(table) == 6
    verdicts = table.loc[table["quantize"] == "openvino-int8", "verdict"]
    assert verdicts.str.match(r"^(faster|only smaller) \(\d+\.\d\dx\)$").all()
    assert set(table["fast_backend_1"]) <= {"eager", "openvino"}
    assert "Deployment on this CPU" in (report / "report.md").read_text()


def test_a_broken_conversion_gives_failed_rows_and_the_timing_goes_on(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("conversion failed\nwith a second line")

    monkeypatch.setattr(openvino_int8, "convert", broken)
    rows = time_models({"tiny": lively("dcgan", 16)}, replace(TINY, backends=("openvino", "eager")))
    by_backend = {(row.backend, row.batch): row for row in rows}
    assert {by_backend[("openvino", b)].status for b in TINY.batches} == {"failed"}
    assert by_backend[("openvino", 1)].error == "prepare: RuntimeError: conversion failed"
    assert {by_backend[("eager", b)].status for b in TINY.batches} == {"ok"}


def test_openvino_fp32_matches_pytorch():
    generator = lively("dcgan", 32)
    z, labels = torch.randn(8, generator.nz), torch.arange(8) % generator.num_classes
    compiled = openvino_int8.compile_cpu(openvino_int8.convert(generator, (z, labels)))
    out = torch.from_numpy(compiled([z.numpy(), labels.numpy()])[0])
    with torch.no_grad():
        assert (out - generator(z, labels)).abs().max() < 1e-4  # fp32 arithmetic, never bf16
