import hashlib

import pytest
import torch

import bench.engine.train as train
from bench.engine.train import BatchStream, make_member
from tests.conftest import spec, teacher_for, train_cohort

CPU = torch.device("cpu")


def fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_stream_is_a_function_of_seed_and_epoch(digits):
    def batches(seed, epoch):
        stream = BatchStream(digits.train_images, digits.train_labels, 64, 100, 10, seed)
        return [fingerprint(*batch) for batch in stream.epoch(epoch)]

    assert batches(1, 0) == batches(1, 0)
    assert batches(1, 0) != batches(1, 1)
    assert batches(1, 0) != batches(2, 0)
    assert len(batches(1, 0)) == len(digits.train_labels) // 64


def test_scratch_and_distilled_students_see_the_same_batches(digits, tmp_path, monkeypatch):
    seen: dict[str, list[str]] = {}
    real_step = train.train_step

    def spy(member, real, labels, z, fake_labels, teacher_out, autocast):
        seen.setdefault(member.spec.run_id, []).append(fingerprint(real, labels, z, fake_labels))
        return real_step(member, real, labels, z, fake_labels, teacher_out, autocast)

    monkeypatch.setattr(train, "train_step", spy)
    teacher = teacher_for(digits)
    scratch = [make_member(spec(16, "none"), tmp_path / "a", digits, CPU)]
    distilled = [make_member(spec(w, "pixel-l1"), tmp_path / f"b{w}", digits, CPU) for w in (16, 32)]
    train_cohort(scratch, digits, None, CPU, progress=False)  # trained apart, as the runner does
    train_cohort(distilled, digits, teacher, CPU, progress=False)
    sequences = list(seen.values())
    assert len(sequences) == 3 and len(sequences[0]) == len(digits.train_labels) // 64
    assert sequences[0] == sequences[1] == sequences[2]


def test_same_seed_and_width_start_from_the_same_weights(digits, tmp_path):
    a = make_member(spec(32, "none"), tmp_path / "a", digits, CPU)
    b = make_member(spec(32, "pixel-l1"), tmp_path / "b", digits, CPU)
    for x, y in zip(a.generator.state_dict().values(), b.generator.state_dict().values()):
        assert torch.equal(x, y)


def teacher_distance(generator, teacher, digits) -> float:
    """Mean L1 to the teacher in training mode (batch statistics), the mode the objective acts on."""
    noise = train.fixed_noise(100, 10, 0, CPU)
    with torch.no_grad():
        return (generator(*noise) - teacher(*noise)).abs().mean().item()


def test_distillation_moves_the_student_toward_the_teacher(digits, tmp_path):
    teacher = teacher_for(digits)
    # a large step size, so that one short epoch moves the weights far enough to see
    scratch = make_member(spec(16, "none", lr=5e-3), tmp_path / "s", digits, CPU)
    distilled = make_member(spec(16, "pixel-l1", kd_weight=100.0, lr=5e-3), tmp_path / "d", digits, CPU)
    before = teacher_distance(distilled.generator, teacher, digits)
    train_cohort([scratch, distilled], digits, teacher, CPU, progress=False)
    after_kd = teacher_distance(distilled.generator, teacher, digits)
    after_scratch = teacher_distance(scratch.generator, teacher, digits)
    # measured: 0.188 before, 0.129 distilled, 0.289 from scratch
    assert after_kd < 0.8 * before
    assert after_kd < 0.6 * after_scratch
    assert distilled.last_logged()["loss_kd"] > 0 and scratch.last_logged()["loss_kd"] == 0


def test_feature_objective_trains_its_adapters(digits, tmp_path):
    teacher = teacher_for(digits)
    member = make_member(spec(16, "feature"), tmp_path / "f", digits, CPU)
    adapters_before = [p.detach().clone() for p in member.objective.parameters()]
    assert [a.shape[:2] for a in adapters_before] == [(64, 16), (32, 8), (16, 4), (8, 2)]
    train_cohort([member], digits, teacher, CPU, progress=False)
    assert all(not torch.equal(a, p) for a, p in zip(adapters_before, member.objective.parameters()))
    kd_losses = [row[4] for row in member.log]
    assert kd_losses[-1] < kd_losses[0]


