"""Shared fixtures of the data tests."""

from pathlib import Path

import pytest

from tests.data.dataset_helpers import write_dataset


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    return write_dataset(tmp_path / "ds")
