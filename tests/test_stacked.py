"""Stacked-seed training computes, seed by seed, what separate training computes; its benchmark's command line."""

from __future__ import annotations

import io
from dataclasses import replace

import pandas as pd
import pytest
import torch

import gans
from bench.base.errors import UserError
from bench.engine.models import build_models
from bench.engine.spec import RunSpec
from bench.engine.stacked import StackedPair, stacked_batches
from bench.engine.train import BatchStream, make_member, precision_autocast, train_step
from bench.harness import stacked as harness
from data import ImageDataset
from tests.conftest import fails_cleanly

SEEDS = (1314, 1315, 1316)
BATCH = 8
NZ = 100


def toy_data(dtype: torch.dtype = torch.float32) -> ImageDataset:
    """64 random 1x28x28 images in [-1, 1] with 10 classes: one epoch is 8 steps of batch 8."""
    rng = torch.Generator().manual_seed(0)
    images = (torch.rand(64, 1, 28, 28, generator=rng) * 2 - 1).to(dtype)
    labels = torch.randint(0, 10, (64,), generator=rng)
    return ImageDataset("toy", images, labels, images[:8], labels[:8], 10)


def specs_of(width: int, seeds=SEEDS, **changes) -> list[RunSpec]:
    return [RunSpec("toy", width, "none", 0.0, seed, 1, BATCH, **changes) for seed in seeds]


def train_both(specs: list[RunSpec], data: ImageDataset, tmp_path, dtype: torch.dtype, epochs: int = 1):
    """Every spec trained alone by ``train_step`` on its own Member, and all of them stacked, from the same start
    on the same per-seed streams; returns (stacked pair, members, stacked losses, separate losses), the losses
    as (seeds, steps, 4)."""
    cpu = torch.device("cpu")
    members = [make_member(spec, tmp_path / spec.run_id, data, cpu) for spec in specs]
    for m in members:
        m.generator.to(dtype).train(), m.discriminator.to(dtype).train()  # same Parameter objects: Adam keeps them
    pairs = [tuple(model.to(dtype).train() for model in build_models(spec, data)) for spec in specs]
    stacked = StackedPair.from_pairs(pairs, specs[0])
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the streams draw z in the default dtype
    try:
        streams = [BatchStream(data.train_images, data.train_labels, BATCH, NZ, 10, spec.seed) for spec in specs]
        autocast = precision_autocast("fp32", cpu)
        separate = [[train_step(m, *batch, None, autocast) for e in range(epochs) for batch in stream.epoch(e)]
                    for m, stream in zip(members, streams, strict=True)]  # fmt: skip
        together = [stacked.step(*batch) for e in range(epochs) for batch in stacked_batches(streams, e)]
    finally:
        torch.set_default_dtype(previous)
    return stacked, members, torch.stack(together, dim=1), torch.stack([torch.stack(s) for s in separate])


def max_differences(stacked: StackedPair, members) -> dict[str, float]:
    """The largest |stacked - separate| over the seeds of parameters, batch-norm statistics and Adam's moments."""
    pairs = stacked.unstack()
    found = {"params": 0.0, "bn": 0.0, "adam": 0.0}
    for (g, d), m in zip(pairs, members, strict=True):
        for mine, theirs in ((g, m.generator), (d, m.discriminator)):
            ours, reference = mine.state_dict(), theirs.state_dict()
            assert ours.keys() == reference.keys()
            for key in ours:
                kind = "bn" if "running" in key or "num_batches" in key else "params"
                found[kind] = max(found[kind], (ours[key].double() - reference[key].double()).abs().max().item())
    for side in ("opt_g", "opt_d"):
        joint = getattr(stacked, side)
        for i, m in enumerate(members):
            alone = getattr(m, side)
            for p, q in zip(joint.param_groups[0]["params"], alone.param_groups[0]["params"], strict=True):
                for moment in ("exp_avg", "exp_avg_sq"):
                    gap = (joint.state[p][moment][i] - alone.state[q][moment]).abs().max().item()
                    found["adam"] = max(found["adam"], gap)
    return found


# float64: the two ways differ only by the order of float sums (measured over 16 steps: 1.6e-15 in the parameters,
# 6e-17 in the batch-norm statistics, 4e-16 in Adam's moments), so a
# bound far below any real difference holds. A mean over seeds instead of the sum moves Adam's moments by 2/3 of
# their size (and its updates through eps, ~1e-9); one set of batch-norm statistics for every seed, or a wrong
# order of the discriminator's forwards, moves the statistics by ~1e-3.
F64_BOUND = 1e-12


def test_stacked_training_equals_separate_training_seed_by_seed(tmp_path):
    data = toy_data(torch.float64)
    stacked, members, together, separate = train_both(specs_of(16), data, tmp_path, torch.float64, epochs=2)
    assert together.shape == separate.shape == (3, 16, 4)
    found = max_differences(stacked, members)
    assert found["params"] < F64_BOUND and found["bn"] < F64_BOUND and found["adam"] < F64_BOUND, found
    # the runs trained: weights moved from their start, and the seeds are different runs
    start = build_models(specs_of(16)[0], data)[0].state_dict()
    trained = [g.state_dict() for g, _ in stacked.unstack()]
    key = "blocks.0.0.weight"
    assert (trained[0][key].double() - start[key].double()).abs().max() > 1e-4
    assert (trained[0][key] - trained[1][key]).abs().max() > 1e-3
    assert trained[0]["blocks.0.1.num_batches_tracked"].item() == 16
    discriminator = stacked.pairs[0][1].state_dict()
    assert discriminator["net.3.num_batches_tracked"].item() == 3 * 16  # real, detached fake, fake: per step


