"""Size and speed of a generator/discriminator pair: pure measurement functions, no files, no printing.

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
- **Speed**: ``torch.utils.benchmark.Timer.blocked_autorange``; latency is the median seconds of one call at
  batch 1, throughput is ``spec.throughput_batch / median`` at that batch. Inputs are made once on the
  device; the model is an eval-mode copy on the device, called under ``torch.inference_mode``. The Timer's
  clock synchronises the accelerator before every reading (``torch.utils.benchmark.utils.timer.timer``), so
  a timed block on CUDA includes the kernels it launched. The Timer would set torch's thread count to 1 by
  default; we pass the current count so that the measurement runs with the setting the user has.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

# torch.utils.benchmark imports cpp_extension, which on a CUDA build of torch without a GPU logs a warning
# about CUDA_HOME that concerns compiling extensions, not timing: keep it off the user's terminal
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bench.engine.cuda_graphs import side_stream  # noqa: E402
from bench.engine.device import device_name  # noqa: E402
from bench.engine.spec import SpeedSpec  # noqa: E402
from bench.errors import first_line  # noqa: E402

COMPILED = "_compiled"
GRAPHED = "_graph"
Batch = tuple[torch.Tensor, torch.Tensor]  # (z, labels)
Inputs = dict[int, Batch]  # batch size -> the inputs of that size


@dataclass(frozen=True)
class SizeMetrics:
    """Size and per-image cost of a generator/discriminator pair; the fields are ``results.csv`` columns."""

    g_params: int
    d_params: int
    g_bytes_fp32: int
    g_bytes_fp16: int
    d_bytes_fp32: int
    d_bytes_fp16: int
    g_macs: int  # per image
    g_flops: int  # per image, 2 * g_macs


def count_params(module: nn.Module) -> int:
    """Return the number of parameters of ``module`` (buffers not included)."""
    return sum(p.numel() for p in module.parameters())


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
    dtype = next(generator.parameters()).dtype
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


def size_metrics(generator: nn.Module, discriminator: nn.Module) -> SizeMetrics:
    """Return parameters, serialized bytes (fp32 and fp16) and per-image generator MACs/FLOPs."""
    flops = generator_flops(generator)
    return SizeMetrics(
        g_params=count_params(generator),
        d_params=count_params(discriminator),
        g_bytes_fp32=state_dict_bytes(generator),
        g_bytes_fp16=state_dict_bytes(generator, torch.float16),
        d_bytes_fp32=state_dict_bytes(discriminator),
        d_bytes_fp16=state_dict_bytes(discriminator, torch.float16),
        g_macs=flops // 2,
        g_flops=flops,
    )


def _time(model: nn.Module, z: torch.Tensor, labels: torch.Tensor, min_run_time: float) -> list[float]:
    """Return the per-call seconds of each timed block of ``model(z, labels)``."""
    timer = benchmark.Timer(
        stmt="model(z, labels)",
        globals={"model": model, "z": z, "labels": labels},
        num_threads=torch.get_num_threads(),  # the Timer's default of 1 would override the user's setting
    )
    return timer.blocked_autorange(min_run_time=min_run_time).times


def _quartiles(times: list[float]) -> tuple[float, float, float]:
    """Return the 25th, 50th and 75th percentiles of ``times``, interpolated as ``Measurement`` does."""
    levels = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    q = torch.tensor(times, dtype=torch.float64).quantile(levels)
    return q[0].item(), q[1].item(), q[2].item()


def _speed(model: nn.Module, inputs: Inputs, spec: SpeedSpec, tag: str) -> dict[str, float]:
    """Time ``model`` at batch 1 and at ``spec.throughput_batch``; keys end with ``_{tag}``.

    Throughput IQR is the interquartile range of images/s: ``batch / p25 - batch / p75`` of the per-call times
    (``batch / t`` is decreasing, so the time quartiles map onto the throughput quartiles).
    """
    batch = spec.throughput_batch
    with torch.inference_mode():
        for z, labels in inputs.values():
            model(z, labels)  # warm-up: first-call allocations, and compilation of a compiled model
        p25, p50, p75 = _quartiles(_time(model, *inputs[1], spec.min_run_time))
        b25, b50, b75 = _quartiles(_time(model, *inputs[batch], spec.min_run_time))
    latency, latency_iqr, throughput, throughput_iqr = _speed_keys(tag)
    return {
        latency: p50 * 1e3,
        latency_iqr: (p75 - p25) * 1e3,
        throughput: batch / b50,
        throughput_iqr: batch / b25 - batch / b75,
    }


def _speed_keys(tag: str) -> tuple[str, str, str, str]:
    return f"latency_ms_{tag}", f"latency_iqr_ms_{tag}", f"throughput_ips_{tag}", f"throughput_iqr_ips_{tag}"


def speed_metrics(generator: nn.Module, device: torch.device, spec: SpeedSpec) -> dict[str, float | str]:
    """Return latency (batch 1) and throughput (``spec.throughput_batch``) of ``generator`` on ``device``.

    Keys, with ``dev = device.type``: ``latency_ms_{dev}``, ``latency_iqr_ms_{dev}``,
    ``throughput_ips_{dev}``, ``throughput_iqr_ips_{dev}``, ``device_name_{dev}``, and ``threads_{dev}`` on
    the CPU. With ``spec.compile``, the four timings again with the suffix ``_compiled``: NaN (and a warning)
    when ``torch.compile`` fails. The generator itself is untouched: an eval-mode copy is moved to ``device``.
    """
    dev = device.type
    model = copy.deepcopy(generator).to(device).eval()
    inputs = {batch: generator_inputs(model, batch, device) for batch in (1, spec.throughput_batch)}
    index = device.index if dev != "cpu" else None
    with torch.accelerator.device_index(index):  # the Timer synchronises the *current* accelerator
        metrics: dict[str, float | str] = dict(_speed(model, inputs, spec, dev))
        metrics[f"device_name_{dev}"] = device_name(device)
        if dev == "cpu":
            metrics[f"threads_{dev}"] = torch.get_num_threads()
        if dev == "cuda":
            metrics.update(_graphed_speed(model, inputs, spec, f"{dev}{GRAPHED}"))
        if spec.compile:
            metrics.update(_compiled_speed(model, inputs, spec, f"{dev}{COMPILED}"))
    return metrics


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


def _graphed_speed(model: nn.Module, inputs: Inputs, spec: SpeedSpec, tag: str) -> dict[str, float]:
    """Speed of ``model`` replayed from CUDA graphs; NaN for every key (and a warning) when capture fails."""
    try:
        return _speed(GraphedGenerator(model, inputs), inputs, spec, tag)
    except Exception as error:
        return _unmeasured(tag, "CUDA graph capture", error)


def _unmeasured(tag: str, what: str, error: Exception) -> dict[str, float]:
    warnings.warn(f"{what} failed, {tag} speed recorded as NaN: {type(error).__name__}: {first_line(error)}",
                  RuntimeWarning,
                  stacklevel=3)  # fmt: skip
    return dict.fromkeys(_speed_keys(tag), math.nan)


def _compiled_speed(model: nn.Module, inputs: Inputs, spec: SpeedSpec, tag: str) -> dict[str, float]:
    """Speed of a ``torch.compile``d copy of ``model``; NaN for every key when compilation fails."""
    # Dynamo caches graphs per code object: without a reset, the generators of earlier runs in this process
    # would use up its recompile limit, and later "compiled" models would silently run eagerly.
    torch.compiler.reset()
    try:
        return _speed(torch.compile(model, dynamic=False), inputs, spec, tag)
    except Exception as error:  # compiling is an optional extra: any failure (no C++ compiler, ...) is a NaN
        return _unmeasured(tag, "torch.compile", error)
    finally:
        torch.compiler.reset()


def measure_devices(train_device: torch.device) -> list[torch.device]:
    """Return the devices to time on: always the CPU, then CUDA when present (the training GPU if it is)."""
    devices = [torch.device("cpu")]
    if train_device.type == "cuda":
        devices.append(train_device)
    elif torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices
