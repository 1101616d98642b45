"""Your own images: a folder of class sub-folders (torchvision's ``ImageFolder`` layout), ``--dataset imagefolder
--data-root DIR``.

- Classes are DIR's sub-folder names, sorted (label i is the i-th name); a class folder's images may lie in
  sub-folders of it. Hidden folders and files of other extensions are ignored.
- Splits: ``DIR/train/`` and ``DIR/test/`` (each with the same class folders) when both are there; otherwise every
  class's images are split 80/20 with a fixed seed (stratified and deterministic: the same folder always gives the
  same split). ``ImageDataset.split`` says which, and the grid records it in ``grid.json``.
- Images: PNG, JPEG and the other formats torchvision's ``ImageFolder`` reads, through PIL; greyscale or colour, of
  any size and aspect ratio, mixed sizes included: each one is resized so that its shorter side is the image size
  (bilinear, antialiased when shrinking), centre-cropped to a square and rounded to uint8 pixels (``fit_to``), then
  scaled to [-1, 1] float32 like every dataset. One channel when every image is greyscale, else three (a grey
  image then repeats its one channel, as PIL's conversion to RGB does); an alpha channel is dropped.
- An empty or corrupt image file among readable ones is skipped, and one warning line counts them; a folder that
  cannot give a dataset (missing, no class folders, one class, a class without a readable image) is one line
  saying what is wrong. ``--download`` is ignored: there is nothing to fetch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from bench.base.errors import UserError
from data import ImageDataset, fit_to, from_uint8, register_dataset

SIZE = 32  # the image size when --image-size is not given
SPLIT_SEED = 0
TEST_FRACTION = 0.2
# torchvision's ``IMG_EXTENSIONS`` (not imported: listing the datasets needs no torchvision)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes of one colour channel (plus alpha, for "LA")


class ImageFolderError(UserError):
    """A --data-root that does not hold a folder of class folders of images: one line naming the problem."""


@register_dataset("imagefolder", SIZE)
def load(root: Path, download: bool, size: int = SIZE) -> ImageDataset:
    """The images under ``root`` as a dataset of ``size`` x ``size`` images (see the module's docstring)."""
    folders = _split_folders(root)
    classes = _classes(root, folders)
    read = {split: _read_split(folder, classes, size) for split, folder in folders.items()}
    skipped = [path for _, _, unreadable in read.values() for path in unreadable]
    if not any(images for images, _, _ in read.values()):
        raise ImageFolderError(f"no readable image under --data-root {root}: {_files(len(skipped))} empty or corrupt")
    for split, folder in folders.items():
        _check_every_class_read(folder, classes, read[split][1], read[split][2])
    if skipped:
        warnings.warn(
            f"imagefolder: skipped {len(skipped)} image file{'s' if len(skipped) > 1 else ''} under {root} that "
            f"cannot be read (empty or corrupt), e.g. {skipped[0]}",
            UserWarning,
            stacklevel=3,
        )
    channels = 3 if any(image.shape[0] == 3 for images, _, _ in read.values() for image in images) else 1
    tensors = {
        split: (torch.stack([image.expand(channels, -1, -1) for image in images]), torch.tensor(labels))
        for split, (images, labels, _) in read.items()
    }
    if "all" in tensors:
        return _split_stratified(*tensors["all"], classes, root)
    (train, train_labels), (test, test_labels) = tensors["train"], tensors["test"]
    return ImageDataset(
        "imagefolder", from_uint8(train), train_labels, from_uint8(test), test_labels, len(classes),
        "the train/ and test/ folders",
    )  # fmt: skip


def _split_folders(root: Path) -> dict[str, Path]:
    """{"train": root/train, "test": root/test} when both are folders, else {"all": root}."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise ImageFolderError(f"--data-root {root} {what}: imagefolder reads a folder of class folders of images")
    train, test = root / "train", root / "test"
    if train.is_dir() and test.is_dir():
        return {"train": train, "test": test}
    lone = [folder for folder in (train, test) if folder.is_dir()]
    if lone and _class_names(root) == [lone[0].name]:  # a train/ without its test/ (or the other way round)
        raise ImageFolderError(
            f"--data-root {root} has {lone[0].name}/ but no {'test' if lone[0] == train else 'train'}/: give both, "
            "or the class folders alone (split 80/20 then)"
        )
    return {"all": root}


def _class_names(folder: Path) -> list[str]:
    return sorted(child.name for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))


def _classes(root: Path, folders: dict[str, Path]) -> list[str]:
    """The class names, sorted: the same in every split folder, two at least."""
    names = {split: _class_names(folder) for split, folder in folders.items()}
    if "test" in names and names["train"] != names["test"]:
        only_train = sorted(set(names["train"]) - set(names["test"])) or ["none"]
        only_test = sorted(set(names["test"]) - set(names["train"])) or ["none"]
        raise ImageFolderError(
            f"{root}/train and {root}/test have different class folders (only in train: {', '.join(only_train)}; "
            f"only in test: {', '.join(only_test)})"
        )
    classes = next(iter(names.values()))
    where = next(iter(folders.values()))
    if not classes:
        raise ImageFolderError(
            f"{where} has no class folders: put each class's images in a sub-folder named after the class"
        )
    if len(classes) == 1:
        raise ImageFolderError(
            f"{where} has one class folder ({classes[0]}): a conditional GAN needs two classes at least"
        )
    return classes


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in EXTENSIONS and not path.name.startswith(".") and path.is_file()
    )


def _read_split(folder: Path, classes: list[str], size: int) -> tuple[list[torch.Tensor], list[int], list[Path]]:
    """Every readable image of every class folder under ``folder`` as uint8 (1|3, size, size), its label, and the
    image files that could not be read."""
    images, labels, unreadable = [], [], []
    for label, name in enumerate(classes):
        for path in _image_files(folder / name):
            image = _read_image(path, size)
            if image is None:
                unreadable.append(path)
            else:
                images.append(image)
                labels.append(label)
    return images, labels, unreadable


def _read_image(path: Path, size: int) -> torch.Tensor | None:
    """uint8 (1, size, size) for a greyscale image, (3, size, size) for any other; None when PIL cannot read it."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's notes on palettes and large images: not the user's concern here
        try:
            with Image.open(path) as image:
                image.load()
                grey = image.mode in GREY_MODES
                pixels = np.array(image.convert("L" if grey else "RGB"))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):  # empty, truncated, not an image
            return None
    tensor = torch.from_numpy(pixels)
    tensor = tensor[None] if grey else tensor.permute(2, 0, 1)
    return fit_to(tensor[None].contiguous(), size)[0]


