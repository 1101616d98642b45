"""torch-fidelity's feature-space scores (FID, KID, precision/recall) in torch, on the features' own device.

torch-fidelity computes them on the CPU in NumPy (FID, KID) or copies every distance block back to it
(precision/recall); on a GPU that turns a few milliseconds of kernels into seconds per model. These functions
compute the same quantities where the features already are, and ``tests/test_torch_scores.py`` checks each
against torch-fidelity's own function on the same features. The numerical choices, where they differ:

- FID: mean and covariance in float64 (torch-fidelity keeps the mean in the features' dtype). The trace of the
  matrix square root of ``sigma1 @ sigma2`` is the sum of the square roots of the eigenvalues of the symmetric
  ``sqrt(sigma1) @ sigma2 @ sqrt(sigma1)`` (the same eigenvalues), both from symmetric eigendecompositions in
  float64; torch-fidelity takes the general eigenvalues of the product, which a GPU has no kernel for.
  Eigenvalues below zero (rounding, or a singular covariance) count as zero, as torch-fidelity's complex square
  root gives them no real part.
- KID: the same subsets, drawn by the same ``numpy.random.RandomState(rng_seed)`` calls in the same order
  (``choice`` without replacement, first set then second, subset after subset); the polynomial kernel and the
  unbiased MMD estimate of every subset in float64 (torch-fidelity: the features' dtype), batched over subsets;
  the mean and the population standard deviation (``np.std``) over subsets.
- Precision/recall: torch-fidelity's k-NN radii (the (k+1)-th smallest distance, the point itself being the
  first) and ball membership, from ``torch.cdist`` in the features' dtype over the same row and column blocks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_fidelity.helpers import get_kwarg
from torch_fidelity.metric_fid import KEY_METRIC_FID
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL

KERNEL_ELEMENTS = 1 << 24  # kernel entries per batch of KID subsets: 128 MiB of float64 per kernel matrix


def fid_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (mean, covariance) of (n, d) ``features`` in float64 on their device (covariance with n - 1, as
    ``np.cov``)."""
    x = features.double()
    mu = x.mean(dim=0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """FID between two Gaussians: |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrt(sigma1 sigma2)), in float64."""
    mu1, sigma1, mu2, sigma2 = (t.double() for t in (mu1, sigma1, mu2, sigma2))
    values, vectors = torch.linalg.eigh(sigma1)
    root = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    inner = root @ sigma2 @ root
    inner = (inner + inner.T) / 2  # symmetric up to rounding: eigvalsh reads one triangle
    tr_covmean = torch.linalg.eigvalsh(inner).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * tr_covmean)


def kid_subsets(n1: int, n2: int, subsets: int, subset_size: int, rng_seed: int | None) -> tuple[np.ndarray, ...]:
    """The (subsets, subset_size) row indices of each side, drawn exactly as torch-fidelity's
    ``kid_features_to_metric`` draws them."""
    if n1 < subset_size or n2 < subset_size:
        raise ValueError(f"KID subset size {subset_size} exceeds the number of samples ({n1} and {n2})")
    rng = np.random.RandomState(rng_seed)
    first, second = [], []
    for _ in range(subsets):
        first.append(rng.choice(n1, subset_size, replace=False))
        second.append(rng.choice(n2, subset_size, replace=False))
    return np.stack(first), np.stack(second)


def _kernel(x: torch.Tensor, y: torch.Tensor, degree: int, gamma: float, coef0: float) -> torch.Tensor:
    return (x @ y.mT * gamma + coef0) ** degree


