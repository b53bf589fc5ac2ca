"""Where the synthetic world's painted face features land in the generator's canonical space, across figures.

The synthetic world paints eyes, brows and mouth on the head's ellipsoids in the head's nominal frame and places the
head for the figure's betas (``data/synth_scene.py``). The generator takes a posed point back to canonical space
through its nearest rig vertex (``BodyModel.inverse_skinning``, here with ``mean_shape=True`` as the default trains),
taking away that vertex's shape offset. Where the world's head shape and the rig's disagree, one painted feature lands
at a different canonical point for every body shape, and a fit that draws one texture for all of them draws the
average. Until docs/training section 28 they disagreed: the world scaled the head about the face centre, hung at a
fixed offset from the shaped head joint, while the rig scales it about its head centre (``world_features/
spread_before.json``); the world now takes the rig's own head shape map (``spread_after.json``).

For the first ``--num`` figures of a synthetic dataset's seed (the default's training data: seed 0) this reports,
per feature (the centres of the left and right eye, the left brow and the mouth, on the surface of the skull or jaw
ellipsoid), the spread of its canonical position (standard deviation per axis, largest distance from the median),
and its slope per unit of each beta (least squares), next to the features' own sizes.

    python docs/training/world_feature_spread.py [--num 2000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from aniportrait import ops
from aniportrait.data.synth_labels import sample_figures
from aniportrait.data.synth_scene import BROW, EYE, JAW, MOUTH, SKULL, _build_scene
from aniportrait.models.body import BodyModel

FEATURES = ("left eye", "right eye", "left brow", "mouth")
BATCH = 1000


def _on_front(x: float, y: float, ellipsoid) -> tuple[float, float, float]:
    """The point of an axis-aligned ellipsoid's front (+z) surface above (x, y), head's nominal frame."""
    (cx, cy, cz), (rx, ry, rz) = ellipsoid
    return (x, y, cz + rz * math.sqrt(max(1.0 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2, 0.0)))


def feature_points() -> torch.Tensor:
    """[4, 3] the features' centres in the head's nominal frame (canonical units)."""
    (eye_x, eye_y), (brow_x, brow_y), (mouth_x, mouth_y) = EYE[0], BROW[0], MOUTH[0]
    return torch.tensor(
        [
            _on_front(eye_x, eye_y, SKULL),
            _on_front(-eye_x, eye_y, SKULL),
            _on_front(brow_x, brow_y, SKULL),
            _on_front(mouth_x, mouth_y, JAW),
        ]
    )


@torch.no_grad()
def canonical_features(seed: int, count: int, body: BodyModel) -> tuple[torch.Tensor, torch.Tensor]:
    """[count, 4, 3] canonical (mean-shape) positions of the features of figures 0..count-1, and their betas."""
    points = feature_points()
    out, betas = [], []
    for start in range(0, count, BATCH):
        figures = sample_figures(seed, min(BATCH, count - start), start)
        scene = _build_scene(figures)
        posed = scene.posed_head_points(points)  # as the world places its head parts
        figure_betas = torch.from_numpy(figures.betas)
        verts, transforms = body.inverse_skinning(figure_betas, torch.from_numpy(figures.pose), mean_shape=True)
        out.append(ops.inverse_lbs(posed, verts, transforms, k=1)[0])
        betas.append(figure_betas)
    return torch.cat(out), torch.cat(betas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the synthetic dataset's seed")
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    body = BodyModel.procedural()
    canonical, betas = canonical_features(args.seed, args.num, body)
    median = canonical.median(0).values
    deviation = (canonical - median).norm(dim=-1)  # [N, 4]
    design = torch.cat([betas, torch.ones(len(betas), 1)], dim=1)
    slopes = torch.linalg.lstsq(design, canonical.reshape(len(betas), -1)).solution[:-1].reshape(10, 4, 3)
    result = {
        "seed": args.seed,
        "num": args.num,
        "units": "canonical",
        "canonical_space": "mean shape (generator.mean_shape_canonical), nearest rig vertex",
        "feature_sizes": {
            "eye half height": EYE[1][1],
            "brow half thickness": BROW[2],
            "mouth lip half height": MOUTH[2],
        },
        "features": {
            name: {
                "std_xyz": [round(v, 5) for v in canonical[:, k].std(0).tolist()],
                "max_from_median": round(deviation[:, k].max().item(), 5),
                "slope_per_beta_xyz": [[round(v, 5) for v in slopes[b, k].tolist()] for b in range(10)],
            }
            for k, name in enumerate(FEATURES)
        },
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
