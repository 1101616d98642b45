"""The eager generator captured in one CUDA graph per batch size and replayed (``GraphedGenerator``), CUDA only.

At batch 1 an eager call of these generators is launch-bound (on an H200 every width from 16 to 512 took the
same 0.25-0.34 ms); replaying a graph launches the whole forward at once, so the time left is the work.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bench.latency import Backend, register_backend
from bench.metrics.measure import GraphedGenerator, Inputs


def prepare(model: nn.Module, inputs: Inputs) -> Callable:
    return GraphedGenerator(model, inputs)


register_backend(
    Backend(
        name="cuda-graph",
        devices=("cuda",),
        prepare=prepare,
        quantized=True,
        description="the eager generator replayed from a CUDA graph per batch size (bench.metrics.measure)",
    )
)
