"""The label samplers: the label bank, the identity bank, and camera/pose, identity and expression draws (CPU, a
tiny dataset)."""

import pytest
import torch

from aniportrait.data.dataset import PortraitDataset
from aniportrait.data.format import LABEL_SHAPES
from aniportrait.data.samplers import (
    LabelBank,
    id_bank,
    sample_camera_pose,
    sample_expression,
    sample_identity,
)


@pytest.fixture
def bank(dataset_dir) -> LabelBank:
    return LabelBank.from_dataset(dataset_dir)


def _row_of(bank_values: torch.Tensor, value: torch.Tensor) -> int:
    """The bank row equal to ``value`` (each row is unique in the random test bank)."""
    matches = (bank_values.flatten(1) == value.flatten()).all(dim=1).nonzero().flatten()
    assert len(matches) == 1, "drawn value is not a bank row"
    return int(matches[0])


def test_label_bank(dataset_dir, bank):
    assert len(bank) == 6 and bank.pose.shape == (6, 6, 3) and bank.camera.dtype == torch.float32
    from_ds = LabelBank.from_dataset(PortraitDataset(dataset_dir))
    for key in LABEL_SHAPES:
        torch.testing.assert_close(getattr(from_ds, key), getattr(bank, key))
    ids = id_bank(bank)
    assert ids.shape == (6, 90)
    torch.testing.assert_close(ids[:, :80], bank.id)
    torch.testing.assert_close(ids[:, 80:], bank.betas)
    with pytest.raises(ValueError, match="expected"):
        LabelBank(**{**{k: getattr(bank, k) for k in LABEL_SHAPES}, "pose": torch.zeros(6, 18)})


def test_id_bank_feeds_sample_identity_latents(bank):
    from aniportrait.config import GeneratorConfig
    from aniportrait.models.generator import sample_identity_latents

    config = GeneratorConfig()
    if config.z_id_dim != 80:
        pytest.skip("the default generator does not take 80-d 3DMM identities")
    z_id, _, betas = sample_identity_latents(config, [0, 1], id_bank=id_bank(bank))
    for z, b in zip(z_id, betas):
        row = _row_of(bank.id, z)
        torch.testing.assert_close(b, bank.betas[row])


@pytest.mark.parametrize("mode", ["paired", "independent"])
def test_sample_camera_pose_deterministic(bank, mode):
    a = sample_camera_pose(bank, 16, torch.Generator().manual_seed(5), mode=mode)
    b = sample_camera_pose(bank, 16, torch.Generator().manual_seed(5), mode=mode)
    c = sample_camera_pose(bank, 16, torch.Generator().manual_seed(6), mode=mode)
    assert a[0].shape == (16, 2) and a[1].shape == (16, 6, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_sample_camera_pose_paired_keeps_rows(bank):
    camera, pose = sample_camera_pose(bank, 64, torch.Generator().manual_seed(0), mode="paired")
    for cam, p in zip(camera, pose):
        row = _row_of(bank.camera, cam)
        assert torch.equal(p, bank.pose[row])


def test_sample_camera_pose_independent_mixes_pairs(bank):
    camera, pose = sample_camera_pose(bank, 64, torch.Generator().manual_seed(0), mode="independent")
    mixed = 0
    for cam, p in zip(camera, pose):
        cam_row = _row_of(bank.camera, cam)
        pair_rows = [_row_of(bank.pose[:, list(pair)], p[list(pair)]) for pair in ((0, 3), (1, 4), (2, 5))]
        mixed += len({cam_row, *pair_rows}) > 1
    assert mixed > 48  # with 6 rows, all four draws agree for 1/216 of samples


def test_sample_identity_and_expression(bank):
    gen = torch.Generator().manual_seed(1)
    ids, betas = sample_identity(bank, 32, gen)
    assert ids.shape == (32, 80) and betas.shape == (32, 10)
    for i, b in zip(ids, betas):
        assert torch.equal(b, bank.betas[_row_of(bank.id, i)])  # drawn jointly
    expression = sample_expression(bank, 32, torch.Generator().manual_seed(1))
    assert expression.shape == (32, 64)
    for e in expression:
        _row_of(bank.expression, e)
    again = sample_identity(bank, 32, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], ids) and torch.equal(again[1], betas)
    with pytest.raises(ValueError, match="mode"):
        sample_camera_pose(bank, 2, gen, mode="eg3d")
