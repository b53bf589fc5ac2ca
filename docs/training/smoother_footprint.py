"""The LBS smoother's footprint on the `small` grid: how far a head turn reaches, by kernel size.

For each smoother kernel (depth, spatial) on the `small` config's 16x16x8 strided grid, with the procedural body:

- the mean displacement of the canonical coordinates of frontal-camera samples within 0.02 units of the body in
  the bottom quarter of the frame (shoulders and chest) when the head turns by 0.5 rad (yaw), and of all samples
  in the upper half (the head);
- for a checkpoint (the default shipped at 20a6a3b, whose config has the release's 5 x 9
  kernels), the mean absolute pixel change of its 128x128 frames (seeds 0-3, psi 0.7) in the upper half and the
  bottom quarter under the same head turn, rendered with that kernel in place of its own (the smoother is a fixed
  box filter in these models: no weight is trained).

    git show 20a6a3b:src/aniportrait/assets/models/default.safetensors > previous.safetensors
    python docs/training/smoother_footprint.py --checkpoint previous.safetensors [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import torch

from aniportrait.cameras import portrait_rays
from aniportrait.checkpoint import load_generator
from aniportrait.config import SMALL
from aniportrait.models.body import BodyModel
from aniportrait.models.generator import AniPortraitGenerator, sample_identity_latents
from aniportrait.models.smoother import LbsSmoother
from aniportrait.pretrained import body_for_checkpoint

KERNELS = ((5, 9), (3, 5), (3, 3), (1, 3), (1, 1))
FRONT = (math.pi / 2, math.pi / 2)


def head_turn() -> tuple[torch.Tensor, torch.Tensor]:
    rest = torch.zeros(1, 6, 3)
    turned = rest.clone()
    turned[0, 3, 1] = 0.5
    return rest, turned


@torch.no_grad()
def sample_reach(depth: int, spatial: int) -> dict[str, float]:
    body = BodyModel.procedural()
    config = dataclasses.replace(SMALL, smoother_depth_kernel=depth, smoother_spatial_kernel=spatial)
    generator = AniPortraitGenerator(config)
    side = config.lr_img_size
    points, _ = portrait_rays(torch.tensor([FRONT]), side, config.num_samples)
    betas = torch.zeros(1, 10)
    rest, turned = head_turn()
    verts, _ = body.inverse_skinning(betas, rest)
    near = torch.cdist(points.reshape(1, -1, 3), verts.float()).min(-1).values.reshape(side, side, -1) < 0.02
    near[: 3 * side // 4] = False
    a = generator.canonical_samples(body, points, rest, betas)["x_can"].reshape(side, side, -1, 3)
    b = generator.canonical_samples(body, points, turned, betas)["x_can"].reshape(side, side, -1, 3)
    moved = (a - b).norm(dim=-1)
    return {
        "shoulder_samples_mean": round(float(moved[near].mean()), 5),
        "head_samples_mean": round(float(moved[: side // 2].mean()), 5),
    }


@torch.no_grad()
def frame_response(path: str, depth: int, spatial: int) -> dict[str, float]:
    generator, metadata, valid_index = load_generator(path)
    body = body_for_checkpoint(metadata, valid_index, None)
    generator.smoother = LbsSmoother(16, depth, spatial)
    rest, turned = head_turn()
    upper = bottom = 0.0
    for seed in range(4):
        identity = generator.prepare_identity(
            *sample_identity_latents(generator.config, [seed], id_bank=generator.id_bank)
        )
        frames = [
            generator.render_frame(identity, body, torch.tensor([FRONT]), p, torch.zeros(1, 64))["image"][0]
            for p in (rest, turned)
        ]
        d = (frames[1] - frames[0]).abs().mean(0)
        side = d.shape[0]
        upper += float(d[: side // 2].mean()) / 4
        bottom += float(d[3 * side // 4 :].mean()) / 4
    return {
        "upper_half": round(upper, 4),
        "bottom_quarter": round(bottom, 4),
        "upper_over_bottom": round(upper / bottom, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a `small` checkpoint trained with the 5 x 9 kernels")
    parser.add_argument("--json", default=str(Path(__file__).with_name("smoother_footprint.json")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {
        "grid": "small: 16 x 16 rays x 8 samples (knn_stride 2)",
        "checkpoint": Path(args.checkpoint).name,
        "kernels": {},
    }
    for depth, spatial in KERNELS:
        row = sample_reach(depth, spatial)
        row["frames"] = frame_response(args.checkpoint, depth, spatial)
        report["kernels"][f"{depth}x{spatial}x{spatial}"] = row
        print(f"{depth} x {spatial}: {row}")
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
