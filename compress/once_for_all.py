"""Method ``once-for-all``: one generator trained at every width at once, each width then cut from it (SlimGAN,
Hou et al., AAAI 2021; the "supernet" of GAN Compression and Anycost GAN).

A **supernet run** (width = the teacher's) trains the widest generator of the seed's family together with every
narrower width of ``--ofa-widths``. A narrower width is the widest generator's first k channels of every layer (the
leading slice of every weight: a transposed convolution's ``[in, out, kh, kw]`` and a convolution's ``[out, in,
kh, kw]`` alike), with batch norms of its own (switchable batch norm: statistics and affine parameters per width;
the resnet family's class-conditional gains and biases are weights, sliced like the rest). Each step (SlimGAN's
sandwich rule) runs the widest, the narrowest and one width drawn among the others on the same (z, y):

- the discriminator (one, at the run's discriminator width) learns real images against the fakes of all three
  widths (the fake term averaged over them), so it judges every width the generator is trained at;
- the generator's loss is, summed over the three widths, each one's GAN loss plus (``--kd`` an objective, not
  ``none``) ``kd_weight`` times that objective against the seed's teacher, plus, for each narrower width, the pixel
  L1 distance of its images to the widest's (detached: in-place distillation). One optimiser step updates the
  shared weights from all of them.

One discriminator rather than one per width: SlimGAN's choice, and the supernet's training then costs about one
teacher run plus the narrower widths' passes; per-width discriminators would add a discriminator update per width.

The widest generator is the run's ``generator.pt`` (an ordinary generator of the teacher's width, measured like
any); the narrower widths' batch norms are ``supernet.pt``. A **cut run** (method ``once-for-all`` at a narrower
width) trains nothing: it is the supernet at its width saved as an ordinary generator of that width
(``generator.pt``, loaded, timed and scored like a width run's), made once its supernet run has finished. Its
``supernet_train_seconds`` is the supernet's training time, shared by every width cut from it.

The random width is drawn on the host at each step (from the seed and the step count, so a resumed run draws the
same), so the step is not replayed from a CUDA graph: it runs eagerly.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

import gans
from bench.base.errors import CheckpointError, UserError, distinct
from bench.base.flags import INTS, STRS, Flag
from bench.base.io import atomic_write_text, is_file
from bench.base.layout import DISCRIMINATOR_FILE, GENERATOR_FILE, RESULT_FILE, SCRATCH
from bench.engine.checkpoints import safe_torch_load
from bench.engine.methods import Expansion, Method, Pair, Sources, register_method
from bench.engine.models import build_models, stream_seed
from bench.engine.records import UnreadableRecordError, read_record
from bench.engine.spec import RunSpec
from compress.width import load_state
from data import DataShape
from distill import build_objective, objectives
from gans import logit_loss

ONCE_FOR_ALL = "once-for-all"
SUPERNET_FILE = "supernet.pt"  # the narrower widths' batch norms; the widest generator is generator.pt
CUT_FILE = "cut.json"  # a cut run's supernet and its training time
_NORMS = nn.modules.batchnorm._BatchNorm


def norm_entries(generator: nn.Module) -> set[str]:
    """State-dict names of ``generator``'s batch norms (statistics and affine): what each width keeps its own."""
    return {
        f"{name}.{entry}"
        for name, module in generator.named_modules()
        if isinstance(module, _NORMS)
        for entry in module.state_dict()
    }


def shared_shapes(generator: nn.Module) -> dict[str, torch.Size]:
    """The shape of every state-dict entry of ``generator`` that a width takes from the widest (all but its norms)."""
    norms = norm_entries(generator)
    return {name: tensor.shape for name, tensor in generator.state_dict().items() if name not in norms}


def check_cuttable(widest: Mapping[str, torch.Tensor], narrow: Mapping[str, torch.Size], what: str) -> None:
    """Raise a one-line ``UserError`` unless every entry of ``narrow`` is a leading slice of the widest's."""
    for name, shape in narrow.items():
        wide = widest.get(name)
        if wide is None or wide.ndim != len(shape) or any(n > w for n, w in zip(shape, wide.shape, strict=True)):
            got = "none" if wide is None else tuple(wide.shape)
            raise UserError(f"{what} cannot be cut from its widest generator: its {name} {tuple(shape)} is not a "
                            f"leading slice of the widest's {got}")  # fmt: skip


