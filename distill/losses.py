"""The built-in objectives: none, pixel-l1 (the original), pixel-mse, and feature (through 1x1 adapters)."""

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
