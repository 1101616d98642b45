"""Post-training quantization of a trained generator: fp16, bf16 and int8, with what each layer became and why.

Modes:
- ``fp16`` / ``bf16``: every floating-point tensor of the state_dict cast to that dtype, and the forward pass run
  in it (weights and activations; ``QuantizedGenerator`` casts z in and the images back to float32). CPU and
  GPU kernels for every layer of both families exist in that dtype, so no layer stays float32.
- ``int8``: torch.ao FX graph mode, static quantization (int8 weights, uint8 activations calibrated on noise)
  lowered to the ``x86`` engine's modules; it runs on the CPU only. Each layer's weights are packed for a kernel
  that computes it correctly on this CPU (``compress.int8_kernels``: on AVX-512 VNNI CPUs the ``x86`` engine's
  oneDNN transposed convolution is wrong, so those layers run fbgemm's), and ``layers.json`` says which.
  Weights are per-channel for ``Conv2d`` and ``Linear``, per-tensor for ``ConvTranspose2d``: torch.ao refuses a
  per-channel observer on a transposed convolution (``prepare_fx``: "Per channel weight observer is not supported
  yet for ConvTranspose{n}d") and the x86/fbgemm/onednn kernels refuse per-channel transposed-convolution weights
  ("Per Channel Quantization is currently disabled for transposed conv"); docs/research/int8_survey.py records the
  backends tried. Class-conditional batch norms stay float (reason recorded per layer).
- ``openvino-int8``: the float model converted to OpenVINO and quantized by NNCF, saved as OpenVINO IR and run by
  OpenVINO's CPU plugin, whose int8 transposed convolutions are faster than float ones where torch.ao's are not
  (``compress.openvino_int8``).

Calibration needs no data: a generator's inputs are N(0, 1) noise and uniform labels, so the default
calibration set is seeded noise (``calibration_batches``).

Stored representation: ``save_quantized`` writes ``{"format", "mode", "state_dict", "metadata", "keep_float"}``
(and an int8 model's ``engine``) with ``torch.save`` (``metadata``: the state_dict's per-module versions, which
int8 modules need to load); it loads with ``torch.load(weights_only=True)`` for every mode (an int8 state_dict
holds quantized tensors and scales, which weights_only accepts). ``stored_bytes`` is the length of exactly those
bytes. ``load_quantized`` rebuilds the int8 graph from the float architecture (any generator of the right shape:
its weights are replaced) and loads the saved int8 state into it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from bench.base.errors import CheckpointError, UserError, distinct
from bench.base.flags import STRS, Flag
from bench.base.io import atomic_write_bytes, atomic_write_json
from bench.base.layout import GENERATOR_FILE, LAYERS_FILE, QUANTIZE
from bench.engine.checkpoints import safe_torch_load
from bench.engine.methods import Expansion, Method, method_of, register_method
from bench.engine.models import count_params
from bench.engine.spec import RunSpec
from compress.fidelity import Tolerance
from compress.int8_kernels import check_engine, default_engine, engine_in_force, pack
from compress.layers import conditional_batch_norms
from compress.openvino_int8 import IR_FILES, load_ir, quantize_openvino, save_ir
from compress.openvino_int8 import MODE as OPENVINO_INT8
from data import DataShape
from gans.family import ConditionalGenerator

MODES = ("fp16", "bf16", "int8", OPENVINO_INT8)
CPU_ONLY = ("int8", OPENVINO_INT8)  # integer kernels exist on the CPU only
FORMAT = "gan-kd-bench/quantized-generator/1"
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32, OPENVINO_INT8: torch.float32}
# |quantized - float| allowed on images in [-1, 1] (mean, largest), about 3x the worst measured on correct models:
# quick-preset DCGANs and untrained ResNet-family generators on AMD EPYC (AVX-512 VNNI), under the CPU's own ATen
# kernels and ATEN_CPU_CAPABILITY=default: fp16 0.00036 / 0.0041, bf16 0.0028 / 0.029, int8 0.026 / 0.37; a wrong
# int8 kernel (oneDNN's transposed convolution on that CPU) gave the quick preset's teacher 0.549 on average;
# openvino-int8 (NNCF, the same models): 0.014 / 0.28
TOLERANCES = {"fp16": Tolerance(0.002, 0.03), "bf16": Tolerance(0.01, 0.15), "int8": Tolerance(0.08, 1.0),
              OPENVINO_INT8: Tolerance(0.05, 1.0)}  # fmt: skip
OPENVINO_BACKEND = "OpenVINO CPU, NNCF post-training int8 (IR: generator.xml, generator.bin)"
_LAYERS = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.Embedding)

# why torch.ao leaves a layer or a weight scheme as it does: each observed on torch 2.14 (docs/research/int8_survey.py)
WHY_CONV_TRANSPOSE_PER_TENSOR = (
    "per-tensor int8 weights: torch.ao refuses per-channel observers on ConvTranspose2d and the x86/fbgemm "
    "kernels refuse per-channel transposed-convolution weights"
)
WHY_CONDITIONAL_FLOAT = (
    "class-conditional batch norm kept float: torch.ao's int8 BatchNorm2d needs an affine weight (convert fails "
    "on affine=False) and the x86 mapping gives nn.Embedding no qconfig, so the per-class gain/bias stay float"
)
WHY_FOLDED = "batch norm folded into the preceding convolution by torch.ao's Conv+BN fusion (int8 with it)"


class QuantizeError(UserError):
    """A quantization mode that does not exist, or one this device cannot run."""


@dataclass(frozen=True)
class LayerPrecision:
    """What one layer of the float generator became."""

    name: str
    precision: str  # "fp16", "bf16", "int8 per-channel", "int8 per-tensor", "int8 (folded)", "float32"
    reason: str = ""
    kernel: str = ""  # int8: the quantized engine whose kernel runs the layer on this CPU


@dataclass(frozen=True)
class QuantRecord:
    """One quantized generator: its mode, backend, sizes and each layer's precision."""

    mode: str
    backend: str
    params: int  # weights of the float generator (quantization keeps their number)
    stored_bytes: int  # bytes ``save_quantized`` writes
    layers: tuple[LayerPrecision, ...]

    @property
    def float_layers(self) -> list[tuple[str, str]]:
        """(layer name, reason) of the layers left in float32."""
        return [(layer.name, layer.reason) for layer in self.layers if layer.precision == "float32"]


