"""RadianceNet (``radiance_net``): FiLM-SIREN radiance field with output heads summed over 7 depths.

Eight FiLM layers read ``w(x) = WARP_SCALE * x``; after layers 1..7 linear heads add to sigma, rgb and a feature. The
last rgb head reads a colour FiLM layer on ``cat([view_dir, h_7])`` (direction first). The mapping gives 9 frequency and
phase slices of width H (8 layers + colour layer). Reference: AniPortraitGAN generators/siren.py
``forward_feature_with_frequencies_phase_shifts`` (the only forward the release calls).

Colour modulation (ours; off in the release): with ``color_modulation_dim`` = k > 0, a linear map of the first k latent
entries (the identity label), times ``COLOR_MODULATION_GAIN``, scales each colour head's input channels by ``1 + m``,
as StyleGAN's modulated toRGB layers do, so that a colour can follow the label linearly where the FiLM codes would need
a detour through the sines. The map starts at zero: the field is then the unmodulated one. Its output travels appended
to the raw frequencies, so truncation and the averages treat it as the other codes.
Shape letters: ``B`` batch, ``P`` points per batch item, ``H`` hidden width, ``F`` feature size.
"""

import torch
from torch import Tensor, nn

from aniportrait.constants import WARP_SCALE
from aniportrait.models.layers import (
    FiLMLayer,
    FiLMMappingNetwork,
    film_frequencies,
    film_layers,
    first_layer_film_init_,
    frequency_init_,
    truncate,
)

# The colour layer reads a 3-D view direction before the hidden features.
VIEW_DIR_DIM = 3
# Factor on the colour modulation map's output (a learning-rate multiplier, as StyleGAN's mapping has one): Adam
# moves each weight by about the learning rate per step, so the map's effect moves 20 times as fast as a plain
# layer's. At the reconstruction's rates (5e-5 to 2e-4) a plain map hardly moved in 1,000 steps; this one made the
# colours follow the label (docs/training/README.md in the source repository, section 14).
COLOR_MODULATION_GAIN = 20.0


