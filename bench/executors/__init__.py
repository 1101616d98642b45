"""Executors: what runs a grid's cohorts, behind one registry (``--executor``).

Every executor drives the engine's public grid API the same way: ``prepare_grid`` (validate, record the
grid, reference rows), ``run_cohort``/``run_cohorts`` for the cohorts wherever they run, ``finish_grid``
(wait, take over, rebuild the CSV). Adding one is a module with a ``run`` and a ``check`` and one
``register_executor`` call, imported below. Importing this package imports no executor's dependencies (Ray is
imported when its executor runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.base.registry import Registry


@dataclass(frozen=True)
class ExecutorOptions:
    """The settings only some executors read; the CLI passes them all, an executor refuses those it ignores."""

    address: str | None = None  # a cluster to join
    gpus_per_run: float | None = None
    cpus_per_run: int | None = None


@dataclass(frozen=True)
class Executor:
    """``run(grid, options, progress)`` runs the grid and returns its results directory; ``check(options,
    device)`` raises a one-line ``UserError`` for settings it cannot honour, before anything starts."""

    name: str
    run: Callable[..., Path]
    check: Callable[[ExecutorOptions, str], None]
    description: str = ""


EXECUTORS: Registry[Executor] = Registry("executor")


def register_executor(executor: Executor) -> Executor:
    return EXECUTORS.add(executor.name, executor)


def get_executor(name: str) -> Executor:
    return EXECUTORS[name]


from bench.executors import local, ray  # noqa: E402,F401  (register themselves)  isort: skip
