"""Regenerate docs/contact_sheet.png: the built-in default under the yaw, head, shoulder and expression trajectories.

Each block is `aniportrait render --seeds 0,2 --trajectory T --contact-sheet 6` (a row per seed, six evenly spaced
frames); this script runs the four renders and stacks their sheets.

    python docs/make_contact_sheet.py [--checkpoint FILE --out PNG]   # default: the built-in model, this folder
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

TRAJECTORIES = ("yaw", "head", "shoulder", "expression")
OUT = Path(__file__).with_name("contact_sheet.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a generator file (default: the built-in model)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    checkpoint = ["--checkpoint", args.checkpoint] if args.checkpoint else []
    blocks = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in TRAJECTORIES:
            out = Path(tmp) / name
            command = ["render", *checkpoint, "--seeds", "0,2", "--trajectory", name, "--contact-sheet", "6", "--quiet"]
            subprocess.run([sys.executable, "-m", "aniportrait", *command, "--out", str(out)], check=True)
            blocks.append(imageio.imread(out / "contact_sheet.png"))
    gap = np.full((6, blocks[0].shape[1], 3), 255, dtype=np.uint8)
    imageio.imwrite(args.out, np.concatenate([x for b in blocks for x in (b, gap)][:-1]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
