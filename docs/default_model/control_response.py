"""How much each control changes a model's frame, and where: the model card's control-response numbers.

Everything goes through the command line, as a user renders: for each seed, `aniportrait render --png` of a rest
frame (frontal camera, zero pose, neutral expression) and of one frame per control with that one control changed.
Reported per control: the mean absolute pixel change (on the [-1, 1] scale) of the frame against the rest frame in
the whole image, the upper half and the bottom quarter, averaged over the seeds, and the ratios the targets use
(upper / bottom for expression and head, bottom / upper for the shoulders), and the change in each eighth of the
image height, top to bottom (``eighths``): where a control acts, beyond the two regions the targets compare; and the
upper / bottom ratio of each seed (``upper / bottom per seed``). (From
the front at 128x128 the synthetic world's own mouth sits in the fifth and sixth eighths, between those regions.)

    python docs/default_model/control_response.py [--checkpoint FILE] [--seeds 0-7] [--json OUT]
    python docs/default_model/control_response.py --world [--json OUT]

``--world`` measures the synthetic world itself (``data synth``'s renderer, 128x128, figures 0-7 of seed 202 with
each control set as above): what a model that reproduced its training data exactly would score.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from aniportrait.machine import cpu_name

FRONT = (math.pi / 2, math.pi / 2)


def controls() -> dict[str, dict[str, np.ndarray]]:
    """name -> one-row keyframes (camera [1, 2], pose [1, 6, 3], expression [1, 64])."""

    def keys(camera=FRONT, pose=None, expression=None):
        return {
            "camera": np.array([camera], dtype=np.float32),
            "pose": np.zeros((1, 6, 3), np.float32) if pose is None else pose[None].astype(np.float32),
            "expression": np.zeros((1, 64), np.float32) if expression is None else expression[None].astype(np.float32),
        }

    head, shoulders, mouth, smile = np.zeros((6, 3)), np.zeros((6, 3)), np.zeros(64), np.zeros(64)
    head[3, 1] = 0.5  # head (joint 15) yaw, rad (ZYX Euler: index 1 is Y)
    shoulders[4:, 0] = 0.3  # both shoulders (joints 16, 17) about z, rad
    mouth[0] = 3.0  # expression coefficient 0: mouth open
    smile[1] = 1.5  # coefficient 1: smile
    return {
        "rest": keys(),
        "camera yaw +0.5 rad": keys(camera=(FRONT[0], FRONT[1] + 0.5)),
        "head yaw 0.5 rad": keys(pose=head),
        "shoulders 0.3 rad": keys(pose=shoulders),
        "mouth open 3": keys(expression=mouth),
        "smile 1.5": keys(expression=smile),
    }


def render(keys: dict, seeds: str, checkpoint: str | None, work: Path) -> dict[int, np.ndarray]:
    """Render one frame per seed through the CLI; returns {seed: [H, W, 3] in [-1, 1]}."""
    work.mkdir(parents=True)
    args = [sys.executable, "-m", "aniportrait.cli", "render", "--seeds", seeds, "--n-interval", "1", "--png"]
    args += ["--quiet", "--out", str(work / "out")]
    for kind, value in keys.items():
        np.save(work / f"{kind}.npy", value)
        args += [f"--{kind}", str(work / f"{kind}.npy")]
    if checkpoint:
        args += ["--checkpoint", checkpoint]
    subprocess.run(args, check=True, capture_output=True)
    frames = {}
    for folder in (work / "out").glob("frames_*"):
        seed = int(folder.name.split("_")[1])
        frames[seed] = imageio.imread(folder / "frame_00000.png").astype(np.float64) / 127.5 - 1
    return frames


def render_world(keys: dict, count: int = 8, seed: int = 202, res: int = 128) -> dict[int, np.ndarray]:
    """The synthetic world's own frames of figures 0..count-1 under one control setting, {figure: [H, W, 3]}."""
    from aniportrait.data.synth import render_figures, sample_figures

    figures = sample_figures(seed, count).with_(
        camera=keys["camera"][0], pose=keys["pose"][0], expression=keys["expression"][0]
    )
    images, _ = render_figures(figures, res=res)
    return {i: images[i].astype(np.float64) / 127.5 - 1 for i in range(count)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the built-in model")
    parser.add_argument("--seeds", default="0-7")
    parser.add_argument("--world", action="store_true", help="measure the synthetic world instead of a model")
    parser.add_argument("--json", default=None, help="default: control_response.json (_world.json with --world)")
    args = parser.parse_args()
    default_name = "control_response_world.json" if args.world else "control_response.json"
    args.json = args.json or str(Path(__file__).with_name(default_name))
    with tempfile.TemporaryDirectory() as tmp:
        frames = {
            name: render_world(keys) if args.world else render(keys, args.seeds, args.checkpoint, Path(tmp) / str(i))
            for i, (name, keys) in enumerate(controls().items())
        }
    rest = frames.pop("rest")
    side = next(iter(rest.values())).shape[0]
    regions = {"whole": slice(None), "upper half": slice(0, side // 2), "bottom quarter": slice(side - side // 4, side)}
    changes = {}
    for name, per_seed_frames in frames.items():
        # Each seed's mean absolute change in each region, then their mean over the seeds.
        by_seed = {
            r: {s: float(np.abs(per_seed_frames[s][rows] - rest[s][rows]).mean()) for s in rest}
            for r, rows in regions.items()
        }
        row = {r: round(float(np.mean(list(values.values()))), 4) for r, values in by_seed.items()}
        bands = [slice(k * side // 8, (k + 1) * side // 8) for k in range(8)]
        eighths = [
            round(float(np.mean([np.abs(per_seed_frames[s][b] - rest[s][b]).mean() for s in rest])), 4) for b in bands
        ]
        upper, bottom = row["upper half"], row["bottom quarter"]
        # A ratio over a region that does not change (below 1e-4, the rounding of the table) is left out: null.
        row["upper / bottom"] = round(upper / bottom, 2) if bottom >= 1e-4 else None
        row["bottom / upper"] = round(bottom / upper, 2) if upper >= 1e-4 else None
        per_seed = {
            str(s): round(by_seed["upper half"][s] / b, 2) if (b := by_seed["bottom quarter"][s]) >= 1e-4 else None
            for s in sorted(rest)
        }
        changes[name] = {**row, "eighths": eighths, "upper / bottom per seed": per_seed}
    report = {
        "checkpoint": "the synthetic world (data synth)" if args.world else args.checkpoint or "built-in default",
        "seeds": "figures 0-7 of seed 202" if args.world else args.seeds,
        "machine": f"{os.cpu_count()}-core {cpu_name()}",
        "changes": changes,
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
