"""Training loops: a cohort of runs that share every batch, every (z, y) and one teacher forward per step.

Every member of a cohort trains on the same deterministic stream: for one seed, the batches and noise of an
epoch are a function of (seed, epoch) alone. Scratch and distilled students of a seed therefore see the same
data, so their difference is the distillation alone, and an interrupted run resumes from its last epoch
checkpoint with exactly the stream it would have seen.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.utils import save_image
from tqdm.auto import tqdm

import gans
from bench.io import atomic_torch_save, atomic_write_bytes, atomic_write_text, safe_torch_load
from bench.spec import RunSpec
from data import ImageDataset
from distill import build_objective

STATE_FILE = "state.pt"
GENERATOR_FILE = "generator.pt"
DISCRIMINATOR_FILE = "discriminator.pt"
LOSSES_FILE = "losses.csv"
SAMPLES_FILE = "samples.png"
LOSS_COLUMNS = ("epoch", "step", "loss_d", "loss_g_gan", "loss_kd", "loss_g")
SAMPLE_ROWS = 8


def stream_seed(seed: int, epoch: int, salt: int = 0) -> int:
    """A 63-bit seed for one epoch of one run seed; distinct (seed, epoch, salt) never collide in practice."""
    return (seed * 1_000_003 + epoch * 7_919 + salt * 104_729) % (2**63 - 1)


@dataclass
class BatchStream:
    """Deterministic (real images, real labels, z, fake labels) batches of one seed, sliced on the device."""

    images: torch.Tensor
    labels: torch.Tensor
    batch_size: int
    nz: int
    num_classes: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        # the last partial batch is dropped: every step has the same shape (and batch norm never sees one image)
        return max(len(self.labels) // self.batch_size, 1)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        device = self.images.device
        rng = torch.Generator(device=device).manual_seed(stream_seed(self.seed, epoch))
        order = torch.randperm(len(self.labels), generator=rng, device=device)
        b = min(self.batch_size, len(self.labels))
        for step in range(self.steps_per_epoch):
            index = order[step * b : (step + 1) * b]
            z = torch.randn(b, self.nz, generator=rng, device=device)
            fake_labels = torch.randint(0, self.num_classes, (b,), generator=rng, device=device)
            yield self.images[index], self.labels[index], z, fake_labels


def build_models(spec: RunSpec, dataset: ImageDataset) -> tuple[nn.Module, nn.Module]:
    """The run's freshly initialised pair; the init depends on (seed, width) only, not on the objective."""
    channels, size, _ = dataset.image_shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return gans.build(
            spec.family, spec.width, disc_width=spec.disc_width, num_classes=dataset.num_classes,
            channels=channels, image_size=size,
        )  # fmt: skip


def hidden_channels(generator: nn.Module) -> list[int]:
    return [block[0].out_channels for block in generator.blocks]


