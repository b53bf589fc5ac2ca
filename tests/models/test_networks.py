"""Tests of the generator networks: checkpoint layout, forward formulas, units, gradients, dtypes (CPU, tiny configs).

The full-size key -> shape tables below are the release checkpoint's (``sshq512.pt``) ``radiance_net.``,
``sample_net.``, ``deform_net.``, ``sr_net.`` and ``smoother.`` keys, prefixes stripped, as read from that file when
this port was written (the file is not in this repository).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from aniportrait.constants import WARP_SCALE
from aniportrait.models.deformation import DeformNet, neck_gate_weight
from aniportrait.models.layers import FiLMLayer
from aniportrait.models.manifold import SampleNet
from aniportrait.models.radiance import RadianceNet
from aniportrait.models.smoother import LbsSmoother
from aniportrait.models.superres import ModConv2d, StyleRRDBNet

# ---------------------------------------------------------------------------------------------------------------------
# Expected checkpoint layout (the release's sshq512.pt)

RADIANCE_NET_KEYS = {
    "network.0.layer.weight": (256, 3),
    "network.1.layer.weight": (256, 256),
    "network.2.layer.weight": (256, 256),
    "network.3.layer.weight": (256, 256),
    "network.4.layer.weight": (256, 256),
    "network.5.layer.weight": (256, 256),
    "network.6.layer.weight": (256, 256),
    "network.7.layer.weight": (256, 256),
    "network.0.layer.bias": (256,),
    "network.1.layer.bias": (256,),
    "network.2.layer.bias": (256,),
    "network.3.layer.bias": (256,),
    "network.4.layer.bias": (256,),
    "network.5.layer.bias": (256,),
    "network.6.layer.bias": (256,),
    "network.7.layer.bias": (256,),
    "output_sigma.0.weight": (1, 256),
    "output_sigma.1.weight": (1, 256),
    "output_sigma.2.weight": (1, 256),
    "output_sigma.3.weight": (1, 256),
    "output_sigma.4.weight": (1, 256),
    "output_sigma.5.weight": (1, 256),
    "output_sigma.6.weight": (1, 256),
    "output_sigma.0.bias": (1,),
    "output_sigma.1.bias": (1,),
    "output_sigma.2.bias": (1,),
    "output_sigma.3.bias": (1,),
    "output_sigma.4.bias": (1,),
    "output_sigma.5.bias": (1,),
    "output_sigma.6.bias": (1,),
    "color_layer_sine.0.layer.weight": (256, 259),
    "color_layer_sine.0.layer.bias": (256,),
    "output_color.0.weight": (3, 256),
    "output_color.1.weight": (3, 256),
    "output_color.2.weight": (3, 256),
    "output_color.3.weight": (3, 256),
    "output_color.4.weight": (3, 256),
    "output_color.5.weight": (3, 256),
    "output_color.6.weight": (3, 256),
    "output_color.0.bias": (3,),
    "output_color.1.bias": (3,),
    "output_color.2.bias": (3,),
    "output_color.3.bias": (3,),
    "output_color.4.bias": (3,),
    "output_color.5.bias": (3,),
    "output_color.6.bias": (3,),
    "output_feature.0.weight": (32, 256),
    "output_feature.1.weight": (32, 256),
    "output_feature.2.weight": (32, 256),
    "output_feature.3.weight": (32, 256),
    "output_feature.4.weight": (32, 256),
    "output_feature.5.weight": (32, 256),
    "output_feature.6.weight": (32, 256),
    "output_feature.0.bias": (32,),
    "output_feature.1.bias": (32,),
    "output_feature.2.bias": (32,),
    "output_feature.3.bias": (32,),
    "output_feature.4.bias": (32,),
    "output_feature.5.bias": (32,),
    "output_feature.6.bias": (32,),
    "mapping_network.network.0.weight": (256, 160),
    "mapping_network.network.0.bias": (256,),
    "mapping_network.network.2.weight": (256, 256),
    "mapping_network.network.2.bias": (256,),
    "mapping_network.network.4.weight": (256, 256),
    "mapping_network.network.4.bias": (256,),
    "mapping_network.network.6.weight": (4608, 256),
    "mapping_network.network.6.bias": (4608,),
}

SAMPLE_NET_KEYS = {
    "network.0.weight": (128, 3),
    "network.0.bias": (128,),
    "network.2.weight": (128, 128),
    "network.2.bias": (128,),
    "network.4.weight": (128, 128),
    "network.4.bias": (128,),
    "output_layer.weight": (1, 128),
    "output_layer.bias": (1,),
}

DEFORM_NET_KEYS = {
    "network.0.layer.weight": (128, 7),
    "network.1.layer.weight": (128, 128),
    "network.2.layer.weight": (128, 128),
    "network.0.layer.bias": (128,),
    "network.1.layer.bias": (128,),
    "network.2.layer.bias": (128,),
    "final_layer.weight": (7, 128),
    "final_layer.bias": (7,),
    "mapping_network.network.0.weight": (128, 144),
    "mapping_network.network.2.weight": (128, 128),
    "mapping_network.network.4.weight": (128, 128),
    "mapping_network.network.0.bias": (128,),
    "mapping_network.network.2.bias": (128,),
    "mapping_network.network.4.bias": (128,),
    "mapping_network.network.6.weight": (768, 128),
    "mapping_network.network.6.bias": (768,),
}

SR_NET_KEYS = {
    "conv_first.weight": (64, 36, 3, 3),
    "conv_first.bias": (64,),
    "RRDB_trunk.0.RDB1.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.0.RDB1.conv1.bias": (32,),
    "RRDB_trunk.0.RDB1.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.0.RDB1.conv2.bias": (32,),
    "RRDB_trunk.0.RDB1.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.0.RDB1.conv3.bias": (32,),
    "RRDB_trunk.0.RDB1.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.0.RDB1.conv4.bias": (32,),
    "RRDB_trunk.0.RDB1.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.0.RDB1.conv5.bias": (64,),
    "RRDB_trunk.0.RDB2.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.0.RDB2.conv1.bias": (32,),
    "RRDB_trunk.0.RDB2.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.0.RDB2.conv2.bias": (32,),
    "RRDB_trunk.0.RDB2.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.0.RDB2.conv3.bias": (32,),
    "RRDB_trunk.0.RDB2.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.0.RDB2.conv4.bias": (32,),
    "RRDB_trunk.0.RDB2.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.0.RDB2.conv5.bias": (64,),
    "RRDB_trunk.0.RDB3.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.0.RDB3.conv1.bias": (32,),
    "RRDB_trunk.0.RDB3.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.0.RDB3.conv2.bias": (32,),
    "RRDB_trunk.0.RDB3.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.0.RDB3.conv3.bias": (32,),
    "RRDB_trunk.0.RDB3.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.0.RDB3.conv4.bias": (32,),
    "RRDB_trunk.0.RDB3.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.0.RDB3.conv5.bias": (64,),
    "RRDB_trunk.1.RDB1.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.1.RDB1.conv1.bias": (32,),
    "RRDB_trunk.1.RDB1.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.1.RDB1.conv2.bias": (32,),
    "RRDB_trunk.1.RDB1.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.1.RDB1.conv3.bias": (32,),
    "RRDB_trunk.1.RDB1.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.1.RDB1.conv4.bias": (32,),
    "RRDB_trunk.1.RDB1.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.1.RDB1.conv5.bias": (64,),
    "RRDB_trunk.1.RDB2.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.1.RDB2.conv1.bias": (32,),
    "RRDB_trunk.1.RDB2.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.1.RDB2.conv2.bias": (32,),
    "RRDB_trunk.1.RDB2.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.1.RDB2.conv3.bias": (32,),
    "RRDB_trunk.1.RDB2.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.1.RDB2.conv4.bias": (32,),
    "RRDB_trunk.1.RDB2.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.1.RDB2.conv5.bias": (64,),
    "RRDB_trunk.1.RDB3.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.1.RDB3.conv1.bias": (32,),
    "RRDB_trunk.1.RDB3.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.1.RDB3.conv2.bias": (32,),
    "RRDB_trunk.1.RDB3.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.1.RDB3.conv3.bias": (32,),
    "RRDB_trunk.1.RDB3.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.1.RDB3.conv4.bias": (32,),
    "RRDB_trunk.1.RDB3.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.1.RDB3.conv5.bias": (64,),
    "RRDB_trunk.2.RDB1.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.2.RDB1.conv1.bias": (32,),
    "RRDB_trunk.2.RDB1.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.2.RDB1.conv2.bias": (32,),
    "RRDB_trunk.2.RDB1.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.2.RDB1.conv3.bias": (32,),
    "RRDB_trunk.2.RDB1.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.2.RDB1.conv4.bias": (32,),
    "RRDB_trunk.2.RDB1.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.2.RDB1.conv5.bias": (64,),
    "RRDB_trunk.2.RDB2.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.2.RDB2.conv1.bias": (32,),
    "RRDB_trunk.2.RDB2.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.2.RDB2.conv2.bias": (32,),
    "RRDB_trunk.2.RDB2.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.2.RDB2.conv3.bias": (32,),
    "RRDB_trunk.2.RDB2.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.2.RDB2.conv4.bias": (32,),
    "RRDB_trunk.2.RDB2.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.2.RDB2.conv5.bias": (64,),
    "RRDB_trunk.2.RDB3.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.2.RDB3.conv1.bias": (32,),
    "RRDB_trunk.2.RDB3.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.2.RDB3.conv2.bias": (32,),
    "RRDB_trunk.2.RDB3.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.2.RDB3.conv3.bias": (32,),
    "RRDB_trunk.2.RDB3.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.2.RDB3.conv4.bias": (32,),
    "RRDB_trunk.2.RDB3.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.2.RDB3.conv5.bias": (64,),
    "RRDB_trunk.3.RDB1.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.3.RDB1.conv1.bias": (32,),
    "RRDB_trunk.3.RDB1.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.3.RDB1.conv2.bias": (32,),
    "RRDB_trunk.3.RDB1.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.3.RDB1.conv3.bias": (32,),
    "RRDB_trunk.3.RDB1.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.3.RDB1.conv4.bias": (32,),
    "RRDB_trunk.3.RDB1.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.3.RDB1.conv5.bias": (64,),
    "RRDB_trunk.3.RDB2.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.3.RDB2.conv1.bias": (32,),
    "RRDB_trunk.3.RDB2.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.3.RDB2.conv2.bias": (32,),
    "RRDB_trunk.3.RDB2.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.3.RDB2.conv3.bias": (32,),
    "RRDB_trunk.3.RDB2.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.3.RDB2.conv4.bias": (32,),
    "RRDB_trunk.3.RDB2.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.3.RDB2.conv5.bias": (64,),
    "RRDB_trunk.3.RDB3.conv1.weight": (32, 64, 3, 3),
    "RRDB_trunk.3.RDB3.conv1.bias": (32,),
    "RRDB_trunk.3.RDB3.conv2.weight": (32, 96, 3, 3),
    "RRDB_trunk.3.RDB3.conv2.bias": (32,),
    "RRDB_trunk.3.RDB3.conv3.weight": (32, 128, 3, 3),
    "RRDB_trunk.3.RDB3.conv3.bias": (32,),
    "RRDB_trunk.3.RDB3.conv4.weight": (32, 160, 3, 3),
    "RRDB_trunk.3.RDB3.conv4.bias": (32,),
    "RRDB_trunk.3.RDB3.conv5.weight": (64, 192, 3, 3),
    "RRDB_trunk.3.RDB3.conv5.bias": (64,),
    "trunk_conv.weight": (64, 64, 3, 3),
    "trunk_conv.bias": (64,),
    "upconvs.0.weight": (256, 64, 3, 3),
    "upconvs.0.bias": (256,),
    "upconvs.1.weight": (128, 64, 3, 3),
    "upconvs.1.bias": (128,),
    "HRconv.weight": (32, 32, 3, 3),
    "HRconv.bias": (32,),
    "conv_last.weight": (4, 32, 1, 1),
    "conv_last.bias": (4,),
    "mapping_network.network.0.weight": (256, 160),
    "mapping_network.network.2.weight": (256, 256),
    "mapping_network.network.4.weight": (256, 256),
    "mapping_network.network.0.bias": (256,),
    "mapping_network.network.2.bias": (256,),
    "mapping_network.network.4.bias": (256,),
    "mapping_network.network.6.weight": (192, 256),
    "mapping_network.network.6.bias": (192,),
}

SMOOTHER_KEYS = {
    "conv_block1.weight": (16, 1, 5, 9, 9),
    "conv_block2.weight": (16, 1, 5, 9, 9),
}

# Parameter counts per module in the release's sshq512.pt.
EXPECTED_LAYOUT = {
    "radiance_net": (RadianceNet, RADIANCE_NET_KEYS, 1_949_948),
    "sample_net": (SampleNet, SAMPLE_NET_KEYS, 33_665),
    "deform_net": (DeformNet, DEFORM_NET_KEYS, 185_607),
    "sr_net": (StyleRRDBNet, SR_NET_KEYS, 3_388_516),
    "smoother": (LbsSmoother, SMOOTHER_KEYS, 12_960),
}

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

SAMPLE_NET_INPUT_SHIFT = torch.tensor([0.0, 0.0, 1.5])  # minus SAMPLE_NET_CENTER, written out independently
FRONT_DIR = torch.tensor([[[0.0, 0.0, -1.0]]])


# ---------------------------------------------------------------------------------------------------------------------
# Straightforward references (release-style loops and concatenations)


def film_ref(x, weight, bias, freq, phase):
    """sin(f * (W x + b) + phi) with per-sample f, phi broadcast over the points."""
    return torch.sin(freq[:, None] * (x @ weight.t() + bias) + phase[:, None])


def radiance_ref(net, points, freq, phase, view_dir):
    """Release-style forward: explicit 15 f + 30, warp, concat (direction first), per-head sums; also the hiddens."""
    hidden = net.hidden_dim
    freq = freq * 15 + 30
    x = points * WARP_SCALE
    sigma = rgb = feature = 0
    hiddens = []
    num_layers = len(net.network)
    for k, film in enumerate(net.network):
        sl = slice(k * hidden, (k + 1) * hidden)
        x = film_ref(x, film.layer.weight, film.layer.bias, freq[:, sl], phase[:, sl])
        hiddens.append(x)
        if k == 0:
            continue
        color_in = x
        if k == num_layers - 1:
            sl = slice(num_layers * hidden, (num_layers + 1) * hidden)
            color = net.color_layer_sine[0].layer
            color_in = film_ref(torch.cat([view_dir, x], -1), color.weight, color.bias, freq[:, sl], phase[:, sl])
            hiddens.append(color_in)
        sigma = sigma + net.output_sigma[k - 1](x)
        rgb = rgb + net.output_color[k - 1](color_in)
        feature = feature + net.output_feature[k - 1](x)
    return torch.sigmoid(rgb), sigma, feature, hiddens


def deform_ref(net, x_can, freq, phase):
    """Release-style DeformNet: 7-channel input [w(x), 0, 0, 0, 0], full final layer, first 3 outputs."""
    hidden = net.hidden_dim
    freq = freq * 15 + 30
    coords = x_can.reshape(x_can.shape[0], -1, 3) * WARP_SCALE
    x = torch.cat([coords, torch.zeros(*coords.shape[:-1], 4, dtype=coords.dtype)], -1)
    for k, film in enumerate(net.network):
        sl = slice(k * hidden, (k + 1) * hidden)
        x = film_ref(x, film.layer.weight, film.layer.bias, freq[:, sl], phase[:, sl])
    d = net.final_layer(x)[..., :3]
    return (coords + d).reshape(x_can.shape), d.reshape(x_can.shape)


def mod_conv_ref(conv, x, style):
    """One F.conv2d per image with its own modulated, demodulated weight (style row per image)."""
    outs = []
    for n in range(x.shape[0]):
        w = conv.weight * style[n][None, :, None, None]
        w = w / torch.sqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        outs.append(F.conv2d(x[n : n + 1], w, conv.bias, padding=conv.weight.shape[-1] // 2))
    return torch.cat(outs)


def randomize_(module, std=0.3):
    """Overwrite every parameter with noise (to make zero-initialised layers contribute)."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)


