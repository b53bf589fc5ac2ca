"""Shared fixtures of the model tests: the procedural rig and the body built on it (built once per session)."""

import pytest

from aniportrait.models.body import BodyModel
from aniportrait.models.rig import procedural_rig, rig_valid_index


@pytest.fixture(scope="session")
def rig():
    return procedural_rig()


@pytest.fixture(scope="session")
def body(rig):
    return BodyModel.from_arrays(rig, rig_valid_index(rig))
