"""What the expression's neck gate lets through on the procedural rig's canonical mesh (mean pose, mean shape).

For the ``small`` preset's gate (0 below y = -0.16, 1 above -0.125) at several slopes (the gate compares
``y - slope * |x|``), the gate weight on two groups of the rig's vertices: the shoulders (|x| > 0.07 and y < -0.1,
which the expression must not move) and the neck's front and the jaw's midline (|x| < 0.06, -0.125 < y < -0.06, where
the open jaw moves); and the height of the highest shoulder vertex at each distance from the midline.

    python docs/training/gate_weights.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aniportrait.config import SMALL
from aniportrait.models.body import BodyModel
from aniportrait.models.deformation import neck_gate_weight
from aniportrait.train.warmups import CanonicalBody

SLOPES = (0.0, 0.3, 0.5, 0.8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(Path(__file__).with_name("gate_weights.json")))
    args = parser.parse_args()
    verts = CanonicalBody.of(BodyModel.procedural()).verts
    side, y = verts[:, 0].abs(), verts[:, 1]
    shoulders = (side > 0.07) & (y < -0.1)
    midline = (side < 0.06) & (y > -0.125) & (y < -0.06)
    low, high = SMALL.expression_gate_low, SMALL.expression_gate_high
    report = {
        "gate": {"low": low, "high": high},
        "vertices": {"shoulders": int(shoulders.sum()), "neck and jaw midline": int(midline.sum())},
        "highest shoulder vertex": {
            f"|x| > {d}": round(float(y[side > d].max()), 3) for d in (0.08, 0.1, 0.12, 0.15, 0.2)
        },
        "slopes": {},
    }
    for slope in SLOPES:
        w = neck_gate_weight(y - slope * side, low, high)
        report["slopes"][str(slope)] = {
            "shoulders: mean weight": round(float(w[shoulders].mean()), 4),
            "shoulders: max weight": round(float(w[shoulders].max()), 4),
            "midline: mean weight": round(float(w[midline].mean()), 4),
            "midline: min weight": round(float(w[midline].min()), 4),
        }
    text = json.dumps(report, indent=2)
    Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
