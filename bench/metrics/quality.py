"""Sample quality of a conditional generator: FID, IS, KID and precision/recall through torch-fidelity on every
feature network asked for, density and coverage through prdc, per-class FID, class consistency, teacher fidelity.

How every number is computed (so two users get the same one):

- Evaluation set: ``n = QualitySpec.fid_samples`` pairs (z, y) fixed by the evaluator's ``seed``: y = i mod
  num_classes (balanced), z ~ N(0, 1) of size (n, nz) drawn on the CPU from ``torch.Generator().manual_seed(seed)``.
  Generated images are mapped to uint8 with ``data.to_uint8`` (round, clamp) before any metric sees them.
- Real side: the real TRAINING split, as uint8. Its features and FID statistics are cached under
  ``cache_dir/fidelity`` by a name holding the backbone, the dataset, a hash of its data, a hash of the backbone
  weights and the sample count (torch-fidelity's own cache key ignores weights). The generated side is never
  cached.
- Every feature network's scores are torch-fidelity's: its registered feature extractor gives the features of
  each side once, and its metric functions (``isc_featuresdict_to_metric``, ``fid_statistics_to_metric``,
  ``kid_featuresdict_to_metric``, ``prc_featuresdict_to_metric``) score them, with the arguments
  ``calculate_metrics`` would pass: the same numbers as ``calculate_metrics`` (a test compares them), without
  extracting the generated images' features once per call. Where the feature network runs on a GPU, FID, KID
  and precision/recall are computed there in torch instead (``bench/metrics/torch_scores.py``: the same
  quantities, KID on the same subsets; a test compares each with torch-fidelity's function).
- ``*_lenet``: the domain classifier of ``bench/metrics/classifier.py`` (``lenet-domain``): FID and KID
  (polynomial kernel, ``QualitySpec.kid_subsets`` subsets of ``min(1000, n_fake, n_real)``) on the 128-d
  penultimate features, Inception Score (10 splits) on the logits, precision/recall (k = 3) on the features.
- ``*_resnet`` (``QualitySpec.backbones`` holds ``resnet`` by default): the same five scores on the second domain
  backbone of ``bench/metrics/backbones.py`` (``resnet-domain``: another architecture, another training recipe,
  its own cache), so the report can say whether two feature networks rank the models alike. Density/coverage,
  per-class FID and class consistency stay on the LeNet.
  Precision/recall compare sets of equal size (Kynkaanniemi et al. 2019: both are biased by unequal sizes), so
  their real side is a fixed random subset of ``min(n_fake, n_real)`` training images drawn with ``seed`` (rows
  of the training split's features).
- ``density_lenet``, ``coverage_lenet``: ``prdc.compute_prdc`` (Naeem et al. 2020) with k = 5, the paper's default,
  on the same 128-d features and the same equal-size real subset as precision/recall. Density counts how many
  real k-NN balls hold each generated sample, over k (about 1 for a perfect generator, above 1 where samples
  crowd dense real regions); coverage is the share of real samples whose k-NN ball holds a generated one. Both
  sides' features are those the LeNet's scores use, extracted once.
- ``fid_class_lenet``: the mean over the classes asked for of the FID between the generated images of class c and
  all real training images of class c, on the same features, with torch-fidelity's own statistics and distance.
  Each class has only n / num_classes generated samples (100 at n = 1,000 on 10 classes) against 128-d
  features, so the per-class FID is biased upwards, more than the all-class FID: compare it only at equal
  sample counts. None when some class asked for has fewer than 2 generated or real images (no covariance).
- ``*_inception``: FID/IS/KID with torch-fidelity's Inception-v3 (``inception-v3-compat``: 2048-d pool
  features, IS on ``logits_unbiased``) when ``QualitySpec.inception_weights`` names a weights file or
  ``inception_download`` lets torch-fidelity download its own; ``*_clip`` and ``*_dinov2``: FID/KID/precision/
  recall on CLIP's image embedding or DINOv2's class token when ``QualitySpec.clip_weights`` or
  ``dinov2_weights`` names their file (``bench/metrics/pretrained.py``).
  Grayscale is repeated to 3 channels; torch-fidelity resizes to the network's input itself.
- ``class_consistency``: the classifier's accuracy on the generated images against the labels asked for.
- ``teacher_fidelity_l1``: mean |G_student(z, y) - G_teacher(z, y)| over all pixels, in [-1, 1] units, before
  quantisation; None without a teacher.
- All torch-fidelity randomness (IS split shuffling, KID subsets) uses ``rng_seed = seed``; the classifier is the
  one trained with the same ``seed``. KID is reported as torch-fidelity returns it (raw feature units, not x1000).
- Cost: each domain backbone takes about 0.7 s per model at n = 1,000 on a CPU, most of it KID's kernels over
  its subsets; Inception-v3 runs 299x299 inputs (about 0.2 s per image on 2 CPU cores) and CLIP ViT-B/32
  and DINOv2 224x224 ones, so ``*_inception``, ``*_clip`` and ``*_dinov2`` on MNIST-sized sets are GPU jobs.
"""

