"""Shared set-up of the evaluation tests."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: the many tiny convolutions of the test-size Inception spend most of their time waiting on
    each other's OpenMP threads on a small, busy CPU (seconds instead of milliseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
