"""Shared fixtures of the model tests: the procedural rig's arrays, the procedural 3DMM and the rig's face
landmarks (``body`` is the root conftest's)."""

import pytest

from aniportrait.models.face_procedural import procedural_3dmm
from aniportrait.models.face_registration import rig_face_landmarks
from aniportrait.models.rig import procedural_rig


@pytest.fixture(scope="session")
def rig():
    return procedural_rig()


@pytest.fixture(scope="module")
def face():
    return procedural_3dmm()


@pytest.fixture(scope="module")
def rig_landmarks(body):
    return rig_face_landmarks(body)
