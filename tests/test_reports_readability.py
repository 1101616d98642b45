"""The report as a reviewer reads it: every series in a colour of its own, no label over another, a log axis where
values span a decade, every backbone's FID drawn, speeds that name their backend and batch with doubtful timings
marked, table cells short enough to read, and functions short enough to fit a screen."""

from __future__ import annotations

import ast
import itertools
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from reports.agreement import MAX_FLIPS_LISTED, agreement_table
from reports.deployment import deployment_table
from reports.load import load
from reports.metrics import on_every_backbone
from reports.plots import (
    DISTINCT_COLOURS,
    _palette,
    pareto,
    quality_vs_compression,
    speedup_vs_macs,
    training_curves,
)
from reports.tables import MAX_CELL, best_method_table, cell_lines, cost_table
from reports.timing import FLAG
from tests.test_reports import results_dir  # noqa: F401  the synthetic grid of one method
from tests.test_reports_methods import methods_dir  # noqa: F401  the synthetic grid of every method

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60


def _lab(colour) -> np.ndarray:
    """CIELAB (D65) of an sRGB colour."""
    rgb = np.array(to_rgb(colour))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    f = np.cbrt(np.maximum(xyz / np.array([0.95047, 1.0, 1.08883]), (6 / 29) ** 3))
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _closest(colours) -> float:
    """The smallest CIELAB distance (Delta E 1976) between two of ``colours``."""
    return min(np.linalg.norm(_lab(a) - _lab(b)) for a, b in itertools.combinations(colours, 2))


def test_every_method_and_quantization_gets_a_colour_of_its_own(methods_dir):  # noqa: F811
    assert _closest(DISTINCT_COLOURS) >= 30  # seaborn's colorblind orange and vermillion: 26
    quick = [
        "width",
        "width + int8",
        "width + openvino-int8",
        "prune (bn)",
        "prune (bn) + int8",
        "prune (bn) + openvino-int8",
    ]  # fmt: skip  the quick preset's methods
    assert _closest(_palette(quick).values()) >= 30
    assert len(set(_palette([f"m{i}" for i in range(14)]).values())) == 14  # beyond ten: still one each
    figure = pareto(load(methods_dir))
    legend = {
        text.get_text(): handle for text, handle in zip(figure.legends[0].texts, figure.legends[0].legend_handles)
    }
    methods = ["width", "width + fp16", "width + int8", "prune (bn)", "prune (bn) + int8"]
    assert _closest([legend[method].get_markerfacecolor() for method in methods]) >= 30  # as drawn
    plt.close(figure)


def _boxes_apart(ax) -> None:
    """No two text labels of ``ax`` overlap, and each lies inside the axes."""
    renderer = ax.figure.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    inside = ax.get_window_extent(renderer)
    assert all(inside.x0 <= box.x0 and box.x1 <= inside.x1 for box in boxes)


def test_pareto_labels_do_not_collide(methods_dir, results_dir):  # noqa: F811
    for directory in (methods_dir, results_dir):
        figure = pareto(load(directory))
        figure.canvas.draw()
        for ax in figure.axes:
            if ax.texts:
                _boxes_apart(ax)
        plt.close(figure)


def test_the_pareto_front_labels_close_points_apart(methods_dir, tmp_path):  # noqa: F811
    """Two front models a few bytes apart (p32 and w32 at nearly the same size and FID) get labels apart."""
    runs = pd.read_csv(methods_dir / "results.csv")
    runs[runs["quantize"].isna()].to_csv(tmp_path / "results.csv", index=False)  # float models only: w32 (FID
    # 8.5) and p32 (8.0, 40 bytes larger) are both on the front, a hair apart in size
    figure = pareto(load(tmp_path))
    figure.canvas.draw()
    stored = next(ax for ax in figure.axes if ax.get_title() == "FID against generator size as stored")
    assert {"w32", "p32"} <= {text.get_text() for text in stored.texts}
    _boxes_apart(stored)
    plt.close(figure)


