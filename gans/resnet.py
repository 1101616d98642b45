"""Conditional ResNet generator and projection discriminator (the SNGAN / BigGAN baseline), parameterised by width.

The small 32x32 model of GAN toolkits such as StudioGAN, without attention: the generator up-samples a
linear projection of z through three residual blocks whose batch norms take a per-class gain and bias (the
condition enters there, not at the input); the discriminator is spectrally normalised, down-samples through
residual blocks and adds the projection of the class embedding onto its features to an unconditional logit
(Miyato & Koyama 2018). Its hidden activations sit at the same places as the DCGAN's (width, width/2,
width/4, width/8 channels at 4, 8, 16, 32 px), so every feature-distillation objective works unchanged. At 64x64
the generator has a fourth residual block (width/8 channels, 32 -> 64 px) after the last activation, and the
discriminator one more down-sampling block (ndf channels) after its first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from gans.family import ConditionalGenerator, Family, PairConfig, register_family, tensor_dim


@dataclass(frozen=True)
class ResNetConfig(PairConfig):
    """Every knob of one generator/discriminator pair (``PairConfig``'s: width is the channels of the 4x4 map
    z is projected to)."""


def _xavier(layer: nn.Module) -> nn.Module:
    """SNGAN's initialisation: xavier-uniform weights, zero biases."""
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _sn(layer: nn.Module) -> nn.Module:
    """``layer`` initialised, then spectrally normalised: the power iteration's first vectors fit the final weight."""
    return spectral_norm(_xavier(layer))


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without its own affine, scaled and shifted by a gain and a bias looked up per class.

    Gains start at 1 and biases at 0, so a fresh generator ignores the class: the embeddings learn it.
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(labels)[:, :, None, None] + self.bias(labels)[:, :, None, None]


