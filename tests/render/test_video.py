"""The videos `aniportrait render` writes (``render/video.py``): per seed in the release's naming, frame counts, PNG
frames, contact sheets, checkpoints, op implementations, no partial files after a failure, leftovers of killed
renders, and file modes. The command's bad input and help are tested in ``tests/cli/test_render.py``.

Most tests replace the built-in default (the ``small`` config) by a ``tiny`` generator (the ``tiny`` fixture of
``tests/conftest.py``) so that a render takes a fraction of a second; one test renders the real default.
"""

import os
import stat
import subprocess
import sys

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aniportrait import ops, pretrained
from aniportrait.checkpoint import save_generator
from aniportrait.cli import main
from aniportrait.config import TINY
from aniportrait.models.generator import AniPortraitGenerator, sample_identity_latents
from aniportrait.render import keyframes as kf
from aniportrait.staging import owned_prefix
from tests.helpers import listing, render

HR, LR = TINY.hr_img_size, TINY.lr_img_size
VIDEOS = ("rgb", "rgb_lr", "depth")


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def names(seed: int) -> dict[str, str]:
    return {"rgb": f"video_{seed}_rgb.mp4", "rgb_lr": f"video_{seed}_rgb_lr.mp4", "depth": f"video_{seed}_depth.mp4"}


def frame_count(path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def first_frame(path) -> np.ndarray:
    reader = imageio.get_reader(path)
    try:
        for frame in reader:  # iterate: list(reader) raises MemoryError
            return np.asarray(frame)
    finally:
        reader.close()
    raise AssertionError(f"{path} has no frames")


def all_frames(path) -> list[np.ndarray]:
    reader = imageio.get_reader(path)
    try:
        return [np.asarray(frame) for frame in reader]
    finally:
        reader.close()


# -- videos --------------------------------------------------------------------------------------------------------


def test_render_two_seeds_writes_three_videos_each(tiny, keys, tmp_path):
    out = tmp_path / "out"
    result = ok(render("--seeds", "0,2", "--expression", keys["expression"], "--n-interval", "1", "--out", str(out)))
    expected = {*names(0).values(), *names(2).values()}
    assert listing(out) == expected  # nothing else: no staging folder, no write-test file, no PNGs
    for seed in (0, 2):
        for kind, name in names(seed).items():
            assert frame_count(out / name) == 3, name
            frame = first_frame(out / name)
            side = LR if kind == "rgb_lr" else HR
            assert frame.shape == (side, side, 3) and frame.dtype == np.uint8, name
    assert "wrote 3 frames per seed" in result.stdout
    # The progress bar counts seeds x frames.
    assert "6/6" in result.stderr and "frame" in result.stderr


def test_render_frames_are_keyframes_times_n_interval_at_the_given_fps(tiny, keys, tmp_path):
    out = tmp_path / "out"
    args = ["--pose", keys["pose"], "--camera", keys["camera"], "--n-interval", "3", "--fps", "9", "--quiet"]
    result = ok(render(*args, "--out", str(out)))
    assert result.stderr == ""  # --quiet: no progress bar
    for name in names(0).values():
        frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(out / name))
        assert frames == 9 and seconds == pytest.approx(1.0, abs=0.12)
    assert listing(out) == set(names(0).values())


def test_png_frames_match_the_video(tiny, keys, tmp_path):
    out = tmp_path / "out"
    ok(render("--camera", keys["camera2"], "--n-interval", "2", "--png", "--quiet", "--out", str(out)))
    pngs = [f"frames_0/frame_{i:05d}.png" for i in range(4)]
    assert listing(out) == {*names(0).values(), "frames_0", *pngs}
    frames = [imageio.imread(out / p) for p in pngs]
    video = all_frames(out / names(0)["rgb"])
    assert len(video) == 4
    for png, decoded in zip(frames, video):
        assert png.shape == (HR, HR, 3) and png.dtype == np.uint8
        # Lossy video coding: close on average, not equal.
        assert np.abs(png.astype(int) - decoded.astype(int)).mean() < 4
    # The camera moves: the frames are not all the same.
    assert not np.array_equal(frames[0], frames[1])


