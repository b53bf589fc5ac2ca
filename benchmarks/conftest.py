"""Benchmark harness: CUDA only, reference vs Triton side by side in one run.

Run on a GPU machine:

    python -m pytest benchmarks --benchmark-json benchmarks/results/<gpu>.json

Each case records in ``extra_info``: the GPU, torch/triton versions, peak memory (MiB), the bytes the op must move
at least (inputs read, outputs written), the achieved GB/s, that figure as a fraction of the device-to-device copy
bandwidth measured in the same session, and (for Triton) the speed-up over the reference measured just before.
Without CUDA every benchmark is skipped.
"""

from __future__ import annotations

import statistics

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="benchmarks need a CUDA device")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write of a 1 GiB buffer, median of 30)."""
    n = 1 << 28  # 2^28 float32 = 1 GiB
    src = torch.empty(n, device="cuda")
    dst = torch.empty_like(src)
    times = []
    for _ in range(35):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n * 4 / statistics.median(times[5:])


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Add the speed-up of each Triton case over the reference case of the same group (same shape and mode)."""
    ref = {
        b["group"]: b["stats"]["median"] for b in output_json["benchmarks"] if b["extra_info"].get("provider") == "ref"
    }
    for b in output_json["benchmarks"]:
        info = b["extra_info"]
        if info.get("provider") == "triton" and b["group"] in ref:
            info["speedup_vs_ref"] = round(ref[b["group"]] / b["stats"]["median"], 2)
