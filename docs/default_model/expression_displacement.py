"""Where the expression deformation acts: DeformNet's displacement change on the canonical body's face and torso.

For identities 0-3 of a checkpoint (the built-in default by default), DeformNet runs on the canonical (mean-pose,
mean-shape) body vertices with a neutral expression and with one coefficient set; reported is the mean norm of the
displacement change on face vertices (the top 0.2 of the body's height, in front of z = -0.02), on the crown (the
top 0.05, the head's outline from the front), on the head's back and sides (the top 0.3, behind z = -0.03: the
3DMM face lies in front of z = -0.025) and on torso vertices (more than 0.45 below the top), in DeformNet's warped
units. The 3DMM teacher wants zero on the torso, the back and sides, and the crown (but for its brows' coefficient).

It also sets the deformation beside its teacher (``imitation``, ``aniportrait.train.imitation.follow_fractions``):
for each of the four coefficients that the synthetic world animates, at 0.5 and 1, DeformNet's displacement change
on the vertices of the 3DMM (registered at the mean shape, placed at that expression) projected onto the teacher's
target there (the imitation loss's target, ``-B_exp e``) as a fraction of the target, and their cosine, over the
vertices where the target is at least half its largest. And it counts the 3DMM's folds (``teacher_folds``):
triangles of the expressive face whose frontal orientation flips, at each end of the synthetic labels' range of each
coefficient. Where the face folds, two sheets of the surface meet at one point with different targets, and no
deformation can follow both.

    python docs/default_model/expression_displacement.py [--checkpoint FILE] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aniportrait import pretrained
from aniportrait.checkpoint import load_generator
from aniportrait.data.synth_labels import EXPRESSION_RANGES
from aniportrait.models import bfm_file, face_registration
from aniportrait.models.face3dmm import EXPRESSION_MEANING
from aniportrait.models.generator import sample_identity_latents
from aniportrait.train.imitation import ExpressionTeacher, follow_fractions
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
    face = bfm_file.build_face_model(None)
    teacher = ExpressionTeacher.on_body(
        face, body, face_registration.rig_landmark_bary(body), mean_shape=generator.config.mean_shape_canonical
    )
    result["imitation"] = {
        f"{EXPRESSION_MEANING[k]} {v}": {name: round(x, 3) for name, x in measured.items()}
        for (k, v), measured in follow_fractions(generator.deform_net, teacher, z_id).items()
    }
    result["teacher_folds"] = teacher_folds(face)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def teacher_folds(face) -> dict[str, int]:
    """Triangles of the 3DMM face whose orientation seen from the front flips at each end of each coefficient's
    range in the synthetic labels."""
    mean = face.mean_shape.reshape(-1, 3)
    a, b, c = (face.triangles[:, i] for i in range(3))

    def oriented_area(v):
        return (v[b] - v[a])[:, 0] * (v[c] - v[a])[:, 1] - (v[b] - v[a])[:, 1] * (v[c] - v[a])[:, 0]

    neutral = oriented_area(mean)
    folds = {}
    for index, ends in enumerate(EXPRESSION_RANGES):
        for value in ends:
            expression = torch.zeros(1, 64)
            expression[0, index] = value
            moved = mean + face.expression_offsets(expression)[0]
            folds[f"{EXPRESSION_MEANING[index]} {value}"] = int((oriented_area(moved) * neutral < 0).sum())
    folds["triangles"] = len(neutral)
    return folds


if __name__ == "__main__":
    main()
