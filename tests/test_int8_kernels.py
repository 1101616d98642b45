"""compress/int8_kernels.py: every int8 layer runs a kernel this CPU computes correctly, whatever engine is asked.

The CPU kind decides which of torch.ao's kernels are right (oneDNN's transposed convolution is wrong on AVX-512
VNNI CPUs, right nowhere it is used on AVX2 ones), so these tests assert what must hold on any CPU: the model
the suite makes is within its tolerance of the float model, or the engine is refused in one line; a wrong
kernel, injected through the probe, is never chosen.
"""

from __future__ import annotations

import copy

import pytest
import torch

from compress import int8_kernels
from compress.fidelity import check_against_source
from compress.int8_kernels import Int8KernelError, engines, kernel_for, pack, packed_layers, probe_error
from compress.quantize import TOLERANCES, load_quantized, quantize, record_columns, save_quantized
from tests.test_compress import lively, noise


@pytest.fixture(scope="module", params=["dcgan", "resnet"])
def lively_generator(request):
    return lively(request.param, 64)


@pytest.mark.parametrize("engine", engines())
def test_every_engine_gives_a_model_within_tolerance_or_is_refused_in_one_line(lively_generator, engine):
    try:
        quantized = quantize(lively_generator, "int8", engine=engine)
    except Int8KernelError as err:
        assert "\n" not in str(err) and engine in str(err)
        return
    check = check_against_source(quantized, lively_generator, TOLERANCES["int8"])
    assert check.ok, (engine, check.reason)
    assert any(layer.kernel for layer in quantized.record.layers)
    for name, kind, _ in packed_layers(quantized.model):  # every packed layer runs a kernel its probe passed
        chosen = next(layer.kernel for layer in quantized.record.layers if layer.name == name)
        assert probe_error(kind, chosen) <= int8_kernels.PROBE_TOLERANCE, (name, chosen)


def test_a_wrong_kernel_is_replaced_by_a_correct_one_and_recorded(monkeypatch):
    """x86's transposed convolution made wrong on every machine (as oneDNN's is on VNNI CPUs): fbgemm runs it."""
    real = probe_error.__wrapped__
    monkeypatch.setattr(
        int8_kernels,
        "probe_error",
        lambda kind, engine: 1.4 if (kind, engine) == ("ConvTranspose2d", "x86") else real(kind, engine),
    )
    if "fbgemm" not in engines():
        pytest.skip("fbgemm is not offered by this torch build")
    assert kernel_for("ConvTranspose2d", "x86") == "fbgemm"
    quantized = quantize(lively("dcgan", 32), "int8", engine="x86")
    transposed = [layer for layer in quantized.record.layers if layer.precision.startswith("int8 per-tensor")]
    assert transposed and {layer.kernel for layer in transposed} == {"fbgemm"}
    assert record_columns(quantized.record)["quant_kernels"].startswith("fbgemm:")


def test_a_layer_kind_no_engine_computes_correctly_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(int8_kernels, "probe_error", lambda kind, engine: 1.4)
    with pytest.raises(Int8KernelError) as err:
        quantize(lively("dcgan", 32), "int8")
    assert "\n" not in str(err.value) and "no int8 engine computes ConvTranspose2d correctly" in str(err.value)


def test_an_engine_this_torch_lacks_is_refused_in_one_line():
    with pytest.raises(Int8KernelError, match="int8 engine 'tpu' is not offered here"):
        quantize(lively("dcgan", 32), "int8", engine="tpu")


def test_copies_and_reloads_keep_correct_kernels_whatever_engine_is_in_force(tmp_path):
    """A copy or a load re-packs the weights under the engine in force: with oneDNN in force (wrong for
    transposed convolutions on VNNI CPUs) they must still compute what the quantized model computes."""
    generator = lively("dcgan", 64)
    quantized = quantize(generator, "int8")
    z, labels = noise(generator, 64)
    with torch.no_grad():
        expected = quantized(z, labels)
    save_quantized(quantized, tmp_path / "g.pt")
    forced = "onednn" if "onednn" in engines() else engines()[0]
    with int8_kernels.engine_in_force(forced):
        copied = copy.deepcopy(quantized)
        loaded = load_quantized(generator, tmp_path / "g.pt")
        with torch.no_grad():
            assert torch.equal(copied(z, labels), expected)
            assert torch.equal(loaded(z, labels), expected)
    assert loaded.engine == quantized.engine and loaded.record.layers == quantized.record.layers


def test_pack_returns_a_kernel_for_every_packed_layer():
    quantized = quantize(lively("resnet", 32), "int8")
    names = [name for name, _, _ in packed_layers(quantized.model)]
    assert names and set(pack(quantized.model, quantized.engine)) == set(names)