def test_per_seed_losses_match_train_steps(tmp_path):
    data = toy_data(torch.float64)
    _, _, together, separate = train_both(specs_of(16, SEEDS[:2]), data, tmp_path, torch.float64)
    # train_step returns its losses in float32: equal up to that rounding
    torch.testing.assert_close(together.float(), separate.float(), rtol=1e-6, atol=1e-7)
    assert (together[..., 2] == 0).all() and torch.equal(together[..., 3], together[..., 1])
    assert together[..., 0].min() > 0.1 and together[0, 0, 0] != together[1, 0, 0]  # real, per-seed losses


def test_float32_stacked_training_stays_close(tmp_path):
    data = toy_data()
    stacked, members, together, separate = train_both(specs_of(32, SEEDS[:2]), data, tmp_path, torch.float32)
    found = max_differences(stacked, members)
    # float32 rounding of the two kernels' sums differs; Adam divides a near-zero gradient by its own size, which
    # turns that rounding into up to a fraction of one lr (2e-4) step (measured after 8 steps: 8.5e-7 here, up to
    # 8e-6 with other seeds)
    assert found["params"] < 5e-5 and found["bn"] < 1e-6 and found["adam"] < 1e-5, found
    torch.testing.assert_close(together, separate, rtol=1e-5, atol=1e-6)


def test_unstacked_generators_load_into_a_fresh_generator_of_the_family(tmp_path):
    data = toy_data()
    specs = specs_of(16, SEEDS[:2])
    stacked = StackedPair.from_specs(specs, data, torch.device("cpu"))
    streams = [BatchStream(data.train_images, data.train_labels, BATCH, NZ, 10, spec.seed) for spec in specs]
    for batch in list(stacked_batches(streams, 0))[:2]:
        stacked.step(*batch)
    z, labels = torch.randn(2, 5, NZ), torch.randint(0, 10, (2, 5))
    for i, (generator, _) in enumerate(stacked.unstack()):
        buffer = io.BytesIO()
        torch.save(generator.state_dict(), buffer)  # as the run's generator.pt
        fresh, _ = gans.build("dcgan", 16, num_classes=10, channels=1, image_size=28)
        fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
        assert gans.width_of("dcgan", fresh.state_dict()) == 16
        for name, tensor in fresh.state_dict().items():
            assert torch.equal(tensor, (stacked.g.params | stacked.g.buffers)[name][i]), name
        fresh.eval()
        with torch.no_grad():
            images = fresh(z[i], labels[i])
        assert images.shape == (5, 1, 28, 28) and images.abs().max() <= 1


def test_the_resnet_family_is_refused_in_one_line():
    with pytest.raises(UserError, match="resnet discriminator.*SpectralNorm.*vmap") as caught:
        StackedPair.from_specs(specs_of(16, SEEDS[:2], family="resnet"), toy_data(), torch.device("cpu"))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "specs, expected",
    [
        ([], "at least one run"),
        (specs_of(16, SEEDS[:1]) + specs_of(32, SEEDS[1:2]), "differ only in their seed"),
        (specs_of(16, (1314, 1314)), "differ only in their seed"),
        ([replace(s, kd="pixel-l1", kd_weight=1.0) for s in specs_of(16, SEEDS[:2])], "from scratch"),
        (specs_of(16, SEEDS[:2], precision="bf16"), "fp32 only"),
    ],
)
def test_runs_that_cannot_be_stacked_are_refused(specs, expected):
    with pytest.raises(UserError, match=expected):
        StackedPair.from_specs(specs, toy_data(), torch.device("cpu"))


def test_the_benchmark_writes_one_row_per_width(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--device", "cpu", "--seeds", "2", "--widths", "16,24", "--batch-size", "8",
            "--steps", "1", "--repeats", "1"]  # fmt: skip
    assert harness.main(args) == 0
    frame = pd.read_csv(tmp_path / "stacked.csv")
    assert list(frame.columns) == ["family", "width", "seeds", "batch_size", "steps", "separate_steps_s",
                                   "stacked_steps_s", "speedup", "device"]  # fmt: skip
    assert frame["width"].tolist() == [16, 24] and set(frame["seeds"]) == {2} and set(frame["family"]) == {"dcgan"}
    assert (frame["separate_steps_s"] > 0).all() and (frame["stacked_steps_s"] > 0).all()
    assert (frame["speedup"] - frame["stacked_steps_s"] / frame["separate_steps_s"]).abs().max() < 1e-6
    text = (tmp_path / "stacked.md").read_text()
    assert f"torch {torch.__version__}" in text and "- CPU: " in text and "| dcgan " in text
    assert "stacked_steps_s" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--seeds", "0"], "--seeds must be an integer in 1..64"),
        (["--widths", "12"], "width 12 is not allowed"),
        (["--widths", "16,x"], "--widths takes comma-separated integers"),
        (["--steps", "-1"], "--steps must be an integer >= 1"),
        (["--steps", "two"], "invalid int value"),
        (["--family", "resnet", "--widths", "16", "--steps", "1"], "resnet discriminator"),
    ],
)
def test_bad_benchmark_input_is_one_line_and_exit_code_2(args, expected, tmp_path, capsys):
    fails_cleanly(harness.main, capsys, [*args, "--device", "cpu", "--out", str(tmp_path)], expected)
    assert not (tmp_path / "stacked.csv").exists()