@dataclass
class Member:
    """One run inside a cohort: its models, optimisers, objective, log and how it is going."""

    spec: RunSpec
    run_dir: Path
    generator: nn.Module
    discriminator: nn.Module
    objective: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    start_epoch: int = 0
    log: list[list[float]] = field(default_factory=list)
    train_seconds: float = 0.0
    diverged_step: int | None = None

    @property
    def active(self) -> bool:
        return self.diverged_step is None

    def checkpoint(self, epoch: int) -> None:
        atomic_torch_save(
            self.run_dir / STATE_FILE,
            {
                "epoch": epoch,
                "generator": self.generator.state_dict(),
                "discriminator": self.discriminator.state_dict(),
                "objective": self.objective.state_dict() if self.objective is not None else {},
                "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(),
                "log": torch.tensor(self.log, dtype=torch.float64).reshape(-1, len(LOSS_COLUMNS)),
                "train_seconds": self.train_seconds,
                "diverged_step": -1 if self.diverged_step is None else self.diverged_step,
            },
        )
        self.write_losses()

    def restore(self, device: torch.device) -> None:
        """Resume from ``state.pt`` if an earlier process left one."""
        path = self.run_dir / STATE_FILE
        if not path.is_file():
            return
        state = safe_torch_load(path, map_location=device)
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.objective is not None:
            self.objective.load_state_dict(state["objective"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.start_epoch = int(state["epoch"])
        self.log = state["log"].tolist()
        self.train_seconds = float(state["train_seconds"])
        self.diverged_step = None if state["diverged_step"] < 0 else int(state["diverged_step"])

    def write_losses(self) -> None:
        frame = pd.DataFrame(self.log, columns=list(LOSS_COLUMNS)).astype({"epoch": int, "step": int})
        atomic_write_text(self.run_dir / LOSSES_FILE, frame.to_csv(index=False))


def make_member(spec: RunSpec, run_dir: Path, dataset: ImageDataset, device: torch.device) -> Member:
    generator, discriminator = build_models(spec, dataset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed + 1)
        objective = build_objective(spec.kd, hidden_channels(generator), teacher_hidden_channels(spec))
    generator.to(device), discriminator.to(device)
    g_params = list(generator.parameters())
    if objective is not None:
        objective.to(device)
        g_params += list(objective.parameters())
    betas = (spec.beta1, spec.beta2)
    member = Member(
        spec, run_dir, generator, discriminator, objective,
        torch.optim.Adam(g_params, lr=spec.lr, betas=betas),
        torch.optim.Adam(discriminator.parameters(), lr=spec.lr, betas=betas),
    )  # fmt: skip
    member.restore(device)
    return member


def teacher_hidden_channels(spec: RunSpec) -> list[int]:
    """Channels of the teacher's four hidden blocks: width, width/2, width/4, width/8."""
    return [spec.teacher_width >> i for i in range(4)]


def fixed_noise(nz: int, num_classes: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The (z, y) of every sample grid of a seed: SAMPLE_ROWS rows, one column per class."""
    rng = torch.Generator().manual_seed(stream_seed(seed, 0, salt=1))
    z = torch.randn(SAMPLE_ROWS * num_classes, nz, generator=rng)
    labels = torch.arange(num_classes).repeat(SAMPLE_ROWS)
    return z.to(device), labels.to(device)


def save_samples(generator: nn.Module, noise: tuple[torch.Tensor, torch.Tensor], path: Path) -> None:
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        images = generator(*noise).float().cpu()
    generator.train(was_training)
    buffer = io.BytesIO()
    save_image(images, buffer, format="png", nrow=noise[1].max().item() + 1, normalize=True, value_range=(-1, 1))
    atomic_write_bytes(path, buffer.getvalue())


def precision_autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of a run's precision: bf16 autocast, or a disabled one for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def train_step(
    member: Member,
    real: torch.Tensor,
    labels: torch.Tensor,
    z: torch.Tensor,
    fake_labels: torch.Tensor,
    teacher_out: tuple[torch.Tensor, list[torch.Tensor]] | None,
    autocast: torch.autocast,
) -> torch.Tensor:
    """One discriminator and one generator update; returns (loss_d, loss_g_gan, loss_kd, loss_g) on device."""
    g, d, spec = member.generator, member.discriminator, member.spec
    with autocast:
        fake, features = g.forward_features(z, fake_labels)
        real_logits = d(real, labels)
        fake_logits = d(fake.detach(), fake_labels)
        loss_d = F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    member.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    member.opt_d.step()

    with autocast:
        gen_logits = d(fake, fake_labels)
        loss_gan = F.binary_cross_entropy_with_logits(gen_logits, torch.ones_like(gen_logits))
        if member.objective is not None and teacher_out is not None:
            loss_kd = member.objective(fake, features, *teacher_out).float()
        else:
            loss_kd = torch.zeros((), device=real.device)
        loss_g = loss_gan + spec.kd_weight * loss_kd
    member.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    member.opt_g.step()
    return torch.stack([loss_d.float(), loss_gan.float(), loss_kd, loss_g.float()]).detach()


def train_cohort(
    members: list[Member],
    dataset: ImageDataset,
    teacher: nn.Module | None,
    device: torch.device,
    *,
    log_every: int = 10,
    samples_every_epoch: bool = False,
    progress: bool = True,
) -> None:
    """Train every member to its spec's epochs on one shared stream; diverged members stop, the rest go on."""
    if not members:
        return
    spec = members[0].spec
    assert all((m.spec.seed, m.spec.epochs, m.spec.batch_size) == (spec.seed, spec.epochs, spec.batch_size)
               for m in members), "a cohort shares seed, epochs and batch size"  # fmt: skip
    images, labels = dataset.train_images.to(device), dataset.train_labels.to(device)
    nz = members[0].generator.cfg.nz
    stream = BatchStream(images, labels, spec.batch_size, nz, dataset.num_classes, spec.seed)
    noise = fixed_noise(nz, dataset.num_classes, spec.seed, device)
    needs_teacher = teacher is not None and any(m.objective is not None for m in members)
    if teacher is not None:
        teacher.to(device).eval()
    autocast = precision_autocast(spec.precision, device)
    for m in members:
        m.generator.train(), m.discriminator.train()

    first_epoch = min(m.start_epoch for m in members)
    epochs = tqdm(range(first_epoch, spec.epochs), desc=_cohort_name(members), disable=not progress, leave=False)
    for epoch in epochs:
        todo = [m for m in members if m.active and m.start_epoch <= epoch]
        started = time.perf_counter()
        for step_in_epoch, (real, real_labels, z, fake_labels) in enumerate(stream.epoch(epoch)):
            step = epoch * stream.steps_per_epoch + step_in_epoch + 1
            teacher_out = None
            if needs_teacher:
                with torch.no_grad(), autocast:
                    teacher_out = teacher.forward_features(z, fake_labels)
            for m in todo:
                if not m.active:
                    continue
                losses = train_step(m, real, real_labels, z, fake_labels, teacher_out, autocast)
                if step % log_every == 0 or step_in_epoch + 1 == stream.steps_per_epoch:
                    _log(m, epoch, step, losses)
        elapsed = time.perf_counter() - started
        for m in todo:
            m.train_seconds += elapsed
            m.checkpoint(epoch + 1)
            if samples_every_epoch and m.active:
                save_samples(m.generator, noise, m.run_dir / f"samples_epoch{epoch + 1:03d}.png")
        epochs.set_postfix(active=sum(m.active for m in members))
    for m in members:
        if m.active:
            save_samples(m.generator, noise, m.run_dir / SAMPLES_FILE)
            atomic_torch_save(m.run_dir / GENERATOR_FILE, m.generator.state_dict())
            atomic_torch_save(m.run_dir / DISCRIMINATOR_FILE, m.discriminator.state_dict())


def _log(member: Member, epoch: int, step: int, losses: torch.Tensor) -> None:
    values = losses.tolist()  # the only host sync: once every log_every steps
    member.log.append([epoch, step, *values])
    if not all(math.isfinite(v) for v in values):
        member.diverged_step = step


def _cohort_name(members: list[Member]) -> str:
    spec = members[0].spec
    kinds = sorted({m.spec.kd for m in members})
    return f"seed {spec.seed} {'+'.join(kinds)} x{len(members)}"
