"""How a grid scores its models: the quality metrics' settings, checked when made."""

from __future__ import annotations

from dataclasses import dataclass

from bench.base.errors import UserError
from bench.metrics.backbones import BACKBONES, PRIMARY

MAX_FID_SAMPLES = 1_000_000


@dataclass(frozen=True)
class QualitySpec:
    """How generated samples are scored (bench/metrics/quality.py)."""

    fid_samples: int = 1000
    kid_subsets: int = 100  # torch-fidelity's default; KID's cost grows linearly with it
    inception_weights: str | None = None
    inception_download: bool = False
    # state_dicts of pretrained networks (bench/metrics/pretrained.py): FID, KID, precision/recall on each
    clip_weights: str | None = None
    dinov2_weights: str | None = None
    batch_size: int = 500
    # domain backbones scored (bench/metrics/backbones.py): two of different architecture and training, so that the
    # report can show whether they rank the models alike (Kendall's tau); each costs its training once per dataset
    # and seed (cached) and its scores of every model
    backbones: tuple[str, ...] = ("lenet", "resnet")

    def __post_init__(self) -> None:
        object.__setattr__(self, "backbones", tuple(self.backbones))
        for name in self.backbones:
            BACKBONES.check(name)
        if len(set(self.backbones)) != len(self.backbones) or PRIMARY not in self.backbones:
            raise UserError(
                f"--backbones must be distinct and include {PRIMARY} (class consistency, density/coverage and "
                f"per-class FID rest on it), got {','.join(self.backbones) or 'none'}"
            )
