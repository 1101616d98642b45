"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision, read whole into tensors (no per-item transforms); resized
(``fit_to``) only when another image size is asked for."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from bench.base.errors import DataUnavailableError, first_line
from data import ImageDataset, fit_to, from_uint8, register_dataset

# what torchvision raises on files it found but cannot parse (a truncated or empty idx file, a gzip file under the
# uncompressed name, a cut pickle): its own RuntimeErrors only ever say "not found" or that a download failed
_UNREADABLE = (AssertionError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError)


def _dataset_class(name: str) -> type:
    """A torchvision dataset class, imported when a loader runs: listing the registry needs no torchvision."""
    from torchvision import datasets

    return getattr(datasets, name)


def _unreadable(name: str, root: Path, why: str) -> DataUnavailableError:
    # torchvision downloads nothing over files that exist (MNIST checks only that they do): they must go first
    return DataUnavailableError(
        f"dataset {name!r} under --data-root {root} cannot be read ({why}): remove its files and pass --download "
        "to fetch it again"
    )


def _open(cls: type, name: str, root: Path, train: bool, download: bool):
    try:
        return cls(str(root), train=train, download=download)
    except RuntimeError as err:
        if "not found" not in str(err) and not str(err).startswith("Error downloading"):
            raise _unreadable(name, root, first_line(err)) from None  # torch could not shape the bytes it read
        # torchvision's "Dataset not found" when files are missing (CIFAR-10's also when a checksum differs)
        hint = "pass --download to fetch it" if not download else f"download failed: {err}"
        raise DataUnavailableError(f"dataset {name!r} not found under --data-root {root}: {hint}") from None
    except OSError as err:  # network failure during download
        raise DataUnavailableError(f"dataset {name!r} could not be downloaded to {root}: {err}") from None
    except _UNREADABLE as err:
        raise _unreadable(name, root, first_line(err)) from None


def _as_nchw(images, size: int) -> torch.Tensor:
    pixels = torch.as_tensor(np.asarray(images))
    pixels = pixels[:, None] if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
    return from_uint8(fit_to(pixels.contiguous(), size))


def _load(class_name: str, name: str, root: Path, download: bool, size: int) -> ImageDataset:
    cls = _dataset_class(class_name)
    train, test = (_open(cls, name, root, split, download) for split in (True, False))
    num_classes = len(train.classes)
    splits = []
    for split, found in (("train", train), ("test", test)):
        images, labels = _as_nchw(found.data, size), torch.as_tensor(np.asarray(found.targets), dtype=torch.long)
        # torchvision reads an image file and a label file of different lengths, or labels past the class list,
        # without a word: a conditional GAN would fail on them mid-training, or learn from misaligned pairs
        if len(images) != len(labels):
            raise _unreadable(name, root, f"its {split} split has {len(images)} images but {len(labels)} labels")
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
            raise _unreadable(name, root, f"its {split} labels are not all in 0..{num_classes - 1}")
        splits += [images, labels]
    return ImageDataset(name, *splits, num_classes, "the published train/test split")


@register_dataset("mnist", 28)
def load_mnist(root: Path, download: bool, size: int = 28) -> ImageDataset:
    return _load("MNIST", "mnist", root, download, size)


@register_dataset("fashion-mnist", 28)
def load_fashion_mnist(root: Path, download: bool, size: int = 28) -> ImageDataset:
    return _load("FashionMNIST", "fashion-mnist", root, download, size)


@register_dataset("cifar10", 32)
def load_cifar10(root: Path, download: bool, size: int = 32) -> ImageDataset:
    return _load("CIFAR10", "cifar10", root, download, size)
