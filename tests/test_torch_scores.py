"""The torch scores equal torch-fidelity's on the same features (run here on the CPU), and the evaluator takes them
only for features on a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

from bench.metrics import quality, torch_scores


def features(rows: int, dim: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """Correlated float64 features: a random linear map of Gaussian rows, ReLU'd as a network's would be."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=generator, dtype=torch.float64) / dim**0.5
    x = torch.randn(rows, dim, generator=generator, dtype=torch.float64) * scale + shift
    return torch.relu(x @ mixing)


@pytest.mark.parametrize(("rows_fake", "rows_real", "dim"), [(300, 400, 64), (200, 500, 128), (100, 300, 128)])
def test_fid_equals_torch_fidelity(rows_fake, rows_real, dim):
    fake, real = features(rows_fake, dim, 1, shift=0.3, scale=1.2), features(rows_real, dim, 2)
    ours = torch_scores.frechet_distance(*torch_scores.fid_statistics(fake), *torch_scores.fid_statistics(real))
    theirs = fid_statistics_to_metric(fid_features_to_statistics(fake), fid_features_to_statistics(real), False)
    assert ours == pytest.approx(theirs[KEY_METRIC_FID], rel=1e-5)  # 100 rows of 128: a singular covariance
    same = features(rows_real, dim, 2)
    assert torch_scores.frechet_distance(*torch_scores.fid_statistics(same), *torch_scores.fid_statistics(real)) == (
        pytest.approx(0.0, abs=1e-5)
    )


def test_fid_statistics_are_numpys():
    x = features(50, 16, 3)
    mu, sigma = torch_scores.fid_statistics(x)
    assert np.allclose(mu.numpy(), x.numpy().mean(0), atol=1e-12)
    assert np.allclose(sigma.numpy(), np.cov(x.numpy(), rowvar=False), atol=1e-12)


@pytest.mark.parametrize(("subsets", "size", "seed"), [(10, 100, 0), (25, 50, 1314), (4, 200, 7)])
def test_kid_equals_torch_fidelity_mean_and_std(subsets, size, seed):
    fake, real = features(300, 64, 4, shift=0.1), features(400, 64, 5)
    mean, std = torch_scores.kid(fake, real, subsets, size, seed)
    theirs = kid_features_to_metric(fake, real, kid_subsets=subsets, kid_subset_size=size, rng_seed=seed,
                                    verbose=False)  # fmt: skip
    assert mean == pytest.approx(theirs[KEY_METRIC_KID_MEAN], rel=1e-5, abs=1e-9)
    assert std == pytest.approx(theirs[KEY_METRIC_KID_STD], rel=1e-5, abs=1e-9)
    assert std > 0 and mean > 0


def test_kid_subsets_are_torch_fidelitys_draws():
    first, second = torch_scores.kid_subsets(30, 40, 3, 10, 2020)
    rng = np.random.RandomState(2020)
    for i in range(3):
        assert (first[i] == rng.choice(30, 10, replace=False)).all()
        assert (second[i] == rng.choice(40, 10, replace=False)).all()
    with pytest.raises(ValueError, match="subset size 50"):
        torch_scores.kid_subsets(30, 40, 3, 50, 0)


def test_kid_batches_of_subsets_give_the_same_numbers(monkeypatch):
    fake, real = features(200, 64, 6), features(200, 64, 7)
    whole = torch_scores.kid(fake, real, 9, 100, 3)
    monkeypatch.setattr(torch_scores, "KERNEL_ELEMENTS", 2 * 100 * 100)  # 2 subsets per batch, the last alone
    assert torch_scores.kid(fake, real, 9, 100, 3) == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize(("k", "batch"), [(3, 10000), (5, 10000), (3, 64)])
def test_precision_recall_equal_torch_fidelity(k, batch):
    fake, real = features(300, 128, 8, shift=0.05, scale=1.1), features(300, 128, 9)
    ours = torch_scores.precision_recall(fake, real, k, batch)
    theirs = prc_features_to_metric(fake, real, prc_neighborhood=k, prc_batch_size=batch, save_cpu_ram=True,
                                    verbose=False)  # fmt: skip
    assert ours == pytest.approx((theirs[KEY_METRIC_PRECISION], theirs[KEY_METRIC_RECALL]), abs=1e-6)
    assert 0 < ours[0] < 1 and 0 < ours[1] < 1


def space(extractor: nn.Module) -> quality.FeatureSpace:
    real = {"f": features(500, 64, 10)}
    stats = fid_features_to_statistics(real["f"])
    layers = {"fid": "f", "kid": "f", "prc": "f"}
    return quality.FeatureSpace("toy", extractor, layers, False, real, stats)


def test_the_evaluators_scores_are_the_same_on_either_path(monkeypatch):
    fake = {"f": features(300, 64, 11, shift=0.2)}
    options = dict(kid_subset_size=100, kid_subsets=10, rng_seed=1314, save_cpu_ram=True, verbose=False)
    rows = torch.randperm(500, generator=torch.Generator().manual_seed(0))[:300]
    cpu = space(nn.Linear(1, 1)).scores(fake, options, rows)  # torch-fidelity's functions
    calls, torch_path = [], torch_scores.featuresdict_scores

    def on_the_cpu(*args, **kwargs):  # the torch path, run on the CPU
        calls.append(args[5])
        return torch_path(*args[:5], torch.device("cpu"), **kwargs)

    monkeypatch.setattr(quality, "_device_of", lambda module, default: torch.device("cuda"))
    monkeypatch.setattr(torch_scores, "featuresdict_scores", on_the_cpu)
    gpu = space(nn.Linear(1, 1)).scores(fake, options, rows)
    assert calls == [torch.device("cuda")]
    assert set(gpu) == set(cpu) == {KEY_METRIC_FID, KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, KEY_METRIC_PRECISION,
                                    KEY_METRIC_RECALL}  # fmt: skip
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