# ---------------------------------------------------------------------------------------------------------------------
# Tiny-module runners shared by the gradient and dtype tests: each returns (module, closure -> tuple of outputs)


def run_radiance(dtype=torch.float32):
    net = RadianceNet(**TINY_RADIANCE).to(dtype)
    z = torch.randn(2, 8, dtype=dtype)
    points = torch.rand(2, 30, 3, dtype=dtype) * 0.4 - 0.2
    dirs = F.normalize(torch.randn(2, 30, 3, dtype=dtype), dim=-1)
    return net, lambda: net.features(points, *net.mapping(z), dirs)


def run_sample(dtype=torch.float32):
    net = SampleNet(**TINY_SAMPLE).to(dtype)
    x = torch.randn(2, 30, 3, dtype=dtype)
    return net, lambda: (net(x),)


def run_deform(dtype=torch.float32):
    net = DeformNet(**TINY_DEFORM).to(dtype)
    with torch.no_grad():
        net.final_layer.weight.normal_(0.0, 0.1)
        net.final_layer.bias.normal_(0.0, 0.1)
    z = torch.randn(2, 12, dtype=dtype)
    x = torch.rand(2, 30, 3, dtype=dtype) * 0.4 - 0.2
    return net, lambda: net(x, *net.mapping(z))


