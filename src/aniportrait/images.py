"""Images in [-1, 1] as uint8: the one rounding the package uses (foundation layer: imports nothing of ours).

The release writes its frames as ``clamp(x * 127.5 + 128, 0, 255)`` cast to uint8, i.e. truncated; ``aniportrait
render`` matches it exactly. For images that came from uint8 as ``k / 127.5 - 1`` (how datasets are loaded) the
same formula gives back ``k`` (``x * 127.5 + 128`` is ``k + 0.5`` up to float rounding, far below 0.5).
"""

from __future__ import annotations

import numpy as np
import torch


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] -> uint8 of the same shape (values outside are clamped)."""
    return (image * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [-1, 1] -> [H, W, 3] uint8 numpy (:func:`quantize`)."""
    return quantize(image).permute(1, 2, 0).cpu().numpy()
