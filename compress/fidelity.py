"""A derived model checked against the float model it was made from, on fixed seeded inputs.

A derived model (quantized, or any later kind made from a finished generator without training) is only worth
scoring if it computes what its source computes, up to the error its method is expected to add. A wrong kernel
(oneDNN's int8 transposed convolution on VNNI CPUs) gives images as far from the source's as noise is, and those
images would be scored, timed and reported as a compressed model. So every derived model is run beside its source
on the same inputs when it is made; beyond its method's tolerance it is a ``mismatch``, not a result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bench.base.layout import SOURCE_CHECKED

CHECK_SEED = 20_261_207  # fixed: every derived model of every grid is checked on the same inputs
CHECK_SAMPLES = 256


@dataclass(frozen=True)
class Tolerance:
    """The largest mean and largest single |derived - source| a method may add, on images in [-1, 1]."""

    mean_abs: float
    max_abs: float


@dataclass(frozen=True)
class SourceCheck:
    """How far a derived model's images are from its source's on the check inputs, and whether that is allowed."""

    mean_abs_err: float
    max_abs_err: float
    tolerance: Tolerance

    @property
    def ok(self) -> bool:
        # NaN compares False: a model that outputs NaN is a mismatch
        return self.mean_abs_err <= self.tolerance.mean_abs and self.max_abs_err <= self.tolerance.max_abs

    @property
    def reason(self) -> str:
        """One line saying why the model is a mismatch (empty when it is not)."""
        if self.ok:
            return ""
        return (
            f"output differs from its float source by {self.mean_abs_err:.3g} on average (tolerance "
            f"{self.tolerance.mean_abs:g}) and {self.max_abs_err:.3g} at most (tolerance {self.tolerance.max_abs:g})"
        )

    def columns(self) -> dict[str, float]:
        """The ``results.csv`` columns of the check."""
        return {
            SOURCE_CHECKED: self.mean_abs_err,
            "source_max_abs_err": self.max_abs_err,
            "source_tolerance_mean": self.tolerance.mean_abs,
            "source_tolerance_max": self.tolerance.max_abs,
        }


def check_inputs(nz: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed (z, labels) every derived model is checked on: seeded N(0, 1) noise, every class in turn."""
    z = torch.randn(CHECK_SAMPLES, nz, generator=torch.Generator().manual_seed(CHECK_SEED))
    return z, torch.arange(CHECK_SAMPLES) % num_classes


@torch.no_grad()
def check_against_source(model: nn.Module, source: nn.Module, tolerance: Tolerance) -> SourceCheck:
    """``model``'s images against ``source``'s on ``check_inputs``, both on the CPU (where int8 runs)."""
    z, labels = check_inputs(source.nz, source.num_classes)
    expected = source.cpu().eval()(z, labels).float()
    produced = model.cpu().eval()(z, labels).float()
    if produced.shape != expected.shape:
        return SourceCheck(math.inf, math.inf, tolerance)
    error = (produced - expected).abs()
    return SourceCheck(float(error.mean()), float(error.max()), tolerance)
