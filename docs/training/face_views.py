"""Held-out face crops beside models' face views, as ``eval`` renders them for the estimator.

For the first ``--num`` rows of a held-out dataset: the data's face crop, then each model's face view of the same row
(its identity label, body shape, expression, camera and pose, noise N(0, I) from seed 0; stage 2, at the data's
face-crop size), one row of the picture per dataset row, enlarged by ``--zoom``. The model names are printed in
column order (the picture has no text).

    OMP_NUM_THREADS=2 python docs/training/face_views.py --data HELDOUT --model NAME=FILE [...] --out PNG
"""

from __future__ import annotations

import argparse

import imageio.v2 as imageio
import numpy as np
import torch

from aniportrait.checkpoint import load_generator
from aniportrait.data.dataset import PortraitDataset
from aniportrait.pretrained import body_for_checkpoint, builtin_checkpoint_path


@torch.no_grad()
def face_views(path: str, data: dict[str, torch.Tensor]) -> torch.Tensor:
    generator, metadata, valid_index = load_generator(path)
    generator.eval()
    body = body_for_checkpoint(metadata, valid_index, None)
    count = len(data["id"])
    noise = torch.randn(count, generator.config.z_noise_dim, generator=torch.Generator().manual_seed(0))
    labels = [data[key] for key in ("id", "betas", "expression", "camera", "pose")]
    out = generator.render_train(body, labels[0], noise, *labels[1:], face_size=data["face"].shape[-1], stage=2)
    return out["face"].clamp(-1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", action="append", required=True, help="NAME=FILE ('default': the built-in model)")
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--zoom", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dataset = PortraitDataset(args.data, check=False)
    data = dataset.rows(range(min(args.num, len(dataset))))
    columns = [data["face"]]
    for spec in args.model:
        name, _, path = spec.partition("=")
        columns.append(face_views(builtin_checkpoint_path() if path == "default" else path, data))
        print(f"column {len(columns)}: {name}")
    picture = torch.cat([torch.cat([c[i] for c in columns], dim=2) for i in range(len(data["face"]))], dim=1)
    pixels = ((picture.permute(1, 2, 0).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    imageio.imwrite(args.out, pixels.repeat(args.zoom, axis=0).repeat(args.zoom, axis=1))


if __name__ == "__main__":
    main()