def run_sr(dtype=torch.float32):
    net = StyleRRDBNet(**TINY_SR).to(dtype)
    z = torch.randn(2, 8, dtype=dtype)
    x = torch.randn(6, 6, 5, 5, dtype=dtype)
    return net, lambda: (net(x, net.mapping(z)),)


def run_smoother(dtype=torch.float32):
    net = LbsSmoother(**TINY_SMOOTHER).to(dtype)
    with torch.no_grad():
        net.conv_block1.weight.uniform_(0.5, 1.5)
        net.conv_block2.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 3, 5, 6, dtype=dtype)
    return net, lambda: (net(x),)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoint layout


@pytest.mark.parametrize("name", list(EXPECTED_LAYOUT))
def test_state_dict_matches_release(name):
    cls, expected, num_params = EXPECTED_LAYOUT[name]
    module = cls()
    state = module.state_dict()
    assert set(state) == set(expected), f"missing {set(expected) - set(state)}, extra {set(state) - set(expected)}"
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    assert shapes == expected
    assert all(value.dtype == torch.float32 for value in state.values())
    # Every state entry is a parameter (no buffers), and the count is the release's.
    assert set(dict(module.named_parameters())) == set(state)
    assert sum(p.numel() for p in module.parameters()) == num_params


def test_full_size_tables_total():
    # 234 of the checkpoint's 244 keys; the rest are renderer.smooth_layer.* (2) and renderer.smpl_model.* (8).
    assert sum(len(table) for _, table, _ in EXPECTED_LAYOUT.values()) == 234
    assert sum(count for _, _, count in EXPECTED_LAYOUT.values()) == 5_570_696


