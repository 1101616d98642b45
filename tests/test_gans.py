import io

import pytest
import torch

from bench.errors import UserError
from gans import build

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
    assert state_dict_bytes(generator) == pytest.approx(g_bytes, rel=0.05)
    assert state_dict_bytes(discriminator) == pytest.approx(d_bytes, rel=0.05)


@pytest.mark.parametrize("width", [16, 32, 64, 128, 256, 512])
def test_shapes_and_range(width):
    torch.manual_seed(0)
    generator, discriminator = build("dcgan", width)
    z, labels = torch.randn(3, 100), torch.tensor([0, 5, 9])
    images, features = generator.forward_features(z, labels)
    assert images.shape == (3, 1, 28, 28)
    assert images.abs().max() <= 1.0
    assert [f.shape[1] for f in features] == [width, width // 2, width // 4, width // 8]
    assert [f.shape[-1] for f in features] == [4, 8, 16, 32]
    assert discriminator(images, labels).shape == (3,)


def test_cifar_shape_has_no_crop():
    generator, discriminator = build("dcgan", 64, channels=3, image_size=32)
    images = generator(torch.randn(2, 100), torch.tensor([1, 2]))
    assert images.shape == (2, 3, 32, 32)
    assert discriminator(images, torch.tensor([1, 2])).shape == (2,)


def test_discriminator_width_is_independent():
    _, small = build("dcgan", 512, disc_width=64)
    _, same = build("dcgan", 64)
    assert n_params(small) == n_params(same)


def test_condition_changes_output():
    torch.manual_seed(0)
    generator, _ = build("dcgan", 32)
    generator.eval()
    z = torch.randn(1, 100)
    assert not torch.allclose(generator(z, torch.tensor([1])), generator(z, torch.tensor([7])))


@pytest.mark.parametrize("width", [8, 20, 1024, 0])
def test_bad_width_is_a_user_error(width):
    with pytest.raises(UserError, match="multiple of 8 in 16..512"):
        build("dcgan", width)


def test_unknown_family():
    with pytest.raises(UserError, match="unknown model family"):
        build("stylegan9", 64)
