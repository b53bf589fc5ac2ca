"""The package's one image rounding: the release's frame writing, and exact for images that came from uint8."""

import numpy as np
import torch

from aniportrait.images import quantize, to_uint8


def test_images_from_uint8_come_back_exactly():
    k = torch.arange(256, dtype=torch.uint8)
    loaded = k.float().div_(127.5).sub_(1.0)  # how datasets load them
    assert torch.equal(quantize(loaded), k)


def test_the_release_rounding_truncates_and_clamps():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.999 / 127.5, 1.0, 3.0])
    # x * 127.5 + 128, truncated, clamped: -127 -> 0, 0.5 -> 0, 128, 128.999 -> 128, 255.5 -> 255, 510.5 -> 255
    assert quantize(x).tolist() == [0, 0, 128, 128, 255, 255]


def test_to_uint8_is_channels_last_numpy():
    image = torch.linspace(-1, 1, 3 * 4 * 5).reshape(3, 4, 5)
    out = to_uint8(image)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (4, 5, 3)
    assert np.array_equal(out, quantize(image).permute(1, 2, 0).numpy())
