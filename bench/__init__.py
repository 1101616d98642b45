"""The benchmark, in layers that import only downward (the contracts in pyproject.toml, checked by lint-imports):

- ``bench.base``: torch-free errors, registries, flags, the results layout, atomic writes, metric declarations;
- ``gans``, ``data``, ``distill``: model families, datasets, distillation objectives;
- ``bench.engine``: the run spec, the method registry, models, the training loop, records, claims;
- ``compress``, ``bench.metrics``, ``bench.latency``: the methods, the quality metrics and the timing, each with
  its own settings;
- ``bench.grid``: the grid spec and presets, planning, the phases, rescoring, the dry run;
- ``bench.executors``, ``bench.harness``, ``bench.cli``: where and how a grid runs.

``reports`` stands beside them: it reads the results files and imports nothing but ``bench.base``.
"""
