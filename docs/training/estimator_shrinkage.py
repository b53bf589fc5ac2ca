"""Does the estimator answer nearer the mean for poor images? Held-out data, degraded on purpose.

The default's renders turn less than their labels say: the least-squares slope of the estimated camera yaw against
the true one is 0.83-0.84 (``camera_bias/``), where the data's own images read 0.99. An estimator that is unsure of
an image answers nearer the training mean, which also lowers the slope. This script reads the first N held-out rows
as stored and degraded four ways (the coarser ray grids blurred first, a 9x9 box blur, pixel noise, grey) and
reports the slopes of pitch and yaw and the mean absolute camera error, so that a model's slope can be compared with
what mere degradation does; and for the head (neck and head joints) the mean absolute error of its six angles, the
slopes of the two joints' angles summed about x, y and z (the head's whole nod, turn and tilt), and the correlation
of the neck's tilt alone with its truth (how well the estimator splits the tilt between neck and head; see
``head_reading.py``).

    OMP_NUM_THREADS=1 python docs/training/estimator_shrinkage.py --data HELDOUT [--num 256] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from aniportrait.data.dataset import PortraitDataset
from aniportrait.eval.estimator import builtin_estimator
from aniportrait.images import resample_grid

HEAD_ROWS = [0, 3]  # the neck (joint 12) and the head (joint 15) among the six pose joints


def slope(truth: torch.Tensor, estimate: torch.Tensor) -> float:
    design = torch.stack([truth, torch.ones_like(truth)], dim=1)
    return torch.linalg.lstsq(design, estimate[:, None]).solution[0, 0].item()


def coarser(images: torch.Tensor, side: int) -> torch.Tensor:
    """The ray grid of ``side`` (antialiased), resampled back to the input's side."""
    return resample_grid(resample_grid(images, side, antialias=True), images.shape[-1])


def box_blur(images: torch.Tensor, width: int = 9) -> torch.Tensor:
    kernel = torch.ones(1, 1, width, width, dtype=images.dtype) / width**2
    flat = F.pad(images.reshape(-1, 1, *images.shape[-2:]), (width // 2,) * 4, mode="replicate")
    return F.conv2d(flat, kernel).reshape(images.shape)


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
    truth = rows["camera"].double() * (180 / math.pi)
    head_truth = rows["pose"][:, HEAD_ROWS].double() * (180 / math.pi)
    noise = torch.Generator().manual_seed(0)
    variants = {
        "stored": (images, faces),
        "ray_grid_24": (coarser(images, 24), coarser(faces, 24)),
        "ray_grid_16": (coarser(images, 16), coarser(faces, 16)),
        "box_blur_9": (box_blur(images), box_blur(faces)),
        "noise_0.15": tuple((x + 0.15 * torch.randn(x.shape, generator=noise)).clamp(-1, 1) for x in (images, faces)),
        "grey": tuple(x.mean(1, keepdim=True).expand_as(x) for x in (images, faces)),
    }
    estimator = builtin_estimator()
    reads = {}
    for name, (portraits, crops) in variants.items():
        read = estimator(portraits, crops)
        estimate = read["camera"].double() * (180 / math.pi)
        head = read["pose"][:, HEAD_ROWS].double() * (180 / math.pi)
        reads[name] = {
            "pitch_slope": round(slope(truth[:, 0], estimate[:, 0]), 3),
            "yaw_slope": round(slope(truth[:, 1], estimate[:, 1]), 3),
            "camera_abs_deg": round((estimate - truth).abs().mean().item(), 3),
            "head_abs_deg": round((head - head_truth).abs().mean().item(), 3),
            "head_turn_slope_xyz": [round(slope(head_truth.sum(1)[:, a], head.sum(1)[:, a]), 3) for a in range(3)],
            "neck_tilt_corr": round(torch.corrcoef(torch.stack([head_truth[:, 0, 2], head[:, 0, 2]]))[0, 1].item(), 3),
        }
    result = {
        "command": f"OMP_NUM_THREADS=1 python docs/training/estimator_shrinkage.py --data {args.data} --num {len(images)}",
        "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread",
        "num": len(images),
        "reads": reads,
    }
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
