import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.base.errors import DataUnavailableError, UserError
from data import datasets, default_size, fit_to, from_uint8, get_dataset, to_uint8
from data.imagefolder import ImageFolderError


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


@pytest.mark.parametrize("size", [32, 64])
def test_digits_at_another_size_keep_their_split_and_exact_levels(size):
    native, resized = get_dataset("digits"), get_dataset("digits", image_size=size)
    assert resized.image_shape == (1, size, size) and resized.split == native.split == "stratified 80%/20%, seed 0"
    assert torch.equal(resized.test_labels, native.test_labels)
    assert torch.equal(from_uint8(to_uint8(resized.train_images)), resized.train_images)
    assert resized.train_images.min() == -1.0 and resized.train_images.max() == 1.0


def test_fit_to_resizes_the_shorter_side_and_keeps_the_centre():
    pixels = torch.zeros(2, 3, 10, 30, dtype=torch.uint8)
    pixels[..., 10:20] = 255  # the middle third, which the centre crop keeps
    fitted = fit_to(pixels, 20)
    assert fitted.shape == (2, 3, 20, 20) and fitted.dtype == torch.uint8
    assert fitted[..., 1:-1].min() == 255 and fitted[..., 0].max() < 255
    assert fit_to(fitted, 20) is fitted  # already that size: untouched


def test_mnist_from_shared_data(mnist_root):
    # the idx files the tests below write have the real files' headers
    for name, shape in (("train-images-idx3-ubyte", (60_000, 28, 28)), ("t10k-labels-idx1-ubyte", (10_000,))):
        header = idx_bytes(np.zeros(shape, np.uint8))[: 4 + 4 * len(shape)]
        assert (mnist_root / "MNIST" / "raw" / name).read_bytes()[: len(header)] == header
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
    except ImageFolderError as err:  # your own images: an empty folder says what it lacks
        assert "\n" not in str(err) and "class folders" in str(err)
        return
    assert ds.train_images.ndim == 4 and ds.image_shape[1] == default_size(name)
    assert ds.train_images.min() >= -1.0 and ds.train_images.max() <= 1.0
    assert int(ds.train_labels.max()) == ds.num_classes - 1 and len(ds.train_labels) == len(ds.train_images)


# --- torchvision's loaders fed tiny files in the formats they read, written by the tests -------------------------

