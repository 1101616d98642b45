"""scikit-learn's 1,797 real 8x8 handwritten digits, upsampled to 28x28 (or the size asked for): the embedded offline
default."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from data import ImageDataset, from_uint8, register_dataset

SPLIT_SEED = 0
TEST_FRACTION = 0.2
SIZE = 28


@register_dataset("digits", SIZE)
def load(root: Path, download: bool, size: int = SIZE) -> ImageDataset:
    """Stratified 80/20 split with a fixed seed; pixels 0..16 become uint8 0..255 before upsampling from 8x8 to
    ``size`` x ``size``."""
    from sklearn.datasets import load_digits  # here, not at import: listing the datasets needs no scikit-learn
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32)[:, None] * (255.0 / 16.0)
    # bilinear upsampling to the MNIST shape, then rounded to uint8 so the data is pixel-exact like MNIST
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = from_uint8(images.round().clamp(0, 255))
    labels = torch.tensor(bunch.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        range(len(labels)), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=bunch.target
    )
    train_idx, test_idx = torch.tensor(train_idx), torch.tensor(test_idx)
    split = f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%}, seed {SPLIT_SEED}"
    return ImageDataset("digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], 10, split)
