"""LbsSmoother (``smoother``): learned smoothing of the inverse-LBS transform volume [B, 16, D, H, W].

Normalised depthwise conv3d -> trilinear x2 upsampling (align_corners=False) -> normalised depthwise conv3d. Kernels are
[16, 1, 5, 9, 9] Parameters (init 1/405) divided by their per-channel sum in every forward, so constant fields stay
constant; reflect padding (W 4, H 4, D 2). Release quirk kept, a half-sample shift: the upsampling puts coarse
cell i at fine 2i + 0.5 while its strided queries sat at 2i.
Reference: YueWuHKUST/AniPortraitGAN:generators/generators_manifold_sr.py ``LbsSmoother``.
Shape letters: ``B`` batch, ``C`` channels, ``D``, ``H``, ``W`` (samples, rows, columns).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

UPSAMPLE_FACTOR = 2


class NormalizedConv3d(nn.Module):
    """Depthwise conv3d with a kernel ``weight`` renormalised to sum 1 per channel, reflect padding.

    The release's ``Conv3dBNReLu_AvgPool`` with BatchNorm/ReLU off (``use_bn_relu=False``), so they are not built.

    Args:
        channels: channels C (16).
        depth_kernel: kernel size along D (5).
        spatial_kernel: kernel size along H and W (9 = 2 * 5 - 1 in the release).
    """

    def __init__(self, channels: int, depth_kernel: int, spatial_kernel: int) -> None:
        super().__init__()
        size = depth_kernel * spatial_kernel * spatial_kernel
        self.weight = nn.Parameter(torch.full((channels, 1, depth_kernel, spatial_kernel, spatial_kernel), 1.0 / size))
        # F.pad order: W, H, D.
        half_sp, half_d = spatial_kernel // 2, depth_kernel // 2
        self.padding = (half_sp, half_sp, half_sp, half_sp, half_d, half_d)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, D, H, W] -> [B, C, D, H, W]; reflect padding needs each size above its half kernel."""
        weight = self.weight / self.weight.sum(dim=(2, 3, 4), keepdim=True)
        return F.conv3d(F.pad(x, self.padding, mode="reflect"), weight, groups=self.weight.shape[0])


class LbsSmoother(nn.Module):
    """conv -> trilinear x2 upsampling -> conv; blocks ``conv_block1``, ``conv_block2`` (checkpoint keys).

    Args:
        channels: channels C (16: the row-major 4x4 entries).
        depth_kernel: kernel size along D (5).
        spatial_kernel: kernel size along H and W (9).
    """

    def __init__(self, channels: int = 16, depth_kernel: int = 5, spatial_kernel: int = 9) -> None:
        super().__init__()
        self.conv_block1 = NormalizedConv3d(channels, depth_kernel, spatial_kernel)
        self.conv_block2 = NormalizedConv3d(channels, depth_kernel, spatial_kernel)

    def forward(self, x: Tensor) -> Tensor:
        """Smooth and upsample the transform volume.

        Args:
            x: coarse volume, [B, C, D, H, W] (the release: [B, 16, 32, 64, 64], dimensions (sample, row, column)).

        Returns:
            [B, C, 2D, 2H, 2W] (the release: [B, 16, 64, 128, 128]).

        Example:
            >>> LbsSmoother()(torch.ones(1, 16, 4, 6, 6)).shape
            torch.Size([1, 16, 8, 12, 12])
        """
        x = self.conv_block1(x)
        x = F.interpolate(x, scale_factor=UPSAMPLE_FACTOR, mode="trilinear", align_corners=False)
        return self.conv_block2(x)
