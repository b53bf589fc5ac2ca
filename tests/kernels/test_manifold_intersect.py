"""manifold_intersect: the reference against the release's formulas, Triton against the reference, edge cases."""

import pytest
import torch

from aniportrait import ops
from aniportrait.kernels import manifold_intersect as manifold_intersect_module
from aniportrait.kernels._testing import (
    assert_close,
    assert_close_lowp,
    lowp_atol,
    make_manifold_intersect_inputs,
    on_kernel_device,
)
from aniportrait.kernels.manifold_intersect import ManifoldIntersectFunction, manifold_intersect_ref
from aniportrait.kernels.manifold_intersect import manifold_intersect_triton as _manifold_intersect_triton
from tests.kernels.gpu_helpers import outputs_and_grads as _outputs_and_grads

manifold_intersect_triton = on_kernel_device(_manifold_intersect_triton)

IMPLS = {"ref": manifold_intersect_ref, "triton": manifold_intersect_triton}


def release_intersections(s, points, levels, two_sided, min_step=0.05):
    """The release's per-level loop (``generators/siren.py``), written out: argmax(c_k * cost_k) with
    cost = linspace(S-1, 0, S-1) and c_k the boolean (one-sided) or sign (two-sided) crossing score."""
    S = s.shape[-1]
    cost = torch.linspace(S - 1, 0, S - 1, dtype=s.dtype)
    s_l, s_h = s[..., :-1], s[..., 1:]
    hits, valids = [], []
    for lv in levels.tolist():
        if two_sided:
            c = torch.sign((s_h - lv) * (lv - s_l))
        else:
            c = ((s_h - lv <= 0) & (lv - s_l <= 0)).to(s.dtype) * 2 - 1
        k = torch.max(c * cost, dim=-1).indices  # first maximal index
        sl = torch.gather(s_l, -1, k[..., None])[..., 0]
        sh = torch.gather(s_h, -1, k[..., None])[..., 0]
        pl = torch.gather(points, -2, k[..., None, None].expand(*k.shape, 1, points.shape[-1]))[..., 0, :]
        ph = torch.gather(points, -2, (k + 1)[..., None, None].expand(*k.shape, 1, points.shape[-1]))[..., 0, :]
        valid = (sh <= lv) & (lv <= sl)
        delta = sh - sl
        scale = torch.where(delta.abs() > min_step, delta, torch.full_like(delta, min_step))
        interp = ((sh - lv)[..., None] * pl + (lv - sl)[..., None] * ph) / scale[..., None]
        hits.append(torch.where((valid & (delta.abs() > min_step))[..., None], interp, ph))
        valids.append(valid)
    return torch.stack(hits, dim=-2), torch.stack(valids, dim=-1)


