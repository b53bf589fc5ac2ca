"""Images in [-1, 1]: the one uint8 rounding the package uses and the one resampling between image sides
(foundation layer: imports nothing of ours).

The release writes its frames as ``clamp(x * 127.5 + 128, 0, 255)`` cast to uint8, i.e. truncated; ``aniportrait
render`` matches it exactly. For images that came from uint8 as ``k / 127.5 - 1`` (how datasets are loaded) the
same formula gives back ``k`` (``x * 127.5 + 128`` is ``k + 0.5`` up to float rounding, far below 0.5).

Every image here, rendered or synthesised, is a grid of rays whose first and last pixel centres lie on the image
edges (NDC -1 and 1): grids of any side align corner to corner, and :func:`resample_grid` resizes between them so.
A resize that treats pixels as cells (``align_corners=False``) scales a side-N image by ``N / (N - 1)`` about its
centre relative to its own grid: 3.2% at 32, enough to move a read head pose or camera pitch by about a degree.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] -> uint8 of the same shape (values outside are clamped)."""
    return (image * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [-1, 1] -> [H, W, 3] uint8 numpy (:func:`quantize`)."""
    return quantize(image).permute(1, 2, 0).cpu().numpy()


def resample_grid(images: torch.Tensor, size: int, *, antialias: bool = False) -> torch.Tensor:
    """Resample images [B, C, H, W] to ``size`` x ``size`` on the same ray grid: bilinear, corner to corner
    (``align_corners=True``; module docstring). Without ``antialias`` a smaller image point-samples the larger one,
    as a render point-samples its rays; with it, a shrinking image is first low-passed by a triangle filter as wide
    as the scale factor (the filter of bilinear antialiasing), so each new pixel averages the old ones around it.
    Returns ``images`` itself when it already has the size."""
    if images.ndim != 4 or size < 2:
        raise ValueError(f"resample_grid needs images [B, C, H, W] and a size >= 2, got {list(images.shape)}, {size}")
    if images.shape[-2:] == (size, size):
        return images
    if antialias and size < max(images.shape[-2:]):
        images = _triangle_blur(images, size)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=True)


def _triangle_blur(images: torch.Tensor, size: int) -> torch.Tensor:
    """Separable triangle low-pass of half-width ``(side - 1) / (size - 1)`` (the grid's scale factor) per axis,
    the image mirrored about its edge pixels."""
    for dim in (-1, -2):
        side = images.shape[dim]
        scale = (side - 1) / (size - 1)
        if scale <= 1:
            continue
        reach = math.ceil(scale) - 1
        offsets = torch.arange(-reach, reach + 1, device=images.device, dtype=images.dtype)
        taps = (1 - offsets.abs() / scale).clamp_min(0)
        taps = taps / taps.sum()
        moved = images.movedim(dim, -1)
        shape = moved.shape
        flat = F.pad(moved.reshape(-1, 1, side), (reach, reach), mode="reflect")
        images = F.conv1d(flat, taps.view(1, 1, -1)).reshape(shape).movedim(-1, dim)
    return images
