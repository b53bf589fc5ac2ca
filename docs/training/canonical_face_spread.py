"""Where the face sits in canonical space across body shapes: the release's canonical space against the mean shape's.

For the betas of ``--num`` synthetic figures (seed 0, the training data's), the procedural rig's 68 face landmarks in
canonical units: in the release's canonical space (mean pose at each figure's betas) and in the mean-shape canonical
space (``generator.mean_shape_canonical``), where each landmark is taken back by its vertex's shape offset. Reports,
for the eyes, the mouth and the nose, the spread of their centre over the figures (standard deviation per axis and
largest distance from the mean) and, as the face's own scale, the mean distance between the eye centres.

    python docs/training/canonical_face_spread.py [--num 512] [--json OUT]
"""

from __future__ import annotations

import argparse
import json

import torch

from aniportrait.data.synth_labels import sample_figures
from aniportrait.models.body import BodyModel
from aniportrait.models.face_registration import landmarks_on_mesh, rig_face_landmarks, rig_landmark_bary

PARTS = {"eyes": range(36, 48), "mouth": range(48, 68), "nose": [30]}


def spread(landmarks: torch.Tensor) -> dict:
    out = {}
    for name, index in PARTS.items():
        centre = landmarks[:, list(index)].mean(1)
        out[name] = {
            "std_xyz": [round(v, 5) for v in centre.std(0).tolist()],
            "max_from_mean": round((centre - centre.mean(0)).norm(dim=-1).max().item(), 5),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=512)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    body = BodyModel.procedural()
    betas = torch.from_numpy(sample_figures(0, args.num).betas)
    release = rig_face_landmarks(body, betas)  # [N, 68, 3] on each figure's own canonical mesh
    # Mean-shape space: a landmark's barycentric vertices minus their shape offsets, i.e. the betas-0 landmarks.
    bary = rig_landmark_bary(body)
    verts, transforms = body.inverse_skinning(betas, torch.zeros(len(betas), 6, 3), mean_shape=True)
    full = torch.zeros(len(betas), body.smpl_model.v_template.shape[0], 3)
    full[:, body.valid_index] = (transforms[..., :3, :3] @ verts[..., None])[..., 0] + transforms[..., :3, 3]
    bary = torch.as_tensor(bary)
    faces = body.smpl_model.faces_tensor.long()
    if not torch.isin(faces[bary[:, 0].long()].flatten(), body.valid_index).all():
        raise SystemExit("a landmark's triangle has a vertex without an inverse-skinning transform")
    mean_shape = landmarks_on_mesh(full, faces, bary)
    eye_distance = (release[:, 36:42].mean(1) - release[:, 42:48].mean(1)).norm(dim=-1).mean().item()
    result = {
        "num": args.num,
        "units": "canonical",
        "inter_eye_distance": round(eye_distance, 5),
        "release_canonical": spread(release),
        "mean_shape_canonical": spread(mean_shape),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
