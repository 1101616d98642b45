"""compress/: channel pruning to a parameter target, post-training quantization, and their weights-only files.

The generators are tiny (dcgan width 32 and 64, resnet width 16 and 32). For the quantization error bounds a
freshly initialised DCGAN is useless (its N(0, 0.02) image layer gives outputs of std 0.02, so any error looks
small): ``lively`` re-initialises it so that its images spread over [-1, 1] (std about 0.45, some pixels
saturated) and sets its batch-norm statistics from noise, as training would leave them.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gans
from bench.base.errors import CheckpointError, UserError
from bench.engine.models import count_params
from bench.metrics.measure import size_metrics
from compress.layers import conditional_batch_norms
from compress.openvino_int8 import IR_FILES
from compress.openvino_int8 import MODE as OPENVINO_INT8
from compress.prune import PruneTargetError, example_inputs, load_pruned, prune_to_params, save_pruned
from compress.quantize import MODES, TOLERANCES, QuantizeError, load_quantized, quantize, save_quantized
from tests.conftest import same_state, state_of

NZ, CLASSES = 100, 10


def dcgan_params(hidden: list[int], nz: int = NZ, classes: int = CLASSES, channels: int = 1) -> int:
    """Parameters of a DCGAN generator with hidden channels c1..c4, from its layer sizes: four 4x4 transposed
    convolutions (c_in * c_out * 16), a 1x1 image layer (c4 * channels) and two batch-norm vectors per block."""
    c = hidden
    convs = (nz + classes) * c[0] * 16 + c[0] * c[1] * 16 + c[1] * c[2] * 16 + c[2] * c[3] * 16
    return convs + c[3] * channels + 2 * sum(c)


def one_channel_per_layer(hidden: list[int]) -> int:
    """What one more channel in every hidden layer adds: the tolerance of a pruning target. If the pruner lands
    one channel per layer above the target or below it, the miss is at most the step from c to c + 1 (the
    count is convex in the channels, so the step down from c is no larger)."""
    return dcgan_params([c + 1 for c in hidden]) - dcgan_params(hidden)


def lively(family: str, width: int, seed: int = 0) -> gans.ConditionalGenerator:
    """A ``family`` generator whose images use the whole tanh range (see the module docstring), in eval mode."""
    torch.manual_seed(seed)
    generator = gans.build(family, width)[0]
    for m in generator.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            fan_in = m.weight.shape[0 if m.transposed else 1] * m.weight[0, 0].numel()
            nn.init.normal_(m.weight, 0.0, 1.2 / fan_in**0.5)
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # running statistics: the plain average of the batches below
            if m.affine:
                nn.init.normal_(m.weight, 1.0, 0.3)
                nn.init.normal_(m.bias, 0.0, 0.3)
    generator.train()
    with torch.no_grad():
        for _ in range(4):
            generator(torch.randn(64, generator.nz), torch.arange(64) % generator.num_classes)
    return generator.eval()


def noise(generator, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(1)
    return torch.randn(batch, generator.nz, generator=rng), torch.arange(batch) % generator.num_classes


# --- pruning -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher32():
    return lively("dcgan", 32)


@pytest.fixture(scope="module")
def pruned16(teacher32):
    """The width-32 teacher pruned to a width-16 generator's parameter count, by each importance."""
    target = count_params(gans.build("dcgan", 16)[0])
    before = state_of(teacher32)
    out = {imp: prune_to_params(teacher32, target, imp, example_inputs(teacher32)) for imp in ("bn", "l1")}
    assert same_state(before, state_of(teacher32)), "pruning changed the teacher"
    return target, out


def test_pruning_to_a_width_count_lands_on_it(pruned16):
    # one ratio for every layer: 32 -> 16 channels halves every layer, which is exactly the width-16 generator
    target, pruned = pruned16
    assert target == dcgan_params([16, 8, 4, 2]) == 30_910
    for imp, g in pruned.items():
        assert count_params(g) == target, imp
        assert g.width == 16 and g.hidden_channels() == [16, 8, 4, 2]
        assert (g.nz, g.num_classes) == (NZ, CLASSES)
        assert g.pruning["importance"] == imp and g.pruning["teacher_width"] == 32


