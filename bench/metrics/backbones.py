"""The domain backbones the quality metrics rest on: each one architecture and one training recipe, registered once.

A backbone is a small classifier trained on the real training split (``bench/metrics/classifier.py`` trains,
caches and serves it to torch-fidelity); its 128-d embedding is what FID, KID and precision/recall compare and
its logits are what the Inception Score reads. Two backbones of different architecture and training let the
report ask whether a ranking of generators is a property of the generators or of one feature network.
Adding a backbone is one ``register_backbone`` call below, plus its ``*_{name}`` metrics in
``bench/base/metric_registry.py``.

- ``lenet`` (``LeNet``): two strided 5x5 convolutions and two linear layers; Adam with a one-cycle learning rate
  (peak 3e-3), batch 128, at least 3 epochs and 150 steps (MNIST: 3 epochs, ~1,400 steps; digits: 14 epochs),
  random shifts of up to 1 pixel.
- ``resnet`` (``ResNet``): a strided 3x3 stem and three residual stages of two basic blocks (8, 16, 32 channels,
  batch norm), a 1x1 convolution to 128 channels, global average pooling, a linear head; SGD with Nesterov
  momentum 0.9, weight decay 5e-4 and a cosine learning rate from 0.1, label smoothing 0.1, batch 64, at
  least 2 epochs and 300 steps (MNIST: 2 epochs, ~1,900 steps; digits: 14 epochs), random shifts of up to 2
  pixels, seeded with ``seed + 1`` so that no random draw is shared with the LeNet of the same seed.

Both are built for 28x28 or 32x32 images. 64x64 images are averaged 2x2 down to 32x32 (the exact area resize)
before either network sees them, in one place (``DomainClassifier.fit``), for training and for features alike: a
backbone on 64x64 data costs what it costs on CIFAR-10, and its metrics compare what a 32x32 view of the images
shows (finer detail is left to the Inception, CLIP and DINOv2 networks, which resize every input themselves).

Every recipe is fixed: a backbone's ``arch`` tag is part of its cache key, so it is bumped whenever the
architecture or the recipe changes. Torch only, no torch-fidelity: ``bench/engine/spec.py`` reads the names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR

from bench.base.metric_registry import PRIMARY_BACKBONE
from bench.base.registry import Registry

FEATURE_DIM = 128
PRIMARY = PRIMARY_BACKBONE  # class consistency, density/coverage and per-class FID rest on it: every evaluator has it


IMAGE_SIZES = (28, 32, 64)
INPUT_SIZES = {28: 28, 32: 32, 64: 32}  # image size -> the size the network is built for (64: averaged 2x2)


class DomainClassifier(nn.Module):
    """A classifier of (C, 28|32|64, 28|32|64) images in [-1, 1]: ``body`` gives the 128-d embedding, ``head`` the
    logits. ``input_size`` is the size ``body`` is built for: the image size, or 32 for 64x64 images (``fit``)."""

    body: nn.Module
    head: nn.Module

    def __init__(self, channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        if image_size not in IMAGE_SIZES:
            raise ValueError(f"{type(self).__name__} takes 28x28, 32x32 or 64x64 images, not {image_size}x{image_size}")
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.input_size = INPUT_SIZES[image_size]

    def fit(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` at the network's input size: 64x64 images averaged over 2x2 blocks to 32x32, others unchanged."""
        factor = self.image_size // self.input_size
        return F.avg_pool2d(x, factor) if factor > 1 else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding (N, 128): what FID, KID and precision/recall compare."""
        return self.body(self.fit(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return h, self.head(h)


class LeNet(DomainClassifier):
    """Two strided 5x5 convolutions and two linear layers."""

    def __init__(self, channels: int = 1, image_size: int = 28, num_classes: int = 10) -> None:
        super().__init__(channels, image_size, num_classes)
        side = self.input_size // 4
        # strided convolutions instead of conv + max-pool: same accuracy here, half the CPU time
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 5, 2, 2, bias=False),  # (16, s/2, s/2)
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 5, 2, 2, bias=False),  # (32, s/4, s/4)
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(32 * side * side, FEATURE_DIM),  # (128,)
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """He et al. 2016's basic block: two 3x3 convolutions and a shortcut (a strided 1x1 one where the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            _conv_bn(c_in, c_out, 3, stride), nn.ReLU(inplace=True), _conv_bn(c_out, c_out, 3, 1)
        )
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else _conv_bn(c_in, c_out, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual(x) + self.shortcut(x))


