"""``--dataset imagefolder``: a folder of class folders of images, written here with PIL, read as a dataset; every
folder that cannot give one is one line and exit code 2; a grid on 64x64 images runs end to end."""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.cli import main
from data import from_uint8, get_dataset, to_uint8
from data.imagefolder import ImageFolderError
from tests import conftest

fails_cleanly = functools.partial(conftest.fails_cleanly, main)  # (capsys, args, expected)


def write_image(path: Path, value: int, size: tuple[int, int] = (12, 12), mode: str = "L", fmt: str = "PNG") -> Path:
    """A ``size`` (width, height) image of one grey ``value`` (an RGB one: value, value // 2, 255 - value)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, value // 2, 255 - value)
    Image.new(mode, size, colour).save(path, fmt)
    return path


def write_folder(root: Path, counts: dict[str, int], mode: str = "L", size: tuple[int, int] = (12, 12)) -> Path:
    """``counts[name]`` images per class folder; image i of the c-th given has the grey level 100 * c + i."""
    for c, (name, count) in enumerate(counts.items()):
        for i in range(count):
            write_image(root / name / f"{i:03d}.png", 100 * c + i, size, mode)
    return root


def grey_levels(images: torch.Tensor) -> list[int]:
    """The one grey level of each (uniform) image."""
    return to_uint8(images)[:, 0, 0, 0].tolist()


def test_a_folder_of_class_folders_is_split_80_20_per_class(tmp_path):
    root = write_folder(tmp_path / "pets", {"dog": 10, "cat": 5})
    write_image(root / "cat" / "kittens" / "nested.png", 99)  # a class's images may lie deeper
    (root / "notes.txt").write_text("not a class")
    (root / "cat" / "readme.md").write_text("not an image")
    (root / ".hidden").mkdir()
    ds = get_dataset("imagefolder", root)
    assert ds.name == "imagefolder" and ds.num_classes == 2  # cat = 0, dog = 1: sorted names
    assert ds.image_shape == (1, 32, 32) and ds.train_images.dtype == torch.float32
    assert ds.split == "stratified 80%/20% per class, seed 0"
    assert ds.train_labels.bincount().tolist() == [5, 8] and ds.test_labels.bincount().tolist() == [1, 2]
    train, test = grey_levels(ds.train_images), grey_levels(ds.test_images)
    assert sorted(train + test) == [*range(10), 99, *range(100, 105)]  # every image once, in one split
    cat_levels = {*range(100, 105), 99}
    assert all((level in cat_levels) == (label == 0) for level, label in zip(train, ds.train_labels.tolist()))
    assert torch.equal(from_uint8(to_uint8(ds.train_images)), ds.train_images)  # exact uint8 levels in [-1, 1]
    again = get_dataset("imagefolder", root)
    assert torch.equal(again.test_images, ds.test_images) and torch.equal(again.train_labels, ds.train_labels)
    assert get_dataset("imagefolder", root, image_size=64).image_shape == (1, 64, 64)
    assert get_dataset("imagefolder", root, image_size=28).image_shape == (1, 28, 28)


def test_train_and_test_folders_are_the_splits(tmp_path):
    write_folder(tmp_path / "train", {"a": 3, "b": 4})
    write_folder(tmp_path / "test", {"a": 2, "b": 1})
    ds = get_dataset("imagefolder", tmp_path, image_size=28)
    assert ds.split == "the train/ and test/ folders" and ds.image_shape == (1, 28, 28)
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 1] and ds.test_labels.tolist() == [0, 0, 1]
    assert grey_levels(ds.test_images) == [0, 1, 100]


def test_mixed_sizes_are_resized_then_centre_cropped_and_grey_joins_colour(tmp_path):
    """A wide image keeps its centre; a JPEG and a grey image join RGB ones as three equal channels."""
    wide = Image.new("L", (40, 20), 0)
    wide.paste(255, (20, 0, 40, 20))  # left half black, right half white
    (tmp_path / "a").mkdir()
    wide.save(tmp_path / "a" / "wide.png")
    write_image(tmp_path / "a" / "grey.png", 60, (50, 50))
    write_image(tmp_path / "b" / "colour.png", 200, (7, 9), "RGB")
    write_image(tmp_path / "b" / "photo.jpg", 100, (30, 30), "RGB", "JPEG")
    ds = get_dataset("imagefolder", tmp_path, image_size=32)
    images = to_uint8(torch.cat([ds.train_images, ds.test_images]))
    labels = torch.cat([ds.train_labels, ds.test_labels])
    assert images.shape == (4, 3, 32, 32)
    wide_pixels = next(image for image in images if image.float().std() > 50)  # 20 px tall -> 32 x 64, centre 32
    assert wide_pixels[:, :, 0].max() == 0 and wide_pixels[:, :, -1].min() == 255
    grey = next(image for image in images if image[0, 0, 0] == 60)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[0], grey[2])
    colour = next(image for image, label in zip(images, labels) if label == 1 and image[0, 0, 0] == 200)
    assert colour[:, 16, 16].tolist() == [200, 100, 55]


def test_a_corrupt_image_among_good_ones_is_skipped_with_one_warning(tmp_path):
    root = write_folder(tmp_path, {"a": 5, "b": 5})
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "b" / "cut.png").write_bytes((root / "b" / "000.png").read_bytes()[:40])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = get_dataset("imagefolder", root)
    assert len(ds.train_labels) + len(ds.test_labels) == 10
    assert [str(w.message).count("\n") for w in caught] == [0]
    assert f"skipped 2 image files under {root} that cannot be read (empty or corrupt)" in str(caught[0].message)


BAD_FOLDERS = {  # what --data-root holds (each file: 1 a readable image, 0 an empty file) -> the one line's gist
    "missing": ({}, "does not exist: imagefolder reads a folder of class folders of images"),
    "no class folders": ({"x.txt": 0}, "has no class folders"),
    "one class": ({"only/0.png": 1}, "has one class folder (only): a conditional GAN needs two classes at least"),
    "a class of no image file": ({"a/0.png": 1, "a/1.png": 1, "b/notes.txt": 0},
                                 "{root}/b has no readable image: it holds no image file"),
    "empty files only": ({"a/0.png": 0, "b/0.png": 0, "b/1.png": 0},
                         "no readable image under --data-root {root}: its 3 image files are empty or corrupt"),
    "a class of empty files": ({"a/0.png": 1, "a/1.png": 1, "b/0.png": 0},
                               "{root}/b has no readable image: its image file is empty or corrupt"),
    "a class of one image": ({"a/0.png": 1, "a/1.png": 1, "b/0.png": 1},
                             "class folder {root}/b has one readable image: an 80/20 split needs two"),
    "train without test": ({"train/a/0.png": 1, "train/b/0.png": 1}, "has train/ but no test/: give both"),
    "other test classes": ({"train/a/0.png": 1, "train/b/0.png": 1, "test/a/0.png": 1, "test/c/0.png": 1},
                           "different class folders (only in train: b; only in test: c)"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_a_folder_that_gives_no_dataset_is_one_line(capsys, tmp_path, case):
    layout, expected = BAD_FOLDERS[case]
    root = tmp_path / "data"
    for name, readable in layout.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if readable:
            write_image(root / name, 10)
        else:
            (root / name).write_bytes(b"")
    out = tmp_path / "out"
    args = ["--dataset", "imagefolder", "--data-root", str(root), "--epochs", "1", "--quiet", "--out", str(out)]
    fails_cleanly(capsys, args, expected.format(root=root))
    assert not out.exists()
    with pytest.raises(ImageFolderError):
        get_dataset("imagefolder", root)


def test_a_file_as_the_folder_is_one_line(capsys, tmp_path):
    write_image(tmp_path / "one.png", 10)
    args = ["--dataset", "imagefolder", "--data-root", str(tmp_path / "one.png"), "--out", str(tmp_path / "o")]
    fails_cleanly(capsys, args, "one.png is not a folder: imagefolder reads a folder of class folders")


def test_an_image_size_the_models_lack_is_one_line(capsys, tmp_path):
    fails_cleanly(
        capsys, ["--image-size", "48", "--out", str(tmp_path / "o")], "--image-size must be one of 28, 32, 64"
    )


def test_a_grid_on_a_64x64_image_folder_runs_end_to_end(tmp_path):
    """Two classes of 25 grey 48x48 images (dark and light noise), resized to 64x64: a teacher and a student of each
    family's 64x64 shape train, are scored and timed; grid.json records the size and the split."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "shapes"
    for c, name in enumerate(("dark", "light")):
        (folder / name).mkdir(parents=True)
        for i in range(25):
            pixels = (rng.integers(0, 60, (48, 48)) + 150 * c).astype(np.uint8)
            Image.fromarray(pixels, "L").save(folder / name / f"{i}.png")
    out = tmp_path / "out"
    args = [
        "--dataset", "imagefolder", "--data-root", str(folder), "--image-size", "64", "--widths", "16",
        "--teacher-width", "32", "--epochs", "1", "--fid-samples", "50", "--methods", "width", "--kd", "none",
        "--latency-backends", "eager", "--latency-batches", "1", "--latency-seconds", "0.02", "--backbones", "lenet",
        "--quiet", "--no-report", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["width"]) == [16, 32] and set(results["status"]) == {"done"}
    assert (results["image_size"] == 64).all() and results["fid_lenet"].notna().all()
    grid = json.loads((out / "grid.json").read_text())
    assert grid["image_shape"] == [1, 64, 64] and grid["num_classes"] == 2
    assert grid["split"] == "stratified 80%/20% per class, seed 0"
