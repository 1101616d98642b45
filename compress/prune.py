"""Structured channel pruning of a trained generator with torch-pruning, to a target parameter count.

torch-pruning's ``DependencyGraph`` traces the generator once on example inputs and groups every layer whose
channels must go together: a (transposed) convolution's output channels, the batch norm after it, the next
layer's input channels, a residual sum's two branches, a class-conditional batch norm's per-class gain and
bias embeddings (its ``EmbeddingPruner`` slices their ``embedding_dim``), and a linear layer whose output is
reshaped to channels (``view(B, C, 4, 4)``: 16 rows per channel). Nothing here edits a weight by hand.

Rules:
- The image output layer (the last convolution the forward pass runs) is never pruned: its output channels are
  the image's. The noise and the labels are inputs, not layers, so torch-pruning never prunes them.
- Every group loses the same fraction of its channels (``MetaPruner`` local pruning at one ratio); the ratio is
  found by bisection so that the parameter count meets a target (``prune_to_params``).
- Groups are rooted at convolutions and batch norms, never at a linear layer: a linear layer reshaped to
  channels would otherwise be ranked row by row (1 of 16 rows of a channel), which the dependency graph then
  refuses as a channel cut.

Importances: ``bn`` ranks a channel by its batch-norm scale |gamma| (network slimming; CAT's criterion); for a
class-conditional batch norm (a module with a ``bn`` batch norm and a ``gain`` embedding, as in the resnet
family) the scale is the mean |gain| over the classes. ``l1`` is torch-pruning's group L1 magnitude
(``MagnitudeImportance(p=1)``): the L1 norm of every weight the channel touches, averaged over the group.

A pruned generator is saved as plain data (loadable with ``torch.load(weights_only=True)``): its state_dict and
the kept channels of each group, by the group's root layer name. ``load_pruned`` builds the family's unpruned
generator at the teacher's width and cuts every group to the saved count with the same dependency graph (which
channels are cut does not matter: the saved weights replace them all), then loads the state_dict strictly.
torch-pruning's own ``tp.state_dict`` is not used: it pickles every module's ``__dict__`` (hooks, configs),
which ``weights_only`` refuses.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn

import gans
from bench.base.errors import CheckpointError, UserError, distinct, first_line
from bench.base.flags import INT, INTS, STRS, Flag
from bench.base.io import is_file, quarantine
from bench.base.layout import DISCRIMINATOR_FILE, GENERATOR_FILE, PRUNE, PRUNED_FILE, WIDTH
from bench.engine.checkpoints import atomic_torch_save, safe_torch_load
from bench.engine.methods import Expansion, Method, Pair, Sources, register_method
from bench.engine.models import build_models, count_params
from bench.engine.spec import MAX_EPOCHS, RunSpec, check_int
from compress.layers import conditional_batch_norms
from compress.width import load_state
from data import DataShape

IMPORTANCES = ("bn", "l1")
FORMAT = "gan-kd-bench/pruned-generator/1"
# roots of pruning groups: every group of a generator holds a convolution or a batch norm; see the module doc
_ROOT_TYPES = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)


class PruneTargetError(UserError):
    """A target parameter count no uniform pruning of this generator can reach."""


class ScaleImportance(tp.importance.BNScaleImportance):
    """|gamma| of affine batch norms and mean |gain| over classes of class-conditional ones, averaged per group."""

    def __init__(self, gains: Sequence[nn.Embedding] = ()) -> None:
        super().__init__()
        self.gains = list(gains)

    @torch.no_grad()
    def __call__(self, group) -> torch.Tensor:
        scores, root_idxs = [], []
        for i, (dep, idxs) in enumerate(group):
            layer, fn = dep.layer, dep.pruning_fn
            if fn == tp.prune_batchnorm_out_channels and layer.affine:
                scores.append(layer.weight.data[idxs].abs())
            elif fn == tp.prune_embedding_out_channels and any(layer is g for g in self.gains):
                scores.append(layer.weight.data[:, idxs].abs().mean(dim=0))  # (classes, channels) -> channels
            else:
                continue
            root_idxs.append(group[i].root_idxs)
        if not scores:  # a group with no scale would silently stay unpruned: refuse instead
            raise PruneTargetError(f"importance 'bn' needs a batch norm in every pruned group; none in {group[0]}")
        return self._normalize(self._reduce(scores, root_idxs), self.normalizer)


def make_importance(name: str, model: nn.Module) -> tp.importance.Importance:
    """The torch-pruning importance called ``name`` ("bn" or "l1"), bound to ``model``'s layers."""
    if name == "bn":
        return ScaleImportance([m.gain for _, m in conditional_batch_norms(model)])
    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    raise UserError(f"unknown pruning importance {name!r}: choose one of {', '.join(IMPORTANCES)}")


