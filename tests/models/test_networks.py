"""What the release-named networks share: the release checkpoint's layout, full-size smoke, initialisation,
gradients, dtypes (CPU, tiny configs). Each network's own forward formulas are tested in its module's file
(``test_radiance.py``, ``test_manifold.py``, ``test_deformation.py``, ``test_superres.py``, ``test_smoother.py``,
``test_layers.py``).

The full-size key -> shape tables below are the release checkpoint's (``sshq512.pt``) ``radiance_net.``,
``sample_net.``, ``deform_net.``, ``sr_net.`` and ``smoother.`` keys, prefixes stripped, as read from that file when
this port was written (the file is not in this repository).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from aniportrait.models.deformation import DeformNet
from aniportrait.models.manifold import SampleNet
from aniportrait.models.radiance import RadianceNet
from aniportrait.models.smoother import LbsSmoother
from aniportrait.models.superres import StyleRRDBNet
from tests.models.network_helpers import FRONT_DIR, TINY_DEFORM, TINY_RADIANCE, TINY_SAMPLE, TINY_SMOOTHER, TINY_SR

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
