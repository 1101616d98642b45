"""Checkpoints on disk: written atomically with every tensor on the CPU, read back with ``weights_only=True``.

A missing, damaged or code-carrying file is a one-line ``CheckpointError``, never an unpickled object.
"""

from __future__ import annotations

import io
import pickletools
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from bench.base.errors import CheckpointError
from bench.base.io import atomic_write_bytes, is_file

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` atomically, every tensor on the CPU (a file written on a GPU loads anywhere); serialised
    in memory first, so the bytes do not depend on a temp file's name."""
    buffer = io.BytesIO()
    torch.save(_on_cpu(obj), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _on_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return type(obj)((key, _on_cpu(value)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_cpu(value) for value in obj)
    return obj


def safe_torch_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``; a missing, corrupt or code-carrying file is a ``CheckpointError``."""
    path = Path(path)
    if not is_file(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own notes on pickle protocols: ours to judge, not to print
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors come in many types; all mean "not a checkpoint we accept"
        text = _ANSI.sub("", str(err)).strip()
        if _needs_code(path, text):
            reason = "it needs code to load; refused: only plain weight files are accepted"
        else:
            first = text.splitlines()[0].split(". ")[0] if text else type(err).__name__
            reason = f"it is corrupt or not a torch file ({first})"
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {reason}") from None


_CODE_OPS = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


def _needs_code(path: Path, message: str) -> bool:
    """Whether a refused file asks to import or call something (as opposed to being damaged)."""
    if "Unsupported global" in message:  # a torch zip file whose pickle names a class or function
        return True
    try:  # a bare pickle: look for the opcodes that import or call
        return any(op.name in _CODE_OPS for op, _, _ in pickletools.genops(path.read_bytes()))
    except Exception:  # not a pickle at all: damaged
        return False