def test_full_size_forward_smoke():
    radiance, sample, deform, sr, smoother = RadianceNet(), SampleNet(), DeformNet(), StyleRRDBNet(), LbsSmoother()
    with torch.no_grad():
        freq, phase = radiance.mapping(torch.randn(2, 160))
        assert freq.shape == phase.shape == (2, 2304)
        rgb, sigma, feature = radiance.features(torch.rand(2, 7, 3) * 0.2, freq, phase, FRONT_DIR)
        assert (rgb.shape, sigma.shape, feature.shape) == ((2, 7, 3), (2, 7, 1), (2, 7, 32))
        assert sample(torch.randn(2, 7, 3)).shape == (2, 7, 1)
        d_freq, d_phase = deform.mapping(torch.randn(2, 144))
        assert d_freq.shape == d_phase.shape == (2, 384)
        new_coords, d = deform(torch.rand(2, 7, 3), d_freq, d_phase)
        assert new_coords.shape == d.shape == (2, 7, 3)
        z = torch.randn(2, 160)
        assert sr.mapping_w(z).shape == (2, 256)
        style = sr.mapping(z)
        assert style.shape == (2, 192)
        assert sr(torch.randn(4, 36, 4, 4), style).shape == (4, 4, 16, 16)
        assert smoother(torch.randn(1, 16, 3, 5, 5)).shape == (1, 16, 6, 10, 10)


