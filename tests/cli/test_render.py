"""`aniportrait render`: the bad-input contract (one 'Error:' line, exit code 2, no traceback, no partial output) and
the help. The videos it writes are tested in ``tests/render/test_video.py``; the command's share of the bad-input
battery is in ``test_bad_input.py``.

The built-in default is replaced by a ``tiny`` generator (the ``tiny`` fixture of ``tests/conftest.py``)."""

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from aniportrait.checkpoint import save_generator
from aniportrait.cli import main
from aniportrait.config import RenderingConfig
from tests.helpers import error_line, listing, render, tiny_default

# -- bad input -----------------------------------------------------------------------------------------------------


def _write(folder, name, array, **kwargs):
    path = folder / name
    np.save(path, array, **kwargs)
    return str(path)


def bad_case(name, folder, keys):
    """(extra render arguments, fragments the error line must contain) of a bad-input case."""
    if name == "expression-shape":
        return ["--expression", _write(folder, "e.npy", np.zeros((3, 63)))], ["e.npy", "[N, 64]", "[3, 63]"]
    if name == "pose-shape":
        return ["--pose", _write(folder, "p.npy", np.zeros((3, 18)))], ["p.npy", "[N, 6, 3]"]
    if name == "camera-shape":
        return ["--camera", _write(folder, "c.npy", np.zeros((3, 3)))], ["c.npy", "[N, 2]"]
    if name == "pose-nan":
        pose = np.zeros((3, 6, 3))
        pose[1, 2, 0] = np.nan
        return ["--pose", _write(folder, "p.npy", pose)], ["p.npy", "NaN"]
    if name == "camera-inf":
        return ["--camera", _write(folder, "c.npy", np.array([[1.5, np.inf]]))], ["c.npy", "infinite"]
    if name == "expression-text":
        return ["--expression", _write(folder, "e.npy", np.array([["a"] * 64]))], ["e.npy", "numeric"]
    if name == "expression-pickled":
        path = _write(folder, "e.npy", np.array([[None] * 64], dtype=object), allow_pickle=True)
        return ["--expression", path], ["e.npy", "not a readable .npy array"]
    if name == "expression-npz":
        path = folder / "e.npz"
        np.savez(path, np.zeros((3, 64)))
        return ["--expression", str(path)], ["e.npz", ".npz archive"]
    if name == "length-mismatch":
        return ["--expression", keys["expression"], "--camera", keys["camera2"]], ["expression has 3", "camera has 2"]
    if name == "missing-keyframes":
        return ["--pose", str(folder / "nope.npy")], ["pose keyframe file not found", "nope.npy"]
    if name.startswith("seeds"):
        text = {"seeds-a": "a", "seeds-neg": "-1", "seeds-range": "3-1", "seeds-empty": "", "seeds-gap": "1,,2"}[name]
        return ["--seeds", text], ["bad seed list"]
    if name == "trajectory-and-file":
        return ["--trajectory", "yaw", "--camera", keys["camera2"]], ["--trajectory"]
    if name == "missing-checkpoint":
        return ["--checkpoint", str(folder / "nope.safetensors")], ["checkpoint not found", "nope.safetensors"]
    if name == "corrupt-checkpoint":
        path = folder / "bad.safetensors"
        path.write_bytes(b"garbage" * 10)
        return ["--checkpoint", str(path)], ["bad.safetensors", "not a readable safetensors file"]
    if name == "official-pt":
        path = folder / "sshq512.pt"
        torch.save({"w": torch.zeros(1)}, path)
        return ["--checkpoint", str(path)], ["convert-official"]
    if name == "smpl-checkpoint-without-smpl":
        path = folder / "smpl.safetensors"
        save_generator(path, tiny_default(), body="smpl", valid_index=torch.arange(100))
        return ["--checkpoint", str(path)], ["SMPL", "--smpl"]
    if name == "smpl-file-missing":
        path = folder / "smpl.safetensors"
        save_generator(path, tiny_default(), body="smpl", valid_index=torch.arange(100))
        return ["--checkpoint", str(path), "--smpl", str(folder / "SMPL_NEUTRAL.pkl")], ["SMPL_NEUTRAL.pkl"]
    if name == "bad-rendering-settings":
        path = folder / "psi.safetensors"
        save_generator(path, tiny_default())
        with safe_open(path, framework="pt") as f:
            tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
        save_file(tensors, path, metadata={**metadata, "rendering": '{"psi": 3}'})
        return ["--checkpoint", str(path)], ["psi.safetensors", "rendering settings", "psi=3"]
    if name == "smpl-with-procedural":
        path = folder / "rig.npz"
        np.savez(path, v_template=np.zeros((6890, 3)))
        return ["--smpl", str(path)], ["--smpl", "procedural"]
    if name == "device-cuda":
        if torch.cuda.is_available():
            pytest.skip("CUDA is available")
        return ["--device", "cuda"], ["CUDA", "--device cpu"]
    raise AssertionError(name)


BAD_CASES = [
    "expression-shape",
    "pose-shape",
    "camera-shape",
    "pose-nan",
    "camera-inf",
    "expression-text",
    "expression-pickled",
    "expression-npz",
    "length-mismatch",
    "missing-keyframes",
    "seeds-a",
    "seeds-neg",
    "seeds-range",
    "seeds-empty",
    "seeds-gap",
    "trajectory-and-file",
    "missing-checkpoint",
    "corrupt-checkpoint",
    "official-pt",
    "bad-rendering-settings",
    "smpl-checkpoint-without-smpl",
    "smpl-file-missing",
    "smpl-with-procedural",
    "device-cuda",
]


