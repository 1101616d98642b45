"""``from bench import run_grid``: the README's notebook example runs, and bad values raise one-line UserErrors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import bench
from bench.base.errors import UserError
from tests.conftest import CACHE_DIR

README = Path(__file__).resolve().parent.parent / "README.md"


def notebook_example() -> str:
    """The Python block of README.md that calls run_grid."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return next(block for block in blocks if "run_grid(" in block)


def test_the_readme_notebook_example_runs(tmp_path, monkeypatch):
    code = notebook_example()
    assert len(code.strip().splitlines()) <= 10, "the README promises a short example"
    # the same call, smaller and in a scratch directory: out, sample count and latency settings of a quick test
    code = code.replace('out="results/notebook"', f'out="{tmp_path / "nb"}", cache_dir="{CACHE_DIR}"')
    small = 'fid_samples=100, backbones=["lenet"], latency_backends=["eager"], latency_batches=[1], quiet=True, '
    code = code.replace("run_grid(", "run_grid(" + small + "teacher_width=32, latency_seconds=0.02, no_report=True, ")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    frame = namespace["results"]
    assert set(frame["status"]) == {"done"} and set(frame["width"]) == {16, 32}
    assert (tmp_path / "nb" / "results.csv").is_file() and "fid_lenet" in frame


@pytest.mark.parametrize(
    "options, message",
    [
        ({"widths": [0]}, "width"),
        ({"epochs": 0}, "--epochs must be at least 1"),
        ({"quantize": ["int4"]}, "--quantize: unknown int4"),
        ({"wdths": [16]}, "run_grid: unknown option wdths"),
        ({"dry_run": True}, "run_grid runs the grid"),
    ],
)
def test_bad_values_raise_one_line_user_errors(options, message, tmp_path, capsys):
    with pytest.raises(UserError) as raised:
        bench.run_grid(out=str(tmp_path / "o"), methods=["width", "quantize"], **options)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert capsys.readouterr().err == "" and not (tmp_path / "o").exists()