def kid(
    features_1: torch.Tensor, features_2: torch.Tensor, subsets: int, subset_size: int, rng_seed: int | None,
    degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
) -> tuple[float, float]:  # fmt: skip
    """KID (mean, std over subsets): the unbiased MMD^2 estimate with the polynomial kernel
    ``(x.y * gamma + coef0) ** degree`` (gamma = 1 / d by default), on torch-fidelity's subsets."""
    if features_1.shape[1] != features_2.shape[1]:
        raise ValueError(f"features of {features_1.shape[1]} and {features_2.shape[1]} dimensions")
    device, m = features_1.device, subset_size
    gamma = 1.0 / features_1.shape[1] if gamma is None else gamma
    rows = [torch.from_numpy(i).to(device) for i in kid_subsets(len(features_1), len(features_2), subsets, m, rng_seed)]
    first, second = features_1.double(), features_2.to(device).double()
    batch = max(1, KERNEL_ELEMENTS // (m * m))
    mmds = []
    for start in range(0, subsets, batch):
        x, y = first[rows[0][start : start + batch]], second[rows[1][start : start + batch]]  # (b, m, d)
        k_xx, k_yy = _kernel(x, x, degree, gamma, coef0), _kernel(y, y, degree, gamma, coef0)
        off_diagonal = k_xx.sum((1, 2)) - k_xx.diagonal(dim1=1, dim2=2).sum(1)
        off_diagonal += k_yy.sum((1, 2)) - k_yy.diagonal(dim1=1, dim2=2).sum(1)
        cross = _kernel(x, y, degree, gamma, coef0).sum((1, 2))
        mmds.append(off_diagonal / (m * (m - 1)) - 2 * cross / (m * m))
    mmds = torch.cat(mmds)
    return float(mmds.mean()), float(mmds.std(correction=0))


def _cdist_blocks(rows: torch.Tensor, columns: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([torch.cdist(rows, block) for block in columns.split(batch_size)], dim=1)


def knn_radii(features: torch.Tensor, neighborhood: int, batch_size: int = 10000) -> torch.Tensor:
    """Each row's distance to its ``neighborhood``-th nearest other row (the row itself is the nearest)."""
    return torch.cat([
        _cdist_blocks(block, features, batch_size).kthvalue(neighborhood + 1, dim=1).values
        for block in features.split(batch_size)
    ])  # fmt: skip


def share_inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch_size: int = 10000) -> float:
    """The share of ``queries`` within the radius of at least one of ``centres``."""
    inside = [
        (_cdist_blocks(block, centres, batch_size) <= radii).any(dim=1).float() for block in queries.split(batch_size)
    ]
    return torch.cat(inside).mean().item()


def precision_recall(
    fake: torch.Tensor, real: torch.Tensor, neighborhood: int = 3, batch_size: int = 10000
) -> tuple[float, float]:
    """(precision, recall), Kynkaanniemi et al. 2019: the share of generated rows inside some real row's k-NN ball,
    and of real rows inside some generated row's."""
    real = real.to(fake.device)
    recall = share_inside(real, fake, knn_radii(fake, neighborhood, batch_size), batch_size)
    precision = share_inside(fake, real, knn_radii(real, neighborhood, batch_size), batch_size)
    return precision, recall


def featuresdict_scores(
    fake: dict[str, torch.Tensor], real: dict[str, torch.Tensor], layers: dict[str, str],
    real_fid: dict[str, np.ndarray] | None, prc_real_rows: torch.Tensor, device: torch.device, **options,
) -> dict[str, float]:  # fmt: skip
    """FID, KID and precision/recall under torch-fidelity's result keys, on ``device``: what its
    ``fid_statistics_to_metric``, ``kid_featuresdict_to_metric`` and ``prc_featuresdict_to_metric`` return for
    the same features, ``real_fid`` (its statistics of ``real``) and ``options`` (its keyword arguments)."""
    scores: dict[str, float] = {}
    if real_fid is not None:
        mu, sigma = fid_statistics(fake[layers["fid"]].to(device))
        real_mu, real_sigma = (torch.as_tensor(real_fid[key]).to(device, torch.float64) for key in ("mu", "sigma"))
        scores[KEY_METRIC_FID] = frechet_distance(mu, sigma, real_mu, real_sigma)
    if "kid" in layers:
        if get_kwarg("kid_kernel", options) != "poly":
            raise ValueError("only KID's polynomial kernel is computed in torch")
        scores[KEY_METRIC_KID_MEAN], scores[KEY_METRIC_KID_STD] = kid(
            fake[layers["kid"]].to(device), real[layers["kid"]].to(device), get_kwarg("kid_subsets", options),
            get_kwarg("kid_subset_size", options), get_kwarg("rng_seed", options),
            degree=get_kwarg("kid_kernel_poly_degree", options), gamma=get_kwarg("kid_kernel_poly_gamma", options),
            coef0=get_kwarg("kid_kernel_poly_coef0", options),
        )  # fmt: skip
    if "prc" in layers:
        real_rows = real[layers["prc"]][prc_real_rows.cpu()].to(device)
        scores[KEY_METRIC_PRECISION], scores[KEY_METRIC_RECALL] = precision_recall(
            fake[layers["prc"]].to(device), real_rows, get_kwarg("prc_neighborhood", options),
            get_kwarg("prc_batch_size", options),
        )  # fmt: skip
    return scores
