"""The scene of a synthetic figure: each pose label moves its own bones (the pose label is the figure's pose), and
the head takes the rig's shape map (a painted feature is one canonical point for every shape)."""

import math

import numpy as np
import torch

from aniportrait import cameras, ops
from aniportrait.data import synth_labels
from aniportrait.data.synth_scene import BROW, EYE, JAW, MOUTH, SKULL, _body, _build_scene
from aniportrait.models.face_procedural import procedural_3dmm
from aniportrait.models.face_registration import rig_landmark_bary
from aniportrait.train.imitation import ExpressionTeacher
from tests.data.synth_helpers import HEAD, centroid, in_parts, neutral, pose_offset, render, stack

# -- pose ------------------------------------------------------------------------------------------------------------


def test_head_nod_moves_the_head_only():
    base = neutral()
    fig = stack(base, base.with_(pose=pose_offset(3, 2, 0.3)))  # head (J15) about X: nod down
    _, _, labels, _ = render(fig, res=64)
    head0, head1 = in_parts(labels[0], *HEAD), in_parts(labels[1], *HEAD)
    assert (head0 ^ head1).sum() > 0.1 * head0.sum()
    assert centroid(in_parts(labels[1], "nose"))[0] > centroid(in_parts(labels[0], "nose"))[0] + 1  # nose goes down
    body = ("torso", "chest", "trapezius_l", "trapezius_r", "deltoid_l", "deltoid_r", "arm_l", "arm_r")
    np.testing.assert_array_equal(
        in_parts(labels[0], *body) & ~head0 & ~head1, in_parts(labels[1], *body) & ~head0 & ~head1
    )


def test_shoulder_labels_move_their_shoulder():
    base = neutral()
    fig = stack(base, base.with_(pose=pose_offset(4, 0, 0.3)), base.with_(pose=pose_offset(1, 0, 0.15)))
    _, _, labels, _ = render(fig, res=96)
    left = ("deltoid_l", "arm_l")
    right = ("deltoid_r", "arm_r", "trapezius_r")
    # Raising the left shoulder (J16 about Z) lifts the left arm (image right at the frontal view) only. The portrait
    # shows only the top of the arm, so the change is a rim of pixels.
    assert centroid(in_parts(labels[0], *left))[1] > 48
    assert (in_parts(labels[1], *left) ^ in_parts(labels[0], *left)).sum() > 20
    assert centroid(in_parts(labels[1], *left))[0] < centroid(in_parts(labels[0], *left))[0] - 0.3
    np.testing.assert_array_equal(in_parts(labels[1], *right), in_parts(labels[0], *right))
    # A left collar (J13) shrug moves the left trapezius and lifts the arm with it.
    assert (in_parts(labels[2], "trapezius_l") ^ in_parts(labels[0], "trapezius_l")).sum() > 20
    assert centroid(in_parts(labels[2], *left))[0] < centroid(in_parts(labels[0], *left))[0] - 1
    np.testing.assert_array_equal(in_parts(labels[2], *right), in_parts(labels[0], *right))


# -- shape -----------------------------------------------------------------------------------------------------------


def _on_front(x: float, y: float, ellipsoid) -> tuple[float, float, float]:
    (cx, cy, cz), (rx, ry, rz) = ellipsoid
    return (x, y, cz + rz * math.sqrt(1.0 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2))


def _to_canonical(figures, posed: torch.Tensor) -> torch.Tensor:
    """Posed points [B, P, 3] of the figures taken back to the generator's mean-shape canonical space, as it trains:
    through each point's nearest rig vertex, less that vertex's shape offset."""
    verts, transforms = _body().inverse_skinning(
        torch.from_numpy(figures.betas), torch.from_numpy(figures.pose), mean_shape=True
    )
    return ops.inverse_lbs(posed, verts, transforms, k=1)[0]


def test_the_mean_shape_head_sits_at_the_face_camera_offset():
    fig = stack(neutral(), neutral().with_(pose=pose_offset(0, 1, 0.4)))
    scene = _build_scene(fig)
    torch.testing.assert_close(scene.head_linear, torch.eye(3).expand(2, 3, 3), atol=1e-5, rtol=0)
    offset = torch.tensor(cameras.FACE_CENTER_OFFSET, dtype=torch.float32).expand(2, 3)
    torch.testing.assert_close(scene.head_offset, offset, atol=1e-5, rtol=0)


