"""How much of RadianceNet's spatial spectrum the manifold textures can hold: energy above the texture Nyquist limit.

The manifold textures sample RadianceNet on a ``lr_img_size``-texel grid over the canonical texture box. Energy above
that grid's Nyquist frequency (lr_img_size / 2 cycles per box width) aliases into the textures. This script evaluates
a freshly initialised RadianceNet of a generator config on a fine grid (FINE x FINE points over the texture box, on
PLANES depth planes, for IDENTITIES random identities) and reports the fraction of the colour and density spectral
energy (mean removed) outside the Nyquist square, for several ``radiance_input_scale`` values (the factor on the
network's input coordinates, which scales every spatial frequency of the field).

Usage: python docs/training/aliasing.py [--config small] [--json docs/training/aliasing.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from aniportrait import constants
from aniportrait.config import get_config
from aniportrait.models.generator import AniPortraitGenerator, texture_alpha

FINE = 256
PLANES = (-0.1, -0.05, 0.0, 0.05, 0.1)
IDENTITIES = 8
SCALES = (1.0, 0.75, 0.5, 0.35, 0.25)


def above_nyquist(field: torch.Tensor, texels: int) -> float:
    """Fraction of the spectral energy of ``field`` [N, C, FINE, FINE] (mean removed) above ``texels / 2`` cycles
    per side on either axis."""
    field = field - field.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(field.double()).abs().square()
    k = torch.fft.fftfreq(field.shape[-1], d=1.0 / field.shape[-1]).abs()
    outside = (k[:, None] > texels / 2) | (k[None, :] > texels / 2)
    return float(power[..., outside].sum() / power.sum())


@torch.no_grad()
def measure(config_name: str, scale: float, seed: int = 0) -> dict[str, float]:
    cfg = dataclasses.replace(get_config(config_name), radiance_input_scale=scale)
    torch.manual_seed(seed)
    G = AniPortraitGenerator(cfg)
    side = torch.linspace(-constants.SAMPLE_SCALE, constants.SAMPLE_SCALE, FINE)
    y, x = torch.meshgrid(side + constants.SAMPLE_CENTER, side, indexing="ij")
    colour, density = [], []
    z_all = torch.randn(IDENTITIES, cfg.z_dim, generator=torch.Generator().manual_seed(seed + 1))
    for z in z_all:
        freq, phase = G.radiance_net.mapping(z[None])
        for depth in PLANES:
            points = torch.stack([x, y, torch.full_like(x, depth)], -1).reshape(1, -1, 3)
            rgb, sigma, _ = G.radiance_net.features(points, freq, phase, torch.tensor([[[0.0, 0.0, -1.0]]]))
            colour.append(rgb.reshape(FINE, FINE, 3).permute(2, 0, 1))
            density.append(texture_alpha(sigma).reshape(1, FINE, FINE))
    texels = cfg.lr_img_size
    return {
        "radiance_input_scale": scale,
        "texels": texels,
        "colour_above_nyquist": above_nyquist(torch.stack(colour), texels),
        "alpha_above_nyquist": above_nyquist(torch.stack(density), texels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(args.config, s) for s in SCALES]
    for row in rows:
        print(
            f"scale {row['radiance_input_scale']:.2f}: colour {100 * row['colour_above_nyquist']:.1f}% "
            f"alpha {100 * row['alpha_above_nyquist']:.1f}% of the energy above {row['texels'] // 2} cycles/box"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"config": args.config, "fine": FINE, "planes": PLANES, "identities": IDENTITIES, "rows": rows},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
