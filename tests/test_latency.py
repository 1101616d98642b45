"""Tests of bench/latency/: backends, interleaved rounds, statistics, latency.csv and ``python -m bench.latency``.

Budgets are tiny (a few rounds of a few calls); one tiny DCGAN goes through every backend that runs on the CPU
(``torch.compile`` and the ONNX export are the slow part: a few seconds each).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from bench.base.errors import UserError
from bench.engine.checkpoints import safe_torch_load
from bench.latency import (
    BACKENDS,
    LATENCY_CSV,
    Backend,
    LatencyRow,
    backends,
    interleave,
    rounds,
    time_models,
    write_latency_csv,
)
from bench.latency import onnxruntime as ort_backend
from bench.latency.cli import main
from bench.latency.rounds import LATENCY_COLUMNS, summarize
from bench.latency.saved import data_shape, saved_generators
from bench.latency.settings import SpeedSpec
from bench.metrics.measure import generator_inputs
from data import DataShape
from gans import build

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
# a budget that times in well under a second per cell
TINY = SpeedSpec(
    batches=(1, 3), rounds=3, calls_per_round=4, min_calls_per_round=2, seconds_per_cell=0.02, warmup_calls=2
)


def tiny_generator(width: int = 16):
    """A tiny DCGAN whose images use [-1, 1] as a trained one's do: fresh DCGAN weights with batch-norm statistics
    of 1 make images within 1e-4 of 0, where any backend would pass a tolerance of 1e-4."""
    torch.manual_seed(0)
    generator, _ = build("dcgan", width)
    for module in generator.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # the statistics of the one batch below
    with torch.no_grad():
        generator.train()(*generator_inputs(generator, 64, CPU))
        generator.to_image.weight.mul_(20.0)
    return generator.eval()


def fake_backend(monkeypatch, name: str, prepare, devices=("cpu",)) -> None:
    """Register ``name`` for this test only."""
    monkeypatch.setitem(BACKENDS._entries, name, Backend(name=name, devices=devices, prepare=prepare))


# --- scheduling and statistics ---------------------------------------------------------------------------


def test_rounds_interleave_the_models_a_b_c_a_b_c():
    order = interleave(["A", "B", "C"], 3)
    assert "".join(key for _, key in order) == "ABCABCABC"
    assert [r for r, _ in order] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_summary_percentiles_and_noise_by_hand():
    stats = summarize([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])  # seconds
    # sorted ms: 1000 1000 2000 2000 3000 3000; p90 at rank 4.5 and p99 at 4.95 both lie between the 3000s
    assert (stats.calls, stats.p50_ms, stats.p90_ms, stats.p99_ms) == (6, 2000.0, 3000.0, 3000.0)
    assert stats.mean_ms == 2000.0 and stats.noise == 0.0  # both rounds have the median 2 s
    spread = summarize([[1.0], [2.0], [3.0], [4.0]])  # round medians 1..4: IQR 3.25 - 1.75 over median 2.5
    assert spread.noise == pytest.approx(1.5 / 2.5)
    assert spread.p99_ms == pytest.approx(3970.0)


@pytest.mark.parametrize(
    "change",
    [
        {"rounds": 1},
        {"batches": (0,)},
        {"batches": (1, 1)},
        {"batches": ()},
        {"batches": (1.5,)},
        {"noise_threshold": math.nan},
        {"noise_threshold": -0.1},
        {"atol": 0.0},
        {"seconds_per_cell": math.inf},
        {"min_calls_per_round": 100},
        {"devices": ("tpu",)},
        {"backends": ("eager", "no-such-backend")},
        {"backends": ()},
        {"backends": ("eager", "eager")},
    ],
)
def test_bad_settings_are_one_line_user_errors(change):
    with pytest.raises(UserError) as info:
        replace(TINY, **change)
    assert "\n" not in str(info.value)


# --- every backend on a tiny model -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_rows() -> list[LatencyRow]:
    return time_models({"tiny": tiny_generator()}, TINY)


def _rows(rows, **where):
    return [r for r in rows if all(getattr(r, k) == v for k, v in where.items())]


@pytest.mark.parametrize("name", backends())
def test_every_backend_has_its_rows_for_a_tiny_model(tiny_rows, name):
    backend = BACKENDS[name]
    if "cpu" not in backend.devices:  # asked for on the CPU explicitly, it says why it did not run
        rows = time_models({"tiny": tiny_generator()}, replace(TINY, backends=(name,)))
        assert [(r.batch, r.status) for r in rows] == [(1, "skipped"), (3, "skipped")]
        assert "cuda" in rows[0].error and math.isnan(rows[0].p50_ms)
        return
    rows = _rows(tiny_rows, backend=name)
    if name == "compile" and torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        # torch 2.14's Inductor emits at::vec code that does not build under ATEN_CPU_CAPABILITY=default: the
        # backend's rows say so in one line and the timing goes on
        assert {(r.status, r.error.split(":")[0]) for r in rows} == {("failed", "prepare")}
        assert all("BackendCompilerFailed" in r.error and "\n" not in r.error for r in rows)
        return
    assert [(r.run_id, r.device, r.batch, r.status, r.error) for r in rows] == [
        ("tiny", "cpu", 1, "ok", ""),
        ("tiny", "cpu", 3, "ok", ""),
    ]
    for row in rows:
        assert 0 < row.p50_ms <= row.p90_ms <= row.p99_ms
        assert row.mean_ms > 0 and math.isfinite(row.noise) and row.noise >= 0
        assert TINY.rounds * TINY.min_calls_per_round <= row.calls <= TINY.rounds * TINY.calls_per_round
        assert row.throughput_ips == pytest.approx(row.batch / (row.p50_ms / 1e3))
        assert row.threads == torch.get_num_threads()
        assert row.max_abs_err <= TINY.atol
        assert row.noisy == (row.noise > TINY.noise_threshold)


def test_the_default_backends_are_those_that_run_on_the_device(tiny_rows):
    on_cpu = [name for name in backends() if "cpu" in BACKENDS[name].devices]
    assert list(dict.fromkeys(r.backend for r in tiny_rows)) == on_cpu
    assert {"eager", "compile", "onnxruntime"} <= set(on_cpu)


def test_onnx_export_round_trip_matches_pytorch_within_the_tolerance():
    generator = tiny_generator(24)
    session = ort_backend.session(ort_backend.export_onnx(generator))
    for batch in (1, 2, 7):  # 7: the batch dimension is dynamic, not fixed at the export's batch 2
        z, labels = generator_inputs(generator, batch, CPU)
        with torch.inference_mode():
            expected = generator(z, labels)
        got = torch.from_numpy(session.run(None, {"z": z.numpy(), "labels": labels.numpy()})[0])
        assert got.shape == expected.shape == (batch, 1, 28, 28)
        assert expected.abs().max() > 0.5  # images that use the range, so that the comparison means something
        assert (got - expected).abs().max().item() <= SpeedSpec().atol


# --- failures are recorded, not fatal --------------------------------------------------------------------


def test_a_failing_backend_is_recorded_and_the_others_still_time(monkeypatch):
    def broken(model, inputs):
        raise RuntimeError("no kernel for ConvTranspose2d here\nsecond line")

    def wrong(model, inputs):
        return lambda z, labels: model(z, labels) + 1e-2

    calls = {"n": 0}

    def dies_later(model, inputs):
        def fn(z, labels):
            calls["n"] += 1
            if calls["n"] > 4:  # verification and warm-up pass, a timed round does not
                raise MemoryError("out of memory")
            return model(z, labels)

        return fn

    for name, prepare in (("broken", broken), ("wrong", wrong), ("dies-later", dies_later)):
        fake_backend(monkeypatch, name, prepare)
    settings = replace(TINY, backends=("broken", "eager", "wrong", "dies-later"), batches=(2,))
    rows = {r.backend: r for r in time_models({"tiny": tiny_generator()}, settings)}
    assert rows["broken"].status == "failed"
    assert rows["broken"].error == "prepare: RuntimeError: no kernel for ConvTranspose2d here"
    assert rows["wrong"].status == "mismatch" and rows["wrong"].max_abs_err == pytest.approx(1e-2)
    assert "exceeds the tolerance 0.0001" in rows["wrong"].error
    assert rows["dies-later"].status == "failed" and rows["dies-later"].error == "call: MemoryError: out of memory"
    for failed in ("broken", "wrong", "dies-later"):
        assert math.isnan(rows[failed].p50_ms) and rows[failed].calls == 0
    assert rows["eager"].status == "ok" and rows["eager"].p50_ms > 0


def test_models_are_timed_in_interleaved_rounds_and_noisy_ones_re_timed(monkeypatch):
    """A fake backend on a fake clock: 'steady' calls last 1 ms; 'jumpy' calls 1 ms or 4 ms, alternately by round."""
    now, log = [0.0], []
    monkeypatch.setattr(rounds, "_clock", lambda: now[0])

    def on_the_fake_clock(model, inputs):
        jumpy, calls = model.width == 24, [0]

        def fn(z, labels):
            log.append("J" if jumpy else "S")
            calls[0] += 1
            now[0] += 0.004 if jumpy and (calls[0] // 2) % 2 else 0.001
            return model(z, labels)

        return fn

    fake_backend(monkeypatch, "fake-clock", on_the_fake_clock)
    settings = replace(
        TINY, backends=("fake-clock",), batches=(1,), rounds=4, calls_per_round=2, warmup_calls=2, noise_threshold=0.5
    )
    rows = {r.run_id: r for r in time_models({"steady": tiny_generator(16), "jumpy": tiny_generator(24)}, settings)}
    # one verifying call each, 2 warm-up calls each, then 4 rounds of 2 calls each: S S J J S S J J ...
    assert "".join(log[:6]) == "SJSSJJ"
    timed = "".join(log[6:])
    assert timed[:16] == "SSJJ" * 4
    assert timed[16:] == "JJ" * 4 * 2  # only the noisy model is re-timed, twice, and stays noisy
    steady, jumpy = rows["steady"], rows["jumpy"]
    assert (steady.retimed, steady.noisy, steady.calls) == (0, False, 8) and steady.noise == pytest.approx(0, abs=1e-9)
    assert (steady.p50_ms, steady.p99_ms) == pytest.approx((1.0, 1.0))
    # per-round medians 1, 4, 1, 4 ms: IQR (4 - 1) over the median 2.5
    assert (jumpy.retimed, jumpy.noisy, jumpy.calls) == (2, True, 8)
    assert jumpy.noise == pytest.approx(1.2)
    assert (jumpy.p50_ms, jumpy.p90_ms, jumpy.mean_ms) == pytest.approx((2.5, 4.0, 2.5))


def test_a_round_goes_by_batch_then_backend_then_model(monkeypatch):
    now, log = [0.0], []
    monkeypatch.setattr(rounds, "_clock", lambda: now[0])

    def logging_backend(name):
        def prepare(model, inputs):
            def fn(z, labels):
                log.append(f"{name}{'AB'[model.width == 24]}{len(z)}")
                now[0] += 0.001
                return model(z, labels)

            return fn

        return prepare

    for name in ("x", "y"):
        fake_backend(monkeypatch, name, logging_backend(name))
    settings = replace(TINY, backends=("x", "y"), batches=(1, 2), rounds=2, calls_per_round=1, min_calls_per_round=1)
    rows = time_models({"A": tiny_generator(16), "B": tiny_generator(24)}, settings)
    one_round = ["xA1", "xB1", "yA1", "yB1", "xA2", "xB2", "yA2", "yB2"]
    assert log[-16:] == one_round * 2
    # the rows stay in the models' order: model, backend, batch
    assert [(r.run_id, r.backend, r.batch) for r in rows][:4] == [
        ("A", "x", 1),
        ("A", "x", 2),
        ("A", "y", 1),
        ("A", "y", 2),
    ]


# --- latency.csv -----------------------------------------------------------------------------------------


def test_latency_csv_has_one_row_per_measurement_and_the_row_fields_as_columns(tiny_rows, tmp_path):
    path = write_latency_csv(tiny_rows, tmp_path)
    assert path == tmp_path / LATENCY_CSV
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        table = list(reader)
    assert tuple(reader.fieldnames) == LATENCY_COLUMNS
    assert LATENCY_COLUMNS[:5] == ("run_id", "backend", "device", "device_name", "batch")
    assert {"p50_ms", "p90_ms", "p99_ms", "throughput_ips", "noise", "retimed", "status", "error"} <= set(
        LATENCY_COLUMNS
    )
    # the machine's load beside every timing: other processes' busy cores (measured from /proc) and the flag
    assert {"other_load", "loaded"} <= set(LATENCY_COLUMNS)
    timed = [row for row in tiny_rows if row.status == "ok"]
    assert timed and all(row.other_load >= 0 and isinstance(row.loaded, bool) for row in timed)
    assert len(table) == len(tiny_rows)
    assert [float(row["p50_ms"]) for row in table] == pytest.approx([r.p50_ms for r in tiny_rows], nan_ok=True)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temp file left


# --- re-timing a results directory -----------------------------------------------------------------------


def test_the_image_shape_is_read_from_grid_json_when_recorded(tiny_results):
    grid = {"dataset": "mnist", "image_shape": [1, 28, 28], "num_classes": 10, "data_root": "/nowhere"}
    assert data_shape(grid, None) == DataShape((1, 28, 28), 10)  # MNIST is not under /nowhere: not loaded
    recorded = json.loads((tiny_results / "grid.json").read_text())
    assert data_shape(recorded, None) == DataShape((1, 28, 28), 10)  # what a grid writes
    assert data_shape({"dataset": "digits"}, None) == DataShape((1, 28, 28), 10)  # an older grid.json: loaded


def test_saved_generators_are_the_finished_runs_with_their_weights(tiny_results):
    models = saved_generators(tiny_results)
    run_ids = sorted(p.name for p in (tiny_results / "runs").iterdir() if (p / "result.json").is_file())
    assert sorted(models) == run_ids and len(run_ids) == 5  # teacher 64, students 16 and 32, scratch and KD
    run_id = next(r for r in run_ids if "-w32-" in r)
    saved = safe_torch_load(tiny_results / "runs" / run_id / "generator.pt")
    for key, value in models[run_id].state_dict().items():
        assert torch.equal(value, saved[key])
    assert models[run_id].width == 32 and not models[run_id].training


def test_the_cli_re_times_a_results_directory_into_latency_csv(tiny_results, tmp_path, capsys):
    run_dir = tmp_path / "results"
    shutil.copytree(tiny_results, run_dir)
    argv = [str(run_dir), "--backends", "eager", "--batches", "1,2", "--rounds", "2", "--calls-per-round", "2"]
    assert main([*argv, "--seconds-per-cell", "0.01", "--device", "cpu", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    path = run_dir / LATENCY_CSV
    assert f"latency: {path}" in out and "| run_id" in out  # the table of medians, then the path
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        table = list(reader)
    assert tuple(reader.fieldnames) == LATENCY_COLUMNS
    # the re-timing adds or replaces the cells it measures and keeps the others: 5 generators x eager x batches
    # 1 and 2 measured now, the grid's eager batch-4 cells kept as they were
    before = pd.read_csv(tiny_results / LATENCY_CSV)
    assert len(table) == 5 * 3 and sorted({int(row["batch"]) for row in table}) == [1, 2, 4]
    measured = [row for row in table if row["batch"] != "4"]
    assert {(row["backend"], row["device"], row["status"], row["threads"]) for row in measured} == {
        ("eager", "cpu", "ok", "1")
    }
    kept = pd.DataFrame([row for row in table if row["batch"] == "4"])
    expected = before[before["batch"] == 4]
    assert sorted(kept["p50_ms"].astype(float)) == pytest.approx(sorted(expected["p50_ms"]))
    assert all(float(row["p50_ms"]) <= float(row["p99_ms"]) for row in measured)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}"], "does not exist"),
        (["{empty}"], "no finished run"),
        (["{results}", "--backends", "eager,tensorrt"], "unknown latency backend 'tensorrt'"),
        (["{results}", "--backends", ","], "--backends is empty"),
        (["{results}", "--batches", "1,x"], "'x' is not an integer"),
        (["{results}", "--batches", "nan"], "'nan' is not an integer"),
        (["{results}", "--batches", "1,0"], "batch size must be an integer in 1..65536, got 0"),
        (["{results}", "--batches", "-4"], "got -4"),
        (["{results}", "--batches", "16,16"], "distinct"),
        (["{results}", "--rounds", "0"], "rounds must be an integer >= 2"),
        (["{results}", "--rounds", "nan"], "invalid int value"),
        (["{results}", "--noise-threshold", "nan"], "noise threshold must be a positive number"),
        (["{results}", "--noise-threshold", "-1"], "noise threshold must be a positive number"),
        (["{results}", "--seconds-per-cell", "0"], "seconds per cell must be a positive number"),
        (["{results}", "--threads", "0"], "--threads must be between 1 and the"),
        (["{results}", "--device", "tpu"], "invalid choice"),
    ],
)
def test_bad_cli_input_is_one_error_line_and_exit_code_2(argv, message, tiny_results, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "results": tiny_results}
    before = (tiny_results / LATENCY_CSV).read_bytes()  # the grid's own timings: a failed start keeps them
    assert main([arg.format(**paths) for arg in argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    assert captured.out == "" and (tiny_results / LATENCY_CSV).read_bytes() == before


def test_python_m_bench_latency_exits_2_without_a_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.latency", str(tmp_path / "nothing-here")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: results directory {tmp_path / 'nothing-here'} does not exist"]


# --- CUDA, where there is a GPU --------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_every_backend_times_on_cuda():
    rows = time_models({"tiny": tiny_generator()}, replace(TINY, devices=("cuda",)))
    on_cuda = [name for name in backends() if "cuda" in BACKENDS[name].devices]
    assert list(dict.fromkeys(r.backend for r in rows)) == on_cuda and "cuda-graph" in on_cuda
    for row in rows:
        assert (row.device, row.status, row.error) == ("cuda", "ok", "")
        assert 0 < row.p50_ms <= row.p90_ms <= row.p99_ms and row.max_abs_err <= TINY.atol


def test_summary_rounds_are_concatenated_for_the_percentiles():
    rng = np.random.default_rng(0)
    rounds = [rng.uniform(1e-3, 2e-3, size=n).tolist() for n in (5, 7, 9)]
    stats = summarize(rounds)
    assert stats.calls == 21
    assert stats.p99_ms == pytest.approx(np.percentile(np.concatenate(rounds), 99) * 1e3)
