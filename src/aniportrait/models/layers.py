"""Shared blocks: FiLM sine layer ``y = sin(f * (W x + b) + phi)``, mapping networks, truncation, init helpers.

f and phi are per batch item and broadcast over the points (pi-GAN; YueWuHKUST/AniPortraitGAN:generators/siren.py).
Shape letters: ``B`` batch, ``P`` points per batch item, ``C`` input channels, ``H`` hidden width.
"""

import math

import torch
from torch import Tensor, nn

# FiLM frequencies are ``15 f + 30`` (siren.py).
FILM_FREQ_SCALE = 15.0
FILM_FREQ_SHIFT = 30.0
# siren.py ``frequency_init(25)``.
FREQUENCY_INIT_OMEGA = 25.0
# Every LeakyReLU of the mapping networks and the SR net.
LEAKY_SLOPE = 0.2
# siren.py ``MappingNetwork``: ``network[-1].weight *= 0.25``.
FILM_MAPPING_LAST_GAIN = 0.25


# ---------------------------------------------------------------------------------------------------------------------
# Init helpers: in place on an nn.Linear; biases keep PyTorch's default init, as in the release.


@torch.no_grad()
def frequency_init_(linear: nn.Linear, omega: float = FREQUENCY_INIT_OMEGA) -> None:
    """SIREN hidden-layer init: weight ~ U(-sqrt(6 / fan_in) / omega, sqrt(6 / fan_in) / omega)."""
    bound = math.sqrt(6.0 / linear.in_features) / omega
    linear.weight.uniform_(-bound, bound)


@torch.no_grad()
def first_layer_film_init_(linear: nn.Linear) -> None:
    """pi-GAN first-layer init: weight ~ U(-1 / fan_in, 1 / fan_in)."""
    bound = 1.0 / linear.in_features
    linear.weight.uniform_(-bound, bound)


@torch.no_grad()
def kaiming_leaky_init_(linear: nn.Linear) -> None:
    """Kaiming-normal weight (fan-in) for a layer followed by LeakyReLU(0.2)."""
    nn.init.kaiming_normal_(linear.weight, a=LEAKY_SLOPE, mode="fan_in", nonlinearity="leaky_relu")


@torch.no_grad()
def zero_init_(linear: nn.Linear) -> None:
    """Zero weight and bias."""
    linear.weight.zero_()
    linear.bias.zero_()


# ---------------------------------------------------------------------------------------------------------------------
# Functional helpers


def film_frequencies(freq: Tensor) -> Tensor:
    """Raw mapping frequencies -> FiLM frequencies ``15 f + 30``."""
    return freq * FILM_FREQ_SCALE + FILM_FREQ_SHIFT


def truncate(x: Tensor, avg: Tensor, psi: float) -> Tensor:
    """Truncation trick ``avg + psi * (x - avg)``: x [B, C], avg [1, C] -> [B, C]."""
    return avg + psi * (x - avg)


def sine(pre: Tensor) -> Tensor:
    """``sin(pre)``, in place when no autograd graph needs ``pre`` (saves a [B, P, H] buffer at inference)."""
    return torch.sin(pre) if pre.requires_grad else pre.sin_()


def _onednn_linear():
    """oneDNN's fused linear + activation (the op TorchInductor's CPU backend emits), or None without it."""
    ops = getattr(torch.ops, "mkldnn", None)
    if not torch.backends.mkldnn.is_available() or ops is None or not hasattr(ops, "_linear_pointwise"):
        return None
    return ops._linear_pointwise


_ONEDNN_LINEAR = _onednn_linear()


def linear_act(x: Tensor, layer: nn.Linear, relu: bool) -> Tensor:
    """``layer(x)``, then ReLU if ``relu``: [..., C] -> [..., H].

    On CPU in fp32 without autograd or autocast it runs as one oneDNN primitive with the ReLU fused (about 2.4x
    faster than ``addmm`` then ReLU for SampleNet's 8,192 x 128 x 128 blocks on a 2-core AMD EPYC; fp32 arithmetic,
    the same values to float rounding). Anywhere else it is ``F.linear`` then an in-place ReLU (autograd-safe: the
    linear's backward does not read its output), as ``nn.Linear`` and ``nn.ReLU(inplace=True)`` would run.
    """
    fused = (
        _ONEDNN_LINEAR is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.numel() > 0
        and layer.weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not (torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad))
    )
    if not fused:
        y = nn.functional.linear(x, layer.weight, layer.bias)
        return y.relu_() if relu else y
    flat = x.reshape(-1, x.shape[-1])
    y = _ONEDNN_LINEAR(flat, layer.weight, layer.bias, "relu" if relu else "none", [], "")
    return y.reshape(*x.shape[:-1], y.shape[-1])


# ---------------------------------------------------------------------------------------------------------------------
# Modules


