"""Pretrained feature networks read from weight files: Inception-v3, CLIP and DINOv2, through torch-fidelity.

Nothing is downloaded unless asked (``--inception-download``); a weights file is given by its flag, checked once
before any training (it exists, loads with ``torch.load(weights_only=True)``, builds the network) and tagged by a
hash of its bytes, which names the real-data features cached with it. Each network scores the metrics its
features suit: Inception-v3 FID, IS (on its 1008 logits) and KID on the 2048-d pool features; CLIP and DINOv2
FID, KID and precision/recall on their image embeddings (no IS: an embedding is not a class distribution).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from bench.base.errors import CheckpointError, UserError
from bench.base.io import file_sha256, is_file
from bench.engine.checkpoints import safe_torch_load
from bench.metrics.clip import CLIP_EXTRACTOR
from bench.metrics.dinov2 import DINOV2_EXTRACTOR
from bench.metrics.settings import QualitySpec


class WeightsError(UserError):
    """A ``--*-weights`` flag names no usable file, or weights could not be downloaded."""


@dataclass(frozen=True)
class PretrainedNet:
    """A torch-fidelity feature network whose weights the user gives as a file."""

    name: str  # the suffix of its columns (``fid_{name}``)
    title: str  # its name in messages
    flag: str  # the command-line flag that names its weights file
    extractor: str  # its name in torch-fidelity's registry
    feature: str  # one feature it provides: what building it as a check asks for
    metrics: tuple[str, ...]  # the torch-fidelity metrics it scores (isc, fid, kid, prc)


INCEPTION = PretrainedNet(
    "inception", "Inception-v3", "--inception-weights", "inception-v3-compat", "2048", ("isc", "fid", "kid")
)
CLIP = PretrainedNet("clip", "CLIP", "--clip-weights", CLIP_EXTRACTOR, "clip", ("fid", "kid", "prc"))
DINOV2 = PretrainedNet("dinov2", "DINOv2", "--dinov2-weights", DINOV2_EXTRACTOR, "dinov2", ("fid", "kid", "prc"))
PRETRAINED = (INCEPTION, CLIP, DINOV2)


@dataclass(frozen=True)
class ResolvedWeights:
    """A pretrained network to score with: its weights file (None: torch-fidelity downloads them) and a tag of
    their content."""

    net: PretrainedNet
    path: str | None
    tag: str


def weights_paths(spec: QualitySpec) -> dict[str, str | None]:
    """{network name: the weights file ``spec`` names for it, or None}."""
    return {INCEPTION.name: spec.inception_weights, CLIP.name: spec.clip_weights, DINOV2.name: spec.dinov2_weights}


def asked_networks(spec: QualitySpec) -> list[PretrainedNet]:
    """The pretrained networks ``spec`` asks for: those with a weights file, and Inception to download."""
    paths = weights_paths(spec)
    return [net for net in PRETRAINED if paths[net.name] or (net is INCEPTION and spec.inception_download)]


def resolve_pretrained(spec: QualitySpec) -> list[ResolvedWeights]:
    """Every pretrained network ``spec`` asks for, its weights checked; one-line errors."""
    resolved = []
    paths = weights_paths(spec)
    for net in asked_networks(spec):
        if paths[net.name]:
            resolved.append(_checked_file(net, Path(paths[net.name]).expanduser()))
        else:
            _build(net, None)
            resolved.append(ResolvedWeights(net, None, Path(URL_INCEPTION_V3).stem))  # the name holds its hash
    return resolved


def _checked_file(net: PretrainedNet, path: Path) -> ResolvedWeights:
    if not is_file(path):
        raise WeightsError(f"{net.flag} {path}: no such file")
    try:
        safe_torch_load(path)
    except CheckpointError:
        raise WeightsError(
            f"{net.flag} {path} cannot be loaded safely: it is corrupt or holds more than tensors "
            "(torch.load with weights_only=True refused it)"
        ) from None
    _build(net, str(path))
    return ResolvedWeights(net, str(path), "sha" + file_sha256(path)[:16])


def _build(net: PretrainedNet, path: str | None) -> None:
    """Build ``net`` from ``path`` (None: download it), so that a file that does not fit fails before training."""
    try:
        FEATURE_EXTRACTORS_REGISTRY[net.extractor](
            net.extractor, [net.feature], feature_extractor_weights_path=path, verbose=False
        )
    except Exception as err:  # a wrong state_dict (RuntimeError, KeyError), a failed download (URLError, OSError)
        text = str(err).strip()
        first = text.splitlines()[0].rstrip(":") if text else type(err).__name__
        if path is None:
            raise WeightsError(
                f"the {net.title} weights could not be downloaded ({first}): pass {net.flag} PATH instead"
            ) from None
        raise WeightsError(f"{net.flag} {path} does not fit {net.title}: {first}") from None
