"""Control errors (label errors, wrapping, an oracle and a noisy estimator on the tiny generator) and identity
consistency (all on CPU, small)."""

from __future__ import annotations

import math

import pytest
import torch

from aniportrait.config import TINY
from aniportrait.eval import EvalError
from aniportrait.eval.control import control_errors, estimate_labels, identity_consistency, label_errors
from aniportrait.eval.inception import FIDInception

FRONT = math.pi / 2


# --------------------------------------------------------------------------------------------------------------------
# Control errors


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


def test_estimate_labels_returns_the_readings_in_row_order(generator, body):
    """The readings come back as the estimator gave them, batch after batch, and control_errors is label_errors of
    them (a bias shows in them with its sign)."""
    labels = _labels(5)
    seen = []

    def shifted(images, faces):
        start = sum(seen)
        seen.append(images.shape[0])
        sl = slice(start, start + images.shape[0])
        return {k: labels[k][sl] + (0.05 if k == "camera" else 0.0) for k in ("camera", "pose", "expression")}

    estimated = estimate_labels(generator, body, labels, shifted, stage=1, batch_size=2)
    assert seen == [2, 2, 1]
    torch.testing.assert_close(estimated["camera"], labels["camera"] + 0.05)
    torch.testing.assert_close(estimated["pose"], labels["pose"])
    seen.clear()
    errors = control_errors(generator, body, labels, shifted, stage=1, batch_size=2)
    assert errors == label_errors(estimated, labels)
    assert errors["camera_deg"] == pytest.approx(math.degrees(0.05), rel=1e-4)
    with pytest.raises(EvalError, match="disagree on N"):
        estimate_labels(generator, body, {**labels, "pose": labels["pose"][:2]}, shifted)


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
