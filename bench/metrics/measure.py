"""Size and cost of a generator/discriminator pair: pure measurement functions, no files, no printing.

How each number is computed:

- **Parameters**: ``sum(p.numel())`` over ``module.parameters()``; buffers (batch-norm statistics) excluded.
- **Bytes**: the length of ``torch.save(module.state_dict())`` written to memory, so buffers and the
  zip container are included: this is what a checkpoint of the model costs on disk. ``*_fp16`` saves the
  same state dict with every floating tensor cast to half (integer buffers kept).
- **MACs / FLOPs per image**: ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass at batch 1, in
  eval mode. It counts only convolutions and matrix products (batch norm, activations and the one-hot
  concatenation are free) and reports 2 FLOPs per multiply-accumulate, so ``g_macs = g_flops // 2``. A
  transposed convolution costs ``C_in * C_out * k * k * H_in * W_in``: every input pixel is scattered through
  the whole kernel, including the contributions that the padding later crops away (the dense work done).
- **Speed** is not measured here: ``bench.latency`` times every generator of a grid together. This module keeps
  the pieces it shares: fixed inputs (``generator_inputs``) and the CUDA-graphed generator.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.engine.cuda_graphs import side_stream
from bench.engine.models import count_params

Batch = tuple[torch.Tensor, torch.Tensor]  # (z, labels)
Inputs = dict[int, Batch]  # batch size -> the inputs of that size


@dataclass(frozen=True)
class SizeMetrics:
    """Size and per-image cost of a generator/discriminator pair; the fields are ``results.csv`` columns."""

    g_params: int
    d_params: int | None  # None: measured without its discriminator (a quantized generator's is its source's)
    g_bytes_fp32: int
    g_bytes_stored: int  # as the suite stores it: the fp32 checkpoint (a quantized model records its own)
    g_bytes_fp16: int
    d_bytes_fp32: int | None
    d_bytes_fp16: int | None
    g_macs: int  # per image
    g_flops: int  # per image, 2 * g_macs


def state_dict_bytes(module: nn.Module, dtype: torch.dtype | None = None) -> int:
    """Return the size in bytes of ``torch.save(module.state_dict())``, floating tensors cast to ``dtype``."""
    state = {
        key: (value.to(dtype) if dtype is not None and value.is_floating_point() else value).detach().cpu()
        for key, value in module.state_dict().items()
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode, then give every submodule back the training flag it had."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in flags:
            m.training = training


def generator_inputs(generator: nn.Module, batch: int, device: torch.device) -> Batch:
    """Return a fixed (z, labels) batch for ``generator`` on ``device``: seeded noise, labels 0, 1, 2, ..."""
    parameter = next(generator.parameters(), None)
    # a quantized generator takes float32 noise and casts it itself (an int8 one may hold no parameter at all)
    dtype = parameter.dtype if parameter is not None and not getattr(generator, "quantized", None) else torch.float32
    noise = torch.Generator().manual_seed(0)
    z = torch.randn(batch, generator.nz, generator=noise, dtype=dtype).to(device)
    labels = (torch.arange(batch) % generator.num_classes).to(device)
    return z, labels


def generator_flops(generator: nn.Module) -> int:
    """Return the FLOPs (2 x MACs) of one generator forward pass on one image, counted by FlopCounterMode."""
    device = next(generator.parameters()).device
    z, labels = generator_inputs(generator, 1, device)
    counter = FlopCounterMode(display=False)
    with eval_mode(generator), torch.no_grad(), counter:
        generator(z, labels)
    return counter.get_total_flops()


def size_metrics(generator: nn.Module, discriminator: nn.Module | None = None) -> SizeMetrics:
    """Return parameters, serialized bytes (fp32 and fp16) and per-image generator MACs/FLOPs; the
    discriminator's sizes when it is given."""
    flops = generator_flops(generator)
    fp32 = state_dict_bytes(generator)
    d = discriminator
    return SizeMetrics(
        g_params=count_params(generator),
        d_params=count_params(d) if d is not None else None,
        g_bytes_fp32=fp32,
        g_bytes_stored=fp32,
        g_bytes_fp16=state_dict_bytes(generator, torch.float16),
        d_bytes_fp32=state_dict_bytes(d) if d is not None else None,
        d_bytes_fp16=state_dict_bytes(d, torch.float16) if d is not None else None,
        g_macs=flops // 2,
        g_flops=flops,
    )


class GraphedGenerator:
    """``model(z, labels)`` for fixed inputs, captured in one CUDA graph per batch size and replayed.

    Why: at batch 1 an eager call of these generators is launch-bound (every width costs the same); replaying
    a graph launches the whole forward at once, so the time left is the work. Called with the inputs it was
    built for, it replays their graph; the inputs are static, so nothing is copied.
    """

    def __init__(self, model: nn.Module, inputs: Inputs) -> None:
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        with torch.inference_mode():
            with side_stream(next(iter(inputs.values()))[0].device):  # warm-up off the current stream
                for z, labels in inputs.values():
                    model(z, labels)
            for batch, (z, labels) in inputs.items():
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    out = model(z, labels)
                self.graphs[batch] = (graph, out)

    def __call__(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        graph, out = self.graphs[len(z)]
        graph.replay()
        return out


def measure_devices(train_device: torch.device) -> list[torch.device]:
    """Return the devices to time on: always the CPU, then CUDA when present (the training GPU if it is)."""
    devices = [torch.device("cpu")]
    if train_device.type == "cuda":
        devices.append(train_device)
    elif torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices
