"""Where a model's head-pose error comes from: the estimator's reading per joint and axis, and the silhouette.

The head error of ``eval --metrics control`` averages six angles: the neck (joint 12) and the head (joint 15), each
about x, y and z. Two parts:

1. ``readings``: on the held-out set's first rows, each angle's mean absolute error, and the slope and correlation
   of the estimate against the truth (degrees), for all six pose joints (the collars' and shoulders' too);
   ``neck+head`` adds the two joints' angles about each axis: the head's whole turn, which the estimator need not
   split between the joints. Read from four pairs of the estimator's two inputs (portrait, face crop): the data's
   own, the model's (its full-size frame and face crop rendered at each row's labels, as ``eval`` renders them),
   and the two mixed ones, which say from which input a model's error comes.
2. ``silhouette``: whether the model's head moves as the world's does. Eight held-out figures from one camera at
   zero pose and expression, one of the neck's or head's angles about x (a nod) or z (a tilt) swept over
   -20..20 degrees; per angle the centroid of the figure's pixels in the top 35% of the frame (the head), in
   pixels: its row for a nod, its column for a tilt, for the synthetic world's own frames and the model's.
   ``model_over_world`` fits the model's centroid shifts (from the angle 0) to the world's by least squares: 1, the
   head moves as far as the world's, by the geometry alone, without the estimator.

    OMP_NUM_THREADS=1 python docs/training/head_reading.py --data HELDOUT --checkpoint FILE [--num 128] --json OUT
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch
from checkpoint_on_data import checkpoint_on_data

from aniportrait.data.synth import render_figures, sample_figures
from aniportrait.eval import control
from aniportrait.eval.estimator import builtin_estimator

# Rows of the six pose joints (12, 13, 14, 15, 16, 17); the head's two are summed in the readings and swept.
POSE_ROWS = {"neck": 0, "left_collar": 1, "right_collar": 2, "head": 3, "left_shoulder": 4, "right_shoulder": 5}
JOINTS = {name: POSE_ROWS[name] for name in ("neck", "head")}
SWEEP = (-20, -10, 0, 10, 20)  # degrees
FIGURES = 8
HEAD_SHARE = 0.35  # the top share of the frame's rows taken as the head
FIGURE_LEVEL = 0.7  # a pixel is figure when a channel lies below this ([-1, 1]; the background is white)


def angle_reading(estimate: torch.Tensor, truth: torch.Tensor) -> dict:
    """Mean absolute error, slope and correlation of ``estimate`` against ``truth`` [N] (degrees)."""
    e, t = estimate.double(), truth.double()
    cov = ((t - t.mean()) * (e - e.mean())).mean()
    return {
        "abs_deg": round(float((e - t).abs().mean()), 2),
        "slope": round(float(cov / t.var(unbiased=False)), 3),
        "corr": round(float(cov / (t.std(unbiased=False) * e.std(unbiased=False))), 3),
        "truth_std_deg": round(float(t.std()), 2),
    }


def readings(estimated_pose: torch.Tensor, true_pose: torch.Tensor) -> dict:
    """Per joint and axis, and the neck and head summed, for poses [N, 6, 3] (radians)."""
    delta = torch.remainder(estimated_pose.double() - true_pose.double() + math.pi, 2 * math.pi) - math.pi
    truth = true_pose.double() * (180 / math.pi)
    estimate = truth + delta * (180 / math.pi)
    out = {}
    for a, axis in enumerate("xyz"):
        for name, row in POSE_ROWS.items():
            out[f"{name}_{axis}"] = angle_reading(estimate[:, row, a], truth[:, row, a])
        whole = [sum(v[:, row, a] for row in JOINTS.values()) for v in (estimate, truth)]
        out[f"neck+head_{axis}"] = angle_reading(*whole)
    return out


def head_centroid(frame: np.ndarray) -> tuple[float, float]:
    """(row, column) of the figure's pixels in the head rows of ``frame`` [H, W, 3] in [-1, 1]."""
    head = frame[: int(HEAD_SHARE * frame.shape[0])].min(-1) < FIGURE_LEVEL
    rows, cols = np.nonzero(head)
    return float(rows.mean()), float(cols.mean())