def test_init_is_deterministic_and_follows_release():
    torch.manual_seed(1)
    a = RadianceNet(**TINY_RADIANCE).state_dict()
    torch.manual_seed(1)
    b = RadianceNet(**TINY_RADIANCE).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    net = RadianceNet()
    # pi-GAN first layer U(+-1/in), SIREN frequency init U(+-sqrt(6/in)/25) on the FiLM layers and the heads.
    assert net.network[0].layer.weight.abs().max() <= 1 / 3
    assert net.network[3].layer.weight.abs().max() <= math.sqrt(6 / 256) / 25
    assert net.color_layer_sine[0].layer.weight.abs().max() <= math.sqrt(6 / 259) / 25
    assert net.output_color[2].weight.abs().max() <= math.sqrt(6 / 256) / 25
    # Kaiming (leaky 0.2) mapping, last layer scaled by 0.25: std about 0.25 * sqrt(2 / 1.04 / 256).
    last_std = net.mapping_network.network[6].weight.std().item()
    assert last_std == pytest.approx(0.25 * math.sqrt(2 / 1.04 / 256), rel=0.05)
    assert torch.equal(DeformNet().final_layer.weight, torch.zeros(7, 128))
    smoother = LbsSmoother()
    assert torch.equal(smoother.conv_block1.weight, torch.full((16, 1, 5, 9, 9), 1 / 405))


# ---------------------------------------------------------------------------------------------------------------------
# FiLM and RadianceNet


def test_film_layer_matches_formula():
    layer = FiLMLayer(7, 16)
    x = torch.randn(2, 11, 7)
    freq, phase = torch.randn(2, 16) * 15 + 30, torch.randn(2, 16)
    w, b = layer.layer.weight, layer.layer.bias
    torch.testing.assert_close(layer(x, freq, phase), film_ref(x, w, b, freq, phase))
    # Leading channels: the logical input is cat([lead, x]).
    lead = torch.randn(2, 11, 3)
    torch.testing.assert_close(
        layer(x[..., 3:], freq, phase, lead=lead), film_ref(torch.cat([lead, x[..., 3:]], -1), w, b, freq, phase)
    )
    # A broadcast lead equals the expanded one.
    torch.testing.assert_close(
        layer(x[..., 3:], freq, phase, lead=lead[:, :1]),
        layer(x[..., 3:], freq, phase, lead=lead[:, :1].expand(-1, 11, -1)),
    )
    # Missing trailing channels are zeros.
    padded = torch.cat([x[..., :3], torch.zeros(2, 11, 4)], -1)
    torch.testing.assert_close(layer(x[..., :3], freq, phase), film_ref(padded, w, b, freq, phase))
    with pytest.raises(ValueError):
        layer(torch.randn(2, 11, 8), freq, phase)