@pytest.mark.parametrize("name", BAD_CASES)
def test_bad_input_is_one_error_line_and_no_output(tiny, keys, tmp_path, name):
    args, fragments = bad_case(name, tmp_path, keys)
    out = tmp_path / "out"
    error_line(render(*args, "--n-interval", "1", "--out", str(out)), *fragments)
    assert listing(out) == set()


@pytest.mark.parametrize("name", ["pose-nan", "length-mismatch", "smpl-checkpoint-without-smpl"])
def test_bad_input_leaves_an_existing_out_dir_untouched(tiny, keys, tmp_path, name):
    args, fragments = bad_case(name, tmp_path, keys)
    out = tmp_path / "out"
    out.mkdir()
    (out / "video_0_rgb.mp4").write_bytes(b"an earlier video")
    error_line(render(*args, "--n-interval", "1", "--out", str(out)), *fragments)
    assert listing(out) == {"video_0_rgb.mp4"}
    assert (out / "video_0_rgb.mp4").read_bytes() == b"an earlier video"


def test_unwritable_out_dir(tiny, keys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "videos"
    error_line(render("--camera", keys["camera2"], "--n-interval", "1", "--out", str(out)), "cannot write to --out")
    assert listing(tmp_path) == {"file", "keys"} | {
        f"keys/{n}.npy" for n in ("expression", "pose", "camera", "camera2")
    }


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_out_dir(tiny, keys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        error_line(render("--camera", keys["camera2"], "--n-interval", "1", "--out", str(out)), "cannot write to --out")
        assert listing(out) == set()
    finally:
        out.chmod(0o755)


@pytest.mark.parametrize(
    "args",
    [
        ["--n-interval", "0"],
        ["--fps", "0"],
        ["--psi", "1.5"],
        ["--impl", "cuda"],
        ["--trajectory", "spin"],
        ["--out", "IS_A_FILE"],
        ["--expression", "IS_A_DIR"],
        ["--bogus"],
    ],
    ids=lambda a: a[0],
)
def test_bad_options_exit_2_without_traceback(tiny, tmp_path, args):
    (tmp_path / "file").write_text("x")
    args = [a.replace("IS_A_FILE", str(tmp_path / "file")).replace("IS_A_DIR", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    result = render(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error:" in result.stderr
    assert listing(tmp_path) == {"file"}


def test_out_is_required(tiny):
    result = render("--seeds", "0")
    assert result.exit_code == 2 and "--out" in result.stderr


def test_unknown_device_is_refused(tiny, keys, tmp_path):
    error_line(render("--camera", keys["camera2"], "--device", "gpu0", "--out", str(tmp_path / "out")), "--device")


def test_seed_out_of_range_is_refused(tiny, keys, tmp_path):
    out = tmp_path / "out"
    error_line(
        render("--camera", keys["camera2"], "--seeds", str(2**64), "--n-interval", "1", "--out", str(out)), "seed"
    )
    assert listing(out) == set()


def test_triton_without_cuda_or_interpreter_is_refused(tiny, keys, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    out = tmp_path / "out"
    error_line(
        render("--camera", keys["camera2"], "--impl", "triton", "--n-interval", "1", "--out", str(out)), "triton"
    )
    assert listing(out) == set()


# -- the checkpoint's rendering settings ---------------------------------------------------------------------------


def test_options_not_given_take_the_checkpoints_rendering_settings(keys, tmp_path):
    import imageio.v2 as imageio

    recorded, plain = tmp_path / "recorded.safetensors", tmp_path / "plain.safetensors"
    save_generator(recorded, tiny_default(), rendering=RenderingConfig(psi=0.2, n_interval=2, fps=10))
    save_generator(plain, tiny_default())
    camera = ["--camera", keys["camera2"], "--png", "--quiet"]
    runs = {
        "recorded": render("--checkpoint", str(recorded), *camera, "--out", str(tmp_path / "a")),
        "given": render(
            "--checkpoint",
            str(plain),
            *camera,
            "--psi",
            "0.2",
            "--n-interval",
            "2",
            "--fps",
            "10",
            "--out",
            str(tmp_path / "b"),
        ),
        "defaults": render("--checkpoint", str(plain), *camera, "--out", str(tmp_path / "c")),
        "overridden": render("--checkpoint", str(recorded), *camera, "--n-interval", "1", "--out", str(tmp_path / "d")),
    }
    for name, result in runs.items():
        assert result.exit_code == 0, (name, result.output)
    frames = {k: sorted((tmp_path / k / "frames_0").iterdir()) for k in "abcd"}
    assert [len(frames[k]) for k in "abcd"] == [4, 4, 16, 2]  # 2 keyframes x n_interval (2, 2, 8, 1)
    for a, b in zip(frames["a"], frames["b"]):
        assert np.array_equal(imageio.imread(a), imageio.imread(b))
    assert not np.array_equal(imageio.imread(frames["a"][0]), imageio.imread(frames["c"][0]))  # psi 0.2 vs 0.7

    def fps(folder):
        with imageio.get_reader(folder / "video_0_rgb.mp4") as reader:
            return reader.get_meta_data()["fps"]

    assert fps(tmp_path / "a") == fps(tmp_path / "b") == 10 and fps(tmp_path / "c") == 25


# -- help ----------------------------------------------------------------------------------------------------------


def test_render_help_lists_options():
    result = CliRunner().invoke(main, ["render", "--help"])
    assert result.exit_code == 0
    options = "--checkpoint --smpl --seeds --expression --pose --camera --trajectory --n-interval --fps --psi"
    for option in (*options.split(), "--device", "--impl", "--sampling", "--png", "--out", "--quiet"):
        assert option in result.output, option
    assert "0,1,4-6" in result.output and "[N, 64]" in result.output and "[N, 6, 3]" in result.output
