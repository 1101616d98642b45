"""Which int8 kernel runs each layer: the one this CPU computes correctly, checked on the machine itself.

torch.ao's quantized engines differ by layer and by CPU. On CPUs with AVX-512 VNNI the ``x86`` engine hands
convolutions to oneDNN, whose quantized ``ConvTranspose2d`` is wrong (one layer: relative error 1.41, where
fbgemm and qnnpack give 0.03); on AVX2-only CPUs the same engine uses fbgemm and is right. A quantized layer's
kernel is fixed when its weights are packed (``set_weight_bias`` packs under the engine in force), so the suite
packs each layer under an engine whose kernel for that kind of layer passes a probe on this CPU: one small
layer quantized under the engine and compared with its float output. The asked engine is kept where it passes;
another correct engine replaces it where it does not; a layer kind that no engine computes correctly is refused.

Packing happens again whenever torch.ao rebuilds the packed weights (a ``load_state_dict``, a ``deepcopy``), so
``pack`` is called after each of those.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from bench.base.errors import UserError

# a correct int8 layer is off by a few per cent of its output's magnitude (per-tensor weights, 8-bit activations);
# a wrong kernel by the magnitude itself (oneDNN's transposed convolution on VNNI CPUs: 1.41)
PROBE_TOLERANCE = 0.25
FALLBACK_ORDER = ("fbgemm", "x86", "onednn", "qnnpack")  # engines tried where the asked one is wrong
_PROBES = {  # layer kind -> (float layer, input shape) of the probe
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False), (4, 32, 6, 6)),
    "Conv2d": (lambda: nn.Conv2d(32, 16, 3, 1, 1, bias=False), (4, 32, 6, 6)),
    "Linear": (lambda: nn.Linear(32, 16), (4, 32)),
}


class Int8KernelError(UserError):
    """An engine this torch lacks, or a layer kind no engine computes correctly on this CPU."""


def engines() -> tuple[str, ...]:
    """The quantized engines this torch build offers on this machine."""
    return tuple(engine for engine in torch.backends.quantized.supported_engines if engine != "none")


def default_engine() -> str:
    """``x86`` where this torch offers it (torch's choice for x86 CPUs), else the first engine it offers."""
    offered = engines()
    if not offered:
        raise Int8KernelError("this torch build offers no quantized engine: int8 cannot run here")
    return "x86" if "x86" in offered else offered[0]


def check_engine(engine: str) -> str:
    if engine not in engines():
        raise Int8KernelError(f"int8 engine {engine!r} is not offered here: choose one of {', '.join(engines())}")
    return engine


@contextlib.contextmanager
def engine_in_force(engine: str) -> Iterator[None]:
    """``engine`` set for the block (packing and running), then the previous one back."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


@functools.cache
def probe_error(kind: str, engine: str) -> float:
    """Relative mean error of one ``kind`` layer quantized and run under ``engine`` on this CPU (fixed seed)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    make, shape = _PROBES[kind]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer, x = nn.Sequential(make()).eval(), torch.randn(*shape)
    with warnings.catch_warnings(), engine_in_force(engine), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        prepared = prepare_fx(layer, get_default_qconfig_mapping("x86"), example_inputs=(x,))
        prepared(x)
        reference = layer(x)
        try:
            out = convert_fx(prepared)(x)
        except RuntimeError:  # the engine has no kernel for this layer kind
            return float("inf")
    return float((out - reference).abs().mean() / reference.abs().mean())


def kernel_for(kind: str, engine: str) -> str:
    """The engine that packs a ``kind`` layer: ``engine`` where its kernel is correct here, else the first correct
    one of ``FALLBACK_ORDER``; refused in one line where none is."""
    candidates = [engine, *(e for e in FALLBACK_ORDER if e != engine and e in engines())]
    for candidate in candidates:
        if probe_error(kind, candidate) <= PROBE_TOLERANCE:
            return candidate
    errors = ", ".join(f"{e} {probe_error(kind, e):.3g}" for e in candidates)
    raise Int8KernelError(f"no int8 engine computes {kind} correctly on this CPU (relative errors: {errors})")


def packed_layers(model: nn.Module) -> Iterator[tuple[str, str, nn.Module]]:
    """(name, probe kind, module) of every quantized layer of ``model`` holding packed weights (fused layers, such
    as ConvReLU2d, are subclasses of their layer)."""
    from torch.ao.nn import quantized as nnq

    for name, module in model.named_modules():
        kind = next((kind for kind in _PROBES if isinstance(module, getattr(nnq, kind))), None)
        if kind is not None:
            yield name, kind, module


def pack(model: nn.Module, engine: str) -> dict[str, str]:
    """Re-pack every quantized layer of ``model`` under the engine ``kernel_for`` picks; returns name -> engine."""
    kernels = {}
    for name, kind, module in packed_layers(model):
        kernels[name] = kernel_for(kind, engine)
        with engine_in_force(kernels[name]):
            module.set_weight_bias(*module._weight_bias())
    return kernels