def silhouette(generator, body, rows: dict) -> dict:
    """The head centroids of the world's and the model's frames for each swept angle, and their shift ratio."""
    n = rows["id"].shape[0]
    noise = torch.randn(n, generator.config.z_noise_dim, generator=torch.Generator().manual_seed(0))
    identity = generator.prepare_identity(rows["id"], noise, rows["betas"])
    camera = rows["camera"].mean(0, keepdim=True).expand(n, 2).contiguous()
    expression = torch.zeros_like(rows["expression"])
    out = {}
    for name, row in JOINTS.items():
        for a, axis, coordinate in ((0, "x", 0), (2, "z", 1)):
            world, model = [], []
            for degrees in SWEEP:
                pose = torch.zeros(n, 6, 3)
                pose[:, row, a] = math.radians(degrees)
                figures = sample_figures(202, n).with_(
                    camera=camera.numpy(), pose=pose.numpy(), expression=expression.numpy()
                )
                images, _ = render_figures(figures, res=generator.config.hr_img_size)
                frames = generator.render_frame(identity, body, camera, pose, expression)["image"]
                frames = frames.permute(0, 2, 3, 1).numpy()
                world.append(np.mean([head_centroid(im / 127.5 - 1)[coordinate] for im in images.astype(np.float64)]))
                model.append(np.mean([head_centroid(f)[coordinate] for f in frames]))
            rest = SWEEP.index(0)
            shift_world, shift_model = np.subtract(world, world[rest]), np.subtract(model, model[rest])
            out[f"{name}_{axis}"] = {
                "centroid": "row" if coordinate == 0 else "column",
                "world_px": [round(v, 2) for v in world],
                "model_px": [round(v, 2) for v in model],
                "model_over_world": round(float(shift_model @ shift_world / (shift_world @ shift_world)), 3),
            }
    return out


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=128)
    args, generator, body, dataset, num = checkpoint_on_data(parser, "the held-out set (data synth ... --seed 202)")
    estimator = builtin_estimator()
    data = dataset.rows(range(num), ("image", "face", "id", "betas", "camera", "pose", "expression"))
    renders: dict[str, list[torch.Tensor]] = {"image": [], "face": []}

    def keep_renders(images: torch.Tensor, faces: torch.Tensor) -> dict[str, torch.Tensor]:
        renders["image"].append(images)
        renders["face"].append(faces)
        return estimator(images, faces)

    control.estimate_labels(generator, body, data, keep_renders, stage=2)
    model = {key: torch.cat(value) for key, value in renders.items()}
    inputs = {
        "data": (data["image"], data["face"]),
        "model": (model["image"], model["face"]),
        "model_portrait+data_face": (model["image"], data["face"]),
        "data_portrait+model_face": (data["image"], model["face"]),
    }
    figures = dataset.rows(range(FIGURES), ("id", "betas", "camera", "expression"))
    if not np.allclose(sample_figures(202, FIGURES).betas, figures["betas"].numpy()):
        raise SystemExit("the first rows of --data are not figures 0-7 of seed 202: pass the held-out set")
    result = {
        "checkpoint": args.checkpoint,
        "data": args.data,
        "num": num,
        "readings": {name: readings(estimator(*pair)["pose"], data["pose"]) for name, pair in inputs.items()},
        "silhouette": silhouette(generator, body, figures),
    }
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    for source, table in result["readings"].items():
        head = sum(table[f"{joint}_{axis}"]["abs_deg"] for joint in JOINTS for axis in "xyz") / 6
        turn = [table[f"neck+head_{axis}"]["slope"] for axis in "xyz"]
        print(
            f"{source}: head error {head:.2f}, whole-turn slopes x/y/z {turn}, neck tilt corr {table['neck_z']['corr']}"
        )
    print("silhouette model/world", {k: v["model_over_world"] for k, v in result["silhouette"].items()})


if __name__ == "__main__":
    main()
