"""What the tests of the release-named networks share: tiny configurations built by the same code as the full-size
networks, the frontal view direction, and the FiLM formula written out independently."""

import torch

# Tiny configurations built by the same code.
TINY_RADIANCE = {"hidden_dim": 16, "z_dim": 8, "feature_dim": 4, "mapping_hidden_dim": 16}
TINY_SAMPLE = {"hidden_dim": 16}
TINY_DEFORM = {"hidden_dim": 16, "z_dim": 12, "mapping_hidden_dim": 16}
TINY_SR = {
    "in_nc": 6,
    "out_nc": 4,
    "w_dim": 8,
    "nf": 8,
    "nb": 1,
    "gc": 4,
    "up_channels": (8, 4),
    "mapping_hidden_dim": 16,
}
TINY_SMOOTHER = {"channels": 4, "depth_kernel": 3, "spatial_kernel": 5}
FRONT_DIR = torch.tensor([[[0.0, 0.0, -1.0]]])


def film_ref(x, weight, bias, freq, phase):
    """sin(f * (W x + b) + phi) with per-sample f, phi broadcast over the points."""
    return torch.sin(freq[:, None] * (x @ weight.t() + bias) + phase[:, None])