def test_contact_sheet_tiles_evenly_spaced_frames_per_seed(tiny, keys, tmp_path):
    out = tmp_path / "out"
    # 2 camera keyframes x 4 frames = 8 frames per seed; 3 columns pick frames 0, 4 (3.5 rounded to even) and 7.
    args = ["--camera", keys["camera2"], "--n-interval", "4", "--png", "--quiet", "--seeds", "0,1"]
    result = ok(render(*args, "--contact-sheet", "3", "--out", str(out)))
    assert "contact_sheet.png" in result.stdout
    sheet = imageio.imread(out / "contact_sheet.png")
    gap = 2
    assert sheet.shape == (2 * HR + gap, 3 * HR + gap * 2, 3)
    for row, seed in enumerate((0, 1)):
        for col, frame in enumerate((0, 4, 7)):
            tile = sheet[row * (HR + gap) : row * (HR + gap) + HR, col * (HR + gap) : col * (HR + gap) + HR]
            expected = imageio.imread(out / f"frames_{seed}" / f"frame_{frame:05d}.png")
            np.testing.assert_array_equal(tile, expected)
    assert (sheet[HR : HR + gap] == 255).all(), "white gaps between rows"


def test_sheet_frame_indices():
    from aniportrait.render.video import sheet_frame_indices

    assert sheet_frame_indices(136, 0) == []
    assert sheet_frame_indices(136, 1) == [0]
    assert sheet_frame_indices(136, 5) == [0, 34, 68, 101, 135]  # 33.75 -> 34, 67.5 -> 68, 101.25 -> 101
    assert sheet_frame_indices(3, 8) == [0, 1, 2]  # fewer frames than columns: each once
    assert sheet_frame_indices(1, 4) == [0]


def test_seeds_are_different_identities_and_deterministic(tiny, keys, tmp_path):
    common = ["--camera", keys["camera2"], "--n-interval", "1", "--png", "--quiet"]
    ok(render(*common, "--seeds", "0-1", "--out", str(tmp_path / "a")))
    ok(render(*common, "--seeds", "1", "--out", str(tmp_path / "b")))
    seed0 = imageio.imread(tmp_path / "a" / "frames_0" / "frame_00000.png")
    seed1 = imageio.imread(tmp_path / "a" / "frames_1" / "frame_00000.png")
    again = imageio.imread(tmp_path / "b" / "frames_1" / "frame_00000.png")
    assert not np.array_equal(seed0, seed1)
    np.testing.assert_array_equal(seed1, again)  # a seed means the same identity in any seed list


def test_builtin_trajectories(tiny, tmp_path):
    ok(render("--trajectory", "yaw", "--n-interval", "1", "--quiet", "--out", str(tmp_path / "yaw")))
    assert frame_count(tmp_path / "yaw" / names(0)["rgb"]) == len(kf.builtin("yaw"))
    # Without keyframe files or --trajectory, the demo.
    ok(render("--n-interval", "1", "--seeds", "3", "--quiet", "--out", str(tmp_path / "demo")))
    assert frame_count(tmp_path / "demo" / names(3)["depth"]) == len(kf.builtin("demo")) == 17


def test_checkpoint_renders_like_the_builtin_it_was_saved_from(tiny, keys, tmp_path):
    checkpoint = tmp_path / "tiny.safetensors"
    save_generator(checkpoint, tiny)
    common = ["--camera", keys["camera2"], "--n-interval", "1", "--png", "--quiet"]
    ok(render(*common, "--out", str(tmp_path / "builtin")))
    ok(render(*common, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "ckpt")))
    for i in range(2):
        a = imageio.imread(tmp_path / "builtin" / "frames_0" / f"frame_{i:05d}.png")
        b = imageio.imread(tmp_path / "ckpt" / "frames_0" / f"frame_{i:05d}.png")
        np.testing.assert_array_equal(a, b)
    assert listing(tmp_path / "ckpt") == listing(tmp_path / "builtin")


def test_checkpoint_with_its_own_valid_index(tiny, keys, tmp_path):
    checkpoint = tmp_path / "tiny.safetensors"
    save_generator(checkpoint, tiny, valid_index=torch.arange(0, 6890, 2))
    args = ["--checkpoint", str(checkpoint), "--camera", keys["camera2"], "--n-interval", "1", "--quiet"]
    ok(render(*args, "--out", str(tmp_path / "out")))
    assert frame_count(tmp_path / "out" / names(0)["rgb"]) == 2