def example_inputs(generator: nn.Module, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, labels) of the generator's sizes, on its device: what the dependency graph is traced with."""
    device = next(generator.parameters()).device
    return torch.randn(batch, generator.nz, device=device), torch.arange(batch, device=device) % generator.num_classes


def _output_layer(model: nn.Module, inputs: tuple) -> nn.Module:
    """The last convolution or linear layer the forward pass runs: the one that makes the image channels."""
    ran: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: ran.append(m))
        for m in model.modules()
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return ran[-1]


def _groups(
    model: nn.Module, inputs: tuple, graph: tp.DependencyGraph | None = None, ignored: list[nn.Module] | None = None
) -> tuple[tp.DependencyGraph, list[tuple[str, nn.Module, int]]]:
    """The dependency graph (traced here unless given) and its prunable groups as (root name, root layer,
    channels)."""
    if graph is None:
        with torch.enable_grad():  # torch-pruning traces through autograd: a caller's no_grad would break it
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=inputs)
    ignored = ignored or [_output_layer(model, inputs)]
    groups = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=_ROOT_TYPES):
        root = group[0].dep.target.module
        groups.append((graph._module2name[root], root, graph.get_out_channels(root)))
    return graph, groups


def group_channels(model: nn.Module, inputs: tuple | None = None) -> dict[str, int]:
    """Channels of each prunable group of ``model``, by the group's root layer name."""
    model_was_training = model.training
    model.eval()  # tracing runs a forward: batch-norm statistics must not move
    try:
        return {name: channels for name, _, channels in _groups(model, inputs or example_inputs(model))[1]}
    finally:
        model.train(model_was_training)


def _finish(
    pruned: nn.Module, teacher_width: int, groups_before: dict[str, int], groups_after: dict[str, int], inputs: tuple
) -> nn.Module:
    """Set ``width`` to the pruned first-layer channels and check the generator contract still holds."""
    # the first-layer group is the one that had the teacher's width (one per family: the others are halves)
    first = [name for name, channels in groups_before.items() if channels == teacher_width]
    if len(first) != 1:
        raise RuntimeError(f"cannot tell the first-layer group: {len(first)} groups had {teacher_width} channels")
    pruned.width = groups_after[first[0]]
    was_training = pruned.training
    pruned.eval()
    with torch.no_grad():
        images, features = pruned.forward_features(*inputs)
    pruned.train(was_training)
    seen = [f.shape[1] for f in features]
    if seen[0] != pruned.width or seen != list(pruned.hidden_channels()):
        raise RuntimeError(
            f"pruned generator reports channels {pruned.hidden_channels()} (width {pruned.width}) "
            f"but its activations have {seen}"
        )
    return pruned


def prune_ratio(generator: nn.Module, ratio: float, importance: str, example_inputs: tuple) -> nn.Module:
    """A pruned deep copy of ``generator``: every group keeps ``int(channels * (1 - ratio))`` channels, the ones
    ``importance`` ranks highest (torch-pruning's rounding)."""
    model = copy.deepcopy(generator)
    was_training = model.training
    model.eval()  # the tracing forward must not update batch-norm running statistics
    inputs = tuple(example_inputs)
    ignored = [_output_layer(model, inputs)]
    with torch.enable_grad():  # as in _groups: the pruner traces the model through autograd
        pruner = tp.pruner.MetaPruner(
            model,
            inputs,
            importance=make_importance(importance, model),
            pruning_ratio=ratio,
            ignored_layers=ignored,
            root_module_types=list(_ROOT_TYPES),
            global_pruning=False,
        )
    _, before = _groups(model, inputs, pruner.DG, ignored)
    pruner.step()
    after = {name: pruner.DG.get_out_channels(root) for name, root, _ in before}
    _finish(model, generator.width, {name: c for name, _, c in before}, after, inputs)
    model.train(was_training)
    model.pruning = {"importance": importance, "ratio": ratio, "teacher_width": generator.width, "channels": after}
    return model


