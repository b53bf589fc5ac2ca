"""The FiLM layer (``models/layers.py``) against its formula."""

import pytest
import torch

from aniportrait.models.layers import FiLMLayer
from tests.models.network_helpers import film_ref


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
