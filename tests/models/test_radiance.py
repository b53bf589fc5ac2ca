"""RadianceNet against a release-style reference forward: outputs, per-head sums and truncation (CPU, tiny config)."""

import pytest
import torch
import torch.nn.functional as F

from aniportrait.constants import WARP_SCALE
from aniportrait.models.radiance import COLOR_MODULATION_GAIN, RadianceNet
from tests.models.network_helpers import FRONT_DIR, TINY_RADIANCE, film_ref


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


def test_color_modulation_scales_each_colour_head_per_identity():
    """With colour modulation m = A z[:k] + b, item i renders as the unmodulated net whose colour head weights are
    W_k * (1 + m_ik): sigma and the feature are untouched; at A = b = 0 it is the unmodulated net."""
    torch.manual_seed(0)
    plain = RadianceNet(**TINY_RADIANCE)
    modulated = RadianceNet(**TINY_RADIANCE, color_modulation_dim=5)
    missing, unexpected = modulated.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["color_modulation.bias", "color_modulation.weight"] and not unexpected
    z, points = torch.randn(3, 8), torch.rand(3, 40, 3) * 0.4 - 0.2
    freq, phase = modulated.mapping(z)
    assert freq.shape == (3, 9 * 16 + 7 * 16) and phase.shape == (3, 9 * 16)
    for a, b in zip(
        modulated.features(points, freq, phase, FRONT_DIR), plain.features(points, *plain.mapping(z), FRONT_DIR)
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)

    with torch.no_grad():
        modulated.color_modulation.weight.normal_(0, 1 / COLOR_MODULATION_GAIN)
        modulated.color_modulation.bias.normal_(0, 0.3 / COLOR_MODULATION_GAIN)
    freq, phase = modulated.mapping(z)
    scale = 1 + COLOR_MODULATION_GAIN * modulated.color_modulation(z[:, :5])  # only the first 5 entries drive it
    z_other = z.clone()
    z_other[:, 5:] = torch.randn(3, 3)
    torch.testing.assert_close(modulated.mapping(z_other)[0][:, 9 * 16 :], freq[:, 9 * 16 :])
    rgb, sigma, feature = modulated.features(points, freq, phase, FRONT_DIR)
    for i in range(3):
        item = RadianceNet(**TINY_RADIANCE)
        item.load_state_dict(plain.state_dict())
        with torch.no_grad():
            for k, head in enumerate(item.output_color):
                head.weight.mul_(scale[i, k * 16 : (k + 1) * 16])
        ref_rgb, ref_sigma, ref_feature, _ = radiance_ref(
            item, points[i : i + 1], freq[i : i + 1, : 9 * 16], phase[i : i + 1], FRONT_DIR.expand(1, 40, 3)
        )
        torch.testing.assert_close(rgb[i : i + 1], ref_rgb, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(sigma[i : i + 1], ref_sigma, atol=1e-4, rtol=1e-4)  # another summation order
        torch.testing.assert_close(feature[i : i + 1], ref_feature, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(rgb, plain.features(points, *plain.mapping(z), FRONT_DIR)[0], atol=1e-3)

    # Gradients reach the modulation through the colour only.
    rgb.sum().backward()
    assert modulated.color_modulation.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="color_modulation_dim"):
        RadianceNet(**TINY_RADIANCE, color_modulation_dim=9)
