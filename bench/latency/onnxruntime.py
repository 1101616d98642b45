"""ONNX Runtime on the CPU, from the generator exported by ``torch.onnx.export(..., dynamo=True)``.

The export is torch's current exporter (``torch.export`` + onnxscript, opset 18 by default), with its graph
optimiser on and the batch dimension dynamic, so one ONNX model serves every batch size. It is exported at
batch 2: ``torch.export`` specialises a dimension whose example size is 0 or 1. The session runs ORT's full
graph optimisation with as many intra-op threads as torch uses (``threads`` in latency.csv holds for both) and
with spinning off: ORT's idle threads would otherwise spin after each call and slow the next model of an
interleaved round. The output is checked against PyTorch's before timing (``rounds.py``, ``atol``).

ONNX and ONNX Runtime are imported when a model is prepared: registering the backend needs neither.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable

import torch
from torch import nn

from bench.latency import Backend, register_backend
from bench.metrics.measure import Inputs, generator_inputs

EXPORT_BATCH = 2
EXPORTER = "torch.onnx.export(dynamo=True)"


def export_onnx(model: nn.Module) -> bytes:
    """The serialized ONNX model of ``model`` (eval mode, on the CPU), its batch dimension dynamic."""
    z, labels = generator_inputs(model, EXPORT_BATCH, torch.device("cpu"))
    batch = torch.export.Dim("batch", min=1)
    # the exporter prints its progress and warns about naming the shared batch axis twice: ours to judge
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (z, labels),
            dynamo=True,
            input_names=["z", "labels"],
            output_names=["images"],
            dynamic_shapes=({0: batch}, {0: batch}),
            optimize=True,
            verbose=False,
        )
    return program.model_proto.SerializeToString()


def session(onnx_model: bytes, threads: int | None = None):
    """An ONNX Runtime CPU session of ``onnx_model``, ``threads`` intra-op threads (torch's count if None)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


class OrtGenerator:
    """``fn(z, labels) -> images`` (a NumPy array) through an ONNX Runtime session."""

    def __init__(self, sess) -> None:
        self.session = sess

    def __call__(self, z: torch.Tensor, labels: torch.Tensor):
        # .numpy() of a CPU tensor is a view, not a copy: the call times the session's work
        return self.session.run(None, {"z": z.numpy(), "labels": labels.numpy()})[0]


def prepare(model: nn.Module, inputs: Inputs) -> Callable:
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise RuntimeError(f"{err.name} is not installed: pip install onnx onnxscript onnxruntime") from None
    return OrtGenerator(session(export_onnx(model)))


register_backend(
    Backend(
        name="onnxruntime",
        devices=("cpu",),
        prepare=prepare,
        description=f"ONNX Runtime CPUExecutionProvider on the {EXPORTER} export, batch dimension dynamic",
    )
)
