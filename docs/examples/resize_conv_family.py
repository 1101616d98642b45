"""An example model family from outside the suite: resize-convolution generators (Odena et al., 2016).

Each up-sampling block doubles the size by nearest-neighbour interpolation and then convolves (3x3), instead of
DCGAN's transposed convolutions (the cause of checkerboard artefacts). The discriminator is a strided CNN with a
projection of the label (Miyato and Koyama, 2018). Use it without touching the suite:

    python run_bench.py --family docs/examples/resize_conv_family.py:FAMILY --methods width --widths 16,32

It keeps the family contract (``gans/family.py``): ``FAMILY`` is a ``Family`` at the top level of the module.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gans.family import ConditionalGenerator, Family, PairConfig, tensor_dim

BLOCKS = 3  # each doubles the first feature map: 4 -> 8 -> 16 -> 32 (28x28: cropped), 8 -> ... -> 64 for 64x64


def hidden_channels(width: int) -> list[int]:
    """Hidden channels of each block, halving from ``width``."""
    return [max(width // 2**i, 8) for i in range(BLOCKS)]


class ResizeConvGenerator(ConditionalGenerator):
    """(z, y) -> [linear to width x 4 x 4, or 8 x 8 for 64x64] -> blocks of (upsample x2, conv 3x3, BN, ReLU)
    -> conv 3x3 -> tanh."""

    def __init__(self, cfg: PairConfig) -> None:
        super().__init__(cfg.width, cfg.nz, cfg.num_classes)
        self.image_size = cfg.image_size
        self.base = max(cfg.image_size, 32) // 2**BLOCKS  # the first feature map's side
        self.hidden = hidden_channels(cfg.width)
        self.project = nn.Linear(cfg.nz + cfg.num_classes, cfg.width * self.base**2)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())
            for c_in, c_out in zip([cfg.width, *self.hidden[:-1]], self.hidden)
        )
        self.to_image = nn.Conv2d(self.hidden[-1], cfg.channels, 3, padding=1)

    def forward_features(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.project(torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1))
        x = x.view(len(z), self.width, self.base, self.base)  # (B, width, 4, 4), or 8 x 8 for 64x64 images
        features = []
        for block in self.blocks:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"))  # (B, c, 2h, 2w)
            features.append(x)
        images = torch.tanh(self.to_image(x))
        if self.image_size == 28:  # MNIST-like: the 32x32 output cropped, as the suite's families do
            images = images[:, :, 2:30, 2:30]
        return images, features

    def hidden_channels(self) -> list[int]:
        return list(self.hidden)


class ProjectionDiscriminator(nn.Module):
    """(images, y) -> one logit: a strided CNN, its pooled features scored and projected on the label's embedding."""

    def __init__(self, cfg: PairConfig) -> None:
        super().__init__()
        ndf = max(cfg.ndf, 4)
        self.features = nn.Sequential(
            nn.Conv2d(cfg.channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.score = nn.Linear(ndf * 4, 1)
        self.embed = nn.Embedding(cfg.num_classes, ndf * 4)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(images).sum(dim=(2, 3))  # (B, 4 ndf)
        return (self.score(h) + (self.embed(labels) * h).sum(dim=1, keepdim=True)).view(-1)


def build(width: int, **kwargs) -> tuple[ResizeConvGenerator, ProjectionDiscriminator]:
    cfg = PairConfig(width=width, **kwargs)
    return ResizeConvGenerator(cfg), ProjectionDiscriminator(cfg)


def width_of(state) -> int:
    """The width a saved generator was built at: its first feature map's channels (4 x 4 or 8 x 8 of them)."""
    rows, inputs = tensor_dim(state, "project.weight", 0), tensor_dim(state, "to_image.weight", 1)
    return rows // 16 if hidden_channels(rows // 16)[-1] == inputs else rows // 64


FAMILY = Family(
    "resize-conv",
    build,
    width_of,
    hidden_channels,
    "resize-convolution generator, projection discriminator (an example family from outside the suite)",
)
