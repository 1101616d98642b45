"""Latency as a deployment engineer measures it: generators timed behind several backends, in interleaved rounds.

A **backend** turns an eval-mode generator on one device into a callable ``fn(z, labels) -> images`` (eager
PyTorch, ``torch.compile``, ONNX Runtime, a CUDA graph, ...). Adding one is a module with a ``prepare`` function
and one ``register_backend`` call, imported at the end of this file; ``rounds.time_models`` then times it beside
the others and ``tests/test_latency.py`` covers it. A backend that cannot run a model raises from ``prepare``
(or from a call): the failure is recorded in that row's ``status``/``error`` columns and the timing goes on.

Public entry points: ``time_models(models, settings) -> list[LatencyRow]`` and ``write_latency_csv(rows, dir)``;
``python -m bench.latency RUN_DIR`` re-times the saved generators of a results directory. docs/latency.md says
how every number is taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.base.registry import Registry

DEVICE_TYPES = ("cpu", "cuda")


@dataclass(frozen=True)
class Backend:
    """One way of running a generator for inference.

    ``prepare(model, inputs)`` gets an eval-mode generator already on the device and ``inputs``, the fixed
    ``{batch: (z, labels)}`` it will be called with (every batch size of the measurement, on that device). It
    returns ``fn(z, labels)``, which returns the images as a tensor or a NumPy array; it is called under
    ``torch.inference_mode`` with exactly those inputs. It may raise: the backend is then recorded as failed
    for that model. ``prepare`` must not change ``model`` (the other backends share it). ``cleanup()``, if
    given, runs once after every measurement of the backend (to free compiled code, caches...).
    """

    name: str
    devices: tuple[str, ...]
    prepare: Callable[..., Callable]
    description: str = ""
    cleanup: Callable[[], None] | None = None
    quantized: bool = False  # runs post-training quantized generators (compress/quantize.py); else they skip it
    modes: tuple[str, ...] | None = None  # with quantized: the quantization modes it runs (None: every one)

    def __post_init__(self) -> None:
        unknown = set(self.devices) - set(DEVICE_TYPES)
        if not self.devices or unknown:
            raise ValueError(f"backend {self.name!r}: devices must be among {DEVICE_TYPES}, got {self.devices}")


BACKENDS: Registry[Backend] = Registry("latency backend")


def register_backend(backend: Backend) -> Backend:
    return BACKENDS.add(backend.name, backend)


def backends() -> list[str]:
    return BACKENDS.names()


# the backends register themselves on import, in the order the tables show them
from bench.latency import eager, compiled, onnxruntime, openvino, cuda_graph  # noqa: E402,F401  isort: skip
from bench.latency.rounds import (  # noqa: E402
    LATENCY_CSV,
    LatencyRow,
    interleave,
    time_models,
    write_latency_csv,
)

__all__ = [
    "BACKENDS",
    "LATENCY_CSV",
    "Backend",
    "LatencyRow",
    "backends",
    "interleave",
    "register_backend",
    "time_models",
    "write_latency_csv",
]
