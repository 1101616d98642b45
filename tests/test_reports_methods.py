"""reports/ with every compression method: width, pruning (with and without distillation) and quantization of
finished float models. Labels, the best model at each size, distillation gains paired within a method, the
Pareto figure over every model and the other figures drawn from the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imsave

from reports.document import TableBlock, outline, report_tables
from reports.load import load, method_label, series_label
from reports.plots import FIGURES, fastest_latency, pareto, short_label
from reports.tables import best_method_table, cost_table, gain_table, runs_table, size_table
from tests.test_reports import _generator_params, _state_dict_bytes

SEEDS = (1, 2)
SEED_NOISE = {1: -0.1, 2: 0.1}  # FID offsets that cancel over the two seeds: a model's mean is its FID below
# (method, importance, quantize, width, kd): mean FID over seeds; designed so that each size budget has a known
# winner and runner-up (see test_best_model_at_each_size)
MODELS = {
    ("width", "", "", 512, "none"): 5.0,
    ("width", "", "", 64, "none"): 9.0,
    ("width", "", "", 64, "pixel-l1"): 7.0,
    ("width", "", "", 32, "none"): 11.0,
    ("width", "", "", 32, "pixel-l1"): 8.5,
    ("prune", "bn", "", 64, "none"): 8.0,
    ("prune", "bn", "", 64, "pixel-l1"): 6.5,
    ("prune", "bn", "", 32, "none"): 10.0,
    ("prune", "bn", "", 32, "pixel-l1"): 8.0,
    ("width", "", "int8", 64, "none"): 9.4,
    ("width", "", "int8", 64, "pixel-l1"): 7.3,
    ("width", "", "fp16", 64, "pixel-l1"): 7.05,
    ("prune", "bn", "int8", 32, "pixel-l1"): 8.4,
}
PRUNED_EXTRA_BYTES = 40  # a pruned checkpoint's container differs by a few bytes from the width model's
QUANTIZED = {"fp16": (2, 500), "int8": (4, 2_000)}  # fp32 bytes / divisor + header bytes
QUANTIZED_SPEED = {"": 1.0, "fp16": 1.3, "int8": 0.7}  # eager CPU latency against the float model's


def _run_id(method: str, importance: str, quantize: str, width: int, kd: str, seed: int) -> str:
    return f"digits-{method}{importance}{quantize}-w{width}-{kd}-s{seed}"


def _row(key: tuple, fid: float, seed: int) -> dict:
    method, importance, quantize, width, kd = key
    params, bn = _generator_params(width)
    fp32 = _state_dict_bytes(params, bn) + (PRUNED_EXTRA_BYTES if method == "prune" else 0)
    divisor, header = QUANTIZED.get(quantize, (1, 0))
    teacher = _run_id("width", "", "", 512, "none", seed)
    source = _run_id(method, importance, "", width, kd, seed) if quantize else teacher if method == "prune" else ""
    return {
        "run_id": _run_id(*key, seed),
        "role": "teacher" if key == ("width", "", "", 512, "none") else "student",
        "dataset": "digits",
        "width": width,
        "kd": kd,
        "seed": seed,
        "status": "done",
        "method": method,
        "prune_importance": importance,
        "finetune_epochs": 2 if method == "prune" else 0,
        "quantize": quantize,
        "source_run": source,
        "g_params": params,
        "g_bytes_fp32": fp32,
        "g_bytes_stored": fp32 // divisor + header,
        "g_macs": params * 30,
        "latency_ms_cpu": (0.05 + params / 4e6) * QUANTIZED_SPEED[quantize],
        "fid_lenet": fid + SEED_NOISE[seed],
        "is_lenet": 9.5 - fid / 10,
    }


@pytest.fixture(scope="module")
def methods_dir(tmp_path_factory) -> Path:
    """A results directory with every method: 2 seeds; a width-512 teacher; widths 64 and 32 trained at that
    width and pruned (bn) from the teacher, each from scratch and distilled (pixel-l1); the int8 and fp16 forms of
    some of them. Latency: eager for every model, onnxruntime (2x faster) for float models only."""
    root = tmp_path_factory.mktemp("methods")
    runs = pd.DataFrame([_row(key, fid, seed) for seed in SEEDS for key, fid in MODELS.items()])
    teacher = runs[runs["role"] == "teacher"].set_index("seed")
    for column, ratio in {"g_params": "ratio_params", "g_bytes_fp32": "ratio_bytes",
                          "g_bytes_stored": "ratio_stored"}.items():  # fmt: skip
        runs[ratio] = runs["seed"].map(teacher[column]) / runs[column]
    runs.to_csv(root / "results.csv", index=False)
    latency = [
        {"run_id": row.run_id, "backend": backend, "device": "cpu", "batch": batch,
         "status": "skipped" if row.quantize and backend != "eager" else "ok",
         "p50_ms": row.latency_ms_cpu * batch / speed, "throughput_ips": 1e3 * speed / row.latency_ms_cpu}
        for row in runs.itertuples() for backend, speed in (("eager", 1.0), ("onnxruntime", 2.0)) for batch in (1, 16)
    ]  # fmt: skip
    pd.DataFrame(latency).to_csv(root / "latency.csv", index=False)
    rng = np.random.default_rng(0)
    for row in runs.itertuples():  # every run has its record (the report leaves out those whose record is gone)
        (root / "runs" / row.run_id).mkdir(parents=True)
        (root / "runs" / row.run_id / "result.json").write_text(json.dumps({"run_id": row.run_id}))
    for row in runs[runs["seed"] == SEEDS[0]].itertuples():  # samples and a short loss curve for one seed
        run = root / "runs" / row.run_id
        imsave(run / "samples.png", rng.uniform(-1, 1, (28, 10 * 28)), cmap="gray", vmin=-1, vmax=1)
        if not row.quantize:  # a quantized model is not trained
            steps = np.arange(0, 50, 10)
            kd = 0.0 if row.kd == "none" else 0.2
            losses = {"step": steps, "loss_d": 1.0, "loss_g_gan": 1.5 - steps / 100, "loss_kd": kd}
            pd.DataFrame(losses).to_csv(run / "losses.csv", index=False)
    grid = {"preset": "methods", "dataset": "digits", "widths": [32, 64, 512], "kd": ["none", "pixel-l1"]}
    (root / "grid.json").write_text(json.dumps(grid))
    return root


@pytest.fixture(scope="module")
def results(methods_dir: Path):
    return load(methods_dir)


def test_labels_name_method_objective_and_quantization(results):
    assert method_label("width") == "width"
    assert method_label("prune", "bn") == "prune (bn)"
    assert method_label("prune", "l1", "int8") == "prune (l1) + int8"
    assert series_label("width", "", "", "none") == "width · scratch"
    assert series_label("prune", "bn", "", "pixel-l1") == "prune (bn) · pixel-l1"
    assert series_label("width", "", "int8", "pixel-l1") == "width · pixel-l1 + int8"
    assert short_label("width", 64, "int8") == "w64 int8" and short_label("prune", 32, "") == "p32"
    assert short_label("online", 32, "") == "on32" and short_label("once-for-all", 128, "") == "ofa128"
    assert short_label("toy", 16, "int8") == "toy 16 int8"  # a method without a prefix: written out
    runs = results.runs.set_index("run_id")
    quantized = runs.loc[_run_id("prune", "bn", "int8", 32, "pixel-l1", 1)]
    assert (quantized["method_label"], quantized["series"]) == ("prune (bn) + int8", "prune (bn) · pixel-l1 + int8")
    assert quantized["source_run"] == _run_id("prune", "bn", "", 32, "pixel-l1", 1)
    assert runs.loc[_run_id("width", "", "", 512, "none", 2), "series"] == "width · scratch"


def test_best_model_at_each_size(results):
    table = best_method_table(results)
    data = table.data.set_index("budget_width")
    assert list(data.index) == [512, 64, 32]  # one budget per width, widest first
    w32_bytes = _state_dict_bytes(*_generator_params(32))
    assert data.loc[32, "budget_kib"] == pytest.approx(w32_bytes / 1024)
    # the int8 form of the width-64 distilled model is smaller than the width-32 generator and draws better
    assert data.loc[32, ["series", "width", "fid_lenet_mean"]].tolist() == ["width · pixel-l1 + int8", 64, 7.3]
    assert data.loc[32, "g_stored_kib_mean"] == pytest.approx(
        (_state_dict_bytes(*_generator_params(64)) // 4 + 2_000) / 1024
    )
    # runner-up: the best of another method; the pruned model 40 bytes over the budget still fits it
    assert data.loc[32, ["runner_up_series", "runner_up_width"]].tolist() == ["prune (bn) · pixel-l1", 32]
    assert data.loc[32, "runner_up_fid_lenet_mean"] == pytest.approx(8.0)
    assert data.loc[32, "fid_margin"] == pytest.approx(0.7)
    assert data.loc[64, ["series", "runner_up_series"]].tolist() == ["prune (bn) · pixel-l1", "width · pixel-l1"]
    assert data.loc[512, ["series", "runner_up_series", "runner_up_width"]].tolist() == [
        "width · scratch", "prune (bn) · pixel-l1", 64]  # fmt: skip
    shown = table.display.set_index("budget: width")
    assert shown.loc["32", "best model"] == "width · pixel-l1 + int8" and shown.loc["32", "width"] == "64"
    # two seeds 0.2 apart: the interval is t(0.975, 1) x 0.1 = 1.27
    assert shown.loc["32", "FID (LeNet)"] == "7.30 (7.20..7.40)"  # two seeds: their range
    assert shown.loc["32", "runner-up FID (LeNet)"] == "8.00 (7.90..8.10)"
    assert "stored size of the fp32 generator trained at width W" in table.caption


def test_gain_pairs_within_method_and_quantization(results):
    gain = gain_table(results).data.set_index(["method_label", "width", "kd"])
    assert gain.loc[("prune (bn)", 64, "pixel-l1"), "fid_lenet_gain_mean"] == pytest.approx(6.5 - 8.0)
    assert gain.loc[("width", 64, "pixel-l1"), "fid_lenet_gain_mean"] == pytest.approx(7.0 - 9.0)
    assert gain.loc[("width + int8", 64, "pixel-l1"), "fid_lenet_gain_mean"] == pytest.approx(7.3 - 9.4)
    fp16 = gain.loc[("width + fp16", 64, "pixel-l1")]  # no fp16 scratch model: nothing to pair with
    assert (fp16["pairs"], fp16["left_out"]) == (0, 2)
    assert gain.loc[("prune (bn)", 32, "pixel-l1"), "pairs"] == 2
    display = gain_table(results).display
    assert list(display.columns[:3]) == ["method", "width", "objective"]


def test_tables_name_every_method_in_order(results):
    cost = cost_table(results)
    at_64 = cost.display[cost.display["width"] == "64"]
    assert list(at_64["method"]) == ["width", "width", "width + fp16", "width + int8", "width + int8",
                                     "prune (bn)", "prune (bn)"]  # fmt: skip
    assert list(at_64["objective"][:2]) == ["scratch", "pixel-l1"]
    # with quantized models the stored size replaces the fp32 one on the page (the CSV keeps both)
    assert "G stored size (KiB)" in cost.display and "G fp32 size (KiB)" not in cost.display
    assert {"g_stored_kib_mean", "g_fp32_kib_mean"} <= set(cost.data.columns)
    int8 = cost.data.set_index("series").loc["width · pixel-l1 + int8"]
    assert int8["ratio_stored_mean"] == pytest.approx(
        _state_dict_bytes(*_generator_params(512)) / (_state_dict_bytes(*_generator_params(64)) // 4 + 2_000)
    )
    listed = runs_table(results)
    assert set(listed.display["method"]) == {"width", "prune (bn)", "width + int8", "width + fp16",
                                             "prune (bn) + int8"}  # fmt: skip
    assert listed.data["source_run"].str.len().gt(0).sum() == 2 * (len(MODELS) - 5)  # pruned and quantized runs


def test_size_table_adds_pruned_and_quantized_generators(results):
    table = size_table(results)
    rows = table.display.set_index("model")
    assert list(rows.index[:3]) == ["teacher (c=512)", "student (c=64)", "student (c=32)"]
    assert list(rows.index[3:]) == ["width + fp16, c=64", "width + int8, c=64", "prune (bn), c=64",
                                    "prune (bn), c=32", "prune (bn) + int8, c=32"]  # fmt: skip
    data = table.data.set_index(["method", "width"])
    teacher = _state_dict_bytes(*_generator_params(512))
    int8 = _state_dict_bytes(*_generator_params(64)) // 4 + 2_000
    assert data.loc[("width + int8", 64), "g_bytes"] == int8
    assert data.loc[("width + int8", 64), "g_compression"] == pytest.approx(teacher / int8)
    # the original's c=32 row is the model trained at width 32, not the pruned one of the same target
    assert data.loc[("width", 32), "g_bytes"] == _state_dict_bytes(*_generator_params(32))
    assert rows.loc["width + int8, c=64", "G original"] == "–"
    assert "pruned and quantized generators" in table.caption


def test_pareto_draws_every_method_on_a_log_fid_axis(results):
    figure = pareto(results)
    axes = {ax.get_title(): ax for ax in figure.axes}
    stored, latency = axes["FID against generator size as stored"], axes["FID against CPU latency"]
    for ax in (stored, latency):
        assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    # the front over all models, from the smallest: each step better in FID than the one before
    assert [text.get_text() for text in stored.texts] == ["p32 int8", "w64 int8", "w64 fp16", "w64", "p64", "w512"]
    assert "each model's fastest backend" in latency.get_xlabel()
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert {"width", "prune (bn)", "width + int8", "scratch", "pixel-l1"} <= set(legend)
    plt.close(figure)


def test_latency_is_each_models_fastest_backend(results):
    runs, labels = fastest_latency(results, results.runs)
    by_run = runs.set_index("run_id")["latency_cpu_fastest"]
    float_run, int8_run = _run_id("width", "", "", 64, "none", 1), _run_id("width", "", "int8", 64, "none", 1)
    eager = results.runs.set_index("run_id")["latency_ms_cpu"]
    assert by_run[float_run] == pytest.approx(eager[float_run] / 2)  # onnxruntime, 2x faster
    assert by_run[int8_run] == pytest.approx(eager[int8_run])  # eager: the only backend that timed it
    assert by_run.notna().all()
    assert list(labels) == ["latency_cpu_fastest"]


@pytest.mark.parametrize("name", [name for name in FIGURES if name != "pareto"])
def test_other_figures_draw_every_method(results, name: str):
    figure = FIGURES[name](results)
    assert figure is not None
    text = {t.get_text() for ax in figure.axes for t in [ax.yaxis.label, ax.title, *ax.texts]}
    text |= {t.get_text() for legend in figure.legends for t in legend.get_texts()}
    if name == "samples":  # a row per width and method: the pruned and the quantized models keep their own
        assert {"width 64\nwidth + int8", "width 32\nprune (bn)", "width 512\nwidth\n(teacher)"} <= text
    elif name == "quality_vs_compression":
        assert any("stored bytes" in ax.get_xlabel() for ax in figure.axes)  # int8 keeps its source's parameters
        assert {"width + int8", "prune (bn)"} <= text
    elif name == "training_curves":  # a colour per method and objective, a line style per objective
        assert {"prune (bn) · pixel-l1", "width · scratch", "scratch", "pixel-l1"} <= text
    else:  # a colour per method, a marker per objective
        assert {"prune (bn)", "width", "scratch", "pixel-l1"} <= text
    plt.close(figure)


def test_best_by_size_follows_the_main_figure(results):
    blocks = outline(results, {table.name: table for table in report_tables(results)}, {})
    names = [getattr(block, "alt", None) or getattr(getattr(block, "table", None), "name", None) for block in blocks]
    pareto_at = next(i for i, block in enumerate(blocks) if getattr(block, "alt", "").startswith("Pareto"))
    assert isinstance(blocks[pareto_at + 2], TableBlock) and blocks[pareto_at + 2].table.name == "best-by-size"
    assert names.index("best-by-size") < names.index("cost")
    assert "methods width, width + fp16, width + int8, prune (bn), prune (bn) + int8" in blocks[0].text