def test_radiance_net_matches_reference():
    net = RadianceNet(**TINY_RADIANCE)
    freq, phase = net.mapping(torch.randn(3, 8))
    assert freq.shape == phase.shape == (3, 9 * 16)
    points = torch.rand(3, 40, 3) * 0.4 - 0.2
    dirs = FRONT_DIR.expand(3, 40, 3)
    rgb, sigma, feature = net.features(points, freq, phase, FRONT_DIR)
    ref_rgb, ref_sigma, ref_feature, _ = radiance_ref(net, points, freq, phase, dirs)
    torch.testing.assert_close(rgb, ref_rgb)
    torch.testing.assert_close(sigma, ref_sigma)
    torch.testing.assert_close(feature, ref_feature)
    assert ((rgb > 0) & (rgb < 1)).all()
    # Extra leading point dimensions are kept.
    rgb4, sigma4, feature4 = net(points.reshape(3, 8, 5, 3), freq, phase, dirs)
    assert (rgb4.shape, sigma4.shape, feature4.shape) == ((3, 8, 5, 3), (3, 8, 5, 1), (3, 8, 5, 4))
    torch.testing.assert_close(sigma4.reshape(3, 40, 1), sigma)


@pytest.mark.parametrize("head", [0, 3, 6])
def test_radiance_net_heads_sum(head):
    net = RadianceNet(**TINY_RADIANCE)
    with torch.no_grad():
        for k in range(7):
            if k != head:
                for lin in (net.output_sigma[k], net.output_color[k], net.output_feature[k]):
                    lin.weight.zero_()
                    lin.bias.zero_()
    freq, phase = net.mapping(torch.randn(2, 8))
    points = torch.rand(2, 25, 3) * 0.4 - 0.2
    dirs = F.normalize(torch.randn(2, 25, 3), dim=-1)
    rgb, sigma, feature = net.features(points, freq, phase, dirs)
    *_, hiddens = radiance_ref(net, points, freq, phase, dirs)
    h = hiddens[head + 1]  # head k reads layer k + 1
    color_in = hiddens[-1] if head == 6 else h  # the last rgb head reads the colour FiLM layer
    torch.testing.assert_close(sigma, net.output_sigma[head](h))
    torch.testing.assert_close(feature, net.output_feature[head](h))
    torch.testing.assert_close(rgb, torch.sigmoid(net.output_color[head](color_in)))


def test_radiance_truncation():
    net = RadianceNet(**TINY_RADIANCE)
    z_bank = torch.randn(50, 8)
    avg = net.average_mapping(z_bank)
    freq_all, phase_all = net.mapping(z_bank)
    torch.testing.assert_close(avg[0], freq_all.mean(0, keepdim=True))
    torch.testing.assert_close(avg[1], phase_all.mean(0, keepdim=True))
    assert avg[0].shape == (1, 144) and not avg[0].requires_grad
    freq, phase = net.mapping(torch.randn(2, 8))
    freq_t, phase_t = net.truncate(freq, phase, avg, 0.7)
    torch.testing.assert_close(freq_t, avg[0] * 0.3 + freq * 0.7)
    torch.testing.assert_close(phase_t, avg[1] * 0.3 + phase * 0.7)
    torch.testing.assert_close(net.truncate(freq, phase, avg, 1.0)[0], freq)
    torch.testing.assert_close(net.truncate(freq, phase, avg, 0.0)[1], avg[1].expand(2, -1))


# ---------------------------------------------------------------------------------------------------------------------
# SampleNet and DeformNet


def test_sample_net_units():
    net = SampleNet(**TINY_SAMPLE)
    x = torch.randn(2, 9, 3)
    # forward takes once-warped points: the MLP sees w(x) + (0, 0, 1.5).
    torch.testing.assert_close(net(x), net.mlp(x * WARP_SCALE + SAMPLE_NET_INPUT_SHIFT))
    # from_canonical: the manifold-SR call site, the MLP sees w(w(p)) + (0, 0, 1.5).
    p = torch.rand(4, 5, 6, 3) * 0.4 - 0.2
    torch.testing.assert_close(net.from_canonical(p), net.mlp(p * WARP_SCALE * WARP_SCALE + SAMPLE_NET_INPUT_SHIFT))
    assert net.from_canonical(p).shape == (4, 5, 6, 1)


