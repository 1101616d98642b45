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
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torchvision.utils import save_image
from tqdm.auto import tqdm

import gans
from bench.base.errors import CheckpointError, first_line
from bench.base.io import atomic_write_bytes, atomic_write_text, quarantine
from bench.base.layout import DISCRIMINATOR_FILE, GENERATOR_FILE, LOSSES_FILE, SAMPLES_FILE, STATE_FILE
from bench.engine import cuda_graphs, preempt
from bench.engine.checkpoints import atomic_torch_save, safe_torch_load
from bench.engine.cuda_graphs import Batch, Branches, StateSnapshot
from bench.engine.methods import METHODS, train_epochs
from bench.engine.models import build_models, stream_seed
from bench.engine.spec import RunSpec
from bench.engine.tensorboard import RunBoard
from data import ImageDataset
from distill import build_objective
from gans import logit_loss

LOSS_COLUMNS = ("epoch", "step", "loss_d", "loss_g_gan", "loss_kd", "loss_g")
SAMPLE_ROWS = 8


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
    start_step: int = 0  # steps of ``start_epoch`` already done (a run preempted mid-epoch)
    log: list[list[float]] = field(default_factory=list)
    train_seconds: float = 0.0
    # its own updates, each timed alone (on a CPU, where a step is synchronous; 0 on a GPU, where members overlap)
    own_seconds: float = 0.0
    diverged_step: int | None = None
    step: Callable[..., torch.Tensor] | None = None  # its method's own update (``Method.step``); None: train_step
    objective_file: str | None = None  # where its objective is saved when training ends (``Method.objective_file``)
    graphs: bool = True  # whether its step may be replayed from a CUDA graph (``Method.graphs``)

    @property
    def active(self) -> bool:
        return self.diverged_step is None

    def starts_by(self, epoch: int, step_in_epoch: int) -> bool:
        """Whether this run trains at (epoch, step): it has reached that point of the stream."""
        return (self.start_epoch, self.start_step) <= (epoch, step_in_epoch)

    def checkpoint(self, epoch: int, step_in_epoch: int = 0) -> None:
        """Save everything needed to resume at step ``step_in_epoch`` of ``epoch`` (0: at its start)."""
        atomic_torch_save(
            self.run_dir / STATE_FILE,
            {
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "generator": self.generator.state_dict(),
                "discriminator": self.discriminator.state_dict(),
                "objective": self.objective.state_dict() if self.objective is not None else {},
                "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(),
                "log": torch.tensor(self.log, dtype=torch.float64).reshape(-1, len(LOSS_COLUMNS)),
                "train_seconds": self.train_seconds,
                "own_seconds": self.own_seconds,
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
        for group in (*self.opt_g.param_groups, *self.opt_d.param_groups):
            # a state saved by a graphed GPU run resumes anywhere: capturable Adam exists on accelerators only
            group["capturable"] = bool(group.get("capturable")) and cuda_graphs.graphs_supported(device)
        self.start_epoch = int(state["epoch"])
        self.start_step = int(state.get("step_in_epoch", 0))
        self.log = state["log"].tolist()
        self.train_seconds = float(state["train_seconds"])
        self.own_seconds = float(state.get("own_seconds", 0.0))  # a state saved before own times were kept: 0
        self.diverged_step = None if state["diverged_step"] < 0 else int(state["diverged_step"])

    def save_models(self, noise: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Write the trained run's samples, generator and discriminator, and its objective where its method keeps
        part of its models there."""
        save_samples(self.generator, noise, self.run_dir / SAMPLES_FILE)
        atomic_torch_save(self.run_dir / GENERATOR_FILE, self.generator.state_dict())
        atomic_torch_save(self.run_dir / DISCRIMINATOR_FILE, self.discriminator.state_dict())
        if self.objective_file is not None and self.objective is not None:
            atomic_torch_save(self.run_dir / self.objective_file, self.objective.state_dict())

    def last_logged(self) -> dict[str, float | None]:
        """The last row of the loss log by column name (None for each when nothing was logged)."""
        return dict(zip(LOSS_COLUMNS, self.log[-1] if self.log else [None] * len(LOSS_COLUMNS), strict=True))

    def write_losses(self) -> None:
        frame = pd.DataFrame(self.log, columns=list(LOSS_COLUMNS)).astype({"epoch": int, "step": int})
        atomic_write_text(self.run_dir / LOSSES_FILE, frame.to_csv(index=False))


def make_member(
    spec: RunSpec,
    run_dir: Path,
    dataset: ImageDataset,
    device: torch.device,
    start: Callable[[], tuple[nn.Module, nn.Module]] | None = None,
) -> Member:
    """The run's member, resumed from its ``state.pt`` if one is there; ``start`` gives the pair it trains from
    (default: a fresh pair of the run's width; a compression method's own, see ``bench.engine.methods``)."""
    generator, discriminator = start() if start is not None else build_models(spec, dataset)
    method = METHODS[spec.method] if spec.method in METHODS else None  # unregistered: a width run
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed + 1)
        if method is not None and method.objective is not None:
            objective = method.objective(spec, generator, dataset)
        else:
            objective = build_objective(spec.kd, generator.hidden_channels(), teacher_hidden_channels(spec))
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
        step=method.step if method is not None else None,
        objective_file=method.objective_file if method is not None else None,
        graphs=method.graphs if method is not None else True,
    )  # fmt: skip
    try:
        member.restore(device)
    except (CheckpointError, KeyError, RuntimeError, TypeError, ValueError, AttributeError) as err:
        # half-restored: move the file aside and build the run afresh, from its first epoch
        quarantine(run_dir / STATE_FILE, first_line(err))
        return make_member(spec, run_dir, dataset, device, start)
    return member


def teacher_hidden_channels(spec: RunSpec) -> list[int]:
    """Channels of the teacher's hidden activations, known from its family and width without building it."""
    return gans.FAMILIES[spec.family].hidden_channels(spec.teacher_width)


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
    # one grey pixel between samples: a separator that does not drown dark, faint samples
    save_image(images, buffer, format="png", nrow=noise[1].max().item() + 1, normalize=True, value_range=(-1, 1),
               padding=1, pad_value=0.5)  # fmt: skip
    atomic_write_bytes(path, buffer.getvalue())


def precision_autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of a run's precision: bf16 autocast, or a disabled one for fp32.

    Its cast cache is off: a CUDA graph cannot capture it, and each weight is cast once per forward anyway.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)


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
        loss_d = logit_loss(real_logits, 1.0) + logit_loss(fake_logits, 0.0)
    member.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    member.opt_d.step()

    with autocast:
        gen_logits = d(fake, fake_labels)
        loss_gan = logit_loss(gen_logits, 1.0)
        if member.objective is not None and teacher_out is not None:
            loss_kd = member.objective(fake, features, *teacher_out).float()
        else:
            loss_kd = torch.zeros((), device=real.device)
        loss_g = loss_gan + spec.kd_weight * loss_kd
    member.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    member.opt_g.step()
    return torch.stack([loss_d.float(), loss_gan.float(), loss_kd, loss_g.float()]).detach()


@dataclass
class TrainGroup:
    """The members of one seed's cohort, trained on that seed's stream, and the frozen teacher they share."""

    members: list[Member]
    teacher: nn.Module | None = None

    @property
    def needs_teacher(self) -> bool:
        return self.teacher is not None and any(m.objective is not None for m in self.members)


@dataclass(frozen=True)
class LoopOptions:
    """How a training loop runs; none of it changes what a run is (its id), only how fast it gets there."""

    log_every: int = 10
    samples_every_epoch: bool = False
    progress: bool = True
    tensorboard: bool = False  # every run's losses and samples as TensorBoard events (bench/engine/tensorboard.py)
    cuda_graphs: bool = True  # on CUDA: replay each step from a CUDA graph (bench/engine/cuda_graphs.py)
    concurrent: bool = True  # in a graph: every member's update on its own CUDA stream


def cohort_step(
    groups: list[TrainGroup], batches: Sequence[Batch], autocast: torch.autocast, branches: Branches | None = None
) -> list[torch.Tensor]:
    """One update of every member of every group; returns one (members, 4) loss tensor per group.

    The teachers run first, on the current stream. With ``branches`` (CUDA), each member's update then runs on
    its own stream, forked from the current one and joined back, so small models need not wait for big ones. On a
    CPU each member's update is timed alone (``Member.own_seconds``): what the run costs apart from its cohort.
    """
    branches = branches or Branches(torch.device("cpu"), 0)
    teacher_outs = []
    for group, (_, _, z, fake_labels) in zip(groups, batches, strict=True):
        teacher_out = None
        if group.needs_teacher:
            with torch.no_grad(), autocast:
                teacher_out = group.teacher.forward_features(z, fake_labels)
        teacher_outs.append(teacher_out)
    branches.fork()  # after the teachers: every branch waits for their outputs
    index, per_group = 0, []
    for group, batch, teacher_out in zip(groups, batches, teacher_outs, strict=True):
        losses = []
        for m in group.members:
            started = time.perf_counter()
            with branches.branch(index):
                losses.append((m.step or train_step)(m, *batch, teacher_out, autocast))
            if batch[0].device.type == "cpu":  # elsewhere the update is queued, not done
                m.own_seconds += time.perf_counter() - started
            index += 1
        per_group.append(losses)
    branches.join()
    return [torch.stack(losses) for losses in per_group]


def train_cohorts(
    groups: list[TrainGroup], dataset: ImageDataset, device: torch.device, options: LoopOptions = LoopOptions()
) -> None:
    """Train every member of every group to its spec's epochs; diverged members stop, the rest go on.

    All groups step together (on a GPU, one graph replay per step covers every group), each on its own seed's
    stream, so the result of every member is what it would be trained alone.
    """
    groups = [group for group in groups if group.members]
    if not groups:
        return
    spec = groups[0].members[0].spec
    everyone = [m for group in groups for m in group.members]
    shared = (train_epochs(spec), spec.batch_size, spec.precision)
    assert all((train_epochs(m.spec), m.spec.batch_size, m.spec.precision) == shared
               for m in everyone), "groups trained together share epochs, batch size and precision"  # fmt: skip
    assert all(len({m.spec.seed for m in group.members}) == 1 for group in groups), "a group shares its seed"
    images, labels = dataset.train_images.to(device), dataset.train_labels.to(device)
    nz = groups[0].members[0].generator.nz
    streams = [
        BatchStream(images, labels, spec.batch_size, nz, dataset.num_classes, group.members[0].spec.seed)
        for group in groups
    ]
    noises = [fixed_noise(nz, dataset.num_classes, s.seed, device) for s in streams]
    for group in groups:
        if group.teacher is not None:
            group.teacher.to(device).eval()
    autocast = precision_autocast(spec.precision, device)
    for m in everyone:
        m.generator.train(), m.discriminator.train()
    steps = StepRunner(groups, autocast, device, options)

    boards: dict[Path, RunBoard] = {}
    first_epoch = min(m.start_epoch for m in everyone)
    epochs = tqdm(range(first_epoch, train_epochs(spec)), desc=_cohort_name(groups), disable=not options.progress,
                  leave=False)  # fmt: skip
    for epoch in epochs:
        todo = [[m for m in group.members if m.active and m.start_epoch <= epoch] for group in groups]
        started = time.perf_counter()
        _train_epoch(epoch, todo, streams, steps, options.log_every, started)
        elapsed = time.perf_counter() - started
        for m in (m for members in todo for m in members):
            m.train_seconds += elapsed
            m.checkpoint(epoch + 1)
        for m, noise in _with_noise(todo, noises) if options.tensorboard else ():
            if m.active:
                boards.setdefault(m.run_dir, RunBoard(m.run_dir)).epoch(m.log, epoch, m.generator, noise)
        if options.samples_every_epoch:
            for m, noise in _with_noise(todo, noises):
                if m.active:
                    save_samples(m.generator, noise, m.run_dir / f"samples_epoch{epoch + 1:03d}.png")
        epochs.set_postfix(active=sum(m.active for m in everyone))
    for board in boards.values():
        board.close()
    for m, noise in _with_noise([group.members for group in groups], noises):
        if m.active:
            m.save_models(noise)


def _train_epoch(
    epoch: int, todo: list[list[Member]], streams: list, steps: StepRunner, log_every: int, started: float
) -> None:
    """One epoch of every group's members still to train, each group on its own stream; losses logged every
    ``log_every`` steps and at the epoch's end (the loop's only host syncs)."""
    per_epoch = streams[0].steps_per_epoch
    for step_in_epoch, batches in enumerate(zip(*(stream.epoch(epoch) for stream in streams))):
        step = epoch * per_epoch + step_in_epoch + 1
        active = [[m for m in members if m.active and m.starts_by(epoch, step_in_epoch)] for members in todo]
        if any(active):
            losses = steps(active, batches)
            if step % log_every == 0 or step_in_epoch + 1 == per_epoch:
                values = torch.cat(losses).tolist()
                for m, row in zip([m for members in active for m in members], values, strict=True):
                    _log(m, epoch, step, row)
        if preempt.stop_requested():
            _save_preempted(todo, epoch, step_in_epoch + 1, time.perf_counter() - started)


def _save_preempted(todo: list[list[Member]], epoch: int, done: int, elapsed: float) -> None:
    """Save every run that reached this step at it, then raise ``Preempted``."""
    for m in (m for members in todo for m in members):
        if m.starts_by(epoch, done - 1):
            m.train_seconds += elapsed
            m.checkpoint(epoch, done)
    raise preempt.Preempted(f"stopped at step {done} of epoch {epoch + 1}")


def _with_noise(members: list[list[Member]], noises: list[tuple[torch.Tensor, torch.Tensor]]):
    return ((m, noise) for group, noise in zip(members, noises, strict=True) for m in group)


class StepRunner:
    """Runs one step of the active members: from a CUDA graph where it can, eagerly elsewhere.

    A graph is captured for one set of active members and captured again when that set changes (a member
    diverged, or a resumed member joins at its epoch). If warm-up or capture fails, one warning says why and
    every later step runs eagerly; a loop holding a member whose step decides on the host runs eagerly throughout.
    """

    def __init__(self, groups: list[TrainGroup], autocast: torch.autocast, device: torch.device,
                 options: LoopOptions) -> None:  # fmt: skip
        self.groups, self.autocast, self.device = groups, autocast, device
        graphable = all(m.graphs for group in groups for m in group.members)
        self.use_graphs = options.cuda_graphs and graphable and cuda_graphs.graphs_supported(device)
        self.concurrent = options.concurrent
        self._key: tuple[int, ...] | None = None
        self._graph: cuda_graphs.GraphedStep | None = None

    def __call__(self, active: list[list[Member]], batches: Sequence[Batch]) -> list[torch.Tensor]:
        """One step of the ``active`` members of each group (a group with none is left out: it may be resuming
        later, or done); one loss tensor per group that stepped."""
        stepping = [(TrainGroup(members, group.teacher), batch)
                    for group, members, batch in zip(self.groups, active, batches, strict=True) if members]  # fmt: skip
        groups, batches = [group for group, _ in stepping], [batch for _, batch in stepping]
        if not self.use_graphs:
            return cohort_step(groups, batches, self.autocast)
        key = tuple(id(m) for members in active for m in members)
        if key != self._key:
            self._graph, self._key = None, key
            self._graph = self._capture(groups, batches)
        if self._graph is None:
            return cohort_step(groups, batches, self.autocast)
        return self._graph(batches)

    def _capture(self, groups: list[TrainGroup], batches: Sequence[Batch]) -> cuda_graphs.GraphedStep | None:
        members = [m for group in groups for m in group.members]
        optimizers = [opt for m in members for opt in (m.opt_g, m.opt_d)]
        modules = [module for m in members for module in (m.generator, m.discriminator, m.objective) if module]
        snapshot = StateSnapshot.take(modules, optimizers)
        branches = Branches(self.device, len(members) if self.concurrent else 0)
        try:
            step = lambda b: cohort_step(groups, b, self.autocast, branches)  # noqa: E731
            return cuda_graphs.GraphedStep.capture(step, batches, snapshot)
        except Exception as error:  # any failure: train eagerly, say why once
            warnings.warn(
                f"CUDA graph capture failed, training eagerly ({type(error).__name__}: {first_line(error)}); "
                "--no-cuda-graphs skips the attempt",
                RuntimeWarning,
                stacklevel=2,
            )
            self.use_graphs = False
            return None


def _log(member: Member, epoch: int, step: int, values: list[float]) -> None:
    member.log.append([epoch, step, *values])
    if not all(math.isfinite(v) for v in values):
        member.diverged_step = step


def _cohort_name(groups: list[TrainGroup]) -> str:
    members = [m for group in groups for m in group.members]
    seeds = ",".join(str(group.members[0].spec.seed) for group in groups)
    kinds = sorted({m.spec.kd for m in members})
    return f"seed {seeds} {'+'.join(kinds)} x{len(members)}"
