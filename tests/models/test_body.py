"""Body model: posing and the release's inverse skinning."""

import numpy as np
import pytest
import torch

from aniportrait.constants import (
    FACE_TY,
    FACE_TZ,
    SMPL_SCALE,
)
from aniportrait.geometry import euler_zyx_to_matrix
from aniportrait.models.body import BodyModel, to_face_frame
from aniportrait.models.rig import rig_valid_index
from aniportrait.models.smpl_file import BodyModelError
from tests.helpers import RELEASE_SMPL_BUFFERS

HEAD, NECK = 15, 12
POSE_HEAD = 3  # row of joint 15 in the [B, 6, 3] pose


def _apply(transforms, points):
    return (transforms[..., :3, :3] @ points[..., None])[..., 0] + transforms[..., :3, 3]


def _canonical(body, betas):
    verts, _ = body.inverse_skinning(betas, torch.zeros(len(betas), 6, 3))
    return verts


# ---------------------------------------------------------------------------------------------------------------------
# Rotations


def test_body_model_from_file(rig, body, tmp_path):
    path, index_path = tmp_path / "smpl.npz", tmp_path / "valid.npy"
    np.savez(path, **rig)
    np.save(index_path, rig_valid_index(rig))
    loaded = BodyModel.from_file(path, index_path)
    torch.testing.assert_close(loaded.state_dict(), body.state_dict())
    torch.testing.assert_close(loaded.valid_index, body.valid_index)
    with pytest.raises(BodyModelError, match="distinct vertex ids"):
        BodyModel.from_arrays(rig, np.array([0, 0, 7000]))


# ---------------------------------------------------------------------------------------------------------------------
# BodyModel


def test_body_state_dict_matches_release_keys(body):
    state = body.state_dict()
    assert set(state) == {f"smpl_model.{key}" for key in RELEASE_SMPL_BUFFERS}
    for key, (shape, dtype) in RELEASE_SMPL_BUFFERS.items():
        assert state[f"smpl_model.{key}"].shape == shape and state[f"smpl_model.{key}"].dtype == dtype, key


@pytest.mark.parametrize("batch", [1, 3])
def test_inverse_skinning_zero_pose_is_identity(body, batch):
    betas = torch.randn(batch, 10)
    verts, transforms = body.inverse_skinning(betas, torch.zeros(batch, 6, 3))
    num_valid = body.valid_index.numel()
    assert verts.shape == (batch, num_valid, 3) and transforms.shape == (batch, num_valid, 4, 4)
    torch.testing.assert_close(transforms, torch.eye(4).expand_as(transforms), atol=1e-5, rtol=0)
    torch.testing.assert_close(_apply(transforms, verts), verts, atol=1e-5, rtol=0)


def test_inverse_skinning_head_pose_rotates_only_the_head(body):
    betas = torch.randn(1, 10)
    pose = torch.zeros(1, 6, 3)
    pose[0, POSE_HEAD] = torch.tensor([0.2, -0.4, 0.3])
    canonical = _canonical(body, betas)[0]
    verts, transforms = body.inverse_skinning(betas, pose)
    weights = body.smpl_model.lbs_weights[body.valid_index]
    head_joint = body.joints(betas, torch.zeros(1, 6, 3))[0, HEAD]
    rotation = euler_zyx_to_matrix(pose[0, POSE_HEAD])
    rigid_head = weights[:, HEAD] > 1 - 1e-6
    expected = (canonical - head_joint) @ rotation.T + head_joint
    torch.testing.assert_close(verts[0, rigid_head], expected[rigid_head], atol=1e-5, rtol=0)
    torso = weights[:, [NECK, HEAD]].sum(1) < 1e-9
    torch.testing.assert_close(verts[0, torso], canonical[torso], atol=1e-6, rtol=0)
    torch.testing.assert_close(transforms[0, torso], torch.eye(4).expand(int(torso.sum()), 4, 4), atol=1e-6, rtol=0)
    assert (verts[0, rigid_head] - canonical[rigid_head]).norm(dim=-1).max() > 0.03