@pytest.mark.parametrize("block", [512, 7], ids=["one-block", "blocks-of-7-rays"])
@pytest.mark.parametrize("two_sided", [False, True], ids=["one-sided", "two-sided"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_manifold_intersect_ref_matches_release_formula(two_sided, seed, block, monkeypatch):
    monkeypatch.setattr(manifold_intersect_module, "SEARCH_BLOCK_RAYS", block)  # 100 rays: 15 blocks, the last of 2
    s, points, levels = make_manifold_intersect_inputs(2, 50, 33, 3, 24, dtype=torch.float64, seed=seed)
    if seed == 2:  # coarse values so that touching (score 0) intervals and exact crossings occur
        s = torch.round(s * 2) / 2
    ref_hits, ref_valid = manifold_intersect_ref(s, points, levels, two_sided=two_sided)
    rel_hits, rel_valid = release_intersections(s, points, levels, two_sided)
    assert torch.equal(ref_valid, rel_valid)
    assert_close(ref_hits, rel_hits, atol=1e-12, rtol=1e-12, name="hits")


SHAPES = [
    pytest.param(1, 1, 2, 1, 1, id="B1-R1-S2-C1-L1"),
    pytest.param(1, 37, 64, 3, 24, id="B1-R37-S64-C3-L24"),
    pytest.param(2, 100, 33, 1, 5, id="B2-R100-S33-C1-L5"),
    pytest.param(3, 17, 256, 9, 24, id="B3-R17-S256-C9-L24"),
    pytest.param(1, 300, 7, 4, 3, id="B1-R300-S7-C4-L3"),
]


def _grads(fn, s, points, levels, d_hits, two_sided):
    s = s.detach().clone().requires_grad_()
    points = points.detach().clone().requires_grad_()
    hits, valid = fn(s, points, levels, two_sided=two_sided)
    d_s, d_points = torch.autograd.grad(hits, (s, points), d_hits.to(hits.dtype))
    return hits, valid, d_s, d_points


@pytest.mark.interpret
@pytest.mark.parametrize("two_sided", [False, True], ids=["one-sided", "two-sided"])
@pytest.mark.parametrize("B,R,S,C,L", SHAPES)
def test_manifold_intersect_matches_ref(B, R, S, C, L, two_sided):
    s, points, levels = make_manifold_intersect_inputs(B, R, S, C, L, seed=B * 1000 + R)
    d_hits = torch.randn(B, R, L, C, dtype=torch.float64)
    ref = _grads(manifold_intersect_ref, s.double(), points.double(), levels.double(), d_hits, two_sided)
    tri = _grads(manifold_intersect_triton, s, points, levels, d_hits, two_sided)
    assert torch.equal(tri[1], ref[1]), "valid differs"
    for name, t, r in zip(["hits", "d_s", "d_points"], (tri[0], tri[2], tri[3]), (ref[0], ref[2], ref[3])):
        assert t.dtype == torch.float32
        assert_close(t, r, atol=1e-5, rtol=1e-4, name=name)


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("two_sided", [False, True], ids=["one-sided", "two-sided"])
def test_manifold_intersect_low_precision(dtype, two_sided):
    s, points, levels = make_manifold_intersect_inputs(2, 45, 64, 3, 24, dtype=dtype, seed=7)
    d_hits = torch.randn(2, 45, 24, 3, dtype=torch.float64)
    ref64 = _grads(manifold_intersect_ref, s.double(), points.double(), levels.double(), d_hits, two_sided)
    ref_lp = _grads(manifold_intersect_ref, s, points, levels, d_hits, two_sided)
    tri = _grads(manifold_intersect_triton, s, points, levels, d_hits, two_sided)
    assert torch.equal(tri[1], ref64[1])
    for i, name in [(0, "hits"), (2, "d_s"), (3, "d_points")]:
        assert tri[i].dtype == dtype
        scale = ref64[i].abs().max().item()
        assert_close_lowp(tri[i], ref_lp[i], ref64[i], atol=lowp_atol(dtype, scale), name=name)


@pytest.mark.interpret
def test_manifold_intersect_non_contiguous_and_mixed_dtypes():
    s, points, levels = make_manifold_intersect_inputs(3, 20, 40, 5, 6, seed=3)
    s_nc = s.transpose(0, 1).contiguous().transpose(0, 1)  # same values, permuted strides
    points_nc = points[..., ::2]  # strided channel slice, C = 3
    assert not s_nc.is_contiguous() and not points_nc.is_contiguous()
    for fn in IMPLS.values():
        hits, valid = fn(s_nc, points_nc.to(torch.bfloat16), levels.double())
        ref_hits, ref_valid = manifold_intersect_ref(s, points[..., ::2].contiguous().to(torch.bfloat16), levels)
        assert hits.dtype == torch.bfloat16
        assert torch.equal(valid, ref_valid)
        assert_close(hits.float(), ref_hits.float(), atol=1e-2, rtol=1e-2, name=fn.__name__)


def _smooth_inputs(B, R, S, C, L, seed):
    """Inputs whose crossings and |delta s| are far (in units of gradcheck's eps) from every decision boundary."""
    s, points, levels = make_manifold_intersect_inputs(B, R, S, C, L, dtype=torch.float64, seed=seed, noise=0.7)
    margin_level = (s[..., None] - levels).abs().min().item()
    margin_step = ((s[..., 1:] - s[..., :-1]).abs() - 0.05).abs().min().item()
    assert margin_level > 1e-4 and margin_step > 1e-4, "pick another seed: an input sits on a decision boundary"
    return s.requires_grad_(), points.requires_grad_(), levels


@pytest.mark.gradcheck
@pytest.mark.parametrize("two_sided", [False, True], ids=["one-sided", "two-sided"])
def test_manifold_intersect_ref_gradcheck(two_sided):
    s, points, levels = _smooth_inputs(2, 3, 9, 2, 4, seed=11)
    assert torch.autograd.gradcheck(
        lambda a, b: manifold_intersect_ref(a, b, levels, two_sided=two_sided)[0], (s, points), eps=1e-6, atol=1e-5
    )


@pytest.mark.gradcheck
@pytest.mark.interpret
@pytest.mark.parametrize("two_sided", [False, True], ids=["one-sided", "two-sided"])
def test_manifold_intersect_gradcheck(two_sided):
    s, points, levels = _smooth_inputs(2, 3, 9, 2, 4, seed=11)
    assert torch.autograd.gradcheck(
        lambda a, b: on_kernel_device(ManifoldIntersectFunction.apply)(a, b, levels, two_sided, 0.05)[0],
        (s, points),
        eps=1e-6,
        atol=1e-5,
    )


def _one_ray(values, C=2):
    s = torch.tensor(values, dtype=torch.float64).view(1, 1, -1)
    points = torch.arange(s.shape[-1] * C, dtype=torch.float64).view(1, 1, -1, C)
    return s.requires_grad_(), points.requires_grad_()


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
def test_manifold_intersect_no_crossing_uses_last_sample(impl):
    s, points = _one_ray([30.0, 29.0, 28.0, 27.0])
    hits, valid = IMPLS[impl](s, points, torch.tensor([10.0, 25.0], dtype=torch.float64))
    assert not valid.any()
    assert torch.equal(hits[0, 0], points[0, 0, -1].expand(2, 2))
    d_s, d_points = torch.autograd.grad(hits.sum(), (s, points))
    assert torch.equal(d_s, torch.zeros_like(d_s))
    assert d_points[0, 0, :-1].abs().sum() == 0 and torch.equal(d_points[0, 0, -1], torch.full((2,), 2.0).double())


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
def test_manifold_intersect_crossing_exactly_at_a_sample(impl):
    s, points = _one_ray([12.0, 10.0, 8.0, 6.0])
    hits, valid = IMPLS[impl](s, points, torch.tensor([10.0, 12.0, 6.0, 9.0], dtype=torch.float64))
    assert valid.all()
    p = points[0, 0].detach()
    # s[1] == 10 ends interval 0 (its first inclusive match), so the hit is p[1]; 12 starts interval 0: p[0];
    # 6 ends the last interval: p[3]; 9 interpolates half-way inside interval 1.
    expected = torch.stack([p[1], p[0], p[3], (p[1] + p[2]) / 2])
    assert_close(hits[0, 0], expected, atol=1e-12, rtol=0, name="hits")


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
def test_manifold_intersect_flat_field_takes_far_end_without_s_gradient(impl):
    s, points = _one_ray([10.02, 9.99, 9.97, 9.95])  # every |delta s| <= 0.05
    hits, valid = IMPLS[impl](s, points, torch.tensor([10.0], dtype=torch.float64))
    assert valid.all()
    assert torch.equal(hits[0, 0, 0], points[0, 0, 1].detach())
    d_s, _ = torch.autograd.grad(hits.sum(), (s, points))
    assert torch.equal(d_s, torch.zeros_like(d_s))


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
def test_manifold_intersect_two_sided_takes_first_rising_crossing_as_invalid(impl):
    s, points = _one_ray([5.0, 15.0, 14.0, 4.0])  # rises through 10 in interval 0, falls through it in interval 2
    levels = torch.tensor([10.0], dtype=torch.float64)
    p = points[0, 0].detach()
    hits, valid = IMPLS[impl](s, points, levels, two_sided=True)
    assert not valid.any() and torch.equal(hits[0, 0, 0], p[1])
    hits, valid = IMPLS[impl](s, points, levels, two_sided=False)
    assert valid.all()
    assert_close(hits[0, 0, 0], p[2] + 0.4 * (p[3] - p[2]), atol=1e-12, rtol=0, name="hits")


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
def test_manifold_intersect_two_sided_touching_interval(impl):
    # No strict crossing of 10. Interval 1 touches it while rising (s[2] == 10): it scores 0 before the last
    # interval, so the two-sided rule takes it (invalid: p[2]); the one-sided rule finds nothing (p[4]).
    s, points = _one_ray([8.0, 9.0, 10.0, 12.0, 13.0])
    levels = torch.tensor([10.0], dtype=torch.float64)
    p = points[0, 0].detach()
    hits, valid = IMPLS[impl](s, points, levels, two_sided=True)
    assert not valid.any() and torch.equal(hits[0, 0, 0], p[2])
    hits, valid = IMPLS[impl](s, points, levels, two_sided=False)
    assert not valid.any() and torch.equal(hits[0, 0, 0], p[4])


@pytest.mark.interpret
def test_manifold_intersect_backward_is_deterministic():
    s, points, levels = make_manifold_intersect_inputs(2, 64, 48, 3, 24, seed=5)
    d_hits = torch.randn(2, 64, 24, 3)
    runs = [_grads(manifold_intersect_triton, s, points, levels, d_hits, False) for _ in range(2)]
    assert torch.equal(runs[0][2], runs[1][2]) and torch.equal(runs[0][3], runs[1][3])


@pytest.mark.parametrize(
    "s_shape,p_shape,l_shape,match",
    [
        ((2, 3, 8), (2, 3, 7, 3), (4,), r"points must have shape \[B, R, S, C\]"),
        ((2, 3), (2, 3, 8, 3), (4,), r"s must have shape \[B, R, S\]"),
        ((2, 3, 1), (2, 3, 1, 3), (4,), r"S >= 2"),
        ((2, 3, 8), (2, 3, 8, 3), (4, 1), r"levels must have shape \[L\]"),
        ((2, 3, 8), (2, 3, 8, 0), (4,), r"C >= 1"),
    ],
)
def test_manifold_intersect_rejects_bad_shapes(s_shape, p_shape, l_shape, match):
    with pytest.raises(ValueError, match=match):
        ops.manifold_intersect(torch.zeros(s_shape), torch.zeros(p_shape), torch.zeros(l_shape))


def test_manifold_intersect_rejects_bad_dtype_and_min_step():
    s, points, levels = make_manifold_intersect_inputs(1, 2, 4, 1, 2)
    with pytest.raises(ValueError, match="dtype"):
        ops.manifold_intersect(s.long(), points, levels)
    with pytest.raises(ValueError, match="min_step"):
        ops.manifold_intersect(s, points, levels, min_step=-1.0)


# -- the release's sizes on a real GPU (marker gpu, skipped without CUDA; see gpu_helpers.py) ----------------------


@pytest.mark.gpu
def test_manifold_intersect_release_size():
    """One LR frame of the release: 128 x 128 rays, 256 samples, 24 levels."""
    s, points, levels = make_manifold_intersect_inputs(1, 128 * 128, 256, 3, 24, device="cuda")

    def run(impl, dtype):
        return _outputs_and_grads(
            lambda a, b: ops.manifold_intersect(a, b, levels.to(dtype), impl=impl),
            (s.to(dtype), points.to(dtype)),
        )

    (tri_hits, tri_valid), tri_grads = run("triton", torch.float32)
    (ref_hits, ref_valid), ref_grads = run("ref", torch.float64)
    # Crossings found in fp32 and fp64 agree except where a sample sits within rounding of a level.
    assert (tri_valid != ref_valid).float().mean() < 1e-4
    both = tri_valid & ref_valid
    assert_close(tri_hits[both], ref_hits[both], atol=1e-4, rtol=1e-4, name="hits")
    for tri, ref, name in zip(tri_grads, ref_grads, ("d_s", "d_points")):
        rays = both.any(dim=-1) & (tri_valid == ref_valid).all(dim=-1)
        assert_close(tri[rays], ref[rays], atol=1e-3, rtol=1e-3, name=name)
