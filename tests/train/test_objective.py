"""The loss terms of each phase: their weights, and the deformation terms of the generator phase (how the loop applies
them, per-discriminator clipping and the reals' grid, is tested in ``test_loop.py``)."""

import math

import pytest
import torch

from aniportrait.models.discriminator import TINY_DISCRIMINATOR, MultiDiscriminator
from aniportrait.train.config import TrainConfig
from aniportrait.train.loop import Trainer
from aniportrait.train.objective import Objective
from tests.train.train_helpers import FAST, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "ds")


def _batch(n=2, size=16):
    g = torch.Generator().manual_seed(0)
    images = {k: torch.rand(n, 3, size, size, generator=g) * 2 - 1 for k in ("image", "face")}
    return {**images, "camera": torch.full((n, 2), math.pi / 2) + 0.1 * torch.randn(n, 2, generator=g)}


def test_camera_regression_carries_d_whole_weight():
    torch.manual_seed(0)
    D = MultiDiscriminator(TINY_DISCRIMINATOR)
    real, fake = _batch(), _batch()
    base = Objective(TrainConfig(pos_lambda=1.0, real_pos_lambda=1.0), D).discriminator(real, fake)[0]["d_camera"]
    heavier = Objective(TrainConfig(pos_lambda=1.0, real_pos_lambda=1.0, weight_whole=0.4), D)
    assert heavier.discriminator(real, fake)[0]["d_camera"].item() == pytest.approx(4 * base.item(), rel=1e-6)
    whole = D.whole(real["image"])[:, 1:3]
    expected = 0.1 * (torch.nn.functional.mse_loss(whole, real["camera"]))
    expected = expected + 0.1 * torch.nn.functional.mse_loss(D.whole(fake["image"])[:, 1:3], fake["camera"])
    assert base.item() == pytest.approx(expected.item(), rel=1e-5)


def test_adversarial_terms_are_weighted_per_discriminator():
    torch.manual_seed(0)
    D = MultiDiscriminator(TINY_DISCRIMINATOR)
    real, fake = _batch(), _batch()
    one = Objective(TrainConfig(weight_whole=1.0, weight_face=1.0, weight_torso=1.0), D).discriminator(real, fake)[0]
    paper = Objective(TrainConfig(), D).discriminator(real, fake)[0]
    for key, weight in (("d_whole", 0.1), ("d_face", 1.0), ("d_torso", 0.5)):
        assert paper[key].item() == pytest.approx(weight * one[key].item(), rel=1e-6), key


def test_generator_phase_has_the_deformation_terms_and_no_pose_smoothness_without_a_trained_smoother(dataset, tmp_path):
    frozen = Trainer(TrainConfig(total_steps=1, train_smoother=False, **FAST), dataset, tmp_path / "a", progress=False)
    stats = frozen.train_step(0)
    for key in ("imitation", "exp_smooth", "minimal", "g_whole", "g_face", "g_torso", "g_camera"):
        assert math.isfinite(stats[key]), key
    assert "pose_smooth" not in stats, "no gradient path: not computed"
    trained = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "b", progress=False)
    assert "pose_smooth" in trained.train_step(0)
