"""Eager PyTorch: the eval-mode generator called as it is, under ``torch.inference_mode`` (the baseline)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bench.latency import Backend, register_backend
from bench.metrics.measure import Inputs


def prepare(model: nn.Module, inputs: Inputs) -> Callable:
    return model


register_backend(
    Backend(
        name="eager",
        devices=("cpu", "cuda"),
        prepare=prepare,
        quantized=True,
        description="plain PyTorch, eval mode, inference_mode: what the suite's results.csv times",
    )
)
