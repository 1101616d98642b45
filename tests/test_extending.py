"""A method registered from outside the suite runs through every stage with no other file touched: the grid, the
dry run, resume and the report; a latency backend registered the same way is timed beside the others."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest
from torch import nn

import compress  # noqa: F401  the suite's methods register themselves
from bench.base.flags import INT, Flag
from bench.base.layout import RUNS_DIR
from bench.cli import main
from bench.engine.methods import METHODS, Expansion, Method, Sources
from bench.engine.models import build_models
from bench.engine.spec import RunSpec
from bench.latency import BACKENDS
from compress.width import load_state
from data import DataShape
from reports import build_report
from tests.conftest import comparable, tiny_grid_args


@dataclass(frozen=True)
class ToySettings:
    """The toy method's one knob: the width of its run."""

    width: int = 16


def _expand(grid: Expansion) -> list[RunSpec]:
    """One run from scratch at the toy's own width, with a per-run option that enters its id."""
    return [replace(grid.teacher, width=grid.settings.width, method="toy", options={"toy_note": "plain"})]


def _start(spec: RunSpec, data: DataShape, sources: Sources) -> tuple[nn.Module, nn.Module]:
    return build_models(replace(spec, method="width", options=()), data)


def _load(path: Path, spec: RunSpec, data: DataShape) -> nn.Module:
    generator, _ = build_models(replace(spec, method="width", options=()), data)
    load_state(generator, path, "a toy generator")
    return generator


TOY = Method(
    "toy",
    "a toy method registered from a test (--toy-width)",
    _load,
    _expand,
    phases=("toy",),
    start=_start,
    settings=ToySettings,
    flags=(Flag("--toy-width", "toy: the width of its one run", INT, "width"),),
    options={"toy_note": None},
)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(METHODS._entries, TOY.name, TOY)  # registered for this test only
    return TOY


def test_a_method_registered_outside_the_suite_runs_through_every_stage(toy, tmp_path, capsys):
    out = tmp_path / "results"
    args = tiny_grid_args(out, "--methods", "width,toy", "--toy-width", "32", "--kd", "none")
    assert main([*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "seed 1314 toy (1 runs):" in plan and "toy-plain" in plan and not (out / RUNS_DIR).exists()
    assert main(args) == 0
    runs = pd.read_csv(out / "results.csv")
    toy_row = runs[runs["method"] == "toy"].iloc[0]
    assert toy_row["status"] == "done" and toy_row["width"] == 32 and toy_row["toy_note"] == "plain"
    assert toy_row["fid_lenet"] > 0 and toy_row["g_params"] < runs[runs["role"] == "teacher"]["g_params"].iloc[0]
    spec = json.loads((out / RUNS_DIR / toy_row["run_id"] / "spec.json").read_text())
    assert spec["method"] == "toy" and spec["toy_note"] == "plain"
    latency = pd.read_csv(out / "latency.csv")
    assert toy_row["run_id"] in set(latency["run_id"])
    assert main(args) == 0  # a finished grid: nothing is redone, the toy run included
    assert comparable(pd.read_csv(out / "results.csv")).equals(comparable(runs))
    report = build_report(out)
    assert "toy" in (report / "report.md").read_text(encoding="utf-8")


def test_a_method_flag_needs_its_method(toy, tmp_path, capsys):
    assert main(tiny_grid_args(tmp_path / "o", "--toy-width", "32")) == 2
    assert "--toy-width sets up the toy method: add toy to --methods" in capsys.readouterr().err


def test_a_latency_backend_registered_outside_the_suite_is_timed(tiny_results, tmp_path, monkeypatch):
    eager = BACKENDS["eager"]
    monkeypatch.setitem(BACKENDS._entries, "toy-eager", replace(eager, name="toy-eager"))
    from bench.latency.cli import main as latency_main

    results = shutil.copytree(tiny_results, tmp_path / "results")
    assert latency_main([str(results), "--backends", "eager,toy-eager", "--batches", "1", "--rounds", "2",
                         "--seconds-per-cell", "0.01"]) == 0  # fmt: skip
    timed = pd.read_csv(results / "latency.csv")
    toy_rows = timed[timed["backend"] == "toy-eager"]
    assert len(toy_rows) == timed["run_id"].nunique() and (toy_rows["status"] == "ok").all()


def test_a_metric_registered_outside_the_suite_is_scored_for_every_model(tmp_path, monkeypatch):
    from bench.base.metric_registry import METRICS, QUALITY, Metric
    from bench.metrics.scorers import SCORERS

    column = "toy_mean_pixel"
    monkeypatch.setitem(METRICS._entries, column, Metric(column, "mean pixel", "mean pixel", QUALITY))
    monkeypatch.setitem(SCORERS._entries, column, lambda scored: float(scored.pixels.float().mean()))
    out = tmp_path / "results"
    assert main(tiny_grid_args(out, "--widths", "16", "--kd", "none", "--backbones", "lenet")) == 0
    runs = pd.read_csv(out / "results.csv")
    assert runs[column].between(0, 255).all() and runs[column].nunique() == len(runs) == 2
    assert "seconds_quality_toy_mean_pixel" in runs
    references = pd.read_csv(out / "references.csv")  # the real-data floor and the untrained ceiling too
    assert references[column].notna().all()
