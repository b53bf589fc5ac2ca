"""Where the expression deformation acts: DeformNet's displacement change on the canonical body's face and torso.

For identities 0-3 of a checkpoint (the built-in default by default), DeformNet runs on the canonical (mean-pose,
mean-shape) body vertices with a neutral expression and with one coefficient set; reported is the mean norm of the
displacement change on face vertices (the top 0.2 of the body's height, in front of z = -0.02), on the crown (the
top 0.05, the head's outline from the front), on the head's back and sides (the top 0.3, behind z = -0.03: the
3DMM face lies in front of z = -0.025) and on torso vertices (more than 0.45 below the top), in DeformNet's warped
units. The 3DMM teacher wants zero on the torso, the back and sides, and the crown (but for its brows' coefficient).

    python docs/default_model/expression_displacement.py [--checkpoint FILE] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aniportrait import pretrained
from aniportrait.checkpoint import load_generator
from aniportrait.models.generator import sample_identity_latents
from aniportrait.train.warmups import CanonicalBody

CHANGES = {"mouth open 3": (0, 3.0), "smile 1.5": (1, 1.5)}


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--json", default=str(Path(__file__).with_name("expression_displacement.json")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.checkpoint:
        generator, metadata, valid_index = load_generator(args.checkpoint)
    else:
        generator, metadata, valid_index = pretrained.builtin_generator()
    body = pretrained.body_for_checkpoint(metadata, valid_index, None)
    verts = CanonicalBody.of(body).verts
    height = verts[:, 1]
    regions = {
        "face": (height > height.max() - 0.2) & (verts[:, 2] > -0.02),
        "crown": height > height.max() - 0.05,
        "back and sides": (height > height.max() - 0.3) & (verts[:, 2] < -0.03),
        "torso": height < height.max() - 0.45,
    }
    seeds = [0, 1, 2, 3]
    z_id = sample_identity_latents(generator.config, seeds, id_bank=generator.id_bank)[0]
    points = verts[None].expand(len(seeds), -1, -1)

    def displacement(expression):
        freq, phase = generator.deform_net.mapping(torch.cat([z_id, expression], dim=-1))
        return generator.deform_net(points, freq, phase)[1]

    neutral = displacement(torch.zeros(len(seeds), 64))
    result = {"checkpoint": args.checkpoint or "built-in default", "seeds": seeds, "changes": {}}
    for name, (index, value) in CHANGES.items():
        expression = torch.zeros(len(seeds), 64)
        expression[:, index] = value
        change = (displacement(expression) - neutral).norm(dim=-1)
        result["changes"][name] = {r: round(change[:, m].mean().item(), 6) for r, m in regions.items()}
    result["vertices"] = {r: int(m.sum()) for r, m in regions.items()}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
