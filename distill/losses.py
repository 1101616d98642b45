"""The built-in objectives: none, pixel-l1 (the original), pixel-mse, feature (through 1x1 adapters), and
kernel-alignment (CAT, Jin et al. CVPR 2021: no adapter, so student and teacher widths may differ)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from distill import register_objective

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class PixelLoss(nn.Module):
    """Distance between the student's and the teacher's images for the same (z, y)."""

    def __init__(self, distance: Distance) -> None:
        super().__init__()
        self.distance = distance

    def forward(self, student_images, student_features, teacher_images, teacher_features) -> torch.Tensor:
        return self.distance(student_images, teacher_images)


class FeatureLoss(nn.Module):
    """Mean distance between each teacher activation and the student's, lifted by a learned 1x1 conv.

    The adapters are trained with the generator (their parameters join its optimiser) and are not part of
    the deployed student, so they count in no size or speed measurement.
    """

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int], distance: Distance):
        super().__init__()
        self.distance = distance
        self.adapters = nn.ModuleList(
            nn.Conv2d(s, t, kernel_size=1, bias=False) for s, t in zip(student_channels, teacher_channels)
        )

    def forward(self, student_images, student_features, teacher_images, teacher_features) -> torch.Tensor:
        losses = [
            self.distance(adapter(s), t) for adapter, s, t in zip(self.adapters, student_features, teacher_features)
        ]
        return torch.stack(losses).mean()


def kernel_alignment(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CAT's kernel alignment of two activations of one batch: the cosine of their B x B Gram matrices (each
    sample flattened, no centring), in [0, 1] for real activations; 1 when one is the other rotated or scaled."""
    x, y = x.flatten(1).float(), y.flatten(1).float()
    gram_x, gram_y = x @ x.T, y @ y.T
    return (gram_x * gram_y).sum() / (torch.linalg.norm(gram_x) * torch.linalg.norm(gram_y)).clamp_min(1e-12)


class KernelAlignmentLoss(nn.Module):
    """1 - the mean kernel alignment of every hidden activation of the student with the teacher's: CAT's -KA
    shifted by a constant (the same gradients), so that like every objective it is 0 at a perfect copy."""

    def forward(self, student_images, student_features, teacher_images, teacher_features) -> torch.Tensor:
        pairs = [kernel_alignment(s, t) for s, t in zip(student_features, teacher_features, strict=True)]
        return 1.0 - torch.stack(pairs).mean()


@register_objective("none")
def scratch(student_channels, teacher_channels) -> None:
    return None


@register_objective("pixel-l1")
def pixel_l1(student_channels, teacher_channels) -> nn.Module:
    return PixelLoss(F.l1_loss)


@register_objective("pixel-mse")
def pixel_mse(student_channels, teacher_channels) -> nn.Module:
    return PixelLoss(F.mse_loss)


@register_objective("feature")
def feature_l1(student_channels, teacher_channels) -> nn.Module:
    return FeatureLoss(student_channels, teacher_channels, F.l1_loss)


@register_objective("feature-mse")
def feature_mse(student_channels, teacher_channels) -> nn.Module:
    return FeatureLoss(student_channels, teacher_channels, F.mse_loss)


@register_objective("kernel-alignment")
def kernel_alignment_objective(student_channels, teacher_channels) -> nn.Module:
    return KernelAlignmentLoss()