def test_inverse_skinning_recovers_canonical_vertices(body):
    betas, pose = torch.randn(3, 10), 0.3 * torch.randn(3, 6, 3)
    canonical = _canonical(body, betas)
    verts, transforms = body.inverse_skinning(betas, pose)
    error = (_apply(transforms, verts) - canonical).norm(dim=-1)
    # posedirs are zero, so the inverse is exact wherever all of a vertex's joints share one canonical transform
    # (the mean pose separates 15, 16/18 and 17/19 from the rest); blends across those groups are approximate.
    weights = body.smpl_model.lbs_weights[body.valid_index]
    groups = [[15], [16, 18], [17, 19], [j for j in range(24) if j not in (15, 16, 17, 18, 19)]]
    single = torch.stack([weights[:, g].sum(1) for g in groups], 1).max(1).values > 1 - 1e-6
    assert single.float().mean() > 0.9
    assert error[:, single].max() < 1e-5
    assert error.max() < 0.05


def test_mean_shape_inverse_skinning_maps_every_shape_to_the_mean_shapes_vertices(body):
    """With ``mean_shape`` a posed vertex of any body shape goes to that vertex of the betas-0 canonical mesh (where
    the release's canonical space keeps the identity's shape): the same body spot, one canonical point."""
    torch.manual_seed(0)
    betas, pose = 1.5 * torch.randn(3, 10), 0.3 * torch.randn(3, 6, 3)
    mean = _canonical(body, torch.zeros(1, 10))
    own = _canonical(body, betas)
    assert (own - mean).norm(dim=-1).max() > 0.02, "the shapes must differ for the test to mean anything"
    verts, transforms = body.inverse_skinning(betas, pose, mean_shape=True)
    plain_verts, plain = body.inverse_skinning(betas, pose)
    assert torch.equal(verts, plain_verts)
    torch.testing.assert_close(transforms[..., :3, :3], plain[..., :3, :3])  # the shape offset is a translation
    error = (_apply(transforms, verts) - mean).norm(dim=-1)
    plain_error = (_apply(plain, verts) - own).norm(dim=-1)
    torch.testing.assert_close(error, plain_error, atol=1e-5, rtol=0)
    still, _ = body.inverse_skinning(betas, torch.zeros(3, 6, 3), mean_shape=True)
    zero_pose = body.inverse_skinning(betas, torch.zeros(3, 6, 3), mean_shape=True)[1]
    torch.testing.assert_close(_apply(zero_pose, still), mean.expand_as(still), atol=1e-5, rtol=0)


def test_joints_follow_the_neck(body):
    betas, pose = torch.zeros(2, 10), torch.zeros(2, 6, 3)
    pose[1, 0] = torch.tensor([0.0, 0.0, 0.5])  # neck pitch
    joints = body.joints(betas, pose)
    assert joints.shape == (2, 24, 3)
    torch.testing.assert_close(joints[1, NECK], joints[0, NECK])
    offset = joints[0, HEAD] - joints[0, NECK]
    torch.testing.assert_close(joints[1, HEAD] - joints[1, NECK], euler_zyx_to_matrix(pose[1, 0]) @ offset)
    torch.testing.assert_close(joints[:, :12], joints[:1, :12].expand(2, -1, -1))


def test_canonical_mesh_is_the_zero_pose_mesh_with_its_joints(body):
    betas = torch.randn(3, 10)
    verts, joints = body.canonical_mesh(betas)
    assert verts.shape == (3, body.smpl_model.v_template.shape[0], 3) and joints.shape == (3, 24, 3)
    torch.testing.assert_close(verts[:, body.valid_index], _canonical(body, betas))
    torch.testing.assert_close(joints, body.joints(betas, torch.zeros(3, 6, 3)))
    with pytest.raises(ValueError, match=r"betas must have shape \[B, 10\]"):
        body.canonical_mesh(torch.zeros(2, 9))


