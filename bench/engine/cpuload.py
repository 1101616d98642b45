"""The process's thread budget, and how busy other processes keep the machine while it times.

One budget (the cores this process may run on, or ``--threads``) is given to every library that starts threads
of its own: torch's intra-op pool, BLAS (NumPy's KID, scikit-learn's distances), ONNX Runtime and joblib (read
from ``thread_budget()`` where they are called). A timing taken while other processes keep cores busy is slower
than the model: ``OtherLoad`` measures that share from ``/proc`` (Linux), so latency.csv can say so.
"""

from __future__ import annotations

import os
import time

import torch

from bench.base.errors import UserError

LOADED_SHARE = 0.25  # timings taken while other processes keep more than this share of the cores busy are flagged
_blas_limits: object | None = None  # threadpoolctl's limiter, kept alive while the budget holds


def cores_available() -> int:
    """The cores this process may run on (its CPU affinity: a container's or a scheduler's share), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def checked_threads(threads: int | None) -> int | None:
    """``--threads`` as given: None (not given) or a whole number of threads from 1 to the cores available."""
    if threads is not None and not 1 <= threads <= cores_available():
        raise UserError(f"--threads must be between 1 and the {cores_available()} cores available, got {threads}")
    return threads


def set_thread_budget(threads: int | None = None) -> int:
    """Give torch and BLAS ``threads`` (default: ``OMP_NUM_THREADS`` when set, else the cores available)."""
    global _blas_limits
    from threadpoolctl import threadpool_limits

    if threads is None:
        threads = int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS") else cores_available()
    torch.set_num_threads(threads)
    _blas_limits = threadpool_limits(limits=threads, user_api="blas")
    return threads


def thread_budget() -> int:
    """The threads a library called now may start (torch's count: ``set_thread_budget`` set it)."""
    return torch.get_num_threads()


def _busy_ticks() -> tuple[int, int] | None:
    """(ticks every core spent busy, ticks this process spent) since boot, or None without /proc."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(value) for value in handle.readline().split()[1:]]
        with open("/proc/self/stat", encoding="ascii") as handle:
            own = handle.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy, int(own[11]) + int(own[12])  # utime + stime of every thread of this process


class OtherLoad:
    """Cores kept busy by other processes, averaged over the windows between ``start`` and ``stop`` calls."""

    def __init__(self) -> None:
        self.ticks = 0  # other processes' busy ticks inside the windows
        self.seconds = 0.0
        self._mark: tuple[float, tuple[int, int]] | None = None

    def start(self) -> None:
        ticks = _busy_ticks()
        self._mark = (time.monotonic(), ticks) if ticks is not None else None

    def stop(self) -> None:
        ticks = _busy_ticks()
        if self._mark is None or ticks is None:
            return
        began, (busy, own) = self._mark
        self.ticks += max(0, (ticks[0] - busy) - (ticks[1] - own))
        self.seconds += time.monotonic() - began
        self._mark = None

    def add(self, other: OtherLoad) -> None:
        """Count ``other``'s windows as this meter's too."""
        self.ticks += other.ticks
        self.seconds += other.seconds

    @property
    def cores(self) -> float:
        """Average cores busy with other work (NaN when nothing was measured)."""
        if self.seconds <= 0:
            return float("nan")
        return self.ticks / os.sysconf("SC_CLK_TCK") / self.seconds

    def loaded(self) -> bool:
        """Whether other processes took more than ``LOADED_SHARE`` of the cores: these timings are inflated."""
        return self.cores > LOADED_SHARE * (os.cpu_count() or 1)