class QuantizedGenerator(ConditionalGenerator):
    """(z, labels) -> float32 images from a generator stored and run in a lower precision; ``record`` says how."""

    def __init__(
        self,
        model: nn.Module,
        mode: str,
        hidden: Sequence[int],
        width: int,
        nz: int,
        num_classes: int,
        record: QuantRecord | None = None,
        keep_float: Sequence[str] = (),
        engine: str = "",
    ) -> None:
        super().__init__(width, nz, num_classes)
        self.model, self.mode, self._hidden, self.keep_float = model, mode, list(hidden), list(keep_float)
        self.dtype = _DTYPES[mode]
        self.record = record
        self.engine = engine  # int8: the engine asked for; each layer's kernel is in ``record.layers``

    def __deepcopy__(self, memo: dict) -> QuantizedGenerator:
        """A copy whose int8 layers are packed for this CPU's correct kernels again (a copy re-packs them under
        whatever engine is in force, which on a VNNI CPU is oneDNN's wrong transposed convolution)."""
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        if clone.mode == "int8":
            pack(clone.model, clone.engine)
        return clone

    @property
    def quantized(self) -> str:
        return self.mode

    @property
    def devices(self) -> tuple[str, ...]:
        return ("cpu",) if self.mode in CPU_ONLY else ConditionalGenerator.devices

    @property
    def timed_by(self) -> tuple[str, ...] | None:
        """The latency backends that time it, where not every backend that runs quantized models does."""
        return ("openvino",) if self.mode == OPENVINO_INT8 else None

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self._engine():
            return self.model(z.to(self.dtype), labels).float()

    def _engine(self) -> contextlib.AbstractContextManager:
        return engine_in_force(self.engine) if self.mode == "int8" else contextlib.nullcontext()

    def forward_features(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.mode in CPU_ONLY:
            raise NotImplementedError("an int8 generator is a traced graph that returns the images only")
        images, features = self.model.forward_features(z.to(self.dtype), labels)
        return images.float(), [f.float() for f in features]

    def hidden_channels(self) -> list[int]:
        return list(self._hidden)


def calibration_batches(generator: nn.Module, batches: int = 4, batch: int = 64, seed: int = 0):
    """Seeded (z, labels) batches drawn as the generator's inputs are: z ~ N(0, 1), labels 0, 1, 2, ..."""
    rng = torch.Generator().manual_seed(seed)
    labels = torch.arange(batch) % generator.num_classes
    return [(torch.randn(batch, generator.nz, generator=rng), labels) for _ in range(batches)]


def _serialized_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _payload(mode: str, state_dict: dict, keep_float: Sequence[str] = (), engine: str = "") -> dict:
    """What is saved: the state_dict's tensors and, apart, its per-module version metadata (int8 modules read
    their layout from it; a plain dict of ints, where the OrderedDict attribute would not survive a copy)."""
    metadata = {key: dict(value) for key, value in getattr(state_dict, "_metadata", {}).items()}
    tensors = {
        key: value.detach().cpu() if isinstance(value, torch.Tensor) else value for key, value in state_dict.items()
    }
    return {
        "format": FORMAT, "mode": mode, "state_dict": tensors, "metadata": metadata, "keep_float": list(keep_float),
        **({"engine": engine} if engine else {}),
    }  # fmt: skip


def _state_dict(payload: dict) -> OrderedDict:
    state = OrderedDict(payload["state_dict"])
    state._metadata = OrderedDict((key, dict(value)) for key, value in payload.get("metadata", {}).items())
    return state


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise QuantizeError(f"unknown quantization mode {mode!r}: choose one of {', '.join(MODES)}")
    return mode


def source_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _LAYERS)]


