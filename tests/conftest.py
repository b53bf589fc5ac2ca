"""Test set-up: without CUDA, Triton kernels run on the CPU interpreter; fixtures shared by more than one folder.

``TRITON_INTERPRET`` is read when ``@triton.jit`` functions are defined, so it is set here, before any
``aniportrait`` kernel module is imported.
"""

import os
import subprocess
import sys

import numpy as np
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def body():
    """The built-in procedural body rig."""
    from aniportrait.models.body import BodyModel

    return BodyModel.procedural()


@pytest.fixture(scope="module")
def generator():
    """A tiny generator (seed 0) on planar manifolds."""
    from aniportrait.config import TINY
    from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds

    torch.manual_seed(0)
    g = AniPortraitGenerator(TINY).eval()
    init_planar_manifolds(g)
    return g


@pytest.fixture
def tiny(monkeypatch):
    """The built-in default replaced by a deterministic tiny generator; returns that generator."""
    from aniportrait import pretrained
    from tests.helpers import tiny_default

    generator = tiny_default()

    def builtin_generator(device="cpu"):
        return generator.to(device).eval(), {"body": "procedural", "note": "tiny test default"}, None

    monkeypatch.setattr(pretrained, "builtin_generator", builtin_generator)
    monkeypatch.delenv("ANIPORTRAIT_SMPL", raising=False)
    monkeypatch.delenv("ANIPORTRAIT_IMPL", raising=False)
    return generator


@pytest.fixture
def keys(tmp_path):
    """Keyframe files: 3 expressions, 3 poses, 2 and 3 cameras."""
    folder = tmp_path / "keys"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "expression": rng.standard_normal((3, 64)).astype(np.float32),
        "pose": (rng.standard_normal((3, 6, 3)) * 0.1).astype(np.float32),
        "camera": np.array([[1.5708, 1.3], [1.5, 1.9], [1.6, 1.57]], np.float32),
        "camera2": np.array([[1.5708, 1.3], [1.5708, 1.8]], np.float32),
    }
    paths = {}
    for name, array in arrays.items():
        paths[name] = str(folder / f"{name}.npy")
        np.save(paths[name], array)
    return paths


@pytest.fixture
def live_pid():
    """The PID of a running (sleeping) process, stopped after the test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()