def _spanning(results_dir: Path, directory: Path) -> Path:  # noqa: F811
    """``results_dir``'s results with its FIDs stretched over 90..1055, as the quick preset's are."""
    runs = pd.read_csv(results_dir / "results.csv")
    fid = runs["fid_lenet"]
    runs["fid_lenet"] = 90 + (fid - fid.min()) / (fid.max() - fid.min()) * 965
    runs.to_csv(directory / "results.csv", index=False)
    return directory


def _axis(figure, label: str):
    return next(ax for ax in figure.axes if ax.get_ylabel().startswith(label))


def test_a_log_axis_where_the_values_span_more_than_a_decade(results_dir, tmp_path):  # noqa: F811
    figure = quality_vs_compression(load(_spanning(results_dir, tmp_path)))
    assert _axis(figure, "FID (LeNet)").get_yscale() == "log"  # 90..1055
    assert _axis(figure, "IS (LeNet)").get_yscale() == "linear"  # 9.4..9.5
    plt.close(figure)
    figure = quality_vs_compression(load(results_dir))  # FID 5..12, real data 0.6: the reference line counts
    assert _axis(figure, "FID (LeNet)").get_yscale() == "log"
    plt.close(figure)


def test_the_fid_of_every_backbone_that_scored_the_grid_is_drawn(results_dir, tmp_path):  # noqa: F811
    runs = pd.read_csv(results_dir / "results.csv")
    runs = runs.assign(fid_resnet=runs["fid_lenet"] * 3, fid_clip=runs["fid_lenet"] * 7, is_resnet=runs["is_lenet"])
    runs.to_csv(tmp_path / "results.csv", index=False)
    results = load(tmp_path)
    figure = quality_vs_compression(results)
    drawn = {ax.get_ylabel().split(" (lower")[0].split(" (higher")[0] for ax in figure.axes if ax.get_ylabel()}
    declared = {metric.label for score in ("fid", "is") for metric in on_every_backbone(score, results.runs)}
    assert declared == {"FID (LeNet)", "FID (ResNet)", "FID (CLIP)", "IS (LeNet)", "IS (ResNet)"} == drawn
    plt.close(figure)


def test_speed_up_panels_name_backend_and_batch_and_tell_methods_apart(methods_dir):  # noqa: F811
    figure = speedup_vs_macs(load(methods_dir))
    titles = {ax.get_title() for ax in figure.axes}
    assert titles == {"CPU · eager · batch 1", "CPU · eager · batch 16", "CPU · onnxruntime · batch 1",
                      "CPU · onnxruntime · batch 16"}  # fmt: skip
    for ax in figure.axes:  # colours for methods (width, its fp16 and int8 forms, pruning), not for batch sizes
        if "eager" not in ax.get_title():
            continue  # onnxruntime timed the float models only
        colours = {
            tuple(np.round(colour[:3], 3)) for collection in ax.collections for colour in collection.get_facecolors()
        }
        assert len(colours) >= 4
    legend = {text.get_text() for text in figure.legends[0].texts}
    assert {"width", "width + int8", "prune (bn)", "scratch", "pixel-l1"} <= legend
    plt.close(figure)


def test_no_loss_curve_hides_behind_another(methods_dir):  # noqa: F811
    figure = training_curves(load(methods_dir))
    for ax in figure.axes:
        styles = [(line.get_color(), line.get_linestyle()) for line in ax.get_lines() if len(line.get_xdata())]
        assert len(styles) == len(set(styles)), ax.get_title()
    plt.close(figure)


def test_long_cells_wrap_under_the_width(tmp_path):
    text = "; ".join(f"prune (bn) · pixel-l1 + openvino-int8, width {w} / width · scratch, width {w}" for w in range(4))
    lines = cell_lines(text)
    assert len(lines) > 1 and all(len(line) <= MAX_CELL for line in lines)
    assert " ".join(lines) == text  # nothing lost
    assert cell_lines("short") == ["short"] and cell_lines("a\nb") == ["a", "b"]