def test_deform_net_zero_init():
    net = DeformNet(**TINY_DEFORM)
    x = torch.rand(2, 33, 3) * 0.4 - 0.2
    new_coords, d = net(x, *net.mapping(torch.randn(2, 12)))
    assert torch.equal(d, torch.zeros_like(x))
    assert torch.equal(new_coords, x * WARP_SCALE)


def test_deform_net_matches_reference():
    net = DeformNet(**TINY_DEFORM)
    randomize_(net.final_layer, std=0.1)
    freq, phase = net.mapping(torch.randn(2, 12))
    assert freq.shape == phase.shape == (2, 48)
    x = torch.rand(2, 4, 8, 3) * 0.4 - 0.2
    new_coords, d = net(x, freq, phase)
    ref_new, ref_d = deform_ref(net, x, freq, phase)
    assert new_coords.shape == d.shape == x.shape
    torch.testing.assert_close(d, ref_d)
    torch.testing.assert_close(new_coords, ref_new)
    # d is in warped units: new_coords - w(x) is d itself.
    torch.testing.assert_close(new_coords - x * WARP_SCALE, d)


def test_deform_net_neck_gate_keeps_the_torso_still():
    """With a neck gate, d is the ungated net's d times a smoothstep of the height: 0 below, unchanged above."""
    low, high = -0.16, -0.125
    torch.manual_seed(0)
    plain = DeformNet(**TINY_DEFORM)
    randomize_(plain.final_layer, std=0.1)
    gated = DeformNet(**TINY_DEFORM, neck_gate=(low, high))
    gated.load_state_dict(plain.state_dict())
    freq, phase = plain.mapping(torch.randn(2, 12))
    x = torch.rand(2, 300, 3) * 0.6 - 0.3
    x[:, :3, 1] = torch.tensor([low - 0.01, low, high])  # exact ends of the ramp
    _, d_plain = plain(x, freq, phase)
    new_coords, d = gated(x, freq, phase)
    y = x[..., 1:2]
    below, above = (y <= low).expand_as(d), (y >= high).expand_as(d)
    assert below.any() and above.any() and d_plain[below].abs().min() > 0
    assert torch.equal(d[below], torch.zeros_like(d[below]))
    assert torch.equal(d[above], d_plain[above])
    ramp = ((y > low) & (y < high)).expand_as(d)
    weight = d[ramp] / d_plain[ramp]
    assert ((weight > 0) & (weight < 1)).all()
    torch.testing.assert_close(new_coords, x * WARP_SCALE + d)
    # The gate is C1: half weight at the ramp's middle, zero slope at both ends.
    mid = torch.tensor([(low + high) / 2, low + 1e-4, high - 1e-4])
    w = neck_gate_weight(mid, low, high)
    assert abs(float(w[0]) - 0.5) < 1e-6 and float(w[1]) < 1e-4 and float(w[2]) > 1 - 1e-4  # 3 t^2 near the ends
    # The gate passes gradients to the net above the neck and none below it.
    x.requires_grad_(False)
    loss = gated(x, freq, phase)[1].square().sum()
    loss.backward()
    assert gated.final_layer.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="low < high"):
        DeformNet(**TINY_DEFORM, neck_gate=(high, low))


# ---------------------------------------------------------------------------------------------------------------------
# ModConv2d and StyleRRDBNet


