"""The finished runs' generators of a results directory, rebuilt from their ``generator.pt`` without retraining.

A generator's architecture comes from the run's spec (family, width) and from the data's image shape and class
count, which ``grid.json`` records; a results directory written before it did is read with the dataset itself
(loaded, never downloaded; ``digits`` is embedded, the others need ``--data-root``).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

import compress  # noqa: F401  the methods that rebuild saved models register themselves
from bench.base.errors import UserError
from bench.base.io import read_json
from bench.base.layout import GRID_FILE, RESULT_FILE, RUNS_DIR
from bench.engine.finished import finished_generators
from data import DataShape
from gans.plugins import load_family


def grid_record(results_dir: Path) -> dict:
    """``grid.json`` of ``results_dir``, or an empty dict when it is missing or unreadable."""
    try:
        grid = read_json(Path(results_dir) / GRID_FILE)
    except (OSError, ValueError):
        return {}
    return grid if isinstance(grid, dict) else {}


def data_shape(grid: dict, data_root: str | Path | None) -> DataShape:
    """The image shape and class count of the grid's data: from ``grid.json`` when it records them, else loaded.
    A family from outside the suite that the grid names is imported first (its generators are rebuilt by it)."""
    if isinstance(grid.get("family_module"), str):
        load_family(grid["family_module"])
    shape, classes = grid.get("image_shape"), grid.get("num_classes")
    if isinstance(shape, list) and len(shape) == 3 and isinstance(classes, int):
        return DataShape((int(shape[0]), int(shape[1]), int(shape[2])), classes)
    if "dataset" not in grid:
        raise UserError("grid.json is missing or unreadable and records no dataset: cannot rebuild the generators")
    from data import get_dataset

    root = data_root if data_root is not None else grid.get("data_root", "datasets")
    loaded = get_dataset(grid["dataset"], root, download=False, image_size=grid.get("image_size"))
    return DataShape(loaded.image_shape, loaded.num_classes)


def saved_generators(results_dir: Path, data_root: str | Path | None = None) -> dict[str, nn.Module]:
    """Run id -> generator, for every finished run of ``results_dir``; none is a one-line ``UserError``."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results directory {results_dir} does not exist")
    no_run = UserError(f"no finished run in {results_dir}: give the directory a benchmark wrote (its --out)")
    if not any((results_dir / RUNS_DIR).glob(f"*/{RESULT_FILE}")):
        raise no_run
    models = finished_generators(results_dir, data_shape(grid_record(results_dir), data_root))
    if not models:
        raise no_run
    return models
