"""Tests of bench/metrics/measure.py: exact sizes and MACs of the DCGAN widths, and the devices speed is timed on."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.metrics import measure
from bench.metrics.measure import SizeMetrics, measure_devices, size_metrics
from gans import build
from tests.conftest import same_state, state_of

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
    assert [m.training for m in generator.modules()] == flags
    assert all(m.training for m in discriminator.modules())
    for before, module in ((g_state, generator), (d_state, discriminator)):
        assert same_state(before, state_of(module))  # batch-norm statistics included


def test_measure_devices_always_has_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert measure_devices(torch.device("cpu")) == [torch.device("cpu")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert measure_devices(torch.device("cpu")) == [torch.device("cpu"), torch.device("cuda")]
    assert measure_devices(torch.device("cuda", 1)) == [torch.device("cpu"), torch.device("cuda", 1)]