def test_pruning_between_widths_is_within_one_channel_per_layer(teacher32):
    # a target no width gives: halfway between widths 16 and 24
    target = (dcgan_params([16, 8, 4, 2]) + dcgan_params([24, 12, 6, 3])) // 2
    g = prune_to_params(teacher32, target, "bn", example_inputs(teacher32))
    hidden = g.hidden_channels()
    achieved = count_params(g)
    assert achieved == dcgan_params(hidden)  # the pruned layers are what hidden_channels says
    tolerance = one_channel_per_layer(hidden)
    assert 0 < abs(achieved - target) <= tolerance, (achieved, target, tolerance)
    low, high = g.pruning["bracket"]  # the bisection's two candidates straddle the target
    assert low <= target < high and achieved in (low, high)


def test_pruned_generator_runs_and_reports_its_channels(pruned16):
    _, pruned = pruned16
    z, labels = noise(pruned["bn"], 8)
    for g in pruned.values():
        images, features = g.forward_features(z, labels)
        assert images.shape == (8, 1, 28, 28)
        assert [f.shape[1] for f in features] == g.hidden_channels() == [16, 8, 4, 2]
        assert [f.shape[2] for f in features] == [4, 8, 16, 32]
        assert images.abs().max() <= 1 and images.std() > 0.1


def test_importances_keep_different_channels(teacher32, pruned16):
    _, pruned = pruned16
    bn, l1 = state_of(pruned["bn"]), state_of(pruned["l1"])
    assert bn.keys() == l1.keys() and all(bn[k].shape == l1[k].shape for k in bn)
    assert not same_state(bn, l1)
    # "bn" keeps the channels of largest |gamma|, in their original order
    for block in range(4):
        gamma = teacher32.blocks[block][1].weight.detach()
        kept = pruned["bn"].blocks[block][1].weight.detach()
        top = torch.topk(gamma.abs(), len(kept)).indices.sort().values
        assert torch.equal(kept, gamma[top]), block
    # "l1" ranks a channel of the first group by the mean of its L1 norms in the three layers it touches: its
    # slice of the first convolution's weight (out channel), its |gamma|, the next convolution's (in channel)
    w0, w1 = teacher32.blocks[0][0].weight.detach(), teacher32.blocks[1][0].weight.detach()  # (in, out, 4, 4)
    gamma = teacher32.blocks[0][1].weight.detach()
    score = (w0.abs().sum(dim=(0, 2, 3)) + gamma.abs() + w1.abs().sum(dim=(1, 2, 3))) / 3
    top = torch.topk(score, 16).indices.sort().values
    assert torch.equal(pruned["l1"].blocks[0][1].weight.detach(), gamma[top])
    assert not torch.equal(top, torch.topk(gamma.abs(), 16).indices.sort().values)  # the two rankings differ here


def test_unreachable_targets_are_refused(teacher32):
    inputs = example_inputs(teacher32)
    with pytest.raises(PruneTargetError, match="not below"):
        prune_to_params(teacher32, count_params(teacher32), "bn", inputs)
    with pytest.raises(PruneTargetError, match="below the smallest"):
        prune_to_params(teacher32, 1000, "bn", inputs)
    with pytest.raises(UserError, match="unknown pruning importance"):
        prune_to_params(teacher32, 30_000, "taylor", inputs)


def test_pruned_generator_round_trips_through_a_weights_only_file(tmp_path, pruned16):
    g = pruned16[1]["l1"].eval()
    path = tmp_path / "pruned.pt"
    save_pruned(g, path)
    raw = torch.load(path, weights_only=True)  # plain data: no module is pickled
    assert raw["channels"] == {"blocks.0.1": 16, "blocks.1.1": 8, "blocks.2.1": 4, "blocks.3.1": 2}
    loaded = load_pruned("dcgan", 32, path).eval()
    assert loaded.hidden_channels() == g.hidden_channels() and loaded.width == 16
    assert same_state(state_of(loaded), state_of(g))
    z, labels = noise(g, 16)
    with torch.no_grad():
        assert torch.equal(loaded(z, labels), g(z, labels))
    with pytest.raises(CheckpointError, match="pruned from width 32"):
        load_pruned("dcgan", 64, path)


def test_resnet_prunes_its_class_conditional_batch_norms_with_their_channels(tmp_path):
    teacher = lively("resnet", 32)
    target = count_params(gans.build("resnet", 16)[0])
    g = prune_to_params(teacher, target, "bn", example_inputs(teacher)).eval()
    assert count_params(g) == target and g.width == 16
    z, labels = noise(g, 8)
    images, features = g.forward_features(z, labels)
    assert images.shape == (8, 1, 28, 28)
    assert [f.shape[1] for f in features] == g.hidden_channels() == [16, 8, 4, 2]
    norms = conditional_batch_norms(g)
    assert len(norms) == 6
    for name, norm in norms:  # each per-class gain and bias has exactly its batch norm's channels
        assert norm.gain.weight.shape == norm.bias.weight.shape == (CLASSES, norm.bn.num_features), name
    # "bn" ranks the first group (the linear layer's 32 channels) by the mean |gain| over classes of block 0's
    # first conditional norm, the only scale in that group
    gain = teacher.blocks[0].bn1.gain.weight.detach()
    top = torch.topk(gain.abs().mean(dim=0), 16).indices.sort().values
    assert torch.equal(g.blocks[0].bn1.gain.weight.detach(), gain[:, top])
    path = tmp_path / "resnet.pt"
    save_pruned(g, path)
    loaded = load_pruned("resnet", 32, path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(z, labels), g(z, labels))


