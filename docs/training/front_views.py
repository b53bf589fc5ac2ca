"""Models side by side from the front, as ``aniportrait render`` draws them: one row per model, for each of the first
``--seeds`` seeds the rest frame and the frame with the mouth open (expression coefficient 0 = 3), then the synthetic
world's own figures (``data synth``'s renderer, seed 202) under the same two settings in the last row.

    OMP_NUM_THREADS=1 python docs/training/front_views.py --model NAME=FILE [...] --out PNG [--seeds 4]

``FILE`` is a checkpoint, or ``default`` for the built-in model. The model names are printed in row order (the
picture has no text).
"""

from __future__ import annotations

import argparse
import math

import imageio.v2 as imageio
import numpy as np
import torch

import aniportrait
from aniportrait.data.synth import render_figures, sample_figures

FRONT = (math.pi / 2, math.pi / 2)


def mouth_open() -> np.ndarray:
    expression = np.zeros(64, np.float32)
    expression[0] = 3.0
    return expression


def model_row(checkpoint: str | None, seeds: int) -> np.ndarray:
    portrait = aniportrait.load(checkpoint, device="cpu")
    tiles = []
    for seed in range(seeds):
        identity = portrait.identity(seed)
        for expression in (None, mouth_open()):
            tiles.append(portrait.render(identity, expression=expression, output="numpy")[0])
    return np.concatenate(tiles, axis=1)


def world_row(seeds: int, side: int) -> np.ndarray:
    tiles = []
    for expression in (np.zeros(64, np.float32), mouth_open()):
        figures = sample_figures(202, seeds).with_(camera=np.array(FRONT), pose=np.zeros((6, 3)), expression=expression)
        tiles.append(render_figures(figures, res=side)[0])
    rest, opened = tiles
    return np.concatenate([image for pair in zip(rest, opened) for image in pair], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=FILE (FILE 'default': built-in)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for item in args.model:
        name, _, path = item.partition("=")
        rows.append(model_row(None if path == "default" else path, args.seeds))
        print(f"row {len(rows)}: {name}")
    rows.append(world_row(args.seeds, rows[0].shape[0]))
    print(f"row {len(rows)}: the synthetic world")
    imageio.imwrite(args.out, np.concatenate(rows, axis=0))


if __name__ == "__main__":
    main()
