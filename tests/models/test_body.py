"""Body model: ZYX Euler rotations, SMPL file loading, the procedural rig, and the release's inverse skinning."""

import io
import math
import os
import pickle
from typing import ClassVar

import numpy as np
import pytest
import smplx
import torch

from aniportrait.constants import (
    FACE_RADIUS,
    FACE_TY,
    FACE_TZ,
    SMPL_NUM_FACES,
    SMPL_NUM_VERTS,
    SMPL_PARENTS,
    SMPL_SCALE,
)
from aniportrait.geometry import euler_zyx_to_matrix, matrix_to_euler_zyx
from aniportrait.models.body import BodyModel, to_face_frame
from aniportrait.models.rig import procedural_rig, rig_valid_index
from aniportrait.models.smpl_file import SMPL_ARRAY_SHAPES, BodyModelError, load_smpl_arrays, resolve_smpl_path

# The canonical portrait box (canonical units) that the valid vertices should fill.
BOX_LO = torch.tensor([-0.22, -0.25, -0.2])
BOX_HI = torch.tensor([0.22, 0.19, 0.2])
# Buffers of smplx's SMPLLayer = the release checkpoint's renderer.smpl_model.* keys (sshq512.pt).
RELEASE_SMPL_BUFFERS = {
    "shapedirs": ((6890, 3, 10), torch.float32),
    "faces_tensor": ((13776, 3), torch.int64),
    "v_template": ((6890, 3), torch.float32),
    "J_regressor": ((24, 6890), torch.float32),
    "posedirs": ((207, 20670), torch.float32),
    "parents": ((24,), torch.int64),
    "lbs_weights": ((6890, 24), torch.float32),
    "vertex_joint_selector.extra_joints_idxs": ((21,), torch.int64),
}
HEAD, NECK = 15, 12
POSE_HEAD = 3  # row of joint 15 in the [B, 6, 3] pose


@pytest.fixture(scope="module")
def rig():
    return procedural_rig()


@pytest.fixture(scope="module")
def body(rig):
    return BodyModel.from_arrays(rig, rig_valid_index(rig))


def _apply(transforms, points):
    return (transforms[..., :3, :3] @ points[..., None])[..., 0] + transforms[..., :3, 3]


def _canonical(body, betas):
    verts, _ = body.inverse_skinning(betas, torch.zeros(len(betas), 6, 3))
    return verts


# ---------------------------------------------------------------------------------------------------------------------
# Rotations


def test_euler_matches_product_of_axis_rotations():
    angles = torch.rand(5, 3, dtype=torch.float64) * 4 - 2
    for angle, got in zip(angles.tolist(), euler_zyx_to_matrix(angles)):
        a, b, c = angle
        rz = [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]
        ry = [[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]]
        rx = [[1, 0, 0], [0, math.cos(c), -math.sin(c)], [0, math.sin(c), math.cos(c)]]
        torch.testing.assert_close(got, torch.tensor(np.array(rz) @ np.array(ry) @ np.array(rx)))


def test_euler_gives_proper_rotations():
    rot = euler_zyx_to_matrix(torch.randn(4, 6, 3))
    assert rot.shape == (4, 6, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(4, 6), atol=1e-6, rtol=0)


def test_euler_round_trip():
    angles = torch.rand(100, 3, dtype=torch.float64) * 2 - 1
    angles = angles * torch.tensor([3.0, 1.4, 3.0], dtype=torch.float64)  # middle angle away from +-pi/2
    torch.testing.assert_close(matrix_to_euler_zyx(euler_zyx_to_matrix(angles)), angles)


