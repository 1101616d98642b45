"""Where a phase's wall seconds go: named, accumulating timers whose readings include queued GPU work."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def timed(into: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall seconds of the block to ``into[name]``; CUDA's queue is drained at both ends when present."""
    _drain()
    started = time.perf_counter()
    try:
        yield
    finally:
        _drain()
        into[name] = into.get(name, 0.0) + time.perf_counter() - started


def _drain() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
