"""End-to-end rendering on a GPU: seconds per 512x512 frame with the identity cached, and per identity.

Uses the release's ``sshq512`` config with random weights (planar manifolds so that every ray hits), B = 1.
"""

import math

import pytest
import torch

from aniportrait.config import SSHQ512
from aniportrait.models.body import BodyModel
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds, sample_identity_latents


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    generator = AniPortraitGenerator(SSHQ512).cuda().eval()
    init_planar_manifolds(generator)
    return generator, BodyModel.procedural().cuda()


def _controls():
    camera = torch.tensor([[math.pi / 2, math.pi / 2 + 0.2]], device="cuda")
    pose = torch.zeros(1, 6, 3, device="cuda")
    pose[0, 3, 2] = 0.1
    return camera, pose, torch.zeros(1, 64, device="cuda")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("impl", ["ref", "triton"])
def bench_render_frame(benchmark, model, impl, precision):
    generator, body = model
    benchmark.group = f"render-frame-{precision}"
    with torch.no_grad():
        z = [t.cuda() for t in sample_identity_latents(SSHQ512, [0])]
        identity = generator.prepare_identity(*z, impl=impl)

        def frame():
            out = generator.render_frame(identity, body, *_controls(), impl=impl, precision=precision)
            torch.cuda.synchronize()
            return out

        torch.cuda.reset_peak_memory_stats()
        frame()
        benchmark.pedantic(frame, rounds=10, warmup_rounds=2, iterations=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        gpu=torch.cuda.get_device_name(),
        provider=impl,
        mode=precision,
        fps=round(1 / median, 2),
        peak_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1),
    )


@pytest.mark.parametrize("impl", ["ref", "triton"])
def bench_prepare_identity(benchmark, model, impl):
    generator, _ = model
    benchmark.group = "render-identity"
    z = [t.cuda() for t in sample_identity_latents(SSHQ512, [0])]

    def prepare():
        with torch.no_grad():
            generator.prepare_identity(*z, impl=impl)
        torch.cuda.synchronize()

    benchmark.pedantic(prepare, rounds=5, warmup_rounds=1, iterations=1)
    benchmark.extra_info.update(gpu=torch.cuda.get_device_name(), provider=impl, mode="identity")