# Ref and Triton take the same discrete decisions from the same inputs: the nearest vertex (both rank by
# dx*dx + dy*dy + dz*dz, correctly rounded without FMA contraction, ties to the lower index), the crossing interval
# and the depth order. They differ only in how the compositing products and sums are rounded, a few float32 ulps
# (5e-7 measured); a 6-entry composite's forward error is about 14 ulps per path, so 1e-5 holds on any IEEE-754 CPU
# or GPU, whatever its vector width or FMA use.
IMPL_TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # else the interpreter (tests/conftest.py)


@pytest.mark.interpret
def test_triton_impl_matches_ref_in_float(tiny, keys, monkeypatch):
    generator = tiny.to(TRITON_DEVICE)
    body = pretrained.body_for_checkpoint({"body": "procedural"}, None, None, TRITON_DEVICE)
    frames = kf.interpolate(kf.from_files(keys["expression"], keys["pose"], keys["camera"]), 1)
    controls = [torch.from_numpy(a).to(TRITON_DEVICE) for a in (frames.camera, frames.pose, frames.expression)]
    latents = [t.to(TRITON_DEVICE) for t in sample_identity_latents(TINY, [0], id_bank=generator.id_bank)]
    calls: dict[str, list] = {"ref": [], "triton": []}

    def recorder(name, op):
        def record(*args, impl, **kwargs):
            outputs = op(*args, impl=impl, **kwargs)
            calls[impl].append((name, outputs))
            return outputs

        return record

    for name in ("inverse_lbs", "manifold_intersect", "volume_composite"):
        monkeypatch.setattr(ops, name, recorder(name, getattr(ops, name)))
    results: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for impl in ("ref", "triton"):
            identity = generator.prepare_identity(*latents, psi=0.7, impl=impl)
            results[impl] = [identity.lr_textures, identity.hr_textures]
            for i in range(len(frames)):
                out = generator.render_frame(identity, body, *(c[i : i + 1] for c in controls), impl=impl)
                results[impl] += [out["image"], out["image_lr"], out["depth"], out["depth_lr"]]
    assert [name for name, _ in calls["ref"]] == [name for name, _ in calls["triton"]]
    assert [name for name, _ in calls["ref"]].count("inverse_lbs") == len(frames)
    for (name, ref), (_, triton) in zip(calls["ref"], calls["triton"]):
        if name == "inverse_lbs":  # the nearest vertices' own matrices: equal iff the same vertices were chosen
            moved = (triton[1] != ref[1]).flatten(-2).any(-1).sum().item()
            assert moved == 0, f"{moved} queries chose another vertex"
        elif name == "manifold_intersect":  # the same crossings
            assert torch.equal(triton[1], ref[1]), "another crossing interval"
            torch.testing.assert_close(triton[0], ref[0], **IMPL_TOLERANCE)
        else:  # colour, depth and per-entry weights: a different depth order would move the weights by O(1)
            for a, b in zip(ref, triton):
                torch.testing.assert_close(b, a, **IMPL_TOLERANCE)
    for a, b in zip(results["ref"], results["triton"]):
        torch.testing.assert_close(b, a, **IMPL_TOLERANCE)


@pytest.mark.interpret
def test_triton_impl_renders_the_same_files_as_ref(tiny, keys, tmp_path):
    """End to end: the same files and frame counts. The videos' pixels are not compared: one level of difference
    in one input pixel (a float difference of 1e-7 at a rounding boundary) becomes up to ~10 levels over a block
    once x264 has encoded it."""
    common = ["--camera", keys["camera2"], "--n-interval", "1", "--png", "--quiet"]
    for impl in ("ref", "triton"):
        ok(
            CliRunner().invoke(
                main, ["render", "--device", TRITON_DEVICE, *common, "--impl", impl, "--out", str(tmp_path / impl)]
            )
        )
    assert listing(tmp_path / "triton") == listing(tmp_path / "ref")
    for name in names(0).values():
        assert frame_count(tmp_path / "triton" / name) == frame_count(tmp_path / "ref" / name) == 2
    for i in range(2):
        png = f"frames_0/frame_{i:05d}.png"
        a = imageio.imread(tmp_path / "ref" / png).astype(int)
        b = imageio.imread(tmp_path / "triton" / png).astype(int)
        assert np.abs(a - b).max() <= 1  # lossless: float frames within 1e-5 truncate at most 1 level apart