def _int8_graph(model: nn.Module, batches: Batches, engine: str, keep_float: Sequence[str] = ()) -> nn.Module:
    """``model`` (float, eval) traced, observed on ``batches`` and converted to int8 modules (the x86 engine's
    mapping, the same weights and scales whatever the engine) packed under ``engine``."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    batches = list(batches)
    mapping = get_default_qconfig_mapping("x86")
    for name, _ in conditional_batch_norms(model):
        mapping.set_module_name(name, None)  # the whole module: its bn, gain and bias (see WHY_CONDITIONAL_FLOAT)
    for name in keep_float:
        mapping.set_module_name(name, None)
    with warnings.catch_warnings(), engine_in_force(engine), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice and observer notes: not the user's to act on
        prepared = prepare_fx(model, mapping, example_inputs=tuple(batches[0]))
        for z, labels in batches:
            prepared(z.float(), labels)
        return convert_fx(prepared)


def _int8_layers(
    float_model: nn.Module, converted: nn.Module, kernels: dict[str, str], keep_float: Sequence[str] = ()
) -> tuple[LayerPrecision, ...]:
    """What each layer of ``float_model`` became in ``converted`` (read from the converted modules), and the
    engine of each packed layer's kernel (``kernels``)."""
    modules = dict(converted.named_modules())
    conditional = [name for name, _ in conditional_batch_norms(float_model)]
    out = []
    for name, layer in source_layers(float_model):
        q = modules.get(name)
        kind = type(q).__module__ if q is not None else ""
        if q is None:
            out.append(LayerPrecision(name, "int8 (folded)", WHY_FOLDED))
        elif kind.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")):
            weight = q.weight() if callable(getattr(q, "weight", None)) else None
            if weight is None:  # an int8 batch norm: its scale and shift apply to int8 activations
                why = f"int8 activations through {type(q).__name__}; its scale and shift stay float32"
                out.append(LayerPrecision(name, "int8", why))
            elif weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                out.append(LayerPrecision(name, "int8 per-channel", "", kernels.get(name, "")))
            else:
                why = WHY_CONV_TRANSPOSE_PER_TENSOR if isinstance(layer, nn.ConvTranspose2d) else "x86 default"
                out.append(LayerPrecision(name, "int8 per-tensor", why, kernels.get(name, "")))
        elif name in keep_float:
            out.append(LayerPrecision(name, "float32", "kept float on request (keep_float)"))
        elif any(name == c or name.startswith(c + ".") for c in conditional):
            out.append(LayerPrecision(name, "float32", WHY_CONDITIONAL_FLOAT))
        else:
            why = f"torch.ao's x86 mapping left this {type(layer).__name__} float"
            out.append(LayerPrecision(name, "float32", why))
    return tuple(out)


