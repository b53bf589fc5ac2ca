"""Regenerate docs/contact_sheet.png: the built-in default under the yaw, head, shoulder and expression trajectories.

Each block is `aniportrait render --seeds 0,2 --trajectory T --contact-sheet 6` (a row per seed, six evenly spaced
frames); this script runs the four renders and stacks their sheets.

    python docs/make_contact_sheet.py
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

TRAJECTORIES = ("yaw", "head", "shoulder", "expression")
OUT = Path(__file__).with_name("contact_sheet.png")


def main() -> None:
    blocks = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in TRAJECTORIES:
            out = Path(tmp) / name
            command = ["render", "--seeds", "0,2", "--trajectory", name, "--contact-sheet", "6", "--quiet"]
            subprocess.run([sys.executable, "-m", "aniportrait", *command, "--out", str(out)], check=True)
            blocks.append(imageio.imread(out / "contact_sheet.png"))
    gap = np.full((6, blocks[0].shape[1], 3), 255, dtype=np.uint8)
    imageio.imwrite(OUT, np.concatenate([x for b in blocks for x in (b, gap)][:-1]))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