def test_rerender_replaces_previous_output(tiny, keys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    ok(render("--camera", keys["camera2"], "--n-interval", "2", "--png", "--quiet", "--out", str(out)))
    ok(render("--camera", keys["camera2"], "--n-interval", "1", "--png", "--quiet", "--out", str(out)))
    assert frame_count(out / names(0)["rgb"]) == 2
    assert sorted(os.listdir(out / "frames_0")) == ["frame_00000.png", "frame_00001.png"]  # old frames removed
    assert (out / "notes.txt").read_text() == "mine"


def test_real_builtin_default_renders(keys, tmp_path, monkeypatch):
    monkeypatch.delenv("ANIPORTRAIT_SMPL", raising=False)
    out = tmp_path / "out"
    ok(render("--camera", keys["camera2"], "--n-interval", "1", "--quiet", "--out", str(out)))
    generator, metadata, _ = pretrained.builtin_generator()
    hr, lr = generator.config.hr_img_size, generator.config.lr_img_size
    assert metadata["body"] == "procedural"
    for kind, name in names(0).items():
        assert frame_count(out / name) == 2
        side = lr if kind == "rgb_lr" else hr
        assert first_frame(out / name).shape == (side, side, 3)


# -- a failure while rendering -------------------------------------------------------------------------------------


def test_failure_while_rendering_leaves_no_partial_files(tiny, keys, tmp_path, monkeypatch):
    """An error in the middle of a seed removes that seed's staging folder; finished seeds stay complete."""
    calls = {"n": 0}
    real = AniPortraitGenerator.render_frame

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # the second frame of the second seed
            raise RuntimeError("boom")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AniPortraitGenerator, "render_frame", flaky)
    out = tmp_path / "out"
    result = render(
        "--camera", keys["camera2"], "--seeds", "0,1", "--n-interval", "1", "--png", "--quiet", "--out", str(out)
    )
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert listing(out) == {*names(0).values(), "frames_0", "frames_0/frame_00000.png", "frames_0/frame_00001.png"}
    assert frame_count(out / names(0)["rgb"]) == 2


# -- leftovers of killed renders, file modes ---------------------------------------------------------------------


def test_render_removes_dead_renders_leftovers_and_keeps_live_ones(tiny, keys, tmp_path, live_pid):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "out"
    out.mkdir()
    dead_staging = out / f"{owned_prefix('render', gone.pid)}0-abcd1234"
    (dead_staging / "frames_0").mkdir(parents=True)
    (dead_staging / "video_0_rgb.mp4").write_bytes(b"partial")
    (out / f"{owned_prefix('tmp', gone.pid)}abcd1234").mkdir()  # a killed contact-sheet write
    (out / f"{owned_prefix('write-test', gone.pid)}x1y2z3").write_bytes(b"")
    live = {f"{owned_prefix('render', live_pid)}0-abcd1234", f"{owned_prefix('tmp', live_pid)}abcd1234"}
    for name in live:
        (out / name).mkdir()
    args = ["--camera", keys["camera2"], "--n-interval", "1", "--contact-sheet", "2", "--quiet", "--out", str(out)]
    ok(render(*args))
    assert listing(out) == {*names(0).values(), "contact_sheet.png", *live}


def test_staging_folder_is_named_after_the_rendering_process(tiny, keys, tmp_path, monkeypatch):
    """What a render killed mid-seed leaves behind carries its PID, so the next render can tell it is dead."""
    out = tmp_path / "out"
    seen = []
    real = AniPortraitGenerator.render_frame

    def spy(self, *args, **kwargs):
        seen.append({name for name in os.listdir(out) if name.startswith(".")})
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AniPortraitGenerator, "render_frame", spy)
    ok(render("--camera", keys["camera2"], "--seeds", "3", "--n-interval", "1", "--quiet", "--out", str(out)))
    [staging_name] = seen[0]
    assert staging_name.startswith(owned_prefix("render") + "3-") and seen[1] == seen[0]
    assert listing(out) == set(names(3).values())


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_outputs_get_the_modes_of_the_umask(tiny, keys, tmp_path, umask):
    previous = os.umask(umask)
    try:
        out = tmp_path / "out"
        args = ["--camera", keys["camera2"], "--n-interval", "1", "--png", "--contact-sheet", "2", "--quiet"]
        ok(render(*args, "--out", str(out)))
    finally:
        os.umask(previous)
    assert listing(out) == {*names(0).values(), "frames_0", "frames_0/frame_00000.png", "frames_0/frame_00001.png"} | {
        "contact_sheet.png"
    }
    for path in [out, *(out / name for name in listing(out))]:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path.name, oct(path.stat().st_mode))
