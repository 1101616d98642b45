"""Training, caching and serving the domain backbones behind the quality metrics (``bench/metrics/backbones.py``).

Each backbone is trained once per (dataset, architecture, seed, data) on the real training split with its own
fixed recipe and cached on disk, by the same code for every backbone. Each is registered with torch-fidelity
under its own feature extractor name (``lenet-domain``, ``resnet-domain``): it gives FID/KID/precision/recall
its 128-d embedding (``features``) and the Inception Score its class logits (``logits``), the "Frechet LeNet
Distance" / "MNIST score" practice of TF-GAN. Images are uint8 (N, C, 28|32|64, 28|32|64).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from bench.base.errors import CheckpointError, first_line
from bench.base.io import quarantine
from bench.engine.checkpoints import atomic_torch_save, safe_torch_load
from bench.metrics.backbones import BACKBONES, Backbone, DomainClassifier
from data import ImageDataset, from_uint8

EVAL_BATCH = 1000


@dataclass(frozen=True)
class Classifier:
    """A trained, frozen classifier (eval mode, on its device) and where its weights lie."""

    model: DomainClassifier
    weights_path: Path
    test_accuracy: float
    key: str
    weights_sha: str  # content hash of the state_dict: names the cached real-image statistics
    backbone: Backbone


def tensor_sha256(*tensors: torch.Tensor) -> str:
    """sha256 of the tensors' dtypes, shapes and raw bytes (CPU copies when needed)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def dataset_sha256(dataset: ImageDataset) -> str:
    """Content hash of both splits of ``dataset`` (images and labels)."""
    return tensor_sha256(dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(tensor_sha256(state_dict[name]).encode())
    return digest.hexdigest()


def classifier_key(dataset: ImageDataset, seed: int, backbone: Backbone, data_sha: str | None = None) -> str:
    """The cache key: sha256 of (dataset name, the backbone's architecture tag, seed, data hash), 16 hex digits."""
    payload = {
        "dataset": dataset.name,
        "arch": backbone.arch,
        "seed": seed,
        "data": data_sha or dataset_sha256(dataset),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by integers in [-max_shift, max_shift] pixels; the border fills with -1."""
    n, _, h, w = images.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (2, n), generator=generator).to(images.device)
    padded = F.pad(images, (max_shift,) * 4, value=-1.0)
    rows = torch.arange(h, device=images.device)[None, :] + max_shift + shifts[0][:, None]  # (n, h)
    cols = torch.arange(w, device=images.device)[None, :] + max_shift + shifts[1][:, None]  # (n, w)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = EVAL_BATCH):
    """Predicted class of every image (float in [-1, 1]), computed in batches on ``device``."""
    was_training = model.training
    model.eval()
    try:
        out = [model(images[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    """Fraction of ``images`` whose predicted class is ``labels``."""
    return int((predict(model, images, device) == labels.cpu()).sum()) / max(len(labels), 1)


def train_classifier(dataset: ImageDataset, seed: int, device: torch.device, backbone: Backbone) -> DomainClassifier:
    """Train a fresh ``backbone`` on the training split with its fixed recipe; returns it in eval mode."""
    channels, height, width = dataset.image_shape
    if height != width:
        raise ValueError(f"the classifier needs square images, got {height}x{width}")
    recipe = backbone.recipe
    seed += recipe.seed_offset
    images, labels = dataset.train_images, dataset.train_labels
    n = len(labels)
    batch = min(recipe.batch_size, n)
    steps_per_epoch = n // batch
    epochs = max(recipe.min_epochs, math.ceil(recipe.min_steps / steps_per_epoch))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # initialisation only; shuffling and shifts use the generator below
        model = backbone.model(channels, height, dataset.num_classes).to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = recipe.optimizer(model.parameters())
    schedule = recipe.schedule(optimizer, epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for step in range(steps_per_epoch):
            idx = order[step * batch : (step + 1) * batch]
            x = random_shift(images[idx], recipe.max_shift, generator).to(device)
            loss = F.cross_entropy(model(x), labels[idx].to(device), label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval().requires_grad_(False)


def _weights_file(
    model: DomainClassifier, test_accuracy: float, key: str, dataset: ImageDataset, seed: int, backbone: Backbone
) -> dict:
    return {
        "arch": backbone.arch,
        "key": key,
        "dataset": dataset.name,
        "seed": seed,
        "channels": model.channels,
        "image_size": model.image_size,
        "num_classes": model.num_classes,
        "test_accuracy": float(test_accuracy),
        "state_dict": {name: t.detach().cpu() for name, t in model.state_dict().items()},
    }


def load_classifier(
    path: Path, backbone: Backbone, device: torch.device | str = "cpu"
) -> tuple[DomainClassifier, dict]:
    """Rebuild the frozen ``backbone`` stored at ``path`` (safe load); also return the file's metadata."""
    payload = safe_torch_load(path)
    if not isinstance(payload, dict) or payload.get("arch") != backbone.arch or "state_dict" not in payload:
        raise CheckpointError(f"{path} is not a {backbone.arch} classifier file")
    model = backbone.model(payload["channels"], payload["image_size"], payload["num_classes"])
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval().requires_grad_(False)
    return model, payload


def load_or_train_classifier(
    dataset: ImageDataset,
    seed: int,
    cache_dir: Path,
    device: torch.device,
    backbone: Backbone,
    data_sha: str | None = None,
) -> Classifier:
    """The ``backbone`` of (dataset, its architecture, seed, data): loaded from ``cache_dir`` or trained and saved.

    ``data_sha`` (``dataset_sha256(dataset)``) may be passed when the caller has it, to skip re-hashing.
    """
    key = classifier_key(dataset, seed, backbone, data_sha)
    path = Path(cache_dir) / f"classifier-{key}.pt"
    if path.is_file():
        try:
            model, payload = load_classifier(path, backbone, device)
            if payload.get("key") == key:
                return Classifier(model, path, float(payload["test_accuracy"]), key, _sha(model), backbone)
            quarantine(path, "a classifier of another key")
        except (CheckpointError, RuntimeError, KeyError, TypeError) as err:
            quarantine(path, first_line(err))
    model = train_classifier(dataset, seed, device, backbone)
    test_accuracy = accuracy(model, dataset.test_images, dataset.test_labels, device)
    atomic_torch_save(path, _weights_file(model, test_accuracy, key, dataset, seed, backbone))
    # reload what is on disk, so the in-memory model and the feature extractor use the very same weights
    model, payload = load_classifier(path, backbone, device)
    return Classifier(model, path, float(payload["test_accuracy"]), key, _sha(model), backbone)


def _sha(model: nn.Module) -> str:
    return state_dict_sha256(model.state_dict())[:16]


def backbone_of_extractor(name: str) -> Backbone:
    """The registered backbone served under torch-fidelity's feature extractor ``name``."""
    found = [BACKBONES[backbone] for backbone in BACKBONES if BACKBONES[backbone].feature_extractor == name]
    vassert(len(found) == 1, f"no registered backbone is served as feature extractor {name!r}")
    return found[0]


class DomainFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor over a cached backbone: uint8 (N, C, H, W) -> features, logits.

    One class serves every backbone: torch-fidelity passes the registered ``name``, which picks the architecture.
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs) -> None:
        super().__init__(name, features_list)
        vassert(
            feature_extractor_weights_path is not None,
            f"feature extractor {name!r} needs feature_extractor_weights_path (a classifier-*.pt file)",
        )
        self.model, _ = load_classifier(Path(feature_extractor_weights_path), backbone_of_extractor(name))

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        # torch-fidelity's Inception Score applies the softmax itself, so it gets logits
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)

    def forward(self, x):
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting images as a uint8 torch.Tensor")
        vassert(
            x.dim() == 4 and x.shape[1] == self.model.channels,
            f"Expecting (N, {self.model.channels}, H, W) images, got {tuple(x.shape)}",
        )
        features, logits = self.model.features_and_logits(from_uint8(x))
        found = {"features": features, "logits": logits}
        return tuple(found[name] for name in self.features_list)


for _name in BACKBONES:
    if BACKBONES[_name].feature_extractor not in FEATURE_EXTRACTORS_REGISTRY:  # re-imports must not fail
        register_feature_extractor(BACKBONES[_name].feature_extractor, DomainFeatureExtractor)
