"""CPU figures quoted in the README besides the render table, measured in one run and saved as JSON.

- ``knn_*``: the exact nearest-vertex search at the release's size (131,072 queries against the procedural rig's
  valid vertices), KD-tree with certificate vs brute force, and whether they agree;
- ``bf16_pixel_diff_*``: |fp32 - bf16| of one 512x512 sshq512 frame in uint8 levels (random weights, planar
  manifolds, a non-zero expression deformation);
- ``synth_images_per_s``: ``data synth`` at 128x128 (portrait, 64x64 face, PNGs, labels), 512 images;
- ``train_step_s_small``: one training step (D + G) of the ``small`` config, batch 4, on a synthetic dataset.

Usage: ``python benchmarks/cpu_misc_time.py --out benchmarks/results/cpu-misc-NAME.json``
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from aniportrait.config import SMALL, SSHQ512
from aniportrait.data.synth import synthesize
from aniportrait.kernels.inverse_lbs import _nearest_ids_brute, _nearest_ids_kdtree
from aniportrait.machine import cpu_name
from aniportrait.models.body import BodyModel
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds, sample_identity_latents
from aniportrait.train.config import TrainConfig
from aniportrait.train.loop import Trainer


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__}
    body = BodyModel.procedural()
    torch.manual_seed(0)
    verts, _ = body.inverse_skinning(torch.zeros(1, 10), torch.zeros(1, 6, 3))
    queries = torch.rand(1, 131072, 3) * 0.5 - 0.25
    kd, result["knn_kdtree_s"] = _timed(lambda: _nearest_ids_kdtree(queries, verts, 1))
    brute, result["knn_brute_s"] = _timed(lambda: _nearest_ids_brute(queries, verts, 1))
    result["knn_identical"] = bool(torch.equal(kd, brute))

    generator = AniPortraitGenerator(SSHQ512).eval()
    init_planar_manifolds(generator)
    torch.nn.init.normal_(generator.deform_net.final_layer.weight, std=0.01)
    camera = torch.tensor([[math.pi / 2, math.pi / 2 + 0.2]])
    pose = torch.zeros(1, 6, 3)
    pose[0, 3, 2] = 0.1
    expression = torch.randn(1, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        identity = generator.prepare_identity(*sample_identity_latents(SSHQ512, [0]), impl="ref")
        frames = {
            p: generator.render_frame(identity, body, camera, pose, expression, impl="ref", precision=p)["image"]
            for p in ("fp32", "bf16")
        }
    diff = (frames["fp32"] - frames["bf16"]).abs().flatten() * 127.5
    result["bf16_pixel_diff_mean"] = round(diff.mean().item(), 2)
    result["bf16_pixel_diff_p99"] = round(diff.kthvalue(int(0.99 * diff.numel())).values.item(), 2)

    with tempfile.TemporaryDirectory() as tmp:
        _, seconds = _timed(lambda: synthesize(Path(tmp) / "synth", 512, res=128, seed=0, progress=False))
        result["synth_images_per_s"] = round(512 / seconds, 1)
        data = synthesize(Path(tmp) / "small", 64, res=128, seed=1, progress=False)
        trainer = Trainer(
            TrainConfig(generator=SMALL, batch_size=4, impl="ref"), data, Path(tmp) / "run", progress=False
        )
        trainer.d_step(0)
        trainer.g_step(0)
        times = []
        for step in range(1, 4):
            _, seconds = _timed(lambda s=step: (trainer.d_step(s), trainer.g_step(s)))
            times.append(seconds)
        result["train_step_s_small"] = round(sorted(times)[1], 2)
    result.update({k: round(v, 2) for k, v in result.items() if isinstance(v, float)})
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