def cut_weights(widest: nn.Module, shapes: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """The widest generator's weights cut to ``shapes``: views, so a loss on them trains the widest."""
    state = {**dict(widest.named_parameters()), **dict(widest.named_buffers())}
    return {name: state[name][tuple(slice(0, n) for n in shape)] for name, shape in shapes.items()}


class _Features(nn.Module):
    """Calls ``forward_features`` of the generator it wraps: what ``functional_call`` runs."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, labels: torch.Tensor):
        return self.generator.forward_features(z, labels)


class Supernet(nn.Module):
    """The narrower widths of a once-for-all generator: each a generator of its width holding only its own batch
    norms (its other weights are dropped), run with the widest generator's weights cut to its shapes."""

    def __init__(self, narrower: list[nn.Module]) -> None:
        super().__init__()
        self.shapes = {int(g.width): shared_shapes(g) for g in narrower}
        for generator in narrower:  # the shared weights are the widest's: a shell keeps its norms alone
            for module in generator.modules():
                if not isinstance(module, _NORMS):
                    module._parameters.update(dict.fromkeys(module._parameters))
                    module._buffers.update(dict.fromkeys(module._buffers))
        self.shells = nn.ModuleDict({str(g.width): g for g in narrower})

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(sorted(self.shapes))

    def run(self, widest: nn.Module, width: int, z: torch.Tensor, labels: torch.Tensor):
        """(images, hidden activations) of the generator at ``width``, the widest's weights cut to it."""
        if width == widest.width:
            return widest.forward_features(z, labels)
        weights = {f"generator.{name}": t for name, t in cut_weights(widest, self.shapes[width]).items()}
        return functional_call(_Features(self.shells[str(width)]), weights, (z, labels), strict=False)

    def cut_state(self, widest: nn.Module, width: int) -> dict[str, torch.Tensor]:
        """The state_dict of an ordinary generator of ``width``: the widest's weights cut, the width's own norms."""
        weights = {name: t.detach().clone() for name, t in cut_weights(widest, self.shapes[width]).items()}
        return {**weights, **self.shells[str(width)].state_dict()}


class OnceForAllObjective(nn.Module):
    """What a supernet run trains beside its widest generator: the narrower widths (``Supernet``), each width's
    objective against the seed's teacher (``--kd``), and the step count the random width is drawn from."""

    def __init__(self, supernet: Supernet, terms: dict[int, nn.Module | None], seed: int) -> None:
        super().__init__()
        self.supernet = supernet
        self.terms = nn.ModuleDict({str(width): term for width, term in terms.items() if term is not None})
        self.seed = seed
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def sampled(self, widest: int) -> list[int]:
        """The widths of this step: the widest, the narrowest, and one drawn among the others (if any)."""
        narrower = self.supernet.widths
        middle = narrower[1:]
        if not middle:
            return [widest, narrower[0]]
        rng = torch.Generator().manual_seed(stream_seed(self.seed, int(self.steps), salt=2))
        return [widest, narrower[0], middle[int(torch.randint(len(middle), (1,), generator=rng))]]

    def teacher_term(self, width: int, images, features, teacher_out) -> torch.Tensor:
        term = self.terms[str(width)] if str(width) in self.terms else None
        if term is None or teacher_out is None:
            return images.new_zeros(())
        return term(images, features, *teacher_out).float()


def step(member, real, labels, z, fake_labels, teacher_out, autocast) -> torch.Tensor:
    """One discriminator update and one update of every width sampled; returns (loss_d, loss_g_gan summed over the
    widths, loss_kd: in-place L1 plus the weighted teacher terms, loss_g = loss_g_gan + loss_kd)."""
    widest, d, ofa = member.generator, member.discriminator, member.objective
    widths = ofa.sampled(widest.width)
    with autocast:
        outputs = {width: ofa.supernet.run(widest, width, z, fake_labels) for width in widths}
        fake_terms = [logit_loss(d(images.detach(), fake_labels), 0.0) for images, _ in outputs.values()]
        loss_d = logit_loss(d(real, labels), 1.0) + torch.stack(fake_terms).mean()
    member.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    member.opt_d.step()

    with autocast:
        top = outputs[widest.width][0].detach()
        loss_gan = sum(logit_loss(d(images, fake_labels), 1.0).float() for images, _ in outputs.values())
        in_place = sum(F.l1_loss(outputs[w][0], top).float() for w in widths if w != widest.width)
        taught = sum(ofa.teacher_term(w, *outputs[w], teacher_out) for w in widths)
        loss_kd = in_place + member.spec.kd_weight * taught
        loss_g = loss_gan + loss_kd
    member.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    member.opt_g.step()
    ofa.steps += 1
    return torch.stack([loss_d.float(), loss_gan, loss_kd, loss_g]).detach()


# --- the runs: a supernet at the teacher's width, a cut at each narrower width ---


def is_supernet(spec: RunSpec) -> bool:
    return spec.width == spec.teacher_width


def supernet_of(spec: RunSpec) -> RunSpec:
    return replace(spec, width=spec.teacher_width)


def narrower_widths(spec: RunSpec) -> tuple[int, ...]:
    return tuple(int(width) for width in spec.option("ofa_widths").split("-"))


def step_widths(spec: RunSpec) -> tuple[int, ...]:
    """The widths a supernet trains in a step: the widest, the narrowest and (as the plan's estimate counts it) the
    middle of the others; a cut trains none, so its own width stands for it (it has no epochs)."""
    if not is_supernet(spec):
        return (spec.width,)
    narrowest, *middle = narrower_widths(spec)
    return (spec.width, narrowest, *middle[len(middle) // 2 : len(middle) // 2 + 1])


def build_supernet(spec: RunSpec, data: DataShape) -> Supernet:
    """The narrower widths of ``spec``'s supernet, freshly initialised as width runs of theirs would be."""
    return Supernet([build_models(replace(spec, width=width), data)[0] for width in narrower_widths(spec)])


def objective(spec: RunSpec, generator: nn.Module, data: DataShape) -> OnceForAllObjective | None:
    """A supernet's narrower widths and teacher terms; a cut trains nothing, so it has none."""
    if not is_supernet(spec):
        return None
    supernet = build_supernet(spec, data)
    teacher = gans.FAMILIES[spec.family].hidden_channels(spec.teacher_width)
    widths = (spec.width, *supernet.widths)
    hidden = {width: gans.FAMILIES[spec.family].hidden_channels(width) for width in widths}
    return OnceForAllObjective(supernet, {w: build_objective(spec.kd, hidden[w], teacher) for w in widths}, spec.seed)


def start(spec: RunSpec, data: DataShape, sources: Sources) -> Pair:
    """A supernet starts as the teacher run does; a cut is made from its finished supernet (``sources.source_dir``):
    the widest generator cut to the run's width, and the supernet's discriminator."""
    if is_supernet(spec):
        return build_models(spec, data)
    origin = supernet_of(spec)
    directory = sources.source_dir
    widest = load(directory / GENERATOR_FILE, origin, data)
    supernet = load_supernet(directory / SUPERNET_FILE, origin, data)
    generator, _ = build_models(spec, data)
    generator.load_state_dict(supernet.cut_state(widest, spec.width))
    discriminator = build_models(origin, data)[1]
    load_state(discriminator, directory / DISCRIMINATOR_FILE, "the supernet's discriminator")
    cut = {"supernet_run": origin.run_id, "supernet_train_seconds": _train_seconds(directory)}
    atomic_write_text(sources.run_dir / CUT_FILE, json.dumps(cut))
    return generator, discriminator


def load_supernet(path: Path, spec: RunSpec, data: DataShape) -> Supernet:
    """The narrower widths saved at ``path`` (a supernet run's objective); a foreign file is refused."""
    supernet = build_supernet(spec, data)
    state = safe_torch_load(path)
    prefix = "supernet."
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)} if isinstance(state, dict) else {}
    try:
        supernet.load_state_dict(own)
    except RuntimeError as err:
        reason = str(err).splitlines()[0]
        raise CheckpointError(f"{path} does not fit the supernet of {spec.run_id}: {reason}") from None
    return supernet


def _train_seconds(directory: Path) -> float | None:
    try:
        return read_record(directory / RESULT_FILE).metrics.get("train_seconds")
    except UnreadableRecordError:
        return None


def load(path: Path, spec: RunSpec, data: DataShape) -> nn.Module:
    """A supernet's widest generator, or a cut: an ordinary generator of the run's width."""
    generator, _ = build_models(spec, data)
    load_state(generator, path, f"a width-{spec.width} {spec.family} generator")
    return generator


def columns(run_dir: Path, training: dict) -> dict:
    """Every once-for-all model's ``supernet_train_seconds``: the supernet's training, shared by its widths."""
    if not is_file(run_dir / CUT_FILE):
        return {"supernet_train_seconds": training.get("train_seconds")}
    try:
        cut = json.loads((run_dir / CUT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cut = {}
    return {"supernet_train_seconds": cut.get("supernet_train_seconds") if isinstance(cut, dict) else None}


# --- its settings and registration ---


@dataclass(frozen=True)
class OnceForAllSettings:
    """The once-for-all method's knobs: the widths cut from each supernet, and the objectives supernets train with."""

    widths: tuple[int, ...] | None = None  # None: the grid's widths below the teacher's
    kd: tuple[str, ...] | None = None  # one supernet per objective; None: the grid's --kd

    def __post_init__(self) -> None:
        if self.widths is not None:
            object.__setattr__(self, "widths", tuple(self.widths))
            if not self.widths or len(set(self.widths)) != len(self.widths):
                raise UserError(f"--ofa-widths needs distinct widths, at least one, got {self.widths}")
            for width in self.widths:
                gans.check_width(width, "once-for-all width")
        if self.kd is not None:
            object.__setattr__(self, "kd", tuple(self.kd))
            distinct(self.kd, "--ofa-kd", objectives())

    def cuts(self, widths: tuple[int, ...], teacher_width: int) -> tuple[int, ...]:
        """The widths cut from the supernet, narrowest first: those narrower than the teacher."""
        return tuple(sorted(w for w in (self.widths if self.widths is not None else widths) if w < teacher_width))


def expand(grid: Expansion) -> list[RunSpec]:
    """Per objective, a supernet at the teacher's width and a cut at every narrower width."""
    settings: OnceForAllSettings = grid.settings
    widths = settings.cuts(grid.widths, grid.teacher.teacher_width)
    if not widths:
        return []
    options = {"ofa_widths": "-".join(map(str, widths))}
    return [
        replace(grid.teacher, width=width, kd=kd, kd_weight=grid.kd_weight, disc_width=grid.disc_width,
                method=ONCE_FOR_ALL, options=options)
        for kd in settings.kd or grid.kd
        for width in (grid.teacher.teacher_width, *widths)
    ]  # fmt: skip


def phase(spec: RunSpec) -> str:
    """A supernet trains beside the runs of its objective (from scratch, or once the teacher is done); a cut is
    made once its supernet is done."""
    if not is_supernet(spec):
        return ONCE_FOR_ALL
    return "scratch" if spec.kd == SCRATCH else "distill"


def check(settings: OnceForAllSettings, grid) -> None:
    """No width below the teacher's: refused when given, warned about when the grid's; a family whose narrower
    generators are not leading slices of its widest is refused."""
    cuts = settings.cuts(grid.widths, grid.teacher_width)
    if not cuts:
        if settings.widths is not None:
            raise UserError(f"--ofa-widths {','.join(map(str, settings.widths))}: none is below the teacher's width "
                            f"({grid.teacher_width})")  # fmt: skip
        warnings.warn(f"no once-for-all width below the teacher's width ({grid.teacher_width}): the grid has no "
                      "once-for-all run (--ofa-widths sets the widths)", UserWarning, stacklevel=4)  # fmt: skip
        return
    with torch.random.fork_rng(devices=[]):
        size = {"image_size": grid.image_size} if grid.image_size else {}
        widest = gans.build(grid.family, grid.teacher_width, **size)[0].state_dict()
        narrowest = gans.build(grid.family, cuts[0], **size)[0]
    check_cuttable(widest, shared_shapes(narrowest), f"the {grid.family} generator of width {cuts[0]}")


def follow(settings: OnceForAllSettings, preset, grid) -> OnceForAllSettings:
    """A preset's widths follow a grid narrowed by --widths or --teacher-width."""
    same = (grid.widths, grid.teacher_width) == (preset.widths, preset.teacher_width)
    return settings if same else replace(settings, widths=None)


register_method(
    Method(
        ONCE_FOR_ALL,
        "one generator trained at every width at once (SlimGAN: widest, narrowest and a random width per step, "
        "batch norms per width, in-place distillation), each width cut from it (--ofa-widths, --ofa-kd)",
        load,
        expand,
        phases=("scratch", "distill", ONCE_FOR_ALL),
        phase=phase,
        needs=lambda spec: (spec.teacher() if spec.kd != SCRATCH else None) if is_supernet(spec) else supernet_of(spec),
        made_from=lambda spec: None if is_supernet(spec) else supernet_of(spec),
        start=start,
        objective=objective,
        step=step,
        columns=columns,
        files=lambda spec: (GENERATOR_FILE, SUPERNET_FILE) if is_supernet(spec) else (GENERATOR_FILE,),
        settings=OnceForAllSettings,
        flags=(
            Flag(
                "--ofa-widths",
                "once-for-all: the widths cut from each supernet, which trains at all of them and "
                "the teacher's (default: --widths below the teacher's)",
                INTS,
                "widths",
            ),
            Flag(
                "--ofa-kd",
                "once-for-all: the objectives against the seed's teacher its supernets train with, one "
                "supernet each (none = in-place distillation alone) (default: --kd)",
                STRS,
                "kd",
            ),
        ),
        options={"ofa_widths": None},
        train_epochs=lambda spec: spec.epochs if is_supernet(spec) else 0,
        check=check,
        follow=follow,
        objective_file=SUPERNET_FILE,
        graphs=False,
        step_widths=step_widths,
    )  # fmt: skip
)