def test_the_agreement_tables_long_cells_wrap(tmp_path):
    from tests.test_verdicts import _rows

    rows = _rows(inception=True, flip=False)
    for row in rows:
        if row["role"] == "teacher":
            row["fid_inception"] = 1000.0  # the best model on LeNet, the worst on Inception: six flips
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    table = agreement_table(load(tmp_path))
    markdown = table.markdown()
    cell = markdown.splitlines()[2].split("|")[-2].strip()
    assert cell.split("<br>")[-1] == "and 2 more" and cell.count("<br>") == MAX_FLIPS_LISTED  # a pair per line
    assert all(len(line) <= MAX_CELL for line in cell.split("<br>"))
    assert "\\begin{tabular}[t]{@{}l@{}}teacher, width 256 / " in table.latex()
    assert "<br>" in table.html() and "&lt;br&gt;" not in table.html()


def _flagged(results_dir: Path, directory: Path) -> Path:  # noqa: F811
    """``results_dir`` with latency.csv's eager batch-1 row of two runs flagged noisy and of one loaded."""
    shutil.copy(results_dir / "results.csv", directory / "results.csv")
    latency = pd.read_csv(results_dir / "latency.csv").assign(noisy=False, loaded=False)
    teacher = pd.read_csv(results_dir / "results.csv").query("role == 'teacher'")["run_id"]
    headline = (latency["backend"] == "eager") & (latency["batch"] == 1)
    latency.loc[headline & latency["run_id"].isin(teacher), "noisy"] = True  # the teacher's two seeds
    latency.loc[headline & latency["run_id"].str.startswith("digits-w32-none"), "loaded"] = True  # both seeds
    latency.to_csv(directory / "latency.csv", index=False)
    return directory


def test_speed_headers_name_backend_and_batch_and_flagged_cells_are_marked(results_dir, tmp_path):  # noqa: F811
    results = load(_flagged(results_dir, tmp_path))
    cost = cost_table(results)
    latency, throughput = "CPU latency, eager, batch 1 (ms)", "CPU throughput, eager, batch 256 (img/s)"
    assert {latency, throughput} <= set(cost.display.columns)
    marked = cost.display.set_index(["width", "objective"])[latency].str.endswith(FLAG)
    assert set(marked[marked].index) == {("512", "scratch"), ("32", "scratch")}  # the teacher's and width 32's
    assert not cost.display[throughput].str.contains(FLAG).any()  # batch 256 was not flagged
    assert f"{FLAG} 2 of " in cost.caption and "1 noisy: " in cost.caption and "1 loaded: " in cost.caption
    assert "latency per call at batch 1" in cost.caption and "at batch 256" in cost.caption
    best = best_method_table(results)
    assert latency in best.display  # the best model at each size names its speed's basis too
    assert best.display.loc[best.display["best model"] == "width · scratch", latency].str.endswith(FLAG).all()
    unflagged = cost_table(load(results_dir))
    assert not unflagged.display[latency].str.contains(FLAG).any() and FLAG not in unflagged.caption


def test_the_deployment_table_marks_a_flagged_fastest_timing(results_dir, tmp_path):  # noqa: F811
    directory = _flagged(results_dir, tmp_path)
    latency = pd.read_csv(directory / "latency.csv")
    latency["noisy"] = (latency["backend"] == "onnxruntime") & (latency["batch"] == 256)  # the fastest at 256
    latency.to_csv(directory / "latency.csv", index=False)
    table = deployment_table(load(directory))
    assert table.display["fastest at batch 256"].str.endswith(FLAG).all()
    assert not table.display["fastest at batch 1"].str.endswith(FLAG).any()  # the flagged eager rows lost there
    assert f"{FLAG} {len(table.display)} of {2 * len(table.display)} fastest timings flagged" in table.caption


def test_the_pareto_latency_axis_names_its_batch_and_backends(results_dir):  # noqa: F811
    figure = pareto(load(results_dir))
    latency = next(ax for ax in figure.axes if ax.get_title() == "FID against CPU latency")
    assert latency.get_xlabel().startswith("CPU latency, batch 1, each model's fastest backend")
    assert "(of eager, onnxruntime; ms, log scale)" in latency.get_xlabel()
    plt.close(figure)


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("path", sorted((ROOT / "reports").glob("*.py")), ids=lambda path: path.name)
def test_every_function_of_the_report_fits_a_screen(path: Path):
    long = {name: lines for name, lines in _functions(path) if lines > MAX_FUNCTION_LINES}
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"
