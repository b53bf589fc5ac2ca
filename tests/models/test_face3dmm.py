"""3DMM interface: the linear face model, BFM_model_front loading, the procedural face, registration to the SMPL head."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from aniportrait.constants import SMPL_NUM_FACES
from aniportrait.models.bfm_file import build_face_model, load_bfm, resolve_bfm_path
from aniportrait.models.face3dmm import BFM_ENV_VAR, CANONICAL_PER_METRE, EXPRESSION_MEANING, Face3DMM, FaceModelError
from aniportrait.models.face_procedural import procedural_3dmm
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
UPPER_LIDS = [37, 38, 43, 44]
HEAD_BOX_X, HEAD_BOX_Y = (-0.07, 0.07), (-0.09, 0.1)  # canonical units
MM = 1e-2  # decimetres per millimetre (the model unit)


@pytest.fixture(scope="module")
def face():
    return procedural_3dmm()


@pytest.fixture(scope="module")
def rig_landmarks(body):
    return rig_face_landmarks(body)


def _unit(index, size):
    out = torch.zeros(1, size)
    out[0, index] = 1.0
    return out


def _landmark_motion(face, coefficient):
    """[68] landmark displacement (mm) for expression coefficient ``coefficient`` = 1."""
    moved = face.landmarks(None, _unit(coefficient, 64))[0]
    return (moved - face.landmarks()[0]).norm(dim=-1) / MM


# ---------------------------------------------------------------------------------------------------------------------
# The linear model


@pytest.mark.parametrize("batch", [1, 3])
def test_face3dmm_shapes(face, batch):
    n = face.num_vertices
    id, exp, tex = torch.randn(batch, 80), torch.randn(batch, 64), torch.randn(batch, 80)
    assert (
        face.mean_shape.shape == (3 * n,) and face.id_base.shape == (3 * n, 80) and face.exp_base.shape == (3 * n, 64)
    )
    assert face.triangles.dtype == torch.int64 and face.triangles.shape[1] == 3
    assert face.landmark_index.dtype == torch.int64 and face.landmark_index.shape == (68,)
    assert face.vertices(id, exp).shape == (batch, n, 3)
    assert face(id, exp).shape == (batch, n, 3)
    assert face.landmarks(id, exp).shape == (batch, 68, 3)
    assert face.expression_offsets(exp).shape == (batch, n, 3)
    assert face.texture(tex).shape == (batch, n, 3)
    assert face.vertices(id, exp).dtype == torch.float32
    assert procedural_3dmm(dtype=torch.float64).vertices(id, exp).dtype == torch.float64


def test_face3dmm_zero_coefficients_give_the_mean(face):
    mean = face.mean_shape.reshape(-1, 3)
    torch.testing.assert_close(face.vertices(torch.zeros(2, 80), torch.zeros(2, 64)), mean.expand(2, -1, -1))
    torch.testing.assert_close(face.vertices()[0], mean)
    torch.testing.assert_close(face.landmarks()[0], mean[face.landmark_index])
    torch.testing.assert_close(face.texture(torch.zeros(1, 80))[0], face.mean_tex.reshape(-1, 3))


def test_face3dmm_is_linear_in_id_and_expression():
    face = procedural_3dmm(dtype=torch.float64)
    id1, id2 = torch.randn(2, 80, dtype=torch.float64), torch.randn(2, 80, dtype=torch.float64)
    exp1, exp2 = torch.randn(2, 64, dtype=torch.float64), torch.randn(2, 64, dtype=torch.float64)
    mean = face.vertices()

    def offset(id, exp):
        return face.vertices(id, exp) - mean

    torch.testing.assert_close(
        offset(2.0 * id1 - 0.5 * id2, exp1),
        2.0 * offset(id1, exp1) - 0.5 * offset(id2, exp1) - 0.5 * offset(torch.zeros_like(id1), exp1),
    )
    torch.testing.assert_close(offset(id1, exp1 + exp2), offset(id1, exp1) + offset(torch.zeros_like(id1), exp2))
    torch.testing.assert_close(offset(torch.zeros_like(id1), exp1), face.expression_offsets(exp1))
    torch.testing.assert_close(face.landmarks(id1, exp1), face.vertices(id1, exp1)[:, face.landmark_index])


def test_face3dmm_is_differentiable(face):
    id, exp = torch.randn(2, 80, requires_grad=True), torch.randn(2, 64, requires_grad=True)
    face.landmarks(id, exp).square().sum().backward()
    assert id.grad.abs().sum() > 0 and exp.grad.abs().sum() > 0


def test_face3dmm_rejects_bad_coefficients(face):
    with pytest.raises(ValueError, match=r"id must be a float tensor of shape \[B, 80\]"):
        face.vertices(torch.zeros(2, 79), torch.zeros(2, 64))
    with pytest.raises(ValueError, match=r"expression must be .* \[B, 64\] with B = 2"):
        face.vertices(torch.zeros(2, 80), torch.zeros(3, 64))
    with pytest.raises(ValueError, match="float tensor"):
        face.landmarks(torch.zeros(1, 80, dtype=torch.long), None)
    with pytest.raises(FaceModelError, match=r"id_base must have shape \[3N, 80\]"):
        Face3DMM(np.zeros(9), np.zeros((9, 40)), np.zeros((9, 64)), np.zeros((1, 3)), np.zeros(68))
    with pytest.raises(FaceModelError, match="landmark_index indexes vertices outside"):
        Face3DMM(np.zeros(9), np.zeros((9, 80)), np.zeros((9, 64)), np.zeros((1, 3)), np.full(68, 3))


def test_face3dmm_state_dict_holds_no_face_data(face):
    """The buffers are licensed data for BFM: they must never be saved into a checkpoint."""
    assert face.state_dict() == {}
    registered = RegisteredFace(face, 1.0, torch.eye(3), torch.zeros(3))
    assert registered.state_dict() == {}


# ---------------------------------------------------------------------------------------------------------------------
# The procedural model


def test_procedural_3dmm_is_deterministic(face):
    again = procedural_3dmm()
    for name, buffer in face.named_buffers():
        assert torch.equal(buffer, getattr(again, name)), name
    other = procedural_3dmm(seed=1)
    # The seed only drives the random fields: the mean, the leading directions and the landmarks stay.
    assert torch.equal(face.mean_shape, other.mean_shape) and torch.equal(face.landmark_index, other.landmark_index)
    assert torch.equal(face.exp_base[:, :4], other.exp_base[:, :4]) and torch.equal(
        face.id_base[:, :10], other.id_base[:, :10]
    )
    assert not torch.equal(face.exp_base[:, 4:], other.exp_base[:, 4:])


def test_procedural_3dmm_mesh(face):
    verts = face.vertices()[0]
    assert face.unit_metres == 0.1 and face.num_vertices == 55**2
    assert procedural_3dmm(num_vertices=1000).num_vertices == 31**2
    with pytest.raises(ValueError, match="num_vertices"):
        procedural_3dmm(num_vertices=100)
    torch.testing.assert_close(verts.mean(0), torch.zeros(3), atol=1e-6, rtol=0)  # recentred like Deep3DFaceRecon
    width, height = (verts.max(0).values - verts.min(0).values)[:2] / MM
    assert 140 < width < 180 and 160 < height < 200  # a face-sized patch (mm)
    a, b, c = (verts[face.triangles[:, i]] for i in range(3))
    assert (torch.linalg.cross(b - a, c - a)[:, 2] > 0).all()  # counter-clockwise seen from the front (+z)
    assert torch.unique(face.triangles).numel() == face.num_vertices
    assert torch.unique(face.landmark_index).numel() == 68
    lm = face.landmarks()[0]
    assert lm[:, 2].argmax() == 30  # the nose tip is the front-most landmark
    assert lm[8, 1] == lm[:, 1].min()  # the chin is the lowest
    assert lm[36, 0] < lm[39, 0] < 0 < lm[42, 0] < lm[45, 0]  # right eye on -x (subject's right), left on +x
    mirrored = lm[list(JAW)] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(mirrored, lm[list(reversed(JAW))])


def test_procedural_3dmm_expression_meaning(face):
    assert EXPRESSION_MEANING[:4] == ("mouth open", "smile", "eyes closed", "brows raised")

    def rest(region):
        return [k for k in range(68) if k not in region]

    for coefficient, region in ((0, MOUTH), (2, EYES), (3, BROWS)):
        motion = _landmark_motion(face, coefficient)
        assert motion[list(region)].max() > 4.0, coefficient  # several mm per unit coefficient
        assert motion[rest(region)].mean() < 0.05 * motion[list(region)].mean(), coefficient
        assert motion[rest(region)].max() < 0.1 * motion[list(region)].max(), coefficient
    base = face.landmarks()[0]
    open_mouth = face.landmarks(None, _unit(0, 64))[0]
    assert open_mouth[57, 1] < base[57, 1] - 5 * MM and open_mouth[66, 1] < base[66, 1]  # the lower lip drops
    smile = face.landmarks(None, _unit(1, 64))[0]
    assert smile[48, 1] > base[48, 1] and smile[54, 1] > base[54, 1]  # mouth corners up
    assert smile[48, 0] < base[48, 0] and smile[54, 0] > base[54, 0]  # and outwards
    assert _landmark_motion(face, 1)[list(MOUTH)].argmax() in (0, 6)  # corners 48 / 54 move most
    closed = face.landmarks(None, _unit(2, 64))[0]
    assert (closed[UPPER_LIDS, 1] < base[UPPER_LIDS, 1] - 3 * MM).all()
    lower_lids = [41, 40, 47, 46]  # below 37, 38, 43, 44
    assert (base[UPPER_LIDS, 1] - base[lower_lids, 1] > 8 * MM).all()  # open: about 9 mm
    assert ((closed[UPPER_LIDS, 1] - closed[lower_lids, 1]).abs() < 1 * MM).all()  # coefficient 2 = 1: closed
    raised = face.landmarks(None, _unit(3, 64))[0]
    assert (raised[list(BROWS), 1] > base[list(BROWS), 1] + 1 * MM).all()
    # The other 60 directions are small localized bumps.
    offsets = face.exp_base[:, 4:].reshape(-1, 3, 60).norm(dim=1)
    assert offsets.max() < 2 * MM and (offsets > 1e-3 * MM).float().mean() < 0.5


def test_procedural_3dmm_identity_directions(face):
    verts = face.vertices()[0]
    wider = face.vertices(_unit(0, 80))[0]
    assert wider[:, 0].max() > verts[:, 0].max() + 2 * MM
    longer = face.vertices(_unit(1, 80))[0]
    assert longer[:, 1].max() - longer[:, 1].min() > verts[:, 1].max() - verts[:, 1].min() + 4 * MM
    motion = face.id_base.reshape(-1, 3, 80).norm(dim=1).max(0).values / MM
    assert (motion[:10] > 0.5).all() and (motion > 0.05).all() and (motion < 10).all()
    assert (motion[10:-1] >= motion[11:] * 0.5).all()  # the random fields decay like PCA components


# ---------------------------------------------------------------------------------------------------------------------
# BFM_model_front.mat


def _bfm_arrays(n=120, columns=(80, 64, 80), seed=0):
    """BFM_model_front-like arrays: 1-based tri and keypoints, [1, 3N] means, as util/load_mats.py writes them."""
    rng = np.random.default_rng(seed)
    side = 10
    grid = np.arange(n).reshape(-1, side)[:-1, :-1].reshape(-1)
    tri = np.concatenate(
        [np.stack([grid, grid + 1, grid + side + 1], 1), np.stack([grid, grid + side + 1, grid + side], 1)]
    )
    return {
        "meanshape": rng.normal(size=(1, 3 * n)),
        "idBase": rng.normal(size=(3 * n, columns[0])),
        "exBase": rng.normal(size=(3 * n, columns[1])),
        "meantex": rng.uniform(0, 255, size=(1, 3 * n)),
        "texBase": rng.normal(size=(3 * n, columns[2])),
        "tri": (tri + 1).astype(np.float64),
        "keypoints": (rng.choice(n, size=68, replace=False) + 1).astype(np.float64)[None],
        "point_buf": rng.integers(1, n, size=(n, 8)).astype(np.float64),
    }


def _savemat(tmp_path, arrays, name="BFM_model_front.mat"):
    path = tmp_path / name
    scipy.io.savemat(path, arrays)
    return path


def test_load_bfm_round_trip(tmp_path):
    arrays = _bfm_arrays(columns=(100, 79, 199))  # wider bases are truncated like Deep3DFaceRecon
    path = _savemat(tmp_path, arrays)
    face = load_bfm(path, dtype=torch.float64, recenter=False)
    assert face.num_vertices == 120 and face.unit_metres == 0.1 and face.has_texture
    np.testing.assert_allclose(face.mean_shape.numpy(), arrays["meanshape"][0])
    np.testing.assert_allclose(face.id_base.numpy(), arrays["idBase"][:, :80])
    np.testing.assert_allclose(face.exp_base.numpy(), arrays["exBase"][:, :64])
    np.testing.assert_allclose(face.tex_base.numpy(), arrays["texBase"][:, :80])
    np.testing.assert_array_equal(face.triangles.numpy(), arrays["tri"] - 1)
    np.testing.assert_array_equal(face.landmark_index.numpy(), arrays["keypoints"][0] - 1)
    id, exp = torch.randn(2, 80, dtype=torch.float64), torch.randn(2, 64, dtype=torch.float64)
    expected = arrays["meanshape"] + id.numpy() @ arrays["idBase"][:, :80].T + exp.numpy() @ arrays["exBase"][:, :64].T
    np.testing.assert_allclose(face.vertices(id, exp).numpy(), expected.reshape(2, -1, 3), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        face.landmarks(id, exp).numpy(), expected.reshape(2, -1, 3)[:, arrays["keypoints"][0].astype(int) - 1]
    )
    # Deep3DFaceRecon's default recentring subtracts the centroid of the mean shape.
    centred = load_bfm(path).vertices()[0]
    torch.testing.assert_close(centred.mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_load_bfm_without_texture_and_column_keypoints(tmp_path):
    arrays = _bfm_arrays()
    del arrays["meantex"], arrays["texBase"]
    arrays["keypoints"] = arrays["keypoints"].T.astype(np.int32)  # [68, 1] integers are fine too
    face = load_bfm(_savemat(tmp_path, arrays))
    assert not face.has_texture and face.landmark_index.shape == (68,)
    with pytest.raises(ValueError, match="no texture basis"):
        face.texture(torch.zeros(1, 80))


def test_bfm_path_resolution(tmp_path, monkeypatch):
    path = _savemat(tmp_path, _bfm_arrays())
    monkeypatch.delenv(BFM_ENV_VAR, raising=False)
    assert resolve_bfm_path(None) is None
    assert build_face_model().num_vertices == procedural_3dmm().num_vertices  # no BFM: the procedural stand-in
    monkeypatch.setenv(BFM_ENV_VAR, str(path))
    assert resolve_bfm_path(None) == str(path) and resolve_bfm_path("") == str(path)
    assert load_bfm().num_vertices == 120 and build_face_model().num_vertices == 120
    assert resolve_bfm_path("~/x.mat") == os.path.expanduser("~/x.mat")


def _v73_file(path):
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    path.write_bytes(header.ljust(512, b"\x00") + b"\x89HDF\r\n\x1a\n" + b"\x00" * 256)


def _bad_files(tmp_path):
    arrays = _bfm_arrays()
    yield "not found", tmp_path / "missing.mat"
    yield (
        "lacks the BFM_model_front keys \\['exBase'\\]",
        _savemat(tmp_path, {k: v for k, v in arrays.items() if k != "exBase"}, "no_exp.mat"),
    )
    yield (
        r"idBase must have shape \[3N, >=80\]",
        _savemat(tmp_path, {**arrays, "idBase": arrays["idBase"][:, :40]}, "narrow.mat"),
    )
    yield (
        r"meanshape must have shape \[1, 3N\]",
        _savemat(tmp_path, {**arrays, "meanshape": np.zeros((1, 7))}, "odd.mat"),
    )
    yield (
        r"keypoints \(1-based\) indexes vertices outside",
        _savemat(tmp_path, {**arrays, "keypoints": arrays["keypoints"] - 1}, "zero_based.mat"),
    )
    yield "tri must have shape", _savemat(tmp_path, {**arrays, "tri": arrays["tri"][:, :2]}, "tri.mat")
    yield "holds NaN", _savemat(tmp_path, {**arrays, "exBase": np.full_like(arrays["exBase"], np.nan)}, "nan.mat")
    yield (
        "meantex and texBase must be present together",
        _savemat(tmp_path, {k: v for k, v in arrays.items() if k != "texBase"}, "half_tex.mat"),
    )
    v73 = tmp_path / "v73.mat"
    _v73_file(v73)
    yield "MATLAB v7.3 \\(HDF5\\)", v73
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    yield "cannot read", garbage
    empty = tmp_path / "empty.mat"
    empty.write_bytes(b"")
    yield "cannot read", empty


def test_load_bfm_errors_are_actionable(tmp_path):
    for message, path in _bad_files(tmp_path):
        with pytest.raises(FaceModelError, match=message) as info:
            load_bfm(path)
        text = str(info.value)
        assert "\n" not in text, message
        for hint in (
            "Basel Face Model 2009",
            "Exp_Pca.bin",
            "registration required",
            "never ship",
            "--bfm PATH",
            BFM_ENV_VAR,
        ):
            assert hint in text, (message, hint)
    assert isinstance(FaceModelError("x"), ValueError)


def test_load_bfm_without_a_path(monkeypatch):
    monkeypatch.delenv(BFM_ENV_VAR, raising=False)
    with pytest.raises(FaceModelError, match="no BFM file given.*--bfm PATH"):
        load_bfm()


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_load_bfm_never_unpickles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "pickled.mat"
    path.write_bytes(pickle.dumps({"meanshape": _Exploit()}))
    with pytest.raises(FaceModelError, match="cannot read"):
        load_bfm(path)
    assert not (tmp_path / "pwned").exists()


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