def _wrap(
    model: nn.Module,
    mode: str,
    source: nn.Module,
    stored: int,
    layers: tuple[LayerPrecision, ...],
    backend: str,
    keep_float: Sequence[str] = (),
    engine: str = "",
) -> QuantizedGenerator:
    record = QuantRecord(mode, backend, count_params(source), stored, layers)
    hidden = source.hidden_channels() if hasattr(source, "hidden_channels") else []
    return QuantizedGenerator(
        model, mode, hidden, source.width, source.nz, source.num_classes, record, keep_float, engine
    )


def _openvino(module: nn.Module, source: nn.Module, stored: int | None = None) -> QuantizedGenerator:
    """An ``openvino-int8`` model wrapped with its record: its IR's bytes (``stored``, else counted by saving it
    aside), each compute layer's precision."""
    if stored is None:
        with tempfile.TemporaryDirectory() as scratch:
            stored = save_ir(module, Path(scratch))
    layers = tuple(
        LayerPrecision(name, "int8" if precision in ("i8", "u8") else precision, f"OpenVINO {kind}", "openvino")
        for name, kind, precision in module.runtime_layers()
    )
    return _wrap(module, OPENVINO_INT8, source, stored, layers, OPENVINO_BACKEND)


def int8_backend(engine: str) -> str:
    return f"torch.ao FX static int8 ({engine} engine)"


def _int8_model(
    source: nn.Module, batches: Batches, engine: str, keep_float: Sequence[str], state: OrderedDict | None = None
) -> tuple[nn.Module, tuple[LayerPrecision, ...]]:
    """``source`` converted to int8 (observed on ``batches``; its saved ``state`` loaded over it, when given), each
    layer packed for a kernel correct on this CPU; returns it with every layer's precision and kernel."""
    model = _int8_graph(copy.deepcopy(source), batches, engine, keep_float)
    if state is not None:
        with engine_in_force(engine):
            model.load_state_dict(state, strict=True)  # re-packs every layer under the engine: packed again below
    kernels = pack(model, engine)
    return model, _int8_layers(source, model, kernels, keep_float)


Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def quantize(
    generator: nn.Module,
    mode: str,
    calibration_inputs: Batches | None = None,
    keep_float: Sequence[str] = (),
    engine: str | None = None,
) -> QuantizedGenerator:
    """``generator`` (untouched) quantized to ``mode`` ("fp16", "bf16", "int8"), with its ``record``.

    ``calibration_inputs``: (z, labels) batches that set the int8 activation ranges (default: 4 seeded batches
    of 64 noise vectors). ``keep_float``: names of layers to leave in float32 in int8 mode (say the image layer,
    often the most sensitive). ``engine``: the quantized engine asked for (default ``x86``); a layer whose kernel
    under it is wrong on this CPU runs another engine's (``compress.int8_kernels``). All three are int8 only;
    int8 runs on the CPU only.
    """
    _check_mode(mode)
    if (keep_float or engine) and mode != "int8":
        raise QuantizeError(f"keep_float and engine apply to int8 only, not {mode}")
    names = {name for name, _ in source_layers(generator)}
    unknown = sorted(set(keep_float) - names)
    if unknown:
        raise QuantizeError(f"keep_float names no layer of this generator: {', '.join(unknown)}")
    source = copy.deepcopy(generator).cpu().eval() if mode in CPU_ONLY else copy.deepcopy(generator).eval()
    if mode == OPENVINO_INT8:
        batches = list(calibration_inputs) if calibration_inputs is not None else calibration_batches(source)
        return _openvino(quantize_openvino(source, batches), source)
    if mode in _CASTS:
        model, layers = _cast(source, mode)
    else:
        engine = check_engine(engine or default_engine())
        batches = list(calibration_inputs) if calibration_inputs is not None else calibration_batches(source)
        model, layers = _int8_model(source, [(z.cpu(), y.cpu()) for z, y in batches], engine, keep_float)
    stored = len(_serialized_bytes(_payload(mode, model.state_dict(), keep_float, engine or "")))
    return _made(model, mode, source, stored, layers, keep_float, engine or "")


