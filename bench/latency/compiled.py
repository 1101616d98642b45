"""``torch.compile`` for inference: Inductor's default mode on the CPU, ``mode="reduce-overhead"`` on CUDA.

``dynamic=False``: one graph per batch size, as a deployment compiles for the batch it serves. Every batch size
is compiled in ``prepare`` (never inside a timed call). On CUDA, "reduce-overhead" replays the compiled graph
from a CUDA graph, so batch-1 latency is the work and not the kernel launches.

Dynamo keeps its compiled graphs per code object, and every generator of a family shares one ``forward``: its
default limit of 8 graphs per code object would be used up by a grid's widths x batch sizes, after which it
runs the rest *eagerly, silently*. The limit is raised while compiling, and reaching it is made an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from bench.latency import Backend, register_backend
from bench.metrics.measure import Inputs

# Inductor's C++ toolchain probe logs a CUDA_HOME warning on a CUDA build of torch without a GPU: it concerns
# compiling extensions, not this backend, so keep it off the user's terminal
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

RECOMPILE_LIMIT = 4096  # graphs per code object: every (width, batch) of any grid


def prepare(model: nn.Module, inputs: Inputs) -> Callable:
    device = next(iter(inputs.values()))[0].device
    mode = "reduce-overhead" if device.type == "cuda" else None
    compiled = torch.compile(model, mode=mode, dynamic=False)
    with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True):
        with torch.inference_mode():
            for z, labels in inputs.values():
                for _ in range(3):  # compile, then (reduce-overhead) record and replay the CUDA graph
                    compiled(z, labels)
    return compiled


register_backend(
    Backend(
        name="compile",
        devices=("cpu", "cuda"),
        prepare=prepare,
        description='torch.compile(dynamic=False): Inductor default mode on CPU, mode="reduce-overhead" on CUDA',
        cleanup=torch.compiler.reset,
    )
)
