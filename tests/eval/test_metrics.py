"""Evaluation metrics: FID / KID, and feature extraction through the FID Inception (all on CPU, small). The
Inception itself is tested in ``test_inception.py``, control errors and identity consistency in ``test_control.py``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from aniportrait.eval import EvalError
from aniportrait.eval.inception import FIDInception
from aniportrait.eval.metrics import (
    extract_features,
    fid_kid,
    frechet_distance,
    kernel_inception_distance,
)

# --------------------------------------------------------------------------------------------------------------------
# FID / KID


def _gaussian(n, d, seed, shift=0.0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_identical_sets_score_zero():
    a = _gaussian(300, 8, 0)
    assert abs(frechet_distance(a, a)) < 1e-6
    # KID of a set with itself is ~0 up to the O(1/m) term of the cross-kernel's diagonal
    big = _gaussian(2000, 8, 0)
    kid = kernel_inception_distance(big, big, subsets=2, subset_size=2000)
    shifted = kernel_inception_distance(big, big + 0.5, subsets=2, subset_size=2000)
    assert abs(kid["kid"]) < 0.01 and abs(kid["kid"]) < 0.02 * shifted["kid"]
    assert kid["kid_x100"] == pytest.approx(100 * kid["kid"])


def test_scores_grow_with_shift():
    a = _gaussian(400, 8, 0)
    base = _gaussian(400, 8, 1)
    fids, kids = [], []
    for shift in (0.0, 0.25, 0.5, 1.0, 2.0):
        b = base + shift
        fids.append(frechet_distance(a, b))
        kids.append(kernel_inception_distance(a, b, subsets=20, subset_size=200)["kid"])
    assert all(x < y for x, y in itertools.pairwise(fids)), fids
    assert all(x < y for x, y in itertools.pairwise(kids)), kids
    assert fids[0] < 0.5 and abs(kids[0]) < 0.05
    # for equal covariances FID is the squared mean distance: 8 dims x 2^2
    assert fids[-1] == pytest.approx(32.0, rel=0.15)


def test_fid_matches_direct_formula_and_torch_input():
    a = _gaussian(50, 5, 2) * np.array([1, 2, 0.5, 1, 3])
    b = _gaussian(60, 5, 3) + 0.3
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert frechet_distance(a, b) == pytest.approx(direct, rel=1e-9)
    assert frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(direct, rel=1e-4)


def test_fid_singular_covariance_is_finite():
    a = _gaussian(5, 20, 0)  # N < D: singular covariances
    b = _gaussian(5, 20, 1)
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 0


def test_kid_unbiased_mmd_matches_direct():
    a, b = _gaussian(30, 4, 0), _gaussian(30, 4, 1) + 0.5
    kid = kernel_inception_distance(a, b, subsets=1, subset_size=30)  # a single full "subset": permuted rows only

    def k(x, y):
        return (x @ y.T / 4 + 1) ** 3

    m = 30
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    direct = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    assert kid["kid"] == pytest.approx(direct, rel=1e-9)
    assert kid["kid_std"] == 0.0 and kid["subset_size"] == 30


def test_metric_errors():
    with pytest.raises(EvalError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(EvalError):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(EvalError):
        kernel_inception_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
    out = fid_kid(_gaussian(20, 3, 0), _gaussian(20, 3, 1), subsets=3, subset_size=10)
    assert {"fid", "kid_x100", "kid_std_x100"} <= set(out)


# --------------------------------------------------------------------------------------------------------------------
# Features (extract_features, on the test-size Inception)


def test_tiny_inception_features_and_extract():
    torch.manual_seed(0)
    model = FIDInception.tiny()
    images = torch.rand(5, 3, 48, 40) * 2 - 1
    feats = model(images)
    assert feats.shape == (5, model.feature_dim) and torch.isfinite(feats).all()
    assert feats.std(dim=0).max() > 0  # different images, different features
    # extract_features re-batches an iterable of differently sized batches and dict items
    items = [{"image": images[:2]}, {"image": images[2]}, {"image": images[3:]}]
    out = extract_features(model, items, batch_size=2, key="image")
    assert out.shape == (5, model.feature_dim) and out.dtype == np.float64
    np.testing.assert_allclose(out, feats.double().detach().numpy(), rtol=1e-4, atol=1e-6)
    assert extract_features(model, images, batch_size=3, limit=4).shape == (4, model.feature_dim)
    with pytest.raises(EvalError):
        extract_features(model, items, batch_size=2)  # dict items need key=