_CASTS = ("fp16", "bf16")


def _cast(source: nn.Module, mode: str, state: OrderedDict | None = None) -> tuple[nn.Module, tuple]:
    """``source`` cast to fp16 or bf16 (with the ``state`` saved, when loading), and each layer's precision."""
    model = copy.deepcopy(source).to(_DTYPES[mode])
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model, tuple(LayerPrecision(name, mode) for name, _ in source_layers(source))


def _made(
    model: nn.Module, mode: str, source: nn.Module, stored: int, layers: tuple, keep_float: Sequence[str], engine: str
) -> QuantizedGenerator:
    """A cast or int8 ``model`` wrapped with its record and the backend that runs it."""
    backend = f"torch {_DTYPES[mode]} cast" if mode in _CASTS else int8_backend(engine)
    return _wrap(model, mode, source, stored, layers, backend, keep_float, engine)


def save_quantized(quantized: QuantizedGenerator, path: str | Path) -> int:
    """Write ``quantized``'s stored representation atomically; returns its bytes (= ``record.stored_bytes``). An
    ``openvino-int8`` model is written as IR beside ``path`` (``generator.xml``, ``generator.bin``)."""
    if quantized.mode == OPENVINO_INT8:
        return save_ir(quantized.model, Path(path).parent)
    payload = _serialized_bytes(
        _payload(quantized.mode, quantized.model.state_dict(), quantized.keep_float, quantized.engine)
    )
    atomic_write_bytes(Path(path), payload)
    return len(payload)


def load_quantized(float_generator: nn.Module, path: str | Path) -> QuantizedGenerator:
    """The quantized generator saved at ``path``; ``float_generator`` gives the architecture (the family's
    generator at that width, or ``compress.prune.load_pruned``'s) and is left untouched. An int8 one is packed
    under the engine it was made with, each layer's kernel chosen again for this CPU; an ``openvino-int8`` one is
    the IR whose ``generator.xml`` is ``path``."""
    if Path(path).name == IR_FILES[0]:
        source = copy.deepcopy(float_generator).cpu().eval()
        module, stored = load_ir(Path(path).parent)
        return _openvino(module, source, stored)
    payload = safe_torch_load(Path(path))
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a quantized generator of this suite")
    mode = _check_mode(payload["mode"])
    source = copy.deepcopy(float_generator).cpu().eval()
    keep_float = [str(name) for name in payload.get("keep_float", [])]
    engine = "" if mode in _CASTS else check_engine(str(payload.get("engine") or default_engine()))
    try:
        if mode in _CASTS:
            model, layers = _cast(source, mode, _state_dict(payload))
        else:  # one batch sets up observers so that convert has ranges; the saved scales then replace them
            batches = calibration_batches(source, batches=1, batch=8)
            model, layers = _int8_model(source, batches, engine, keep_float, _state_dict(payload))
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit this generator: {str(err).splitlines()[0]}") from None
    return _made(model, mode, source, Path(path).stat().st_size, layers, keep_float, engine)


