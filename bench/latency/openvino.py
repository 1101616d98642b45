"""OpenVINO's CPU runtime: a float generator converted by ``openvino.convert_model`` (batch dimension dynamic) and
compiled in fp32 (``INFERENCE_PRECISION_HINT=f32``: OpenVINO would pick bf16 on CPUs that have it) within the
process's thread budget (``threads`` in latency.csv); an ``openvino-int8`` model (compress/openvino_int8.py) is
timed as it was compiled from its IR. Every model is checked against eager PyTorch before it is timed, as behind
every backend. openvino is imported only when this backend prepares a model.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bench.latency import Backend, register_backend
from bench.metrics.measure import Inputs


def prepare(model: nn.Module, inputs: Inputs) -> Callable:
    from compress.openvino_int8 import MODE, OpenVinoModule, convert

    if getattr(model, "quantized", None) == MODE:  # already an OpenVINO model: its compiled form is timed
        return model.model
    return OpenVinoModule(convert(model, next(iter(inputs.values()))))


register_backend(
    Backend(
        name="openvino",
        devices=("cpu",),
        prepare=prepare,
        quantized=True,
        modes=("openvino-int8",),
        description="OpenVINO CPU runtime: float models converted and compiled in fp32, openvino-int8 models",
    )
)
