"""The benchmark, in layers that import only downward (the contracts in pyproject.toml, checked by lint-imports):

- ``bench.base``: torch-free errors, registries, flags, the results layout, atomic writes, metric declarations;
- ``gans``, ``data``, ``distill``: model families, datasets, distillation objectives;
- ``bench.engine``: the run spec, the method registry, models, the training loop, records, claims;
- ``compress``, ``bench.metrics``, ``bench.latency``: the methods, the quality metrics and the timing, each with
  its own settings;
- ``bench.grid``: the grid spec and presets, planning, the phases, rescoring, the dry run;
- ``bench.executors``, ``bench.harness``, ``bench.cli``: where and how a grid runs;
- ``bench.api``: ``run_grid``, the command line's options as keyword arguments, from Python.

``reports`` stands beside them: it reads the results files and imports nothing but ``bench.base``. ``run_grid`` and
``UserError`` are importable from here; importing ``bench`` itself loads nothing else (reports stay torch-free).
"""

__all__ = ["UserError", "run_grid"]


def __getattr__(name: str):
    if name == "run_grid":
        from bench.api import run_grid

        return run_grid
    if name == "UserError":
        from bench.base.errors import UserError

        return UserError
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
