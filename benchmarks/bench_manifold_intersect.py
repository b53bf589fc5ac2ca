"""manifold_intersect at the paper's sizes: 128x128 rays, 256 samples, 24 levels."""

import pytest
from _harness import run_case

from aniportrait import ops
from aniportrait.kernels._testing import make_manifold_intersect_inputs

CASES = [pytest.param(b, c, id=f"B{b}-R16384-S256-L24-C{c}") for b in (1, 4) for c in (3, 9)]


@pytest.mark.parametrize("provider", ["ref", "triton"])
@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd_bwd"])
@pytest.mark.parametrize("B,C", CASES)
def bench_manifold_intersect(benchmark, copy_bandwidth, B, C, mode, provider):
    benchmark.group = f"manifold_intersect-{mode}-B{B}-C{C}"
    run_case(
        benchmark,
        copy_bandwidth,
        provider=provider,
        mode=mode,
        make_inputs=lambda: make_manifold_intersect_inputs(B, 128 * 128, 256, C, 24, device="cuda"),
        op=lambda s, p, lv: ops.manifold_intersect(s, p, lv, impl=provider),
    )
