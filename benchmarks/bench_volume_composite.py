"""volume_composite at the paper's sizes: 128x128 and 512x512 pixels, 24 manifolds, RGBA or RGBA + 32 features."""

import pytest
from _harness import run_case

from aniportrait import ops
from aniportrait.kernels._testing import make_volume_composite_inputs

CASES = [
    pytest.param(b, r, c, id=f"B{b}-R{r}-L24-C{c}") for b in (1, 4) for r in (128 * 128, 512 * 512) for c in (4, 36)
]


@pytest.mark.parametrize("provider", ["ref", "triton"])
@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd_bwd"])
@pytest.mark.parametrize("B,R,C", CASES)
def bench_volume_composite(benchmark, copy_bandwidth, B, R, C, mode, provider):
    benchmark.group = f"volume_composite-{mode}-B{B}-R{R}-C{C}"

    def make_inputs():
        rgb, alpha, depth, valid = make_volume_composite_inputs(B, R, 24, C)  # generated on CPU, then moved
        return rgb.cuda(), alpha.cuda(), depth.cuda(), valid.cuda()

    run_case(
        benchmark,
        copy_bandwidth,
        provider=provider,
        mode=mode,
        make_inputs=make_inputs,
        op=lambda rgb, a, z, valid: ops.volume_composite(rgb, a, z, valid=valid, impl=provider),
    )
