"""Dataset registry: ``get_dataset(name, root, download)`` returns train/test splits as in-memory tensors.

Adding a dataset is one loader function decorated with ``@register_dataset(name)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.base.registry import Registry


@dataclass(frozen=True)
class ImageDataset:
    """Images in [-1, 1] as float32 (N, C, H, W) and integer labels (N,), for both splits."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


@dataclass(frozen=True)
class DataShape:
    """What a generator's architecture needs of its data (an ``ImageDataset`` has the same two attributes):
    recorded in ``grid.json``, it rebuilds a saved generator where the data is not at hand."""

    image_shape: tuple[int, int, int]  # (channels, height, width)
    num_classes: int


Loader = Callable[[Path, bool], ImageDataset]
DATASETS: Registry[Loader] = Registry("dataset")
register_dataset = DATASETS.register  # decorator: ``get_dataset(name, ...)`` calls ``loader(root, download)``
check_dataset = DATASETS.check


def datasets() -> list[str]:
    return DATASETS.names()


def get_dataset(name: str, root: str | Path = "datasets", download: bool = False) -> ImageDataset:
    """Load dataset ``name`` from ``root`` (fetching it only when ``download`` is true)."""
    return DATASETS[name](Path(root), download)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Map images in [-1, 1] back to uint8 pixels (exact for data that came from uint8)."""
    return ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels to float32 in [-1, 1]."""
    return pixels.float().div(127.5).sub(1.0)


# the loaders register themselves on import
from data import digits, torchvision_sets  # noqa: E402,F401

__all__ = [
    "DATASETS",
    "DataShape",
    "ImageDataset",
    "check_dataset",
    "datasets",
    "from_uint8",
    "get_dataset",
    "register_dataset",
    "to_uint8",
]