# --- quantization --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def float64():
    g = lively("dcgan", 64)
    z, labels = noise(g)
    with torch.no_grad():
        images = g(z, labels)
    # the bounds below mean something only if the images use the tanh range
    assert images.std() > 0.3 and (images.abs() > 0.9).float().mean() > 0.01
    return g, (z, labels), images


@pytest.fixture(scope="module")
def quantized64(float64):
    g = float64[0]
    return {mode: quantize(g, mode) for mode in MODES}


def test_stored_bytes_halve_for_fp16_and_quarter_for_int8(float64, quantized64):
    # within 15 % of 1/2 and 1/4 of the fp32 file: the zip container's per-tensor records, the per-layer scales
    # and zero points, and the int8 batch norms' float32 scale/shift add a few per cent at this size (measured:
    # fp16 0.506, int8 0.273)
    fp32 = size_metrics(float64[0]).g_bytes_fp32  # the float generator's state_dict as torch.save writes it
    assert fp32 > 4 * count_params(float64[0])
    ratios = {mode: q.record.stored_bytes / fp32 for mode, q in quantized64.items()}
    assert abs(ratios["fp16"] - 0.5) <= 0.15 * 0.5, ratios
    assert abs(ratios["bf16"] - 0.5) <= 0.15 * 0.5, ratios
    assert abs(ratios["int8"] - 0.25) <= 0.15 * 0.25, ratios
    # OpenVINO's IR: int8 weights plus its graph's XML, a larger share at this small size (0.304 measured)
    assert 0.25 <= ratios["openvino-int8"] <= 0.35, ratios
    assert all(q.record.params == count_params(float64[0]) for q in quantized64.values())


def test_quantized_outputs_stay_within_the_suites_tolerance_of_the_float_model(float64, quantized64):
    # measured on this model (256 images): fp16 mean 5e-4 / max 7e-3, bf16 mean 4e-3 / max 6e-2 (8-bit mantissa),
    # int8 mean 0.029 / max 0.30 (per-tensor weights, 7-bit activations), on AVX2 and AVX-512 VNNI EPYCs alike
    # (the latter only since each int8 layer runs a kernel that is correct there); openvino-int8 0.005 / 0.05
    g, (z, labels), images = float64
    for mode, tolerance in TOLERANCES.items():
        with torch.no_grad():
            out = quantized64[mode](z, labels)
        assert out.dtype == torch.float32 and out.shape == images.shape
        diff = (out - images).abs()
        assert 0 < diff.mean() < tolerance.mean_abs, (mode, float(diff.mean()))
        assert diff.max() < tolerance.max_abs, (mode, float(diff.max()))


def test_quantized_generators_round_trip_through_weights_only_files(tmp_path, float64, quantized64):
    g, (z, labels), _ = float64
    for mode, q in quantized64.items():
        if mode == OPENVINO_INT8:
            continue  # saved as IR: the next test
        path = tmp_path / f"{mode}.pt"
        assert save_quantized(q, path) == q.record.stored_bytes == path.stat().st_size
        assert torch.load(path, weights_only=True)["mode"] == mode
        loaded = load_quantized(gans.build("dcgan", 64)[0], path)  # any weights: the file's replace them
        with torch.no_grad():
            assert torch.equal(loaded(z, labels), q(z, labels)), mode
        assert loaded.record.layers == q.record.layers


def test_an_openvino_int8_generator_reloads_from_its_ir_files_with_the_same_output(tmp_path, float64, quantized64):
    g, (z, labels), _ = float64
    q = quantized64[OPENVINO_INT8]
    assert save_quantized(q, tmp_path / "generator.pt") == q.record.stored_bytes
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(IR_FILES)
    assert sum((tmp_path / name).stat().st_size for name in IR_FILES) == q.record.stored_bytes
    loaded = load_quantized(gans.build("dcgan", 64)[0], tmp_path / IR_FILES[0])
    with torch.no_grad():
        assert torch.equal(loaded(z, labels), q(z, labels))
    # every transposed convolution ran in int8 in OpenVINO's runtime graph
    assert [layer.precision for layer in q.record.layers] == ["int8"] * 5
    assert {layer.kernel for layer in q.record.layers} == {"openvino"} and q.devices == ("cpu",)


