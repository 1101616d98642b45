"""Which int8 backends quantize ``ConvTranspose2d`` here: each is tried on a generator, and what happened is recorded.

Run ``python docs/research/int8_survey.py [--checkpoint generator.pt --width 64]``: one line per (backend, weight
scheme) saying whether the transposed convolutions came out with int8 weights, whether the activations were
quantized too, the mean absolute output error against the float model, and the exception when it failed.
Backends that are not installed are reported as such (torchao and nncf are not dependencies of the suite).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import itertools
import tempfile
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import gans


@dataclass(frozen=True)
class Probe:
    """One backend tried at one weight scheme."""

    backend: str
    weights: str  # "per-channel" or "per-tensor"
    conv_transpose_int8: bool  # the transposed convolutions' weights ended up int8
    activations_int8: bool  # their inputs/outputs were quantized too (static quantization)
    int8_kernel: bool  # an int8 kernel runs (not a float op between quantize/dequantize, i.e. simulated)
    mean_abs_err: float | None  # mean |quantized - float| of the images, None when it did not run
    note: str


def _last_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:240]


def _err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).abs().mean())


def probe_fx(generator, z, labels, ref) -> list[Probe]:
    """torch.ao FX graph mode (prepare_fx / convert_fx), every quantized engine, per-tensor and per-channel."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    probes = []
    previous = torch.backends.quantized.engine
    for engine in torch.backends.quantized.supported_engines:
        for scheme in ("per-channel", "per-tensor"):
            torch.backends.quantized.engine = engine
            weight = (
                PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=1)
                if scheme == "per-channel"  # a transposed convolution's weight is (in, out, k, k): out is axis 1
                else MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
            )
            qconfig = QConfig(
                activation=HistogramObserver.with_args(reduce_range=engine in ("x86", "fbgemm")), weight=weight
            )
            mapping = get_default_qconfig_mapping(engine).set_object_type(nn.ConvTranspose2d, qconfig)
            try:
                prepared = prepare_fx(copy.deepcopy(generator).eval(), mapping, example_inputs=(z, labels))
                with torch.no_grad():
                    prepared(z, labels)
                    quantized = convert_fx(prepared)
                    out = quantized(z, labels)
                n_q = sum(isinstance(m, torch.ao.nn.quantized.ConvTranspose2d) for m in quantized.modules())
                probes.append(
                    Probe(
                        f"torch.ao FX ({engine})",
                        scheme,
                        n_q > 0,
                        n_q > 0,
                        n_q > 0,
                        _err(out, ref),
                        f"{n_q} quantized ConvTranspose2d modules",
                    )
                )
            except Exception as err:
                probes.append(Probe(f"torch.ao FX ({engine})", scheme, False, False, False, None, _last_line(err)))
    torch.backends.quantized.engine = previous
    return probes


def probe_eager(generator, z, labels, ref) -> list[Probe]:
    """torch.ao eager mode on the generator's first hidden transposed convolution between quant stubs.

    The error is of that one layer's output (not of the images)."""
    from torch.ao.quantization import DeQuantStub, QConfig, QuantStub, convert, prepare
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver

    layer = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)][1]
    x = torch.randn(8, layer.in_channels, 4, 4)
    with torch.no_grad():
        layer_ref = layer(x)
    probes = []
    previous = torch.backends.quantized.engine
    for engine in torch.backends.quantized.supported_engines:
        for scheme in ("per-channel", "per-tensor"):
            torch.backends.quantized.engine = engine
            model = nn.Sequential(QuantStub(), copy.deepcopy(layer), DeQuantStub()).eval()
            weight = (
                PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=1)
                if scheme == "per-channel"
                else MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
            )
            model.qconfig = QConfig(
                activation=HistogramObserver.with_args(reduce_range=engine in ("x86", "fbgemm")), weight=weight
            )
            try:
                prepare(model, inplace=True)
                with torch.no_grad():
                    model(x)
                    convert(model, inplace=True)
                    out = model(x)
                ok = isinstance(model[1], torch.ao.nn.quantized.ConvTranspose2d)
                probes.append(
                    Probe(
                        f"torch.ao eager ({engine})",
                        scheme,
                        ok,
                        ok,
                        ok,
                        _err(out, layer_ref),
                        "one layer; error of that layer's output",
                    )
                )
            except Exception as err:
                probes.append(Probe(f"torch.ao eager ({engine})", scheme, False, False, False, None, _last_line(err)))
    torch.backends.quantized.engine = previous
    return probes