def _check_every_class_read(folder: Path, classes: list[str], labels: list[int], unreadable: list[Path]) -> None:
    """Every class folder gave a readable image; else one line naming the first that did not, and why."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    for label, name in enumerate(classes):
        if counts[label] == 0:
            bad = sum(1 for path in unreadable if path.is_relative_to(folder / name))
            why = f"{_files(bad)} empty or corrupt" if bad else f"it holds no image file ({', '.join(EXTENSIONS)})"
            raise ImageFolderError(f"class folder {folder / name} has no readable image: {why}")


def _files(count: int) -> str:
    return "its image file is" if count == 1 else f"its {count} image files are"


def _split_stratified(images: torch.Tensor, labels: torch.Tensor, classes: list[str], root: Path) -> ImageDataset:
    """Every class's images split 80/20 in an order drawn from a fixed seed: the same folder, the same split."""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    train_idx, test_idx = [], []
    for label, name in enumerate(classes):
        members = (labels == label).nonzero().flatten()
        if len(members) < 2:
            raise ImageFolderError(
                f"class folder {root / name} has one readable image: an 80/20 split needs two at least (or give "
                "train/ and test/ folders)"
            )
        order = members[torch.randperm(len(members), generator=generator)]
        n_test = min(max(1, round(len(members) * TEST_FRACTION)), len(members) - 1)
        test_idx.append(order[:n_test])
        train_idx.append(order[n_test:])
    train, test = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    split = f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} per class, seed {SPLIT_SEED}"
    return ImageDataset(
        "imagefolder", from_uint8(images[train]), labels[train], from_uint8(images[test]), labels[test],
        len(classes), split,
    )  # fmt: skip
