"""The procedural rig: SMPL's layout, a closed outward mesh, meaningful joints, shapes and valid vertices."""

import numpy as np
import smplx
import torch

from aniportrait.constants import (
    FACE_RADIUS,
    FACE_TY,
    FACE_TZ,
    SMPL_NUM_FACES,
    SMPL_NUM_VERTS,
    SMPL_PARENTS,
)
from aniportrait.models.rig import procedural_rig, rig_valid_index
from aniportrait.models.smpl_file import SMPL_ARRAY_SHAPES

# The canonical portrait box (canonical units) that the valid vertices should fill.
BOX_LO = torch.tensor([-0.22, -0.25, -0.2])
BOX_HI = torch.tensor([0.22, 0.19, 0.2])
HEAD, NECK = 15, 12


def _canonical(body, betas):
    verts, _ = body.inverse_skinning(betas, torch.zeros(len(betas), 6, 3))
    return verts


# ---------------------------------------------------------------------------------------------------------------------
# Rotations


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