from __future__ import annotations

import contextlib
import io
import weakref
from collections.abc import Iterator
from contextlib import nullcontext, redirect_stdout
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from unittest import mock

import numpy as np
import prdc
import torch
import torch_fidelity
from torch import nn
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import (
    KEY_METRIC_FID,
    fid_features_to_statistics,
    fid_featuresdict_to_statistics,
    fid_featuresdict_to_statistics_cached,
    fid_statistics_to_metric,
)
from torch_fidelity.metric_isc import isc_featuresdict_to_metric
from torch_fidelity.metric_kid import kid_featuresdict_to_metric
from torch_fidelity.metric_prc import prc_featuresdict_to_metric
from torch_fidelity.utils import (
    create_feature_extractor,
    extract_featuresdict_from_input_id_cached,
    get_featuresdict_from_dataset,
    resolve_feature_layer_for_metric,
)

from bench.base.errors import CheckpointError, UserError
from bench.base.io import quarantine
from bench.base.metric_registry import quality_columns
from bench.engine.checkpoints import safe_torch_load
from bench.engine.cpuload import thread_budget
from bench.engine.stopwatch import timed
from bench.metrics import torch_scores
from bench.metrics.backbones import BACKBONES, PRIMARY
from bench.metrics.classifier import accuracy, dataset_sha256, load_or_train_classifier
from bench.metrics.measure import eval_mode
from bench.metrics.pretrained import asked_networks, resolve_pretrained
from bench.metrics.scorers import SCORERS, Scored
from bench.metrics.settings import QualitySpec
from data import ImageDataset, from_uint8, to_uint8

KID_MAX_SUBSET = 1000
PRDC_K = 5  # density and coverage: the k Naeem et al. 2020 use throughout and recommend
MIN_CLASS_SAMPLES = 2  # a class's FID needs a covariance
# what the scores rest on, written after the metrics' own columns (bench/base/metric_registry.py)
BOOKKEEPING_KEYS = ("quality_n_fake", "quality_n_real", "classifier_test_acc")

# torch-fidelity result key -> our column name, formatted with the backbone
_FIDELITY_KEYS = {
    torch_fidelity.KEY_METRIC_FID: "fid_{}",
    torch_fidelity.KEY_METRIC_ISC_MEAN: "is_{}",
    torch_fidelity.KEY_METRIC_ISC_STD: "is_{}_std",
    torch_fidelity.KEY_METRIC_KID_MEAN: "kid_{}",
    torch_fidelity.KEY_METRIC_KID_STD: "kid_{}_std",
    torch_fidelity.KEY_METRIC_PRECISION: "precision_{}",
    torch_fidelity.KEY_METRIC_RECALL: "recall_{}",
}


class QualityError(UserError):
    """Generated images or models that cannot be scored against this dataset."""


