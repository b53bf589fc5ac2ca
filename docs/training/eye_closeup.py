"""Close-ups of a model's eyes as the eye-closure coefficient changes: what a 128x128 frame shows of them.

Renders the model from the front at rest pose for three seeds (psi 0.7), one column per expression: eyes closed at
-0.6, 0, 0.5 and 1 (coefficient 2), then a smile of 1.5 and an open mouth of 1.5, and keeps the frame's rows 36-65
and columns 49-78 (the eyes and brows of the built-in default), enlarged with nearest-neighbour pixels. With
``--world`` it shows the synthetic world's own frames instead (``data synth``'s renderer, figures 0-2 of seed 202,
at the same camera, pose and expressions).

    python docs/training/eye_closeup.py [--checkpoint FILE | --world] --out PNG
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from PIL import Image

import aniportrait
from aniportrait.models.face3dmm import EXPRESSION_MEANING
from aniportrait.models.generator import sample_identity_latents

COLUMNS = (
    ("eyes closed", -0.6),
    ("eyes closed", 0.0),
    ("eyes closed", 0.5),
    ("eyes closed", 1.0),
    ("smile", 1.5),
    ("mouth open", 1.5),
)
ROWS, COLS = slice(36, 66), slice(49, 79)


def to_uint8(crop: torch.Tensor) -> np.ndarray:
    return ((crop.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


@torch.no_grad()
def model_rows(checkpoint: str | None, seeds: list[int]) -> list[np.ndarray]:
    portrait = aniportrait.load(checkpoint, device="cpu")  # the built-in default when checkpoint is None
    generator, body = portrait.generator, portrait.body
    camera = torch.tensor([[math.pi / 2, math.pi / 2]])
    rows = []
    for seed in seeds:
        latents = sample_identity_latents(generator.config, [seed], id_bank=generator.id_bank)
        identity = generator.prepare_identity(*latents, psi=0.7, impl="ref")
        row = []
        for name, value in COLUMNS:
            expression = torch.zeros(1, 64)
            expression[0, EXPRESSION_MEANING.index(name)] = value
            image = generator.render_frame(identity, body, camera, torch.zeros(1, 6, 3), expression, impl="ref")
            row.append(to_uint8(image["image"][0, :, ROWS, COLS]))
        rows.append(np.concatenate(row, axis=1))
    return rows


def world_rows(count: int = 3, seed: int = 202) -> list[np.ndarray]:
    from aniportrait.data.synth import render_figures, sample_figures

    columns = []
    for name, value in COLUMNS:
        expression = np.zeros(64, np.float32)
        expression[EXPRESSION_MEANING.index(name)] = value
        figures = sample_figures(seed, count).with_(
            camera=np.array([math.pi / 2, math.pi / 2], np.float32),
            pose=np.zeros((6, 3), np.float32),
            expression=expression,
        )
        images, _ = render_figures(figures, res=128)
        columns.append(images[:, ROWS, COLS])
    return [np.concatenate([column[i] for column in columns], axis=1) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a generator file (default: the built-in model)")
    parser.add_argument("--world", action="store_true", help="the synthetic world's frames instead of a model's")
    parser.add_argument("--seeds", default="0,1,3")
    parser.add_argument("--scale", type=int, default=6)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = world_rows() if args.world else model_rows(args.checkpoint, [int(s) for s in args.seeds.split(",")])
    sheet = np.concatenate(rows, axis=0)
    height, width = sheet.shape[:2]
    Image.fromarray(sheet).resize((width * args.scale, height * args.scale), Image.NEAREST).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
