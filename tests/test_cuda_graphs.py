"""The graph-captured training path: everything around the capture runs here on the CPU; the capture itself
(and graph-replayed latency) on CUDA only.

On the CPU a stand-in for ``GraphedStep`` does what the real one does except recording kernels: it warms the
step up on static input copies, undoes the warm-up, and then refills those static inputs before every call.
Training through it must be bit-identical to eager training, which pins down the snapshot, the warm-up, the
static inputs, the re-capture when the active members change, and the losses read back for logging.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import bench.engine.train as train
from bench.engine import cuda_graphs
from bench.engine.cuda_graphs import Branches, StateSnapshot, make_capturable, warm_up
from bench.engine.train import LoopOptions, TrainGroup, cohort_step, make_member, precision_autocast, train_cohorts
from tests.conftest import spec, teacher_for

CPU = torch.device("cpu")
CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


def state_of(member) -> list[torch.Tensor]:
    """Every tensor a step changes: weights, batch-norm buffers, adapters, optimiser moments and step counts."""
    tensors = [t.clone() for module in (member.generator, member.discriminator) for t in module.state_dict().values()]
    for optimizer in (member.opt_g, member.opt_d):
        for state in optimizer.state.values():
            tensors += [v.clone() for v in state.values() if isinstance(v, torch.Tensor)]
    return tensors


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def first_batch(digits, member_spec):
    stream = train.BatchStream(digits.train_images, digits.train_labels, member_spec.batch_size, 100, 10, 7)
    return next(stream.epoch(0))


class StandInGraph:
    """``GraphedStep`` without the GPU: warm-up and restore, then static inputs refilled before each call."""

    captures = 0

    def __init__(self, step, inputs):
        self.step, self.inputs = step, inputs

    @classmethod
    def capture(cls, step, batches, snapshot):
        cls.captures += 1
        inputs = [tuple(t.clone() for t in batch) for batch in batches]
        warm_up(step, inputs, snapshot)
        return cls(step, inputs)

    def __call__(self, batches):
        for static, batch in zip(self.inputs, batches, strict=True):
            for target, source in zip(static, batch, strict=True):
                target.copy_(source)
        return self.step(self.inputs)


@pytest.fixture
def stand_in_graphs(monkeypatch):
    monkeypatch.setattr(cuda_graphs, "graphs_supported", lambda device: True)
    monkeypatch.setattr(cuda_graphs, "GraphedStep", StandInGraph)
    StandInGraph.captures = 0
    return StandInGraph


def test_warm_up_is_undone_for_a_fresh_and_for_a_stepped_member(digits, tmp_path):
    teacher = teacher_for(digits)
    autocast = precision_autocast("fp32", CPU)
    for name, steps_before in (("fresh", 0), ("stepped", 2)):
        member = make_member(spec(16, "feature"), tmp_path / name, digits, CPU)
        batch = first_batch(digits, member.spec)

        def step(batches, member=member):
            return cohort_step([TrainGroup([member], teacher)], batches, autocast)

        for _ in range(steps_before):
            step([batch])
        before = state_of(member)
        modules = [member.generator, member.discriminator, member.objective]
        snapshot = StateSnapshot.take(modules, [member.opt_g, member.opt_d])
        warm_up(step, [batch], snapshot)
        after = state_of(member)
        if steps_before == 0:  # the warm-up created the optimiser state: it must read as never stepped
            assert len(after) > len(before)
            assert all(torch.count_nonzero(t) == 0 for t in after[len(before) :])
            after = after[: len(before)]
        assert_same(before, after)


def test_a_restored_member_steps_exactly_like_a_fresh_one(digits, tmp_path):
    teacher = teacher_for(digits)
    fresh = make_member(spec(16, "pixel-l1"), tmp_path / "a", digits, CPU)
    warmed = make_member(spec(16, "pixel-l1"), tmp_path / "b", digits, CPU)
    batch = first_batch(digits, fresh.spec)
    autocast = precision_autocast("fp32", CPU)

    def step_of(member):
        return lambda batches: cohort_step([TrainGroup([member], teacher)], batches, autocast)

    snapshot = StateSnapshot.take([warmed.generator, warmed.discriminator], [warmed.opt_g, warmed.opt_d])
    warm_up(step_of(warmed), [batch], snapshot)
    assert torch.equal(step_of(fresh)([batch])[0], step_of(warmed)([batch])[0])
    assert_same(state_of(fresh), state_of(warmed))


def test_graphed_training_equals_eager_training_bit_for_bit(digits, tmp_path, stand_in_graphs):
    teacher = teacher_for(digits)

    def trained(tag, cuda_graphs):
        members = [make_member(spec(w, kd, epochs=2), tmp_path / f"{tag}{w}{kd}", digits, CPU)
                   for w in (16, 32) for kd in ("none", "pixel-l1")]  # fmt: skip
        options = LoopOptions(progress=False, cuda_graphs=cuda_graphs, log_every=3)
        train_cohorts([TrainGroup(members, teacher)], digits, CPU, options)
        return members

    eager, graphed = trained("eager", False), trained("graphed", True)
    assert stand_in_graphs.captures == 1  # one capture serves every step of both epochs
    for a, b in zip(eager, graphed, strict=True):
        assert_same(state_of(a), state_of(b))
        assert a.log == b.log


def test_a_diverged_member_leaves_the_graph_and_the_rest_trains_on(digits, tmp_path, stand_in_graphs, nan_objective):
    teacher = teacher_for(digits)
    bad = make_member(spec(16, nan_objective, epochs=2), tmp_path / "bad", digits, CPU)
    good = make_member(spec(16, "pixel-l1", epochs=2), tmp_path / "good", digits, CPU)
    alone = make_member(spec(16, "pixel-l1", epochs=2), tmp_path / "alone", digits, CPU)
    options = LoopOptions(progress=False, log_every=5)
    train_cohorts([TrainGroup([bad, good], teacher)], digits, CPU, options)
    train_cohorts([TrainGroup([alone], teacher)], digits, CPU, LoopOptions(progress=False, log_every=5))
    assert bad.diverged_step == 5
    assert stand_in_graphs.captures == 3  # both members, then the good one alone; then the run alone
    assert_same(state_of(good), state_of(alone))


def test_groups_of_several_seeds_train_as_each_would_alone(digits, tmp_path, stand_in_graphs):
    teacher = teacher_for(digits)
    options = LoopOptions(progress=False)

    def members(tag):
        return {seed: [make_member(spec(16, kd, seed=seed), tmp_path / f"{tag}{seed}{kd}", digits, CPU)
                       for kd in ("none", "pixel-l1")] for seed in (1, 2)}  # fmt: skip

    together, apart = members("together"), members("apart")
    train_cohorts([TrainGroup(together[seed], teacher) for seed in (1, 2)], digits, CPU, options)
    for seed in (1, 2):
        train_cohorts([TrainGroup(apart[seed], teacher)], digits, CPU, options)
    for seed in (1, 2):
        for a, b in zip(together[seed], apart[seed], strict=True):
            assert_same(state_of(a), state_of(b))
    assert not torch.equal(together[1][0].generator.blocks[0][0].weight, together[2][0].generator.blocks[0][0].weight)


def test_a_failed_capture_warns_once_and_trains_eagerly(digits, tmp_path, monkeypatch):
    def broken(step, batches, snapshot):
        warm_up(step, batches, snapshot)
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(cuda_graphs, "graphs_supported", lambda device: True)
    monkeypatch.setattr(cuda_graphs.GraphedStep, "capture", staticmethod(broken))
    eager = make_member(spec(16, "none"), tmp_path / "eager", digits, CPU)
    fallen = make_member(spec(16, "none"), tmp_path / "fallen", digits, CPU)
    train_cohorts([TrainGroup([eager])], digits, CPU, LoopOptions(progress=False, cuda_graphs=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_cohorts([TrainGroup([fallen])], digits, CPU, LoopOptions(progress=False))
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1
    assert "CUDA graph capture failed, training eagerly (RuntimeError: operation not permitted" in messages[0]
    assert "--no-cuda-graphs" in messages[0] and "more detail" not in messages[0]
    assert_same(state_of(eager), state_of(fallen))


def test_capturable_mode_is_switched_on_for_every_group():
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([weight])
    weight.grad = torch.ones(3)
    optimizer.step()
    make_capturable(optimizer)
    assert all(group["capturable"] for group in optimizer.param_groups)
    assert optimizer.state[weight]["step"].device == weight.device


def test_branches_are_no_ops_off_cuda():
    branches = Branches(CPU, 4)
    assert branches.streams == []
    branches.fork()
    with branches.branch(3):
        value = torch.ones(2) * 2
    branches.join()
    assert value.tolist() == [2.0, 2.0]


def _digits_like():
    from data import get_dataset

    return get_dataset("digits")


@CUDA_ONLY
def test_captured_training_tracks_eager_training_on_cuda(digits, tmp_path):
    cuda = torch.device("cuda")

    def trained(tag: str, options: LoopOptions):
        members = [make_member(spec(w, epochs=1), Path(tmp_path) / f"{tag}{w}", digits, cuda) for w in (16, 64)]
        train_cohorts([TrainGroup(members)], digits, cuda, options)
        return members

    eager = trained("eager", LoopOptions(progress=False, cuda_graphs=False))
    for tag in ("graphs", "streams"):
        graphed = trained(tag, LoopOptions(progress=False, concurrent=tag == "streams"))
        for a, b in zip(eager, graphed, strict=True):
            for x, y in zip(a.generator.parameters(), b.generator.parameters(), strict=True):
                assert (x - y).abs().max().item() < 0.05  # TF32 and atomics: close, not bit-identical
            assert len(a.log) == len(b.log)


def test_a_state_saved_by_a_graphed_run_resumes_on_the_cpu(digits, tmp_path):
    member = make_member(spec(16, "none", epochs=2), tmp_path / "run", digits, CPU)
    for optimizer in (member.opt_g, member.opt_d):
        make_capturable(optimizer)  # what a capture on a GPU leaves in the optimisers it saves
    member.checkpoint(1)
    resumed = make_member(spec(16, "none", epochs=2), tmp_path / "run", digits, CPU)
    assert resumed.start_epoch == 1
    assert not any(group["capturable"] for group in (*resumed.opt_g.param_groups, *resumed.opt_d.param_groups))
    train_cohorts([TrainGroup([resumed])], digits, CPU, LoopOptions(progress=False))
    assert resumed.log[-1][1] == 2 * (len(digits.train_labels) // 64)


def test_a_group_with_no_member_at_a_step_waits_while_the_others_train(digits, tmp_path, stand_in_graphs):
    # seed 1's run resumes at epoch 1 (its first epoch done earlier); seed 2's starts at 0: for a whole epoch
    # the loop steps one group alone
    ahead = make_member(spec(16, "none", seed=1, epochs=1), tmp_path / "ahead", digits, CPU)
    train_cohorts([TrainGroup([ahead])], digits, CPU, LoopOptions(progress=False))
    resumed = make_member(spec(16, "none", seed=1, epochs=2), tmp_path / "ahead", digits, CPU)
    fresh = make_member(spec(16, "none", seed=2, epochs=2), tmp_path / "fresh", digits, CPU)
    alone = make_member(spec(16, "none", seed=2, epochs=2), tmp_path / "alone", digits, CPU)
    assert resumed.start_epoch == 1
    train_cohorts([TrainGroup([resumed]), TrainGroup([fresh])], digits, CPU, LoopOptions(progress=False))
    train_cohorts([TrainGroup([alone])], digits, CPU, LoopOptions(progress=False))
    assert_same(state_of(fresh), state_of(alone))
    assert resumed.log[-1][1] == fresh.log[-1][1] == 2 * (len(digits.train_labels) // 64)
