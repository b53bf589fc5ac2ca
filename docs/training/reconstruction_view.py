"""A stage-1 model's renders of the first images its reconstruction warm-up fitted, beside the images.

Picks the rows a run's reconstruction warm-up drew (its ``seed`` and ``recon_images``,
:func:`~aniportrait.train.loop.reconstruction_rows`), renders the first ``--num`` of them at stage 1 with their own
labels (noise N(0, I) from seed 1) and writes one picture: data portraits, rendered portraits, data face crops, rendered
face views (rows), at the renders' sizes, enlarged by ``--zoom``. Prints the L1 errors (pixels on [-1, 1]).

    python docs/training/reconstruction_view.py --run RUN --data DATA --out PNG [--checkpoint FILE] [--num 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
import torch.nn.functional as F

from aniportrait.checkpoint import load_generator
from aniportrait.data.dataset import PortraitDataset
from aniportrait.images import resample_grid
from aniportrait.pretrained import body_for_checkpoint
from aniportrait.train.loop import reconstruction_rows


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="stage-1 run folder (its config.json picks the rows)")
    parser.add_argument("--data", required=True, help="the run's dataset")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--checkpoint", default=None, help="generator to render (default: the run's own)")
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--zoom", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    training = json.loads((Path(args.run) / "config.json").read_text())["training"]
    dataset = PortraitDataset(args.data, check=False)
    rows = reconstruction_rows(training["seed"], training["recon_images"], len(dataset))[: args.num]
    data = dataset.rows(rows)
    generator, metadata, valid_index = load_generator(args.checkpoint or str(Path(args.run) / "generator.safetensors"))
    generator.eval()
    body = body_for_checkpoint(metadata, valid_index, None)
    side = generator.config.lr_img_size
    noise = torch.randn(len(rows), generator.config.z_noise_dim, generator=torch.Generator().manual_seed(1))
    out = generator.render_train(
        body,
        data["id"],
        noise,
        data["betas"],
        data["expression"],
        data["camera"],
        data["pose"],
        face_size=side,
        stage=1,
    )
    image, face = resample_grid(data["image"], side), resample_grid(data["face"], side)
    print(
        f"L1 portrait {(out['image'] - image).abs().mean().item():.4f}, face {(out['face'] - face).abs().mean().item():.4f}"
    )
    grid = torch.cat(
        [
            torch.cat(list(F.interpolate(t.clamp(-1, 1), scale_factor=args.zoom, mode="nearest")), dim=2)
            for t in (image, out["image"], face, out["face"])
        ],
        dim=1,
    )
    pixels = ((grid.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    imageio.imwrite(args.out, pixels)


if __name__ == "__main__":
    main()
