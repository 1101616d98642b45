"""The contract every model family keeps, and the registry of families.

The engine, the objectives, the metrics and the harness's own benchmarks see a generator only through
``ConditionalGenerator`` (its noise size, class count, width, hidden activations) and a family only through
``Family`` (build a pair, read a width back from a saved generator, the hidden channels at a width). Nothing
outside ``gans/`` reads a family's layers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from bench.base.errors import CheckpointError, UserError, first_line
from bench.base.registry import Registry

MIN_WIDTH, MAX_WIDTH, WIDTH_STEP = 16, 512, 8
IMAGE_SIZES = (28, 32, 64)  # MNIST-like 28x28, CIFAR-like 32x32, and 64x64 (one more up-sampling block)


class InvalidWidthError(UserError):
    """A width outside 16..512 or not a multiple of 8."""


def check_width(width: int, what: str = "width") -> int:
    """Return ``width`` unchanged, or raise a one-line error naming the allowed range."""
    if not (MIN_WIDTH <= width <= MAX_WIDTH and width % WIDTH_STEP == 0):
        raise InvalidWidthError(
            f"{what} {width} is not allowed: use a multiple of {WIDTH_STEP} in {MIN_WIDTH}..{MAX_WIDTH}"
        )
    return width


def check_image_size(image_size: int) -> int:
    if image_size not in IMAGE_SIZES:
        raise UserError(f"image size {image_size} is not supported: use {', '.join(map(str, IMAGE_SIZES))}")
    return image_size


@dataclass(frozen=True)
class PairConfig:
    """The knobs every family's generator/discriminator pair shares; a family's config adds its own."""

    width: int = 512  # generator first-layer channels
    disc_width: int | None = None  # same unit as width (ndf = disc_width / 8); None follows the generator
    nz: int = 100
    num_classes: int = 10
    channels: int = 1
    image_size: int = 28  # 28 (MNIST-like: the generator crops its 32x32 output), 32 (CIFAR-10) or 64 (one more block)

    def __post_init__(self) -> None:
        check_width(self.width)
        if self.disc_width is not None:
            check_width(self.disc_width, "discriminator width")
        check_image_size(self.image_size)

    @property
    def ndf(self) -> int:
        return (self.disc_width or self.width) // 8


class ConditionalGenerator(nn.Module, ABC):
    """(z, labels) -> images in [-1, 1], with the hidden activations a feature-distillation objective reads."""

    devices: tuple[str, ...] = ("cpu", "cuda")  # where it runs (an int8-quantized generator: the CPU only)
    quantized: str | None = None  # the post-training quantization it is stored and run in, if any

    def __init__(self, width: int, nz: int, num_classes: int) -> None:
        super().__init__()
        self.width, self.nz, self.num_classes = width, nz, num_classes

    @abstractmethod
    def forward_features(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The images and the hidden activations, first (coarsest) to last."""

    @abstractmethod
    def hidden_channels(self) -> list[int]:
        """Channels of the activations ``forward_features`` returns, in the same order."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.forward_features(z, labels)[0]


PairBuilder = Callable[..., tuple[ConditionalGenerator, nn.Module]]


def logit_loss(logits: torch.Tensor, target: float) -> torch.Tensor:
    """The GAN loss of a discriminator's logits against ``target`` (1: real, 0: fake): binary cross-entropy with
    logits, the original's final sigmoid folded in."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


@dataclass(frozen=True)
class Family:
    """One model family: how to build a pair and how to read a saved generator's width back.

    ``build(width, disc_width=None, nz=100, num_classes=10, channels=1, image_size=28)`` returns a freshly
    initialised (generator, discriminator); the discriminator maps (images, labels) to one logit per image.
    ``width_of(state_dict)`` returns the width of the generator that saved it, or raises ``CheckpointError``.
    ``hidden_channels(width)`` is the generator's ``hidden_channels()`` at that width, without building it: the same at
    every image size (the activations a feature objective pairs sit at 4, 8, 16 and 32 px; a 64x64 generator's extra
    up-sampling block comes after the last of them).
    """

    name: str
    build: PairBuilder
    width_of: Callable[[Mapping[str, object]], int]
    hidden_channels: Callable[[int], list[int]]
    description: str = ""


FAMILIES: Registry[Family] = Registry("model family")


def register_family(family: Family) -> Family:
    return FAMILIES.add(family.name, family)


def families() -> list[str]:
    return FAMILIES.names()


def build(family: str, width: int, **kwargs) -> tuple[ConditionalGenerator, nn.Module]:
    """Return a freshly initialised (generator, discriminator) of ``family`` at ``width``."""
    generator, discriminator = FAMILIES[family].build(width=width, **kwargs)
    if not isinstance(generator, ConditionalGenerator):  # a family that breaks the contract fails at once
        raise TypeError(f"family {family!r} built a {type(generator).__name__}, not a ConditionalGenerator")
    return generator, discriminator


def width_of(family: str, state: object, where: str = "checkpoint") -> int:
    """The width of the ``family`` generator whose state_dict is ``state``; a foreign object is refused."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where} is not a generator state_dict of this suite")
    try:
        return FAMILIES[family].width_of(state)
    except (CheckpointError, KeyError, IndexError, AttributeError) as err:
        raise CheckpointError(
            f"{where} is not a generator state_dict of the {family} family: {first_line(err)}"
        ) from None


def tensor_dim(state: Mapping[str, object], key: str, dim: int) -> int:
    """``state[key].shape[dim]``, or ``CheckpointError`` when the entry is missing or not a tensor: what a
    family's ``width_of`` reads."""
    value = state.get(key)
    if not isinstance(value, torch.Tensor) or value.ndim <= dim:
        raise CheckpointError(f"no tensor {key!r} with {dim + 1}+ dimensions in the checkpoint")
    return int(value.shape[dim])
