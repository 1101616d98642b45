"""Every registered distillation objective, on a student/teacher pair of every registered family."""

import pytest
import torch

import gans
from distill import build_objective, objectives
from gans import FAMILIES

TEACHER_WIDTH, STUDENT_WIDTH = 64, 16


def pair(family: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return gans.build(family, STUDENT_WIDTH)[0], gans.build(family, TEACHER_WIDTH)[0].eval()


@pytest.mark.parametrize("family", gans.families())
@pytest.mark.parametrize("name", objectives())
def test_objective_is_a_finite_scalar_that_trains_the_student(name, family):
    student, teacher = pair(family)
    objective = build_objective(name, student.hidden_channels(), FAMILIES[family].hidden_channels(TEACHER_WIDTH))
    if name == "none":  # scratch: no teacher, nothing to build
        assert objective is None
        return
    z, labels = torch.randn(4, student.nz), torch.arange(4)
    with torch.no_grad():
        target = teacher.forward_features(z, labels)
    loss = objective(*student.forward_features(z, labels), *target)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    first = next(student.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", [n for n in objectives() if n != "none"])
def test_objective_is_zero_when_the_student_draws_the_teachers_images(name):
    """A pixel objective is 0 at a perfect copy; a feature one is 0 where its adapters map features exactly."""
    teacher = pair("dcgan")[1]
    channels = teacher.hidden_channels()
    objective = build_objective(name, channels, channels)
    for module in objective.modules():  # identity adapters: the student's features are the teacher's
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.dirac_(module.weight)
    z, labels = torch.randn(4, teacher.nz), torch.arange(4)
    with torch.no_grad():
        out = teacher.forward_features(z, labels)
        assert objective(*out, *out).item() == pytest.approx(0.0, abs=1e-7)


def test_kernel_alignment_is_one_for_the_same_activations_rotated_or_scaled():
    from distill.losses import kernel_alignment

    torch.manual_seed(0)
    x = torch.randn(6, 8, 4, 4)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8))  # an orthogonal mix of the channels
    rotated = torch.einsum("bchw,cd->bdhw", x, rotation)
    assert kernel_alignment(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert kernel_alignment(x, rotated).item() == pytest.approx(1.0, abs=1e-5)
    assert kernel_alignment(x, 7.5 * x).item() == pytest.approx(1.0, abs=1e-5)
    assert kernel_alignment(x, torch.randn(6, 3, 8, 8)).item() < 0.99  # another width, another batch geometry


def test_a_kernel_alignment_step_raises_the_alignment():
    objective = build_objective("kernel-alignment", [8], [16])
    torch.manual_seed(1)
    teacher = [torch.randn(6, 16, 4, 4)]
    student = torch.randn(6, 8, 4, 4, requires_grad=True)
    before = objective(None, [student], None, teacher)
    before.backward()
    with torch.no_grad():
        after = objective(None, [student - 5.0 * student.grad], None, teacher)
    assert 0 <= after < before
