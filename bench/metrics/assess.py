"""Every measurement of one trained generator but its speed, as the flat metric columns of its record.

Speed is not measured here: every generator of a grid is timed together once they are all trained
(``bench.latency``), so that each sees the same machine load.
"""

from __future__ import annotations

from dataclasses import asdict

from torch import nn

from bench.engine.stopwatch import timed
from bench.metrics.measure import size_metrics
from bench.metrics.quality import QualityEvaluator


def assess(
    generator: nn.Module,
    discriminator: nn.Module | None,
    teacher: nn.Module | None,
    evaluator: QualityEvaluator,
) -> dict[str, float | int | str | None]:
    """Size and cost, then quality against the real data and the teacher.

    ``seconds_*`` columns say where the measuring time went (``seconds_quality_*``: the evaluator's parts).
    """
    generator.eval()
    metrics: dict = {}
    seconds: dict[str, float] = {}
    if discriminator is not None:
        with timed(seconds, "size"):
            metrics.update(asdict(size_metrics(generator, discriminator)))
    metrics.update(evaluator.score_generator(generator, teacher, seconds))
    return {**metrics, **{f"seconds_{name}": value for name, value in seconds.items()}}