class GenBlock(nn.Module):
    """(c_in, s, s) -> (c_out, 2s, 2s): BN, ReLU, 2x nearest up-sampling, 3x3 conv, BN, ReLU, 3x3 conv, plus a
    1x1-conv shortcut of the up-sampled input."""

    def __init__(self, c_in: int, c_out: int, num_classes: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, num_classes)
        # no biases: a per-channel constant added to the residual stream reaches the image only through batch
        # norms (directly, or after 1x1 shortcuts, which keep it constant), and they cancel it
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
        self.bn2 = ConditionalBatchNorm2d(c_out, num_classes)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, labels)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class Generator(ConditionalGenerator):
    """(z, labels) -> images in [-1, 1]; ``forward_features`` also returns the four hidden activations.

    The activations are the residual stream (block outputs, before the next block's norm and ReLU).
    """

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__(cfg.width, cfg.nz, cfg.num_classes)
        self.cfg = cfg
        w = cfg.width
        self.linear = nn.Linear(cfg.nz, w * 4 * 4)  # (w, 4, 4)
        self.blocks = nn.ModuleList(
            [
                GenBlock(w, w // 2, cfg.num_classes),  # (w/2, 8, 8)
                GenBlock(w // 2, w // 4, cfg.num_classes),  # (w/4, 16, 16)
                GenBlock(w // 4, w // 8, cfg.num_classes),  # (w/8, 32, 32)
            ]
        )
        # 64x64: one more block after the last hidden activation, which stays at 32 px
        self.up64 = GenBlock(w // 8, w // 8, cfg.num_classes) if cfg.image_size == 64 else None  # (w/8, 64, 64)
        self.bn = nn.BatchNorm2d(w // 8)
        self.to_image = nn.Conv2d(w // 8, cfg.channels, 3, 1, 1)  # (channels, 32, 32) | (channels, 64, 64)
        self.crop = 2 if cfg.image_size == 28 else 0  # the centre 28x28 of the 32x32 output

    def forward_features(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.linear(z).view(z.shape[0], self.width, 4, 4)
        features = [h]
        for block in self.blocks:
            h = block(h, labels)
            features.append(h)
        if self.up64 is not None:
            h = self.up64(h, labels)
        images = torch.tanh(self.to_image(F.relu(self.bn(h))))
        if self.crop:
            images = images[:, :, self.crop : -self.crop, self.crop : -self.crop]
        return images, features

    def hidden_channels(self) -> list[int]:
        return [self.width] + [block.conv2.out_channels for block in self.blocks]


class DiscBlock(nn.Module):
    """(c_in, s, s) -> (c_out, s/2, s/2) or (c_out, s, s): [ReLU], 3x3 conv, ReLU, 3x3 conv, [2x average
    pooling], plus a 1x1-conv shortcut where the shape changes.

    The first block (``first``) sees the image: no ReLU before its first conv, and its shortcut pools before
    the 1x1 conv (SNGAN's "optimized" block: the same function on fewer pixels).
    """

    def __init__(self, c_in: int, c_out: int, downsample: bool, first: bool = False) -> None:
        super().__init__()
        self.downsample, self.first = downsample, first
        self.conv1 = _sn(nn.Conv2d(c_in, c_out, 3, 1, 1))
        self.conv2 = _sn(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.shortcut = _sn(nn.Conv2d(c_in, c_out, 1)) if downsample or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.shortcut is not None:
            if self.first:
                s = self.shortcut(F.avg_pool2d(s, 2))
            else:
                s = self.shortcut(s)
                s = F.avg_pool2d(s, 2) if self.downsample else s
        return h + s


class Discriminator(nn.Module):
    """(images, labels) -> one logit per image: an unconditional linear head plus the projection
    ``<embed(label), h>`` of the class embedding onto the pooled features. Every layer is spectrally normalised.

    The channels mirror the generator's: ndf, 2ndf, 4ndf at 16, 8, 4 px (3 px for 28x28 input, as the DCGAN's),
    then 8ndf at the same size; 64x64 input passes ndf channels at 32 px first, then one more block down to 16 px.
    """

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ndf = cfg.ndf
        down64 = [DiscBlock(ndf, ndf, downsample=True)] if cfg.image_size == 64 else []  # (ndf, 16, 16)
        self.blocks = nn.Sequential(
            DiscBlock(cfg.channels, ndf, downsample=True, first=True),  # (ndf, 16, 16) | (ndf, 14, 14) | (ndf, 32, 32)
            *down64,
            DiscBlock(ndf, 2 * ndf, downsample=True),  # (2ndf, 8, 8) | (2ndf, 7, 7)
            DiscBlock(2 * ndf, 4 * ndf, downsample=True),  # (4ndf, 4, 4) | (4ndf, 3, 3)
            DiscBlock(4 * ndf, 8 * ndf, downsample=False),  # (8ndf, 4, 4) | (8ndf, 3, 3)
        )
        self.linear = _sn(nn.Linear(8 * ndf, 1))
        self.embed = _sn(nn.Embedding(cfg.num_classes, 8 * ndf))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(images)).sum(dim=(2, 3))  # (8ndf,)
        return self.linear(h).flatten() + (self.embed(labels) * h).sum(dim=1)


def build_pair(**kwargs) -> tuple[Generator, Discriminator]:
    cfg = ResNetConfig(**kwargs)
    # the generator is built and initialised before the discriminator draws from the RNG, so a seed gives the
    # same generator whatever the discriminator's width
    generator = Generator(cfg)
    for module in generator.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            _xavier(module)
    return generator, Discriminator(cfg)


register_family(
    Family(
        name="resnet",
        build=build_pair,
        width_of=lambda state: tensor_dim(state, "blocks.0.conv1.weight", 1),  # (width/2, width, 3, 3)
        hidden_channels=lambda width: [width >> i for i in range(4)],
        description="SNGAN/BigGAN-style ResNet: class-conditional batch norm, spectrally normalised projection D",
    )
)
