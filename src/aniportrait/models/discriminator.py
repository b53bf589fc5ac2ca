"""Discriminators: one GRAM-style residual CoordConv encoder per image, three of them for the dual-camera scheme.

AniPortraitGAN [P §3.4-3.5] judges three images: the whole portrait (``whole``), the face-camera render (``face``)
and the lower quarter of the portrait (``torso``), with loss weights 0.1 / 1.0 / 0.5. Their architecture is not
stated and not released; we take GRAM's / GRAM-HD's encoder discriminator (``discriminators/discriminators.py``):

* fromRGB: 1x1 conv ``in_channels -> ch(i0)``, LeakyReLU 0.2, with ``ch(i) = min(max_channels, 2^i)`` and
  ``i0 = 13 - log2(S)`` for an input of side ``S``;
* for ``i = i0 .. 11``: ``ResidualCoordConvBlock(ch(i) -> ch(i + 1))``, each halving the resolution, so the map
  ends at 2x2 (``log2(S) - 1`` blocks);
* a final ``Conv2d(ch(12), 1 + pose_outputs, kernel 2)``: [B, 1 + pose_outputs] = (logit, pitch_hat, yaw_hat).

The discriminator regresses the camera (GRAM's position loss); it is not conditioned on it. No progressive growing.

Rectangular inputs (the torso strip, ``S x 4S``): the schedule follows the short side ``S``, the blocks end at
``2 x 2k``, and the final 2x2 conv's ``1 x (2k - 1)`` outputs are averaged; for square inputs this is exactly the
square encoder above.

Sources: [P] the AniPortraitGAN paper, sections 3.4-3.5; [G] GRAM (microsoft/GRAM) and [H] GRAM-HD
(JeffreyXiang/GRAM-HD), ``discriminators/discriminators.py``.
Shape letters: ``B`` batch, ``C`` channels, ``H``, ``W`` image rows and columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Leaky-ReLU slope of every discriminator activation [G].
LEAKY_SLOPE = 0.2
# ch(i) = min(MAX_CHANNELS, 2^i), i from CHANNEL_LOG2_BASE - log2(S) to LAST_BLOCK_LOG2 [G]: 400 channels at most,
# 2^(13 - log2 S) after fromRGB (32 at 256^2), and the last block indexed 11 (so the map ends at 2x2).
MAX_CHANNELS = 400
CHANNEL_LOG2_BASE = 13
LAST_BLOCK_LOG2 = 11
# Side of the map the final conv reads (kernel size of the final conv) [G].
FINAL_MAP = 2
# Number of coordinate channels CoordConv appends (x, then y).
COORD_CHANNELS = 2
# Camera outputs after the logit: (pitch, yaw) [G].
POSE_OUTPUTS = 2

# The torso discriminator sees rows [H - H // TORSO_FRACTION, H) of the portrait, all columns [P: "the lower 1/4"].
TORSO_FRACTION = 4


def channels_at(log2_index: int, max_channels: int = MAX_CHANNELS) -> int:
    """``min(max_channels, 2^i)``: the channel schedule of GRAM's encoder [G]."""
    return min(max_channels, 2**log2_index)


def coord_grid(batch: int, height: int, width: int, *, device=None, dtype=None) -> Tensor:
    """[B, 2, H, W] coordinate channels: channel 0 is x (column), channel 1 is y (row), both ``linspace(-1, 1)``."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).expand(batch, COORD_CHANNELS, height, width)


class CoordConv2d(nn.Module):
    """Conv2d on ``[input, x, y]``: the input with two coordinate channels in [-1, 1] appended (CoordConv).

    Args:
        in_channels: channels of the input (the conv sees ``in_channels + 2``).
        out_channels: output channels.
        kernel_size, stride, padding: as for :class:`torch.nn.Conv2d`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels + COORD_CHANNELS, out_channels, kernel_size, stride=stride, padding=padding)

    @staticmethod
    def add_coords(x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C + 2, H, W]: appends x (column) then y (row) coordinates, each in [-1, 1]."""
        B, _, H, W = x.shape
        return torch.cat([x, coord_grid(B, H, W, device=x.device, dtype=x.dtype)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, C_out, H', W']."""
        return self.conv(self.add_coords(x))


