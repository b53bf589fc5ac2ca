"""Frames per second of an animated 512x512 portrait on a GPU, identity cached: fp32, TF32, bf16 and fp32 with
adaptive sampling of the scalar field, batch 1 and 4.

The release's ``sshq512`` config with random weights and planar manifolds (every ray hits, so no work is skipped),
on the procedural body. Each frame changes camera, head pose and expression, as an animation does. A batch of 4
renders four identities' frames in one call. Without CUDA it writes ``{"cuda": false}`` and exits 0.

    python benchmarks/gpu_fps.py --json OUT.json [--frames 20]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

MODES = {
    "fp32": {"tf32": False, "precision": "fp32", "sampling": "exact"},
    "tf32": {"tf32": True, "precision": "fp32", "sampling": "exact"},
    "bf16": {"tf32": True, "precision": "bf16", "sampling": "exact"},
    "fp32_adaptive": {"tf32": False, "precision": "fp32", "sampling": "adaptive"},
}


def _controls(step: int, batch: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = step / 10.0
    camera = torch.tensor([[math.pi / 2 + 0.1 * math.sin(t), math.pi / 2 + 0.4 * math.sin(0.7 * t)]], device=device)
    pose = torch.zeros(1, 6, 3, device=device)
    pose[0, 3, 1] = 0.3 * math.sin(t)
    expression = torch.zeros(1, 64, device=device)
    expression[0, 0] = 1.5 + 1.5 * math.sin(1.3 * t)
    return camera.expand(batch, -1), pose.expand(batch, -1, -1), expression.expand(batch, -1)


def measure(frames: int) -> dict:
    from aniportrait.config import SSHQ512
    from aniportrait.models.body import BodyModel
    from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds, sample_identity_latents

    device = torch.device("cuda")
    torch.manual_seed(0)
    generator = AniPortraitGenerator(SSHQ512).to(device).eval()
    init_planar_manifolds(generator)
    body = BodyModel.procedural().to(device)
    results = []
    for batch in (1, 4):
        with torch.no_grad():
            latents = [t.to(device) for t in sample_identity_latents(SSHQ512, list(range(batch)))]
            start = time.perf_counter()
            identity = generator.prepare_identity(*latents, impl="triton")
            torch.cuda.synchronize()
            identity_seconds = time.perf_counter() - start
            for mode, setting in MODES.items():
                torch.backends.cuda.matmul.allow_tf32 = setting["tf32"]
                torch.backends.cudnn.allow_tf32 = setting["tf32"]
                for step in range(3):  # warm-up: compile and tune
                    generator.render_frame(
                        identity,
                        body,
                        *_controls(step, batch, device),
                        precision=setting["precision"],
                        sampling=setting["sampling"],
                    )
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                for step in range(frames):
                    generator.render_frame(
                        identity,
                        body,
                        *_controls(step, batch, device),
                        precision=setting["precision"],
                        sampling=setting["sampling"],
                    )
                torch.cuda.synchronize()
                seconds = (time.perf_counter() - start) / frames
                results.append(
                    {
                        "batch": batch,
                        "mode": mode,
                        "seconds_per_call": seconds,
                        "frames_per_second": batch / seconds,
                        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20,
                        "identity_seconds": identity_seconds,
                    }
                )
                print(f"batch {batch} {mode}: {batch / seconds:.1f} frames/s ({seconds * 1e3:.1f} ms a call)")
    import triton

    return {
        "cuda": True,
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "config": "sshq512, random weights, planar manifolds, procedural body, identity cached",
        "frames_timed": frames,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_fps: no CUDA device here; nothing measured")
        report = {"cuda": False}
    else:
        report = measure(args.frames)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
