"""Quality scores added by registration: a metric declared once in the metric registry
(``bench.base.metric_registry.register_metric``, its backbone None) and computed by a function registered here
under its column, without editing the evaluator.

A scorer gets ``Scored`` (the generated images as uint8 pixels and their labels, the primary backbone's features of
them and of as many real training images, the domain classifier) and returns its column's value, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bench.base.registry import Registry


@dataclass(frozen=True)
class Scored:
    """What a scorer may read of one generated set."""

    pixels: torch.Tensor  # (n, C, H, W) uint8: the generated images as the evaluator scores them
    labels: torch.Tensor  # (n,) the classes they were generated for
    fake_features: torch.Tensor  # the primary backbone's features of the generated images
    real_features: torch.Tensor  # ... and of as many real training images
    classifier: nn.Module  # the primary backbone's classifier: images in [-1, 1] -> logits


Scorer = Callable[[Scored], float | None]
SCORERS: Registry[Scorer] = Registry("quality scorer")


def register_scorer(column: str) -> Callable[[Scorer], Scorer]:
    """Decorator: the function that computes ``column`` (a quality metric of the registry) for every model."""
    return SCORERS.register(column)
