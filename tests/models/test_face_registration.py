"""Registering a 3DMM to the body's head: Umeyama, per-identity placement, imitation targets, head landmarks."""

from pathlib import Path

import numpy as np
import pytest
import torch

from aniportrait.constants import SMPL_NUM_FACES
from aniportrait.models.face3dmm import CANONICAL_PER_METRE, FaceModelError
from aniportrait.models.face_registration import (
    RegisteredFace,
    canonical_body_vertices,
    load_landmark_bary,
    register_to_body,
    rig_face_landmarks,
    rig_landmark_bary,
    smpl_landmarks,
    umeyama,
)

RELEASE_BARY = Path(__file__).resolve().parents[1] / "fixtures" / "release-smpl" / "smpl_face_landmarks_bary.npy"
JAW, BROWS, NOSE, EYES, MOUTH = range(17), range(17, 27), range(27, 36), range(36, 48), range(48, 68)

HEAD_BOX_X, HEAD_BOX_Y = (-0.07, 0.07), (-0.09, 0.1)  # canonical units


def _unit(index, size):
    out = torch.zeros(1, size)
    out[0, index] = 1.0
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Umeyama and registration


def _random_similarity(generator, dtype=torch.float64):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=dtype))
    rotation = q * torch.sign(torch.linalg.det(q))
    scale = torch.rand((), generator=generator, dtype=dtype) * 2 + 0.1
    return scale, rotation, torch.randn(3, generator=generator, dtype=dtype)