# --- method "quantize": any finished float run of the grid, quantized after training ---


def mode_of(spec: RunSpec) -> str:
    """The quantization mode of a quantized run: its derivation's variant."""
    return spec.derived[1]


def derive(generator: nn.Module, spec: RunSpec, run_dir: Path) -> tuple[QuantizedGenerator, dict[str, int | str]]:
    """``generator`` quantized to the run's mode (int8 calibrated on noise seeded by the run's seed), saved to
    the run's ``generator.pt`` with every layer's precision and reason in ``layers.json``; returns it and the
    columns ``results.csv`` gains: backend and the layers left in float32."""
    quantized = quantize(generator, mode_of(spec), calibration_batches(generator, seed=spec.seed))
    save_quantized(quantized, run_dir / GENERATOR_FILE)
    atomic_write_json(run_dir / LAYERS_FILE, [asdict(layer) for layer in quantized.record.layers])
    return quantized, record_columns(quantized.record)


def tolerance(spec: RunSpec) -> Tolerance:
    """How far a quantized model's images may be from its float source's (``TOLERANCES``)."""
    return TOLERANCES[mode_of(spec)]


def record_columns(record: QuantRecord) -> dict[str, int | str]:
    """The columns ``results.csv`` gains: stored bytes, backend, the layers left float, and the kernels that ran
    the int8 layers (``fbgemm:5``, or ``fbgemm:4 x86:1`` where layers run different engines' kernels)."""
    names = [name for name, _ in record.float_layers]
    kernels = Counter(layer.kernel for layer in record.layers if layer.kernel)
    return {
        "g_bytes_stored": record.stored_bytes,
        "quant_backend": record.backend,
        "quant_float_layers": len(names),
        "quant_float_names": " ".join(names),
        "quant_kernels": " ".join(f"{engine}:{count}" for engine, count in sorted(kernels.items())),
    }


def load(path: Path, spec: RunSpec, data: DataShape) -> QuantizedGenerator:
    """The quantized generator at ``path``; its float architecture is its source run's (a sibling directory)."""
    source = spec.source()
    float_generator = method_of(source).load(path.parent.parent / source.run_id / GENERATOR_FILE, source, data)
    return load_quantized(float_generator, path.parent / IR_FILES[0] if mode_of(spec) == OPENVINO_INT8 else path)


def files(spec: RunSpec) -> tuple[str, ...]:
    """The files a quantized run's model is rebuilt from: its IR, or its ``generator.pt``."""
    return IR_FILES if mode_of(spec) == OPENVINO_INT8 else (GENERATOR_FILE,)


@dataclass(frozen=True)
class QuantizeSettings:
    """The quantize method's knob: the modes every trained model of the grid is quantized to."""

    modes: tuple[str, ...] = ("fp16", "bf16", "int8")

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", tuple(self.modes))
        distinct(self.modes, "--quantize", MODES)


def expand(grid: Expansion) -> list[RunSpec]:
    """Every trained model of the seed in every mode."""
    return [replace(spec, derived=(QUANTIZE, mode)) for spec in grid.trained for mode in grid.settings.modes]


register_method(
    Method(
        QUANTIZE,
        "post-training quantization of every float model of the grid (--quantize fp16,bf16,int8,openvino-int8; "
        "the int8 modes on the CPU)",
        load,
        expand,
        phases=(QUANTIZE,),
        derive=derive,
        tolerance=tolerance,
        files=files,
        settings=QuantizeSettings,
        flags=(
            Flag(
                "--quantize",
                "quantize: post-training modes applied to every float model, among "
                "fp16,bf16,int8,openvino-int8 (int8 runs on the CPU; default: the preset's)",
                STRS,
                "modes",
            ),
        ),
    )  # fmt: skip
)
