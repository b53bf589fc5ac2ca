"""ModConv2d against a per-sample loop, and StyleRRDBNet's forward, style sharing and truncation (CPU, tiny
config)."""

import pytest
import torch
import torch.nn.functional as F

from aniportrait.models.superres import ModConv2d, StyleRRDBNet
from tests.models.network_helpers import TINY_SR


def mod_conv_ref(conv, x, style):
    """One F.conv2d per image with its own modulated, demodulated weight (style row per image)."""
    outs = []
    for n in range(x.shape[0]):
        w = conv.weight * style[n][None, :, None, None]
        w = w / torch.sqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        outs.append(F.conv2d(x[n : n + 1], w, conv.bias, padding=conv.weight.shape[-1] // 2))
    return torch.cat(outs)


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
