"""Signed control errors on held-out rows: is a model's camera error a bias or a scatter?

``aniportrait eval --metrics control`` reports mean absolute errors. This script renders the same held-out label
rows, reads them back with the synthetic world's estimator, and reports per axis the mean signed error (estimate
minus truth, degrees), its spread, and the least-squares line ``estimate = slope * truth + offset`` for camera
pitch and yaw (a slope below 1: the renders turn less than the labels say, or the estimator, unsure of them,
answers nearer the mean). ``--stage 1`` reads the 32x32 renders of the low-resolution textures, ``--stage 2`` (the
default, as ``eval`` does) the full-size frames.

    OMP_NUM_THREADS=1 python docs/training/camera_bias.py --data HELDOUT --checkpoint FILE [--stage 1] [--num 128] \\
        --json OUT
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from checkpoint_on_data import checkpoint_on_data

from aniportrait.data.samplers import LabelBank
from aniportrait.eval import control, report
from aniportrait.eval.estimator import builtin_estimator


def signed_degrees(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    d = torch.remainder(estimate.double() - truth.double() + math.pi, 2 * math.pi) - math.pi
    return d * (180.0 / math.pi)


def line(truth: torch.Tensor, estimate: torch.Tensor) -> dict:
    design = torch.stack([truth, torch.ones_like(truth)], dim=1)
    slope, offset = torch.linalg.lstsq(design, estimate[:, None]).solution.flatten().tolist()
    return {
        "slope": round(slope, 4),
        "offset_at_truth_mean": round(slope * truth.mean().item() + offset - truth.mean().item(), 3),
    }


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", type=int, choices=(1, 2), default=2)
    parser.add_argument("--num", type=int, default=128)
    args, generator, body, dataset, num = checkpoint_on_data(parser)
    # The rows `aniportrait eval --metrics control` renders (seed 0).
    true = report.control_labels(LabelBank.from_dataset(dataset), num, torch.Generator().manual_seed(0))
    estimated = control.estimate_labels(generator, body, true, builtin_estimator(), stage=args.stage)
    errors = control.label_errors(estimated, true)
    camera = signed_degrees(estimated["camera"], true["camera"])
    pose = signed_degrees(estimated["pose"], true["pose"])
    truth = true["camera"].double() * (180.0 / math.pi)
    result = {
        "checkpoint": args.checkpoint,
        "data": args.data,
        "num": num,
        "stage": args.stage,
        "camera_pitch_yaw": {
            "mean_signed_deg": [round(v, 3) for v in camera.mean(0).tolist()],
            "std_deg": [round(v, 3) for v in camera.std(0).tolist()],
            "truth_std_deg": [round(v, 3) for v in truth.std(0).tolist()],
        },
        "camera_pitch_line": line(truth[:, 0], truth[:, 0] + camera[:, 0]),
        "camera_yaw_line": line(truth[:, 1], truth[:, 1] + camera[:, 1]),
        "pose_mean_signed_deg_per_joint_xyz": [[round(v, 2) for v in row] for row in pose.mean(0).tolist()],
        "mean_absolute": {k: round(v, 4) if isinstance(v, float) else v for k, v in errors.items()},
    }
    text = json.dumps(result, indent=1)
    Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
