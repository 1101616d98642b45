"""Atomic writes, a full disk, safe loads in our own words, CPU-only checkpoints, files moved aside."""

from __future__ import annotations

import errno
import os
import pickle

import pytest
import torch

from bench.base import io as bench_io
from bench.base.errors import CheckpointError, UserError
from bench.base.io import DiskFullError, atomic_write_text, quarantine
from bench.engine import checkpoints
from bench.engine.checkpoints import atomic_torch_save, safe_torch_load


def fail_fsync_with(code: int):
    def fsync(fd):
        raise OSError(code, os.strerror(code))

    return fsync


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_leaves_no_partial_file_and_names_the_path(tmp_path, monkeypatch, code):
    target = tmp_path / "runs" / "result.json"
    atomic_write_text(target, "old")
    monkeypatch.setattr(bench_io.os, "fsync", fail_fsync_with(code))
    with pytest.raises(DiskFullError) as raised:
        atomic_write_text(target, "new")
    assert str(target) in str(raised.value) and "\n" not in str(raised.value)
    assert isinstance(raised.value, UserError)  # the CLI prints it as one line and exits 2
    assert target.read_text() == "old"  # the old file stands, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]  # no temp file left


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_io.os, "fsync", fail_fsync_with(errno.EIO))
    with pytest.raises(OSError) as raised:
        atomic_write_text(tmp_path / "x.txt", "x")
    assert not isinstance(raised.value, DiskFullError)
    assert list(tmp_path.iterdir()) == []


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_code_carrying_file_is_refused_in_plain_words(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(CheckpointError) as raised:
        safe_torch_load(path)
    message = str(raised.value)
    assert message == f"checkpoint {path} cannot be loaded safely: it needs code to load; refused: only plain " \
        "weight files are accepted"  # fmt: skip
    assert "\x1b" not in message and "weights_only" not in message


def test_a_corrupt_file_is_called_corrupt(tmp_path):
    path = tmp_path / "torn.pt"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="it is corrupt or not a torch file"):
        safe_torch_load(path)


def test_checkpoints_hold_cpu_tensors_only(tmp_path, monkeypatch):
    seen = []
    real_save = torch.save

    def spy(obj, buffer):
        seen.append(obj)
        real_save(obj, buffer)

    monkeypatch.setattr(checkpoints.torch, "save", spy)
    weight = torch.ones(2, requires_grad=True)
    atomic_torch_save(tmp_path / "s.pt", {"a": weight, "nested": [{"b": torch.zeros(1)}, (torch.ones(1), 3)]})
    stored = seen[0]
    tensors = [stored["a"], stored["nested"][0]["b"], stored["nested"][1][0]]
    assert all(t.device.type == "cpu" and not t.requires_grad for t in tensors)
    assert stored["nested"][1][1] == 3 and isinstance(stored["nested"][1], tuple)


def test_quarantine_moves_aside_never_deletes(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("{trunc")
    with pytest.warns(RuntimeWarning, match="result.json is unreadable \\(truncated\\): moved to result.json."):
        moved = quarantine(path, "truncated")
    assert not path.exists() and moved.read_text() == "{trunc" and moved.name.startswith("result.json.unreadable-")
    assert quarantine(path, "again") is None  # already moved by someone else: nothing to do
