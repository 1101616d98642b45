"""Atomic writes: a kill at any moment leaves either the old file or the new one, never half.

A full disk is a one-line ``DiskFullError`` naming the file, with no partial file left behind; a file found
unreadable is moved aside (``quarantine``), never deleted, so that what it held can still be looked at.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.base.errors import UserError


class DiskFullError(UserError):
    """A write failed for lack of space: the path is named, nothing partial is left."""


def is_file(path: str | Path) -> bool:
    """``Path.is_file`` that answers False for a path the system cannot even look up (too long, ...)."""
    try:
        return Path(path).is_file()
    except OSError:
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temp file beside ``path``, fsync it, then ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"no space left on the device to write {path}: free some and run again") from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def quarantine(path: Path, why: str) -> Path | None:
    """Move an unreadable file aside (``NAME.unreadable-<UTC time>``) with one warning line; returns where
    (None when another process moved it first)."""
    target = move_aside(path, "unreadable")
    if target is not None:
        warnings.warn(f"{path} is unreadable ({why}): moved to {target.name} and recomputed", RuntimeWarning,
                      stacklevel=2)  # fmt: skip
    return target


def file_intact(path: Path) -> bool:
    """Whether ``path`` is a whole file: a ``.pt`` must be a ``torch.save`` archive whose zip directory (written
    last) is there, any other file must not be empty. A missing, empty or truncated checkpoint is not; the check
    reads the archive's end, not its tensors."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        return zipfile.is_zipfile(path) if path.suffix == ".pt" else True
    except OSError:
        return False


def move_aside(path: Path, label: str = "damaged") -> Path | None:
    """Move ``path`` (a file or a directory) to ``NAME.<label>-<UTC time>`` beside it, silently; returns where
    (None when it is not there). The caller says why, in one line."""
    path = Path(path)
    target = path.with_name(f"{path.name}.{label}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    return target


def check_writable_dir(path: Path, flag: str) -> None:
    """Create ``path`` if needed and prove a file can be written there, or raise a one-line ``UserError``."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as err:
        raise UserError(f"{flag} {path} is not writable: {err.strerror or err}") from None


def check_creatable_dir(path: Path, flag: str) -> None:
    """What ``check_writable_dir`` proves, without creating anything: the nearest existing ancestor is a
    writable directory (or ``path`` is one)."""
    path = Path(path).absolute()
    existing = next((p for p in (path, *path.parents) if _exists(p)), Path("/"))
    if not existing.is_dir():
        raise UserError(f"{flag} {path} is not writable: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path} is not writable: permission denied on {existing}")
    try:  # root passes every access check: whether a directory can be made there is only known by making one
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".gan-kd-bench-check-"))
    except OSError as err:
        raise UserError(f"{flag} {path} is not writable: no directory can be made in {existing} "
                        f"({err.strerror or err})") from None  # fmt: skip


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB chunks: weight files can be large."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
