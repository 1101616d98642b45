"""Method ``online``: a student distilled online from a teacher trained beside it (OMGD, Ren et al., ICCV 2021).

An online run trains two generators together from the first step, on the seed's batch stream:

- **the teacher** (width ``teacher_width``, initialised as the seed's teacher run is) learns from the
  discriminator with its own GAN loss, exactly as a run from scratch does (``step`` repeats ``train_step``'s
  updates for it): on a deterministic device it follows the seed's teacher run step for step;
- **the student** (width ``width``, initialised as a width run of that width is) never sees the discriminator. It
  learns only from the teacher's *current* output for the same (z, y), computed in the same step before the
  teacher's update and detached: the pixel L1 distance to the teacher's images plus ``kd_weight`` times the feature
  term of the ``feature`` objective (``distill.losses.FeatureLoss``: each teacher activation against the
  student's, lifted by a 1x1 adapter).

Only the student is the run's model: ``generator.pt`` holds it (loaded like a width generator), ``discriminator.pt``
the teacher's discriminator. The co-trained teacher and the adapters are the run's objective (``OnlineObjective``):
the generator optimiser trains them with the student (Adam updates each parameter from its own gradient alone, so
one optimiser over the three is three optimisers), and the epoch checkpoints hold them with every optimiser state,
so a stopped run resumes exactly. The teacher is not saved apart: it is the seed's teacher, trained again.

Its spec: method ``online``, ``kd`` ``feature`` (the objective whose term it uses), ``kd_weight`` the feature
term's weight against the pixel term, a tenth of the grid's ``--kd-weight`` (``FEATURE_DIVISOR``), one run per
grid width; it needs nothing finished first, so it trains in the ``scratch`` phase beside the teacher. Its losses:
``loss_d`` and ``loss_g_gan`` are the teacher's (the student has neither), ``loss_kd`` and ``loss_g`` the
student's whole loss.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bench.engine.methods import Expansion, Method, Pair, Sources, register_method
from bench.engine.models import build_models
from bench.engine.spec import RunSpec
from compress.width import load_state
from data import DataShape
from distill import build_objective
from gans import logit_loss

ONLINE = "online"
FEATURE = "feature"  # the objective whose feature term the student learns from, beside the pixel L1
# --kd-weight over this is the feature term's weight. Without a GAN loss to keep them alive, the student's
# activations give in to an L1 pull toward the teacher's (half zeros after ReLU: L1's best guess is zero) once it
# weighs like the pixel term: measured on digits (teacher 64, student 16, batch 32, 6 epochs), the student's
# images stayed at zero at weights 0.5 and 1 and tracked the teacher as closely as with pixels alone at 0.1
FEATURE_DIVISOR = 10


class OnlineObjective(nn.Module):
    """What an online run trains besides its student: the co-trained teacher generator and the feature term's 1x1
    adapters; called, the student's loss against the teacher's (detached) images and activations."""

    def __init__(self, teacher: nn.Module, features: nn.Module, feature_weight: float) -> None:
        super().__init__()
        self.teacher = teacher
        self.features = features
        self.feature_weight = feature_weight

    def forward(self, student_images, student_features, teacher_images, teacher_features) -> torch.Tensor:
        pixels = F.l1_loss(student_images, teacher_images)
        return pixels + self.feature_weight * self.features(
            student_images, student_features, teacher_images, teacher_features
        )


def objective(spec: RunSpec, generator: nn.Module, data: DataShape) -> OnlineObjective:
    """The teacher as the seed's teacher run starts (its init depends on seed and width only) and the ``feature``
    objective's adapters from the student's activations to the teacher's."""
    teacher = build_models(spec.teacher(), data)[0]
    features = build_objective(FEATURE, generator.hidden_channels(), teacher.hidden_channels())
    return OnlineObjective(teacher, features, spec.kd_weight)


def start(spec: RunSpec, data: DataShape, sources: Sources) -> Pair:
    """The student as a width run of its width starts, and the teacher's discriminator as the teacher run's."""
    return build_models(spec, data)[0], build_models(spec.teacher(), data)[1]


def step(member, real, labels, z, fake_labels, teacher_out, autocast) -> torch.Tensor:
    """One discriminator update and one update of teacher and student; returns (loss_d, the teacher's loss_g_gan,
    the student's loss_kd, the student's loss_g) on device. ``teacher_out`` (a frozen teacher's) is not used."""
    student, d, online = member.generator, member.discriminator, member.objective
    with autocast:
        fake, fake_features = online.teacher.forward_features(z, fake_labels)
        real_logits = d(real, labels)
        fake_logits = d(fake.detach(), fake_labels)
        loss_d = logit_loss(real_logits, 1.0) + logit_loss(fake_logits, 0.0)
    member.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    member.opt_d.step()

    with autocast:
        gen_logits = d(fake, fake_labels)
        loss_gan = logit_loss(gen_logits, 1.0)
        images, features = student.forward_features(z, fake_labels)
        target = [f.detach() for f in fake_features]
        loss_student = online(images, features, fake.detach(), target).float()
    member.opt_g.zero_grad(set_to_none=True)
    # the teacher's gradients come from loss_gan alone, the student's and the adapters' from loss_student alone
    (loss_gan + loss_student).backward()
    member.opt_g.step()
    return torch.stack([loss_d.float(), loss_gan.float(), loss_student, loss_student]).detach()


def load(path: Path, spec: RunSpec, data: DataShape) -> nn.Module:
    """The student saved at ``path``: a generator of the run's width, as a width run's."""
    generator, _ = build_models(spec, data)
    load_state(generator, path, f"a width-{spec.width} {spec.family} online student")
    return generator


def expand(grid: Expansion) -> list[RunSpec]:
    """One student per grid width, whatever --kd says: its objective is the method's own, its feature term weighed
    by a tenth of --kd-weight."""
    weight = grid.kd_weight / FEATURE_DIVISOR
    return [replace(grid.teacher, width=width, kd=FEATURE, kd_weight=weight, method=ONLINE) for width in grid.widths]


register_method(
    Method(
        ONLINE,
        "a student trained beside its own teacher from the first step (OMGD): the teacher learns from the "
        "discriminator, the student only from the teacher's current images (L1) and features (a tenth of "
        "--kd-weight) (--widths)",
        load,
        expand,
        phases=("scratch",),
        needs=lambda spec: None,
        start=start,
        objective=objective,
        step=step,
        step_widths=lambda spec: (spec.width, spec.teacher_width),
    )
)
