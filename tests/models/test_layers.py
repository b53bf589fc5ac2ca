"""The FiLM layer (``models/layers.py``) against its formula."""

import pytest
import torch

from aniportrait.models import layers
from aniportrait.models.layers import FiLMLayer, linear_act
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


def _counting_onednn(monkeypatch):
    calls = []
    real = layers._ONEDNN_LINEAR
    if real is None:
        pytest.skip("this torch build has no oneDNN linear")

    def counted(*args):
        calls.append(args[3])
        return real(*args)

    monkeypatch.setattr(layers, "_ONEDNN_LINEAR", counted)
    return calls


@pytest.mark.parametrize("relu", [True, False])
def test_linear_act_fused_at_cpu_inference_matches_linear(monkeypatch, relu):
    calls = _counting_onednn(monkeypatch)
    torch.manual_seed(0)
    layer = torch.nn.Linear(37, 19)
    x = torch.randn(2, 301, 37)
    expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
    expected = torch.relu(expected) if relu else expected
    with torch.no_grad():
        out = linear_act(x, layer, relu=relu)
    assert calls == ["relu" if relu else "none"]
    assert out.shape == (2, 301, 19) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_linear_act_falls_back_for_gradients_autocast_and_float64(monkeypatch):
    calls = _counting_onednn(monkeypatch)
    torch.manual_seed(1)
    layer = torch.nn.Linear(8, 5)
    x = torch.randn(11, 8, requires_grad=True)
    linear_act(x, layer, relu=True).sum().backward()  # autograd: nn.functional.linear, then ReLU
    assert x.grad is not None and layer.weight.grad is not None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear_act(x, layer, relu=True).dtype == torch.bfloat16
    with torch.no_grad():
        out = linear_act(x.double(), layer.double(), relu=True)
    assert out.dtype == torch.float64
    assert calls == []
    monkeypatch.setattr(layers, "_ONEDNN_LINEAR", None)  # a torch build without oneDNN
    with torch.no_grad():
        torch.testing.assert_close(linear_act(x.float(), layer.float(), relu=False), layer.float()(x.float()))
