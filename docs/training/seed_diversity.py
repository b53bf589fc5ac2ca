"""How much a model's seeds differ in colour, against the training images: a check the estimator cannot make.

The synthetic world's estimator reads camera, pose and expression, and its features hardly see colour, so its
fidelity number can improve while every seed comes out in the same colours. This script takes, for each of N
images, the mean colour of its foreground (pixels not near-white) and reports the standard deviation of that mean
over the images, averaged over R, G and B (on the [0, 1] scale): for the first N data images, and for N seeds of
each model rendered from the front at rest (psi 1 and 0.7).

    python docs/training/seed_diversity.py --data DATA [--model NAME=FILE ...] [--num 64] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from aniportrait import pretrained
from aniportrait.checkpoint import load_generator
from aniportrait.machine import cpu_name
from aniportrait.models.generator import sample_identity_latents

NEAR_WHITE = 0.92  # a pixel (on [0, 1]) is background when every channel is above this


def colour_spread(images: np.ndarray) -> dict:
    """[N, H, W, 3] on [0, 1] -> the spread of the per-image foreground mean colours, and their mean."""
    foreground = (images < NEAR_WHITE).any(axis=-1)
    means = np.stack(
        [image[mask].mean(axis=0) if mask.any() else np.ones(3) for image, mask in zip(images, foreground)]
    )
    return {"spread": float(means.std(axis=0).mean()), "mean_rgb": [round(float(v), 4) for v in means.mean(axis=0)]}


@torch.no_grad()
def model_images(path: str, num: int, psi: float) -> np.ndarray:
    generator, metadata, valid_index = load_generator(path)
    body = pretrained.body_for_checkpoint(metadata, valid_index, None)
    z_id, z_noise, betas = sample_identity_latents(generator.config, list(range(num)), id_bank=generator.id_bank)
    identity = generator.prepare_identity(z_id, z_noise, betas, psi=psi, impl="ref")
    camera = torch.tensor([[math.pi / 2, math.pi / 2]] * num)
    out = generator.render_frame(identity, body, camera, torch.zeros(num, 6, 3), torch.zeros(num, 64), impl="ref")
    return ((out["image"].permute(0, 2, 3, 1).numpy() + 1) / 2).clip(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FILE")
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    files = sorted((args.data / "images").glob("*.png"))[: args.num]
    data = np.stack([imageio.imread(f)[..., :3] / 255.0 for f in files])
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
        "num": args.num,
        "data": colour_spread(data),
        "models": {},
    }
    for item in args.model:
        name, _, path = item.partition("=")
        result["models"][name] = {f"psi {psi}": colour_spread(model_images(path, args.num, psi)) for psi in (1.0, 0.7)}
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
