"""Per-run claims, so that two processes sharing a results directory never train the same run twice.

A claim is an exclusive ``flock`` on ``<run dir>/.claim``. The kernel drops it when its process dies, so a
killed process never leaves a stale claim behind, and a waiting process takes over at once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

CLAIM_FILE = ".claim"
_held: set[Path] = set()  # run directories this process holds: waiting on one of them would deadlock


class Claim:
    """An exclusive hold on one run directory, released by ``release`` or by the process ending."""

    def __init__(self, run_dir: Path, handle) -> None:
        self.run_dir = run_dir.resolve()
        self._handle = handle
        _held.add(self.run_dir)

    def release(self) -> None:
        if self._handle is not None:
            _held.discard(self.run_dir)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _open(run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)
    return open(run_dir / CLAIM_FILE, "a")


def try_claim(run_dir: Path) -> Claim | None:
    """Claim ``run_dir`` if no other process holds it; None if one does."""
    handle = _open(run_dir)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return Claim(run_dir, handle)


def wait_for(run_dir: Path) -> None:
    """Block until no other process holds ``run_dir``."""
    if run_dir.resolve() in _held:
        return
    handle = _open(run_dir)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
    finally:
        handle.close()
