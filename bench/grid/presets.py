"""The two presets: the quick one that runs every stage on a 2-core CPU, and the original's setting."""

from __future__ import annotations

from dataclasses import replace

from bench.base.errors import UserError
from bench.base.layout import PRUNE, QUANTIZE, SCRATCH, WIDTH
from bench.engine.methods import METHODS
from bench.grid.spec import GridSpec, validate
from bench.latency.settings import SpeedSpec
from bench.metrics.settings import QualitySpec
from compress.once_for_all import ONCE_FOR_ALL, OnceForAllSettings
from compress.prune import PruneSettings
from compress.quantize import QuantizeSettings

PRESETS: dict[str, dict] = {
    # digits, under 4 minutes on a 2-core CPU, every stage exercised: a width-256 teacher keeps it that short
    "quick": dict(
        dataset="digits", widths=(16, 32, 64, 128), teacher_width=256, kd=(SCRATCH, "pixel-l1"), kd_weight=1.0,
        seeds=(1314,), epochs=6, batch_size=32, quality=QualitySpec(fid_samples=1000, kid_subsets=10),
        # every model behind eager PyTorch and OpenVINO in a few seconds each: p99 then rests on 24+ calls; noisy
        # cells are flagged, not re-timed (ONNX Runtime's export costs over a second per model: the paper preset and
        # --latency-backends eager,onnxruntime,openvino add it)
        speed=SpeedSpec(backends=("eager", "openvino"), batches=(1, 64), rounds=6, calls_per_round=16,
                        min_calls_per_round=4, seconds_per_cell=0.1, max_retimes=0),
        # every method at small scale: the teacher pruned to two widths' sizes and fine-tuned with and without
        # distillation; one once-for-all generator cut to the same two widths (in-place distillation alone); every
        # float model quantized to int8 by torch.ao (fp16/bf16 run 4-10x slower than fp32 on a CPU; OpenVINO/NNCF's
        # int8, --quantize int8,openvino-int8, would take the preset past 4 minutes)
        methods=(WIDTH, PRUNE, ONCE_FOR_ALL, QUANTIZE),
        settings={PRUNE: PruneSettings(widths=(32, 128), finetune_epochs=2),
                  ONCE_FOR_ALL: OnceForAllSettings(widths=(32, 128), kd=(SCRATCH,)),
                  QUANTIZE: QuantizeSettings(modes=("int8",))},
    ),
    # the original's setting: MNIST, 25 epochs, batch 128, three seeds, metrics on 10,000 samples
    "paper": dict(
        dataset="mnist", widths=(16, 32, 64, 128, 256, 512), kd=(SCRATCH, "pixel-l1"), kd_weight=1.0,
        seeds=(1314, 1315, 1316), epochs=25, batch_size=128, quality=QualitySpec(fid_samples=10_000),
        # fast cells get 8 x 128 = 1,024 calls; a slow one (batch 256 of a wide model on a CPU) 8 at least, so
        # that timing all 12 models behind 2 CPU backends stays near a minute or two
        speed=SpeedSpec(backends=("eager", "onnxruntime", "openvino", "cuda-graph"), rounds=8, calls_per_round=128,
                        min_calls_per_round=1, seconds_per_cell=1.0),
        # the original's grid is the width method alone; with --methods width,prune,quantize the teacher is pruned
        # to every student's size by both importances, fine-tuned 5 epochs with and without distillation, and every
        # float model quantized to fp16, bf16 and int8
        settings={PRUNE: PruneSettings(importance=("bn", "l1"), finetune_epochs=5),
                  QUANTIZE: QuantizeSettings(modes=("fp16", "bf16", "int8"))},
    ),
}  # fmt: skip


def preset_values(preset: str) -> dict:
    """The settings of ``preset``, or a one-line error listing the presets."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[preset])


def make_grid(preset: str, settings: dict[str, dict] | None = None, **overrides) -> GridSpec:
    """The preset's grid with every non-None override applied; each method's settings follow what the overrides
    narrowed (``Method.follow``), then take the fields given in ``settings`` (method -> {field: value}); validated."""
    values = preset_values(preset)
    preset_grid = GridSpec(preset=preset, **values)
    values.update({key: value for key, value in overrides.items() if value is not None})
    grid = GridSpec(preset=preset, **values)
    followed = {
        name: method.follow(grid.settings_of(name), preset_grid, grid)
        for name, method in ((name, METHODS[name]) for name in METHODS.names())
        if method.follow is not None
    }
    grid = replace(grid, settings={**grid.settings, **followed})
    for name, fields in {name: fields for name, fields in (settings or {}).items() if fields}.items():
        if METHODS[name].settings is None:
            raise UserError(f"the {name} method has no settings, got {', '.join(fields)}")
        grid = replace(grid, settings={**grid.settings, name: replace(grid.settings_of(name), **fields)})
    validate(grid)
    return grid