def test_umeyama_recovers_a_similarity():
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        scale, rotation, translation = _random_similarity(generator)
        source = torch.randn(68, 3, generator=generator, dtype=torch.float64)
        target = scale * source @ rotation.T + translation
        fit = umeyama(source, target)
        for got, want in zip(fit, (scale, rotation, translation)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        # Float32 inputs, weights and no-scale variants.
        fit32 = umeyama(source.float(), target.float(), weights=torch.rand(68, generator=generator))
        torch.testing.assert_close(fit32[1], rotation.float(), atol=1e-5, rtol=0)
        assert fit32[0].dtype == torch.float32
        unit = umeyama(source, source @ rotation.T + translation, with_scale=False)
        torch.testing.assert_close(unit[0], torch.tensor(1.0, dtype=torch.float64))
        torch.testing.assert_close(unit[1], rotation, atol=1e-10, rtol=0)


def test_umeyama_is_batched():
    generator = torch.Generator().manual_seed(2)
    fits = [_random_similarity(generator) for _ in range(4)]
    source = torch.randn(4, 20, 3, dtype=torch.float64, generator=generator)
    target = torch.stack([s * p @ r.T + t for (s, r, t), p in zip(fits, source)])
    scale, rotation, translation = umeyama(source, target)
    assert scale.shape == (4,) and rotation.shape == (4, 3, 3) and translation.shape == (4, 3)
    torch.testing.assert_close(rotation, torch.stack([r for _, r, _ in fits]), atol=1e-8, rtol=0)


def test_umeyama_returns_a_proper_rotation_for_a_reflection():
    generator = torch.Generator().manual_seed(3)
    source = torch.randn(68, 3, generator=generator, dtype=torch.float64) * torch.tensor(
        [3.0, 2.0, 1.0], dtype=torch.float64
    )
    target = source * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # a mirror image
    scale, rotation, _ = umeyama(source, target)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert scale > 0


def test_umeyama_rejects_degenerate_input():
    with pytest.raises(ValueError, match="degenerate"):
        umeyama(torch.zeros(5, 3), torch.randn(5, 3))
    line = torch.linspace(0, 1, 5)[:, None] * torch.tensor([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="degenerate"):
        umeyama(line, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\[\.\.\., K >= 3, 3\]"):
        umeyama(torch.zeros(5, 3), torch.zeros(4, 3))


def test_register_to_body_recovers_a_placement(face):
    generator = torch.Generator().manual_seed(4)
    scale, rotation, translation = _random_similarity(generator, torch.float32)
    body_landmarks = scale * face.landmarks()[0] @ rotation.T + translation
    fit = register_to_body(face, body_landmarks)
    for got, want in zip(fit, (scale, rotation, translation)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    registered = RegisteredFace.from_body_landmarks(face, body_landmarks, indices=range(17, 68))
    torch.testing.assert_close(registered.canonical_landmarks()[0], body_landmarks, atol=1e-5, rtol=1e-5)
    exp = torch.randn(2, 64)
    torch.testing.assert_close(
        registered.canonical_vertices(None, exp) - registered.canonical_vertices(None, torch.zeros(2, 64)),
        registered.canonical_expression_offsets(exp),
        atol=1e-6,
        rtol=1e-5,
    )
    # Batched with identity coefficients: each sample's own landmarks are fitted.
    id = torch.randn(2, 80)
    targets = scale * face.landmarks(id) @ rotation.T + translation
    batch_scale, batch_rotation, _ = register_to_body(face, targets, id=id)
    torch.testing.assert_close(batch_scale, scale.expand(2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch_rotation, rotation.expand(2, 3, 3), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[68, 3\] or \[B, 68, 3\]"):
        register_to_body(face, torch.zeros(5, 3))


def test_imitation_targets_follow_the_nearest_vertex(face, rig_landmarks):
    registered = RegisteredFace.from_body_landmarks(face, rig_landmarks)
    id, exp = torch.randn(2, 80), torch.randn(2, 64)
    vertices = registered.canonical_vertices(id, exp)
    pick = torch.randint(0, face.num_vertices, (2, 50))
    points = torch.gather(vertices, 1, pick[..., None].expand(-1, -1, 3)) + 1e-6
    delta, distance = registered.imitation_targets(points, id, exp, chunk=16)
    assert delta.shape == (2, 50, 3) and distance.shape == (2, 50) and not delta.requires_grad
    assert distance.max() < 1e-4
    expected = -registered.canonical_expression_offsets(exp)
    torch.testing.assert_close(delta, torch.gather(expected, 1, pick[..., None].expand(-1, -1, 3)))


# ---------------------------------------------------------------------------------------------------------------------
# SMPL-head landmarks


def test_release_landmark_bary_file():
    bary = load_landmark_bary(RELEASE_BARY)
    assert bary.shape == (68, 4) and bary.dtype == np.float64
    ids = bary[:, 0]
    assert np.array_equal(ids, np.round(ids)) and ids.min() >= 0 and ids.max() < SMPL_NUM_FACES
    np.testing.assert_allclose(bary[:, 1:].sum(1), 1.0, atol=1e-6)
    assert (bary[:, 1:] >= 0).all()


def test_smpl_landmarks_shapes_with_the_release_file(body):
    """On the rig the release's barycentrics land on arbitrary triangles: a shape/consistency check only."""
    landmarks = smpl_landmarks(body, RELEASE_BARY)
    assert landmarks.shape == (68, 3) and torch.isfinite(landmarks).all()
    batched = smpl_landmarks(body, np.load(RELEASE_BARY), torch.zeros(2, 10))
    assert batched.shape == (2, 68, 3)
    torch.testing.assert_close(batched[0], landmarks)
    with pytest.raises(ValueError, match=r"betas must have shape \[10\] or \[B, 10\]"):
        smpl_landmarks(body, RELEASE_BARY, torch.zeros(2, 9))


def test_smpl_landmarks_match_the_canonical_mesh(body):
    """A barycentric (t, 1, 0, 0) is vertex faces[t, 0] of the mean-pose mesh that inverse skinning maps to."""
    betas = torch.randn(1, 10) * 0.5
    valid = body.valid_index
    faces = body.smpl_model.faces_tensor
    rows = torch.nonzero(torch.isin(faces[:, 0], valid))[:68, 0]
    bary = np.zeros((68, 4))
    bary[:, 0], bary[:, 1] = rows.numpy(), 1.0
    landmarks = smpl_landmarks(body, bary, betas[0])
    canonical, _ = body.inverse_skinning(betas, torch.zeros(1, 6, 3))
    position = {int(v): k for k, v in enumerate(valid)}
    expected = canonical[0, [position[int(v)] for v in faces[rows, 0]]]
    torch.testing.assert_close(landmarks, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(canonical_body_vertices(body, betas)[0, valid], canonical[0], atol=1e-5, rtol=0)


def test_load_landmark_bary_errors(tmp_path):
    bary = np.load(RELEASE_BARY)
    with pytest.raises(FaceModelError, match=r"shape \[67, 4\]"):
        load_landmark_bary(bary[:67])
    with pytest.raises(FaceModelError, match="triangle ids must be integers"):
        load_landmark_bary(np.concatenate([bary[:, :1] + 0.5, bary[:, 1:]], 1))
    with pytest.raises(FaceModelError, match="triangle ids must be integers in 0..99"):
        load_landmark_bary(bary, num_faces=100)
    with pytest.raises(FaceModelError, match="sum to 1"):
        load_landmark_bary(np.concatenate([bary[:, :1], 2 * bary[:, 1:]], 1))
    path = tmp_path / "bary.npy"
    np.save(path, np.array([{"bary": bary}], dtype=object), allow_pickle=True)
    with pytest.raises(FaceModelError, match="cannot read"):
        load_landmark_bary(path)


def test_rig_face_landmarks_sit_on_the_head(body, rig_landmarks):
    lm = rig_landmarks
    assert lm.shape == (68, 3) and torch.isfinite(lm).all()
    assert (lm[:, 0] > HEAD_BOX_X[0]).all() and (lm[:, 0] < HEAD_BOX_X[1]).all()
    assert (lm[:, 1] > HEAD_BOX_Y[0]).all() and (lm[:, 1] < HEAD_BOX_Y[1]).all()
    assert lm.norm(dim=-1).max() < 0.12  # near the canonical origin
    assert lm[:, 2].argmax() == 30  # nose tip in front
    assert lm[8, 1] == lm[:, 1].min() and (lm[list(BROWS), 1] > lm[list(EYES), 1].max()).all()
    torch.testing.assert_close(lm[0] * torch.tensor([-1.0, 1.0, 1.0]), lm[16], atol=2e-3, rtol=0)  # symmetric rig
    # On the surface: every landmark lies on a head triangle of the canonical mesh.
    bary = rig_landmark_bary(body)
    assert np.array_equal(bary, rig_landmark_bary(body))  # deterministic
    load_landmark_bary(bary)
    head = body.smpl_model.lbs_weights[:, 15][body.smpl_model.faces_tensor[bary[:, 0].astype(int)]]
    assert (head > 0.4).all()


def test_rig_face_landmarks_follow_betas(body, rig_landmarks):
    head_size = torch.zeros(2, 10)
    head_size[1, 2] = 1.0  # the rig's beta 2 grows the head
    moved = rig_face_landmarks(body, head_size)
    torch.testing.assert_close(moved[0], rig_landmarks)

    def width(lm):
        return lm[..., 16, 0] - lm[..., 0, 0]

    assert width(moved[1]) > width(moved[0]) * 1.03


def test_procedural_face_registers_onto_the_rig_head(face, rig_landmarks):
    scale, rotation, translation = register_to_body(face, rig_landmarks)
    metric = face.unit_metres * CANONICAL_PER_METRE  # canonical units per 3DMM unit at true size
    assert 0.8 * metric < scale < 1.25 * metric
    angle = torch.arccos(((torch.trace(rotation) - 1) / 2).clamp(-1, 1))
    assert angle < 0.35  # the mean-pose head pitch (0.155 rad) plus shape differences
    assert torch.linalg.det(rotation) > 0.999
    registered = RegisteredFace(face, scale, rotation, translation)
    residual = (registered.canonical_landmarks()[0] - rig_landmarks).norm(dim=-1)
    assert residual.square().mean().sqrt() < 0.015  # canonical units (about 18 mm)
    verts = registered.canonical_vertices(torch.randn(1, 80), torch.randn(1, 64))[0]
    assert verts[:, :2].abs().max() < 0.12 and verts[:, 2].max() < 0.08  # the face covers the head's front
