"""The training-snapshot metrics on the tiny generator: deterministic, finite, loggable; at least two images."""

from __future__ import annotations

import json
import math

import pytest
import torch

from aniportrait.data import synth
from aniportrait.data.dataset import PortraitDataset
from aniportrait.eval import EvalError
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


def test_snapshot_metrics_needs_two_images(generator, body, tiny_dataset):
    with pytest.raises(EvalError, match="at least 2"):
        snapshot_metrics(generator, body, tiny_dataset, num=1)
