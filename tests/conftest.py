"""Test set-up: without CUDA, Triton kernels run on the CPU interpreter.

``TRITON_INTERPRET`` is read when ``@triton.jit`` functions are defined, so it is set here, before any
``aniportrait`` kernel module is imported.
"""

import os

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
