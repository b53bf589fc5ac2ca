"""Rendering synthetic figures: expression effects, exact portrait cameras, the face camera and crops, tile culling.

Conventions checked here (aniportrait.cameras): a portrait camera at (pitch, yaw) sits at
r (sin p cos y, cos p, sin p sin y) + ORIGIN_OFFSET and looks at the origin; a larger yaw moves it towards -x (the
figure's right, SMPL x points to the figure's left). Its right axis then tilts towards +z, so points in front of the
head (the nose) move to the image right relative to the head: the figure appears to turn towards the image right.
"""

import math

import numpy as np
import pytest
import torch

from aniportrait import cameras, constants
from aniportrait.data import synth_labels, synth_render, synth_scene
from tests.data.synth_helpers import FRONTAL, HEAD, PART, centroid, in_parts, neutral, pose_offset, render, stack

# -- expression ------------------------------------------------------------------------------------------------------


def _with_expression(fig, index, value):
    e = np.zeros((1, 64), np.float32)
    e[0, index] = value
    return fig.with_(expression=e)


@pytest.mark.parametrize(
    ("index", "value", "region"),
    [(0, 1.5, ("mouth", "jaw")), (1, 1.5, ("mouth",)), (2, 1.0, ("eye",)), (3, 1.0, ("brow",))],
)
def test_documented_expression_coefficients_change_their_face_region(index, value, region):
    base = neutral()
    _, faces, _, labels = render(stack(base, _with_expression(base, index, value)), face_res=96)
    changed = np.any(faces[0] != faces[1], axis=-1)
    assert changed.sum() > 15, synth_labels.EXPRESSION_EFFECTS[index]
    # The changed pixels belong to the documented feature in one of the two renders (the jaw drops with the mouth;
    # a one-pixel rim may show the skin around the feature).
    feature = in_parts(labels[0], *region) | in_parts(labels[1], *region)
    grown = feature.copy()
    grown[1:] |= feature[:-1]
    grown[:-1] |= feature[1:]
    grown[:, 1:] |= feature[:, :-1]
    grown[:, :-1] |= feature[:, 1:]
    assert (changed & grown).sum() >= 0.9 * changed.sum()


def test_expression_directions():
    base = neutral()
    variants = stack(
        base,
        _with_expression(base, 0, 1.5),
        _with_expression(base, 2, 1.0),
        _with_expression(base, 3, 1.0),
        _with_expression(base, 20, 3.0),
    )
    _, faces, _, labels = render(variants, face_res=96)
    mouth, opened = labels[0] == PART["mouth"], labels[1] == PART["mouth"]
    assert opened.sum() > 1.5 * mouth.sum()  # mouth open: a taller mouth with a dark inside
    assert faces[1][opened].mean() < faces[0][mouth].mean()
    assert (labels[2] == PART["eye"]).sum() < 0.5 * (labels[0] == PART["eye"]).sum()  # blink
    assert centroid(labels[3] == PART["brow"])[0] < centroid(labels[0] == PART["brow"])[0] - 0.5  # brows up
    np.testing.assert_array_equal(faces[4], faces[0])  # coefficients past the documented ones have no effect


# -- camera ----------------------------------------------------------------------------------------------------------


def test_renderer_rays_are_the_portrait_cameras_rays():
    """Every pixel's hit point lies on the ray portrait_rays gives for that pixel (same origin, offset, layout)."""
    res = 32
    fig = synth_labels.sample_figures(2, 2)
    camera = torch.from_numpy(fig.camera)
    scene = synth_scene._build_scene(fig)
    origin, rotation = synth_render._portrait_camera(camera)
    t, part, basis = synth_render._cast(scene, origin, rotation, constants.FOV_DEGREES, res)
    ndc = torch.linspace(-1, 1, res)
    y, x = torch.meshgrid(-ndc, ndc, indexing="ij")
    pix = torch.stack([x.reshape(-1), y.reshape(-1), torch.ones(res * res)], -1)
    hits = origin[:, None] + t[..., None] * (pix @ basis)  # [B, P, 3]
    points, _ = cameras.portrait_rays(camera, res, 2)
    unit = torch.nn.functional.normalize(points[:, :, 1] - points[:, :, 0], dim=-1)
    start = points[:, :, 0] - constants.RAY_START * unit
    found = part >= 0
    assert found.float().mean() > 0.3
    along = hits - start
    off_ray = torch.linalg.cross(along, unit, dim=-1).norm(dim=-1)
    assert off_ray[found].max() < 1e-4 and ((along * unit).sum(-1)[found] > 0).all()
    # ... and on the surface of the part the label names: |L^-1 (p - c)| = 1.
    b, p = found.nonzero(as_tuple=True)
    k = part[b, p]
    local = torch.einsum("mij,mj->mi", scene.inverse[b, k], hits[b, p] - scene.centre[b, k])
    assert (local.norm(dim=-1) - 1).abs().max() < 1e-3


def test_larger_yaw_turns_the_figure_towards_the_image_right():
    base = neutral(style="buzz")
    yaws = (-0.4, 0.0, 0.4)
    fig = stack(*(base.with_(camera=np.array([[math.pi / 2, math.pi / 2 + dy]])) for dy in yaws))
    _, _, labels, _ = render(fig, res=96)
    offsets = []
    for lab in labels:
        head = centroid(in_parts(lab, *HEAD))
        offsets.append(centroid(in_parts(lab, "nose", "mouth", "eye"))[1] - head[1])
    assert offsets[0] < offsets[1] - 1 < offsets[2] - 2  # the face moves right of the head as yaw grows
    assert abs(offsets[1]) < 1.0  # frontal: centred
    # The camera moved towards -x, the figure's right: its right ear (image left) shows more, the left one less.
    assert (labels[2] == PART["ear_r"]).sum() > (labels[2] == PART["ear_l"]).sum()
    assert (labels[0] == PART["ear_l"]).sum() > (labels[0] == PART["ear_r"]).sum()


