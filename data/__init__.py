"""Dataset registry: ``get_dataset(name, root, download, image_size)`` returns train/test splits as in-memory tensors.

Adding a dataset is one loader function decorated with ``@register_dataset(name, size)``: it is called as
``loader(root, download, image_size)`` and returns square images of that size (``fit_to`` resizes uint8 pixels);
``size`` is the image size it gives when none is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

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
    split: str = ""  # how the train/test split was made: recorded in grid.json

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


@dataclass(frozen=True)
class DataShape:
    """What a generator's architecture needs of its data (an ``ImageDataset`` has the same two attributes):
    recorded in ``grid.json``, it rebuilds a saved generator where the data is not at hand."""

    image_shape: tuple[int, int, int]  # (channels, height, width)
    num_classes: int


Loader = Callable[[Path, bool, int], ImageDataset]  # (root, download, image size) -> images of that size
DATASETS: Registry[Loader] = Registry("dataset")
SIZES: dict[str, int] = {}  # dataset -> the image size it gives when none is asked for
check_dataset = DATASETS.check


def register_dataset(name: str, size: int) -> Callable[[Loader], Loader]:
    """Decorator: ``get_dataset(name, ...)`` calls ``loader(root, download, image_size)``, ``image_size`` being
    ``size`` unless one is asked for."""

    def add(loader: Loader) -> Loader:
        DATASETS.add(name, loader)
        SIZES[name] = size
        return loader

    return add


def datasets() -> list[str]:
    return DATASETS.names()


def default_size(name: str) -> int:
    """The image size dataset ``name`` gives when none is asked for (its native one, for a fixed dataset)."""
    check_dataset(name)
    return SIZES[name]


def get_dataset(
    name: str, root: str | Path = "datasets", download: bool = False, image_size: int | None = None
) -> ImageDataset:
    """Load dataset ``name`` from ``root`` (fetching it only when ``download`` is true), its images
    ``image_size`` x ``image_size`` (None: ``default_size(name)``)."""
    size = default_size(name) if image_size is None else image_size
    dataset = DATASETS[name](Path(root), download, size)
    if dataset.image_shape[1:] != (size, size):  # a loader that ignored the size asked for
        raise ValueError(f"dataset {name!r} gave {dataset.image_shape[1:]} images, not {size}x{size}")
    return dataset


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Map images in [-1, 1] back to uint8 pixels (exact for data that came from uint8)."""
    return ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels to float32 in [-1, 1]."""
    return pixels.float().div(127.5).sub(1.0)


RESIZE_CHUNK = 4096  # images resized at once: a whole 60,000-image split in float would take gigabytes


def fit_to(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) pixels resized so that the shorter side is ``size`` (bilinear, antialiased when
    shrinking), centre-cropped to ``size`` x ``size`` and rounded back to uint8; unchanged when already that size."""
    height, width = pixels.shape[-2:]
    if (height, width) == (size, size):
        return pixels
    scale = size / min(height, width)
    resized = (max(size, round(height * scale)), max(size, round(width * scale)))
    top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
    chunks = []
    for start in range(0, len(pixels), RESIZE_CHUNK):
        chunk = F.interpolate(
            pixels[start : start + RESIZE_CHUNK].float(), size=resized, mode="bilinear", align_corners=False,
            antialias=True,
        )  # fmt: skip
        chunks.append(chunk[..., top : top + size, left : left + size].round().clamp(0, 255).to(torch.uint8))
    return torch.cat(chunks) if chunks else pixels.new_empty((0, pixels.shape[1], size, size))


# the loaders register themselves on import
from data import digits  # noqa: E402,F401  isort: skip
from data import torchvision_sets  # noqa: E402,F401  isort: skip
from data import imagefolder  # noqa: E402,F401  isort: skip  (your own images: listed last)

__all__ = [
    "DATASETS",
    "DataShape",
    "ImageDataset",
    "check_dataset",
    "datasets",
    "default_size",
    "fit_to",
    "from_uint8",
    "get_dataset",
    "register_dataset",
    "to_uint8",
]
