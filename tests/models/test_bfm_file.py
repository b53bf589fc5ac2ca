"""Reading BFM_model_front.mat: round trips, path resolution, actionable errors, never unpickling."""

import os
import pickle

import numpy as np
import pytest
import scipy.io
import torch

from aniportrait.models.bfm_file import build_face_model, load_bfm, resolve_bfm_path
from aniportrait.models.face3dmm import BFM_ENV_VAR, FaceModelError
from aniportrait.models.face_procedural import procedural_3dmm


def _unit(index, size):
    out = torch.zeros(1, size)
    out[0, index] = 1.0
    return out


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
