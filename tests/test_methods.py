"""bench/engine/methods.py in a grid: every method planned, trained or derived, recorded, stopped and resumed.

One tiny grid with every method (teacher 64; width 16 from scratch and distilled; the teacher pruned to the
width-16 count by both importances, fine-tuned with and without distillation; every float model in fp16 and
int8) is run three times: stopped during the pruned runs' fine-tuning, stopped again while quantizing, then to
the end. Every test below reads that one directory.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

import bench.engine.train as train
from bench.base.layout import LATENCY_CSV, PRUNED_FILE, RESULT_FILE, RESULTS_CSV, RUNS_DIR
from bench.cli import main
from bench.engine import preempt
from bench.engine.methods import made_from, needs, phases
from bench.engine.models import build_models
from bench.grid.plan import plan
from bench.grid.presets import make_grid
from bench.latency.saved import saved_generators
from compress import int8_kernels
from compress import quantize as quantization
from compress.prune import example_inputs, prune_to_params, target_params
from tests.conftest import fails_cleanly, spec, teacher_for, tiny_grid_args, train_cohort
from tests.test_compress import noise

CPU = torch.device("cpu")

EVERY_METHOD = (
    "--methods", "width,prune,quantize", "--widths", "16", "--prune-widths", "16", "--epochs", "1",
    "--prune-importance", "bn,l1", "--finetune-epochs", "1", "--quantize", "fp16,int8",
)  # fmt: skip
FLOATS = 1 + 2 + 2 * 2  # teacher, width 16 x {none, pixel-l1}, pruned x {bn, l1} x {none, pixel-l1}


def _results(out: Path) -> dict[str, float]:
    """Run id -> mtime of its result.json: what a resumed grid must leave alone."""
    return {path.parent.name: path.stat().st_mtime_ns for path in (out / RUNS_DIR).glob(f"*/{RESULT_FILE}")}


def _stop_at_first(monkeypatch, module, name: str, when) -> None:
    """Ask for a stop (as SIGTERM does) the first time ``module.name`` is called with arguments ``when`` accepts."""
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        if when(*args):
            preempt.request_stop()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """(results directory, finished run ids after each stop, the final run's result mtimes)."""
    out = tmp_path_factory.mktemp("methods") / "results"
    args = tiny_grid_args(out, *EVERY_METHOD)
    seen = []
    with pytest.MonkeyPatch.context() as patch:  # stopped while fine-tuning a pruned generator
        _stop_at_first(patch, train, "train_step", lambda member, *rest: member.spec.method == "prune")
        assert main(args) == preempt.EXIT_PREEMPTED
    preempt._requested = False
    seen.append(_results(out))
    pruned_at = {p.parent.name: p.stat().st_mtime_ns for p in (out / RUNS_DIR).glob(f"*/{PRUNED_FILE}")}
    with pytest.MonkeyPatch.context() as patch:  # stopped after the first quantized model
        _stop_at_first(patch, quantization, "quantize", lambda *args: True)
        assert main(args) == preempt.EXIT_PREEMPTED
    preempt._requested = False
    seen.append(_results(out))
    assert main(args) == 0
    seen.append(_results(out))
    assert main(args) == 0  # a finished grid: nothing is redone
    seen.append(_results(out))
    return out, seen, pruned_at


def test_every_method_is_planned_in_phases_after_what_it_needs():
    settings = {"prune": {"importance": ("bn", "l1")}, "quantize": {"modes": ("fp16", "int8")}}
    grid = make_grid("quick", widths=(16,), seeds=(1,), settings=settings)
    cohorts = plan(grid.runs())
    assert [c.phase for c in cohorts] == list(phases())
    done: set[str] = set()
    for cohort in cohorts:
        for run in cohort.specs:
            need = needs(run)
            assert need is None or need.run_id in done, f"{run.describe()} planned before {need.describe()}"
        done |= {run.run_id for run in cohort.specs}
    quantized = cohorts[-1].specs
    assert {spec.derived for spec in quantized} == {("quantize", "fp16"), ("quantize", "int8")}
    assert {spec.source() for spec in quantized} == {spec for c in cohorts[:-1] for spec in c.specs}


def test_run_ids_name_the_method_and_keep_the_width_runs_ids():
    width_only = make_grid("quick", methods=("width",)).runs()
    every = make_grid("quick").runs()
    assert [spec for spec in every if spec.describe() == "width"] == width_only
    pruned = next(spec for spec in every if spec.method == "prune")
    assert pruned.run_id.startswith(f"digits-w{pruned.width}-none-prune-bn-s1314-")
    assert pruned.teacher() == every[0] and made_from(pruned) == every[0]
    int8 = next(spec for spec in every if spec.derived == ("quantize", "int8") and spec.method == "prune")
    assert int8.source() == pruned and "-prune-bn-int8-" in int8.run_id
    assert len({spec.run_id for spec in every}) == len(every)


def test_a_stopped_grid_resumes_without_redoing_finished_work(grid_run):
    out, seen, pruned_at = grid_run
    first, second, third, fourth = seen
    assert 3 <= len(first) < FLOATS  # the teacher and the width students finished before the stop
    assert FLOATS <= len(second) < 3 * FLOATS
    assert len(third) == 3 * FLOATS  # every float model, and each in fp16 and int8
    for earlier, later in ((first, second), (second, third), (third, fourth)):
        assert all(later[run] == mtime for run, mtime in earlier.items()), "a finished run was redone"
    # the pruned runs resumed from their cut: not pruned again
    assert pruned_at and all(
        (out / RUNS_DIR / run / PRUNED_FILE).stat().st_mtime_ns == mtime for run, mtime in pruned_at.items()
    )


def test_every_method_is_recorded_with_its_settings_and_source(grid_run):
    out = grid_run[0]
    frame = pd.read_csv(out / RESULTS_CSV)
    assert len(frame) == 3 * FLOATS and set(frame["status"]) == {"done"}
    teacher = frame[frame["role"] == "teacher"].iloc[0]
    pruned = frame[(frame["method"] == "prune") & frame["quantize"].isna()]
    assert len(pruned) == 4 and set(pruned["source_run"]) == {teacher["run_id"]}
    assert set(zip(pruned["prune_importance"], pruned["kd"])) == {
        (i, k) for i in ("bn", "l1") for k in ("none", "pixel-l1")
    }
    assert (pruned["finetune_epochs"] == 1).all()
    # with distillation and without are separate runs: only the first has a distillation term
    assert (pruned[pruned["kd"] == "pixel-l1"]["loss_kd_final"] > 0).all()
    assert (pruned[pruned["kd"] == "none"]["loss_kd_final"] == 0).all()
    width16 = frame[(frame["method"] == "width") & (frame["width"] == 16) & frame["quantize"].isna()]
    # a uniformly pruned DCGAN at a width's parameter count is that width's architecture
    assert set(pruned["g_params"]) == set(width16["g_params"]) == set(pruned["prune_target_params"])
    assert (pruned["pruned_width"] == 16).all() and pruned["prune_ratio"].between(0.7, 0.8).all()

    quantized = frame[frame["quantize"].notna()].set_index("source_run")
    floats = frame[frame["quantize"].isna()].set_index("run_id")
    assert set(quantized.index) == set(floats.index)
    source = floats.loc[quantized.index]
    assert (quantized["g_params"].to_numpy() == source["g_params"].to_numpy()).all()
    share = quantized["g_bytes_stored"].to_numpy() / source["g_bytes_fp32"].to_numpy()
    fp16, int8 = (quantized["quantize"] == "fp16").to_numpy(), (quantized["quantize"] == "int8").to_numpy()
    assert ((share[fp16] > 0.45) & (share[fp16] < 0.6)).all()
    # about a quarter: a width-16 generator's per-tensor overhead (zip records, scales) is a tenth of its bytes
    assert ((share[int8] > 0.2) & (share[int8] < 0.4)).all()
    assert (
        frame.loc[frame["quantize"].isna(), "g_bytes_stored"] == frame.loc[frame["quantize"].isna(), "g_bytes_fp32"]
    ).all()
    assert (quantized["quant_float_layers"] == 0).all()  # a DCGAN has no class-conditional norm to keep float
    # every derived model was checked against its float source and is within its mode's tolerance
    for mode, rows in quantized.groupby("quantize"):
        tolerance = quantization.TOLERANCES[mode]
        assert (rows["source_mean_abs_err"] <= tolerance.mean_abs).all(), mode
        assert (rows["source_max_abs_err"] <= tolerance.max_abs).all(), mode
    assert quantized.loc[int8, "quant_kernels"].str.match(r"^(\w+:\d+ ?)+$").all()


def test_quantized_layers_are_recorded_with_their_reasons(grid_run):
    out = grid_run[0]
    run = next((out / RUNS_DIR).glob("*-width-int8-*"))
    layers = json.loads((run / "layers.json").read_text())
    transposed = [layer for layer in layers if layer["precision"] == "int8 per-tensor"]
    assert transposed and all("ConvTranspose2d" in layer["reason"] for layer in transposed)
    assert all(layer["kernel"] in int8_kernels.engines() for layer in transposed)


def test_fine_tuning_a_pruned_generator_with_distillation_lowers_its_loss(digits, tmp_path):
    teacher = teacher_for(digits)  # outputs of substance: the cut starts far from them
    run = replace(spec(16, "pixel-l1", kd_weight=100.0, lr=2e-3), method="prune",
                  options={"prune_importance": "l1", "finetune_epochs": 1})  # fmt: skip
    cut = prune_to_params(teacher, target_params(run, digits), "l1", example_inputs(teacher))
    discriminator = build_models(run.teacher(), digits)[1]
    member = train.make_member(run, tmp_path / "run", digits, CPU, lambda: (copy.deepcopy(cut), discriminator))
    z, labels = noise(teacher)

    def distance(generator) -> float:
        with torch.no_grad():
            return (generator.eval()(z, labels) - teacher(z, labels)).abs().mean().item()

    before = distance(cut)
    train_cohort([member], digits, teacher, CPU, log_every=2, progress=False)
    kd = [row[4] for row in member.log]  # LOSS_COLUMNS: epoch, step, loss_d, loss_g_gan, loss_kd, loss_g
    assert sum(kd[-3:]) < sum(kd[:3])
    assert distance(member.generator) < 0.95 * before


def test_every_model_is_timed_and_reloads_from_its_files(grid_run):
    out = grid_run[0]
    timed = pd.read_csv(out / LATENCY_CSV)
    assert set(timed["status"]) == {"ok"} and timed["run_id"].nunique() == 3 * FLOATS
    models = saved_generators(out)
    assert len(models) == 3 * FLOATS
    assert {m.quantized for m in models.values()} == {None, "fp16", "int8"}


@pytest.mark.parametrize(
    "extra, expected",
    [
        (("--methods", "width,shrink"), "--methods: unknown shrink"),
        (("--methods", "width,width"), "--methods: width given more than once"),
        (("--methods", "width,prune", "--prune-importance", "taylor"), "--prune-importance: unknown taylor"),
        (("--methods", "width,prune", "--finetune-epochs", "0"), "--finetune-epochs must be an integer"),
        (("--methods", "width,prune", "--prune-widths", "64,128"), "none is below the teacher's width (64)"),
        (("--methods", "width,quantize", "--quantize", "int4"), "--quantize: unknown int4"),
        (("--quantize", "int8"), "add quantize to --methods"),
        (("--prune-widths", "16"), "add prune to --methods"),
    ],
)
def test_bad_method_settings_fail_in_one_line(tmp_path, capsys, extra, expected):
    fails_cleanly(main, capsys, tiny_grid_args(tmp_path / "out", *extra), expected)
    assert not (tmp_path / "out").exists()


def test_pruning_a_given_teacher_needs_its_discriminator(tiny_results, tmp_path, capsys):
    alone = tmp_path / "alone" / "generator.pt"  # a generator file without its run directory
    alone.parent.mkdir()
    shutil.copy(next((tiny_results / RUNS_DIR).glob("*-w64-none-*")) / "generator.pt", alone)
    args = tiny_grid_args(tmp_path / "out", "--methods", "width,prune", "--teacher", str(alone))
    fails_cleanly(main, capsys, args, "no discriminator.pt lies beside --teacher")
