"""What a results directory holds and the values its files share with the report: declared once, torch-free.

``reports/`` reads results through these names; the engine writes them.
"""

from __future__ import annotations

RESULTS_CSV = "results.csv"  # one row per run, rebuilt from every result.json
REFERENCES_CSV = "references.csv"  # real-vs-real and untrained scores at the grid's sample size
LATENCY_CSV = "latency.csv"  # every model timed together: one row per model x backend x device x batch
GRID_FILE = "grid.json"  # the grid's settings and schema version
CACHE_DIR = "cache"  # classifier and real-data statistics, unless --cache-dir
RUNS_DIR = "runs"  # one directory per run, named by its run id

# inside a run's directory
SPEC_FILE = "spec.json"
RESULT_FILE = "result.json"  # written last and atomically: its presence means the run is finished
STATE_FILE = "state.pt"
GENERATOR_FILE = "generator.pt"
DISCRIMINATOR_FILE = "discriminator.pt"
LOSSES_FILE = "losses.csv"
SAMPLES_FILE = "samples.png"

STATUS_DONE = "done"
STATUS_DIVERGED = "diverged"
STATUS_TEACHER_DIVERGED = "teacher-diverged"  # a distilled student whose teacher diverged: never trained
STATUS_SOURCE_DIVERGED = "source-diverged"  # a derived (quantized) model whose float source diverged: never made
STATUS_MISMATCH = "mismatch"  # a derived model beyond its method's tolerance of its float source: never scored
SOURCE_CHECKED = "source_mean_abs_err"  # the column every derived model's record holds (compress/fidelity.py)

LAYERS_FILE = "layers.json"  # a quantized run's layers: the precision each became, and why
PRUNED_FILE = "pruned.pt"  # a pruned run's generator as cut, before fine-tuning (compress/prune.py's format)

SCRATCH = "none"  # the kd value of a run trained without a teacher
TEACHER_WIDTH = 512  # the original's teacher: the width its sizes are quoted against

# how a generator was made small (RunSpec.method); QUANTIZE is applied after either, to a finished run
WIDTH, PRUNE, QUANTIZE = "width", "prune", "quantize"