def prune_to_params(generator: nn.Module, target_params: int, importance: str, example_inputs: tuple) -> nn.Module:
    """A pruned deep copy of ``generator`` (which is left untouched) whose parameter count is the closest to
    ``target_params`` that one pruning ratio shared by every group gives.

    Bisection over the ratio r in [0, 1 - 1/c_min] (c_min: the smallest group; beyond it a group would lose its
    last channel): the count is a non-increasing step function of r, so keep lo with count > target and hi with
    count <= target, halve, and stop once the channels kept at lo and at hi differ by at most one in every group
    (the counts are cached by kept channels, so each distinct cut is pruned once). The answer is whichever of lo
    and hi is nearer the target; since the target lies between them, it is off by at most what one channel in
    every group adds. The copy carries ``pruning`` (a dict: importance, ratio, teacher_width, channels per group,
    target_params, params, bracket = the counts below and above the target, seconds, evaluations) and keeps
    ``nz``, ``num_classes``; ``width`` and ``hidden_channels()`` report the pruned channels.
    """
    start = time.perf_counter()
    inputs = tuple(example_inputs)
    make_importance(importance, generator)  # an unknown name fails before any work
    cuts = _Cuts(generator, importance, inputs)
    full = count_params(generator)
    if target_params >= full:
        raise PruneTargetError(f"target {target_params} parameters is not below the generator's {full}")
    hi_ratio = 1.0 - 1.0 / min(cuts.channels.values())
    smallest = cuts.at(hi_ratio)
    if count_params(smallest) > target_params:
        raise PruneTargetError(
            f"target {target_params} parameters is below the smallest uniform pruning of this "
            f"generator ({count_params(smallest)}, one channel in its narrowest group)"
        )
    lo, hi = 0.0, hi_ratio  # count(lo) = full > target >= count(hi)
    for _ in range(60):
        if max(abs(a - b) for a, b in zip(cuts.kept(lo), cuts.kept(hi))) <= 1:
            break
        mid = (lo + hi) / 2
        if count_params(cuts.at(mid)) > target_params:
            lo = mid
        else:
            hi = mid
    below = cuts.at(hi)
    above = cuts.at(lo) if lo > 0 else generator
    closer_above = lo > 0 and count_params(above) - target_params < target_params - count_params(below)
    best = above if closer_above else below
    best.pruning = {
        **best.pruning,
        "target_params": target_params,
        "params": count_params(best),
        "bracket": (count_params(below), count_params(above)),
        "seconds": time.perf_counter() - start,
        "evaluations": len(cuts.cache),
    }
    return best


class _Cuts:
    """The generator pruned at each ratio asked, cached by the channels each group keeps: every distinct cut is
    made once."""

    def __init__(self, generator: nn.Module, importance: str, inputs: tuple) -> None:
        self.generator, self.importance, self.inputs = generator, importance, inputs
        self.channels = group_channels(generator, inputs)
        self.cache: dict[tuple[int, ...], nn.Module] = {}

    def kept(self, ratio: float) -> tuple[int, ...]:
        return tuple(int(c * (1.0 - ratio)) for c in self.channels.values())

    def at(self, ratio: float) -> nn.Module:
        key = self.kept(ratio)
        if key not in self.cache:
            self.cache[key] = prune_ratio(self.generator, ratio, self.importance, self.inputs)
            got = tuple(self.cache[key].pruning["channels"][name] for name in self.channels)
            if got != key:  # the cache and the stopping rule assume torch-pruning's rounding
                raise RuntimeError(f"torch-pruning kept {got} channels at ratio {ratio}, not {key}")
        return self.cache[key]


def save_pruned(generator: nn.Module, path: str | Path) -> None:
    """Write ``generator`` (from ``prune_to_params``/``load_pruned``) atomically as plain data: its state_dict and
    each group's kept channels, loadable with ``torch.load(weights_only=True)``."""
    info = getattr(generator, "pruning", None)
    if not info:
        raise ValueError("not a pruned generator: it has no `pruning` record (make it with prune_to_params)")
    payload = {
        "format": FORMAT,
        "teacher_width": int(info["teacher_width"]),
        "width": int(generator.width),
        "channels": group_channels(generator),
        "pruning": {k: v for k, v in info.items() if isinstance(v, (int, float, str))},
        "state_dict": generator.state_dict(),
    }
    atomic_torch_save(Path(path), payload)


