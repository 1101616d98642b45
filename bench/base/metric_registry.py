"""Every metric the suite reports, declared once: its column, unit, direction, backbone and how it is shown.

The evaluator writes the quality columns listed here, the records compute the ratio columns listed here, and
the report reads labels, directions and formats from here. Torch-free: ``reports/`` imports it.
Adding a metric is one ``register_metric`` line below, plus the code that computes its column.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.base.registry import Registry

LOWER, HIGHER = "lower", "higher"
COST, QUALITY = "cost", "quality"


@dataclass(frozen=True)
class Metric:
    """One ``results.csv`` column and what a reader needs to know about it."""

    column: str  # the column of results.csv
    label: str  # header in Markdown, LaTeX and HTML tables
    short: str  # name in captions and plot facets
    kind: str = COST  # COST (size, speed) or QUALITY (undefined for a diverged run)
    unit: str = ""  # of the results.csv value
    better: str | None = None  # LOWER, HIGHER, or None when neither is better
    backbone: str | None = None  # the feature network the score is computed with ("lenet", "inception")
    extra_columns: tuple[str, ...] = ()  # written beside it by the same computation (e.g. a std over subsets)
    ratio_of: str | None = None  # this column is the teacher's value of ``ratio_of`` over the model's
    report_name: str | None = None  # stem of the report's own CSV columns (with the shown unit); None: not shown
    scale: float = 1.0  # results.csv value * scale = shown value
    exact: bool = False  # identical for every seed of a group (sizes): shown without an interval
    integer: bool = False
    digits: int = 3  # significant digits shown
    bounds: tuple[float | None, float | None] = (None, None)  # the values it can take (None: unbounded)

    @property
    def quality(self) -> bool:
        return self.kind == QUALITY

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column, *self.extra_columns)


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    return METRICS.add(metric.column, metric)


def all_metrics() -> tuple[Metric, ...]:
    return tuple(METRICS[name] for name in METRICS)


def shown(kind: str) -> tuple[Metric, ...]:
    """The metrics of ``kind`` the report shows, in registration order."""
    return tuple(m for m in all_metrics() if m.kind == kind and m.report_name is not None)


def quality_columns(backbones: set[str | None]) -> tuple[str, ...]:
    """The quality columns an evaluator with these backbones writes (None: metrics that need none)."""
    return tuple(col for m in all_metrics() if m.quality and m.backbone in backbones for col in m.columns)


def ratio_columns() -> dict[str, str]:
    """{measured column: its teacher/model ratio column}."""
    return {m.ratio_of: m.column for m in all_metrics() if m.ratio_of is not None}


def _quality(column: str, label: str, short: str, better: str, backbone: str | None, **kw) -> Metric:
    return register_metric(Metric(column, label, short, QUALITY, better=better, backbone=backbone, **kw))


def _size(column: str, label: str, short: str, unit: str, report_name: str | None, scale: float, digits: int) -> None:
    register_metric(
        Metric(column, label, short, unit=unit, report_name=report_name, scale=scale, exact=True,
               integer=column.endswith("params"), digits=digits)
    )  # fmt: skip


# sizes (bench/metrics/measure.py: SizeMetrics), counted once per architecture; registered in the report's order
_size("g_params", "G params", "parameters", "", "g_params", 1.0, 3)
_size("g_bytes_fp32", "G fp32 size (KiB)", "fp32 size", "B", "g_fp32_kib", 1 / 1024, 4)
# as the model is stored: its fp32 checkpoint, or a quantized model's payload (compress/quantize.py)
_size("g_bytes_stored", "G stored size (KiB)", "stored size", "B", "g_stored_kib", 1 / 1024, 4)

# compression against the teacher of the same seed (bench/engine/records.py)
for _column, _of, _label, _short, _report in [
    ("ratio_params", "g_params", "compression, params (×)", "compression by parameters", "ratio_params"),
    ("ratio_bytes", "g_bytes_fp32", "compression, bytes (×)", "compression by bytes", "ratio_bytes"),
    ("ratio_stored", "g_bytes_stored", "compression, stored bytes (×)", "compression by stored bytes", "ratio_stored"),
    ("ratio_macs", "g_macs", "compression, MACs (×)", "compression by MACs", None),
    ("d_ratio_params", "d_params", "D compression, params (×)", "discriminator compression by parameters", None),
    ("d_ratio_bytes", "d_bytes_fp32", "D compression, bytes (×)", "discriminator compression by bytes", None),
]:
    register_metric(Metric(_column, _label, _short, unit="x", ratio_of=_of, report_name=_report, exact=True))
_size("g_macs", "G MMACs / image", "MACs", "MAC", "g_mmacs", 1e-6, 3)
_size("g_flops", "G MFLOPs / image", "FLOPs", "FLOP", None, 1e-6, 3)
_size("g_bytes_fp16", "G fp16 size (KiB)", "fp16 size", "B", None, 1 / 1024, 4)
_size("d_params", "D params", "discriminator parameters", "", None, 1.0, 3)
_size("d_bytes_fp32", "D fp32 size (KiB)", "discriminator fp32 size", "B", None, 1 / 1024, 4)
_size("d_bytes_fp16", "D fp16 size (KiB)", "discriminator fp16 size", "B", None, 1 / 1024, 4)

# speed, per device: eager PyTorch's row of latency.csv (bench/latency; bench/engine/records.py: headlines)
for _device, _name in [("cpu", "CPU"), ("cuda", "GPU")]:
    register_metric(
        Metric(f"latency_ms_{_device}", f"{_name} latency (ms)", f"{_name} latency", unit="ms", better=LOWER,
               extra_columns=tuple(f"latency_{stat}_{_device}" for stat in ("p90_ms", "p99_ms", "noise")),
               report_name=f"latency_{_name.lower()}_ms")
    )  # fmt: skip
    register_metric(
        Metric(f"throughput_ips_{_device}", f"{_name} throughput (img/s)", f"{_name} throughput", unit="img/s",
               better=HIGHER, report_name=f"throughput_{_name.lower()}_ips")
    )  # fmt: skip
    register_metric(
        Metric(f"speedup_latency_{_device}", f"{_name} speed-up (×)", f"{_name} speed-up", unit="x",
               better=HIGHER, ratio_of=f"latency_ms_{_device}")
    )  # fmt: skip

# quality (bench/metrics/quality.py), in the order the report shows them; ``bounds``: the values each can take
# (KID is an unbiased estimate: it may fall below zero)
NON_NEGATIVE, AT_LEAST_ONE, UNIT = (0.0, None), (1.0, None), (0.0, 1.0)


BACKBONE_NAMES: dict[str, str] = {}  # backbone -> its name in labels ("resnet" -> "ResNet")
PRIMARY_BACKBONE = "lenet"  # the one every evaluator scores: class consistency, density/coverage, per-class FID


def _fidelity_scores(
    backbone: str, name: str, tagged: bool, scores: tuple[str, ...] = ("fid", "is", "kid", "precision", "recall")
) -> None:
    """torch-fidelity's ``scores`` on a backbone: the same columns, labels and bounds on each of them.

    ``tagged``: whether the short names carry the backbone (the first one's are the plain "FID", "IS", ...).
    """
    BACKBONE_NAMES[backbone] = name
    tag = f" ({name})"
    short = tag if tagged else ""
    # score -> label, direction, bounds, whether a std over splits or subsets is written beside it
    kinds = {
        "fid": ("FID", LOWER, NON_NEGATIVE, False), "is": ("IS", HIGHER, AT_LEAST_ONE, True),
        "kid": ("KID", LOWER, (None, None), True), "precision": ("precision", HIGHER, UNIT, False),
        "recall": ("recall", HIGHER, UNIT, False),
    }  # fmt: skip
    for score in scores:
        label, better, bounds, with_std = kinds[score]
        column = f"{score}_{backbone}"
        _quality(column, f"{label}{tag}", f"{label}{short}", better, backbone, report_name=column, bounds=bounds,
                 extra_columns=(f"{column}_std",) if with_std else ())  # fmt: skip


_fidelity_scores("lenet", "LeNet", tagged=False)
# Naeem et al. 2020 (k = 5) on precision/recall's real subset; density may exceed 1, coverage is in [0, 1]
_quality(
    "density_lenet", "density (LeNet)", "density", HIGHER, "lenet", report_name="density_lenet", bounds=NON_NEGATIVE
)
_quality("coverage_lenet", "coverage (LeNet)", "coverage", HIGHER, "lenet", report_name="coverage_lenet", bounds=UNIT)
# the mean over classes of the FID of each class's samples to its real images: a wrong class costs here
_quality(
    "fid_class_lenet",
    "per-class FID (LeNet)",
    "per-class FID",
    LOWER,
    "lenet",
    report_name="fid_class_lenet",
    bounds=NON_NEGATIVE,
)
# the second domain backbone (bench/metrics/backbones.py), scored by default (--backbones)
_fidelity_scores("resnet", "ResNet", tagged=True)
# the share of samples the domain classifier assigns to the class they were asked for
_quality(
    "class_consistency",
    "class consistency",
    "class consistency",
    HIGHER,
    None,
    report_name="class_consistency",
    bounds=UNIT,
)
# mean |student - teacher| per pixel on the same (z, label): how close a student draws to its teacher
_quality("teacher_fidelity_l1", "teacher L1", "teacher L1", LOWER, None, report_name="teacher_l1", bounds=(0.0, 2.0))
# pretrained networks from weight files (bench/metrics/pretrained.py)
_fidelity_scores("inception", "Inception", tagged=True, scores=("fid", "is", "kid"))
_fidelity_scores("clip", "CLIP", tagged=True, scores=("fid", "kid", "precision", "recall"))
_fidelity_scores("dinov2", "DINOv2", tagged=True, scores=("fid", "kid", "precision", "recall"))