def test_int8_records_each_layer_and_the_ones_left_in_float(float64, quantized64):
    layers = {layer.name: layer for layer in quantized64["int8"].record.layers}
    # every transposed convolution is int8 with per-tensor weights (torch.ao refuses per-channel ones)
    for name in ("blocks.0.0", "blocks.1.0", "blocks.2.0", "blocks.3.0", "to_image"):
        assert layers[name].precision == "int8 per-tensor" and "per-channel" in layers[name].reason
    assert quantized64["int8"].record.float_layers == []
    assert all(layer.precision == "fp16" for layer in quantized64["fp16"].record.layers)

    kept = quantize(float64[0], "int8", keep_float=["to_image"])
    assert kept.record.float_layers == [("to_image", "kept float on request (keep_float)")]
    assert type(kept.model.to_image) is nn.ConvTranspose2d  # the float module itself, not a quantized one
    assert isinstance(dict(kept.model.named_modules())["blocks.0.0"], torch.ao.nn.quantized.ConvTranspose2d)


def test_int8_resnet_keeps_its_class_conditional_norms_in_float():
    g = lively("resnet", 16)
    q = quantize(g, "int8")
    floats = dict(q.record.float_layers)
    expected = {f"blocks.{b}.{n}.{part}" for b in range(3) for n in ("bn1", "bn2") for part in ("gain", "bias")}
    expected |= {f"blocks.{b}.bn1.bn" for b in range(3)}  # bn2.bn folds into the convolution before it
    assert set(floats) == expected
    assert all("class-conditional" in why for why in floats.values())
    modules = dict(q.model.named_modules())
    assert all(type(modules[name]).__module__.startswith("torch.nn.modules") for name in expected)
    assert dict((layer.name, layer.precision) for layer in q.record.layers)["blocks.0.conv1"] == "int8 per-channel"
    z, labels = noise(g, 64)
    with torch.no_grad():
        assert (q(z, labels) - g(z, labels)).abs().mean() < 0.1  # measured 0.036


def test_a_pruned_generator_quantizes_and_reloads(tmp_path, pruned16):
    pruned = pruned16[1]["bn"].eval()
    save_pruned(pruned, tmp_path / "pruned.pt")
    q = quantize(pruned, "int8")
    save_quantized(q, tmp_path / "int8.pt")
    loaded = load_quantized(load_pruned("dcgan", 32, tmp_path / "pruned.pt"), tmp_path / "int8.pt")
    z, labels = noise(pruned, 16)
    with torch.no_grad():
        assert torch.equal(loaded(z, labels), q(z, labels))
        assert (q(z, labels) - pruned(z, labels)).abs().mean() < 0.1


def test_bad_modes_are_refused(float64):
    with pytest.raises(QuantizeError, match="unknown quantization mode"):
        quantize(float64[0], "int4")
    with pytest.raises(QuantizeError, match="int8 only"):
        quantize(float64[0], "fp16", keep_float=["to_image"])
    with pytest.raises(QuantizeError, match="no layer"):
        quantize(float64[0], "int8", keep_float=["nope"])


# --- every family ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", gans.families())
def test_every_family_prunes_to_a_narrower_count_and_quantizes_within_tolerance(family, tmp_path):
    """What the grid asks of a family for the prune and quantize methods: a cut that lands between the counts a
    channel apart and reloads from its file, and int8 and fp16 models within the suite's tolerance of it."""
    teacher = lively(family, 32)
    target = count_params(gans.build(family, 16)[0])
    pruned = prune_to_params(teacher, target, "bn", example_inputs(teacher))  # l1: the family tests above
    below, above = pruned.pruning["bracket"]
    assert below <= target <= above and pruned.pruning["params"] in (below, above)
    save_pruned(pruned, tmp_path / "pruned.pt")
    loaded = load_pruned(family, 32, tmp_path / "pruned.pt").eval()
    z, labels = noise(pruned.eval(), batch=32)
    with torch.no_grad():
        reference = pruned(z, labels)
        assert torch.equal(loaded(z, labels), reference)
        for mode in ("fp16", "int8"):
            images = quantize(pruned, mode)(z, labels).float()
            assert (images - reference).abs().mean() <= TOLERANCES[mode].mean_abs, (family, mode)