# MNIST-format splits: three train images and two test images of random pixels, the first starting 0, 255, 128
RNG = np.random.default_rng(0)
IDX_IMAGES = {split: RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8) for split, n in (("train", 3), ("t10k", 2))}
IDX_IMAGES["train"][0, 0, :3] = (0, 255, 128)
IDX_LABELS = {"train": np.array([3, 0, 9], np.uint8), "t10k": np.array([7, 1], np.uint8)}
IDX_SETS = [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]  # (our name, torchvision's folder)


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an idx file: magic 0x0000 08 (unsigned byte) and its rank, big-endian int32 sizes."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_set(root: Path, folder: str, gzipped: bool = False) -> Path:
    """The four files of an MNIST-format set under ``root/folder/raw``, as extracted (or as downloaded: .gz)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        for kind, array in (("images-idx3", IDX_IMAGES[split]), ("labels-idx1", IDX_LABELS[split])):
            path = raw / f"{split}-{kind}-ubyte"
            if gzipped:
                path.with_suffix(".gz").write_bytes(gzip.compress(idx_bytes(array)))
            else:
                path.write_bytes(idx_bytes(array))
    return raw


@pytest.mark.parametrize("name, folder", IDX_SETS)
def test_an_mnist_format_set_is_read_pixel_exact_with_its_labels_and_split(tmp_path, name, folder):
    write_idx_set(tmp_path, folder)
    ds = get_dataset(name, tmp_path)
    assert ds.name == name and ds.num_classes == 10 and ds.image_shape == (1, 28, 28)
    loaded = {"train": (ds.train_images, ds.train_labels), "t10k": (ds.test_images, ds.test_labels)}
    for split, (images, labels) in loaded.items():
        assert images.shape == (len(IDX_LABELS[split]), 1, 28, 28) and images.dtype == torch.float32
        assert torch.equal(to_uint8(images)[:, 0], torch.from_numpy(IDX_IMAGES[split]))  # row-major, not transposed
        assert labels.dtype == torch.long and labels.tolist() == IDX_LABELS[split].tolist()
    # uint8 0 and 255 are the ends of [-1, 1] exactly; 128 is 1/255, the level just above the middle
    assert ds.train_images[0, 0, 0, :3].tolist() == pytest.approx([-1.0, 1.0, 1 / 255], abs=1e-7)


@pytest.mark.parametrize("name, folder", IDX_SETS)
def test_only_gzipped_files_are_not_read_offline(tmp_path, name, folder):
    """torchvision reads the extracted files; the .gz it downloads are extracted by its download step alone."""
    write_idx_set(tmp_path, folder, gzipped=True)
    with pytest.raises(DataUnavailableError, match=f"{name}' not found under --data-root .*: pass --download"):
        get_dataset(name, tmp_path)


def _truncate(raw: Path) -> None:
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])


def _gzip_under_the_plain_name(raw: Path) -> None:
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))


DAMAGES = {  # what is done to a good set -> what the message quotes
    "truncated": (_truncate, "shape '[3, 28, 28]' is invalid"),
    "gzipped": (_gzip_under_the_plain_name, "(AssertionError)"),
    "empty": (lambda raw: (raw / "t10k-images-idx3-ubyte").write_bytes(b""), "invalid literal"),
    "one-label-short": (
        lambda raw: (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(IDX_LABELS["t10k"][:1])),
        "its test split has 2 images but 1 labels",
    ),
    "label-10": (
        lambda raw: (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([3, 10, 9], np.uint8))),
        "its train labels are not all in 0..9",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("download", [False, True])
def test_a_damaged_mnist_format_file_is_one_line_that_says_so(tmp_path, damage, download):
    """Not "not found" (the files are there), not a traceback, not a dataset of misaligned pairs; and since
    torchvision downloads nothing over files that exist, the remedy is to remove them first."""
    change, why = DAMAGES[damage]
    change(write_idx_set(tmp_path, "MNIST"))
    with pytest.raises(DataUnavailableError) as err:
        get_dataset("mnist", tmp_path, download)
    message = str(err.value)
    assert message.startswith(f"dataset 'mnist' under --data-root {tmp_path} cannot be read (") and why in message
    assert message.endswith("remove its files and pass --download to fetch it again") and "\n" not in message


# CIFAR-10's python version: five pickled training batches, a test batch and batches.meta; each batch's "data" is
# uint8 (N, 3072), an image's red plane, then green, then blue, each 32x32 row-major
CIFAR_TRAIN_SIZES = (2, 1, 1, 2, 1)
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    """Tiny CIFAR-10 batches under ``root/cifar-10-batches-py``; returns the train and test images (N, 3, 32, 32)
    and labels they hold. The first training image is pure colour: red 255, green 0, blue 128."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (sum(CIFAR_TRAIN_SIZES) + 2, 3, 32, 32), dtype=np.uint8)
    images[0] = np.array([255, 0, 128], np.uint8)[:, None, None]
    labels = rng.integers(0, 10, len(images)).tolist()
    start = 0
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, size in zip(names, (*CIFAR_TRAIN_SIZES, 2)):
        batch = {"batch_label": name, "labels": labels[start : start + size],
                 "data": images[start : start + size].reshape(size, 3072),
                 "filenames": [f"{i}.png" for i in range(start, start + size)]}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        start += size
    meta = {"num_cases_per_batch": 10000, "label_names": CIFAR_CLASSES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    n = sum(CIFAR_TRAIN_SIZES)
    return images[:n], labels[:n], images[n:], labels[n:]


def test_cifar10_files_that_fail_torchvisions_checksums_are_not_found(tmp_path):
    """torchvision checks every batch's md5 against the released files': any other file is "not found or
    corrupted", and --download fetches the real ones over it."""
    write_cifar10(tmp_path)
    with pytest.raises(DataUnavailableError, match="'cifar10' not found under --data-root .*: pass --download"):
        get_dataset("cifar10", tmp_path)


def test_cifar10_batches_are_read_in_order_with_their_colour_planes(tmp_path, monkeypatch):
    """With torchvision's checksums taken as passed (they hold for the released files alone), the loader turns the
    batches into (N, 3, 32, 32) images in [-1, 1], training batches 1 to 5 in order, and the meta's classes."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    train_images, train_labels, test_images, test_labels = write_cifar10(tmp_path)
    ds = get_dataset("cifar10", tmp_path)
    assert ds.name == "cifar10" and ds.num_classes == 10 and ds.image_shape == (3, 32, 32)
    assert ds.train_images.shape == (7, 3, 32, 32) and ds.test_images.shape == (2, 3, 32, 32)
    assert ds.train_images.dtype == torch.float32 and ds.train_labels.dtype == torch.long
    assert torch.equal(to_uint8(ds.train_images), torch.from_numpy(train_images))
    assert torch.equal(to_uint8(ds.test_images), torch.from_numpy(test_images))
    assert ds.train_labels.tolist() == train_labels and ds.test_labels.tolist() == test_labels
    red, green, blue = ds.train_images[0]
    assert (
        (red == 1.0).all() and (green == -1.0).all() and torch.allclose(blue, torch.tensor(1 / 255), rtol=0, atol=1e-7)
    )