def contract_of(generator: nn.Module) -> tuple[int, int]:
    """(noise size, class count) a generator declares under the family contract (``gans.ConditionalGenerator``);
    a model that declares neither cannot be fed the evaluation's (z, y)."""
    nz, classes = getattr(generator, "nz", None), getattr(generator, "num_classes", None)
    if not isinstance(nz, int) or not isinstance(classes, int):
        raise QualityError(f"a {type(generator).__name__} declares no noise size and class count (nz, num_classes)")
    return nz, classes


@contextlib.contextmanager
def budgeted_prdc() -> Iterator[None]:
    """prdc's pairwise distances within the process's thread budget: prdc hard-codes scikit-learn's
    ``n_jobs=8`` (eight threads whatever the machine); the same call is made with the budget instead."""
    import prdc.prdc as prdc_module
    import sklearn.metrics

    def distances(data_x, data_y=None):
        data_y = data_x if data_y is None else data_y
        return sklearn.metrics.pairwise_distances(data_x, data_y, metric="euclidean", n_jobs=thread_budget())

    with mock.patch.object(prdc_module, "compute_pairwise_distance", distances):
        yield


class Uint8Images(Dataset):
    """uint8 (N, C, H, W) pixels as a torch-fidelity input: item i is the (C, H, W) tensor, 3 channels if ``rgb``."""

    def __init__(self, pixels: torch.Tensor, rgb: bool = False) -> None:
        if pixels.dtype != torch.uint8 or pixels.dim() != 4:
            raise ValueError(f"expected uint8 (N, C, H, W) pixels, got {pixels.dtype} {tuple(pixels.shape)}")
        self.pixels = pixels.cpu()
        self.rgb = rgb and pixels.shape[1] == 1

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.pixels[index]
        return item.expand(3, -1, -1) if self.rgb else item


@dataclass(frozen=True)
class FeatureSpace:
    """One torch-fidelity feature extractor with the training split's features in it.

    torch-fidelity's ``calculate_metrics`` extracts both sides' features on every call, and precision/recall
    need a call of their own (an equal-size real side); scoring each backbone through its metric functions
    instead, on features extracted once, gives the same numbers from the same code, with that real side as rows
    of the training split's features, and hands the LeNet's features on to density/coverage and per-class FID.
    """

    name: str  # the suffix of its columns (``fid_{name}``)
    extractor: FeatureExtractorBase
    layers: dict[str, str]  # metric (isc, fid, kid, prc) -> the feature it reads
    rgb: bool  # grayscale images repeated to 3 channels
    real: dict[str, torch.Tensor]  # feature name -> (n_real, d) features of the training split
    real_fid: dict[str, np.ndarray] | None  # the training split's FID statistics

    @property
    def real_features(self) -> torch.Tensor:
        """The training split's features that FID, KID and precision/recall compare."""
        return self.real[self.layers["fid"]]

    def scores(
        self, fake: dict[str, torch.Tensor], options: dict[str, object], prc_real_rows: torch.Tensor
    ) -> dict[str, float]:
        """torch-fidelity's scores of generated features ``fake``: IS, FID and KID against the whole training split,
        precision/recall against its rows ``prc_real_rows``."""
        scores: dict[str, float] = {}
        if "isc" in self.layers:
            scores.update(isc_featuresdict_to_metric(fake, self.layers["isc"], **options))
        device = _device_of(self.extractor, torch.device("cpu"))
        if device.type == "cuda":  # the same scores in torch on the GPU (torch_scores), not in NumPy on the CPU
            scores.update(torch_scores.featuresdict_scores(
                fake, self.real, self.layers, self.real_fid, prc_real_rows, device, **options
            ))  # fmt: skip
            return {k: float(v) for k, v in scores.items() if k in _FIDELITY_KEYS}
        if self.real_fid is not None:
            fake_fid = fid_featuresdict_to_statistics(fake, self.layers["fid"])
            scores.update(fid_statistics_to_metric(fake_fid, self.real_fid, verbose=False))
        if "kid" in self.layers:
            scores.update(kid_featuresdict_to_metric(fake, self.real, self.layers["kid"], **options))
        if "prc" in self.layers:
            prc_real = {self.layers["prc"]: self.real[self.layers["prc"]][prc_real_rows]}
            scores.update(prc_featuresdict_to_metric(fake, prc_real, self.layers["prc"], **options))
        return {k: float(v) for k, v in scores.items() if k in _FIDELITY_KEYS}


