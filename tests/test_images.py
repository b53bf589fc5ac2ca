"""The package's one image rounding (the release's frame writing, exact for images that came from uint8) and its one
resampling between ray grids of different sides."""

import numpy as np
import pytest
import torch

from aniportrait.images import quantize, resample_grid, to_uint8


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


def _ramp(side: int) -> torch.Tensor:
    """x + 2y over NDC on a side x side ray grid (first and last pixel centres on the edges), [1, 1, side, side]."""
    ndc = torch.linspace(-1, 1, side, dtype=torch.float64)
    return (ndc[None, :] + 2 * ndc[:, None])[None, None]


@pytest.mark.parametrize("side,size", [(128, 32), (32, 128), (33, 7), (9, 40)])
def test_resample_grid_keeps_the_ray_grid_corner_to_corner(side, size):
    """A field linear in NDC sampled on one grid and resampled is that field sampled on the other grid: a cell-wise
    resize (align_corners=False) fails it by a scale N / (N - 1)."""
    torch.testing.assert_close(resample_grid(_ramp(side), size), _ramp(size), atol=1e-9, rtol=0)
    cells = torch.nn.functional.interpolate(_ramp(side), size=(size, size), mode="bilinear", align_corners=False)
    assert (cells - _ramp(size)).abs().max() > 0.01


def test_resample_grid_antialias_averages_when_shrinking():
    """Stripes at the finest grid's Nyquist frequency point-sample to full contrast at a quarter of the side, and
    average away with antialias; inside the image a linear field is unchanged by the triangle filter; enlarging
    ignores it; the same size returns the input."""
    stripes = torch.tensor([1.0, -1.0]).repeat(64).expand(1, 3, 128, 128)
    assert resample_grid(stripes, 32).abs().mean() > 0.4
    assert resample_grid(stripes, 32, antialias=True).abs().mean() < 0.05
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(
        resample_grid(_ramp(128), 32, antialias=True)[inner], _ramp(32)[inner], atol=1e-9, rtol=0
    )
    assert torch.equal(resample_grid(_ramp(32), 128, antialias=True), resample_grid(_ramp(32), 128))
    assert resample_grid(stripes, 128) is stripes


def test_resample_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="B, C, H, W"):
        resample_grid(torch.zeros(3, 8, 8), 4)
    with pytest.raises(ValueError, match="size >= 2"):
        resample_grid(torch.zeros(1, 3, 8, 8), 1)
