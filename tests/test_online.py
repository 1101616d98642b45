"""compress/online.py: a student trained beside its own teacher; the teacher learns from the discriminator as a run
from scratch does, the student only from the teacher's current output; stopped and resumed exactly; in a grid."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import torch

import gans
from bench.base.layout import DISCRIMINATOR_FILE, RESULT_FILE, RESULTS_CSV, RUNS_DIR
from bench.cli import main
from bench.engine.methods import Sources
from bench.engine.train import BatchStream, make_member, precision_autocast
from compress import online
from tests.conftest import assert_stopped_run_resumes_exactly, same_state, spec, state_of, tiny_grid_args, train_cohort

CPU = torch.device("cpu")


def online_member(digits, run_dir, width=16, **knobs):
    """An online run's member, started as the grid starts it (its method's pair)."""
    run = replace(spec(width, online.FEATURE, **{"kd_weight": 0.1, **knobs}), method=online.ONLINE)
    return make_member(run, run_dir, digits, CPU, lambda: online.start(run, digits, Sources(run_dir)))


def leaves(tensor: torch.Tensor) -> set[int]:
    """Ids of the parameters ``tensor`` was computed from: its autograd graph's leaves."""
    found, seen, todo = set(), set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # AccumulateGrad: a leaf that requires grad
            found.add(id(node.variable))
        todo += [next_node for next_node, _ in node.next_functions]
    return found


def test_the_student_never_meets_the_discriminator_and_the_teacher_does(digits, tmp_path):
    member = online_member(digits, tmp_path / "run")
    student = {id(p) for p in member.generator.parameters()}
    teacher = {id(p) for p in member.objective.teacher.parameters()}
    seen: list[set[int]] = []
    hook = member.discriminator.register_forward_pre_hook(lambda module, inputs: seen.append(leaves(inputs[0])))
    stream = BatchStream(digits.train_images, digits.train_labels, 64, 100, 10, seed=7)
    autocast = precision_autocast("fp32", CPU)
    for _, batch in zip(range(3), stream.epoch(0)):
        d_before = state_of(member.discriminator)
        losses = member.step(member, *batch, None, autocast)
        assert not same_state(d_before, state_of(member.discriminator))
    hook.remove()
    assert member.step is online.step and len(seen) == 3 * 3  # per step: real, detached fake, the teacher's fake
    assert not any(student & inputs for inputs in seen)
    assert sum(bool(teacher & inputs) for inputs in seen) == 3  # the teacher's GAN loss, once a step
    loss_d, loss_gan, loss_kd, loss_g = losses.tolist()
    assert loss_d > 0 and loss_gan > 0 and loss_kd > 0 and loss_g == loss_kd


def test_the_co_trained_teacher_trains_as_the_seeds_scratch_teacher(digits, tmp_path):
    # a large step size, so that two short epochs move the teacher far from its start
    teacher_run = make_member(spec(64, "none", epochs=2, lr=2e-3), tmp_path / "teacher", digits, CPU)
    scratch = make_member(spec(16, "none", epochs=2, lr=2e-3), tmp_path / "scratch", digits, CPU)
    member = online_member(digits, tmp_path / "online", epochs=2, lr=2e-3)
    assert same_state(state_of(member.generator), state_of(scratch.generator))  # a width run's start
    train_cohort([teacher_run, scratch, member], digits, None, CPU, progress=False, log_every=2)
    # on the CPU the co-trained teacher and its discriminator are the seed's teacher run, bit for bit
    assert same_state(state_of(member.objective.teacher), state_of(teacher_run.generator))
    assert same_state(state_of(member.discriminator), state_of(teacher_run.discriminator))
    assert [row[2:4] for row in member.log] == [row[2:4] for row in teacher_run.log]  # loss_d, loss_g_gan


def test_a_stopped_online_run_resumes_exactly(digits, tmp_path):
    make = lambda run_dir: online_member(digits, run_dir, epochs=2)  # noqa: E731
    assert_stopped_run_resumes_exactly(make, online.step, digits, tmp_path)


def test_a_grid_with_online_students_runs_end_to_end(tmp_path):
    out = tmp_path / "results"
    args = tiny_grid_args(out, "--methods", "online", "--kd-weight", "2", "--epochs", "1")
    assert main(args) == 0
    frame = pd.read_csv(out / RESULTS_CSV)
    assert len(frame) == 1 + 2 and set(frame["status"]) == {"done"}  # the teacher run and two online students
    runs = frame[frame["method"] == "online"]
    assert sorted(runs["width"]) == [16, 32] and set(runs["kd"]) == {"feature"} and set(runs["kd_weight"]) == {0.2}
    assert runs["run_id"].str.contains("-feature-online-").all()
    assert (runs["loss_kd_final"] > 0).all() and (runs["fid_lenet"] > 0).all() and (runs["train_seconds"] > 0).all()
    # its own time holds its co-trained teacher's updates: more than the teacher run's own
    assert (runs["train_own_seconds"] > frame[frame["role"] == "teacher"]["train_own_seconds"].iloc[0]).all()
    widths = [gans.build("dcgan", w, image_size=28)[0] for w in runs["width"]]
    assert list(runs["g_params"]) == [sum(p.numel() for p in g.parameters()) for g in widths]
    teacher = frame[frame["role"] == "teacher"].iloc[0]
    # trained in the scratch phase beside the teacher run, its teacher's discriminator ends where that run's does
    assert (runs["train_seconds"] == teacher["train_seconds"]).all()
    teacher_d = torch.load(out / RUNS_DIR / teacher["run_id"] / DISCRIMINATOR_FILE, weights_only=True)
    for run_id in runs["run_id"]:
        assert same_state(teacher_d, torch.load(out / RUNS_DIR / run_id / DISCRIMINATOR_FILE, weights_only=True))
    assert set(runs["run_id"]) <= set(pd.read_csv(out / "latency.csv")["run_id"])
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (out / RUNS_DIR).glob(f"*/{RESULT_FILE}")}
    assert main(args) == 0  # a finished grid: nothing is redone
    assert finished == {p.parent.name: p.stat().st_mtime_ns for p in (out / RUNS_DIR).glob(f"*/{RESULT_FILE}")}
