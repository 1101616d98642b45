"""Stacked-seed training: the runs of one width over N seeds trained as one model (a GPU lever, not yet adopted).

The separate runs of a width differ only in their seed, so their parameters can be stacked on a leading dim of
size N (``torch.func.stack_module_state``) and one call of the architecture, ``torch.func.vmap`` over
``torch.func.functional_call``, computes every seed's forward at once: fewer, bigger kernels than N small models,
which is what a launch-bound GPU step wants. It computes what ``bench.engine.train.train_step`` computes for each
seed's run from scratch (kd ``none``):

- the loss backpropagated is the SUM over seeds of each seed's mean loss, so the gradient of each seed's slice is
  that seed's own gradient (a mean over seeds would scale it by 1/N: Adam's update hardly changes, its moments do);
- one Adam over the stacked parameters is the seeds' separate Adams (same lr and betas): Adam is elementwise;
- batch-norm running statistics are stacked buffers vmapped like the parameters, so each seed's in-place update
  writes its own slice; the discriminator runs on the real batch, on the detached fakes, then (after its update)
  on the fakes again, as ``train_step`` does, so its statistics move three times per step in the same order.

The models draw no random numbers in their forward (no dropout), so vmap runs with ``randomness="error"``: a
random op added to a family later fails loudly instead of silently sharing or splitting its draws.

Families: ``dcgan`` works. ``resnet`` does not: its generator does, but its discriminator is spectrally
normalised (``torch.nn.utils.parametrizations.spectral_norm``), and in training mode the power iteration updates
its ``_u`` / ``_v`` vectors with an ``out=`` op (``F.normalize(..., out=self._u)``, i.e. ``aten::div.out``) that
vmap cannot batch ("the fallback path doesn't work on out= or view ops"). Any model with a parametrized layer is
therefore refused up front with a one-line ``UserError``.

Tested equal to separate training on the CPU (``tests/test_stacked.py``); timed against it by
``python -m bench.harness.stacked``. The grid's training loop does not use it until a GPU measurement says it pays.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.utils import parametrize

import gans
from bench.base.errors import UserError
from bench.base.layout import SCRATCH
from bench.engine.models import build_models
from bench.engine.spec import RunSpec
from bench.engine.train import BatchStream
from data import DataShape, ImageDataset
from gans import logit_loss
from gans.family import MIN_WIDTH

Tensors = dict[str, torch.Tensor]


def check_stackable(modules: Sequence[nn.Module], what: str) -> None:
    """Raise a one-line ``UserError`` when ``modules`` cannot be trained stacked (none, or a parametrized layer)."""
    if not modules:
        raise UserError(f"stacked-seed training needs at least one {what}")
    parametrized = [(name, m) for name, m in modules[0].named_modules() if parametrize.is_parametrized(m)]
    if parametrized:
        name, layer = parametrized[0]
        kinds = sorted({type(p).__name__.lstrip("_") for ps in layer.parametrizations.values() for p in ps})
        raise UserError(
            f"stacked-seed training cannot train this {what}: its layer {name!r} is parametrized "
            f"({', '.join(kinds)}), and torch.func.vmap cannot batch its training-mode update "
            "(spectral norm's power iteration writes with out= ops)"
        )


def check_family(family: str) -> None:
    """Raise a one-line ``UserError`` when ``family``'s pairs cannot be trained stacked (known from its smallest
    pair, before any data is loaded)."""
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave the caller's stream alone
        generator, discriminator = gans.build(gans.FAMILIES.check(family), MIN_WIDTH)
    check_stackable([generator], f"{family} generator")
    check_stackable([discriminator], f"{family} discriminator")


@dataclass
class StackedModel:
    """N modules of one architecture as one: their parameters and buffers stacked on dim 0, and a skeleton on the
    meta device (no storage) that ``functional_call`` runs with each seed's slice."""

    base: nn.Module
    params: Tensors
    buffers: Tensors

    @classmethod
    def stack(cls, modules: Sequence[nn.Module], what: str = "model") -> StackedModel:
        """Copies of ``modules``' tensors, stacked; the stacked parameters are leaves that require grad."""
        check_stackable(modules, what)
        params, buffers = stack_module_state(list(modules))
        base = copy.deepcopy(modules[0]).to("meta").train(modules[0].training)
        return cls(base, params, buffers)

    def call(self, params: Tensors, buffers: Tensors, *args: torch.Tensor) -> torch.Tensor:
        """One seed's forward (inside vmap, ``params`` and ``buffers`` are that seed's slices)."""
        return functional_call(self.base, (params, buffers), args)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        """Every seed's forward; each of ``args`` has the seeds on dim 0."""
        return vmap(self.call, randomness="error")(self.params, self.buffers, *args)

    def unstack_into(self, modules: Sequence[nn.Module]) -> None:
        """Copy seed ``i``'s parameters and buffers into ``modules[i]``."""
        stacked = self.params | self.buffers
        with torch.no_grad():
            for i, module in enumerate(modules):
                for name, tensor in (*module.named_parameters(), *module.named_buffers()):
                    tensor.copy_(stacked[name][i])


