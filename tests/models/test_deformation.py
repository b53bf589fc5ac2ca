"""DeformNet against a release-style reference: zero init, the forward formula, units, and the neck and depth gates
(CPU, tiny config)."""

import pytest
import torch

from aniportrait.constants import WARP_SCALE
from aniportrait.models.deformation import DeformNet, neck_gate_weight
from tests.models.network_helpers import TINY_DEFORM, film_ref


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


def randomize_(module, std=0.3):
    """Overwrite every parameter with noise (to make zero-initialised layers contribute)."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)


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


def test_a_sloped_neck_gate_compares_the_height_less_slope_times_the_side_offset():
    """With a slope, the gate's height is y - slope * |x|: a point beside the neck at the jaw's height is gated
    out, the same height on the midline is not; slope 0 is the level gate."""
    low, high, slope = -0.16, -0.125, 0.5
    torch.manual_seed(0)
    plain = DeformNet(**TINY_DEFORM)
    randomize_(plain.final_layer, std=0.1)
    level, sloped = (
        DeformNet(**TINY_DEFORM, neck_gate=(low, high)),
        DeformNet(**TINY_DEFORM, neck_gate=(low, high, slope)),
    )
    for net in (level, sloped):
        net.load_state_dict(plain.state_dict())
    assert level.neck_gate == (low, high, 0.0)
    freq, phase = plain.mapping(torch.randn(1, 12))
    x = torch.rand(1, 200, 3) * 0.6 - 0.3
    x[0, :4] = torch.tensor([[0.0, -0.12, 0.0], [0.12, -0.12, 0.0], [-0.12, -0.12, 0.0], [0.2, 0.0, 0.0]])
    _, d_plain = plain(x, freq, phase)
    _, d_level = level(x, freq, phase)
    _, d_sloped = sloped(x, freq, phase)
    assert torch.equal(d_level[0, :3], d_plain[0, :3])  # all three at -0.12, above the level gate
    assert torch.equal(d_sloped[0, 0], d_plain[0, 0])  # the midline: unchanged
    assert torch.equal(d_sloped[0, 1:3], torch.zeros_like(d_sloped[0, 1:3]))  # 0.12 to either side: gated out
    assert torch.equal(d_sloped[0, 3], d_plain[0, 3])  # the side of the head, far above the gate
    height = x[..., 1:2] - slope * x[..., 0:1].abs()
    torch.testing.assert_close(d_sloped, d_plain * neck_gate_weight(height, low, high))
    with pytest.raises(ValueError, match="low < high"):
        DeformNet(**TINY_DEFORM, neck_gate=(low, high, slope, 1.0))


def test_a_depth_gate_keeps_the_back_and_sides_of_the_head_still():
    """With a depth gate, d is the ungated net's d times a smoothstep of the depth z: 0 behind ``low`` (the back and
    the sides of the head), unchanged in front of ``high`` (the face), multiplied with the neck gate where both are
    set; gradients reach the net through the face's points only."""
    low, high = -0.04, -0.025
    torch.manual_seed(0)
    plain = DeformNet(**TINY_DEFORM)
    randomize_(plain.final_layer, std=0.1)
    depth = DeformNet(**TINY_DEFORM, depth_gate=(low, high))
    both = DeformNet(**TINY_DEFORM, neck_gate=(-0.16, -0.125, 0.5), depth_gate=(low, high))
    for net in (depth, both):
        net.load_state_dict(plain.state_dict())
    assert plain.depth_gate is None and depth.depth_gate == (low, high)
    freq, phase = plain.mapping(torch.randn(1, 12))
    x = torch.rand(1, 201, 3) * 0.3 - 0.15
    x[0, :3] = torch.tensor([[0.0, 0.0, 0.03], [0.0, 0.05, -0.1], [0.08, 0.0, -0.05]])  # mouth, crown's back, side
    _, d_plain = plain(x, freq, phase)
    _, d_depth = depth(x, freq, phase)
    _, d_both = both(x, freq, phase)
    assert torch.equal(d_depth[0, 0], d_plain[0, 0]) and d_plain[0, 0].abs().max() > 1e-3
    assert torch.equal(d_depth[0, 1:3], torch.zeros_like(d_depth[0, 1:3]))
    torch.testing.assert_close(d_depth, d_plain * neck_gate_weight(x[..., 2:3], low, high))
    height = x[..., 1:2] - 0.5 * x[..., 0:1].abs()
    torch.testing.assert_close(d_both, d_depth * neck_gate_weight(height, -0.16, -0.125))
    behind = x.clone()
    behind[..., 2] = low - 0.01
    depth(behind, freq, phase)[1].square().sum().backward()
    assert depth.final_layer.weight.grad is None or depth.final_layer.weight.grad.abs().max() == 0
    for bad in ((high, low), (low, low), (low, high, 0.5)):
        with pytest.raises(ValueError, match="low < high"):
            DeformNet(**TINY_DEFORM, depth_gate=bad)
