"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision, read whole into tensors (no per-item transforms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.base.errors import DataUnavailableError
from data import ImageDataset, from_uint8, register_dataset


def _dataset_class(name: str) -> type:
    """A torchvision dataset class, imported when a loader runs: listing the registry needs no torchvision."""
    from torchvision import datasets

    return getattr(datasets, name)


def _open(cls: type, name: str, root: Path, train: bool, download: bool):
    try:
        return cls(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found" when files are missing
        hint = "pass --download to fetch it" if not download else f"download failed: {err}"
        raise DataUnavailableError(f"dataset {name!r} not found under --data-root {root}: {hint}") from None
    except OSError as err:  # network failure during download
        raise DataUnavailableError(f"dataset {name!r} could not be downloaded to {root}: {err}") from None


def _as_nchw(images) -> torch.Tensor:
    pixels = torch.as_tensor(np.asarray(images))
    pixels = pixels[:, None] if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
    return from_uint8(pixels.contiguous())


def _load(class_name: str, name: str, root: Path, download: bool) -> ImageDataset:
    cls = _dataset_class(class_name)
    train, test = (_open(cls, name, root, split, download) for split in (True, False))
    return ImageDataset(
        name,
        _as_nchw(train.data),
        torch.as_tensor(np.asarray(train.targets), dtype=torch.long),
        _as_nchw(test.data),
        torch.as_tensor(np.asarray(test.targets), dtype=torch.long),
        len(train.classes),
    )


@register_dataset("mnist")
def load_mnist(root: Path, download: bool) -> ImageDataset:
    return _load("MNIST", "mnist", root, download)


@register_dataset("fashion-mnist")
def load_fashion_mnist(root: Path, download: bool) -> ImageDataset:
    return _load("FashionMNIST", "fashion-mnist", root, download)


@register_dataset("cifar10")
def load_cifar10(root: Path, download: bool) -> ImageDataset:
    return _load("CIFAR10", "cifar10", root, download)
