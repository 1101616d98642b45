"""--family FILE.py:NAME: a family from outside the suite, imported once, checked against the contract, run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from gans import FAMILIES, plugins
from tests.conftest import fails_cleanly, tiny_grid_args

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "resize_conv_family.py"


@pytest.fixture(autouse=True)
def families_as_they_were(monkeypatch):
    """The families a test imports are registered for that test only."""
    monkeypatch.setattr(FAMILIES, "_entries", dict(FAMILIES._entries))
    monkeypatch.setattr(plugins, "_LOADED", {})


def test_the_example_family_runs_a_grid_from_a_copy_outside_the_repository(tmp_path):
    plugin = shutil.copy(EXAMPLE, tmp_path / "my_family.py")
    out = tmp_path / "results"
    args = tiny_grid_args(out, "--family", f"{plugin}:FAMILY", "--widths", "16", "--kd", "none", "--backbones", "lenet")
    assert main(args) == 0
    runs = pd.read_csv(out / "results.csv")
    assert set(runs["family"]) == {"resize-conv"} and set(runs["status"]) == {"done"} and len(runs) == 2
    assert set(pd.read_csv(out / "latency.csv")["status"]) == {"ok"}
    # another process rebuilds the saved generators through the family named in grid.json
    code = f"from bench.latency.saved import saved_generators; print(len(saved_generators({str(out)!r})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr


def test_bad_family_references_are_one_line(tmp_path, capsys):
    out = tmp_path / "o"
    fails_cleanly(main, capsys, tiny_grid_args(out, "--family", "nowhere.py:FAMILY"), "no such file nowhere.py")
    fails_cleanly(main, capsys, tiny_grid_args(out, "--family", f"{EXAMPLE}:BLOCKS"), "BLOCKS is not a gans.family")
    broken = tmp_path / "broken.py"
    broken.write_text(EXAMPLE.read_text().replace('"resize-conv"', '"broken-conv"').replace(
        "images = torch.tanh(self.to_image(x))", "images = 2 * torch.tanh(self.to_image(x))"))  # fmt: skip
    fails_cleanly(main, capsys, tiny_grid_args(out, "--family", f"{broken}:FAMILY"), "its images leave [-1, 1]")
    assert not out.exists()