def load_pruned(family: str, teacher_width: int, path: str | Path, **build_kwargs) -> nn.Module:
    """The pruned generator saved at ``path``: the ``family`` generator at ``teacher_width`` (built with
    ``build_kwargs``: nz, num_classes, channels, image_size) cut to the saved channels, with the saved weights."""
    payload = safe_torch_load(Path(path))
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pruned generator of this suite")
    if payload["teacher_width"] != teacher_width:
        raise CheckpointError(f"{path} was pruned from width {payload['teacher_width']}, not {teacher_width}")
    model = gans.build(family, teacher_width, **build_kwargs)[0].eval()
    inputs = example_inputs(model)
    graph, groups = _groups(model, inputs)
    saved = payload["channels"]
    if set(saved) != {name for name, _, _ in groups}:
        raise CheckpointError(
            f"{path} does not fit a width-{teacher_width} {family} generator: its pruned groups "
            f"{sorted(saved)} are not this model's {sorted(n for n, _, _ in groups)}"
        )
    for name, root, channels in groups:
        keep = int(saved[name])
        if not 0 < keep <= channels:
            raise CheckpointError(f"{path}: group {name} keeps {keep} of {channels} channels")
        if keep < channels:
            fn = graph.get_pruner_of_module(root).prune_out_channels
            graph.get_pruning_group(root, fn, idxs=list(range(keep, channels))).prune()
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit the rebuilt pruned generator: {str(err).splitlines()[0]}") from None
    _finish(model, teacher_width, {name: c for name, _, c in groups}, {k: int(v) for k, v in saved.items()}, inputs)
    model.pruning = dict(payload["pruning"])
    return model


# --- method "prune": the teacher's generator cut to the width grid's parameter counts, then fine-tuned ---


def target_params(spec: RunSpec, data: DataShape) -> int:
    """Parameters of the width-``spec.width`` generator of the run's family: what the pruned one is cut to."""
    return count_params(build_models(replace(spec, method=WIDTH, options=()), data)[0])


def start(spec: RunSpec, data: DataShape, sources: Sources) -> Pair:
    """The teacher's generator pruned to ``target_params`` and the teacher's discriminator, to fine-tune.

    The cut is saved to the run's ``pruned.pt`` before training; a resumed run reads it instead of pruning again.
    """
    teacher_spec = spec.teacher()
    discriminator = build_models(teacher_spec, data)[1]
    load_state(discriminator, sources.teacher_dir / DISCRIMINATOR_FILE, "the teacher's discriminator")
    saved = sources.run_dir / PRUNED_FILE
    if saved.is_file():
        try:
            return _load_cut(saved, spec, data), discriminator
        except CheckpointError as err:
            quarantine(saved, first_line(err))
    teacher = copy.deepcopy(sources.teacher_generator).cpu().eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        inputs = example_inputs(teacher)
    generator = prune_to_params(teacher, target_params(spec, data), spec.option("prune_importance"), inputs)
    save_pruned(generator, saved)
    return generator, discriminator


def _load_cut(path: Path, spec: RunSpec, data: DataShape) -> nn.Module:
    channels, size, _ = data.image_shape
    return load_pruned(
        spec.family, spec.teacher_width, path, num_classes=data.num_classes, channels=channels, image_size=size
    )


def load(path: Path, spec: RunSpec, data: DataShape) -> nn.Module:
    """The fine-tuned pruned generator: the architecture of the run's ``pruned.pt``, the weights at ``path``."""
    generator = _load_cut(path.parent / PRUNED_FILE, spec, data)
    load_state(generator, path, f"the pruned generator of {path.parent / PRUNED_FILE}")
    return generator


def record_columns(run_dir: Path, training: dict) -> dict[str, float | int | str]:
    """The cut's columns of ``results.csv``: ratio, parameter target, first-layer channels, pruning seconds."""
    payload = safe_torch_load(run_dir / PRUNED_FILE)
    info = payload["pruning"]
    return {
        "prune_ratio": float(info["ratio"]),
        "prune_target_params": int(info["target_params"]),
        "pruned_width": int(payload["width"]),
        "seconds_prune": float(info["seconds"]),
    }