class ResidualCoordConvBlock(nn.Module):
    """Two 3x3 CoordConvs (each followed by LeakyReLU 0.2), average-pool x2, plus a pooled skip; output / sqrt(2).

    ``y = (pool(lrelu(cc2(lrelu(cc1(x))))) + proj(pool(x))) / sqrt(2)``; ``proj`` is a 1x1 conv when the channel
    count changes, else the identity [G].

    Args:
        in_channels, out_channels: channels before and after the block.
        downsample: halve H and W (always True inside :class:`PortraitDiscriminator`).
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = True) -> None:
        super().__init__()
        self.conv1 = CoordConv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = CoordConv2d(out_channels, out_channels, 3, padding=1)
        self.proj = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, C_out, H/2, W/2] (or [B, C_out, H, W] without downsampling)."""
        y = F.leaky_relu(self.conv1(x), LEAKY_SLOPE)
        y = F.leaky_relu(self.conv2(y), LEAKY_SLOPE)
        skip = x
        if self.downsample:
            y = F.avg_pool2d(y, 2)
            skip = F.avg_pool2d(skip, 2)
        if self.proj is not None:
            skip = self.proj(skip)
        return (y + skip) / math.sqrt(2.0)


def _image_shape(img_size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    short = min(height, width)
    if short < 2 * FINAL_MAP or short & (short - 1):
        raise ValueError(f"img_size: the short side must be a power of two >= {2 * FINAL_MAP}, got {img_size}")
    if max(height, width) % short:
        raise ValueError(f"img_size: the long side must be a multiple of the short side, got {img_size}")
    return height, width


class PortraitDiscriminator(nn.Module):
    """GRAM's residual CoordConv encoder discriminator; outputs a realness logit and the predicted camera.

    Args:
        img_size: input side S (a power of two >= 4, e.g. 16..512), or ``(H, W)`` with the short side such a power
            and the long side a multiple of it (the torso strip ``(S/4, S)``).
        in_channels: image channels (3, images in [-1, 1]).
        max_channels: channel cap (400 in GRAM; small for tests).
        pose_outputs: camera values regressed after the logit (2 = pitch, yaw; 0 for a logit only).

    Example:
        >>> d = PortraitDiscriminator(16, max_channels=32)
        >>> d(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        img_size: int | tuple[int, int],
        in_channels: int = 3,
        max_channels: int = MAX_CHANNELS,
        pose_outputs: int = POSE_OUTPUTS,
    ) -> None:
        super().__init__()
        self.img_shape = _image_shape(img_size)
        self.in_channels = in_channels
        self.pose_outputs = pose_outputs
        first = CHANNEL_LOG2_BASE - int(math.log2(min(self.img_shape)))
        self.fromRGB = nn.Conv2d(in_channels, channels_at(first, max_channels), 1)
        self.layers = nn.ModuleList(
            ResidualCoordConvBlock(channels_at(i, max_channels), channels_at(i + 1, max_channels))
            for i in range(first, LAST_BLOCK_LOG2 + 1)
        )
        self.final_layer = nn.Conv2d(channels_at(LAST_BLOCK_LOG2 + 1, max_channels), 1 + pose_outputs, FINAL_MAP)

    def forward(self, image: Tensor) -> Tensor:
        """Judge images.

        Args:
            image: [B, in_channels, H, W] with (H, W) = ``img_shape``, values in [-1, 1].

        Returns:
            [B, 1 + pose_outputs]: column 0 the logit (real > 0), then the predicted (pitch, yaw).
        """
        if tuple(image.shape[-2:]) != self.img_shape or image.shape[-3] != self.in_channels:
            raise ValueError(
                f"expected images [B, {self.in_channels}, {self.img_shape[0]}, {self.img_shape[1]}], "
                f"got {list(image.shape)}"
            )
        x = F.leaky_relu(self.fromRGB(image), LEAKY_SLOPE)
        for layer in self.layers:
            x = layer(x)
        return self.final_layer(x).mean(dim=(2, 3))


def torso_crop(image: Tensor) -> Tensor:
    """The lower quarter of a portrait, not resized: rows ``[3H/4, H)``, all columns.

    [B, C, H, W] -> [B, C, H/4, W] (32 x 128 at stage 1, 128 x 512 at stage 2); H must be divisible by 4. The same
    crop is applied to real and generated portraits [P §3.4: "the lower 1/4 of the rendered portrait"].
    """
    H = image.shape[-2]
    if H % TORSO_FRACTION:
        raise ValueError(f"torso_crop needs the image height divisible by {TORSO_FRACTION}, got {H}")
    return image[..., H - H // TORSO_FRACTION :, :]


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Sizes of the three discriminators (defaults: stage 1, 128^2 portrait and face [P §3.6]). Their loss weights
    are training settings (:class:`aniportrait.train.config.TrainConfig`)."""

    whole_size: int = 128  # [P] portrait side: 128 (stage 1), 512 (stage 2); the torso strip is (whole/4, whole)
    face_size: int = 128  # [P] face-camera image side: 128 (stage 1), 256 (stage 2)
    in_channels: int = 3  # RGB in [-1, 1]
    max_channels: int = MAX_CHANNELS  # [G] channel cap 400
    pose_outputs: int = POSE_OUTPUTS  # [G] regressed (pitch, yaw); 0 disables the camera head


# A config for tests: 16^2 portrait (4 x 16 torso strip), 16^2 face, at most 32 channels.
TINY_DISCRIMINATOR = DiscriminatorConfig(whole_size=16, face_size=16, max_channels=32)


class MultiDiscriminator(nn.Module):
    """The three discriminators of the dual-camera scheme: ``whole``, ``face`` and ``torso``.

    Args:
        config: sizes and weights (:class:`DiscriminatorConfig`).

    Example:
        >>> md = MultiDiscriminator(TINY_DISCRIMINATOR)
        >>> out = md(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 16))
        >>> {k: tuple(v.shape) for k, v in out.items()}
        {'whole': (2, 3), 'face': (2, 3), 'torso': (2, 3)}
    """

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()) -> None:
        super().__init__()
        self.config = config
        common = (config.in_channels, config.max_channels, config.pose_outputs)
        self.whole = PortraitDiscriminator(config.whole_size, *common)
        self.face = PortraitDiscriminator(config.face_size, *common)
        self.torso = PortraitDiscriminator((config.whole_size // TORSO_FRACTION, config.whole_size), *common)

    def inputs(self, portrait: Tensor, face: Tensor) -> dict[str, Tensor]:
        """The image each discriminator judges: the portrait, the face image and :func:`torso_crop` (portrait).

        Use these exact tensors (with ``requires_grad``) for :func:`aniportrait.train.losses.r1_penalty`.
        """
        return {"whole": portrait, "face": face, "torso": torso_crop(portrait)}

    def judge(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Run each discriminator on its input from :meth:`inputs`: name -> [B, 1 + pose_outputs]."""
        return {name: getattr(self, name)(image) for name, image in inputs.items()}

    def forward(self, portrait: Tensor, face: Tensor) -> dict[str, Tensor]:
        """Judge a portrait [B, C, S, S] and its face image [B, C, F, F]: name -> [B, 1 + pose_outputs]."""
        return self.judge(self.inputs(portrait, face))

    @torch.no_grad()
    def load_progressive(self, state: dict[str, Tensor]) -> tuple[int, int]:
        """Load another MultiDiscriminator's weights where they fit, possibly of other image sizes.

        The encoder's blocks are indexed by resolution and all end at the same 2x2 map, so the blocks of a
        discriminator for smaller images are the last blocks of one for larger images (progressive growing): blocks
        are matched from the last one backwards, and every tensor whose shape agrees is copied (``fromRGB`` only at
        equal sizes and widths).

        Args:
            state: a ``state_dict()`` of a :class:`MultiDiscriminator`.

        Returns:
            (tensors copied, tensors of this discriminator).
        """
        own = self.state_dict()
        copied = 0
        for name in ("whole", "face", "torso"):
            sub: PortraitDiscriminator = getattr(self, name)
            source_blocks = sorted(
                {int(k.split(".")[2]) for k in state if k.startswith(f"{name}.layers.")}, reverse=True
            )
            mapping = {
                f"{name}.layers.{len(sub.layers) - 1 - j}.": f"{name}.layers.{b}." for j, b in enumerate(source_blocks)
            }
            for key in own:
                if not key.startswith(f"{name}."):
                    continue
                source_key = key
                for mine, theirs in mapping.items():
                    if key.startswith(mine):
                        source_key = theirs + key[len(mine) :]
                        break
                else:
                    if key.startswith(f"{name}.layers."):
                        continue  # a block the source does not have
                value = state.get(source_key)
                if value is not None and value.shape == own[key].shape:
                    own[key].copy_(value)
                    copied += 1
        return copied, len(own)
