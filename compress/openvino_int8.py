"""The ``openvino-int8`` quantization mode: a generator converted to OpenVINO and quantized by NNCF.

torch.ao's int8 stores 4x fewer bytes but runs no faster on a CPU, and ONNX Runtime has no int8 transposed
convolution; OpenVINO's CPU plugin runs transposed convolutions in int8 (its ``Deconvolution`` on i8/u8). The
float generator is converted with ``openvino.convert_model`` (batch dimension dynamic), quantized by
``nncf.quantize`` (post-training, calibrated on the same seeded noise as ``int8``), saved as OpenVINO IR
(``generator.xml`` and ``generator.bin``: its stored bytes) and compiled for the CPU within the thread budget.
Which layers run in int8 is read from the compiled model's runtime graph (each executed layer's type and
precision), as ``layers.json`` records for torch.ao's int8.

openvino and nncf are imported here only, when a model of this mode is made or loaded.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.base.errors import CheckpointError
from bench.base.io import atomic_write_bytes
from bench.engine.cpuload import thread_budget

MODE = "openvino-int8"
IR_FILES = ("generator.xml", "generator.bin")
COMPUTE_LAYERS = ("Convolution", "Deconvolution", "FullyConnected", "MatMul", "GroupConvolution")


def convert(generator: nn.Module, example: tuple[torch.Tensor, torch.Tensor]):
    """``generator`` (eval, CPU) as an OpenVINO model taking (z [?, nz] float32, labels [?] int64)."""
    import openvino as ov

    # OpenVINO traces the model with torch.jit, whose deprecation notices are not the user's to act on
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return ov.convert_model(
            generator.cpu().eval(),
            example_input=example,
            input=[ov.PartialShape([-1, example[0].shape[1]]), ov.PartialShape([-1])],
        )


def compile_cpu(model):
    """``model`` compiled for the CPU: fp32 arithmetic where the model is float (OpenVINO would otherwise pick
    bf16 on CPUs that have it), within the process's thread budget."""
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": thread_budget()}
    return ov.Core().compile_model(model, "CPU", config)


class OpenVinoModule(nn.Module):
    """(z, labels) -> images through a compiled OpenVINO model; copies share it (it holds no state)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.ov_model, self.compiled = model, compile_cpu(model)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.compiled([z.detach().cpu().numpy(), labels.detach().cpu().numpy().astype(np.int64)])[0]
        return torch.from_numpy(np.asarray(out))

    def __deepcopy__(self, memo: dict) -> OpenVinoModule:
        return self

    def runtime_layers(self) -> list[tuple[str, str, str]]:
        """(name, layer type, precision it ran in) of every compute layer of the compiled model."""
        layers = []
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            kind = info["layerType"].astype(str) if "layerType" in info else ""
            if kind in COMPUTE_LAYERS:
                layers.append((op.get_friendly_name(), kind, info["runtimePrecision"].astype(str)))
        return layers


def quantize_openvino(generator: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> OpenVinoModule:
    """``generator`` converted to OpenVINO and quantized by NNCF on ``batches`` of (z, labels)."""
    import nncf

    batches = [(z.cpu(), labels.cpu()) for z, labels in batches]
    model = convert(generator, batches[0])
    calibration = nncf.Dataset([(z.numpy(), labels.numpy().astype(np.int64)) for z, labels in batches])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(model, calibration, subset_size=len(batches))  # its progress bar: not ours
    return OpenVinoModule(quantized)


def save_ir(module: OpenVinoModule, directory: Path) -> int:
    """Write the IR (``generator.xml``, ``generator.bin``) into ``directory``, each file atomically; its bytes."""
    import openvino as ov

    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        ov.save_model(module.ov_model, os.path.join(scratch, IR_FILES[0]), compress_to_fp16=False)
        payloads = {name: Path(scratch, name).read_bytes() for name in IR_FILES}
    for name, payload in payloads.items():
        atomic_write_bytes(Path(directory) / name, payload)
    return sum(len(payload) for payload in payloads.values())


def load_ir(directory: Path) -> tuple[OpenVinoModule, int]:
    """The saved IR of ``directory``, compiled; and its stored bytes."""
    import openvino as ov

    paths = [Path(directory) / name for name in IR_FILES]
    try:
        model = ov.Core().read_model(str(paths[0]), str(paths[1]))
        return OpenVinoModule(model), sum(path.stat().st_size for path in paths)
    except (RuntimeError, OSError) as err:
        raise CheckpointError(f"{paths[0]} cannot be read as an OpenVINO model: {str(err).splitlines()[0]}") from None
