"""Stopping cleanly when a scheduler asks: SIGTERM (what clusters send before a kill) sets a flag that the
training loop reads at every step boundary; it then saves every run's state at that step and raises
``Preempted``, and the command exits with one line saying how to resume."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_PREEMPTED = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM

_requested = False


class Preempted(Exception):
    """The run stopped on request; every run in training saved its state at the step it had reached."""


def stop_requested() -> bool:
    return _requested


def request_stop(*_: object) -> None:
    global _requested
    _requested = True


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM requests a stop instead of ending the process; the old handler comes back."""
    global _requested
    _requested = False
    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _requested = False


def check(where: str = "between runs") -> None:
    """Raise ``Preempted`` if a stop was requested (for places between steps, where nothing is in flight)."""
    if _requested:
        raise Preempted(f"stopped {where}")
