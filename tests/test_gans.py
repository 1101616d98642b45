import io

import pytest
import torch
from torch.nn.utils import parametrize

import gans
from bench.base.errors import CheckpointError, UserError
from bench.base.registry import DuplicateNameError
from bench.engine.cuda_graphs import StateSnapshot
from gans import FAMILIES, build, families, register_family
from tests.conftest import same_state, state_of

KIB = 1024


def state_dict_bytes(module: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return len(buffer.getvalue())


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# The original's parameter counts (its generator's integer condition over 10 channels has the same shape as
# our one-hot) and its reported sizes, where "KB" is KiB and "MB" is 1000 KiB (14.3 MB = the 14,295 KiB file).
ORIGINAL = {
    512: (3_655_616, 14_300 * KIB, 662_272, 2_600 * KIB),
    64: (155_896, 618 * KIB, 11_104, 49 * KIB),
    32: (67_196, 271 * KIB, 2_992, 17 * KIB),
}


@pytest.mark.parametrize("width", sorted(ORIGINAL))
def test_sizes_match_the_original(width):
    g_params, g_bytes, d_params, d_bytes = ORIGINAL[width]
    generator, discriminator = build("dcgan", width)
    assert n_params(generator) == g_params
    assert n_params(discriminator) == d_params
    assert generator.hidden_channels() == [width, width // 2, width // 4, width // 8]  # the original's ngf halving
    assert state_dict_bytes(generator) == pytest.approx(g_bytes, rel=0.05)
    assert state_dict_bytes(discriminator) == pytest.approx(d_bytes, rel=0.05)


# --- The contract every registered family keeps: a family is covered the moment it registers. ---

FAMILY_NAMES = families()
SHAPES = [(1, 28), (3, 32), (3, 64)]  # (channels, image size); the wider widths at the first only, to stay fast


def tiny_batch(n: int = 4, nz: int = 100, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    return torch.randn(n, nz, generator=rng), torch.arange(n) % 10


def test_both_families_are_registered():
    assert {"dcgan", "resnet"} <= set(FAMILY_NAMES)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize(
    "width,channels,size", [(w, c, s) for w in (16, 64) for c, s in SHAPES] + [(w, 1, 28) for w in (32, 128, 256, 512)]
)
def test_contract_shapes_and_range(family, width, channels, size):
    """Every width of the paper preset at 28x28, the smaller ones at 32x32 and 64x64 colour too (no crop there; the
    hidden activations stay at 4 to 32 px at 64x64)."""
    torch.manual_seed(0)
    generator, discriminator = build(family, width, channels=channels, image_size=size)
    assert (generator.width, generator.nz, generator.num_classes) == (width, 100, 10)
    z, labels = tiny_batch()
    images, features = generator.forward_features(z, labels)
    assert images.shape == (4, channels, size, size)
    assert images.abs().max() <= 1.0 and images.std() > 0
    hidden = generator.hidden_channels()
    assert hidden == FAMILIES[family].hidden_channels(width) == [f.shape[1] for f in features]
    assert hidden[0] == width
    assert [tuple(f.shape[2:]) for f in features] == [(4, 4), (8, 8), (16, 16), (32, 32)]
    assert all(f.shape[0] == 4 and torch.isfinite(f).all() for f in features)
    logits = discriminator(images, labels)
    assert logits.shape == (4,) and torch.isfinite(logits).all()


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_64x64_adds_one_block_to_the_generator_and_one_to_the_discriminator(family):
    """The width keeps its meaning: the 64x64 generator is the 32x32 one plus one up-sampling block after its last
    hidden activation (the same weights' shapes otherwise); its discriminator down-samples once more to the same
    logit per image."""
    g32, d32 = build(family, 32, channels=3, image_size=32)
    g64, d64 = build(family, 32, channels=3, image_size=64)
    small, large = g32.state_dict(), g64.state_dict()
    assert all(large[key].shape == value.shape for key, value in small.items())
    assert sorted({key.split(".")[0] for key in set(large) - set(small)}) == ["up64"]
    assert n_params(d64) > n_params(d32)
    z, labels = tiny_batch()
    images = g64(z, labels)
    assert images.shape == (4, 3, 64, 64) and d64(images, labels).shape == (4,)
    assert build(family, 32, channels=1, image_size=64)[0](z, labels).shape == (4, 1, 64, 64)
    with pytest.raises(UserError, match="image size 48 is not supported: use 28, 32, 64"):
        build(family, 32, image_size=48)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("width", [8, 20, 1024, 0])
def test_bad_width_is_a_user_error(family, width):
    with pytest.raises(UserError, match="multiple of 8 in 16..512"):
        build(family, width)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("width", [16, 64, 512])
def test_width_is_read_back_from_a_state_dict(family, width):
    generator, _ = build(family, width)
    assert gans.width_of(family, generator.state_dict()) == width


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_foreign_state_dict_is_refused(family):
    with pytest.raises(CheckpointError):
        gans.width_of(family, {"weight": torch.zeros(3, 3)})
    with pytest.raises(CheckpointError):
        gans.width_of(family, [1, 2, 3])


def test_one_familys_generator_is_not_read_as_another():
    with pytest.raises(CheckpointError, match="resnet"):
        gans.width_of("resnet", build("dcgan", 64)[0].state_dict())
    with pytest.raises(CheckpointError, match="dcgan"):
        gans.width_of("dcgan", build("resnet", 64)[0].state_dict())


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_condition_reaches_both_outputs(family):
    """The discriminator reads the label at once; the generator does after one update at the latest (a
    conditional batch norm starts as the identity for every class)."""
    torch.manual_seed(0)
    generator, discriminator = build(family, 32)
    z, labels = tiny_batch(10)
    images = generator(z, labels).detach()
    assert not torch.allclose(discriminator(images, labels), discriminator(images, (labels + 3) % 10))

    optimizer = torch.optim.Adam(generator.parameters(), lr=0.01)
    discriminator(generator(z, labels), labels).mean().backward()
    optimizer.step()
    generator.eval()
    one = generator(z[:1], torch.tensor([1]))
    seven = generator(z[:1], torch.tensor([7]))
    assert (one - seven).abs().max() > 1e-3 * one.abs().max()  # relative: a fresh DCGAN's images are near 0


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_seed_fixes_the_initialisation(family):
    pairs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        pairs.append([state_of(module) for module in build(family, 32)])
    (g0, d0), (g0_again, d0_again), (g1, d1) = pairs
    assert same_state(g0, g0_again) and same_state(d0, d0_again)
    assert not same_state(g0, g1) and not same_state(d0, d1)


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_disc_width_changes_only_the_discriminator(family):
    generator, discriminator = build(family, 64)
    generator_narrow_d, narrow = build(family, 64, disc_width=16)
    _, reference = build(family, 16)
    assert shapes(generator_narrow_d) == shapes(generator)
    assert shapes(narrow) == shapes(reference) != shapes(discriminator)
    assert n_params(narrow) < n_params(discriminator)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_generator_parameter_gets_a_gradient_through_the_discriminator(family):
    torch.manual_seed(0)
    generator, discriminator = build(family, 16)
    z, labels = tiny_batch(8)
    discriminator(generator(z, labels), labels).mean().backward()
    for name, parameter in generator.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().max() > 0, f"{name} gets no gradient from the discriminator"


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_state_dict_round_trip_reproduces_both_models(family):
    torch.manual_seed(0)
    trained = build(family, 16)
    z, labels = tiny_batch(8)
    trained[1](trained[0](z, labels), labels)  # train-mode forwards move running statistics (and power iterations)
    torch.manual_seed(1)
    fresh = build(family, 16)
    for source, target in zip(trained, fresh):
        target.load_state_dict(source.state_dict())
        source.eval(), target.eval()
    images = trained[0](z, labels)
    assert torch.equal(fresh[0](z, labels), images)
    assert torch.equal(fresh[1](images, labels), trained[1](images, labels))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_bf16_autocast_step_runs_on_cpu(family):
    torch.manual_seed(0)
    generator, discriminator = build(family, 16)
    z, labels = tiny_batch(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        images, features = generator.forward_features(z, labels)
        logits = discriminator(images, labels)
    assert images.dtype == torch.bfloat16 and logits.shape == (8,)
    assert torch.isfinite(logits.float()).all()
    logits.float().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in generator.parameters())


def test_registering_a_family_again_leaves_the_registry_as_it_was():
    """(A duplicate name refused, an unknown one named with the choices: test_registry.py, for every registry.)"""
    before = {name: FAMILIES[name] for name in FAMILY_NAMES}
    with pytest.raises(DuplicateNameError, match="model family 'dcgan' is registered twice"):
        register_family(FAMILIES["dcgan"])
    assert {name: FAMILIES[name] for name in families()} == before


# --- ResNet specifics ---


def spectrally_normed(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {name: m for name, m in module.named_modules() if parametrize.is_parametrized(m, "weight")}


def test_every_resnet_discriminator_layer_has_spectral_norm_one():
    torch.manual_seed(0)
    _, discriminator = build("resnet", 64)
    layers = [
        m for m in discriminator.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))
    ]
    assert len(layers) == 14  # 4 blocks of 2 convs and a shortcut, the head and the class embedding
    assert set(spectrally_normed(discriminator).values()) == set(layers)
    images, labels = torch.randn(8, 1, 28, 28), torch.arange(8)
    for _ in range(3):  # each train-mode forward runs one power iteration
        discriminator(images, labels)
    discriminator.eval()
    raw = []
    for name, layer in spectrally_normed(discriminator).items():
        raw.append(torch.linalg.matrix_norm(layer.parametrizations.weight.original.detach().flatten(1), ord=2))
        normed = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert normed == pytest.approx(1.0, abs=0.05), name
    assert max(abs(s - 1) for s in raw) > 0.3  # the raw weights are not normalised already


def test_a_state_snapshot_restores_the_power_iteration_vectors():
    """CUDA-graph warm-up runs train steps and then puts every tensor back; spectral norm's u and v are some."""
    torch.manual_seed(0)
    _, discriminator = build("resnet", 16)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=0.01)
    images, labels = torch.randn(8, 1, 28, 28), torch.arange(8)
    before = state_of(discriminator)
    snapshot = StateSnapshot.take([discriminator], [optimizer])
    for _ in range(3):
        optimizer.zero_grad()
        discriminator(images, labels).mean().backward()
        optimizer.step()
    vectors = [key for key in before if key.endswith(("._u", "._v"))]
    assert len(vectors) == 28
    assert any(not torch.equal(discriminator.state_dict()[key], before[key]) for key in vectors)
    snapshot.restore()
    assert same_state(state_of(discriminator), before)


def test_resnet_generator_ignores_the_discriminator_width():
    torch.manual_seed(0)
    generator, _ = build("resnet", 64)
    torch.manual_seed(0)
    generator_narrow_d, _ = build("resnet", 64, disc_width=16)
    assert same_state(state_of(generator), state_of(generator_narrow_d))


@pytest.mark.parametrize("family", gans.families())
@pytest.mark.parametrize("image_size", [28, 32, 64])
def test_every_layer_a_family_initialises_is_in_the_pair_it_returns(family, image_size, monkeypatch):
    """A layer made and dropped still draws from the seed's generator and moves every weight after it: a family
    builds only what its pair holds, at every image size."""
    kinds = (torch.nn.modules.conv._ConvNd, torch.nn.Linear, torch.nn.Embedding)
    made = []
    for kind in kinds:
        real = kind.reset_parameters
        monkeypatch.setattr(kind, "reset_parameters", lambda self, real=real: (made.append(self), real(self))[1])
    pair = gans.build(family, 16, image_size=image_size, channels=3 if image_size != 28 else 1)
    held = {id(m) for net in pair for m in net.modules() if isinstance(m, kinds)}
    assert {id(m) for m in made} == held
