"""The kernel tests' own helpers: the input factories, the comparisons and the device wrapper."""

from __future__ import annotations

import re

import pytest
import torch

from aniportrait import constants
from aniportrait.kernels import _testing
from aniportrait.kernels._testing import (
    assert_close,
    assert_close_lowp,
    kernel_device,
    lowp_atol,
    make_inverse_lbs_inputs,
    make_manifold_intersect_inputs,
    make_volume_composite_inputs,
    on_kernel_device,
)

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
FACTORIES = {
    "manifold_intersect": lambda **kw: make_manifold_intersect_inputs(2, 5, 12, 3, 24, **kw),
    "inverse_lbs": lambda **kw: make_inverse_lbs_inputs(2, 7, 9, **kw),
    "volume_composite": lambda **kw: make_volume_composite_inputs(2, 8, 16, 3, **kw),
}
SHAPES = {
    "manifold_intersect": [(2, 5, 12), (2, 5, 12, 3), (24,)],
    "inverse_lbs": [(2, 7, 3), (2, 9, 3), (2, 9, 4, 4)],
    "volume_composite": [(2, 8, 16, 3), (2, 8, 16), (2, 8, 16), (2, 8, 16)],
}


# ---------------------------------------------------------------------------------------------------------------------
# Input factories


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_factories_give_the_documented_shapes_and_dtypes(name, dtype):
    tensors = FACTORIES[name](dtype=dtype)
    assert [tuple(t.shape) for t in tensors] == SHAPES[name]
    for t in tensors:
        assert t.device.type == "cpu"
        if name == "volume_composite" and t is tensors[-1]:
            assert t.dtype == torch.bool  # valid
        else:
            assert t.dtype == dtype
            assert torch.isfinite(t).all()


@pytest.mark.parametrize("name", list(FACTORIES))
def test_factories_are_deterministic_for_a_seed(name):
    torch.manual_seed(1)
    first = FACTORIES[name](seed=3)
    torch.manual_seed(2)  # the global generator plays no part
    again = FACTORIES[name](seed=3)
    other = FACTORIES[name](seed=4)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    # Every random tensor changes with the seed (the manifold levels are fixed: skip them).
    for a, c in zip(first, other):
        if a.dim() > 1:
            assert not torch.equal(a, c)


def test_factories_leave_the_global_generator_alone():
    state = torch.get_rng_state()
    for factory in FACTORIES.values():
        factory()
    assert torch.equal(torch.get_rng_state(), state)


def test_manifold_intersect_inputs_fall_through_the_release_levels():
    s, _, levels = make_manifold_intersect_inputs(4, 64, 32, 3, 24, dtype=torch.float64)
    assert levels[0].item() == pytest.approx(constants.LEVELS_START)
    assert levels[-1].item() == pytest.approx(constants.LEVELS_END)
    assert (levels[1:] < levels[:-1]).all()
    # The trend runs from 26 to 5: above the first level at the start, below the last at the end (for rays that hit).
    start, end = s[..., :4].mean(-1), s[..., -4:].mean(-1)
    hit = end < constants.LEVELS_END
    assert (start[hit] > constants.LEVELS_START).float().mean() > 0.9
    # About a tenth of the rays never cross: shifted up by 40, they stay above every level.
    never = (s > constants.LEVELS_START).all(-1).float().mean().item()
    assert 0.03 < never < 0.2


def test_inverse_lbs_inputs_ranges_and_affine_transforms():
    points, verts, mats = make_inverse_lbs_inputs(3, 200, 50, dtype=torch.float64)
    assert verts.abs().max() <= 1.0
    assert points.abs().max() <= 1.1
    assert points.abs().max() > 1.0  # some points lie outside the vertices' box
    assert torch.equal(mats[..., 3, :], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(3, 50, 4))
    # near identity, perturbed
    upper = mats[..., :3, :] - torch.eye(4, dtype=torch.float64)[:3]
    assert 0.05 < upper.abs().mean() < 0.5


def test_volume_composite_inputs_ranges_saturation_and_ties():
    rgb, alpha, depth, valid = make_volume_composite_inputs(2, 16, 32, 3, dtype=torch.float64)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert 0.05 < (alpha == 1.0).float().mean() < 0.15
    assert 0.05 < (alpha == 0.0).float().mean() < 0.15
    assert depth.min() >= 1.7 and depth.max() <= 2.1
    # inside the portrait rays' sample range, which the depths stand for
    assert constants.RAY_START < depth.min() and depth.max() < constants.RAY_END
    ties = sum(len(row) - len(torch.unique(row)) for row in depth.reshape(-1, 32))
    assert ties > 0
    assert 0.7 < valid.float().mean() < 0.9


def test_factories_honour_the_device_argument():
    for t in make_inverse_lbs_inputs(1, 2, 3, device="meta"):
        assert t.device.type == "meta"


# ---------------------------------------------------------------------------------------------------------------------
# assert_close and assert_close_lowp


def test_assert_close_passes_on_equal_and_near_tensors():
    x = torch.randn(4, 5, dtype=torch.float64)
    assert_close(x, x.clone())
    assert_close(x.float(), x)  # float32 rounding is well inside the default tolerances
    assert_close(x + 5e-6, x)
    big = torch.full((3,), 1000.0)
    assert_close(big + 0.05, big)  # within rtol * |expected| = 0.1


