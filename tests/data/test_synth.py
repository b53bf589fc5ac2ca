"""The synthetic dataset on disk: format, determinism and writing (figures: test_synth_labels, _scene, _render)."""

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from aniportrait import cameras
from aniportrait.data import synth
from aniportrait.data.format import FACES_DIR, FORMAT, IMAGES_DIR, LABEL_SHAPES, LABELS_FILE, META_FILE, VERSION

# -- format ----------------------------------------------------------------------------------------------------------


def test_dataset_follows_the_format(tmp_path):
    out = synth.synthesize(tmp_path / "ds", 5, res=32, seed=1, progress=False)
    assert out == tmp_path / "ds"
    meta = json.loads((out / META_FILE).read_text())
    assert meta["format"] == FORMAT and meta["version"] == VERSION
    assert (meta["image_size"], meta["face_size"], meta["count"]) == (32, 16, 5)
    assert isinstance(meta["source"], str) and meta["face_camera"]["fov_degrees"] == cameras.FACE_CAMERA_FOV_DEGREES
    with np.load(out / LABELS_FILE, allow_pickle=False) as npz:
        assert set(npz.files) == {"ids", *LABEL_SHAPES}
        ids = npz["ids"]
        assert ids.dtype.kind == "U" and ids.shape == (5,) and len(set(ids.tolist())) == 5
        for key, shape in LABEL_SHAPES.items():
            assert npz[key].dtype == np.float32 and npz[key].shape == (5, *shape), key
            assert np.isfinite(npz[key]).all()
        camera, pose, expression = npz["camera"], npz["pose"], npz["expression"]
    assert np.all(np.abs(camera[:, 0] - math.pi / 2) <= synth.CAMERA_PITCH_RANGE + 1e-6)
    assert np.all(np.abs(camera[:, 1] - math.pi / 2) <= synth.CAMERA_YAW_RANGE + 1e-6)
    assert np.all(np.abs(pose) <= np.array(synth.POSE_RANGES) + 1e-6)
    assert np.abs(expression[:, 4:]).max() < 0.5  # only the documented coefficients vary widely
    for stem in ids:
        for folder, size in ((IMAGES_DIR, 32), (FACES_DIR, 16)):
            with Image.open(out / folder / f"{stem}.png") as im:
                assert im.format == "PNG" and im.mode == "RGB" and im.size == (size, size)
    assert sorted(os.listdir(tmp_path)) == ["ds"]  # no temporary folder left
    from aniportrait.data.dataset import check_dataset

    assert check_dataset(out).ok


def test_default_face_size_and_white_background(tmp_path):
    out = synth.synthesize(tmp_path / "ds", 1, res=24, face_res=20, progress=False)
    assert json.loads((out / META_FILE).read_text())["face_size"] == 20
    image = np.asarray(Image.open(out / IMAGES_DIR / "000000.png"))
    assert (image[0] == 255).all()  # the top row is background: white, like the release's renders


# -- determinism -----------------------------------------------------------------------------------------------------


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    a = _files(synth.synthesize(tmp_path / "a", 4, res=32, seed=7, progress=False))
    b = _files(synth.synthesize(tmp_path / "b", 4, res=32, seed=7, progress=False))
    c = _files(synth.synthesize(tmp_path / "c", 4, res=32, seed=8, progress=False))
    assert a == b  # bitwise: labels.npz (fixed zip timestamps), PNGs and dataset.json
    assert a.keys() == c.keys()
    for key in a:
        if key.endswith(".png"):
            assert a[key] != c[key], key
    with np.load(tmp_path / "a" / LABELS_FILE) as la, np.load(tmp_path / "c" / LABELS_FILE) as lc:
        for key in LABEL_SHAPES:
            assert not np.array_equal(la[key], lc[key]), key


# -- writing ---------------------------------------------------------------------------------------------------------


def test_refuses_a_non_empty_out_dir(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        synth.synthesize(out, 2, res=16, progress=False)
    assert os.listdir(out) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["ds"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (synth.synthesize(empty, 1, res=16, progress=False) / META_FILE).is_file()


@pytest.mark.parametrize("bad", [{"n": 0}, {"res": 0}, {"seed": -1}])
def test_rejects_bad_arguments(tmp_path, bad):
    args = {"n": 2, "res": 16, "seed": 0} | bad
    with pytest.raises(ValueError):
        synth.synthesize(tmp_path / "ds", progress=False, **args)
    assert not (tmp_path / "ds").exists()


def test_failure_midway_leaves_no_output(tmp_path, monkeypatch):
    calls = []
    real = synth._write_png

    def flaky(path, pixels):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        real(path, pixels)

    monkeypatch.setattr(synth, "_write_png", flaky)
    threads = torch.get_num_threads()
    with pytest.raises(OSError, match="disk full"):
        synth.synthesize(tmp_path / "ds", 40, res=16, progress=False)
    assert os.listdir(tmp_path) == []  # neither the dataset nor the temporary folder
    assert torch.get_num_threads() == threads
