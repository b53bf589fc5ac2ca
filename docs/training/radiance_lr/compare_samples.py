"""Side by side: the stage-1 sample grids of two runs at the same steps (rows: run A, run B; one column per step).

python docs/training/radiance_lr/compare_samples.py RUN_A/s1 RUN_B/s1 --out docs/training/radiance_lr/samples.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--steps", default="500,1000,1500,2000")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = []
    for run in (args.run_a, args.run_b):
        grids = [iio.imread(Path(run) / "samples" / f"step_{int(s):07d}.png")[..., :3] for s in args.steps.split(",")]
        gap = np.full((grids[0].shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([x for g in grids for x in (g, gap)][:-1], axis=1))
    sheet = np.concatenate([rows[0], np.full((4, rows[0].shape[1], 3), 255, np.uint8), rows[1]], axis=0)
    iio.imwrite(args.out, np.repeat(np.repeat(sheet, 2, 0), 2, 1))


if __name__ == "__main__":
    main()