def test_assert_close_reports_the_count_and_the_worst_element():
    expected = torch.zeros(3, 4)
    actual = expected.clone()
    actual[1, 2] = 1.0
    actual[0, 0] = 1e-3
    with pytest.raises(
        AssertionError, match=re.escape("rgb: 2/12 elements differ; max |diff| 1.000e+00, worst at (1, 2)")
    ):
        assert_close(actual, expected, name="rgb")


def test_assert_close_relative_tolerance_scales_with_the_expected_value():
    big = torch.full((3,), 1000.0)
    with pytest.raises(AssertionError, match="3/3 elements differ"):
        assert_close(big + 0.5, big)  # 0.5 > 1e-5 + 1e-4 * 1000
    assert_close(big + 0.5, big, rtol=1e-3)


def test_assert_close_rejects_other_shapes_and_non_finite_results():
    with pytest.raises(AssertionError, match=re.escape("depth: shape [2, 3] != [3, 2]")):
        assert_close(torch.zeros(2, 3), torch.zeros(3, 2), name="depth")
    bad = torch.zeros(3)
    bad[1] = float("nan")
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close(bad, torch.zeros(3))
    bad[1] = float("inf")
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close(bad, torch.zeros(3))
    bad[1] = float("nan")
    with pytest.raises(AssertionError, match="non-finite values in the expected"):
        assert_close(torch.zeros(3), bad)  # a broken reference must not pass


def test_assert_close_lowp_bounds_by_twice_the_low_precision_error():
    ref64 = torch.linspace(-2, 2, 50, dtype=torch.float64)
    ref_lowp = ref64.to(torch.bfloat16)
    assert_close_lowp(ref_lowp, ref_lowp, ref64)  # as good as the reference itself
    err = (ref_lowp.double() - ref64).abs()
    assert_close_lowp(ref64 + 1.9 * err, ref_lowp, ref64, atol=0.0)
    worse = ref64 + 2.0 * err + 0.01
    with pytest.raises(AssertionError, match=r"^color: \d+/50 elements exceed 2\*\|ref_lowp - ref64\| \+ 0\.001"):
        assert_close_lowp(worse, ref_lowp, ref64, name="color")
    assert_close_lowp(worse, ref_lowp, ref64, atol=0.011)


def test_assert_close_lowp_rejects_other_shapes_and_non_finite_results():
    with pytest.raises(AssertionError, match="shape"):
        assert_close_lowp(torch.zeros(2), torch.zeros(3), torch.zeros(3))
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close_lowp(torch.tensor([float("nan")]), torch.zeros(1), torch.zeros(1))
    for refs in ((torch.tensor([float("nan")]), torch.zeros(1)), (torch.zeros(1), torch.tensor([float("inf")]))):
        with pytest.raises(AssertionError, match="non-finite values in a reference"):
            assert_close_lowp(torch.zeros(1), *refs)


# ---------------------------------------------------------------------------------------------------------------------
# lowp_atol


def test_lowp_atol_grows_as_precision_falls():
    assert lowp_atol(torch.float32) < lowp_atol(torch.float16) < lowp_atol(torch.bfloat16)
    assert lowp_atol(torch.float16) == pytest.approx(4 * 2.0**-10)
    assert lowp_atol(torch.bfloat16) == pytest.approx(4 * 2.0**-7)
    assert lowp_atol(torch.float32) < 2e-6
    assert lowp_atol(torch.float64) == pytest.approx(4 * 2.0**-52)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lowp_atol_scales_with_magnitude_but_never_below_one(dtype):
    assert lowp_atol(dtype, 8.0) == pytest.approx(8 * lowp_atol(dtype))
    assert lowp_atol(dtype, 0.01) == pytest.approx(lowp_atol(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lowp_atol_covers_a_rounding_to_that_dtype(dtype):
    x = torch.linspace(-4, 4, 1001, dtype=torch.float64)
    assert (x.to(dtype).double() - x).abs().max() <= lowp_atol(dtype, 4.0)


# ---------------------------------------------------------------------------------------------------------------------
# kernel_device and on_kernel_device


def test_kernel_device_is_the_cpu_under_the_interpreter_or_without_cuda(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernel_device() == "cpu"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert kernel_device() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert kernel_device() == "cuda"


def test_on_kernel_device_moves_tensors_and_keeps_gradients(monkeypatch):
    monkeypatch.setattr(_testing, "kernel_device", lambda: "cpu")
    seen = {}

    def entry(a, scale, *, b):
        """An entry point."""
        seen.update(a=a.device.type, b=b.device.type, scale=scale)
        return a * scale, a + b

    wrapped = on_kernel_device(entry)
    assert wrapped.__name__ == "entry" and wrapped.__doc__ == "An entry point."
    a = torch.ones(3, requires_grad=True)
    out = wrapped(a, 2.0, b=torch.ones(3))
    assert isinstance(out, tuple) and len(out) == 2
    assert seen == {"a": "cpu", "b": "cpu", "scale": 2.0}
    assert all(o.device.type == "cpu" for o in out)
    (out[0].sum() + out[1].sum()).backward()
    assert torch.allclose(a.grad, torch.full((3,), 3.0))
