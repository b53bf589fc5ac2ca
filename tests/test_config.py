"""Generator configs: the small model's radiance field fits its textures (little energy above their Nyquist limit)."""

import dataclasses

import torch

from aniportrait import constants as K
from aniportrait.config import SMALL, SSHQ512
from aniportrait.models.radiance import RadianceNet


def energy_above_nyquist(config, fine=96, identities=3, seed=0) -> float:
    """Fraction of the colour spectrum (mean removed) of a fresh RadianceNet over the texture box, on the z = 0 plane,
    above the textures' Nyquist frequency (lr_img_size / 2 cycles per box side)."""
    torch.manual_seed(seed)
    net = RadianceNet(
        hidden_dim=config.hidden_dim,
        z_dim=config.z_dim,
        feature_dim=config.feature_dim,
        mapping_hidden_dim=config.mapping_hidden_dim,
        input_scale=config.radiance_input_scale,
    )
    side = torch.linspace(-K.SAMPLE_SCALE, K.SAMPLE_SCALE, fine)
    y, x = torch.meshgrid(side + K.SAMPLE_CENTER, side, indexing="ij")
    points = torch.stack([x, y, torch.zeros_like(x)], -1).reshape(1, -1, 3)
    with torch.no_grad():
        freq, phase = net.mapping(torch.randn(identities, config.z_dim, generator=torch.Generator().manual_seed(1)))
        rgb, _, _ = net.features(points.expand(identities, -1, -1), freq, phase, torch.tensor([[[0.0, 0.0, -1.0]]]))
    field = rgb.reshape(identities, fine, fine, 3).permute(0, 3, 1, 2).double()
    power = torch.fft.fft2(field - field.mean(dim=(-2, -1), keepdim=True)).abs().square()
    k = torch.fft.fftfreq(fine, d=1.0 / fine).abs()
    above = (k[:, None] > config.lr_img_size / 2) | (k[None, :] > config.lr_img_size / 2)
    return float(power[..., above].sum() / power.sum())


def test_small_radiance_field_stays_below_its_texture_nyquist_limit():
    assert SMALL.radiance_input_scale < 1 and SSHQ512.radiance_input_scale == 1.0
    small = energy_above_nyquist(SMALL)
    release_scale = energy_above_nyquist(dataclasses.replace(SMALL, radiance_input_scale=1.0))
    assert small < 0.1, small
    assert release_scale > 1.5 * small, (release_scale, small)