@dataclass
class StackedPair:
    """The (generator, discriminator) pairs of N seeds of one width, trained as one stacked pair with one Adam
    per side over the stacked parameters (the seeds' separate Adams: Adam is elementwise)."""

    pairs: list[tuple[nn.Module, nn.Module]]
    g: StackedModel
    d: StackedModel
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[nn.Module, nn.Module]], spec: RunSpec) -> StackedPair:
        """Stack ``pairs`` (already on their device) with the optimiser settings of ``spec`` (as ``Member``)."""
        g = StackedModel.stack([pair[0] for pair in pairs], f"{spec.family} generator")
        d = StackedModel.stack([pair[1] for pair in pairs], f"{spec.family} discriminator")
        betas = (spec.beta1, spec.beta2)
        opt_g = torch.optim.Adam(g.params.values(), lr=spec.lr, betas=betas)
        opt_d = torch.optim.Adam(d.params.values(), lr=spec.lr, betas=betas)
        return cls(list(pairs), g, d, opt_g, opt_d)

    @classmethod
    def from_specs(cls, specs: Sequence[RunSpec], data: ImageDataset | DataShape, device: torch.device) -> StackedPair:
        """The fresh pairs of ``specs`` (one run per seed, otherwise equal, from scratch in fp32), stacked."""
        check_specs(specs)
        pairs = [tuple(model.to(device).train() for model in build_models(spec, data)) for spec in specs]
        return cls.from_pairs(pairs, specs[0])

    def step(
        self, real: torch.Tensor, labels: torch.Tensor, z: torch.Tensor, fake_labels: torch.Tensor
    ) -> torch.Tensor:
        """One discriminator and one generator update of every seed (inputs with the seeds on dim 0); returns
        (seeds, 4) losses: (loss_d, loss_g_gan, loss_kd = 0, loss_g), as ``train_step`` per seed."""
        g, d = self.g, self.d
        fake = g(z, fake_labels)

        def d_loss(params: Tensors, buffers: Tensors, real, labels, fake, fake_labels) -> torch.Tensor:
            real_logits = d.call(params, buffers, real, labels)
            fake_logits = d.call(params, buffers, fake, fake_labels)
            return logit_loss(real_logits, 1.0) + logit_loss(fake_logits, 0.0)

        loss_d = vmap(d_loss, randomness="error")(d.params, d.buffers, real, labels, fake.detach(), fake_labels)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.sum().backward()  # the sum: each seed's slice gets its own loss's gradient
        self.opt_d.step()

        def g_loss(params: Tensors, buffers: Tensors, fake, fake_labels) -> torch.Tensor:
            # the updated discriminator, as train_step
            return logit_loss(d.call(params, buffers, fake, fake_labels), 1.0)

        loss_g = vmap(g_loss, randomness="error")(d.params, d.buffers, fake, fake_labels)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.sum().backward()
        self.opt_g.step()
        return torch.stack([loss_d, loss_g, torch.zeros_like(loss_g), loss_g], dim=1).detach()

    def unstack(self) -> list[tuple[nn.Module, nn.Module]]:
        """The N ordinary (generator, discriminator) pairs, holding the stacked pair's current weights and
        statistics (what each run saves as its generator.pt and discriminator.pt)."""
        self.g.unstack_into([pair[0] for pair in self.pairs])
        self.d.unstack_into([pair[1] for pair in self.pairs])
        return self.pairs


def check_specs(specs: Sequence[RunSpec]) -> None:
    """Refuse, in one line, specs that are not one width's from-scratch fp32 runs over distinct seeds."""
    if not specs:
        raise UserError("stacked-seed training needs at least one run")
    if len({replace(spec, seed=0) for spec in specs}) != 1 or len({spec.seed for spec in specs}) != len(specs):
        raise UserError("stacked-seed training stacks runs that differ only in their seed")
    if specs[0].kd != SCRATCH or specs[0].precision != "fp32":
        raise UserError(f"stacked-seed training trains runs from scratch (kd {SCRATCH}) in fp32 only")


def stacked_batches(streams: Sequence[BatchStream], epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """The batches of ``epoch`` of every seed's stream, each of the four tensors stacked on a new dim 0."""
    for batches in zip(*(stream.epoch(epoch) for stream in streams), strict=True):
        yield tuple(torch.stack(parts) for parts in zip(*batches, strict=True))
