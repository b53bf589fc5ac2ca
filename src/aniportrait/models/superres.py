"""StyleRRDBNet (``sr_net``): manifold super-resolution, ESRGAN with style-modulated pixel-shuffle upsampling.

conv_first -> nb RRDBs -> trunk_conv (+ conv_first output) -> 2 x (ModConv 3x3, pixel shuffle x2, LReLU) -> ModConv
HRconv + LReLU -> ModConv conv_last (1x1). The style (mapping of [z_id, z_noise]) is sliced by the modulated layers'
input channels, in order. The output is raw: the release applies the sigmoid to all 4 channels in the caller.
``ModConv2d``: ``w' = W * s[in]`` (raw style, no +1), ``w'' = w' rsqrt(sum_{in,kh,kw} w'^2 + 1e-8)``, bias unmodulated.
Reference: YueWuHKUST/AniPortraitGAN:generators/styleesrgan.py and its caller ``ManifoldSRGenerator3d.manifold_sr``.
Shape letters: ``N`` images (B * L textures, item-major), ``S`` style rows, ``C`` channels, ``H``, ``W`` size.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aniportrait.models.layers import LEAKY_SLOPE, MappingNetwork, truncate

DEMOD_EPS = 1e-8
# ESRGAN residual scaling of each dense block and each RRDB.
RESIDUAL_SCALE = 0.2
SHUFFLE_FACTOR = 2


def _lrelu_(x: Tensor) -> Tensor:
    """In-place LeakyReLU(0.2) (autograd-safe: its backward reads the output)."""
    return F.leaky_relu(x, LEAKY_SLOPE, inplace=True)


class ModConv2d(nn.Module):
    """StyleGAN2 modulated, demodulated conv; ``weight`` [C_out, C_in, k, k], ``bias`` [C_out], nn.Conv2d init.

    Args:
        in_channels: input channels C_in (also the style width).
        out_channels: output channels C_out.
        kernel_size: square kernel size k, padding ``(k - 1) // 2``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.padding = (kernel_size - 1) // 2
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        nn.init.uniform_(self.bias, -bound, bound)

    def modulated_weight(self, style: Tensor) -> Tensor:
        """Per-style weights, unit norm over (C_in, k, k) up to the epsilon: [S, C_in] -> [S, C_out, C_in, k, k]."""
        w = self.weight.unsqueeze(0) * style[:, None, :, None, None]
        demod = torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + DEMOD_EPS)
        return w * demod

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """Apply the modulated convolution.

        Style row j serves images ``[j N / S, (j + 1) N / S)``. With S = 1 (one identity, as in gen_video) the weight
        is modulated once and used by a plain batched conv, equal to and cheaper than the grouped conv. Otherwise the
        styles are repeated per image and the release's grouped conv runs on the [1, N * C_in, H, W] view.

        Args:
            x: images, [N, C_in, H, W].
            style: styles, [S, C_in], with N divisible by S.

        Returns:
            [N, C_out, H, W] (for odd k).

        Example:
            >>> conv = ModConv2d(8, 4, 3)
            >>> conv(torch.randn(6, 8, 16, 16), torch.randn(2, 8)).shape
            torch.Size([6, 4, 16, 16])
        """
        n, s = x.shape[0], style.shape[0]
        if n % s != 0:
            raise ValueError(f"ModConv2d: batch {n} is not a multiple of the {s} style rows")
        if s == 1:
            return F.conv2d(x, self.modulated_weight(style)[0], self.bias, padding=self.padding)
        weight = self.modulated_weight(style.repeat_interleave(n // s, dim=0))  # [N, C_out, C_in, k, k]
        out = F.conv2d(
            x.reshape(1, n * self.in_channels, *x.shape[2:]),
            weight.reshape(n * self.out_channels, *weight.shape[2:]),
            self.bias.repeat(n),
            padding=self.padding,
            groups=n,
        )
        return out.reshape(n, self.out_channels, *out.shape[2:])


class ResidualDenseBlock(nn.Module):
    """ESRGAN dense block: five 3x3 convs ``conv1..5`` on dense concatenations, output ``0.2 x5 + x``; nf, gc."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """[N, nf, H, W] -> [N, nf, H, W]."""
        x1 = _lrelu_(self.conv1(x))
        x2 = _lrelu_(self.conv2(torch.cat((x, x1), 1)))
        x3 = _lrelu_(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = _lrelu_(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        # In place on the conv output: autograd-safe (conv2d's backward does not read its output).
        return x5.mul_(RESIDUAL_SCALE).add_(x)


class ResidualInResidualDenseBlock(nn.Module):
    """RRDB: dense blocks ``RDB1..3``, output ``0.2 out + x``; nf trunk, gc growth channels."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.RDB1 = ResidualDenseBlock(nf, gc)
        self.RDB2 = ResidualDenseBlock(nf, gc)
        self.RDB3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: Tensor) -> Tensor:
        """[N, nf, H, W] -> [N, nf, H, W]."""
        return self.RDB3(self.RDB2(self.RDB1(x))).mul_(RESIDUAL_SCALE).add_(x)


class StyleRRDBNet(nn.Module):
    """ESRGAN RRDB trunk with style-modulated upsampling; submodule names are the release's (checkpoint keys).

    Args:
        in_nc: input channels (36 = rgb, alpha and the 32-channel feature of each manifold texture).
        out_nc: output channels (4 = rgb, alpha; raw, before the caller's sigmoid).
        w_dim: latent size of the style mapping (160 = z_id(80) + z_noise(80)).
        nf: trunk channels (64).
        nb: number of RRDBs (4).
        gc: growth channels (32).
        scale_factor: upsampling factor, a power of 2 (4: two pixel-shuffle stages).
        up_channels: channels after each pixel-shuffle stage ((64, 32)).
        up_sample_ks: kernel size of the upsampling convs and HRconv (3).
        to_rgb_ks: kernel size of conv_last (1).
        mapping_hidden_dim: style-mapping width (256).
    """

    def __init__(
        self,
        in_nc: int = 36,
        out_nc: int = 4,
        w_dim: int = 160,
        nf: int = 64,
        nb: int = 4,
        gc: int = 32,
        scale_factor: int = 4,
        up_channels: tuple[int, ...] = (64, 32),
        up_sample_ks: int = 3,
        to_rgb_ks: int = 1,
        mapping_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        num_up = int(math.log2(scale_factor))
        if 2**num_up != scale_factor or len(up_channels) != num_up:
            raise ValueError(f"scale_factor {scale_factor} needs log2(scale_factor) = {num_up} up_channels entries")
        self.conv_first = nn.Conv2d(in_nc, nf, 3, 1, 1)
        self.RRDB_trunk = nn.Sequential(*[ResidualInResidualDenseBlock(nf, gc) for _ in range(nb)])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        up_in = [nf, *up_channels[:-1]]
        self.upconvs = nn.ModuleList(
            [
                ModConv2d(c_in, c_out * SHUFFLE_FACTOR**2, up_sample_ks)
                for c_in, c_out in zip(up_in, up_channels, strict=True)
            ]
        )
        self.HRconv = ModConv2d(up_channels[-1], up_channels[-1], up_sample_ks)
        self.conv_last = ModConv2d(up_channels[-1], out_nc, to_rgb_ks)
        # One style slice per modulated layer, as wide as its input (192).
        self.style_dim = sum(up_in) + 2 * up_channels[-1]
        self.mapping_network = MappingNetwork(w_dim, mapping_hidden_dim, self.style_dim)

    # -----------------------------------------------------------------------------------------------------------------
    # Style side

    def mapping_w(self, z: Tensor) -> Tensor:
        """The intermediate code w, the mapping's first three layers (release ``get_w``): [B, w_dim] -> [B, 256]."""
        return self.mapping_network.w(z)

    def style_from_w(self, w: Tensor) -> Tensor:
        """The mapping's last Linear (the release's ``from_w``), [B, 256] -> [B, style_dim]."""
        return self.mapping_network.from_w(w)

    def mapping(self, z: Tensor) -> Tensor:
        """Styles from latents [z_id, z_noise]: [B, w_dim] -> [B, style_dim] ([B, 192] in the release)."""
        return self.style_from_w(self.mapping_w(z))

    @torch.no_grad()
    def average_style(self, z_bank: Tensor) -> Tensor:
        """Release ``get_avg_w``: ``avg_style = from_w(mean_z w(z))``, [N, w_dim] -> [1, style_dim]."""
        return self.style_from_w(self.mapping_w(z_bank).mean(0, keepdim=True))

    @staticmethod
    def truncate(style: Tensor, avg_style: Tensor, psi: float) -> Tensor:
        """Style truncation ``avg_style + psi * (style - avg_style)``: [B, style_dim] -> [B, style_dim]."""
        return truncate(style, avg_style, psi)

    # -----------------------------------------------------------------------------------------------------------------
    # Image side

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """Super-resolve manifold textures.

        Args:
            x: LR textures [rgb, alpha, feature], [N, in_nc, H, W] (the release: [B * 24, 36, 128, 128]).
            style: styles, [S, style_dim], N divisible by S: per image, or per item shared by its N / S textures.

        Returns:
            Raw RGBA, [N, out_nc, scale_factor * H, scale_factor * W].

        Example:
            >>> net = StyleRRDBNet(nf=8, nb=1, gc=4, up_channels=(8, 4), mapping_hidden_dim=16)
            >>> net(torch.randn(6, 36, 8, 8), net.mapping(torch.randn(2, 160))).shape
            torch.Size([6, 4, 32, 32])
        """
        fea = self.conv_first(x)
        fea = self.trunk_conv(self.RRDB_trunk(fea)).add_(fea)
        start = 0
        for conv in self.upconvs:
            fea = _lrelu_(F.pixel_shuffle(conv(fea, style[:, start : start + conv.in_channels]), SHUFFLE_FACTOR))
            start += conv.in_channels
        fea = _lrelu_(self.HRconv(fea, style[:, start : start + self.HRconv.in_channels]))
        start += self.HRconv.in_channels
        return self.conv_last(fea, style[:, start : start + self.conv_last.in_channels])
