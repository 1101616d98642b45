"""Every measurement of one trained generator, as the flat metric columns of its record."""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from bench.measure import measure_devices, size_metrics, speed_metrics
from bench.quality import QualityEvaluator
from bench.spec import SpeedSpec


def assess(
    generator: nn.Module,
    discriminator: nn.Module | None,
    teacher: nn.Module | None,
    evaluator: QualityEvaluator,
    speed: SpeedSpec,
    device: torch.device,
) -> dict[str, float | int | str | None]:
    """Size, cost and speed on every available device, then quality against the real data and the teacher."""
    generator.eval()
    metrics: dict = {}
    if discriminator is not None:
        metrics.update(asdict(size_metrics(generator, discriminator)))
    for where in measure_devices(device):
        metrics.update(speed_metrics(generator.to(where), where, speed))
    generator.to(device)
    metrics.update(evaluator.score_generator(generator, teacher))
    return metrics
