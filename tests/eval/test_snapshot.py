"""The training-snapshot metrics on the tiny generator: deterministic, finite, loggable; at least two images."""

from __future__ import annotations

import json
import math

import pytest
import torch

from aniportrait.data import synth
from aniportrait.data.dataset import PortraitDataset
from aniportrait.eval import EvalError
from aniportrait.eval.control import control_errors
from aniportrait.eval.estimator import builtin_estimator
from aniportrait.eval.snapshot import KEYS as KEYS_OF_ERRORS
from aniportrait.eval.snapshot import snapshot_metrics


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return PortraitDataset(synth.synthesize(tmp_path_factory.mktemp("snap") / "ds", 12, res=64, seed=9, progress=False))


KEYS = ("ctl_camera_deg", "ctl_head_deg", "ctl_shoulder_deg", "ctl_expression", "fid_est")


@pytest.mark.parametrize("stage", [1, 2])
def test_snapshot_metrics_tiny_generator(generator, body, tiny_dataset, stage):
    state = torch.get_rng_state()
    out = snapshot_metrics(generator, body, tiny_dataset, num=10, seed=3, stage=stage, impl="ref")
    assert torch.equal(torch.get_rng_state(), state)
    assert set(out) == set(KEYS) and all(math.isfinite(v) and v >= 0 for v in out.values()), out
    again = snapshot_metrics(generator, body, tiny_dataset, num=10, seed=3, stage=stage, impl="ref")
    assert again == pytest.approx(out, rel=1e-5, abs=1e-6)
    json.dumps(out)  # plain floats, loggable


def test_snapshot_control_errors_are_control_errors_of_the_same_rows(generator, body, tiny_dataset):
    """The snapshot reads the rows it draws as :func:`control_errors` reads them (one render path for both)."""
    out = snapshot_metrics(generator, body, tiny_dataset, num=6, seed=5, impl="ref")
    g = torch.Generator().manual_seed(5)
    rows = torch.randperm(len(tiny_dataset), generator=g)[:6].tolist()
    labels = tiny_dataset.rows(rows, ("camera", "pose", "expression", "id", "betas"))
    labels["z_noise"] = torch.randn(6, generator.config.z_noise_dim, generator=g)
    errors = control_errors(generator, body, labels, builtin_estimator(), impl="ref", batch_size=4)
    for key, snapshot_key in KEYS_OF_ERRORS.items():
        assert out[snapshot_key] == pytest.approx(errors[key], rel=1e-5, abs=1e-6), key


def test_snapshot_metrics_needs_two_images(generator, body, tiny_dataset):
    with pytest.raises(EvalError, match="at least 2"):
        snapshot_metrics(generator, body, tiny_dataset, num=1)
