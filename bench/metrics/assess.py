"""Every measurement of one trained generator, as the flat metric columns of its record."""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from bench.engine.spec import SpeedSpec
from bench.engine.stopwatch import timed
from bench.metrics.measure import measure_devices, size_metrics, speed_metrics
from bench.metrics.quality import QualityEvaluator


def assess(
    generator: nn.Module,
    discriminator: nn.Module | None,
    teacher: nn.Module | None,
    evaluator: QualityEvaluator,
    speed: SpeedSpec,
    device: torch.device,
) -> dict[str, float | int | str | None]:
    """Size, cost and speed on every available device, then quality against the real data and the teacher.

    ``seconds_*`` columns say where the measuring time went (``seconds_quality_*``: the evaluator's parts).
    """
    generator.eval()
    metrics: dict = {}
    seconds: dict[str, float] = {}
    if discriminator is not None:
        with timed(seconds, "size"):
            metrics.update(asdict(size_metrics(generator, discriminator)))
    for where in measure_devices(device):
        with timed(seconds, f"speed_{where.type}"):
            metrics.update(speed_metrics(generator.to(where), where, speed))
    generator.to(device)
    metrics.update(evaluator.score_generator(generator, teacher, seconds))
    return {**metrics, **{f"seconds_{name}": value for name, value in seconds.items()}}