class QualityEvaluator:
    """Scores generators of one dataset on a fixed evaluation set, with the dataset's cached domain backbones."""

    def __init__(
        self, dataset: ImageDataset, spec: QualitySpec, device: torch.device, cache_dir: Path, seed: int = 0
    ) -> None:
        if spec.fid_samples < 10:
            raise UserError(f"--fid-samples must be at least 10, got {spec.fid_samples}")
        self.dataset, self.spec, self.device, self.seed = dataset, spec, torch.device(device), seed
        self.cache_dir = Path(cache_dir)
        self.pretrained = resolve_pretrained(spec)  # before the classifiers: a bad weights file fails at once
        data_sha = dataset_sha256(dataset)
        self.data_tag = data_sha[:16]
        self.classifiers = {
            name: load_or_train_classifier(dataset, seed, self.cache_dir, self.device, BACKBONES[name], data_sha)
            for name in spec.backbones
        }
        self.classifier = self.classifiers[PRIMARY]  # class consistency, density/coverage, per-class FID
        self.real = to_uint8(dataset.train_images)
        self.labels = torch.arange(spec.fid_samples) % dataset.num_classes
        self._noise: dict[int, torch.Tensor] = {}
        self._teacher_outputs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # teacher -> (z, images)
        # a fixed order of the training split: its first m images are the precision/recall real side
        self._real_order = torch.randperm(len(self.real), generator=torch.Generator().manual_seed(seed))

    def noise(self, nz: int) -> torch.Tensor:
        """The fixed (fid_samples, nz) evaluation noise, on the CPU."""
        if nz not in self._noise:
            generator = torch.Generator().manual_seed(self.seed)
            self._noise[nz] = torch.randn(self.spec.fid_samples, nz, generator=generator)
        return self._noise[nz]

    def score_generator(
        self, generator: nn.Module, teacher: nn.Module | None = None, seconds: dict[str, float] | None = None
    ) -> dict[str, float | int | None]:
        """Every quality metric of ``generator`` on the fixed (z, y); teacher fidelity when ``teacher`` is given.

        ``seconds``, when given, receives the wall time of each part (``quality_generate``, ``quality_{network}``
        for the features and every torch-fidelity score on each feature network, ``quality_prdc``,
        ``quality_fid_class``, ``quality_consistency``).
        """
        seconds = {} if seconds is None else seconds
        nz, classes = contract_of(generator)
        if classes != self.dataset.num_classes:
            raise QualityError(
                f"the generator draws {classes} classes but {self.dataset.name} has {self.dataset.num_classes}"
            )
        if teacher is not None and contract_of(teacher)[0] != nz:
            raise QualityError("the teacher and the student generator take noise of different sizes")
        with timed(seconds, "quality_generate"):
            pixels, l1 = self._generate(generator, teacher, self.noise(nz), self.labels)
        metrics = self._score_pixels(pixels, self.labels, seconds)
        metrics["teacher_fidelity_l1"] = l1
        return metrics

    def score_images(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float | int | None]:
        """The same metrics for given images (float in [-1, 1] or uint8) with their labels; no teacher fidelity."""
        if tuple(images.shape[1:]) != tuple(self.dataset.image_shape):
            raise QualityError(
                f"images of shape {tuple(images.shape[1:])} cannot be scored against {self.dataset.name} "
                f"images of shape {tuple(self.dataset.image_shape)}"
            )
        if len(images) != len(labels):
            raise QualityError(f"{len(images)} images but {len(labels)} labels")
        if len(images) < 10:
            raise QualityError(f"at least 10 images are needed to score, got {len(images)}")
        pixels = images.cpu() if images.dtype == torch.uint8 else to_uint8(images.detach().cpu())
        return self._score_pixels(pixels, labels.cpu())

    def reference_rows(self, untrained_generator: nn.Module) -> list[dict[str, float | int | str | None]]:
        """The floor (real test images vs the training split) and the ceiling (an untrained generator) of every
        metric, at the evaluation set's size: FID, KID and per-class FID depend on it. A test split larger than
        the evaluation set gives a fixed random subset drawn with ``seed``; a smaller one is scored whole."""
        images, labels = self.dataset.test_images, self.dataset.test_labels
        if len(images) > self.spec.fid_samples:
            chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
            images, labels = images[chosen[: self.spec.fid_samples]], labels[chosen[: self.spec.fid_samples]]
        real = self.score_images(images, labels)
        untrained = self.score_generator(untrained_generator)
        return [{"reference": "real-test", **real}, {"reference": "untrained", **untrained}]

    @torch.no_grad()
    def _generate(
        self, generator: nn.Module, teacher: nn.Module | None, z: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, float | None]:
        """uint8 images of ``generator`` on (z, labels) in batches, and the mean L1 distance to ``teacher``."""
        targets = self._teacher_images(teacher, z, labels) if teacher is not None else None
        where = _device_of(generator, self.device)
        pixels, l1_sum, count = [], 0.0, 0
        with eval_mode(generator):
            for start in range(0, len(z), self.spec.batch_size):
                end = start + self.spec.batch_size
                images = generator(z[start:end].to(where), labels[start:end].to(where)).float()
                if tuple(images.shape[1:]) != tuple(self.dataset.image_shape):
                    raise QualityError(
                        f"the generator makes images of shape {tuple(images.shape[1:])}, but {self.dataset.name} "
                        f"images are {tuple(self.dataset.image_shape)}"
                    )
                if targets is not None:
                    l1_sum += (images - targets[start:end].to(where)).abs().double().sum().item()
                    count += images.numel()
                pixels.append(to_uint8(images).cpu())
        return torch.cat(pixels), (l1_sum / count if teacher is not None else None)

    def _teacher_images(self, teacher: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The teacher's float images of (z, labels), computed once per teacher object: a teacher is frozen while
        the students of a grid are scored against it, and its forward pass is the widest of the grid's."""
        cached = self._teacher_outputs.get(teacher)
        if cached is not None and cached[0] is z:
            return cached[1]
        where = _device_of(teacher, self.device)
        with eval_mode(teacher):
            images = torch.cat([
                teacher(z[start : start + self.spec.batch_size].to(where),
                        labels[start : start + self.spec.batch_size].to(where)).float()
                for start in range(0, len(z), self.spec.batch_size)
            ])  # fmt: skip
        self._teacher_outputs[teacher] = (z, images)
        return images

    def _score_pixels(
        self, fake: torch.Tensor, labels: torch.Tensor, seconds: dict[str, float] | None = None
    ) -> dict[str, float | int | None]:
        seconds = {} if seconds is None else seconds
        n_fake, n_real = len(fake), len(self.real)
        m = min(n_fake, n_real)
        metrics: dict[str, float | int | None] = {}
        fake_features: dict[str, torch.Tensor] = {}
        options = self._fidelity_options(n_fake)
        for space in self._feature_spaces:
            with timed(seconds, f"quality_{space.name}"):
                fake_features[space.name] = self._features(space, fake)
                scores = space.scores(fake_features[space.name], options, self._real_order[:m])
            metrics.update({_FIDELITY_KEYS[k].format(space.name): v for k, v in scores.items()})
        primary = self._space(PRIMARY)
        lenet_fake, lenet_real = fake_features[PRIMARY][primary.layers["fid"]], primary.real_features
        with timed(seconds, "quality_prdc"):
            metrics.update(self._density_coverage(lenet_fake, lenet_real[self._real_order[:m]]))
        with timed(seconds, "quality_fid_class"):
            metrics["fid_class_lenet"] = self._class_fid(lenet_fake, labels)
        with timed(seconds, "quality_consistency"):
            metrics["class_consistency"] = accuracy(self.classifier.model, from_uint8(fake), labels, self.device)
        scored = Scored(fake, labels, lenet_fake, lenet_real[self._real_order[:m]], self.classifier.model)
        for column in (column for column in SCORERS.names() if column in self.metric_keys):
            with timed(seconds, f"quality_{column}"):
                metrics[column] = SCORERS[column](scored)
        metrics["teacher_fidelity_l1"] = None
        metrics["quality_n_fake"] = n_fake
        metrics["quality_n_real"] = n_real
        metrics["classifier_test_acc"] = self.classifier.test_accuracy
        return {key: metrics[key] for key in self.metric_keys}

    @cached_property
    def _feature_spaces(self) -> list[FeatureSpace]:
        """Every backbone's feature extractor with the training split's features in it, made on first use: each
        backbone then extracts each generated set's features once, for all of its scores."""
        spaces = [
            self._make_space(name, classifier.backbone.feature_extractor, str(classifier.weights_path),
                             self._cache_name(name, classifier.weights_sha), metrics=("isc", "fid", "kid", "prc"))
            for name, classifier in self.classifiers.items()
        ]  # fmt: skip
        spaces += [
            self._make_space(weights.net.name, weights.net.extractor, weights.path,
                             self._cache_name(weights.net.name, weights.tag), metrics=weights.net.metrics, rgb=True)
            for weights in self.pretrained
        ]  # fmt: skip
        return spaces

    def _space(self, name: str) -> FeatureSpace:
        return next(space for space in self._feature_spaces if space.name == name)

    def _make_space(
        self, name: str, extractor: str, weights_path: str | None, cache_name: str, metrics: tuple[str, ...],
        rgb: bool = False,
    ) -> FeatureSpace:  # fmt: skip
        """Build torch-fidelity's ``extractor`` and the training split's features and FID statistics in it, both
        cached on disk under ``cache_name`` (torch-fidelity's own cache files, vetted before it reads them)."""
        cuda = self.device.type == "cuda"
        layers = {metric: resolve_feature_layer_for_metric(metric, feature_extractor=extractor) for metric in metrics}
        options = dict(
            input2=Uint8Images(self.real, rgb),
            input2_cache_name=cache_name,
            cache_root=str(self.cache_dir / "fidelity"),
            batch_size=self.spec.batch_size,
            cuda=cuda,
            save_cpu_ram=True,  # no DataLoader worker processes: the data is in memory
            verbose=False,
        )
        vet_fidelity_cache(self.cache_dir / "fidelity", cache_name)
        with self._on_device():
            model = create_feature_extractor(
                extractor, sorted(set(layers.values())), cuda=cuda, feature_extractor_weights_path=weights_path,
                verbose=False,
            )  # fmt: skip
            real = extract_featuresdict_from_input_id_cached(2, model, **options)
        real_fid = (
            fid_featuresdict_to_statistics_cached(real, cache_name, model, layers["fid"], **options)
            if "fid" in layers
            else None
        )
        return FeatureSpace(name, model, layers, rgb, real, real_fid)

    def _features(self, space: FeatureSpace, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """torch-fidelity's features of uint8 ``pixels`` in ``space``, never cached (generated images)."""
        cuda = self.device.type == "cuda"
        with self._on_device():
            return get_featuresdict_from_dataset(
                Uint8Images(pixels, space.rgb), space.extractor, self.spec.batch_size, cuda, True, False
            )

    def _fidelity_options(self, n_fake: int) -> dict[str, object]:
        """torch-fidelity's options for the scores of ``n_fake`` generated images against the training split."""
        return dict(
            kid_subset_size=min(KID_MAX_SUBSET, n_fake, len(self.real)),
            kid_subsets=self.spec.kid_subsets,
            rng_seed=self.seed,
            save_cpu_ram=True,  # chunked precision/recall distances
            verbose=False,
        )

    def _on_device(self):
        return torch.cuda.device(self.device) if self.device.type == "cuda" else nullcontext()

    @cached_property
    def _class_statistics(self) -> dict[int, dict[str, np.ndarray]]:
        """torch-fidelity's FID statistics of each training class with ``MIN_CLASS_SAMPLES`` images or more."""
        labels = self.dataset.train_labels
        return {
            c: fid_features_to_statistics(self._space(PRIMARY).real_features[labels == c])
            for c in labels.unique().tolist()
            if (labels == c).sum() >= MIN_CLASS_SAMPLES
        }

    @staticmethod
    def _density_coverage(fake_features: torch.Tensor, real_features: torch.Tensor) -> dict[str, float]:
        with redirect_stdout(io.StringIO()), budgeted_prdc():  # compute_prdc prints the set sizes on every call
            scores = prdc.compute_prdc(real_features.numpy(), fake_features.numpy(), nearest_k=PRDC_K)
        return {"density_lenet": float(scores["density"]), "coverage_lenet": float(scores["coverage"])}

    def _class_fid(self, fake_features: torch.Tensor, labels: torch.Tensor) -> float | None:
        """Mean over the classes in ``labels`` of the FID to the training images of that class; None when a class
        has too few images on either side."""
        classes = labels.unique().tolist()
        if any(c not in self._class_statistics or (labels == c).sum() < MIN_CLASS_SAMPLES for c in classes):
            return None
        fids = [
            fid_statistics_to_metric(
                fid_features_to_statistics(fake_features[labels == c]), self._class_statistics[c], verbose=False
            )[KEY_METRIC_FID]
            for c in classes
        ]
        return float(np.mean(fids))

    @property
    def metric_keys(self) -> tuple[str, ...]:
        """The keys of every ``score_*`` result, in column order."""
        return metric_keys(self.spec)

    def _cache_name(self, backbone: str, weights_tag: str) -> str:
        return "-".join([backbone, self.dataset.name, f"d{self.data_tag}", f"w{weights_tag}", f"n{len(self.real)}"])


def metric_keys(spec: QualitySpec) -> tuple[str, ...]:
    """The keys of every score an evaluator of ``spec`` writes, in column order (no evaluator built)."""
    networks = {None, *spec.backbones, *(net.name for net in asked_networks(spec))}
    return quality_columns(networks) + BOOKKEEPING_KEYS


# what torch-fidelity's cached FID statistics hold besides tensors: numpy arrays of floats
_NUMPY_GLOBALS = [(getattr(np, "_core", None) or np.core).multiarray._reconstruct, np.ndarray, np.dtype,
                  np.dtypes.Float32DType, np.dtypes.Float64DType]  # fmt: skip


def vet_fidelity_cache(cache_root: Path, name: str) -> None:
    """Move aside every cached file of ``name`` that does not load as plain tensors and arrays.

    torch-fidelity reads its cache with ``weights_only=False``: checking each file first with
    ``weights_only=True`` keeps code out of that load, and a truncated or garbled file is recomputed instead
    of stopping the grid.
    """
    for path in sorted(Path(cache_root).glob(f"{name}-*.pt")):
        try:
            with torch.serialization.safe_globals(_NUMPY_GLOBALS):
                safe_torch_load(path)
        except CheckpointError as err:
            quarantine(path, str(err).split(": ", 1)[-1])


def _device_of(module: nn.Module, default: torch.device) -> torch.device:
    parameter = next(module.parameters(), None)
    if parameter is not None:
        return parameter.device
    devices = getattr(module, "devices", None)  # a generator that runs on some devices only (int8: the CPU)
    return default if devices is None or default.type in devices else torch.device(devices[0])
