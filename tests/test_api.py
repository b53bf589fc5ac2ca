"""The Python API (aniportrait.load): the README's example runs, frames equal the CLI's, and bad input is refused."""

import math
import re
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

import aniportrait
from aniportrait.api import MAX_FRAMES_PER_CALL, PreparedIdentity

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def portrait():
    return aniportrait.load(device="cpu")


@pytest.fixture(scope="module")
def person(portrait):
    return portrait.identity(seed=3, psi=0.7)


def test_readme_python_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    example = next(b for b in blocks if "aniportrait.load()" in b)
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 128, 128, 3)"


def test_frames_equal_the_command_line_png_frames(portrait, person, tmp_path):
    camera = np.array([[math.pi / 2, math.pi / 2 + 0.4], [math.pi / 2 - 0.2, math.pi / 2]], np.float32)
    pose = np.zeros((2, 6, 3), np.float32)
    pose[1, 3, 1] = 0.3
    expression = np.zeros((2, 64), np.float32)
    expression[:, 1] = 1.0
    for name, value in (("camera", camera), ("pose", pose), ("expression", expression)):
        np.save(tmp_path / f"{name}.npy", value)
    command = [sys.executable, "-m", "aniportrait.cli", "render", "--seeds", "3", "--psi", "0.7", "--n-interval", "1"]
    command += ["--png", "--quiet", "--device", "cpu", "--out", str(tmp_path / "out")]
    command += [f"--{k}={tmp_path / (k + '.npy')}" for k in ("camera", "pose", "expression")]
    subprocess.run(command, check=True, capture_output=True)
    frames = portrait.render(person, camera=camera, pose=pose, expression=expression, output="numpy")
    # The CLI loops back to the first keyframe: frames 0 and 1 are the two keyframes.
    for i in range(2):
        png = imageio.imread(tmp_path / "out" / "frames_3" / f"frame_{i:05d}.png")
        assert np.array_equal(frames[i], png), i


def test_outputs_sizes_and_broadcasting(portrait, person):
    images = portrait.render(person, camera=torch.tensor([[math.pi / 2, math.pi / 2]] * 3), expression=np.zeros(64))
    assert images.shape == (3, 3, portrait.resolution, portrait.resolution) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    # One row broadcasts: three identical frames.
    assert torch.equal(images[0], images[2])
    lr = portrait.render(person, output_size="lr")
    side = portrait.generator.config.lr_img_size
    assert lr.shape == (1, 3, side, side)
    pil = portrait.render(person, output="pil")
    assert len(pil) == 1 and pil[0].size == (portrait.resolution, portrait.resolution)
    assert np.array_equal(np.asarray(pil[0]), portrait.render(person, output="numpy")[0])
    # An identity is one seed's: the same seed gives the same frame, another seed another.
    again = portrait.render(portrait.identity(3, psi=0.7))
    other = portrait.render(portrait.identity(4, psi=0.7))
    assert torch.equal(again[0], images[0]) and not torch.equal(other[0], images[0])


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"camera": [1.0, 2.0, 3.0]}, "camera keyframes must have shape"),
        ({"pose": np.zeros((2, 5, 3))}, "pose keyframes must have shape"),
        ({"expression": [float("nan")] * 64}, "NaN or infinite"),
        ({"camera": [0.0, 1.57]}, "outside the plausible range"),
        ({"expression": [11.0] + [0.0] * 63}, "outside the plausible range"),
        ({"camera": np.full((2, 2), 1.57), "expression": np.zeros((3, 64))}, "different frame counts"),
        ({"camera": "front"}, "camera keyframes must be a numeric array"),
        ({"camera": np.full((MAX_FRAMES_PER_CALL + 1, 2), 1.57)}, "render in chunks"),
    ],
    ids=["camera-shape", "pose-shape", "nan", "pitch-0", "expression-11", "counts", "string", "too-many"],
)
def test_bad_controls_are_refused_with_one_line(portrait, person, controls, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        portrait.render(person, **controls)
    assert "\n" not in str(info.value)


def test_bad_arguments_are_refused(portrait, person):
    for seed in (-1, 2**32, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed must be an integer"):
            portrait.identity(seed)
    for psi in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="psi must be a number"):
            portrait.identity(0, psi=psi)
    with pytest.raises(ValueError, match="output must be one of"):
        portrait.render(person, output="jpeg")
    with pytest.raises(ValueError, match="output_size"):
        portrait.render(person, output_size="512")
    with pytest.raises(TypeError, match="Portrait.identity"):
        portrait.render(person.cache)
    assert isinstance(person, PreparedIdentity)


def test_psi_and_precision_default_to_the_checkpoints_rendering_settings(portrait, tmp_path):
    from aniportrait.checkpoint import save_generator
    from aniportrait.config import RenderingConfig

    assert portrait.rendering == RenderingConfig() and portrait.identity(0).psi == 0.7
    path = tmp_path / "recorded.safetensors"
    save_generator(path, portrait.generator, rendering=RenderingConfig(psi=0.25, precision="bf16"))
    recorded = aniportrait.load(path, device="cpu")
    assert recorded.rendering == RenderingConfig(psi=0.25, precision="bf16")
    person = recorded.identity(0)
    assert person.psi == 0.25 and recorded.identity(0, psi=0.7).psi == 0.7
    bf16 = recorded.render(person, output="tensor")
    assert torch.equal(bf16, recorded.render(person, output="tensor", precision="bf16"))


def test_load_refuses_bad_devices_impls_and_files(tmp_path):
    with pytest.raises(ValueError, match="unknown device"):
        aniportrait.load(device="gpu0")
    with pytest.raises(ValueError, match="only cpu and cuda"):
        aniportrait.load(device="meta")
    with pytest.raises(ValueError, match="impl must be"):
        aniportrait.load(device="cpu", impl="fast")
    with pytest.raises(ValueError, match="not found"):
        aniportrait.load(tmp_path / "missing.safetensors", device="cpu")
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError):
        aniportrait.load(tmp_path / "bad.safetensors", device="cpu")
