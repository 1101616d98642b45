"""A training loop written the way the original project was: the yardstick of the speed and parity benchmarks.

A torchvision-style dataset of PIL images with per-item ``ToTensor`` and ``Normalize`` through a shuffling
``DataLoader``; the one-hot condition and the discriminator's label channel built on the CPU each step and
copied over; noise from the global generator; a loss ``.item()`` every step; one run per process, so a
distilled student runs its own teacher forward. The models, losses and optimisers are the harness's, so the
two loops differ in how they feed and drive the models, not in what they compute.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bench.base.errors import UserError
from bench.base.layout import SCRATCH
from bench.engine.spec import RunSpec
from bench.engine.train import build_models
from data import ImageDataset, to_uint8


class PilImages(Dataset):
    """Images kept as uint8 arrays and served one by one as PIL images through ``transform``, like torchvision."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.pixels = pixels[:, 0].numpy()
        self.labels = labels.numpy()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.pixels[index], mode="L")), int(self.labels[index])


def reference_loader(dataset: ImageDataset, batch_size: int, seed: int) -> DataLoader:
    """One loader for the whole run: its shuffling generator advances from epoch to epoch."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    images = PilImages(to_uint8(dataset.train_images), dataset.train_labels, transform)
    return DataLoader(
        images, batch_size=batch_size, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(seed)
    )


REFERENCE_OBJECTIVES = (SCRATCH, "pixel-l1")


def check_reference_objective(kd: str) -> None:
    if kd not in REFERENCE_OBJECTIVES:
        raise UserError(f"the reference loop knows the original's objectives ({', '.join(REFERENCE_OBJECTIVES)}), "
                        f"not {kd!r}")  # fmt: skip


@dataclass
class ReferenceRun:
    """One run of ``spec`` in the original's style; a distilled run needs the frozen ``teacher``."""

    spec: RunSpec
    dataset: ImageDataset
    device: torch.device
    generator: nn.Module
    discriminator: nn.Module
    teacher: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer

    @classmethod
    def create(
        cls, spec: RunSpec, dataset: ImageDataset, device: torch.device, teacher: nn.Module | None = None
    ) -> ReferenceRun:
        check_reference_objective(spec.kd)
        if spec.kd != SCRATCH and teacher is None:
            raise ValueError("a distilled reference run needs a teacher")
        generator, discriminator = (m.to(device) for m in build_models(spec, dataset))
        if teacher is not None:
            teacher = teacher.to(device).eval()
        betas = (spec.beta1, spec.beta2)
        return cls(
            spec, dataset, device, generator, discriminator, teacher if spec.kd != SCRATCH else None,
            torch.optim.Adam(generator.parameters(), lr=spec.lr, betas=betas),
            torch.optim.Adam(discriminator.parameters(), lr=spec.lr, betas=betas),
        )  # fmt: skip

    def updates(self) -> Iterator[float]:
        """Train epoch after epoch without end, yielding the generator's loss after every update."""
        torch.manual_seed(self.spec.seed)  # the original seeded the global generator once
        loader = reference_loader(self.dataset, self.spec.batch_size, self.spec.seed)
        self.generator.train(), self.discriminator.train()
        while True:
            for real, labels in loader:
                z = torch.randn(len(labels), self.generator.nz)  # drawn on the CPU, copied over
                fake_labels = torch.randint(0, self.dataset.num_classes, (len(labels),))
                yield self.update(real, labels, z, fake_labels)

    def train(self) -> None:
        """All of the spec's epochs."""
        total = self.spec.epochs * (len(self.dataset.train_labels) // self.spec.batch_size)
        for done, _ in enumerate(self.updates(), start=1):
            if done == total:
                return

    def update(self, real: torch.Tensor, labels: torch.Tensor, z: torch.Tensor, fake_labels: torch.Tensor) -> float:
        """One discriminator and one generator update from CPU tensors, as the original made them."""
        device, spec = self.device, self.spec
        b = real.shape[0]
        real, z = real.to(device), z.to(device)
        fake = self._generate(self.generator, z, fake_labels)
        real_logits = self._discriminate(real, labels)
        fake_logits = self._discriminate(fake.detach(), fake_labels)
        loss_d = F.binary_cross_entropy_with_logits(real_logits, torch.ones(b).to(device))
        loss_d = loss_d + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros(b).to(device))
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(self._discriminate(fake, fake_labels), torch.ones(b).to(device))
        if self.teacher is not None:
            with torch.no_grad():
                target = self._generate(self.teacher, z, fake_labels)
            loss_g = loss_g + spec.kd_weight * F.l1_loss(fake, target)
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        return loss_g.item()  # the original printed its losses every step

    def _generate(self, model: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # the original fed a CPU-built condition tensor to the generator
        return model(z, labels.to(self.device))

    def _discriminate(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # and a CPU-built label channel to the discriminator
        return self.discriminator(images, labels.to(self.device))
