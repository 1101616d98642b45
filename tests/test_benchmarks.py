"""The benchmarks' yardstick and that the benchmarks run: the reference loop, ``bench.harness.perf`` and
``bench.harness.parity``.

These check correctness and output schemas only; the timings and FIDs themselves are measured by the
benchmark commands in docs/performance.md, never asserted here.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.base.errors import UserError
from bench.engine.spec import RunSpec
from bench.engine.train import build_models, make_member, train_step
from bench.harness import parity, perf
from bench.harness.reference import ReferenceRun
from tests.conftest import CACHE_DIR

CPU = torch.device("cpu")


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in module.state_dict().items()}


@pytest.mark.parametrize("kd", ["none", "pixel-l1"])
def test_reference_update_equals_the_harness_update(digits, kd):
    """Both loops compute the same update from the same batch and noise: the benchmark compares loops only."""
    spec = RunSpec("digits", 32, kd, 1.0, 7, 1, 16, teacher_width=64)
    teacher = build_models(spec.teacher(), digits)[0].eval() if kd != "none" else None
    reference = ReferenceRun.create(spec, digits, CPU, teacher)
    member = make_member(spec, Path(tempfile.mkdtemp()), digits, CPU)
    gen = torch.Generator().manual_seed(0)
    real, labels = digits.train_images[:16], digits.train_labels[:16]
    z, fake_labels = torch.randn(16, 100, generator=gen), torch.randint(0, 10, (16,), generator=gen)

    loss_g = reference.update(real, labels, z, fake_labels)
    with torch.no_grad():
        teacher_out = teacher.forward_features(z, fake_labels) if teacher is not None else None
    losses = train_step(member, real, labels, z, fake_labels, teacher_out, torch.autocast("cpu", enabled=False))

    assert loss_g == pytest.approx(losses[3].item(), rel=1e-5)
    for ours, theirs in ((member.generator, reference.generator), (member.discriminator, reference.discriminator)):
        for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            torch.testing.assert_close(a, b, msg=name)


def test_reference_training_is_seeded_and_changes_the_weights(digits):
    spec = RunSpec("digits", 16, "none", 0.0, 3, 1, 64)
    first, second = ReferenceRun.create(spec, digits, CPU), ReferenceRun.create(spec, digits, CPU)
    initial = _state(first.generator)
    first.train(), second.train()
    trained = first.generator.state_dict()
    assert any(not torch.equal(initial[key], trained[key]) for key in initial)
    for key, value in trained.items():
        assert torch.equal(value, second.generator.state_dict()[key]), key


def test_reference_loop_knows_the_original_objectives_only(digits):
    with pytest.raises(UserError, match="none, pixel-l1"):
        ReferenceRun.create(RunSpec("digits", 16, "feature", 1.0, 1, 1, 16), digits, CPU)


def test_perf_benchmark_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "perf"
    argv = ["--widths", "16", "--kd", "none,pixel-l1", "--steps", "3", "--repeats", "2", "--batch-size", "16",
            "--variants", "eager,channels-last", "--out", str(out)]  # fmt: skip
    assert perf.main(argv) == 0
    frame = pd.read_csv(out / "perf.csv")
    assert list(frame["loop"]) == ["per-width", "step", "step"] * 2 + ["cohort", "cohort"]
    assert list(frame["variant"]) == ["eager", "eager", "channels-last"] * 2 + ["eager", "eager"]
    assert set(frame.columns) >= {"kd", "width", "reference_img_s", "harness_img_s", "speedup", "device"}
    assert all(math.isfinite(v) and v > 0 for v in frame["speedup"])
    assert "python -m bench.harness.perf" in (out / "perf.md").read_text()


PARITY_ARGS = ["--widths", "16", "--teacher-width", "32", "--epochs", "1", "--fid-samples", "100",
               "--seeds", "1,2", "--cache-dir", str(CACHE_DIR), "--no-progress"]  # fmt: skip


def test_parity_benchmark_runs_resumes_and_writes_its_table(tmp_path):
    out = tmp_path / "parity"
    assert parity.main([*PARITY_ARGS, "--out", str(out)]) == 0
    frame = pd.read_csv(out / "parity.csv")
    # two arms x (teacher + width 16 scratch + width 16 distilled) x two seeds
    assert len(frame) == 12
    assert frame.groupby(["arm", "role", "width", "kd"]).size().eq(2).all()
    assert (frame["status"] == "done").all() and frame["fid_lenet"].gt(0).all()
    harness = pd.read_csv(out / "harness" / "results.csv")
    assert not any("resnet" in column for column in harness)  # parity scores the LeNet alone
    assert "harness within" in (out / "parity.md").read_text()

    records = sorted((out / "reference").glob("*.json"))
    stamps = [path.stat().st_mtime_ns for path in records]
    assert parity.main([*PARITY_ARGS, "--out", str(out)]) == 0  # everything is found and nothing retrained
    assert [path.stat().st_mtime_ns for path in records] == stamps
    assert pd.read_csv(out / "parity.csv").equals(frame)


def test_parity_within_means_two_reference_sds():
    rows = [("reference", 10.0), ("reference", 12.0), ("reference", 14.0), ("harness", 15.0), ("harness", 15.9),
            ("reference", math.nan)]  # fmt: skip
    frame = pd.DataFrame(
        [{"arm": arm, "role": "student", "width": 16, "kd": "none", "seed": i, "fid_lenet": fid,
          "status": "diverged" if math.isnan(fid) else "done"} for i, (arm, fid) in enumerate(rows)]
    )  # fmt: skip
    summary = parity.summarise(frame).iloc[0]
    assert summary["reference FID"] == "12.0 ± 2.0 (n=3)"  # the diverged run is left out
    assert summary["harness within"] == "yes"  # |15.45 - 12| <= 2 x 2
    frame.loc[frame["arm"] == "harness", "fid_lenet"] = [16.5, 16.5]
    assert parity.summarise(frame).iloc[0]["harness within"] == "no"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--variants", "fp8"], "unknown variant 'fp8'"),
        (["--widths", "16,x"], "comma-separated integers"),
        (["--modes", "warp"], "unknown mode 'warp'"),
        (["--device", "cpu", "--modes", "eager,graphs"], "CUDA graphs need a CUDA device"),
    ],
)
def test_perf_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert perf.main([*argv, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "1"], "at least two distinct seeds"),
        (["--widths", "sixteen"], "comma-separated integers"),
        (["--preset", "huge"], "unknown preset"),
    ],
)
def test_parity_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert parity.main([*argv, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "p").exists()
