"""Run a grid from Python: ``from bench import run_grid``.

``run_grid(out="results/mine", widths=[16, 32], epochs=1, methods=["width"])`` runs (or resumes) the grid the
command line would run with the same options (``--widths 16,32 --epochs 1 --methods width``), through the same
parser, checks and executor, and returns its ``results.csv`` as a pandas DataFrame. A keyword is a flag's name with
underscores (``prune_widths``, ``latency_backends``, ``no_report``); a list is a comma-separated value; ``True``
gives a switch. Whatever the command line refuses in one ``error:`` line is raised here as
``bench.base.errors.UserError`` with the same line; nothing is printed but progress (``quiet=True`` silences it).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bench.base.errors import UserError
from bench.base.layout import RESULTS_CSV
from bench.cli import build_parser, execute


def run_grid(preset: str = "quick", **options: object) -> pd.DataFrame:
    """Run the ``preset``'s grid with ``options`` on top (see the module docstring); its results, one row per run."""
    parser = build_parser()
    args = parser.parse_args(as_argv(preset, options, _known_flags(parser)))
    if args.dry_run:
        raise UserError("run_grid runs the grid: for the plan alone, run the command line with --dry-run")
    results_dir, _ = execute(args)
    return pd.read_csv(Path(results_dir) / RESULTS_CSV)


def as_argv(preset: str, options: dict[str, object], known: Iterable[str]) -> list[str]:
    """The command line ``options`` stand for: ``widths=[16, 32]`` -> ``--widths 16,32``; ``quiet=True`` ->
    ``--quiet``; a value of None or False is left out (the preset's)."""
    known = set(known)
    argv = ["--preset", preset]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if flag not in known:
            raise UserError(f"run_grid: unknown option {name}: use a flag's name with underscores, e.g. widths, "
                            "prune_widths, latency_backends (run_bench.py --help lists them)")  # fmt: skip
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple, set)):
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, str(value)]
    return argv


def _known_flags(parser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings]
