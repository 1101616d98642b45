"""Conditional DCGAN generator and discriminator, parameterised by width.

The architecture is the one of the original course project with its defects fixed:
the generator's condition is a one-hot vector (same parameter count as the original's integer label
repeated over 10 channels), and the discriminator's condition channel is the label scaled to [-1, 1].
The discriminator returns logits: the original's final Sigmoid is folded into the loss
(``BCEWithLogits``), which is the same function, numerically stabler and safe under autocast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gans.family import ConditionalGenerator, Family, PairConfig, register_family, tensor_dim


@dataclass(frozen=True)
class DCGANConfig(PairConfig):
    """Every knob of one generator/discriminator pair (``PairConfig``'s; the last layer crops 32 -> 28, and at 64x64
    one more block up-samples 32 -> 64)."""

    @property
    def ngf(self) -> int:
        return self.width // 8  # width = 8 * ngf, the original's unit


def _up(c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Generator(ConditionalGenerator):
    """(z, labels) -> images in [-1, 1]; ``forward_features`` also returns the four hidden activations (4 to 32 px).

    At 64x64 a fifth block (``up64``, ngf channels) up-samples the last activation before the image layer; its
    output is not one of the hidden activations, so feature objectives pair the same places at every size.
    """

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__(cfg.width, cfg.nz, cfg.num_classes)
        self.cfg = cfg
        ngf = cfg.ngf
        crop = 2 if cfg.image_size == 28 else 0
        self.blocks = nn.ModuleList(
            [
                _up(cfg.nz + cfg.num_classes, 8 * ngf, 4, 1, 0),  # (8ngf, 4, 4)
                _up(8 * ngf, 4 * ngf, 4, 2, 1),  # (4ngf, 8, 8)
                _up(4 * ngf, 2 * ngf, 4, 2, 1),  # (2ngf, 16, 16)
                _up(2 * ngf, ngf, 4, 2, 1),  # (ngf, 32, 32)
            ]
        )
        self.up64 = _up(ngf, ngf, 4, 2, 1) if cfg.image_size == 64 else None  # (ngf, 64, 64)
        # kernel 1 with padding 2 crops 32x32 -> 28x28, as in the original
        self.to_image = nn.ConvTranspose2d(ngf, cfg.channels, 1, 1, crop, bias=False)

    def forward_features(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        onehot = F.one_hot(labels, self.cfg.num_classes).to(z.dtype)
        h = torch.cat([z, onehot], dim=1)[:, :, None, None]  # (nz + classes, 1, 1)
        features = []
        for block in self.blocks:
            h = block(h)
            features.append(h)
        if self.up64 is not None:
            h = self.up64(h)
        return torch.tanh(self.to_image(h)), features

    def hidden_channels(self) -> list[int]:
        return [block[0].out_channels for block in self.blocks]


class Discriminator(nn.Module):
    """(images, labels) -> one logit per image; the label enters as an extra channel scaled to [-1, 1]."""

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ndf = cfg.ndf
        # 28 -> 14 -> 7 -> 3 needs (k4, s2, p1) to reach 1x1; 32 -> 16 -> 8 -> 4 needs (k4, s1, p0)
        last_stride, last_pad = (2, 1) if cfg.image_size == 28 else (1, 0)
        # 64x64: one more down-sampling layer at ndf channels (the generator's up64 mirrored), 64 -> 32 -> 16
        # (built only at 64x64: a layer made and dropped would draw from the seed's generator and move every weight)
        down64 = (
            [nn.Conv2d(ndf, ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf), nn.LeakyReLU(0.2, inplace=True)]
            if cfg.image_size == 64
            else []
        )
        self.net = nn.Sequential(
            nn.Conv2d(cfg.channels + 1, ndf, 4, 2, 1, bias=False),  # (ndf, 14, 14) | (ndf, 32, 32) at 64
            nn.LeakyReLU(0.2, inplace=True),
            *down64,  # (ndf, 16, 16) at 64
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False),  # (2ndf, 7, 7)
            nn.BatchNorm2d(2 * ndf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * ndf, 4 * ndf, 4, 2, 1, bias=False),  # (4ndf, 3, 3)
            nn.BatchNorm2d(4 * ndf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * ndf, 1, 4, last_stride, last_pad, bias=False),  # (1, 1, 1)
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scale = 2.0 / max(self.cfg.num_classes - 1, 1)
        condition = (labels.to(images.dtype) * scale - 1.0)[:, None, None, None]
        condition = condition.expand(-1, 1, images.shape[2], images.shape[3])
        return self.net(torch.cat([images, condition], dim=1)).flatten()


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), batch-norm weights N(1, 0.02) and biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_pair(**kwargs) -> tuple[Generator, Discriminator]:
    cfg = DCGANConfig(**kwargs)
    generator, discriminator = Generator(cfg), Discriminator(cfg)
    generator.apply(dcgan_init)
    discriminator.apply(dcgan_init)
    return generator, discriminator


register_family(
    Family(
        name="dcgan",
        build=build_pair,
        width_of=lambda state: tensor_dim(state, "blocks.0.0.weight", 1),  # (nz + classes, width, 4, 4)
        hidden_channels=lambda width: [width >> i for i in range(4)],
        description="the course project's conditional DCGAN (transposed convolutions, batch norm)",
    )
)
