import pytest
import torch

from bench.base.errors import DataUnavailableError, UserError
from data import datasets, from_uint8, get_dataset, to_uint8


def test_digits_shapes_ranges_and_split():
    ds = get_dataset("digits")
    assert ds.train_images.shape == (1437, 1, 28, 28)
    assert ds.test_images.shape == (360, 1, 28, 28)
    assert ds.image_shape == (1, 28, 28)
    assert ds.num_classes == 10
    for images in (ds.train_images, ds.test_images):
        assert images.dtype == torch.float32
        assert images.min() == -1.0 and images.max() == 1.0
    # stratified: every class in both splits, in near-equal numbers
    assert ds.train_labels.bincount().min() >= 139
    assert ds.test_labels.bincount().min() >= 34


def test_digits_split_is_deterministic():
    a, b = get_dataset("digits"), get_dataset("digits")
    assert torch.equal(a.train_images, b.train_images)
    assert torch.equal(a.test_labels, b.test_labels)


def test_digits_pixels_are_exact_uint8_levels():
    ds = get_dataset("digits")
    assert torch.equal(from_uint8(to_uint8(ds.train_images)), ds.train_images)


def test_mnist_from_shared_data(mnist_root):
    ds = get_dataset("mnist", mnist_root)
    assert ds.train_images.shape == (60_000, 1, 28, 28)
    assert ds.test_images.shape == (10_000, 1, 28, 28)
    official_train = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    official_test = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds.train_labels.bincount().tolist() == official_train
    assert ds.test_labels.bincount().tolist() == official_test
    assert ds.train_images.min() == -1.0 and ds.train_images.max() == 1.0


def test_missing_dataset_offline_names_the_flags(tmp_path):
    with pytest.raises(DataUnavailableError, match="--data-root .*--download"):
        get_dataset("fashion-mnist", tmp_path)


def test_unknown_dataset():
    with pytest.raises(UserError, match="unknown dataset 'imagenet'"):
        get_dataset("imagenet")


@pytest.mark.parametrize("name", datasets())
def test_every_dataset_loads_or_says_offline_how_to_get_it(name, tmp_path):
    """Offline, a registered dataset either loads (embedded) or names the flags that fetch it, in one line."""
    try:
        ds = get_dataset(name, tmp_path)
    except DataUnavailableError as err:
        assert "\n" not in str(err) and "--download" in str(err)
        return
    assert ds.train_images.ndim == 4 and ds.image_shape[1] in (28, 32)
    assert ds.train_images.min() >= -1.0 and ds.train_images.max() <= 1.0
    assert int(ds.train_labels.max()) == ds.num_classes - 1 and len(ds.train_labels) == len(ds.train_images)