def probe_torchao(generator, z, labels, ref) -> list[Probe]:
    """torchao: ``quantize_`` (weight-only and dynamic int8) aimed at the ConvTranspose2d layers, with and without
    the 1-channel image layer, and the PT2E flow with its X86InductorQuantizer (static, per-channel weights), checked
    first on a plain Conv2d to show the flow itself works."""
    if importlib.util.find_spec("torchao") is None:
        return [Probe("torchao", "-", False, False, False, None, "not installed")]
    import torchao
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    probes = []
    last = [n for n, m in generator.named_modules() if isinstance(m, nn.ConvTranspose2d)][-1]
    configs = (
        ("Int8WeightOnlyConfig", Int8WeightOnlyConfig),
        ("Int8DynamicActivationInt8WeightConfig", Int8DynamicActivationInt8WeightConfig),
    )
    for (name, config), skip in itertools.product(configs, ((), (last,))):
        model = copy.deepcopy(generator).eval()
        label = f"torchao {torchao.__version__} quantize_ {name}" + (f" (not {last})" if skip else "")

        def is_ct(module, fqn, skip=skip):
            return isinstance(module, nn.ConvTranspose2d) and fqn not in skip

        try:
            quantize_(model, config(), filter_fn=is_ct)
            kinds = sorted({type(m.weight).__name__ for m in model.modules() if isinstance(m, nn.ConvTranspose2d)})
            with torch.no_grad():
                out = model(z, labels)
            probes.append(
                Probe(
                    label,
                    "per-channel",
                    True,
                    "Dynamic" in name,
                    True,
                    _err(out, ref),
                    f"ConvTranspose2d weights now {kinds}",
                )
            )
        except Exception as err:
            probes.append(Probe(label, "per-channel", False, False, False, None, _last_line(err)))

    def pt2e(model: nn.Module, inputs: tuple) -> tuple[torch.Tensor, dict[str, int]]:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(torch.export.export(model.eval(), inputs).module(), quantizer)
        with torch.no_grad():
            prepared(*inputs)
            converted = convert_pt2e(prepared)
            out = converted(*inputs)
        counts: dict[str, int] = {}
        for node in converted.graph.nodes:
            if node.op != "call_function" or not str(node.target).startswith("aten.conv"):
                continue
            fed = any("dequantize" in str(a.target) for a in node.all_input_nodes if a.op == "call_function")
            key = f"{str(node.target).split('.')[1]} {'int8' if fed else 'float'}"
            counts[key] = counts.get(key, 0) + 1
        return out, counts

    name = f"torchao {torchao.__version__} PT2E X86InductorQuantizer"
    try:
        x = torch.randn(4, 8, 8, 8)
        _, sanity = pt2e(nn.Sequential(nn.Conv2d(8, 8, 3)), (x,))
        out, counts = pt2e(copy.deepcopy(generator), (z, labels))
        ok = any(k.startswith("conv_transpose") and k.endswith("int8") for k in counts)
        probes.append(
            Probe(
                name,
                "per-channel",
                ok,
                ok,
                False,
                _err(out, ref),
                f"generator: {counts}; a plain Conv2d: {sanity} (the flow works, conv_transpose is not annotated)"
                if not ok
                else f"generator: {counts}",
            )
        )
    except Exception as err:
        probes.append(Probe(name, "per-channel", False, False, False, None, _last_line(err)))
    return probes