class FiLMLayer(nn.Module):
    """FiLM sine layer ``y = sin(f * (W x + b) + phi)``, the Linear at ``.layer`` (checkpoint key).

    The modulation is folded into the weights, ``(f W) x + (f b + phi)``, so one ``baddbmm`` gives the pre-activation.
    The logical input may come in pieces: ``lead`` holds the first channels (the colour layer's view direction), ``x``
    the next ones, and any channels past them are zeros (DeformNet's 4 constant-zero inputs). Nothing is concatenated.

    Args:
        in_features: input channels C of the Linear layer.
        out_features: hidden width H.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.layer = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor, freq: Tensor, phase: Tensor, lead: Tensor | None = None) -> Tensor:
        """Apply the layer.

        Args:
            x: input channels ``[n_lead, n_lead + C_x)``, [B, P, C_x].
            freq: FiLM frequencies (already ``15 f + 30``), [B, H].
            phase: FiLM phase shifts, [B, H].
            lead: input channels ``[0, n_lead)``, [B, P, n_lead], or [B, 1, n_lead] / [1, 1, n_lead] broadcast.

        Returns:
            Activations, [B, P, H].

        Example:
            >>> layer = FiLMLayer(3, 16)
            >>> layer(torch.randn(2, 100, 3), torch.full((2, 16), 30.0), torch.zeros(2, 16)).shape
            torch.Size([2, 100, 16])
        """
        weight, bias = self.layer.weight, self.layer.bias
        n_lead = 0 if lead is None else lead.shape[-1]
        n_x = x.shape[-1]
        if n_lead + n_x > self.layer.in_features:
            raise ValueError(f"FiLMLayer expects at most {self.layer.in_features} input channels, got {n_lead + n_x}")
        freq_col = freq.unsqueeze(-1)
        weight_x = (freq_col * weight[:, n_lead : n_lead + n_x]).transpose(1, 2)  # (f W_x)^T, [B, C_x, H]
        bias_mod = torch.addcmul(phase, freq, bias).unsqueeze(1)  # f b + phi, [B, 1, H]
        pre = torch.baddbmm(bias_mod, x, weight_x)
        if lead is not None:
            # In place is autograd-safe: baddbmm's backward does not read its output.
            pre += torch.matmul(lead, (freq_col * weight[:, :n_lead]).transpose(1, 2))
        return sine(pre)


def film_layers(input_dim: int, hidden_dim: int, num_layers: int) -> nn.ModuleList:
    """``num_layers`` FiLM layers ``input_dim -> H -> ... -> H`` (default init; the caller applies the SIREN init)."""
    return nn.ModuleList([FiLMLayer(input_dim if k == 0 else hidden_dim, hidden_dim) for k in range(num_layers)])


class MappingNetwork(nn.Module):
    """MLP ``in -> hidden -> hidden -> hidden -> out`` with LeakyReLU(0.2); Linear layers at ``network.0/2/4/6``.

    Init: Kaiming (leaky 0.2), the last weight times ``last_layer_gain`` (0.25 for FiLM mappings, 1 for the SR style).

    Args:
        in_dim: latent size.
        hidden_dim: hidden width.
        out_dim: output size.
        last_layer_gain: factor on the last layer's initial weight.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, last_layer_gain: float = 1.0) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        for module in self.network:
            if isinstance(module, nn.Linear):
                kaiming_leaky_init_(module)
        with torch.no_grad():
            self.network[-1].weight.mul_(last_layer_gain)

    def forward(self, z: Tensor) -> Tensor:
        """[B, in_dim] -> [B, out_dim]."""
        return self.network(z)

    def w(self, z: Tensor) -> Tensor:
        """The code after three layers and their activations (release ``get_w``): [B, in_dim] -> [B, hidden_dim]."""
        return self.network[:-1](z)

    def from_w(self, w: Tensor) -> Tensor:
        """The last Linear: [B, hidden_dim] -> [B, out_dim]."""
        return self.network[-1](w)


class FiLMMappingNetwork(MappingNetwork):
    """The mapping of a FiLM field: raw frequencies then raw phases, ``num_films * film_width`` each.

    A :class:`MappingNetwork` (same layers and keys) with the FiLM last-layer gain (0.25).

    Args:
        in_dim: latent size.
        hidden_dim: hidden width.
        num_films: number of FiLM layers the codes drive.
        film_width: width H of each FiLM layer.
    """

    def __init__(self, in_dim: int, hidden_dim: int, num_films: int, film_width: int) -> None:
        super().__init__(in_dim, hidden_dim, num_films * film_width * 2, last_layer_gain=FILM_MAPPING_LAST_GAIN)

    def codes(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Raw frequencies and phases (before ``15 f + 30``): [B, in_dim] -> 2 x [B, num_films * H]."""
        out = self(z)
        half = out.shape[-1] // 2
        return out[..., :half], out[..., half:]
