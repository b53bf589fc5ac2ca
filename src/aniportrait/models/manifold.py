"""SampleNet (``sample_net``): the scalar field s whose level sets are the radiance manifolds.

A ReLU MLP 3 -> 128 -> 128 -> 128 -> 1 with no latent input (the manifolds are shared by all identities). Units, as the
release warps twice (in ``manifold_sr`` and ``synthesis`` alike): its intersection routines receive once-warped points
``x_fed`` and the MLP sees ``q = w(x_fed) - SAMPLE_NET_CENTER``, with ``w(x) = WARP_SCALE * x``:

- manifold SR feeds ``x_fed = w(p)`` for canonical grid points p: the MLP sees ``w(w(p)) + (0, 0, 1.5)``
  (``from_canonical``);
- synthesis feeds DeformNet's ``new_coords = w(x_can) + d``: the MLP sees ``w(w(x_can) + d) + (0, 0, 1.5)``
  (``forward``).

Reference: YueWuHKUST/AniPortraitGAN:generators/siren.py ``SampleNet``. Shape letters: ``B`` batch, ``P`` points.
"""

import torch
from torch import Tensor, nn

from aniportrait.constants import SAMPLE_NET_CENTER, WARP_SCALE
from aniportrait.models.layers import linear_act


class SampleNet(nn.Module):
    """ReLU MLP scalar field with PyTorch's default Linear init (the release never calls GRAM's geometric init).

    Args:
        input_dim: point dimension (3).
        hidden_dim: MLP width (128).
        num_layers: hidden Linear + ReLU layers (3), at ``network.0/2/4``, then ``output_layer`` (checkpoint keys).
    """

    def __init__(self, input_dim: int = 3, hidden_dim: int = 128, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for k in range(num_layers):
            layers += [nn.Linear(input_dim if k == 0 else hidden_dim, hidden_dim), nn.ReLU(inplace=True)]
        self.network = nn.Sequential(*layers)
        self.output_layer = nn.Linear(hidden_dim, 1)

    def mlp(self, q: Tensor) -> Tensor:
        """The bare MLP (release ``SampleNet.forward``): q = w(x_fed) - SAMPLE_NET_CENTER [..., 3] -> s [..., 1].

        Its layers run through :func:`aniportrait.models.layers.linear_act` (oneDNN with the ReLU fused at CPU
        inference, ``nn.Linear`` and ``ReLU`` otherwise)."""
        h = q
        for layer in self.network:
            if isinstance(layer, nn.Linear):
                h = linear_act(h, layer, relu=True)
        return linear_act(h, self.output_layer, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate s at once-warped points, the units the release feeds its intersection routines.

        The centre shift keeps "one half of the two-sided SIREN isosurfaces" (release comment).

        Args:
            x: once-warped points, [B, P, 3] or any [..., 3]; in synthesis ``new_coords = w(x_can) + d``.

        Returns:
            s = ``mlp(WARP_SCALE * x - SAMPLE_NET_CENTER)``, [..., 1].

        Example:
            >>> SampleNet(hidden_dim=16)(torch.randn(2, 100, 3)).shape
            torch.Size([2, 100, 1])
        """
        center = torch.tensor(SAMPLE_NET_CENTER, dtype=x.dtype, device=x.device)
        return self.mlp(x * WARP_SCALE - center)

    def from_canonical(self, p: Tensor) -> Tensor:
        """Manifold-SR call site: canonical points p [..., 3] -> ``forward(WARP_SCALE * p)`` [..., 1]."""
        return self.forward(p * WARP_SCALE)