def probe_kernels(generator, z, labels, ref) -> list[Probe]:
    """The quantized transposed-convolution kernel of every torch engine, fed a per-channel int8 weight directly
    (``set_weight_bias``), past the observers that refuse it. Error of one layer's output."""
    layer = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)][1]
    x = torch.randn(8, layer.in_channels, 4, 4)
    with torch.no_grad():
        layer_ref = layer(x)
    w = layer.weight.detach()
    scales = (w.abs().amax(dim=(0, 2, 3)) / 127).clamp_min(1e-12)  # (in, out, k, k): out channels are axis 1
    qw = torch.quantize_per_channel(w, scales, torch.zeros_like(scales, dtype=torch.long), 1, torch.qint8)
    probes = []
    previous = torch.backends.quantized.engine
    for engine in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = engine
        try:
            q = torch.ao.nn.quantized.ConvTranspose2d(
                layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding, bias=False
            )
            q.set_weight_bias(qw, None)
            out_scale = float(layer_ref.abs().max() / 127)
            q.scale, q.zero_point = out_scale, 128
            qx = torch.quantize_per_tensor(x, float(x.abs().max() / 127), 128, torch.quint8)
            out = q(qx).dequantize()
            probes.append(
                Probe(
                    f"torch quantized::conv_transpose2d kernel ({engine})",
                    "per-channel",
                    True,
                    True,
                    True,
                    _err(out, layer_ref),
                    "one layer; error of that layer's output",
                )
            )
        except Exception as err:
            probes.append(
                Probe(
                    f"torch quantized::conv_transpose2d kernel ({engine})",
                    "per-channel",
                    False,
                    False,
                    False,
                    None,
                    _last_line(err),
                )
            )
    torch.backends.quantized.engine = previous
    return probes


def probe_onnxruntime(generator, z, labels, ref) -> list[Probe]:
    """ONNX Runtime static quantization (QDQ format, int8 weights and activations), per-channel and per-tensor;
    whether its optimiser fuses the transposed convolutions into an int8 kernel is read from the optimised graph."""
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return [Probe("onnxruntime", "-", False, False, False, None, "not installed")]
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    probes = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "g.onnx"
        try:
            export_onnx(generator, z, labels, fp32)
        except Exception as err:
            return [Probe("onnxruntime", "-", False, False, False, None, f"export failed: {_last_line(err)}")]

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([{"z": z.numpy(), "labels": labels.numpy()}])

            def get_next(self):
                return next(self.batches, None)

        for scheme in ("per-channel", "per-tensor"):
            q = Path(tmp) / f"g-{scheme}.onnx"
            name = f"onnxruntime {ort.__version__} static QDQ"
            try:
                quantize_static(
                    str(fp32),
                    str(q),
                    Reader(),
                    quant_format=QuantFormat.QDQ,
                    per_channel=scheme == "per-channel",
                    weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8,
                )
                model = onnx.load(str(q))
                ct = [n for n in model.graph.node if n.op_type == "ConvTranspose"]
                made = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
                w_q = sum(n.input[1] in made for n in ct)
                x_q = sum(n.input[0] in made for n in ct)
                options = ort.SessionOptions()
                options.optimized_model_filepath = str(Path(tmp) / f"opt-{scheme}.onnx")
                session = ort.InferenceSession(str(q), options, providers=["CPUExecutionProvider"])
                out = torch.from_numpy(session.run(None, {"z": z.numpy(), "labels": labels.numpy()})[0])
                optimised = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
                fused = sum(t in ("QLinearConvTranspose",) for t in optimised)
                probes.append(
                    Probe(
                        name,
                        scheme,
                        w_q == len(ct) > 0,
                        x_q == len(ct) > 0,
                        fused > 0,
                        _err(out, ref),
                        f"{w_q}/{len(ct)} ConvTranspose with int8 weights, {x_q} with int8 inputs; "
                        f"after optimisation {fused} QLinearConvTranspose, "
                        f"{optimised.count('ConvTranspose')} float ConvTranspose",
                    )
                )
            except Exception as err:
                probes.append(Probe(name, scheme, False, False, False, None, _last_line(err)))
    return probes


