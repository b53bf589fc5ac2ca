"""The built-in estimator's floors measured again on another held-out synthetic dataset.

The floors in the estimator's weights file are its errors on the held-out set of the world it was trained on. When
``data synth`` changes (docs/training section 28: the head takes the rig's shape map), this reads the same numbers,
by the same code as its training run (``aniportrait.eval.estimator_train.measure_floors``: control errors and the
data-vs-data fidelity at each render size), on a held-out set of the changed world, beside the recorded ones.

    OMP_NUM_THREADS=1 python docs/estimator/heldout_floor.py --data DATA/heldout --json OUT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aniportrait.eval.estimator import builtin_estimator
from aniportrait.eval.estimator_train import load_arrays, measure_floors

AXES = ("camera_deg", "head_pose_deg", "shoulder_pose_deg", "expression")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="held-out synthetic dataset")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    model = builtin_estimator()
    images, faces, targets, meta = load_arrays(args.data)
    floors = measure_floors(model, images, faces, targets)
    summary = {
        "data": {"count": len(images), "source": meta.get("source")},
        "measured": [{"image_size": f["image_size"], **{a: round(f["control"][a], 4) for a in AXES}} for f in floors],
        "recorded": [
            {"image_size": f["image_size"], **{a: round(f["control"][a], 4) for a in AXES}}
            for f in model.record["floors"]
        ],
    }
    Path(args.json).write_text(json.dumps(dict(summary, floors=floors), indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
