"""Reading SMPL files: pickles (restricted unpickling), npz, and actionable errors."""

import io
import os
import pickle
from typing import ClassVar

import numpy as np
import pytest

from aniportrait.models.smpl_file import SMPL_ARRAY_SHAPES, BodyModelError, load_smpl_arrays, resolve_smpl_path

# ---------------------------------------------------------------------------------------------------------------------
# Rotations


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
