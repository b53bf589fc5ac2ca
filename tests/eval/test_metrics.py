"""Evaluation metrics: FID / KID, the FID Inception extractor and its weights loader, control errors, identity
consistency (all on CPU, small)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from aniportrait.config import TINY
from aniportrait.eval import EvalError
from aniportrait.eval.control import control_errors, identity_consistency, label_errors
from aniportrait.eval.inception import FIDInception, load_fid_inception, state_dict_mismatch
from aniportrait.eval.metrics import (
    extract_features,
    fid_kid,
    frechet_distance,
    kernel_inception_distance,
)

FRONT = math.pi / 2


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: the many tiny convolutions of the test-size Inception spend most of their time waiting on
    each other's OpenMP threads on a small, busy CPU (seconds instead of milliseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
# Inception


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


def test_inception_names_and_fid_variant():
    full = FIDInception()
    assert full.feature_dim == 2048
    sd = full.state_dict()
    for key in (
        "Conv2d_1a_3x3.conv.weight",
        "Conv2d_1a_3x3.bn.running_mean",
        "Mixed_5b.branch1x1.conv.weight",
        "Mixed_5b.branch_pool.conv.weight",
        "Mixed_6e.branch7x7dbl_5.bn.running_var",
        "Mixed_7c.branch3x3dbl_3b.conv.weight",
        "fc.weight",
    ):
        assert key in sd, key
    assert tuple(sd["fc.weight"].shape) == (1008, 2048)
    assert tuple(sd["Conv2d_1a_3x3.conv.weight"].shape) == (32, 3, 3, 3)
    assert tuple(sd["Mixed_7c.branch_pool.conv.weight"].shape) == (192, 2048, 1, 1)
    assert sum(p.numel() for p in full.parameters()) == 23_850_960  # torchvision Inception3 (no aux) + 1008 classes
    assert full.Mixed_7b.pool == "avg" and full.Mixed_7c.pool == "max"
    # same parameter names at any width
    assert set(FIDInception.tiny().state_dict()) == set(sd)


def test_avg_pools_do_not_count_padding():
    model = FIDInception.tiny()
    block = model.Mixed_5b
    # a constant input: an avg pool that ignores padding keeps the constant at the border
    x = torch.ones(1, block.branch1x1.conv.in_channels, 5, 5)
    from aniportrait.eval.inception import _avg_pool_no_pad

    assert torch.equal(_avg_pool_no_pad(x), x)


def test_weights_roundtrip_and_bad_files(tmp_path):
    full = FIDInception()
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    state = {k: v for k, v in full.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)  # like the published file (a plain dict of tensors)
    loaded = load_fid_inception(path)
    for key, value in full.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(1, 3, 80, 80) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded(x), full(x), atol=1e-6)

    with pytest.raises(EvalError, match="not found"):
        load_fid_inception(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(EvalError, match="not a safely loadable"):
        load_fid_inception(junk)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(EvalError, match="not a safely loadable"):
        load_fid_inception(evil)

    wrong = tmp_path / "wrong.pth"
    torch.save(FIDInception.tiny().state_dict(), wrong)
    with pytest.raises(EvalError, match="mis-shaped"):
        load_fid_inception(wrong)
    renamed = dict(state)
    renamed["AuxLogits.fc.weight"] = renamed.pop("fc.weight")
    torch.save(renamed, wrong)
    with pytest.raises(EvalError, match="missing keys \\(fc.weight\\).*unexpected keys \\(AuxLogits.fc.weight\\)"):
        load_fid_inception(wrong)
    torch.save([1, 2, 3], wrong)
    with pytest.raises(EvalError, match="expected a state_dict"):
        load_fid_inception(wrong)
    assert state_dict_mismatch(full, state) is None


# --------------------------------------------------------------------------------------------------------------------
# Control errors and the synthetic estimator


def _labels(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    camera = torch.tensor([[FRONT, FRONT]]).repeat(n, 1) + 0.2 * (torch.rand(n, 2, generator=g) - 0.5)
    pose = 0.3 * (torch.rand(n, 6, 3, generator=g) - 0.5)
    expression = torch.rand(n, TINY.z_exp_dim, generator=g) - 0.5
    return {"camera": camera, "pose": pose, "expression": expression, "seeds": list(range(n))}


def test_label_errors_groups_and_wrapping():
    true = {"camera": torch.zeros(2, 2), "pose": torch.zeros(2, 6, 3), "expression": torch.zeros(2, 64)}
    est = {k: v.clone() for k, v in true.items()}
    est["camera"][:, 1] = 2 * math.pi + math.radians(10)  # wraps to 10 degrees
    est["pose"][:, 3] = math.radians(4)  # head joint 15
    est["pose"][:, 4] = math.radians(8)  # shoulder joint 16
    est["expression"][:, 0] = 0.4
    est["expression"][:, 10] = 5.0  # not a coefficient the synthetic world uses
    err = label_errors(est, true)
    assert err["camera_yaw_deg"] == pytest.approx(10) and err["camera_pitch_deg"] == pytest.approx(0, abs=1e-9)
    assert err["camera_deg"] == pytest.approx(5)
    assert err["head_pose_deg"] == pytest.approx(4 / 2)  # 1 of 2 joints moved
    assert err["shoulder_pose_deg"] == pytest.approx(8 / 4)  # 1 of 4 joints moved
    assert err["expression"] == pytest.approx(0.1)
    assert err["count"] == 2
    with pytest.raises(EvalError):
        label_errors({}, true)


def test_control_errors_oracle_and_noisy(generator, body):
    labels = _labels(3)
    calls = []

    def oracle(images, faces):
        assert images.shape == (images.shape[0], 3, TINY.lr_img_size, TINY.lr_img_size)
        assert images.min() >= -1 and images.max() <= 1
        start = sum(calls)
        calls.append(images.shape[0])
        sl = slice(start, start + images.shape[0])
        return {k: labels[k][sl] for k in ("camera", "pose", "expression")}

    exact = control_errors(generator, body, labels, oracle, stage=1, batch_size=2)
    assert calls == [2, 1]
    for key in ("camera_deg", "head_pose_deg", "shoulder_pose_deg", "expression"):
        assert exact[key] == pytest.approx(0.0, abs=1e-5), key
    calls.clear()
    g = torch.Generator().manual_seed(1)

    def noisy(images, faces):
        out = oracle(images, faces)
        return {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in out.items()}

    err = control_errors(generator, body, labels, noisy, stage=1, batch_size=4)
    for key in ("camera_deg", "head_pose_deg", "shoulder_pose_deg", "expression"):
        assert err[key] > 0.01, key
    assert err["camera_deg"] == pytest.approx(math.degrees(0.1) * math.sqrt(2 / math.pi), rel=0.8)


# --------------------------------------------------------------------------------------------------------------------
# Identity consistency


def _controls(k, vary=True):
    camera = torch.tensor([[FRONT, FRONT]]).repeat(k, 1)
    pose = torch.zeros(k, 6, 3)
    expression = torch.zeros(k, TINY.z_exp_dim)
    if vary:
        camera[:, 1] += torch.linspace(-0.2, 0.2, k)
        pose[:, 3, 1] = torch.linspace(-0.3, 0.3, k)
        expression[:, 0] = torch.linspace(0, 1, k)
    return {"camera": camera, "pose": pose, "expression": expression}


def test_identity_consistency_tiny_generator(generator, body):
    def flat(x):
        return x.flatten(1)

    # identical controls: a seed's renders are identical, so same-identity similarity is exactly 1 >= different
    out = identity_consistency(generator, body, [0, 1, 2], _controls(2, vary=False), flat, use="both")
    assert out["same_identity"] == pytest.approx(1.0, abs=1e-6)
    assert out["same_identity"] >= out["different_identity"] and out["gap"] >= 0
    # varied controls with the tiny random Inception: finite numbers in [-1, 1]
    torch.manual_seed(0)
    out = identity_consistency(generator, body, [0, 1], _controls(2), FIDInception.tiny(), use="face")
    for key in ("same_identity", "different_identity", "gap"):
        assert math.isfinite(out[key])
    assert -1 <= out["different_identity"] <= 1 and -1 <= out["same_identity"] <= 1
    assert out["seeds"] == 2 and out["controls"] == 2
    with pytest.raises(EvalError):
        identity_consistency(generator, body, [0], _controls(2), flat)


class _ColourGenerator(torch.nn.Module):
    """A stand-in generator: a flat identity colour plus a small control-dependent pattern."""

    config = TINY

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def default_face_size(self, stage):
        return 8

    def render_train(self, body, z_id, z_noise, betas, expression, camera, pose, *, face_size, stage, impl):
        colour = torch.tanh(z_id[:, :3])[:, :, None, None]
        ramp = torch.linspace(-1, 1, face_size)[None, None, :, None]
        pattern = 0.1 * torch.sin(camera[:, 1, None, None, None] * 7 + pose[:, 3, 1, None, None, None] * 5) * ramp
        image = (colour + pattern).expand(-1, 3, face_size, face_size).clamp(-1, 1)
        return {"image": image, "face": image}


def test_identity_consistency_identity_sensitive_features():
    def mean_colour(x):  # positive features; colour = identity
        return x.mean(dim=(2, 3)) + 2.0

    out = identity_consistency(_ColourGenerator(), None, [0, 1, 2, 3], _controls(3), mean_colour)
    assert out["same_identity"] > out["different_identity"]
    assert out["gap"] > 0
