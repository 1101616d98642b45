"""The metric registry is the one place a metric is declared: the evaluator, the records and the report agree."""

from dataclasses import fields

import pytest

from bench.base.metric_registry import (
    COST,
    HIGHER,
    LOWER,
    METRICS,
    QUALITY,
    all_metrics,
    quality_columns,
    ratio_columns,
)
from bench.metrics.measure import SizeMetrics
from reports import metrics as report_metrics


def test_every_size_column_is_registered_as_an_exact_cost():
    for column in (f.name for f in fields(SizeMetrics)):
        assert METRICS[column].kind == COST and METRICS[column].exact


@pytest.mark.parametrize("metric", all_metrics(), ids=lambda m: m.column)
def test_each_metric_is_complete(metric):
    assert metric.kind in (COST, QUALITY)
    assert metric.better in (LOWER, HIGHER, None)
    assert metric.label and metric.short
    assert metric.ratio_of is None or metric.ratio_of in METRICS
    if metric.quality:  # a quality score without a direction could not be ranked
        assert metric.better is not None


def test_ratios_point_from_a_measured_column_to_a_registered_one():
    ratios = ratio_columns()
    assert ratios["g_params"] == "ratio_params" and ratios["latency_ms_cpu"] == "speedup_latency_cpu"
    assert all(METRICS[ratio].ratio_of == measured for measured, ratio in ratios.items())


def test_evaluator_columns_follow_the_backbones():
    lenet = quality_columns({None, "lenet"})
    both = quality_columns({None, "lenet", "inception"})
    assert "fid_lenet" in lenet and "is_lenet_std" in lenet and "fid_inception" not in lenet
    assert set(both) - set(lenet) == {"fid_inception", "is_inception", "is_inception_std", "kid_inception",
                                      "kid_inception_std"}  # fmt: skip
    assert quality_columns({"inception"}) == tuple(c for c in both if c.endswith(("inception", "inception_std")))


def test_the_report_shows_the_registered_metrics():
    shown = [m.column for m in report_metrics.ALL]
    assert shown == [m.column for m in all_metrics() if m.report_name is not None]
    assert all(report_metrics.BY_COLUMN[c] is METRICS[c] for c in shown)
    assert {m.kind for m in report_metrics.QUALITY} == {QUALITY} and {m.kind for m in report_metrics.COST} == {COST}