@pytest.mark.parametrize("num_styles", [6, 2, 1], ids=["S6-grouped", "S2-shared-per-item", "S1-shared"])
@pytest.mark.parametrize("kernel_size", [3, 1])
def test_mod_conv_matches_per_sample_loop(num_styles, kernel_size):
    conv = ModConv2d(5, 7, kernel_size)
    x = torch.randn(6, 5, 9, 8)
    style = torch.randn(num_styles, 5)
    out = conv(x, style)
    assert out.shape == (6, 7, 9, 8)
    torch.testing.assert_close(out, mod_conv_ref(conv, x, style.repeat_interleave(6 // num_styles, 0)))


def test_mod_conv_demodulated_rows_have_unit_norm():
    conv = ModConv2d(5, 7, 3)
    weight = conv.modulated_weight(torch.randn(4, 5) * 3)
    assert weight.shape == (4, 7, 5, 3, 3)
    norms = weight.reshape(4, 7, -1).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(4, 7))
    with pytest.raises(ValueError):
        conv(torch.randn(5, 5, 4, 4), torch.randn(2, 5))


def test_style_rrdb_net_forward_and_style_sharing():
    net = StyleRRDBNet(**TINY_SR)
    assert net.style_dim == 8 + 8 + 4 + 4
    style = net.mapping(torch.randn(2, 8))
    x = torch.randn(6, 6, 5, 5)
    out = net(x, style)
    assert out.shape == (6, 4, 20, 20) and torch.isfinite(out).all()
    # One style row per item equals the same row repeated for its 3 textures.
    torch.testing.assert_close(out, net(x, style.repeat_interleave(3, 0)))
    # With one item the cheap shared-weight path equals the grouped one.
    torch.testing.assert_close(net(x[:3], style[:1]), net(x[:3], style[:1].expand(3, -1)))


def test_style_rrdb_net_truncation():
    net = StyleRRDBNet(**TINY_SR)
    z_bank = torch.randn(40, 8)
    avg_style = net.average_style(z_bank)
    assert avg_style.shape == (1, net.style_dim)
    layers = net.mapping_network.network
    torch.testing.assert_close(avg_style, layers[-1](layers[:-1](z_bank).mean(0, keepdim=True)))
    style = net.mapping(torch.randn(3, 8))
    torch.testing.assert_close(net.truncate(style, avg_style, 0.7), avg_style + 0.7 * (style - avg_style))
    torch.testing.assert_close(net.truncate(style, avg_style, 1.0), style)


# ---------------------------------------------------------------------------------------------------------------------
# LbsSmoother


def test_lbs_smoother_keeps_constant_fields():
    net = LbsSmoother()
    with torch.no_grad():
        net.conv_block1.weight.uniform_(0.1, 1.0)  # any positive kernel, renormalised in forward
    values = torch.randn(16)
    x = values[None, :, None, None, None].expand(2, 16, 4, 6, 7).contiguous()
    out = net(x)
    assert out.shape == (2, 16, 8, 12, 14)
    torch.testing.assert_close(out, values[None, :, None, None, None].expand_as(out))


def test_lbs_smoother_weight_normalisation():
    net = LbsSmoother(**TINY_SMOOTHER)
    with torch.no_grad():
        net.conv_block1.weight.uniform_(0.1, 1.0)
        net.conv_block2.weight.uniform_(0.1, 1.0)
    x = torch.randn(1, 4, 3, 5, 6)
    out = net(x)
    with torch.no_grad():
        net.conv_block1.weight.mul_(3.7)
        net.conv_block2.weight.mul_(0.2)
    torch.testing.assert_close(net(x), out)


def test_lbs_smoother_order_conv_upsample_conv():
    # With delta kernels both convs are identities: the output is the trilinear x2 upsample (align_corners=False).
    net = LbsSmoother(**TINY_SMOOTHER)
    with torch.no_grad():
        for block in (net.conv_block1, net.conv_block2):
            block.weight.zero_()
            block.weight[:, :, 1, 2, 2] = 2.0
    x = torch.randn(2, 4, 3, 5, 6)
    expected = F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
    torch.testing.assert_close(net(x), expected)


# ---------------------------------------------------------------------------------------------------------------------
# Gradients, dtypes, no_grad

RUNNERS = {
    "radiance_net": run_radiance,
    "sample_net": run_sample,
    "deform_net": run_deform,
    "sr_net": run_sr,
    "smoother": run_smoother,
}
# Parameter slices the release never reads: DeformNet's 4 zero input channels and its 4 unused outputs.
UNUSED_SLICES = {
    ("deform_net", "network.0.layer.weight"): (slice(None), slice(3, None)),
    ("deform_net", "final_layer.weight"): (slice(3, None),),
    ("deform_net", "final_layer.bias"): (slice(3, None),),
}


@pytest.mark.parametrize("name", list(RUNNERS))
def test_gradients_reach_all_parameters(name):
    net, run = RUNNERS[name]()
    outputs = run()
    loss = sum((out * torch.randn_like(out)).sum() for out in outputs)
    loss.backward()
    for key, param in net.named_parameters():
        grad = param.grad
        assert grad is not None and torch.isfinite(grad).all(), key
        used = torch.ones_like(grad, dtype=torch.bool)
        unused = UNUSED_SLICES.get((name, key))
        if unused is not None:
            assert torch.equal(grad[unused], torch.zeros_like(grad[unused])), key
            used[unused] = False
        assert (grad[used] != 0).any(), key


@pytest.mark.parametrize("name", ["radiance_net", "sample_net", "deform_net", "sr_net", "smoother"])
def test_float64_and_no_grad(name):
    _, run = RUNNERS[name](torch.float64)
    outputs = run()
    with torch.no_grad():
        outputs_no_grad = run()
    for out, out_ng in zip(outputs, outputs_no_grad, strict=True):
        assert out.dtype == torch.float64 and torch.isfinite(out).all()
        assert out.requires_grad and not out_ng.requires_grad
        torch.testing.assert_close(out_ng, out, rtol=0, atol=1e-12)