def probe_nncf(generator, z, labels, ref) -> list[Probe]:
    """NNCF post-training quantization of the PyTorch model (its default: per-channel symmetric int8 weights)."""
    if importlib.util.find_spec("nncf") is None:
        return [Probe("nncf", "-", False, False, False, None, "not installed")]
    import nncf

    try:
        dataset = nncf.Dataset([(z, labels)])
        quantized = nncf.quantize(copy.deepcopy(generator).eval(), dataset, subset_size=1)
        with torch.no_grad():
            out = quantized(z, labels)
        quantizers = [(n, m) for n, m in quantized.named_modules() if type(m).__name__.endswith("Quantizer")]
        weights = [m for n, m in quantizers if "conv_transpose2d" in n]  # pre-hooks on the weight input
        per_channel = bool(weights) and all(getattr(m, "per_channel", False) for m in weights)
        acts = len(quantizers) - len(weights)
        return [
            Probe(
                f"nncf {nncf.__version__} quantize (torch backend)",
                "per-channel" if per_channel else "per-tensor",
                bool(weights),
                acts > 0,
                False,
                _err(out, ref),
                f"{len(weights)} ConvTranspose2d weight quantizers (scale shapes "
                f"{sorted({tuple(m.scale.shape) for m in weights})}), {acts} activation quantizers; fake "
                "quantization in torch (int8 kernels only after export to OpenVINO)",
            )
        ]
    except Exception as err:
        return [Probe("nncf quantize (torch backend)", "per-channel", False, False, False, None, _last_line(err))]


def export_onnx(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor, path: Path) -> None:
    """The generator as an ONNX file with inputs ``z``, ``labels`` and output ``images`` (batch dimension free)."""
    # the legacy (TorchScript) exporter at opset 17: ORT's quantizer handles its graphs; its notes are not ours
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            copy.deepcopy(generator).eval(),
            (z, labels),
            str(path),
            input_names=["z", "labels"],
            output_names=["images"],
            dynamo=False,
            opset_version=17,
            dynamic_axes={"z": {0: "batch"}, "labels": {0: "batch"}, "images": {0: "batch"}},
        )


PROBES = (probe_fx, probe_eager, probe_kernels, probe_torchao, probe_onnxruntime, probe_nncf)


def survey(generator: nn.Module, batch: int = 64, seed: int = 0) -> list[Probe]:
    """Every probe on ``generator`` (eval mode) with one calibration batch that is also the evaluation batch."""
    torch.manual_seed(seed)
    generator = generator.eval()
    z = torch.randn(batch, generator.nz)
    labels = torch.arange(batch) % generator.num_classes
    with torch.no_grad():
        ref = generator(z, labels)
    probes = []
    for probe in PROBES:
        try:
            probes.extend(probe(generator, z, labels, ref))
        except Exception as err:  # a probe's own failure is a result too
            probes.append(Probe(probe.__name__, "-", False, False, False, None, _last_line(err)))
            traceback.print_exc()
    return probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="dcgan")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--checkpoint", help="a trained generator.pt (state_dict) of that family and width")
    args = parser.parse_args()
    generator = gans.build(args.family, args.width)[0]
    if args.checkpoint:
        generator.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
    for p in survey(generator):
        err = "-" if p.mean_abs_err is None else f"{p.mean_abs_err:.4f}"
        print(
            f"{p.backend:58s} {p.weights:11s} ct_int8={p.conv_transpose_int8!s:5s} act={p.activations_int8!s:5s} "
            f"kernel={p.int8_kernel!s:5s} err={err:7s} {p.note}"
        )


if __name__ == "__main__":
    main()
