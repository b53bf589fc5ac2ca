"""SampleNet (the manifold network): the units of its input at both call sites (CPU, tiny config)."""

import torch

from aniportrait.constants import WARP_SCALE
from aniportrait.models.manifold import SampleNet
from tests.models.network_helpers import TINY_SAMPLE

SAMPLE_NET_INPUT_SHIFT = torch.tensor([0.0, 0.0, 1.5])  # minus SAMPLE_NET_CENTER, written out independently


def test_sample_net_units():
    net = SampleNet(**TINY_SAMPLE)
    x = torch.randn(2, 9, 3)
    # forward takes once-warped points: the MLP sees w(x) + (0, 0, 1.5).
    torch.testing.assert_close(net(x), net.mlp(x * WARP_SCALE + SAMPLE_NET_INPUT_SHIFT))
    # from_canonical: the manifold-SR call site, the MLP sees w(w(p)) + (0, 0, 1.5).
    p = torch.rand(4, 5, 6, 3) * 0.4 - 0.2
    torch.testing.assert_close(net.from_canonical(p), net.mlp(p * WARP_SCALE * WARP_SCALE + SAMPLE_NET_INPUT_SHIFT))
    assert net.from_canonical(p).shape == (4, 5, 6, 1)
