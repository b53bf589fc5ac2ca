"""The pure parts of the label estimator's training: pixel scaling, the learning-rate schedule, the augmentation,
the render-size inputs, the fidelity floor and the dataset loading (the training itself is not run here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from aniportrait.eval import estimator_train
from aniportrait.eval.estimator import TARGET_NAMES, EstimatorConfig
from aniportrait.eval.estimator_train import (
    AUG_GROUP,
    GAIN,
    NOISE,
    OFFSET,
    _lr,
    augment,
    fidelity_floor,
    load_arrays,
    render_size_inputs,
    to_signed,
)
from aniportrait.images import resample_grid
from tests.data.dataset_helpers import write_dataset


def _pixels(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# to_signed


def test_to_signed_maps_uint8_onto_minus_one_to_one():
    pixels = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8).reshape(1, 1, 6).expand(3, 1, 6)
    out = to_signed(pixels)
    assert out.dtype == torch.float32 and out.shape == (3, 1, 6)
    expected = torch.tensor([-1.0, -1 + 1 / 127.5, -1 / 255, 1 / 255, 1 - 1 / 127.5, 1.0]).expand(3, 1, 6)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_to_signed_leaves_its_input_unchanged(dtype):
    pixels = _pixels(2, 3, 4, 4).to(dtype)
    before = pixels.clone()
    to_signed(pixels)
    assert torch.equal(pixels, before)


# ---------------------------------------------------------------------------------------------------------------------
# _lr


def test_lr_warms_up_linearly_to_the_peak():
    steps, peak, warmup = 1000, 2e-3, 100
    warm = [_lr(s, steps, peak, warmup) for s in range(warmup)]
    assert warm[0] == pytest.approx(peak / warmup)
    assert warm[-1] == pytest.approx(peak)
    np.testing.assert_allclose(np.diff(warm), peak / warmup, rtol=1e-9)


def test_lr_decays_as_a_cosine_to_zero_at_the_end():
    steps, peak, warmup = 1000, 2e-3, 100
    assert _lr(warmup, steps, peak, warmup) == pytest.approx(peak)
    assert _lr(warmup + (steps - warmup) // 2, steps, peak, warmup) == pytest.approx(peak / 2)
    quarter = warmup + (steps - warmup) // 4
    assert _lr(quarter, steps, peak, warmup) == pytest.approx(peak * (1 + math.cos(math.pi / 4)) / 2)
    assert _lr(steps, steps, peak, warmup) == pytest.approx(0.0, abs=1e-12)
    decay = [_lr(s, steps, peak, warmup) for s in range(warmup, steps)]
    assert (np.diff(decay) < 0).all()
    assert 0 < decay[-1] < 1e-4 * peak  # the last step trains with almost nothing


def test_lr_without_warmup_and_with_all_steps_warming_up():
    assert _lr(0, 10, 1.0, 0) == pytest.approx(1.0)
    assert _lr(10, 10, 1.0, 0) == pytest.approx(0.0, abs=1e-12)
    assert [_lr(s, 4, 1.0, 4) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])


# ---------------------------------------------------------------------------------------------------------------------
# augment


def _augment(seed: int, n: int = AUG_GROUP + 4, config: EstimatorConfig | None = None):
    images, faces = _pixels(n, 3, 128, 128, seed=1), _pixels(n, 3, 64, 64, seed=2)
    return augment(images, faces, config or EstimatorConfig(), torch.Generator().manual_seed(seed))


def test_augment_gives_the_estimator_input_sides():
    config = EstimatorConfig(portrait_size=48, face_size=32)
    x, y = _augment(0, config=config)
    assert x.shape == (AUG_GROUP + 4, 3, 48, 48) and y.shape == (AUG_GROUP + 4, 3, 32, 32)
    assert x.dtype == y.dtype == torch.float32
    for t in (x, y):
        assert torch.isfinite(t).all() and t.min() >= -1.0 and t.max() <= 1.0


def test_augment_is_a_function_of_the_generator_seed():
    x0, y0 = _augment(0)
    x0_again, y0_again = _augment(0)
    x1, y1 = _augment(1)
    torch.testing.assert_close(x0, x0_again, atol=0, rtol=0)
    torch.testing.assert_close(y0, y0_again, atol=0, rtol=0)
    assert (x0 - x1).abs().mean() > 1e-3
    assert (y0 - y1).abs().mean() > 1e-3


def test_augment_photometric_changes_are_small():
    """On flat grey images resizing changes nothing, so what is left is the per-image gain, offset and noise."""
    n, value = 2 * AUG_GROUP, 0.5
    images = torch.full((n, 3, 128, 128), round((value + 1) * 127.5), dtype=torch.uint8)
    faces = torch.full((n, 3, 64, 64), round((value + 1) * 127.5), dtype=torch.uint8)
    x, y = augment(images, faces, EstimatorConfig(), torch.Generator().manual_seed(0))
    for t, source in ((x, images), (y, faces)):
        base = to_signed(source[:, :, :1, :1])
        per_image = (t - base).abs().mean(dim=(1, 2, 3))
        assert per_image.max() < GAIN * abs(value) + OFFSET + NOISE
        assert per_image.min() > 0  # every image is changed
        assert not torch.allclose(per_image, per_image[0])  # differently


# ---------------------------------------------------------------------------------------------------------------------
# render_size_inputs


@pytest.mark.parametrize(("size", "face_size"), [(128, 64), (32, 32), (64, 16)])
def test_render_size_inputs_resizes_to_the_render_sides(size, face_size):
    images, faces = _pixels(3, 3, 128, 128), _pixels(3, 3, 64, 64)
    x, y = render_size_inputs(images, faces, size, face_size)
    assert x.shape == (3, 3, size, size) and y.shape == (3, 3, face_size, face_size)
    assert x.dtype == y.dtype == torch.float32
    for t in (x, y):
        assert t.min() >= -1.0 - 1e-5 and t.max() <= 1.0 + 1e-5


def test_render_size_inputs_at_the_data_size_is_only_a_rescale():
    images, faces = _pixels(2, 3, 32, 32), _pixels(2, 3, 16, 16)
    x, y = render_size_inputs(images, faces, 32, 16)
    torch.testing.assert_close(x, images.float() / 127.5 - 1, atol=1e-6, rtol=0)
    torch.testing.assert_close(y, faces.float() / 127.5 - 1, atol=1e-6, rtol=0)


def test_render_size_inputs_downsampling_is_antialiased():
    """Alternate white and black columns (the finest grid's Nyquist frequency) shrunk 4x average to mid grey; a
    point-sampling resize would give full contrast."""
    stripes = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    stripes[..., 0::2] = 255
    x, _ = render_size_inputs(stripes, stripes, 8, 8)
    assert x.abs().mean() < 0.03
    assert resample_grid(stripes.float() / 127.5 - 1, 8).abs().mean() > 0.5


# ---------------------------------------------------------------------------------------------------------------------
# fidelity_floor


def test_fidelity_floor_keys_counts_and_values():
    feats = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    floor = fidelity_floor(feats, sizes=(8, 16, 100, 101), pairs=8)
    # N = 101 needs 202 rows: left out. Pairs: min(8, 200 // (2 N)).
    assert list(floor) == ["8", "16", "100"]
    assert [floor[k]["pairs"] for k in floor] == [8, 6, 1]
    for entry in floor.values():
        assert set(entry) == {"mean", "std", "pairs"}
        assert math.isfinite(entry["mean"]) and math.isfinite(entry["std"])
        assert entry["mean"] >= -1e-9 and entry["std"] >= 0
    assert floor["100"]["std"] == 0.0  # a single pair


def test_fidelity_floor_falls_with_the_subset_size_and_is_seeded():
    feats = torch.randn(1024, 4, generator=torch.Generator().manual_seed(0))
    floor = fidelity_floor(feats, sizes=(8, 64))
    assert floor["8"]["mean"] > 2 * floor["64"]["mean"] > 0
    assert fidelity_floor(feats, sizes=(8, 64), seed=0) == floor
    assert fidelity_floor(feats, sizes=(8, 64), seed=1) != floor


def test_fidelity_floor_pairs_are_disjoint(monkeypatch):
    pairs = []

    def record(a, b):
        pairs.append((a[:, 0].long().tolist(), b[:, 0].long().tolist()))
        return 1.0

    monkeypatch.setattr(estimator_train, "frechet_distance", record)
    feats = torch.arange(100, dtype=torch.float32)[:, None].repeat(1, 3)  # row i holds i
    floor = fidelity_floor(feats, sizes=(10,), pairs=3)
    assert floor == {"10": {"mean": 1.0, "std": 0.0, "pairs": 3}}
    assert len(pairs) == 3
    rows = [i for a, b in pairs for i in a + b]
    assert all(len(a) == len(b) == 10 for a, b in pairs)
    assert len(set(rows)) == len(rows) == 60


def test_fidelity_floor_is_empty_with_too_few_rows():
    assert fidelity_floor(torch.randn(10, 4), sizes=(8, 64)) == {}


# ---------------------------------------------------------------------------------------------------------------------
# load_arrays


def _png(path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)


def test_load_arrays_decodes_a_dataset(tmp_path):
    root = write_dataset(tmp_path / "data", n=3, image_size=16, face_size=8)
    images, faces, targets, meta = load_arrays(root)
    assert images.shape == (3, 3, 16, 16) and faces.shape == (3, 3, 8, 8)
    assert images.dtype == faces.dtype == torch.uint8
    for i, stem in enumerate(["000000", "000001", "000002"]):
        assert torch.equal(images[i], _png(root / "images" / f"{stem}.png"))
        assert torch.equal(faces[i], _png(root / "faces" / f"{stem}.png"))
    labels = np.load(root / "labels.npz")
    assert targets.shape == (3, len(TARGET_NAMES)) and targets.dtype == torch.float32
    torch.testing.assert_close(targets[:, :2], torch.from_numpy(labels["camera"]))
    torch.testing.assert_close(targets[:, 2:20], torch.from_numpy(labels["pose"]).reshape(3, 18))
    torch.testing.assert_close(targets[:, 20:], torch.from_numpy(labels["expression"][:, :4]))
    assert meta["count"] == 3 and meta["image_size"] == 16 and meta["face_size"] == 8
