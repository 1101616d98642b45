"""compress/once_for_all.py: one generator trained at every width, each width cut from it; a cut is the supernet at
its width, batch norms are per width, a stopped supernet resumes exactly, a grid makes and measures the cuts."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

import gans
from bench.base.errors import UserError
from bench.base.layout import DISCRIMINATOR_FILE, GENERATOR_FILE, RESULT_FILE, RESULTS_CSV, RUNS_DIR
from bench.cli import main
from bench.engine.methods import Sources
from bench.engine.models import build_models
from bench.engine.train import BatchStream, make_member, precision_autocast
from compress import once_for_all as ofa
from tests.conftest import (
    assert_stopped_run_resumes_exactly,
    fails_cleanly,
    same_state,
    spec,
    state_of,
    tiny_grid_args,
)

CPU = torch.device("cpu")


def supernet_run(widths=(16, 32), family="dcgan", **knobs):
    run = replace(spec(64, **knobs), family=family, method=ofa.ONCE_FOR_ALL)
    return replace(run, options={"ofa_widths": "-".join(map(str, widths))})


def supernet_member(digits, run_dir, widths=(16, 32), family="dcgan", **knobs):
    run = supernet_run(widths, family, **knobs)
    return make_member(run, run_dir, digits, CPU, lambda: ofa.start(run, digits, Sources(run_dir)))


def train_steps(member, digits, steps: int) -> None:
    stream = BatchStream(digits.train_images, digits.train_labels, 32, 100, 10, seed=5)
    autocast = precision_autocast("fp32", CPU)
    for _, batch in zip(range(steps), stream.epoch(0)):
        member.step(member, *batch, None, autocast)


@pytest.mark.parametrize("family", ["dcgan", "resnet"])
def test_a_cut_width_is_the_supernet_at_that_width(digits, tmp_path, family):
    member = supernet_member(digits, tmp_path, (16, 32), family)
    train_steps(member, digits, 4)  # weights and every width's batch-norm statistics moved from their start
    widest, supernet = member.generator.eval(), member.objective.supernet.eval()
    z, labels = torch.randn(12, 100), torch.arange(12) % 10
    for width in (16, 32):
        cut, _ = build_models(replace(member.spec, width=width), digits)
        cut.load_state_dict(supernet.cut_state(widest, width))  # strict: an ordinary generator of that width
        with torch.no_grad():
            images, features = supernet.run(widest, width, z, labels)
            assert torch.equal(cut.eval()(z, labels), images)
        assert [f.shape[1] for f in features] == gans.FAMILIES[family].hidden_channels(width)
    with torch.no_grad():  # the widest is the supernet's generator itself
        assert torch.equal(supernet.run(widest, 64, z, labels)[0], widest(z, labels))


def test_each_width_keeps_its_own_batch_norm_statistics(digits, tmp_path):
    member = supernet_member(digits, tmp_path, (16, 32, 48))
    shells = member.objective.supernet.shells
    assert ofa.norm_entries(shells["16"]) == set(shells["16"].state_dict())  # a shell holds its norms alone
    z, labels = torch.randn(16, 100), torch.arange(16) % 10
    before = {w: state_of(shell) for w, shell in shells.items()}
    member.objective.supernet.run(member.generator, 32, z, labels)  # training mode: only width 32's stats move
    after = {w: state_of(shell) for w, shell in shells.items()}
    assert same_state(before["16"], after["16"]) and same_state(before["48"], after["48"])
    assert not same_state(before["32"], after["32"])
    train_steps(member, digits, 6)
    mean = {w: shell.state_dict()["blocks.0.1.running_mean"] for w, shell in shells.items()}
    widest = member.generator.state_dict()["blocks.0.1.running_mean"]
    assert mean["16"].shape == (16,) and mean["32"].shape == (32,)
    assert not torch.allclose(mean["16"], mean["32"][:16]) and not torch.allclose(mean["32"], widest[:32])


def test_a_narrow_width_trains_the_leading_slice_of_the_widest(digits, tmp_path):
    member = supernet_member(digits, tmp_path, (16, 32))
    images, _ = member.objective.supernet.run(member.generator, 16, torch.randn(8, 100), torch.arange(8))
    images.square().mean().backward()
    grad = member.generator.blocks[1][0].weight.grad  # (8ngf, 4ngf, 4, 4) of the widest: ngf 8
    assert grad[:16, :8].abs().sum() > 0 and grad[16:].abs().sum() == 0 and grad[:, 8:].abs().sum() == 0
    assert member.objective.supernet.shells["16"].blocks[1][1].weight.grad is not None  # its own norm's affine


def test_every_step_trains_the_widest_the_narrowest_and_one_drawn_width(digits, tmp_path):
    member = supernet_member(digits, tmp_path, (16, 24, 32, 48))
    drawn = []
    for step in range(40):
        member.objective.steps.fill_(step)
        widths = member.objective.sampled(64)
        assert widths[:2] == [64, 16] and widths[2] in (24, 32, 48) and widths == member.objective.sampled(64)
        drawn.append(widths[2])
    assert set(drawn) == {24, 32, 48}  # every middle width is trained
    two = supernet_member(digits, tmp_path / "two", (32,))
    assert two.objective.sampled(64) == [64, 32]
    # what the plan's estimate counts a step as: the widest, the narrowest and the middle of the others
    assert ofa.step_widths(member.spec) == (64, 16, 32) and ofa.step_widths(two.spec) == (64, 32)
    assert ofa.step_widths(replace(member.spec, width=24)) == (24,)  # a cut


def test_a_stopped_supernet_resumes_exactly(digits, tmp_path):
    make = lambda run_dir: supernet_member(digits, run_dir, epochs=2)  # noqa: E731
    resumed = assert_stopped_run_resumes_exactly(make, ofa.step, digits, tmp_path)
    assert int(resumed.objective.steps) == 44
    saved = torch.load(tmp_path / "stopped" / ofa.SUPERNET_FILE, weights_only=True)
    assert same_state(saved, state_of(resumed.objective))  # the narrower widths' norms, beside generator.pt


def test_a_family_whose_narrow_generator_is_not_a_slice_is_refused():
    widest = {"w": torch.zeros(8, 4), "b": torch.zeros(8)}
    ofa.check_cuttable(widest, {"w": torch.Size([4, 4]), "b": torch.Size([4])}, "x")
    with pytest.raises(UserError, match="its w \\(4, 6\\) is not a leading slice of the widest's \\(8, 4\\)"):
        ofa.check_cuttable(widest, {"w": torch.Size([4, 6])}, "the toy generator of width 16")
    with pytest.raises(UserError, match="its extra \\(2,\\) .* none"):
        ofa.check_cuttable(widest, {"extra": torch.Size([2])}, "x")


def test_widths_not_below_the_teacher_are_refused(tmp_path, capsys):
    args = tiny_grid_args(tmp_path / "out", "--methods", "width,once-for-all", "--ofa-widths", "64,128")
    fails_cleanly(main, capsys, args, "--ofa-widths 64,128: none is below the teacher's width (64)")
    fails_cleanly(main, capsys, [*args[:-2], "--ofa-widths", "16,16"], "--ofa-widths: 16 given more than once")
    fails_cleanly(main, capsys, [*args[:-2], "--ofa-kd", "nope"], "--ofa-kd: unknown nope")


def test_a_grid_trains_one_supernet_and_cuts_every_width(tmp_path, nan_objective):
    out = tmp_path / "results"
    methods = ("--methods", "once-for-all", "--kd", "none", "--epochs", "1", "--ofa-kd", f"none,{nan_objective}")
    args = tiny_grid_args(out, *methods)
    assert main(args) == 0
    frame = pd.read_csv(out / RESULTS_CSV)
    assert len(frame) == 1 + 2 * 3  # the teacher run, and per objective a supernet and two cuts
    runs = frame[(frame["method"] == ofa.ONCE_FOR_ALL) & (frame["kd"] == "none")].set_index("width")
    assert sorted(runs.index) == [16, 32, 64] and set(runs["status"]) == {"done"}
    supernet = runs.loc[64]
    assert supernet["train_seconds"] > 0 and supernet["train_own_seconds"] > 0 and supernet["steps"] == 44
    for cut in (16, 32):  # an ordinary generator of its width, made without training from the supernet
        row = runs.loc[cut]
        generator, _ = gans.build("dcgan", cut, image_size=28)
        assert row["g_params"] == sum(p.numel() for p in generator.parameters()) and row["fid_lenet"] > 0
        assert row["source_run"] == supernet["run_id"] and row["steps"] == 0 and row["train_own_seconds"] == 0
        assert row["supernet_train_seconds"] == supernet["train_seconds"]
        directory = out / RUNS_DIR / row["run_id"]
        generator.load_state_dict(torch.load(directory / GENERATOR_FILE, weights_only=True))
        supernet_d = torch.load(out / RUNS_DIR / supernet["run_id"] / DISCRIMINATOR_FILE, weights_only=True)
        assert same_state(torch.load(directory / DISCRIMINATOR_FILE, weights_only=True), supernet_d)
    diverged = frame[(frame["method"] == ofa.ONCE_FOR_ALL) & (frame["kd"] == nan_objective)].set_index("width")
    assert diverged.loc[64, "status"] == "diverged"
    assert set(diverged.loc[[16, 32], "status"]) == {"source-diverged"}  # its cuts are never made
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (out / RUNS_DIR).glob(f"*/{RESULT_FILE}")}
    assert main(args) == 0  # a finished grid: nothing is redone
    assert finished == {p.parent.name: p.stat().st_mtime_ns for p in (out / RUNS_DIR).glob(f"*/{RESULT_FILE}")}
