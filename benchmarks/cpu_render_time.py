"""CPU seconds per 512x512 frame (identity cached) and per identity, ``sshq512`` config with random weights.

The frame is timed at each ``--precision``: fp32, bf16-deform (DeformNet in bfloat16) and bf16 (both MLPs).

Usage: ``python benchmarks/cpu_render_time.py [--threads N] [--frames N] [--out benchmarks/results/cpu-NAME.json]``.
A plain script (not pytest-benchmark): the GPU suites skip without CUDA, and this number is about the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from aniportrait.config import SSHQ512
from aniportrait.machine import bf16_matmul_path, cpu_name
from aniportrait.models.body import BodyModel
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds, sample_identity_latents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = AniPortraitGenerator(SSHQ512).eval()
    init_planar_manifolds(generator)
    body = BodyModel.procedural()
    camera = torch.tensor([[math.pi / 2, math.pi / 2 + 0.2]])
    pose = torch.zeros(1, 6, 3)
    pose[0, 3, 2] = 0.1
    expression = torch.zeros(1, 64)
    result = {
        "cpu": cpu_name(),
        "bf16_path": bf16_matmul_path(),
        "threads": args.threads,
        "torch": torch.__version__,
        "config": "sshq512",
    }
    with torch.no_grad():
        start = time.perf_counter()
        identity = generator.prepare_identity(*sample_identity_latents(SSHQ512, [0]), impl="ref")
        result["identity_s"] = round(time.perf_counter() - start, 2)
        for precision in ("fp32", "bf16-deform", "bf16"):
            generator.render_frame(identity, body, camera, pose, expression, impl="ref", precision=precision)  # warm-up
            times = []
            for _ in range(args.frames):
                start = time.perf_counter()
                generator.render_frame(identity, body, camera, pose, expression, impl="ref", precision=precision)
                times.append(time.perf_counter() - start)
            result[f"frame_s_{precision}"] = round(statistics.median(times), 2)
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
