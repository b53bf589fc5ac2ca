"""Would a full-strength smile and eye closure show? The estimator's reading of a model whose DeformNet has them.

The default's DeformNet moves the face by about a twentieth of the 3DMM teacher's smile and a quarter of its eye
closure (``docs/default_model/expression_displacement.json``, ``imitation``), and the estimator reads neither from its
renders (correlation about 0, ``docs/default_model/expression_readout.json``). This renders ``--num`` held-out rows as
``docs/training/expression_readout.py`` does, twice: with the model as it is, and with the chosen coefficients'
deformation taken from the teacher instead: DeformNet runs with those coefficients at 0, and each point within
``REACH`` of the registered 3DMM face (placed at those coefficients) is moved by its nearest vertex's imitation
target as well, fading to nothing at ``REACH``. Reported: the estimator's expression readout (error and correlation
per coefficient) for both, and how much the face views changed.

    OMP_NUM_THREADS=2 python docs/training/teacher_deformation_readout.py --data HELDOUT [--coefficients 1 2]
        [--checkpoint FILE] [--num 128] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from expression_readout import READ, readout  # docs/training/ is on the path when this script runs
from torch import nn

from aniportrait.checkpoint import load_generator
from aniportrait.data.dataset import PortraitDataset
from aniportrait.eval.estimator import builtin_estimator
from aniportrait.models import bfm_file, face_registration
from aniportrait.pretrained import body_for_checkpoint, builtin_checkpoint_path
from aniportrait.train.imitation import ExpressionTeacher, nearest_vertex_targets

REACH = 0.01  # canonical units: the imitation loss's max_distance
CHUNK = 8192
ID_DIM = 80


class TeacherDeformation(nn.Module):
    """DeformNet with the teacher's deformation for ``coefficients`` in place of its own (see the module docstring).

    The generator calls ``mapping`` with its [z_id, expression] code and then ``forward`` on the points of the same
    rows; this keeps that code between the two calls.
    """

    def __init__(self, deform_net: nn.Module, teacher: ExpressionTeacher, coefficients: list[int]) -> None:
        super().__init__()
        self.inner, self.teacher, self.coefficients = deform_net, teacher, coefficients
        self.code: torch.Tensor | None = None

    def mapping(self, code: torch.Tensor):
        self.code = code
        without = code.clone()
        without[:, [ID_DIM + k for k in self.coefficients]] = 0.0
        return self.inner.mapping(without)

    def forward(self, x_can: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor):
        new_coords, d = self.inner(x_can, freq, phase)
        code, batch = self.code, x_can.shape[0]
        expression = torch.zeros(batch, code.shape[1] - ID_DIM)
        expression[:, self.coefficients] = code[:, [ID_DIM + k for k in self.coefficients]]
        registered = self.teacher.register(torch.zeros(batch, 10))
        vertices = registered.canonical_vertices(code[:, :ID_DIM], expression)
        targets = -registered.canonical_expression_offsets(expression)
        points = x_can.reshape(batch, -1, 3)
        added = torch.zeros_like(points)
        for start in range(0, points.shape[1], CHUNK):
            part = points[:, start : start + CHUNK]
            distance, target = nearest_vertex_targets(part, vertices, targets)
            added[:, start : start + CHUNK] = target * (1.0 - distance / REACH).clamp(0.0, 1.0)[..., None]
        added = added.reshape(d.shape)
        return new_coords + added, d + added


@torch.no_grad()
def render_faces(generator, body, data, noise):
    labels = [data[key] for key in ("id", "betas", "expression", "camera", "pose")]
    portraits, faces = [], []
    for start in range(0, len(noise), 8):
        part = slice(start, start + 8)
        out = generator.render_train(
            body, labels[0][part], noise[part], *(x[part] for x in labels[1:]),
            face_size=generator.default_face_size(2), stage=2,
        )  # fmt: skip
        portraits.append(out["image"].clamp(-1, 1))
        faces.append(out["face"].clamp(-1, 1))
    return torch.cat(portraits), torch.cat(faces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="held-out synthetic dataset")
    parser.add_argument("--checkpoint", default=None, help="generator file (default: the built-in default)")
    parser.add_argument("--coefficients", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--num", type=int, default=128)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not all(0 <= k < READ for k in args.coefficients):
        raise SystemExit(f"--coefficients must lie in 0..{READ - 1}")
    estimator = builtin_estimator()
    dataset = PortraitDataset(args.data, check=False)
    data = dataset.rows(range(min(args.num, len(dataset))))
    true = data["expression"][:, :READ]
    path = args.checkpoint or builtin_checkpoint_path()
    generator, metadata, valid_index = load_generator(path)
    generator.eval()
    body = body_for_checkpoint(metadata, valid_index, None)
    noise = torch.randn(len(true), generator.config.z_noise_dim, generator=torch.Generator().manual_seed(0))
    result = {"data": Path(args.data).name, "num": len(true), "checkpoint": Path(path).name}
    result["coefficients_from_the_teacher"] = args.coefficients
    model_portraits, model_faces = render_faces(generator, body, data, noise)
    teacher = ExpressionTeacher.on_body(
        bfm_file.build_face_model(None),
        body,
        face_registration.rig_landmark_bary(body),
        mean_shape=generator.config.mean_shape_canonical,
    )
    generator.deform_net = TeacherDeformation(generator.deform_net, teacher, args.coefficients)
    portraits, faces = render_faces(generator, body, data, noise)
    result["readout"] = {
        "model": readout(estimator(model_portraits, model_faces)["expression"], true),
        "teacher's deformation": readout(estimator(portraits, faces)["expression"], true),
    }
    result["face_view_change_mean_abs"] = round((faces - model_faces).abs().mean().item(), 5)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