def test_inverse_skinning_gradients():
    body = BodyModel.procedural(dtype=torch.float64)
    betas = torch.randn(1, 10, dtype=torch.float64, requires_grad=True)
    pose = (0.3 * torch.randn(1, 6, 3, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(body.inverse_skinning, (betas, pose), fast_mode=True)


@pytest.mark.parametrize(
    "betas, pose, message",
    [
        (torch.zeros(2, 9), torch.zeros(2, 6, 3), r"betas must have shape \[B, 10\]"),
        (torch.zeros(2, 10), torch.zeros(2, 5, 3), r"pose must have shape \[B, 6, 3\] with B = 2"),
        (torch.zeros(2, 10), torch.zeros(3, 6, 3), r"pose must have shape \[B, 6, 3\] with B = 2"),
        (torch.zeros(0, 10), torch.zeros(0, 6, 3), r"betas must have shape \[B, 10\]"),
        (torch.zeros(1, 10), torch.full((1, 6, 3), float("nan")), "pose must be a finite"),
        (torch.zeros(1, 10, dtype=torch.long), torch.zeros(1, 6, 3), "betas must be a finite floating"),
    ],
    ids=["betas-9", "pose-5", "batch-mismatch", "empty", "nan", "int"],
)
def test_inverse_skinning_rejects_bad_inputs(body, betas, pose, message):
    with pytest.raises(ValueError, match=message):
        body.inverse_skinning(betas, pose)


def test_to_face_frame_maps_the_face_offset_to_the_origin():
    neck = torch.tensor([[0.1, 0.2, 0.3]])
    face = neck + torch.tensor([0.0, FACE_TY, FACE_TZ]) * SMPL_SCALE
    torch.testing.assert_close(to_face_frame(face[:, None], neck), torch.zeros(1, 1, 3), atol=1e-7, rtol=0)


@pytest.mark.parametrize("correctives", [False, True])
def test_smpl_forward_equals_smplx(correctives):
    """The body's own SMPL forward (joints without skinning, pose correctives only where the model has any) gives
    smplx's vertices and joints."""
    body = BodyModel.procedural()
    if correctives:  # the procedural rig has none; give it some, as SMPL has
        generator = torch.Generator().manual_seed(0)
        posedirs = body.smpl_model.posedirs
        assert not body.pose_correctives
        body.smpl_model.posedirs = 0.01 * torch.randn(posedirs.shape, generator=generator)
        assert body.pose_correctives
    betas = torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    rotations = euler_zyx_to_matrix(0.3 * torch.randn(3, 24, 3, generator=torch.Generator().manual_seed(2)))
    out = body.smpl_model(betas=betas, global_orient=rotations[:, :1], body_pose=rotations[:, 1:])
    joints = out.joints[:, :24]
    neck = joints[:, NECK]
    verts, ours = body._smpl(betas, rotations)
    torch.testing.assert_close(verts, to_face_frame(out.vertices, neck), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours, to_face_frame(joints, neck), atol=1e-5, rtol=0)
    skinned, joints_all = body._smpl(betas, rotations, skin=1)
    # One row's correctives and skinning go through other BLAS kernels than three rows' (a matrix-vector product
    # on some CPUs), which round differently: the same vertices to float32's rounding, not bit for bit.
    torch.testing.assert_close(skinned, verts[:1], atol=1e-5, rtol=0)
    assert body._smpl(betas, rotations, skin=0)[0] is None
    torch.testing.assert_close(joints_all, ours, atol=0, rtol=0)


def test_pose_correctives_are_rechecked_after_loading_a_state_dict():
    body = BodyModel.procedural()
    assert not body.pose_correctives
    state = body.state_dict()
    state["smpl_model.posedirs"] = torch.full_like(state["smpl_model.posedirs"], 0.01)
    body.load_state_dict(state)
    assert body.pose_correctives
