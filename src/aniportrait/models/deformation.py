"""DeformNet (``deform_net``, from AniFaceGAN): the expression deformation.

Mapping z = [z_id(80), z_exp(64)] -> FiLM codes for three FiLM layers (7 -> 128 -> 128 -> 128), then Linear 128 -> 7
whose first 3 outputs are d. The point input is ``[w(x_can), w(ref_deform) = 0, score = 0]``: AniFaceGAN zeroed the
reference deformation ("doesn't help and cause the result flickering"). Release quirk kept for checkpoint parity
(AniFaceGAN does the same): d is in WARPED units, and the release's ``synthesis`` adds the same d to unwarped x_can for
the lookup.
Reference: YueWuHKUST/AniPortraitGAN:generators/siren.py ``DeformNet``. Shape letters: ``B`` batch, ``P`` points.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from aniportrait.constants import WARP_SCALE
from aniportrait.models.layers import (
    FiLMMappingNetwork,
    film_frequencies,
    film_layers,
    first_layer_film_init_,
    frequency_init_,
    zero_init_,
)

# Only the first 3 outputs (and the first 3 inputs) carry data.
DEFORM_DIM = 3


class DeformNet(nn.Module):
    """FiLM-SIREN displacement field; submodule names are the release's (checkpoint keys).

    Args:
        input_dim: per-point input channels of the first FiLM layer (7; only the first 3 are non-zero).
        hidden_dim: FiLM width H (128).
        z_dim: latent size (144 = z_id(80) + z_exp(64)).
        output_dim: final-layer outputs (7; only the first 3 are used).
        num_layers: number of FiLM layers (3).
        mapping_hidden_dim: mapping-network width (128).
        neck_gate: ``(low, high)`` or ``(low, high, slope)`` canonical heights (y, unwarped units) and a slope, or
            None (the release: no gate). With a gate, d is scaled by a smoothstep of the point's gate height
            ``y - slope * |x|``, 0 at and below ``low`` and 1 at and above ``high``: the expression can move the face,
            never the torso. A positive slope tilts the boundary down towards the sides, a V under the chin, so that
            the shoulders, which rise to the neck's height beside it, stay below the gate while the jaw stays
            above it.
        depth_gate: ``(low, high)`` canonical depths (z, towards the face's front, unwarped units), or None (the
            release: no gate). With a gate, d is also scaled by a smoothstep of the point's depth, 0 at and behind
            ``low`` and 1 at and in front of ``high``: the expression can move the face, never the back of the head,
            its sides (the outline seen from the front) or the crown behind the hairline.
    """

    def __init__(
        self,
        input_dim: int = 7,
        hidden_dim: int = 128,
        z_dim: int = 144,
        output_dim: int = 7,
        num_layers: int = 3,
        mapping_hidden_dim: int = 128,
        neck_gate: tuple[float, ...] | None = None,
        depth_gate: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if input_dim < DEFORM_DIM or output_dim < DEFORM_DIM:
            raise ValueError(f"DeformNet needs input_dim and output_dim >= 3, got {input_dim}, {output_dim}")
        if neck_gate is not None and not (len(neck_gate) in (2, 3) and neck_gate[0] < neck_gate[1]):
            raise ValueError(f"neck_gate needs (low, high[, slope]) with low < high, got {neck_gate}")
        if depth_gate is not None and not (len(depth_gate) == 2 and depth_gate[0] < depth_gate[1]):
            raise ValueError(f"depth_gate needs (low, high) with low < high, got {depth_gate}")
        self.depth_gate = None if depth_gate is None else tuple(depth_gate)
        self.neck_gate = None if neck_gate is None else (*neck_gate[:2], neck_gate[2] if len(neck_gate) == 3 else 0.0)
        self.hidden_dim = hidden_dim
        self.network = film_layers(input_dim, hidden_dim, num_layers)
        self.final_layer = nn.Linear(hidden_dim, output_dim)
        self.mapping_network = FiLMMappingNetwork(z_dim, mapping_hidden_dim, num_layers, hidden_dim)
        for film in self.network:
            frequency_init_(film.layer)
        first_layer_film_init_(self.network[0].layer)
        # Zero final layer: no deformation at init.
        zero_init_(self.final_layer)

    def mapping(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Raw codes (before ``15 f + 30``; never truncated): [B, z_dim] -> 2 x [B, num_layers * H] (384)."""
        return self.mapping_network.codes(z)

    def forward(self, x_can: Tensor, freq: Tensor, phase: Tensor) -> tuple[Tensor, Tensor]:
        """Deform points (the release's ``anifacegan`` step).

        Exact shortcuts: the 4 zero input channels are never built (FiLMLayer skips their weight columns) and only the
        first 3 rows of ``final_layer`` are evaluated.

        Args:
            x_can: pose-canonical points (after inverse LBS), unwarped, [B, P, 3] (or [B, ..., 3]).
            freq: raw frequencies from ``mapping``, [B, num_layers * H].
            phase: raw phases, [B, num_layers * H].

        Returns:
            new_coords: ``w(x_can) + d`` in warped units, shaped like x_can.
            d: the displacement in WARPED units, shaped like x_can.

        Example:
            >>> import torch
            >>> net = DeformNet(hidden_dim=16, mapping_hidden_dim=16)
            >>> freq, phase = net.mapping(torch.randn(2, 144))
            >>> new_coords, d = net(torch.rand(2, 100, 3), freq, phase)
            >>> bool((d == 0).all())  # zero-initialised final layer
            True
        """
        hidden = self.hidden_dim
        x_warped = x_can * WARP_SCALE
        freq = film_frequencies(freq)
        h = x_warped.reshape(x_can.shape[0], -1, DEFORM_DIM)
        for k, layer in enumerate(self.network):
            sl = slice(k * hidden, (k + 1) * hidden)
            h = layer(h, freq[:, sl], phase[:, sl])
        d = F.linear(h, self.final_layer.weight[:DEFORM_DIM], self.final_layer.bias[:DEFORM_DIM]).reshape(x_can.shape)
        if self.neck_gate is not None:
            low, high, slope = self.neck_gate
            height = x_can[..., 1:2] if slope == 0 else x_can[..., 1:2] - slope * x_can[..., 0:1].abs()
            d = d * neck_gate_weight(height, low, high).to(d.dtype)
        if self.depth_gate is not None:
            d = d * neck_gate_weight(x_can[..., 2:3], *self.depth_gate).to(d.dtype)
        return x_warped + d, d


def neck_gate_weight(height: Tensor, low: float, high: float) -> Tensor:
    """Smoothstep of a canonical coordinate (the gates' height or depth): 0 at and below ``low``, 1 at and above
    ``high``, C1 in between."""
    t = ((height - low) / (high - low)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
