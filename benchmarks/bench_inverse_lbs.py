"""inverse_lbs at the paper's sizes: the 2x-subsampled 64x64x32 query grid against SMPL-sized vertex sets."""

import pytest
from _harness import run_case

from aniportrait import ops
from aniportrait.kernels._testing import make_inverse_lbs_inputs

CASES = [pytest.param(b, v, k, id=f"B{b}-P131072-V{v}-k{k}") for b in (1, 4) for v in (3595, 6890) for k in (1, 4)]


@pytest.mark.parametrize("provider", ["ref", "triton"])
@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd_bwd"])
@pytest.mark.parametrize("B,V,k", CASES)
def bench_inverse_lbs(benchmark, copy_bandwidth, B, V, k, mode, provider):
    benchmark.group = f"inverse_lbs-{mode}-B{B}-V{V}-k{k}"
    run_case(
        benchmark,
        copy_bandwidth,
        provider=provider,
        mode=mode,
        make_inputs=lambda: make_inverse_lbs_inputs(B, 64 * 64 * 32, V, device="cuda"),
        op=lambda p, v, m: ops.inverse_lbs(p, v, m, k=k, impl=provider),
        rounds=10,
    )