def test_euler_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        euler_zyx_to_matrix(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        matrix_to_euler_zyx(torch.zeros(4, 3))


# ---------------------------------------------------------------------------------------------------------------------
# Procedural rig


def test_procedural_rig_has_smpl_layout(rig):
    assert set(rig) == set(SMPL_ARRAY_SHAPES)
    expected = {
        "v_template": (6890, 3),
        "shapedirs": (6890, 3, 10),
        "posedirs": (6890, 3, 207),
        "J_regressor": (24, 6890),
        "weights": (6890, 24),
        "kintree_table": (2, 24),
        "f": (13776, 3),
    }
    for key, shape in expected.items():
        assert rig[key].shape == shape, key
        assert rig[key].dtype == (np.int64 if key in ("f", "kintree_table") else np.float64), key
    assert tuple(rig["kintree_table"][0]) == SMPL_PARENTS
    assert not rig["posedirs"].any()
    faces = rig["f"]
    assert faces.min() == 0 and faces.max() == SMPL_NUM_VERTS - 1
    assert np.unique(faces).size == SMPL_NUM_VERTS  # every vertex is used
    for key in ("weights", "J_regressor"):
        assert rig[key].min() >= 0.0, key
        np.testing.assert_allclose(rig[key].sum(axis=1), 1.0, atol=1e-12, err_msg=key)


def test_procedural_rig_is_a_closed_outward_mesh(rig):
    faces, verts = rig["f"], rig["v_template"]
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    # Closed and consistently oriented: every directed edge appears once, and its reverse once.
    assert np.unique(edges, axis=0).shape[0] == 3 * SMPL_NUM_FACES
    assert {tuple(e) for e in edges} == {tuple(e) for e in edges[:, ::-1]}
    volume = np.einsum("ij,ij->i", verts[faces[:, 0]], np.cross(verts[faces[:, 1]], verts[faces[:, 2]])).sum() / 6
    assert 0.01 < volume < 0.05  # m^3, outward normals


def test_procedural_rig_is_deterministic(rig):
    again, other = procedural_rig(0), procedural_rig(1)
    for key in rig:
        np.testing.assert_array_equal(again[key], rig[key])
        assert other[key].shape == rig[key].shape
    assert not np.array_equal(other["v_template"], rig["v_template"])
    np.testing.assert_array_equal(procedural_rig(1)["v_template"], other["v_template"])


def test_procedural_rig_regressor_reproduces_joints(rig):
    joints = rig["J_regressor"] @ rig["v_template"]
    # Anatomy: the head joint above the neck, shoulders symmetric and 0.3-0.4 m apart.
    assert joints[HEAD, 1] > joints[NECK, 1]
    np.testing.assert_allclose(joints[16] * [-1, 1, 1], joints[17], atol=1e-9)
    assert 0.3 < joints[16, 0] - joints[17, 0] < 0.4


def test_procedural_rig_runs_in_smplx(rig):
    model = smplx.SMPL(model_path="unused", data_struct=smplx.utils.Struct(**rig))
    betas = torch.randn(1, 10)
    out = model(betas=betas)
    v_shaped = torch.tensor(rig["v_template"] + rig["shapedirs"] @ betas[0].double().numpy(), dtype=torch.float32)
    torch.testing.assert_close(out.vertices[0], v_shaped, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints[0, :24], model.J_regressor @ v_shaped, atol=1e-5, rtol=0)


def test_procedural_rig_face_centre_is_near_the_origin(body):
    """In the canonical mean pose the face frame's origin sits inside the head, behind the nose, at eye height."""
    betas = torch.zeros(1, 10)
    joints = body.joints(betas, torch.zeros(1, 6, 3))[0]
    neck = torch.tensor([0.0, -FACE_TY, -FACE_TZ]) / FACE_RADIUS
    torch.testing.assert_close(joints[NECK], neck)
    verts = _canonical(body, betas)[0]
    head = verts[body.smpl_model.lbs_weights[body.valid_index, HEAD] > 0.99]
    lo, hi = head.min(0).values, head.max(0).values
    centre = (lo + hi) / 2
    assert centre[:2].abs().max() < 0.02
    assert (lo < 0).all() and (hi > 0).all()
    nose = head[head[:, 2].argmax()]
    assert 0.02 < nose[2] < 0.08 and -0.08 < nose[1] < 0.0  # tip ahead of and below the origin


def test_rig_valid_vertices_fill_the_portrait_box(rig, body):
    index = rig_valid_index(rig)
    assert index.dtype == np.int64 and np.all(np.diff(index) > 0)
    verts = _canonical(body, torch.zeros(1, 10))[0]
    inside = ((verts >= BOX_LO) & (verts <= BOX_HI)).all(-1)
    assert inside.float().mean() > 0.95
    # The whole head is valid.
    assert set(np.flatnonzero(rig["weights"][:, HEAD] > 0.5)) <= set(index)


def test_procedural_rig_shape_directions_are_meaningful(rig, body):
    assert np.linalg.norm(rig["shapedirs"], axis=(0, 1)).min() > 0.01
    head = torch.from_numpy(rig["weights"][:, HEAD] > 0.99)

    def measure(betas):
        out = body.smpl_model(betas=betas)
        width = out.joints[0, 16, 0] - out.joints[0, 17, 0]
        head_height = out.vertices[0, head, 1].max() - out.vertices[0, head, 1].min()
        return width, head_height

    base = measure(torch.zeros(1, 10))
    wider = measure(torch.eye(10)[1:2] * 2)  # beta 1: shoulder width
    bigger_head = measure(torch.eye(10)[2:3] * 2)  # beta 2: head size
    assert wider[0] > base[0] + 0.02 and bigger_head[1] > base[1] + 0.01


# ---------------------------------------------------------------------------------------------------------------------
# SMPL files


def _small_arrays(rig):
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in rig.items()}


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_load_smpl_pickle_with_sparse_regressor(rig, tmp_path, protocol):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    arrays = _small_arrays(rig)
    content = dict(arrays, J_regressor=scipy_sparse.csc_matrix(arrays["J_regressor"]), bs_style="lbs")
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    loaded = load_smpl_arrays(path)
    assert set(loaded) == set(SMPL_ARRAY_SHAPES)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


