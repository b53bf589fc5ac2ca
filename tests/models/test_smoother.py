"""LbsSmoother: constant fields, weight normalisation, and the conv -> upsample -> conv order (CPU, tiny config)."""

import torch
import torch.nn.functional as F

from aniportrait.models.smoother import LbsSmoother
from tests.models.network_helpers import TINY_SMOOTHER


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