@dataclass(frozen=True)
class PruneSettings:
    """The prune method's knobs: which sizes the teacher is cut to, how channels are ranked, how long the cut is
    fine-tuned."""

    widths: tuple[int, ...] | None = None  # parameter targets named by width; None: the grid's widths
    importance: tuple[str, ...] = ("bn",)
    finetune_epochs: int = 2

    def __post_init__(self) -> None:
        if self.widths is not None:
            object.__setattr__(self, "widths", tuple(self.widths))
            for width in self.widths:
                gans.check_width(width, "prune width")
        object.__setattr__(self, "importance", tuple(self.importance))
        distinct(self.importance, "--prune-importance", IMPORTANCES)
        check_int(self.finetune_epochs, "--finetune-epochs", 1, MAX_EPOCHS)

    def targets(self, widths: tuple[int, ...], teacher_width: int) -> tuple[int, ...]:
        """The widths whose parameter counts the teacher is cut to: narrower than the teacher."""
        return tuple(width for width in (self.widths if self.widths is not None else widths) if width < teacher_width)


def expand(grid: Expansion) -> list[RunSpec]:
    """Per importance and objective, the teacher cut to every target narrower than itself."""
    settings: PruneSettings = grid.settings
    options = {"finetune_epochs": settings.finetune_epochs}
    return [
        replace(grid.teacher, width=width, kd=kd, kd_weight=grid.kd_weight, method=PRUNE,
                options={**options, "prune_importance": importance})
        for importance in settings.importance
        for kd in grid.kd
        for width in settings.targets(grid.widths, grid.teacher.teacher_width)
    ]  # fmt: skip


def check(settings: PruneSettings, grid) -> None:
    """Targets given that are all as wide as the teacher are refused (the grid's own widths are only warned about);
    a given teacher without its discriminator is refused."""
    if not settings.targets(grid.widths, grid.teacher_width):
        if settings.widths is not None:
            raise UserError(f"--prune-widths {','.join(map(str, settings.widths))}: none is below the teacher's width "
                            f"({grid.teacher_width})")  # fmt: skip
        warnings.warn(f"no pruning target below the teacher's width ({grid.teacher_width}): the grid has no pruned "
                      "run (--prune-widths sets the targets)", UserWarning, stacklevel=4)  # fmt: skip
    if grid.teacher is not None and not is_file(Path(grid.teacher).parent / DISCRIMINATOR_FILE):
        raise UserError(
            f"--methods prune fine-tunes against the teacher's discriminator, and no {DISCRIMINATOR_FILE} lies "
            f"beside --teacher {grid.teacher}: give a run directory of this suite, or leave prune out of --methods"
        )


def follow(settings: PruneSettings, preset, grid) -> PruneSettings:
    """A preset's targets are its widths' (and teacher's): a grid narrowed by --widths or --teacher-width prunes to
    its own widths; its fine-tuning keeps its share of the training epochs when --epochs changes them."""
    widths = settings.widths if (grid.widths, grid.teacher_width) == (preset.widths, preset.teacher_width) else None
    epochs = settings.finetune_epochs
    if grid.epochs != preset.epochs:
        epochs = min(MAX_EPOCHS, max(1, round(epochs * grid.epochs / preset.epochs)))  # --epochs is checked itself
    return replace(settings, widths=widths, finetune_epochs=epochs)


FLAGS = (
    Flag("--prune-widths", "prune: cut the teacher to the parameter count of each of these widths' generators, so "
         "pruned and narrower models compare at equal size (default: --widths below the teacher's)", INTS, "widths"),
    Flag("--prune-importance", "prune: how channels are ranked, bn (batch-norm scale, network slimming) and/or l1 "
         "(weight magnitude); each is its own run (default: bn)", STRS, "importance"),
    Flag("--finetune-epochs", "prune: epochs of fine-tuning after the cut, against the teacher's discriminator, "
         "with each --kd objective (none = GAN loss only) (default: the preset's)", INT),
)  # fmt: skip

register_method(
    Method(
        PRUNE,
        "the teacher's channels pruned with torch-pruning to the parameter count of each width (--prune-widths, "
        "--prune-importance), then fine-tuned with and without distillation (--finetune-epochs, --kd)",
        load,
        expand,
        phases=(PRUNE,),
        needs=lambda spec: spec.teacher(),
        made_from=lambda spec: spec.teacher(),
        start=start,
        columns=record_columns,
        files=lambda spec: (GENERATOR_FILE, PRUNED_FILE),  # the cut's architecture rebuilds the fine-tuned one
        settings=PruneSettings,
        flags=FLAGS,
        options={"prune_importance": None, "finetune_epochs": 0},
        train_epochs=lambda spec: spec.option("finetune_epochs"),
        check=check,
        follow=follow,
    )
)
