"""Tests of bench/metrics/measure.py: exact sizes and MACs of the DCGAN widths, and speed on tiny budgets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.benchmark.utils.common import Measurement, TaskSpec
from torch.utils.flop_counter import FlopCounterMode

from bench.engine.device import device_name
from bench.engine.spec import SpeedSpec
from bench.metrics import measure
from bench.metrics.measure import SizeMetrics, measure_devices, size_metrics, speed_metrics
from gans import build
from tests.conftest import same_state, state_of

FAST = SpeedSpec(min_run_time=0.01, throughput_batch=8)
SPEED_KEYS = ("latency_ms", "latency_iqr_ms", "throughput_ips", "throughput_iqr_ips")

# width: (generator params, discriminator params), MNIST-like 28x28, nz=100, 10 classes
PARAMS = {32: (67_196, 2_992), 64: (155_896, 11_104), 512: (3_655_616, 662_272)}


@pytest.fixture(scope="module")
def sizes() -> dict[int, SizeMetrics]:
    torch.manual_seed(0)
    return {width: size_metrics(*build("dcgan", width)) for width in (16, 32, 64, 128, 256, 512)}


def dense_transposed_macs(ngf: int, nz: int = 100, classes: int = 10, channels: int = 1) -> int:
    """MACs of the generator by hand: C_in * C_out * k * k * H_in * W_in for each transposed convolution."""
    layers = [  # (C_in, C_out, k, H_in), square inputs
        (nz + classes, 8 * ngf, 4, 1),
        (8 * ngf, 4 * ngf, 4, 4),
        (4 * ngf, 2 * ngf, 4, 8),
        (2 * ngf, ngf, 4, 16),
        (ngf, channels, 1, 32),  # the 1x1 crop layer: 32x32 -> 28x28
    ]
    return sum(c_in * c_out * k * k * h * h for c_in, c_out, k, h in layers)


@pytest.mark.parametrize("width", sorted(PARAMS))
def test_parameter_counts_are_exact(sizes, width):
    g_params, d_params = PARAMS[width]
    assert (sizes[width].g_params, sizes[width].d_params) == (g_params, d_params)


@pytest.mark.parametrize("width", sorted(PARAMS))
def test_generator_bytes_are_four_per_parameter_and_half_in_fp16(sizes, width):
    s = sizes[width]
    assert 4 * s.g_params < s.g_bytes_fp32 < 1.05 * 4 * s.g_params  # + batch-norm buffers and zip records
    assert s.g_bytes_fp16 == pytest.approx(s.g_bytes_fp32 / 2, rel=0.03)
    assert s.d_bytes_fp16 < s.d_bytes_fp32


def test_bytes_follow_the_state_dict_element_for_element():
    generator, discriminator = build("dcgan", 64)
    for module in (generator, discriminator):
        state = module.state_dict()
        floats = sum(v.numel() for v in state.values() if v.is_floating_point())
        fp32, fp16 = measure.state_dict_bytes(module), measure.state_dict_bytes(module, torch.float16)
        # each tensor's record is 64-byte aligned in the zip, so only that padding may differ
        assert abs((fp32 - fp16) - 2 * floats) <= 64 * len(state)
        assert fp32 > 4 * floats + 8 * sum(v.numel() for v in state.values() if not v.is_floating_point())


def test_large_discriminator_bytes_are_four_per_parameter(sizes):
    s = sizes[512]
    assert 4 * s.d_params < s.d_bytes_fp32 < 1.01 * 4 * s.d_params
    assert s.d_bytes_fp16 == pytest.approx(s.d_bytes_fp32 / 2, rel=0.01)


def test_flop_counter_counts_transposed_convs_by_input_pixels():
    # the dense work of a transposed conv: every input pixel times the whole kernel (not output pixels,
    # which would count stride**2 = 4 times too much here, as thop does)
    layer = nn.ConvTranspose2d(3, 5, 4, 2, 1, bias=False)
    x = torch.randn(1, 3, 6, 6)
    counter = FlopCounterMode(display=False)
    with counter:
        assert layer(x).shape == (1, 5, 12, 12)
    assert counter.get_total_flops() == 2 * (3 * 5 * 4 * 4 * 6 * 6)


def test_generator_macs_match_the_layer_shapes_by_hand(sizes):
    # width 64: ngf = 8; 112,640 + 3 * 524,288 + 8,192
    assert dense_transposed_macs(8) == 1_693_696
    assert sizes[64].g_macs == dense_transposed_macs(8)
    assert sizes[64].g_flops == 2 * sizes[64].g_macs
    for width, s in sizes.items():
        assert s.g_macs == dense_transposed_macs(width // 8)


def test_macs_grow_with_width(sizes):
    macs = [sizes[width].g_macs for width in sorted(sizes)]
    assert macs == sorted(macs) and len(set(macs)) == len(macs)


def test_macs_are_per_image_whatever_the_batch_norm_mode():
    generator, _ = build("dcgan", 32)
    generator.train()
    assert size_metrics(generator, nn.Linear(1, 1)).g_macs == dense_transposed_macs(4)


def test_measurement_leaves_modes_and_parameters_unchanged():
    generator, discriminator = build("dcgan", 32)
    generator.train()
    generator.blocks[1].eval()  # a mixed state must come back as it was, not as all-train
    discriminator.train()
    flags = [m.training for m in generator.modules()]
    g_state, d_state = state_of(generator), state_of(discriminator)
    size_metrics(generator, discriminator)
    speed_metrics(generator, torch.device("cpu"), FAST)
    assert [m.training for m in generator.modules()] == flags
    assert all(m.training for m in discriminator.modules())
    for before, module in ((g_state, generator), (d_state, discriminator)):
        assert same_state(before, state_of(module))  # batch-norm statistics included


def test_speed_metrics_keys_and_values():
    generator, _ = build("dcgan", 16)
    threads = torch.get_num_threads()
    metrics = speed_metrics(generator, torch.device("cpu"), FAST)
    expected = {f"{key}_cpu" for key in SPEED_KEYS} | {"device_name_cpu", "threads_cpu"}
    assert set(metrics) == expected
    for key in SPEED_KEYS:
        value = metrics[f"{key}_cpu"]
        assert isinstance(value, float) and math.isfinite(value)
        assert value > 0 if "iqr" not in key else value >= 0
    # a batch of 8 costs a width-16 generator far less than 8 single calls: throughput beats 1 / latency
    assert metrics["throughput_ips_cpu"] > 1000 / metrics["latency_ms_cpu"]
    assert metrics["device_name_cpu"] == device_name(torch.device("cpu"))
    assert metrics["threads_cpu"] == threads
    assert torch.get_num_threads() == threads


def test_timer_runs_with_the_current_thread_count(monkeypatch):
    seen = []
    timer = measure.benchmark.Timer

    def spy(*args, **kwargs):
        seen.append(kwargs["num_threads"])
        return timer(*args, **kwargs)

    monkeypatch.setattr(measure.benchmark, "Timer", spy)
    speed_metrics(build("dcgan", 16)[0], torch.device("cpu"), FAST)
    assert seen == [torch.get_num_threads()] * 2


def test_throughput_is_the_batch_over_the_median_time(monkeypatch):
    # fake per-call times: batch 1 -> 1, 2, 3, 4, 5 ms; batch 8 -> 10, 20, 40, 80, 160 ms
    fake = {1: [1e-3, 2e-3, 3e-3, 4e-3, 5e-3], 8: [10e-3, 20e-3, 40e-3, 80e-3, 160e-3]}
    monkeypatch.setattr(measure, "_time", lambda model, z, labels, min_run_time: fake[len(z)])
    metrics = speed_metrics(build("dcgan", 16)[0], torch.device("cpu"), FAST)
    assert metrics["latency_ms_cpu"] == pytest.approx(3.0)
    assert metrics["latency_iqr_ms_cpu"] == pytest.approx(4.0 - 2.0)
    assert metrics["throughput_ips_cpu"] == pytest.approx(8 / 40e-3)
    assert metrics["throughput_iqr_ips_cpu"] == pytest.approx(8 / 20e-3 - 8 / 80e-3)


def test_quartiles_agree_with_torch_benchmark_measurement():
    times = [0.3, 0.1, 0.7, 0.2, 0.5, 0.4]
    measurement = Measurement(1, times, TaskSpec("pass", "pass"))
    p25, p50, p75 = measure._quartiles(times)
    assert p50 == pytest.approx(measurement.median)
    assert p75 - p25 == pytest.approx(measurement.iqr)


@pytest.mark.parametrize("failure", ["at compile", "at first call"])
def test_compile_failure_gives_nan_not_a_crash(monkeypatch, failure):
    def broken_compile(model, **kwargs):
        if failure == "at compile":
            raise RuntimeError("no C++ compiler\nsecond line")

        def call(*args):
            raise RuntimeError("inductor failed")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        metrics = speed_metrics(build("dcgan", 16)[0], torch.device("cpu"), SpeedSpec(0.01, 8, compile=True))
    for key in SPEED_KEYS:
        assert math.isnan(metrics[f"{key}_cpu_compiled"])
        assert math.isfinite(metrics[f"{key}_cpu"])


def test_compiled_keys_are_measured_when_compile_works(monkeypatch):
    # an identity "compiler" exercises the compiled path without paying for inductor in a unit test
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)
    metrics = speed_metrics(build("dcgan", 16)[0], torch.device("cpu"), SpeedSpec(0.01, 8, compile=True))
    for key in SPEED_KEYS:
        assert math.isfinite(metrics[f"{key}_cpu_compiled"])  # NaN where compiling failed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_speed_metrics_on_cuda():
    generator, _ = build("dcgan", 16)
    metrics = speed_metrics(generator, torch.device("cuda"), FAST)
    assert set(metrics) == {f"{key}_cuda" for key in SPEED_KEYS} | {"device_name_cuda"}
    assert metrics["latency_ms_cuda"] > 0
    assert metrics["device_name_cuda"] == torch.cuda.get_device_name()
    assert next(generator.parameters()).device.type == "cpu"


def test_measure_devices_always_has_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert measure_devices(torch.device("cpu")) == [torch.device("cpu")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert measure_devices(torch.device("cpu")) == [torch.device("cpu"), torch.device("cuda")]
    assert measure_devices(torch.device("cuda", 1)) == [torch.device("cpu"), torch.device("cuda", 1)]