class _Python2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` (BINSTRING), like the pickles SMPL is distributed as."""

    def _save_py2_str(self, data):
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + len(data).to_bytes(1, "little") + data)
        else:
            self.write(pickle.BINSTRING + len(data).to_bytes(4, "little") + data)

    def save_bytes(self, obj):
        self._save_py2_str(obj)
        self.memoize(obj)

    def save_str(self, obj):
        self._save_py2_str(obj.encode("latin1"))
        self.memoize(obj)

    dispatch: ClassVar[dict] = {**pickle._Pickler.dispatch, bytes: save_bytes, str: save_str}


def test_load_smpl_python2_style_pickle(rig, tmp_path):
    """Latin-1 array data, numpy.core / scipy.sparse.csc module names and the uint32 root parent of the official file."""
    scipy_sparse = pytest.importorskip("scipy.sparse")
    arrays = _small_arrays(rig)
    kintree = arrays["kintree_table"].astype(np.uint32)
    kintree[0, 0] = np.iinfo(np.uint32).max
    content = dict(arrays, J_regressor=scipy_sparse.csc_matrix(arrays["J_regressor"]), kintree_table=kintree)
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(content)
    raw = buffer.getvalue().replace(b"numpy._core", b"numpy.core").replace(b"scipy.sparse._csc", b"scipy.sparse.csc")
    path = tmp_path / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
    path.write_bytes(raw)
    loaded = load_smpl_arrays(path)
    np.testing.assert_array_equal(loaded["J_regressor"], arrays["J_regressor"])
    np.testing.assert_array_equal(loaded["kintree_table"], rig["kintree_table"])


def test_load_smpl_npz(rig, tmp_path):
    path = tmp_path / "smpl.npz"
    np.savez(path, **_small_arrays(rig))
    loaded = load_smpl_arrays(str(path))
    np.testing.assert_array_equal(loaded["v_template"], rig["v_template"].astype(np.float32))


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _UserClass:
    pass


def test_load_smpl_rejects_code_without_running_it(tmp_path):
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": _RunsCommand(f"touch {sentinel}")}))
    with pytest.raises(BodyModelError, match="forbidden global .*system"):
        load_smpl_arrays(path)
    assert not sentinel.exists()


@pytest.mark.parametrize(
    "payload, message",
    [
        (pickle.dumps({"v_template": _UserClass()}), "forbidden global .*_UserClass"),
        (b"\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1q\x01\x85q\x02Rq\x03.", "forbidden global builtins.eval"),
        (b"\x80\x02cchumpy.ch\nCh\nq\x00)\x81q\x01.", "chumpy"),
    ],
    ids=["user-class", "eval", "chumpy"],
)
def test_load_smpl_rejects_foreign_classes(tmp_path, payload, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(payload)
    with pytest.raises(BodyModelError, match=message):
        load_smpl_arrays(path)


def test_load_smpl_errors_are_actionable(rig, tmp_path):
    with pytest.raises(BodyModelError, match="not found.*--smpl PATH or ANIPORTRAIT_SMPL"):
        load_smpl_arrays(tmp_path / "missing.pkl")
    arrays = _small_arrays(rig)
    cases = {
        "no-weights": ({k: v for k, v in arrays.items() if k != "weights"}, r"lacks the SMPL keys \['weights'\]"),
        "bad-shape": (dict(arrays, v_template=arrays["v_template"][:100]), r"v_template must have shape \[6890, 3\]"),
        "few-betas": (dict(arrays, shapedirs=arrays["shapedirs"][..., :5]), r"shapedirs must have shape"),
        "tree": (dict(arrays, kintree_table=np.zeros((2, 24), np.int64)), "kinematic tree"),
        "not-a-dict": ([1, 2], "not a dict"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(content))
        with pytest.raises(BodyModelError, match=message) as info:
            load_smpl_arrays(path)
        assert "download SMPL_NEUTRAL.pkl" in str(info.value) and "\n" not in str(info.value)
    assert issubclass(BodyModelError, ValueError)


def test_resolve_smpl_path(monkeypatch):
    monkeypatch.delenv("ANIPORTRAIT_SMPL", raising=False)
    assert resolve_smpl_path(None) is None
    monkeypatch.setenv("ANIPORTRAIT_SMPL", "/env/SMPL_NEUTRAL.pkl")
    assert resolve_smpl_path(None) == "/env/SMPL_NEUTRAL.pkl"
    assert resolve_smpl_path("/given.pkl") == "/given.pkl"


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


def test_joints_follow_the_neck(body):
    betas, pose = torch.zeros(2, 10), torch.zeros(2, 6, 3)
    pose[1, 0] = torch.tensor([0.0, 0.0, 0.5])  # neck pitch
    joints = body.joints(betas, pose)
    assert joints.shape == (2, 24, 3)
    torch.testing.assert_close(joints[1, NECK], joints[0, NECK])
    offset = joints[0, HEAD] - joints[0, NECK]
    torch.testing.assert_close(joints[1, HEAD] - joints[1, NECK], euler_zyx_to_matrix(pose[1, 0]) @ offset)
    torch.testing.assert_close(joints[:, :12], joints[:1, :12].expand(2, -1, -1))


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
