"""Quality metrics: real data scores near the floor, noise and untrained generators far above it, and every number
is reproducible, cached where it should be, and never cached where it should not."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch_fidelity
from torch import nn
from torch_fidelity import feature_extractor_inceptionv3 as tfi
from torch_fidelity.feature_extractor_clip import CLIPVisual

import data
import gans
from bench.base.errors import UserError
from bench.base.metric_registry import quality_columns
from bench.metrics.backbones import BACKBONES
from bench.metrics.dinov2 import DinoV2ViT
from bench.metrics.pretrained import WeightsError
from bench.metrics.quality import QualityError, QualityEvaluator, Uint8Images, contract_of
from bench.metrics.settings import QualitySpec

CPU = torch.device("cpu")
N = 360  # the size of the digits test split
LENET_KEYS = [
    "fid_lenet", "is_lenet", "is_lenet_std", "kid_lenet", "kid_lenet_std", "precision_lenet", "recall_lenet",
    "density_lenet", "coverage_lenet", "fid_class_lenet",
]  # fmt: skip
RESNET_KEYS = ["fid_resnet", "is_resnet", "is_resnet_std", "kid_resnet", "kid_resnet_std", "precision_resnet",
               "recall_resnet"]  # fmt: skip
OWN_KEYS = ["class_consistency", "teacher_fidelity_l1"]
LENET_EXTRACTOR = BACKBONES["lenet"].feature_extractor
BOOKKEEPING_KEYS = ["quality_n_fake", "quality_n_real", "classifier_test_acc"]
KEYS = LENET_KEYS + OWN_KEYS + BOOKKEEPING_KEYS
INCEPTION_KEYS = ["fid_inception", "is_inception", "is_inception_std", "kid_inception", "kid_inception_std"]
CLIP_KEYS = ["fid_clip", "kid_clip", "kid_clip_std", "precision_clip", "recall_clip"]
DINOV2_KEYS = ["fid_dinov2", "kid_dinov2", "kid_dinov2_std", "precision_dinov2", "recall_dinov2"]
NOT_FLOAT = ("teacher_fidelity_l1", "quality_n_fake", "quality_n_real")


def lenet_only(**settings) -> QualitySpec:
    """The LeNet alone: most tests here are about one backbone, and a second one costs its training per cache."""
    return QualitySpec(backbones=("lenet",), **settings)


@pytest.fixture(scope="session")
def evaluator(digits, classifier_cache) -> QualityEvaluator:
    return QualityEvaluator(digits, lenet_only(fid_samples=N), CPU, classifier_cache, seed=0)


def untrained(width: int = 32, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return gans.build("dcgan", width, **kwargs)[0]


def noisy(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images + sigma * noise).clamp(-1, 1)


@pytest.fixture(scope="session")
def real_scores(evaluator, digits) -> dict:
    return evaluator.score_images(digits.test_images, digits.test_labels)


@pytest.fixture(scope="session")
def untrained_scores(evaluator) -> dict:
    return evaluator.score_generator(untrained())


def test_keys_and_types(real_scores, untrained_scores):
    for scores in (real_scores, untrained_scores):
        assert list(scores) == KEYS
        assert scores["teacher_fidelity_l1"] is None
        assert isinstance(scores["quality_n_fake"], int) and isinstance(scores["quality_n_real"], int)
        assert all(isinstance(v, float) and math.isfinite(v) for k, v in scores.items() if k not in NOT_FLOAT)
    assert real_scores["quality_n_fake"] == N and untrained_scores["quality_n_fake"] == N
    assert real_scores["quality_n_real"] == untrained_scores["quality_n_real"] == 1437


def test_real_test_split_is_near_zero_and_far_below_noise_and_untrained(
    evaluator, digits, real_scores, untrained_scores
):
    gaussian = evaluator.score_images(torch.randn(N, 1, 28, 28).clamp(-1, 1), digits.test_labels)
    real = real_scores["fid_lenet"]
    assert 0 <= real < 10  # 4.2 measured; the floor is not 0 with 360 vs 1,437 samples
    assert gaussian["fid_lenet"] > 50 * real
    assert untrained_scores["fid_lenet"] > 50 * real
    assert real_scores["kid_lenet"] < 0.01 * min(gaussian["kid_lenet"], untrained_scores["kid_lenet"])
    assert real_scores["precision_lenet"] > 0.8 and real_scores["recall_lenet"] > 0.8
    # all untrained images are one flat gray: they cover none of the real manifold (recall 0), while their single
    # point may well fall inside some real outlier's k-NN ball (precision is known to be outlier-sensitive)
    assert untrained_scores["recall_lenet"] < 0.05


def test_density_and_coverage_of_the_real_side_itself_are_one(evaluator, digits):
    # as many images as the training split: the real side of density/coverage is then that very set. Every real
    # k-NN ball holds its own centre (coverage 1) and exactly k points, itself and its k - 1 nearest neighbours
    # (the radius is the k-th neighbour's distance, compared with <), so density is exactly 1
    scores = evaluator.score_images(digits.train_images, digits.train_labels)
    assert scores["coverage_lenet"] == 1.0 and scores["density_lenet"] == 1.0
    assert scores["fid_class_lenet"] == pytest.approx(0.0, abs=1e-3)  # each class against its own statistics


def test_density_and_coverage_separate_real_images_from_noise_and_untrained(
    evaluator, digits, real_scores, untrained_scores
):
    noise = torch.randn(N, 1, 28, 28, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    gaussian = evaluator.score_images(noise, digits.test_labels)
    assert real_scores["coverage_lenet"] > 0.9  # 0.967 measured: held-out digits fall in the training digits' balls
    assert 0.8 < real_scores["density_lenet"] < 1.2  # 0.997 measured
    assert gaussian["coverage_lenet"] < 0.05 and gaussian["density_lenet"] < 0.2  # 0.019 and 0.091 measured
    # an untrained generator's images are nearly one flat gray point, inside a few real balls: coverage 0.003 on
    # every kernel set measured; density 1/k per ball holding them: 0.2 (AVX2 EPYC), 0.353 (AVX-512 VNNI EPYC),
    # 0.52 (the same under ATEN_CPU_CAPABILITY=default). Density rewards a collapse into a dense region (Naeem et
    # al. 2020), so only coverage separates it, and density is bounded by the real images' alone
    assert untrained_scores["coverage_lenet"] < real_scores["coverage_lenet"] / 10
    assert untrained_scores["density_lenet"] < real_scores["density_lenet"]


def test_scores_are_those_of_torch_fidelitys_own_entry_point(evaluator, digits, real_scores):
    """Features extracted once per backbone and scored by torch-fidelity's metric functions give what
    ``torch_fidelity.calculate_metrics`` gives on the same images: the real side whole for FID/IS/KID, its
    equal-size subset (the evaluator's first N of a permutation drawn with its seed) for precision/recall."""
    common = dict(
        input1=Uint8Images(data.to_uint8(digits.test_images)), feature_extractor=LENET_EXTRACTOR,
        feature_extractor_weights_path=str(evaluator.classifier.weights_path), batch_size=100,
        kid_subset_size=N, kid_subsets=evaluator.spec.kid_subsets, rng_seed=0, cuda=False, save_cpu_ram=True,
        verbose=False,
    )  # fmt: skip
    whole = torch_fidelity.calculate_metrics(input2=Uint8Images(evaluator.real), isc=True, fid=True, kid=True, **common)
    subset = torch.randperm(len(evaluator.real), generator=torch.Generator().manual_seed(0))[:N]
    prc = torch_fidelity.calculate_metrics(input2=Uint8Images(evaluator.real[subset]), prc=True, **common)
    expected = {
        "fid_lenet": whole[torch_fidelity.KEY_METRIC_FID], "is_lenet": whole[torch_fidelity.KEY_METRIC_ISC_MEAN],
        "kid_lenet": whole[torch_fidelity.KEY_METRIC_KID_MEAN],
        "precision_lenet": prc[torch_fidelity.KEY_METRIC_PRECISION],
        "recall_lenet": prc[torch_fidelity.KEY_METRIC_RECALL],
    }  # fmt: skip
    for key, value in expected.items():
        assert real_scores[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_per_class_fid_is_far_below_for_real_images_and_punishes_wrong_classes(
    evaluator, digits, real_scores, untrained_scores
):
    real = real_scores["fid_class_lenet"]
    assert real < 30  # 22.8 measured: 36 images per class against 128-d features
    assert real > 2 * real_scores["fid_lenet"]  # the bias of small per-class sets (the all-class FID is 4.6)
    assert untrained_scores["fid_class_lenet"] > 30 * real  # 988 measured
    # the same real images, each asked for the class below its own: label c gets a digit c + 1
    wrong = evaluator.score_images(digits.test_images, (digits.test_labels - 1) % 10)
    assert wrong["fid_lenet"] == real_scores["fid_lenet"]  # the all-class FID ignores the labels
    assert wrong["fid_class_lenet"] > 100 * wrong["fid_lenet"]  # 1,403 measured against 4.6
    assert wrong["fid_class_lenet"] > 30 * real


def test_per_class_fid_needs_two_images_of_every_class_asked_for(evaluator, digits):
    two_each = evaluator.score_images(digits.test_images[:20], torch.arange(20) % 10)
    assert two_each["fid_class_lenet"] > 0
    one_of_class_1 = torch.tensor([0] * 19 + [1])
    assert evaluator.score_images(digits.test_images[:20], one_of_class_1)["fid_class_lenet"] is None


def test_each_part_is_timed(evaluator):
    seconds: dict[str, float] = {}
    evaluator.score_generator(untrained(16), seconds=seconds)
    assert set(seconds) == {
        "quality_generate", "quality_lenet", "quality_prdc", "quality_fid_class", "quality_consistency"
    }  # fmt: skip
    assert all(value > 0 for value in seconds.values())


def test_fid_grows_with_noise(evaluator, digits):
    fids = [
        evaluator.score_images(noisy(digits.test_images, sigma), digits.test_labels)["fid_lenet"]
        for sigma in (0.0, 0.1, 0.3, 0.6, 1.0)
    ]
    assert fids == sorted(fids) and len(set(fids)) == len(fids), fids


def test_real_images_score_a_high_inception_score_and_class_consistency(evaluator, real_scores, untrained_scores):
    assert real_scores["is_lenet"] > 7.5  # 8.7 measured over 10 splits of 36; at most 10 classes
    assert untrained_scores["is_lenet"] < 1.5  # an untrained generator's images all look the same
    assert real_scores["class_consistency"] == evaluator.classifier.test_accuracy
    assert real_scores["classifier_test_acc"] == evaluator.classifier.test_accuracy
    assert untrained_scores["class_consistency"] < 0.3


def test_same_seed_same_numbers(digits, classifier_cache, evaluator, untrained_scores, real_scores):
    # a second evaluator reads the classifier and the real-image features from the caches the first one wrote
    again = QualityEvaluator(digits, lenet_only(fid_samples=N), CPU, classifier_cache, seed=0)
    assert torch.equal(again.noise(100), evaluator.noise(100))
    assert again.score_generator(untrained()) == untrained_scores
    assert again.score_images(digits.test_images, digits.test_labels) == real_scores


def test_evaluation_set_is_fixed_and_balanced(evaluator):
    assert torch.equal(evaluator.labels, torch.arange(N) % 10)
    assert evaluator.noise(100).shape == (N, 100)
    assert torch.equal(evaluator.noise(100), torch.randn(N, 100, generator=torch.Generator().manual_seed(0)))
    assert evaluator.noise(64).shape == (N, 64)


def test_training_mode_is_restored(evaluator):
    generator = untrained(16)
    generator.train()
    evaluator.score_generator(generator)
    assert generator.training
    generator.eval()
    evaluator.score_generator(generator)
    assert not generator.training


def test_teacher_fidelity_is_the_mean_l1_to_the_teacher(evaluator):
    student = untrained(16, seed=1)
    assert evaluator.score_generator(student, copy.deepcopy(student))["teacher_fidelity_l1"] == 0.0
    # untrained generators draw almost flat gray images, so the teacher here is the student pushed towards white
    teacher = Brighter(untrained(32, seed=2), 0.25)
    scores = evaluator.score_generator(student, teacher)
    assert teacher.training and teacher.inner.training  # the teacher's mode is restored too
    with torch.no_grad():
        z, y = evaluator.noise(100), evaluator.labels
        expected = (student.eval()(z, y) - teacher.eval()(z, y)).abs().mean().item()
    assert scores["teacher_fidelity_l1"] == pytest.approx(expected, rel=1e-6)
    assert scores["teacher_fidelity_l1"] == pytest.approx(0.25, abs=0.01)


class Brighter(nn.Module):
    """A generator whose images are ``offset`` brighter than those of ``inner``."""

    def __init__(self, inner: nn.Module, offset: float) -> None:
        super().__init__()
        self.inner, self.offset = inner, offset
        self.nz, self.num_classes = inner.nz, inner.num_classes  # the family contract the evaluator reads

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.inner(z, labels) + self.offset).clamp(-1, 1)


def test_real_statistics_are_cached_and_generated_ones_never(evaluator, classifier_cache):
    cache = classifier_cache / "fidelity"
    evaluator.score_generator(untrained(16))
    before = sorted(p.name for p in cache.iterdir())
    name = f"lenet-digits-d{evaluator.data_tag}-w{evaluator.classifier.weights_sha}-n1437"
    assert f"{name}-{LENET_EXTRACTOR}-features-features.pt" in before
    assert f"{name}-{LENET_EXTRACTOR}-stat-fid-features.pt" in before
    evaluator.score_generator(untrained(24, seed=5))
    assert sorted(p.name for p in cache.iterdir()) == before


def test_reference_rows(evaluator, real_scores, untrained_scores):
    rows = evaluator.reference_rows(untrained())
    assert [row["reference"] for row in rows] == ["real-test", "untrained"]
    assert {k: v for k, v in rows[0].items() if k != "reference"} == real_scores
    assert {k: v for k, v in rows[1].items() if k != "reference"} == untrained_scores
    for row in rows:
        assert all(isinstance(row[k], float) for k in ("density_lenet", "coverage_lenet", "fid_class_lenet"))


def test_mismatched_generators_and_images_are_user_errors(evaluator, digits):
    with pytest.raises(QualityError, match="shape"):
        evaluator.score_generator(untrained(16, image_size=32))
    with pytest.raises(QualityError, match="classes"):
        evaluator.score_generator(untrained(16, num_classes=5))
    with pytest.raises(QualityError, match="shape"):
        evaluator.score_images(torch.zeros(20, 3, 28, 28), digits.test_labels[:20])
    with pytest.raises(QualityError, match="labels"):
        evaluator.score_images(digits.test_images[:20], digits.test_labels[:10])
    assert issubclass(QualityError, UserError)


def test_uint8_images_dataset():
    pixels = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(Uint8Images(pixels)[2], pixels[2])
    rgb = Uint8Images(pixels, rgb=True)[1]
    assert rgb.shape == (3, 28, 28) and all(torch.equal(c, pixels[1, 0]) for c in rgb)
    assert len(Uint8Images(pixels)) == 4
    with pytest.raises(ValueError, match="uint8"):
        Uint8Images(pixels.float())


# A second domain backbone: the same five scores on another architecture and training (bench/metrics/backbones.py)


@pytest.fixture(scope="session")
def two_backbones(digits, classifier_cache) -> QualityEvaluator:
    spec = QualitySpec(fid_samples=N, backbones=("lenet", "resnet"))
    return QualityEvaluator(digits, spec, CPU, classifier_cache, seed=0)


@pytest.fixture(scope="session")
def two_backbone_rows(two_backbones) -> list[dict]:
    return two_backbones.reference_rows(untrained())


def test_second_backbone_adds_its_columns_in_registry_order_and_leaves_the_lenet_ones(
    two_backbone_rows, real_scores, untrained_scores
):
    real, untrained_row = ({k: v for k, v in row.items() if k != "reference"} for row in two_backbone_rows)
    assert list(real) == LENET_KEYS + RESNET_KEYS + OWN_KEYS + BOOKKEEPING_KEYS
    assert list(real)[: -len(OWN_KEYS + BOOKKEEPING_KEYS)] == list(quality_columns({"lenet", "resnet"}))
    assert all(isinstance(real[k], float) and math.isfinite(real[k]) for k in RESNET_KEYS)
    # the LeNet's numbers do not depend on which other backbones are scored beside it
    assert {k: real[k] for k in KEYS} == real_scores
    assert {k: untrained_row[k] for k in KEYS} == untrained_scores


def test_second_backbone_separates_real_images_from_noise_and_untrained(two_backbones, two_backbone_rows, digits):
    real, untrained_row = two_backbone_rows
    noise = torch.randn(N, 1, 28, 28, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    gaussian = two_backbones.score_images(noise, digits.test_labels)
    # its embedding is pooled, so its FIDs are smaller numbers than the LeNet's: compare them within a backbone
    assert 0 <= real["fid_resnet"] < 0.5  # 0.076 measured
    assert untrained_row["fid_resnet"] > 300 * real["fid_resnet"]  # 63.3 measured
    assert gaussian["fid_resnet"] > 100 * real["fid_resnet"]  # 20.6 measured
    assert real["kid_resnet"] < 0.01 * min(gaussian["kid_resnet"], untrained_row["kid_resnet"])
    assert real["precision_resnet"] > 0.8 and real["recall_resnet"] > 0.8
    assert untrained_row["recall_resnet"] < 0.05
    # label smoothing keeps its softmax below certainty, so the real IS stays further from 10 than the LeNet's
    assert real["is_resnet"] > 5 and untrained_row["is_resnet"] < 1.5  # 5.59 and 1.00 measured


def test_second_backbone_is_timed_and_cached_apart(two_backbones, classifier_cache):
    seconds: dict[str, float] = {}
    two_backbones.score_generator(untrained(16), seconds=seconds)
    assert {"quality_lenet", "quality_resnet"} <= set(seconds)
    resnet = two_backbones.classifiers["resnet"]
    assert resnet.weights_sha != two_backbones.classifier.weights_sha
    name = f"resnet-digits-d{two_backbones.data_tag}-w{resnet.weights_sha}-n1437"
    extractor = BACKBONES["resnet"].feature_extractor
    assert (classifier_cache / "fidelity" / f"{name}-{extractor}-stat-fid-features.pt").is_file()


# Inception-v3: wiring only, with random weights in torch-fidelity's own architecture. Never real numbers.


class _RandomInception(tfi.FeatureExtractorInceptionV3):
    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None  # keep the random initialisation


@pytest.fixture(scope="session")
def random_inception_weights(tmp_path_factory) -> Path:
    """A state_dict of torch-fidelity's InceptionV3 with random (He-normal) weights, saved like the real one."""
    folder = tmp_path_factory.mktemp("inception")
    empty = folder / "empty.pt"
    torch.save({}, empty)
    torch.manual_seed(0)
    model = _RandomInception("random", ["2048"], feature_extractor_weights_path=str(empty))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")  # keeps activations O(1) through 90 layers
    path = folder / "inception-random.pt"
    torch.save(model.state_dict(), path)
    return path


def small(dataset: data.ImageDataset, n_train: int, n_test: int) -> data.ImageDataset:
    return replace(
        dataset,
        name="digits-small",
        train_images=dataset.train_images[:n_train],
        train_labels=dataset.train_labels[:n_train],
        test_images=dataset.test_images[:n_test],
        test_labels=dataset.test_labels[:n_test],
    )


def score_tiny(digits, tmp_path, monkeypatch, **weights: str) -> tuple[QualityEvaluator, dict]:
    """An untrained generator scored with the pretrained networks of ``weights`` on a tiny digits set, with a
    quick LeNet: only the wiring counts."""
    lenet = BACKBONES["lenet"]
    monkeypatch.setitem(BACKBONES._entries, "lenet", replace(lenet, recipe=replace(lenet.recipe, min_steps=20)))
    evaluator = QualityEvaluator(small(digits, 12, 10), lenet_only(fid_samples=10, **weights), CPU, tmp_path)
    return evaluator, evaluator.score_generator(untrained(16))


def test_inception_metrics_are_wired_offline(digits, random_inception_weights, tmp_path, monkeypatch):
    _, scores = score_tiny(digits, tmp_path, monkeypatch, inception_weights=str(random_inception_weights))
    assert list(scores) == LENET_KEYS + OWN_KEYS + INCEPTION_KEYS + BOOKKEEPING_KEYS
    assert all(math.isfinite(scores[k]) for k in INCEPTION_KEYS)
    assert scores["is_inception"] >= 1.0 - 1e-6
    assert scores["quality_n_fake"] == 10 and scores["quality_n_real"] == 12
    cached = [p.name for p in (tmp_path / "fidelity").iterdir()]
    assert any(name.startswith("inception-digits-small-") and "-stat-fid-2048" in name for name in cached)


# CLIP: wiring only, with a tiny random ViT in torch-fidelity's own CLIP architecture. Never real numbers.


@pytest.fixture(scope="session")
def tiny_clip_weights(tmp_path_factory) -> Path:
    """A state_dict laid out as OpenAI's CLIP (``visual.*`` and ``text_projection``): a one-layer ViT, 64 wide,
    patches of 16 on 32x32 images, a 32-d embedding; ``build_model`` infers all of it from the tensors."""
    torch.manual_seed(0)
    visual = CLIPVisual(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16)
    path = tmp_path_factory.mktemp("clip") / "clip-tiny.pt"
    torch.save({**visual.state_dict(), "text_projection": torch.zeros(16, 32)}, path)
    return path


def test_clip_metrics_are_wired_offline(digits, tiny_clip_weights, tmp_path, monkeypatch):
    evaluator, scores = score_tiny(digits, tmp_path, monkeypatch, clip_weights=str(tiny_clip_weights))
    assert list(scores) == LENET_KEYS + OWN_KEYS + CLIP_KEYS + BOOKKEEPING_KEYS
    assert all(math.isfinite(scores[k]) for k in CLIP_KEYS)
    assert scores["fid_clip"] >= 0 and 0 <= scores["precision_clip"] <= 1
    cached = [p.name for p in (tmp_path / "fidelity").iterdir()]
    assert any(name.startswith("clip-digits-small-") and "-features-clip" in name for name in cached)
    # the real side in CLIP's space: its features of the 12 training images, 32-d
    assert evaluator._space("clip").real_features.shape == (12, 32)


def test_weights_of_another_network_are_refused_for_clip(digits, digits_weights_file, tiny_clip_weights, tmp_path):
    with pytest.raises(WeightsError, match="does not fit CLIP") as info:
        QualityEvaluator(digits, lenet_only(fid_samples=10, clip_weights=str(digits_weights_file)), CPU, tmp_path)
    assert "\n" not in str(info.value) and str(digits_weights_file) in str(info.value)
    with pytest.raises(WeightsError, match="--clip-weights .*: no such file"):
        QualityEvaluator(digits, lenet_only(fid_samples=10, clip_weights=str(tmp_path / "no.pt")), CPU, tmp_path)


# DINOv2: wiring only, with a tiny random ViT laid out as Meta's released checkpoints. Never real numbers.


@pytest.fixture(scope="session")
def tiny_dinov2_weights(tmp_path_factory) -> Path:
    """A state_dict with the names and layout of Meta's DINOv2 files: two blocks 64 wide (one head), patches of 14,
    positional embeddings for a 2x2 grid (28x28 images), random weights."""
    torch.manual_seed(0)
    vit = DinoV2ViT(dim=64, depth=2, hidden=256, patch=14, trained_grid=2)
    with torch.no_grad():
        for parameter in vit.parameters():
            parameter.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("dinov2") / "dinov2-tiny.pt"
    torch.save(vit.state_dict(), path)
    return path


def test_dinov2_metrics_are_wired_offline(digits, tiny_dinov2_weights, tmp_path, monkeypatch):
    evaluator, scores = score_tiny(digits, tmp_path, monkeypatch, dinov2_weights=str(tiny_dinov2_weights))
    assert list(scores) == LENET_KEYS + OWN_KEYS + DINOV2_KEYS + BOOKKEEPING_KEYS
    assert all(math.isfinite(scores[k]) for k in DINOV2_KEYS)
    space = evaluator._space("dinov2")
    assert space.real_features.shape == (12, 64)  # the class token of each of the 12 training images
    saved = torch.load(tiny_dinov2_weights, weights_only=True)
    vit = space.extractor.model
    assert vit.state_dict().keys() == saved.keys()  # Meta's names, every one of them
    assert torch.equal(vit.blocks[1].attn.qkv.weight, saved["blocks.1.attn.qkv.weight"])
    # torch-fidelity resizes to 224: the 2x2 grid of positions is interpolated to 16x16, the class token's kept
    positions = vit._positions(16 * 16, 16, 16)
    assert positions.shape == (1, 1 + 16 * 16, 64) and torch.equal(positions[:, 0], saved["pos_embed"][:, 0])
    assert torch.equal(vit._positions(4, 2, 2), saved["pos_embed"])  # the trained grid: as stored


def test_files_that_are_not_dinov2_vits_are_refused(digits, digits_weights_file, tiny_dinov2_weights, tmp_path):
    giant = torch.load(tiny_dinov2_weights, weights_only=True)
    giant["blocks.0.mlp.w12.weight"] = giant.pop("blocks.0.mlp.fc1.weight")  # ViT-g/14's SwiGLU
    torch.save(giant, tmp_path / "giant.pt")
    for path, reason in [(digits_weights_file, "not a DINOv2 state_dict"), (tmp_path / "giant.pt", "ViT-g/14")]:
        spec = lenet_only(fid_samples=10, dinov2_weights=str(path))
        with pytest.raises(WeightsError, match=f"--dinov2-weights .* does not fit DINOv2: {reason}"):
            QualityEvaluator(digits, spec, CPU, tmp_path)


def test_pretrained_networks_tell_real_digits_from_noise_even_with_random_weights(
    digits, tiny_clip_weights, tiny_dinov2_weights, tmp_path, monkeypatch
):
    """The features depend on the images: with random weights, real test digits still score far closer to the
    training digits than noise does, on CLIP's and DINOv2's embeddings alike (100 training digits, 40 scored)."""
    lenet = BACKBONES["lenet"]
    monkeypatch.setitem(BACKBONES._entries, "lenet", replace(lenet, recipe=replace(lenet.recipe, min_steps=20)))
    spec = lenet_only(fid_samples=40, clip_weights=str(tiny_clip_weights), dinov2_weights=str(tiny_dinov2_weights))
    dataset = small(digits, 100, 40)
    evaluator = QualityEvaluator(dataset, spec, CPU, tmp_path)
    real = evaluator.score_images(dataset.test_images, dataset.test_labels)
    noise = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise_scores = evaluator.score_images(noise, dataset.test_labels)
    for name in ("clip", "dinov2"):
        assert 0 <= real[f"fid_{name}"] < noise_scores[f"fid_{name}"] / 10, name
        assert real[f"kid_{name}"] < noise_scores[f"kid_{name}"], name


def test_missing_inception_weights_is_a_user_error(digits, tmp_path):
    spec = lenet_only(fid_samples=10, inception_weights=str(tmp_path / "nope.pt"))
    with pytest.raises(UserError, match="no such file") as info:
        QualityEvaluator(digits, spec, CPU, tmp_path)
    assert isinstance(info.value, WeightsError)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.glob("classifier-*.pt"))  # refused before any classifier training


@pytest.mark.parametrize("content", ["garbage", "lenet"])
def test_unusable_inception_weights_are_a_user_error(digits, digits_weights_file, tmp_path, content):
    path = tmp_path / "inception.pt"
    if content == "garbage":
        path.write_bytes(b"this is not a checkpoint")
    else:
        path.write_bytes(digits_weights_file.read_bytes())
    with pytest.raises(WeightsError) as info:
        QualityEvaluator(digits, lenet_only(fid_samples=10, inception_weights=str(path)), CPU, tmp_path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.fixture
def digits_weights_file(evaluator) -> Path:
    return evaluator.classifier.weights_path


def test_failed_inception_download_is_a_user_error(digits, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tfi, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match="--inception-weights PATH"):
        QualityEvaluator(digits, lenet_only(fid_samples=10, inception_download=True), CPU, tmp_path)


def test_code_carrying_inception_weights_are_refused(digits, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"fn": print}, path)  # a pickled callable: weights_only=True refuses it
    with pytest.raises(WeightsError, match="cannot be loaded safely"):
        QualityEvaluator(digits, lenet_only(fid_samples=10, inception_weights=str(path)), CPU, tmp_path)


# Real MNIST (skipped when absent): the classifier and the real-image features persist in pytest's cache folder,
# so only the first run pays for training (about a minute on 2 CPU cores).


def test_mnist_real_test_split_scores_like_real_data(mnist_root, request, tmp_path):
    mnist = data.get_dataset("mnist", mnist_root)
    store = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    cache = Path(store.mkdir("gan-kd-bench-quality")) if store is not None else tmp_path
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the classifier's training on 60,000 images: both cores cut it from 56 s to 39 s
    try:
        evaluator = QualityEvaluator(mnist, lenet_only(fid_samples=10_000, batch_size=1000), CPU, cache)
    finally:
        torch.set_num_threads(threads)
    assert evaluator.classifier.test_accuracy >= 0.99
    scores = evaluator.score_images(mnist.test_images, mnist.test_labels)
    assert scores["is_lenet"] > 9  # 9.67 measured
    assert scores["class_consistency"] == evaluator.classifier.test_accuracy
    assert scores["fid_lenet"] < 5
    assert quality_columns({"lenet"}) == tuple(LENET_KEYS)


def test_every_scored_model_is_read_through_the_family_contract():
    """A quantized generator has no family config: its noise size comes from the contract, not a fallback of 100."""
    from compress.quantize import quantize

    generator = gans.build("dcgan", 32, nz=64, num_classes=7)[0].eval()
    assert contract_of(quantize(generator, "fp16")) == (64, 7)
    assert contract_of(quantize(generator, "int8")) == (64, 7)
    with pytest.raises(QualityError, match="declares no noise size and class count"):
        contract_of(nn.Linear(2, 2))