class ResNet(DomainClassifier):
    """A strided stem, three stages of two basic blocks, a 1x1 convolution to 128 channels, global average pooling.

    The stem halves the image at once: at 14x14 the network costs about as many multiply-adds as the LeNet
    (~1.5 M per image), so it trains in seconds on digits. The 1x1 convolution before the pooling gives a
    128-d embedding of full rank, which FID's covariance needs (pooling 32 channels would give 32 dimensions).
    """

    WIDTHS = (8, 16, 32)

    def __init__(self, channels: int = 1, image_size: int = 28, num_classes: int = 10) -> None:
        super().__init__(channels, image_size, num_classes)
        stem = self.WIDTHS[0]
        layers: list[nn.Module] = [_conv_bn(channels, stem, 3, 2), nn.ReLU(inplace=True)]  # (8, s/2, s/2)
        c_in = stem
        for stage, width in enumerate(self.WIDTHS):  # (8, s/2) -> (16, s/4) -> (32, s/8), rounded up
            layers += [BasicBlock(c_in, width, 1 if stage == 0 else 2), BasicBlock(width, width, 1)]
            c_in = width
        layers += [_conv_bn(c_in, FEATURE_DIM, 1, 1), nn.ReLU(inplace=True)]  # (128, s/8, s/8)
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (128,)
        self.head = nn.Linear(FEATURE_DIM, num_classes)


@dataclass(frozen=True)
class Recipe:
    """How a backbone is trained on the real training split; every random draw comes from ``seed + seed_offset``."""

    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    schedule: Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]  # (optimizer, steps)
    batch_size: int
    min_epochs: int
    min_steps: int
    max_shift: int  # random translations of every training image, in whole pixels
    label_smoothing: float = 0.0
    seed_offset: int = 0


@dataclass(frozen=True)
class Backbone:
    """A domain backbone: its architecture, how it is trained, and the torch-fidelity feature extractor it serves."""

    name: str  # the suffix of its metric columns (``fid_{name}``)
    arch: str  # part of the cache key: bump it when the architecture or the recipe changes
    model: type[DomainClassifier]
    recipe: Recipe
    feature_extractor: str  # its name in torch-fidelity's registry (and in torch-fidelity's cache files)


BACKBONES: Registry[Backbone] = Registry("backbone")


def register_backbone(backbone: Backbone) -> Backbone:
    return BACKBONES.add(backbone.name, backbone)


LENET_PEAK_LR = 3e-3
RESNET_LR = 0.1

register_backbone(
    Backbone(
        "lenet", "lenet-v1", LeNet,
        Recipe(optimizer=partial(torch.optim.Adam, lr=LENET_PEAK_LR),
               schedule=lambda opt, steps: OneCycleLR(opt, LENET_PEAK_LR, total_steps=steps, pct_start=0.15),
               batch_size=128, min_epochs=3, min_steps=150, max_shift=1),
        "lenet-domain",
    )
)  # fmt: skip
register_backbone(
    Backbone(
        "resnet", "resnet-v1", ResNet,
        Recipe(optimizer=partial(torch.optim.SGD, lr=RESNET_LR, momentum=0.9, nesterov=True, weight_decay=5e-4),
               schedule=lambda opt, steps: CosineAnnealingLR(opt, T_max=steps),
               batch_size=64, min_epochs=2, min_steps=300, max_shift=2, label_smoothing=0.1, seed_offset=1),
        "resnet-domain",
    )
)  # fmt: skip
