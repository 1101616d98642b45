"""Resolve ``--device auto|cpu|cuda`` to a torch device, and name the hardware for the records."""

from __future__ import annotations

import platform

import torch

from bench.base.errors import DeviceError, UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a user error, not a crash later."""
    if name not in DEVICE_CHOICES:
        raise UserError(f"unknown device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but no CUDA GPU is available: use --device cpu or auto")
    return torch.device(name)


def tune_for(device: torch.device) -> None:
    """On CUDA, let cuDNN time its convolution algorithms once per shape and keep the fastest.

    Every training step of a run has the same shapes, so the timing is paid once (in the warm-up before a
    graph capture, or the first eager steps) and every later step gains. It makes GPU runs choose kernels by
    timing, so their last bits may differ between runs; GPU runs are not bit-reproducible anyway (atomics).
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def device_name(device: torch.device) -> str:
    """A human-readable name of the hardware behind ``device`` (GPU model, or CPU model and threads)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)"