def test_pitch_moves_the_camera_up_and_down():
    base = neutral()
    fig = stack(base, base.with_(camera=np.array([[math.pi / 2 - 0.2, math.pi / 2]])))
    _, _, labels, _ = render(fig, res=64)
    # pitch < pi/2: cos(pitch) > 0, the camera rises and looks down on the figure: the top of the head shows more.
    assert (labels[1] == PART["hair"]).sum() > (labels[0] == PART["hair"]).sum()


# -- face camera -----------------------------------------------------------------------------------------------------


def test_face_camera_conventions():
    pose = torch.zeros(3, 6, 3)
    pose[1, 3] = torch.tensor([0.1, 0.4, -0.2])
    pose[2, 0] = torch.tensor([0.0, 0.3, 0.1])
    joints = synth_scene._body().joints(torch.zeros(3, 10), torch.zeros(3, 6, 3))
    head = cameras.posed_head_transform(pose, joints)
    origin, rotation = cameras.face_camera(head)
    # Mean pose: in front of the face centre (the canonical origin) at distance 1, oriented like the frontal camera.
    np.testing.assert_allclose(origin[0].numpy(), [0, 0, cameras.FACE_CAMERA_DISTANCE], atol=1e-5)
    frontal = cameras.look_at_rotation(cameras.camera_origin(torch.tensor([FRONTAL])))
    np.testing.assert_allclose(rotation[0].numpy(), frontal[0].numpy(), atol=1e-5)
    # Always: the face centre lies on the optical axis, distance away; the rotation is orthonormal; it follows the head.
    centre = cameras.face_center(head)
    local = torch.einsum("bji,bj->bi", rotation, centre - origin)
    np.testing.assert_allclose(local.numpy(), np.tile([0, 0, -cameras.FACE_CAMERA_DISTANCE], (3, 1)), atol=1e-5)
    np.testing.assert_allclose((rotation.transpose(1, 2) @ rotation).numpy(), np.tile(np.eye(3), (3, 1, 1)), atol=1e-5)
    np.testing.assert_allclose(rotation[1].numpy(), head[0][1].numpy(), atol=1e-5)
    # Looking from a view origin: the camera sits on the line from the face centre to it.
    view = torch.tensor([[0.5, 0.2, 2.0]]).expand(3, 3)
    origin_v, _ = cameras.face_camera(head, view)
    direction = torch.nn.functional.normalize(view - centre, dim=-1)
    np.testing.assert_allclose((origin_v - centre).numpy(), direction.numpy(), atol=1e-5)
    points, ray_origin = cameras.face_rays(head, 8, 4)
    assert points.shape == (3, 64, 4, 3) and torch.equal(ray_origin, origin)


def test_face_crop_centres_the_face():
    fig = synth_labels.sample_figures(21, 8)
    for face_view in ("frontal", "portrait"):
        *_, labels = render(fig, res=32, face_res=64, face_view=face_view)
        for lab in labels:
            head = in_parts(lab, *HEAD)
            assert head.mean() > 0.4  # the head fills most of the crop
            # Mid-face, eyes and nose a little below the middle: the crop's centre is the face camera's constant
            # offset from J15, about 9.5 mm above the eyes, which sit where the rig's face landmarks have them.
            row, col = centroid(in_parts(lab, "eye", "nose"))
            assert abs(col - 31.5) < 6 and 0 < row - 31.5 < 9, (face_view, row, col)
    # Frontal face view: the eyes sit symmetric about the middle column for any head shape, and on the middle row for
    # the mean shape. The face camera keeps the constant FACE_CENTER_OFFSET from J15 (as the generator's does) while
    # the head takes the rig's shape map, which grows a head about the rig's head centre, above J15: a larger head's
    # eyes sit higher in the crop, a smaller one's lower.
    base = neutral()
    shapes = np.zeros((3, 10), np.float32)
    shapes[1, [0, 2, 6]] = 2.0  # big, large head, long face
    shapes[2, [0, 2, 6]] = -2.0
    fig = stack(*(base.with_(betas=shapes[i : i + 1], pose=pose_offset(3, 1, 0.3 * i)) for i in range(3)))
    _, _, _, labels = render(fig, res=32, face_res=64, face_view="frontal")
    (mean_row, mean_col), (large_row, large_col), (small_row, small_col) = (
        centroid(lab == PART["eye"]) for lab in labels
    )
    assert abs(mean_row - 31.5) < 2.5
    assert all(abs(col - 31.5) < 0.6 for col in (mean_col, large_col, small_col))
    assert mean_row - 12 < large_row < mean_row - 2 and mean_row + 2 < small_row < mean_row + 12


# -- rendering internals ---------------------------------------------------------------------------------------------


def test_tile_culling_does_not_change_the_image(monkeypatch):
    """Testing each ellipsoid only in the tiles its silhouette's bounding box meets is exact."""
    fig = synth_labels.sample_figures(4, 3)
    culled = synth_render.render_figures(fig, 40, 24)
    original = synth_render._conic_range

    def unbounded(q, axis):  # every tile for every ellipsoid
        lo, hi, _ = original(q, axis)
        return lo, hi, torch.zeros_like(lo, dtype=torch.bool)

    monkeypatch.setattr(synth_render, "_conic_range", unbounded)
    full = synth_render.render_figures(fig, 40, 24)
    np.testing.assert_array_equal(culled[0], full[0])
    np.testing.assert_array_equal(culled[1], full[1])