class RadianceNet(nn.Module):
    """FiLM-SIREN radiance field; submodule names are the release's (checkpoint keys).

    Args:
        input_dim: point dimension (3).
        hidden_dim: FiLM width H (256 in the release).
        z_dim: latent size of the mapping network (160 = z_id(80) + z_noise(80)).
        feature_dim: size F of the feature passed to the SR net (32); must be at least 1.
        num_layers: number of FiLM layers (8); heads follow layers 1 .. num_layers - 1.
        mapping_hidden_dim: mapping-network width (256, fixed in the release whatever H is).
        input_scale: factor on the (warped) input coordinates, 1 in the release; it scales the field's spatial
            frequencies (``GeneratorConfig.radiance_input_scale``).
        color_modulation_dim: how many leading latent entries drive the colour modulation (0: none, the release).
    """

    def __init__(
        self,
        input_dim: int = 3,
        hidden_dim: int = 256,
        z_dim: int = 160,
        feature_dim: int = 32,
        num_layers: int = 8,
        mapping_hidden_dim: int = 256,
        input_scale: float = 1.0,
        color_modulation_dim: int = 0,
    ) -> None:
        super().__init__()
        self.input_scale = input_scale
        if num_layers < 2 or feature_dim < 1:
            raise ValueError(f"RadianceNet needs num_layers >= 2 and feature_dim >= 1, got {num_layers}, {feature_dim}")
        if not 0 <= color_modulation_dim <= z_dim:
            raise ValueError(f"color_modulation_dim must be in [0, z_dim={z_dim}], got {color_modulation_dim}")
        self.hidden_dim = hidden_dim
        self.feature_dim = feature_dim
        num_heads = num_layers - 1
        self.network = film_layers(input_dim, hidden_dim, num_layers)
        self.output_sigma = nn.ModuleList([nn.Linear(hidden_dim, 1) for _ in range(num_heads)])
        self.color_layer_sine = nn.ModuleList([FiLMLayer(VIEW_DIR_DIM + hidden_dim, hidden_dim)])
        self.output_color = nn.ModuleList([nn.Linear(hidden_dim, 3) for _ in range(num_heads)])
        self.output_feature = nn.ModuleList([nn.Linear(hidden_dim, feature_dim) for _ in range(num_heads)])
        self.mapping_network = FiLMMappingNetwork(z_dim, mapping_hidden_dim, num_layers + 1, hidden_dim)
        self.color_modulation_dim = color_modulation_dim
        if color_modulation_dim:
            # One scale per colour head input channel [num_heads * H]; zero = unmodulated.
            self.color_modulation = nn.Linear(color_modulation_dim, num_heads * hidden_dim)
            nn.init.zeros_(self.color_modulation.weight)
            nn.init.zeros_(self.color_modulation.bias)
        # Release init: SIREN on FiLM layers, sigma and colour heads; pi-GAN on layer 0; feature heads default.
        for film in [*self.network, *self.color_layer_sine]:
            frequency_init_(film.layer)
        for head in [*self.output_sigma, *self.output_color]:
            frequency_init_(head)
        first_layer_film_init_(self.network[0].layer)

    # -----------------------------------------------------------------------------------------------------------------
    # Latent side

    def mapping(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Raw frequencies and phases (before ``15 f + 30``): [B, z_dim] -> 2 x [B, (L + 1) H] (L layers; 2304).

        With colour modulation the frequencies carry the modulation appended: [B, (L + 1) H + (L - 1) H]."""
        freq, phase = self.mapping_network.codes(z)
        if self.color_modulation_dim:
            freq = torch.cat(
                [freq, COLOR_MODULATION_GAIN * self.color_modulation(z[..., : self.color_modulation_dim])], dim=-1
            )
        return freq, phase

    def latent_parameters(self) -> list[nn.Parameter]:
        """The parameters the codes depend on (the mapping network's and the colour modulation's)."""
        params = list(self.mapping_network.parameters())
        return params + (list(self.color_modulation.parameters()) if self.color_modulation_dim else [])

    @torch.no_grad()
    def average_mapping(self, z_bank: Tensor) -> tuple[Tensor, Tensor]:
        """Mean raw codes over a bank (release ``generate_avg_frequencies``): [N, z_dim] -> 2 x [1, (L + 1) H]."""
        freq, phase = self.mapping(z_bank)
        return freq.mean(0, keepdim=True), phase.mean(0, keepdim=True)

    @staticmethod
    def truncate(freq: Tensor, phase: Tensor, avg: tuple[Tensor, Tensor], psi: float) -> tuple[Tensor, Tensor]:
        """Truncate raw codes [B, (L + 1) H] toward ``avg = (avg_freq, avg_phase)``: ``avg + psi * (x - avg)``."""
        return truncate(freq, avg[0], psi), truncate(phase, avg[1], psi)

    # -----------------------------------------------------------------------------------------------------------------
    # Field

    def features(self, points: Tensor, freq: Tensor, phase: Tensor, view_dir: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Evaluate rgb, sigma and the SR feature at canonical points.

        Each depth's heads are stacked into one [3 + 1 + F, H] matrix: one GEMM per depth into a running sum.

        Args:
            points: canonical points (unwarped; the warp is applied here), [B, P, 3] (or [B, ..., 3]).
            freq: raw frequencies from ``mapping`` (possibly truncated), [B, (num_layers + 1) * H] (and the colour
                modulation after them when the net has one).
            phase: raw phases, [B, (num_layers + 1) * H].
            view_dir: view directions, [B, P, 3], or [B, 1, 3] / [1, 1, 3] broadcast (manifold SR: (0, 0, -1)).

        Returns:
            rgb: sigmoid of the summed colour heads, [B, P, 3].
            sigma: raw summed density, [B, P, 1].
            feature: raw summed feature, [B, P, F]. Points [B, ..., 3] give outputs [B, ..., C].

        Example:
            >>> net = RadianceNet(hidden_dim=16, feature_dim=4, mapping_hidden_dim=16)
            >>> freq, phase = net.mapping(torch.randn(2, 160))
            >>> rgb, sigma, feat = net.features(torch.rand(2, 50, 3), freq, phase, torch.tensor([[[0.0, 0.0, -1.0]]]))
            >>> rgb.shape, sigma.shape, feat.shape
            (torch.Size([2, 50, 3]), torch.Size([2, 50, 1]), torch.Size([2, 50, 4]))
        """
        batch, lead_shape = points.shape[0], points.shape[1:-1]
        hidden = self.hidden_dim
        num_layers = len(self.network)
        film_width = (num_layers + 1) * hidden
        modulation = freq[:, film_width:] if self.color_modulation_dim else None
        freq = film_frequencies(freq[:, :film_width])
        h = (points * (WARP_SCALE * self.input_scale)).reshape(batch, -1, points.shape[-1])
        # Running head sum [rgb(3), sigma(1), feature(F)], seeded with the summed biases. With colour modulation
        # the rgb sum runs apart, per batch item ([B, P, 3]), and ``acc`` holds [sigma, feature].
        acc = torch.cat(
            [
                torch.stack([head.bias for head in self.output_color]).sum(0),
                torch.stack([head.bias for head in self.output_sigma]).sum(0),
                torch.stack([head.bias for head in self.output_feature]).sum(0),
            ]
        )
        if modulation is not None:
            rgb_acc, acc = acc[:3].expand(batch, h.shape[1], 3), acc[3:]
        for k, layer in enumerate(self.network):
            sl = slice(k * hidden, (k + 1) * hidden)
            h = layer(h, freq[:, sl], phase[:, sl])
            if k == 0:
                continue
            heads = [self.output_sigma[k - 1].weight, self.output_feature[k - 1].weight]
            flat = h.reshape(-1, hidden)
            color_in = h
            if k == num_layers - 1:
                # Last depth: rgb reads the colour FiLM layer on cat([view_dir, h]) (slice num_layers).
                sl = slice(num_layers * hidden, (num_layers + 1) * hidden)
                dirs = view_dir.reshape(view_dir.shape[0], -1, view_dir.shape[-1])
                color_in = self.color_layer_sine[0](h, freq[:, sl], phase[:, sl], lead=dirs)
            color_weight = self.output_color[k - 1].weight  # [3, H]
            if modulation is not None:
                scale = 1 + modulation[:, (k - 1) * hidden : k * hidden]  # [B, H]
                rgb_acc = torch.baddbmm(rgb_acc, color_in, color_weight.t() * scale.unsqueeze(-1))
                acc = torch.addmm(acc, flat, torch.cat(heads).t())
            elif k < num_layers - 1:
                acc = torch.addmm(acc, flat, torch.cat([color_weight, *heads]).t())  # [3 + 1 + F, H]
            else:
                rgb_logit = torch.addmm(acc[..., :3], color_in.reshape(-1, hidden), color_weight.t())
                acc = torch.addmm(acc[..., 3:], flat, torch.cat(heads).t())
        if modulation is not None:
            rgb_logit = rgb_acc.reshape(-1, 3)
        rgb = torch.sigmoid(rgb_logit).reshape(batch, *lead_shape, 3)
        sigma = acc[:, :1].reshape(batch, *lead_shape, 1)
        feature = acc[:, 1:].reshape(batch, *lead_shape, self.feature_dim)
        return rgb, sigma, feature

    # ``radiance_net(points, freq, phase, view_dir)`` is ``features``; the release's own ``forward`` is unused.
    forward = features
