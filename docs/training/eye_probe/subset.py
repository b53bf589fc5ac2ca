"""A dataset that holds some of another's rows: its labels filtered, its images linked, not copied.

Rows whose expression coefficient ``--coefficient`` lies in [``--low``, ``--high``], or the first ``--first`` rows.
Used by docs/training/README.md, section 33, to fit the model to figures with their eyes neither closed nor widened.

    python docs/training/eye_probe/subset.py DATA OUT (--coefficient K --low A --high B | --first N)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aniportrait.data.dataset import check_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--coefficient", type=int)
    parser.add_argument("--low", type=float)
    parser.add_argument("--high", type=float)
    parser.add_argument("--first", type=int)
    args = parser.parse_args()
    labels = dict(np.load(args.data / "labels.npz"))
    if args.first is not None:
        keep = np.arange(min(args.first, len(labels["ids"])))
        rows = f"its first {len(keep)} rows"
    else:
        value = labels["expression"][:, args.coefficient]
        keep = np.flatnonzero((value >= args.low) & (value <= args.high))
        rows = f"the rows with expression[{args.coefficient}] in [{args.low}, {args.high}]"
    args.out.mkdir(parents=True, exist_ok=False)
    for folder in ("images", "faces"):
        (args.out / folder).symlink_to((args.data / folder).resolve())
    np.savez(args.out / "labels.npz", **{key: array[keep] for key, array in labels.items()})
    meta = json.loads((args.data / "dataset.json").read_text())
    meta["count"] = len(keep)
    meta["source"] = f"{meta['source']}: {rows}"
    (args.out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(check_dataset(args.out, decode=False))


if __name__ == "__main__":
    main()
