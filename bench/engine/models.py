"""The freshly initialised models of a run spec: what every method and the training loop start from.

Kept apart from the training loop so that code which only needs a run's architecture (the compression methods'
registry, ``--help``) does not import the loop's dependencies.
"""

from __future__ import annotations

import torch
from torch import nn

import gans
from bench.engine.spec import RunSpec
from data import DataShape, ImageDataset


def build_models(spec: RunSpec, data: ImageDataset | DataShape) -> tuple[nn.Module, nn.Module]:
    """The run's freshly initialised pair; the init depends on (seed, width) only, not on the objective."""
    channels, size, _ = data.image_shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return gans.build(
            spec.family, spec.width, disc_width=spec.disc_width, num_classes=data.num_classes,
            channels=channels, image_size=size,
        )  # fmt: skip


def stream_seed(seed: int, epoch: int, salt: int = 0) -> int:
    """A 63-bit seed for one epoch of one run seed (a ``salt`` per stream); distinct (seed, epoch, salt) never
    collide in practice."""
    return (seed * 1_000_003 + epoch * 7_919 + salt * 104_729) % (2**63 - 1)


def count_params(module: nn.Module) -> int:
    """Parameters of ``module``: what every size and compression ratio of the suite counts."""
    return sum(p.numel() for p in module.parameters())