def test_painted_features_go_back_to_one_canonical_point_for_every_shape():
    """The generator's mean-shape canonical space takes a posed point back through its nearest rig vertex and that
    vertex's shape offset. The world's head follows the rig's shape map, so an eye or a mouth lands at one canonical
    point whatever the body shape, within the vertex spacing's share of the shape offset (under the painted eye's
    0.0042 half height), while the shapes move it by more than 0.008 about J15; with the head scaled about the face
    centre it spread by up to 0.018."""
    figures = synth_labels.sample_figures(5, 12)
    betas = np.zeros((12, 10), np.float32)
    betas[:, [0, 2, 3, 6]] = np.linspace(-2.0, 2.0, 12)[:, None] * np.array([1.0, -1.0, 1.0, 1.0])
    figures = figures.with_(betas=betas)
    points = torch.tensor(
        [_on_front(*EYE[0], SKULL), _on_front(-EYE[0][0], EYE[0][1], SKULL), _on_front(*MOUTH[0], JAW)]
    )
    scene = _build_scene(figures)
    posed = scene.posed_head_points(points)  # [12, 3, 3]
    relative = posed - scene.head_position[:, None]  # from the posed J15: the shapes must move the features
    unposed = torch.einsum("bji,bpj->bpi", scene.head_rotation, relative)
    assert (unposed - unposed.mean(0)).norm(dim=-1).max() > 0.008
    canonical = _to_canonical(figures, posed)
    assert (canonical - canonical.median(0).values).norm(dim=-1).max() < 0.002


def test_painted_features_sit_and_move_where_the_expression_teacher_has_them():
    """The imitation loss teaches the expression deformation from the procedural 3DMM registered to the rig's 68
    landmarks. Its eyes, brows and mouth must be the world's painted ones, in the generator's canonical space, or the
    deformation it teaches moves the wrong pixels (the world's eyes once sat 9.5 mm above the teacher's, and the eye
    closure it taught stretched the painted eye instead of closing it). Per unit of each coefficient the teacher's
    landmarks must also move as the world's decals do."""
    (ex, ey), (erx, ery), _, _ = EYE
    (bx, by), b_half, _, b_arch, b_raise = BROW
    (mx, my), m_half, _, _, _, lift, widen = MOUTH
    nominal = {  # the left-hand features and their landmarks (the right-hand ones mirror them)
        "eye centre": ((ex, ey), range(42, 48)),
        "eye inner corner": ((ex - erx, ey), [42]),
        "eye outer corner": ((ex + erx, ey), [45]),
        "upper lid": ((ex, ey + ery), [43, 44]),
        "lower lid": ((ex, ey - ery), [46, 47]),
        "brow middle": ((bx, by + b_arch), [24]),
        "brow inner end": ((bx - b_half, by), [22]),
        "brow outer end": ((bx + b_half, by), [26]),
        "mouth corner": ((mx + m_half, my), [54]),
    }
    body = _body()
    figures = synth_labels.sample_figures(5, 1)
    figures = figures.with_(betas=np.zeros_like(figures.betas))
    points = torch.tensor([_on_front(*xy, SKULL if "mouth" not in name else JAW) for name, (xy, _) in nominal.items()])
    canonical = _to_canonical(figures, _build_scene(figures).posed_head_points(points))[0]
    teacher = ExpressionTeacher.on_body(procedural_3dmm(), body, rig_landmark_bary(body), mean_shape=True)
    registered = teacher.register(torch.zeros(1, 10))

    def landmarks(coefficient=None):
        expression = torch.zeros(1, 64)
        if coefficient is not None:
            expression[0, coefficient] = 1.0
        return registered.canonical_landmarks(torch.zeros(1, 80), expression)[0, :, :2]

    neutral = landmarks()
    for k, (name, (_, rows)) in enumerate(nominal.items()):
        there = neutral[list(rows)].mean(0)
        assert (canonical[k, :2] - there).norm() < 0.0015, (name, canonical[k, :2].tolist(), there.tolist())
    brows = landmarks(3) - neutral  # raised brows: up by the world's raise per unit
    torch.testing.assert_close(brows[22:27, 1], torch.full((5,), b_raise), atol=0.0005, rtol=0)
    corner = (landmarks(1) - neutral)[54]  # the smile: the corner up by the lift and out by the widening
    torch.testing.assert_close(corner, torch.tensor([widen * m_half, lift]), atol=0.0005, rtol=0)
    closed = landmarks(2)  # eyes closed: the upper lid comes down onto the lower one, which stays
    assert (closed[[43, 44]].mean(0) - neutral[[46, 47]].mean(0)).norm() < 0.0025
    assert (closed[[46, 47]] - neutral[[46, 47]]).norm(dim=-1).max() < 0.0015
