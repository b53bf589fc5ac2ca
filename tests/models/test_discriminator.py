"""Discriminators: GRAM-style CoordConv encoders, the three-way MultiDiscriminator, and the progressive load of a
smaller one's blocks."""

import math

import pytest
import torch

from aniportrait.models.discriminator import (
    TINY_DISCRIMINATOR,
    CoordConv2d,
    DiscriminatorConfig,
    MultiDiscriminator,
    PortraitDiscriminator,
    ResidualCoordConvBlock,
    torso_crop,
)
from aniportrait.train import losses


@pytest.mark.parametrize(
    "img_size, pose_outputs",
    [
        pytest.param(4, 2, id="S4"),
        pytest.param(8, 2, id="S8"),
        pytest.param(16, 2, id="S16"),
        pytest.param(32, 0, id="S32-logit-only"),
        pytest.param(64, 2, id="S64"),
        pytest.param((4, 16), 2, id="torso-4x16"),
        pytest.param((8, 32), 2, id="torso-8x32"),
    ],
)
def test_discriminator_output_shape(img_size, pose_outputs):
    d = PortraitDiscriminator(img_size, max_channels=32, pose_outputs=pose_outputs)
    H, W = d.img_shape
    out = d(torch.randn(3, 3, H, W))
    assert out.shape == (3, 1 + pose_outputs)
    assert torch.isfinite(out).all()
    # log2(short side) - 1 blocks, each halving, so the final 2x2 conv sees a 2-row map
    assert len(d.layers) == int(math.log2(min(H, W))) - 1


def test_discriminator_channel_schedule_matches_gram():
    d = PortraitDiscriminator(256)
    assert d.fromRGB.out_channels == 32  # 2^(13 - 8)
    widths = [(b.conv1.conv.in_channels - 2, b.conv2.conv.out_channels) for b in d.layers]
    assert widths == [(32, 64), (64, 128), (128, 256), (256, 400), (400, 400), (400, 400), (400, 400)]
    assert (d.final_layer.in_channels, d.final_layer.out_channels, d.final_layer.kernel_size) == (400, 3, (2, 2))


@pytest.mark.parametrize("img_size", [3, 12, (8, 12), 2])
def test_discriminator_rejects_bad_sizes(img_size):
    with pytest.raises(ValueError, match="img_size"):
        PortraitDiscriminator(img_size)


def test_discriminator_rejects_wrong_input_shape():
    d = PortraitDiscriminator(16, max_channels=16)
    with pytest.raises(ValueError, match=r"\[B, 3, 16, 16\]"):
        d(torch.zeros(1, 3, 32, 32))


def test_discriminator_gradients_flow():
    d = PortraitDiscriminator(16, max_channels=32)
    image = torch.randn(2, 3, 16, 16, requires_grad=True)
    d(image).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    for name, p in d.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_coordconv_appends_two_coordinate_channels():
    x = torch.randn(2, 5, 4, 6)
    with_coords = CoordConv2d.add_coords(x)
    assert with_coords.shape == (2, 7, 4, 6)
    assert torch.equal(with_coords[:, :5], x)
    cx, cy = with_coords[:, 5], with_coords[:, 6]
    assert cx.min() == -1 and cx.max() == 1 and cy.min() == -1 and cy.max() == 1
    torch.testing.assert_close(cx[0, 0], torch.linspace(-1, 1, 6))  # x runs along columns
    torch.testing.assert_close(cy[0, :, 0], torch.linspace(-1, 1, 4))  # y runs along rows
    assert (cx == cx[:, :1]).all() and (cy == cy[:, :, :1]).all()
    conv = CoordConv2d(5, 8)
    assert conv.conv.in_channels == 7
    assert conv(x).shape == (2, 8, 4, 6)


def test_residual_block_downsamples_and_projects():
    block = ResidualCoordConvBlock(4, 8)
    assert block(torch.randn(1, 4, 8, 8)).shape == (1, 8, 4, 4)
    assert block.proj is not None
    assert ResidualCoordConvBlock(8, 8).proj is None


def test_torso_crop_takes_the_lower_quarter_rows():
    H, W = 16, 12
    rows = torch.arange(H, dtype=torch.float32)[:, None].expand(H, W)
    image = rows.expand(2, 3, H, W)
    crop = torso_crop(image)
    assert crop.shape == (2, 3, H // 4, W)
    torch.testing.assert_close(crop[0, 0, :, 0], torch.arange(3 * H // 4, H, dtype=torch.float32))
    with pytest.raises(ValueError, match="divisible by 4"):
        torso_crop(torch.zeros(1, 3, 10, 10))


def test_multi_discriminator_inputs_and_gradients():
    md = MultiDiscriminator(TINY_DISCRIMINATOR)
    assert md.torso.img_shape == (4, 16)
    portrait = torch.randn(2, 3, 16, 16, requires_grad=True)
    face = torch.randn(2, 3, 16, 16, requires_grad=True)
    inputs = md.inputs(portrait, face)
    assert inputs["torso"].shape == (2, 3, 4, 16)
    out = md.judge(inputs)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"whole": (2, 3), "face": (2, 3), "torso": (2, 3)}
    (d_torso,) = torch.autograd.grad(out["torso"][:, 0].sum(), portrait, retain_graph=True)
    assert d_torso[:, :, :12].abs().sum() == 0 and d_torso[:, :, 12:].abs().sum() > 0  # lower quarter only
    total = sum(
        {"whole": 0.1, "face": 1.0, "torso": 0.5}[k] * losses.g_loss_nonsaturating(v[:, 0]) for k, v in out.items()
    )
    total.backward()
    assert portrait.grad[:, :, :12].abs().sum() > 0 and face.grad.abs().sum() > 0
    for name in ("whole", "face", "torso"):
        assert all(p.grad is not None for p in getattr(md, name).parameters()), name


# -- progressive loading (a run started from a smaller one) --------------------------------------------------------


def test_progressive_load_takes_the_shared_blocks():
    torch.manual_seed(0)
    small = MultiDiscriminator(DiscriminatorConfig(whole_size=16, face_size=16, max_channels=32))
    large = MultiDiscriminator(DiscriminatorConfig(whole_size=64, face_size=32, max_channels=32))
    copied, total = large.load_progressive(small.state_dict())
    assert 0 < copied < total
    # The small encoder's blocks are the large one's last blocks.
    for name in ("whole", "face", "torso"):
        src, dst = getattr(small, name).layers, getattr(large, name).layers
        for k in range(1, len(src) + 1):
            for (a, p), (b, q) in zip(src[-k].named_parameters(), dst[-k].named_parameters()):
                assert a == b and torch.equal(p, q), (name, k, a)
        assert torch.equal(getattr(small, name).final_layer.weight, getattr(large, name).final_layer.weight)
    same = MultiDiscriminator(DiscriminatorConfig(whole_size=16, face_size=16, max_channels=32))
    total_same = len(same.state_dict())
    assert same.load_progressive(small.state_dict()) == (total_same, total_same)
