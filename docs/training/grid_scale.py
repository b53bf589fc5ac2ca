"""Does the estimator read a 32-ray grid like the full-size image? Held-out data, read four ways.

A stage-1 render is a 32x32 grid of the portrait camera's rays; training compares it with the data point-sampled
at those rays (``resample_grid``). This script reads the first N held-out rows with the built-in estimator:

- ``full``: the data as stored (128x128 portrait, 64x64 face), how the estimator was trained;
- ``cells_32``: reduced cell-wise to 32 (``resize_square``: antialiased, ``align_corners=False``), how the
  estimator's training augments its inputs;
- ``grid_32_read_cellwise``: point-sampled at the 32-ray grid and handed to the network's resize directly, how the
  estimator read stage-1 renders before it resampled smaller grids up to the data's sides first;
- ``grid_32``: the same grid through ``estimator(...)`` as it is now.

For each: the mean signed camera error (estimate minus truth, degrees) in pitch and yaw, the mean absolute camera
error, and the mean signed head-joint error per axis.

    OMP_NUM_THREADS=1 python docs/training/grid_scale.py --data HELDOUT [--num 256] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import torch

from aniportrait.data.dataset import PortraitDataset
from aniportrait.eval.estimator import builtin_estimator, resize_square
from aniportrait.images import resample_grid


def summary(estimated: dict, camera: torch.Tensor, pose: torch.Tensor) -> dict:
    cam = (estimated["camera"].double() - camera) * (180 / math.pi)
    head = (estimated["pose"][:, :4].double() - pose[:, :4]) * (180 / math.pi)
    return {
        "camera_signed_pitch_yaw_deg": [round(v, 3) for v in cam.mean(0).tolist()],
        "camera_abs_deg": round(cam.abs().mean().item(), 3),
        "head_signed_xyz_deg": [round(v, 3) for v in head.mean((0, 1)).tolist()],
    }


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="held-out synthetic dataset")
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = PortraitDataset(args.data)
    rows = dataset.rows(range(min(args.num, len(dataset))), ("image", "face", "camera", "pose"))
    images, faces = rows["image"], rows["face"]
    camera, pose = rows["camera"].double(), rows["pose"].double()
    estimator = builtin_estimator()
    config = estimator.config
    grid_i, grid_f = resample_grid(images, 32), resample_grid(faces, 32)
    reads = {
        "full": estimator(images, faces),
        "cells_32": estimator(resize_square(images, 32), resize_square(faces, 32)),
        "grid_32_read_cellwise": estimator.decode(
            estimator.head(
                estimator.features_prepared(
                    resize_square(grid_i, config.portrait_size), resize_square(grid_f, config.face_size)
                )
            )
        ),
        "grid_32": estimator(grid_i, grid_f),
    }
    result = {
        "command": f"OMP_NUM_THREADS=1 python docs/training/grid_scale.py --data {args.data} --num {len(images)}",
        "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread",
        "num": len(images),
        "reads": {name: summary(est, camera, pose) for name, est in reads.items()},
    }
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