def test_a_diverging_member_stops_and_the_rest_go_on(digits, tmp_path, nan_objective):
    teacher = teacher_for(digits)
    bad = make_member(spec(16, nan_objective, epochs=2), tmp_path / "bad", digits, CPU)
    good = make_member(spec(16, "pixel-l1", epochs=2), tmp_path / "good", digits, CPU)
    train_cohort([bad, good], digits, teacher, CPU, log_every=5, progress=False)
    assert bad.diverged_step == 5
    assert good.active and good.log[-1][1] == 2 * (len(digits.train_labels) // 64)
    assert not (tmp_path / "bad" / train.GENERATOR_FILE).exists()
    assert (tmp_path / "good" / train.GENERATOR_FILE).exists()


def test_resume_from_an_epoch_checkpoint_is_exact(digits, tmp_path):
    straight = make_member(spec(16, "pixel-l1", epochs=2), tmp_path / "straight", digits, CPU)
    teacher = teacher_for(digits)
    train_cohort([straight], digits, teacher, CPU, progress=False)

    first = make_member(spec(16, "pixel-l1", epochs=1), tmp_path / "resumed", digits, CPU)
    train_cohort([first], digits, teacher, CPU, progress=False)
    # the epoch-1 checkpoint of a 1-epoch run is what a 2-epoch run killed after its first epoch leaves
    resumed = make_member(spec(16, "pixel-l1", epochs=2), tmp_path / "resumed", digits, CPU)
    assert resumed.start_epoch == 1
    train_cohort([resumed], digits, teacher, CPU, progress=False)
    for x, y in zip(straight.generator.state_dict().values(), resumed.generator.state_dict().values()):
        assert torch.equal(x, y)
    assert straight.log == resumed.log


def test_sample_grid_is_written(digits, tmp_path):
    member = make_member(spec(16, "none"), tmp_path / "m", digits, CPU)
    train_cohort([member], digits, None, CPU, samples_every_epoch=True, progress=False)
    assert (tmp_path / "m" / train.SAMPLES_FILE).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "m" / "samples_epoch001.png").is_file()
    assert (tmp_path / "m" / train.LOSSES_FILE).read_text().startswith("epoch,step,loss_d")


def test_a_stop_request_saves_every_run_at_its_step_and_resume_is_exact(digits, tmp_path, monkeypatch):
    from bench.engine import preempt

    teacher = teacher_for(digits)
    straight = [make_member(spec(w, "pixel-l1", epochs=2), tmp_path / f"straight{w}", digits, CPU) for w in (16, 32)]
    train_cohort(straight, digits, teacher, CPU, progress=False, log_every=4)

    calls = {"n": 0}
    real_step = train.train_step

    def stop_midway(member, *args):
        calls["n"] += 1
        if calls["n"] == 2 * 30:  # both members have made 30 steps of the first epoch (22 per epoch: the 8th of 2nd)
            preempt.request_stop()
        return real_step(member, *args)

    monkeypatch.setattr(train, "train_step", stop_midway)
    stopped = [make_member(spec(w, "pixel-l1", epochs=2), tmp_path / f"stopped{w}", digits, CPU) for w in (16, 32)]
    try:
        with pytest.raises(preempt.Preempted, match="stopped at step 8 of epoch 2"):
            train_cohort(stopped, digits, teacher, CPU, progress=False, log_every=4)
    finally:
        preempt._requested = False
    monkeypatch.setattr(train, "train_step", real_step)
    resumed = [make_member(spec(w, "pixel-l1", epochs=2), tmp_path / f"stopped{w}", digits, CPU) for w in (16, 32)]
    assert [(m.start_epoch, m.start_step) for m in resumed] == [(1, 8), (1, 8)]
    train_cohort(resumed, digits, teacher, CPU, progress=False, log_every=4)
    for a, b in zip(straight, resumed, strict=True):
        for x, y in zip(a.generator.state_dict().values(), b.generator.state_dict().values(), strict=True):
            assert torch.equal(x, y)
        assert a.log == b.log


def test_an_unreadable_state_file_is_moved_aside_and_the_run_starts_afresh(digits, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / train.STATE_FILE).write_bytes(b"torn")
    with pytest.warns(RuntimeWarning, match="state.pt is unreadable"):
        member = make_member(spec(16, "none"), run, digits, CPU)
    assert member.start_epoch == 0 and not (run / train.STATE_FILE).exists()
    assert len(list(run.glob("state.pt.unreadable-*"))) == 1
