"""inverse_lbs: the reference against a brute-force loop, Triton against the reference, ties and edge cases."""

import pytest
import torch

from aniportrait import ops
from aniportrait.kernels import inverse_lbs as inverse_lbs_module
from aniportrait.kernels._testing import assert_close, assert_close_lowp, lowp_atol, make_inverse_lbs_inputs
from aniportrait.kernels.inverse_lbs import MIN_SQ_DIST, InverseLBSFunction, inverse_lbs_ref, inverse_lbs_triton
from tests.kernels.gpu_helpers import outputs_and_grads as _outputs_and_grads

# Triton runs on CUDA when there is one, otherwise on CPU tensors under the interpreter (tests/conftest.py).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
IMPLS = {"ref": inverse_lbs_ref, "triton": inverse_lbs_triton}
RELEASE_INF_WEIGHT = 100086.0  # the release's replacement for 1 / 0


def brute_force(points, verts, mats, k):
    """Python loop over every (query, vertex) pair in float64: sort by (d2, index), blend, apply.

    ``k = 1`` uses the release's weights (1 / d2 with inf -> 100086, normalised); ``k > 1`` clamps d2 instead.
    """
    B, P, _ = points.shape
    canonical = torch.zeros(B, P, 3, dtype=torch.float64)
    transforms = torch.zeros(B, P, 4, 4, dtype=torch.float64)
    for b in range(B):
        vs = verts[b].tolist()
        for q in range(P):
            p = points[b, q].tolist()
            cands = []
            for j, v in enumerate(vs):
                dx, dy, dz = p[0] - v[0], p[1] - v[1], p[2] - v[2]
                cands.append((dx * dx + dy * dy + dz * dz, j))
            chosen = sorted(cands)[:k]
            if k == 1:
                u = [1.0 / d if d > 0 else RELEASE_INF_WEIGHT for d, _ in chosen]
            else:
                u = [1.0 / max(d, MIN_SQ_DIST) for d, _ in chosen]
            t = sum(ui / sum(u) * mats[b, j].double() for ui, (_, j) in zip(u, chosen))
            transforms[b, q] = t
            canonical[b, q] = t[:3, :3] @ torch.tensor(p, dtype=torch.float64) + t[:3, 3]
    return canonical, transforms


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("coarse", [False, True], ids=["random", "coarse-ties"])
def test_inverse_lbs_ref_matches_brute_force(k, coarse):
    points, verts, mats = make_inverse_lbs_inputs(2, 40, 11, dtype=torch.float64, seed=k)
    if coarse:  # a half-unit grid: many exact distance ties, and queries sitting on vertices
        points, verts = torch.round(points * 2) / 2, torch.round(verts * 2) / 2
    ref_c, ref_t = inverse_lbs_ref(points, verts, mats, k=k)
    bf_c, bf_t = brute_force(points, verts, mats, k)
    assert_close(ref_t, bf_t, atol=1e-12, rtol=1e-12, name="transforms")
    assert_close(ref_c, bf_c, atol=1e-12, rtol=1e-12, name="canonical")


def _sorted_sq_dists(points, verts):
    return ((points[:, :, None, :].double() - verts[:, None, :, :].double()) ** 2).sum(-1).sort(dim=-1).values


def separated_inputs(B, P, V, k, *, dtype=torch.float32, seed=0, margin=1e-3):
    """``make_inverse_lbs_inputs`` keeping only queries whose k-th and (k+1)-th nearest squared distances (of the
    dtype-rounded inputs) differ by more than ``margin`` relatively, so rounding cannot change the neighbour set."""
    points, verts, mats = make_inverse_lbs_inputs(B, 4 * P + 16, V, dtype=dtype, seed=seed)
    d2 = _sorted_sq_dists(points, verts)
    ok = torch.ones(d2.shape[:2], dtype=torch.bool)
    if k < V:
        ok = d2[..., k] - d2[..., k - 1] > margin * d2[..., k]
    keep = [torch.nonzero(ok[b])[:P, 0] for b in range(B)]
    assert all(len(i) == P for i in keep), "pick another seed: too many queries near a neighbour-set boundary"
    return torch.stack([points[b, i] for b, i in enumerate(keep)]), verts, mats


def _run(fn, points, verts, mats, k, d_c, d_t, device="cpu"):
    """Outputs and gradients w.r.t. (points, verts, vert_transforms) for cotangents (d_c, d_t); zero for unused."""
    inputs = [x.detach().to(device).clone().requires_grad_() for x in (points, verts, mats)]
    canonical, transforms = fn(*inputs, k=k)
    grads = torch.autograd.grad(
        (canonical, transforms),
        inputs,
        (d_c.to(device, canonical.dtype), d_t.to(device, transforms.dtype)),
        allow_unused=True,
        materialize_grads=True,
    )
    return [t.cpu() for t in (canonical, transforms, *grads)]


NAMES = ["canonical", "transforms", "d_points", "d_verts", "d_vert_transforms"]

SHAPES = [
    pytest.param(1, 1, 1, 1, id="B1-P1-V1-k1"),
    pytest.param(2, 37, 5, 1, id="B2-P37-V5-k1"),
    pytest.param(1, 257, 61, 1, id="B1-P257-V61-k1"),
    pytest.param(1, 1, 33, 2, id="B1-P1-V33-k2"),
    pytest.param(2, 100, 33, 2, id="B2-P100-V33-k2"),
    pytest.param(1, 1100, 20, 2, id="B1-P1100-V20-k2"),
    pytest.param(2, 37, 5, 4, id="B2-P37-V5-k4"),
    pytest.param(1, 257, 61, 4, id="B1-P257-V61-k4"),
    pytest.param(3, 16, 4, 4, id="B3-P16-V4-k4"),
]


@pytest.mark.interpret
@pytest.mark.parametrize("B,P,V,k", SHAPES)
def test_inverse_lbs_matches_ref(B, P, V, k):
    points, verts, mats = separated_inputs(B, P, V, k, seed=B * 1000 + P + V)
    d_c, d_t = torch.randn(B, P, 3, dtype=torch.float64), torch.randn(B, P, 4, 4, dtype=torch.float64)
    ref = _run(inverse_lbs_ref, points.double(), verts.double(), mats.double(), k, d_c, d_t)
    tri = _run(inverse_lbs_triton, points, verts, mats, k, d_c, d_t, DEVICE)
    for name, t, r in zip(NAMES, tri, ref):
        assert t.dtype == torch.float32
        assert_close(t, r, atol=1e-5, rtol=1e-4, name=name)
    if k == 1:
        assert not tri[3].any(), "k = 1 gives verts no gradient"


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("k", [1, 4])
def test_inverse_lbs_low_precision(dtype, k):
    B, P, V = 2, 100, 33
    points, verts, mats = separated_inputs(B, P, V, k, dtype=dtype, seed=7)
    d_c = torch.randn(B, P, 3, dtype=torch.float64).to(dtype).double()
    d_t = torch.randn(B, P, 4, 4, dtype=torch.float64).to(dtype).double()
    ref64 = _run(inverse_lbs_ref, points.double(), verts.double(), mats.double(), k, d_c, d_t)
    ref_lp = _run(inverse_lbs_ref, points, verts, mats, k, d_c, d_t)
    tri = _run(inverse_lbs_triton, points, verts, mats, k, d_c, d_t, DEVICE)
    for name, t, r_lp, r64 in zip(NAMES, tri, ref_lp, ref64):
        assert t.dtype == dtype
        scale = r64.abs().max().item()
        assert_close_lowp(t, r_lp, r64, atol=lowp_atol(dtype, scale), name=name)


@pytest.mark.interpret
def test_inverse_lbs_non_contiguous_and_mixed_dtypes():
    points, verts, mats = separated_inputs(2, 30, 9, 3, seed=4)
    points_nc = points.transpose(0, 1).contiguous().transpose(0, 1)
    mats_nc = mats.transpose(-1, -2).contiguous().transpose(-1, -2)
    verts_nc = torch.cat([verts, verts], dim=-1)[..., :3]
    assert not (points_nc.is_contiguous() or verts_nc.is_contiguous() or mats_nc.is_contiguous())
    d_c, d_t = torch.randn(2, 30, 3, dtype=torch.float64), torch.randn(2, 30, 4, 4, dtype=torch.float64)
    low = (points_nc.half(), verts_nc, mats_nc.bfloat16())
    ref = _run(inverse_lbs_ref, *(x.double() for x in low), 3, d_c, d_t)
    tri = _run(inverse_lbs_triton, *low, 3, d_c, d_t, DEVICE)
    for name, t, r, dt in zip(NAMES, tri, ref, [torch.half, torch.bfloat16, torch.half, torch.float, torch.bfloat16]):
        assert t.dtype == dt, name
        assert_close(t, r, atol=4e-2, rtol=2e-2, name=name)


@pytest.mark.interpret
@pytest.mark.parametrize("k", [1, 3])
def test_inverse_lbs_ties_across_vertex_chunks(k):
    # V > BLOCK_V (256 under the interpreter, 64 on a GPU), with exact copies of vertex 10 at 300, 520 and 599 (and
    # of vertex 40 at 41): the lowest indices must win across and within chunks. Only points need a gradient here.
    points, verts, mats = separated_inputs(1, 40, 600, k, seed=9)
    verts[0, [300, 520, 599]] = verts[0, 10].clone()
    verts[0, 41] = verts[0, 40].clone()
    points[0, :8] = verts[0, 10] + 1e-2 * torch.randn(8, 3)
    points[0, 8:16] = verts[0, 40] + 1e-2 * torch.randn(8, 3)
    outs = {}
    for name, fn, device, dtype in [
        ("ref", inverse_lbs_ref, "cpu", torch.float64),
        ("triton", inverse_lbs_triton, DEVICE, None),
    ]:
        p = points.to(device, dtype).requires_grad_()
        canonical, transforms = fn(p, verts.to(device, dtype), mats.to(device, dtype), k=k)
        (d_points,) = torch.autograd.grad(canonical.sum() + transforms.sum(), p)
        outs[name] = [t.cpu() for t in (canonical, transforms, d_points)]
    for name, t, r in zip(NAMES, outs["triton"], outs["ref"]):
        assert_close(t, r, atol=1e-5, rtol=1e-4, name=name)
    expected = mats[0, 10] if k == 1 else mats[0, [10, 300, 520]].mean(0)  # the copies are equidistant
    assert_close(outs["triton"][1][0, :8], expected.expand(8, 4, 4), atol=1e-6, rtol=0, name="copies")


@pytest.mark.interpret
@pytest.mark.parametrize("which", [0, 1, 2], ids=["points", "verts", "vert_transforms"])
def test_inverse_lbs_grad_of_one_input(which):
    # The backward skips the passes (and outputs) that the other inputs would need.
    points, verts, mats = separated_inputs(2, 20, 6, 2, seed=12)
    d_c, d_t = torch.randn(2, 20, 3, dtype=torch.float64), torch.randn(2, 20, 4, 4, dtype=torch.float64)
    grads = []
    for fn, device, dtype in [(inverse_lbs_ref, "cpu", torch.float64), (inverse_lbs_triton, DEVICE, torch.float32)]:
        inputs = [x.to(device, dtype) for x in (points, verts, mats)]
        inputs[which].requires_grad_()
        canonical, transforms = fn(*inputs, k=2)
        (grad,) = torch.autograd.grad(
            (canonical, transforms), inputs[which], (d_c.to(device, dtype), d_t.to(device, dtype))
        )
        grads.append(grad.cpu())
    assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4, name=NAMES[2 + which])


@pytest.mark.gradcheck
@pytest.mark.parametrize("k", [1, 3])
def test_inverse_lbs_ref_gradcheck(k):
    points, verts, mats = separated_inputs(2, 6, 7, k, dtype=torch.float64, seed=11, margin=1e-2)
    inputs = tuple(x.requires_grad_() for x in (points, verts, mats))
    assert torch.autograd.gradcheck(lambda *a: inverse_lbs_ref(*a, k=k), inputs, eps=1e-6, atol=1e-5)


@pytest.mark.gradcheck
@pytest.mark.interpret
@pytest.mark.parametrize("k", [1, 3])
def test_inverse_lbs_gradcheck(k):
    points, verts, mats = separated_inputs(1, 3, 5, k, dtype=torch.float64, seed=11, margin=1e-2)
    inputs = tuple(x.to(DEVICE).requires_grad_() for x in (points, verts, mats))
    assert torch.autograd.gradcheck(lambda *a: InverseLBSFunction.apply(*a, k), inputs, eps=1e-6, atol=1e-5)


def _symmetric_scene(dtype=torch.float32):
    """Vertices 2, 3, 5, 7 at (0, ±0.5, 0) and (±0.5, 0, 0), the rest far away, with distinct matrices; queries
    on the z axis are exactly equidistant from the four."""
    verts = torch.full((1, 9, 3), 5.0, dtype=dtype) + torch.arange(9, dtype=dtype)[None, :, None]
    verts[0, 2], verts[0, 3] = torch.tensor([0.0, 0.5, 0.0]), torch.tensor([0.0, -0.5, 0.0])
    verts[0, 5], verts[0, 7] = torch.tensor([0.5, 0.0, 0.0]), torch.tensor([-0.5, 0.0, 0.0])
    _, _, mats = make_inverse_lbs_inputs(1, 1, 9, dtype=dtype, seed=3)
    points = torch.zeros(1, 4, 3, dtype=dtype)
    points[0, :, 2] = torch.tensor([0.0, 0.25, -0.7, 1.5])
    return points, verts, mats


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("k,winners", [(1, [2]), (2, [2, 3]), (3, [2, 3, 5])], ids=["k1", "k2", "k3"])
def test_inverse_lbs_exact_ties_go_to_lower_index(impl, k, winners):
    points, verts, mats = _symmetric_scene()
    device = DEVICE if impl == "triton" else "cpu"
    _, transforms = IMPLS[impl](points.to(device), verts.to(device), mats.to(device), k=k)
    expected = mats[0, winners].mean(0).expand(4, 4, 4)  # equal distances: equal weights
    assert_close(transforms[0], expected, atol=1e-6, rtol=1e-6, name="transforms")
    if k == 1:
        assert torch.equal(transforms[0].cpu(), expected)


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("k", [1, 2])
def test_inverse_lbs_ties_with_permuted_components(impl, k):
    # Vertices 1 and 4 at (0.3, 0.7, 0.1) and (0.7, 0.3, 0.1): for a query (r, r, z) their (dx, dy) are swapped, so
    # dx*dx + dy*dy + dz*dz ties exactly only without FMA contraction (which the kernels turn off).
    verts = 5.0 + torch.rand(1, 7, 3)
    verts[0, 1], verts[0, 4] = torch.tensor([0.3, 0.7, 0.1]), torch.tensor([0.7, 0.3, 0.1])
    _, _, mats = make_inverse_lbs_inputs(1, 1, 7, seed=4)
    points = torch.rand(1, 16, 3) * 0.2 + 0.4
    points[..., 1] = points[..., 0]
    device = DEVICE if impl == "triton" else "cpu"
    _, transforms = IMPLS[impl](points.to(device), verts.to(device), mats.to(device), k=k)
    expected = mats[0, 1] if k == 1 else (mats[0, 1] + mats[0, 4]) / 2
    assert_close(transforms[0], expected.expand(16, 4, 4), atol=1e-6, rtol=0, name="transforms")


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("k", [1, 3])
def test_inverse_lbs_query_on_a_vertex(impl, k):
    points, verts, mats = make_inverse_lbs_inputs(1, 6, 8, seed=5)
    points[0, [1, 4]] = verts[0, [2, 6]]  # d2 = 0 exactly
    device = DEVICE if impl == "triton" else "cpu"
    d_c, d_t = torch.randn(1, 6, 3), torch.randn(1, 6, 4, 4)
    out = _run(IMPLS[impl], points, verts, mats, k, d_c, d_t, device)
    for name, t in zip(NAMES, out):
        assert torch.isfinite(t).all(), name
    assert_close(out[1][0, [1, 4]], mats[0, [2, 6]], atol=1e-6, rtol=0, name="transforms")  # weight ~ 1
    if k > 1:
        ref = _run(inverse_lbs_ref, points.double(), verts.double(), mats.double(), k, d_c.double(), d_t.double())
        for name, t, r in zip(NAMES, out, ref):
            assert_close(t, r, atol=1e-5, rtol=1e-4, name=name)


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("k", [1, 2])
def test_inverse_lbs_identity_transforms(impl, k):
    points, verts, _ = make_inverse_lbs_inputs(2, 50, 7, seed=6)
    mats = torch.eye(4).expand(2, 7, 4, 4)
    device = DEVICE if impl == "triton" else "cpu"
    canonical, transforms = IMPLS[impl](points.to(device), verts.to(device), mats.to(device), k=k)
    if k == 1:
        assert torch.equal(canonical.cpu(), points) and torch.equal(transforms.cpu(), mats[:, :1].expand(2, 50, 4, 4))
    else:  # the weights sum to 1 up to rounding
        assert_close(canonical, points, atol=1e-6, rtol=0, name="canonical")


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
def test_inverse_lbs_all_vertices_when_v_equals_k(impl):
    points, verts, mats = make_inverse_lbs_inputs(1, 5, 3, dtype=torch.float64, seed=8)
    device = DEVICE if impl == "triton" else "cpu"
    _, transforms = IMPLS[impl](points.to(device), verts.to(device), mats.to(device), k=3)
    u = 1.0 / ((points[0, :, None] - verts[0, None]) ** 2).sum(-1)  # [P, V]
    expected = torch.einsum("pv,vij->pij", u / u.sum(-1, keepdim=True), mats[0])
    assert_close(transforms[0], expected, atol=1e-12, rtol=1e-12, name="transforms")


@pytest.mark.interpret
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("B,P,k", [(2, 0, 1), (2, 0, 2), (0, 3, 2)], ids=["P0-k1", "P0-k2", "B0-k2"])
def test_inverse_lbs_empty(impl, B, P, k):
    points, verts, mats = make_inverse_lbs_inputs(B, P, 4)
    device = DEVICE if impl == "triton" else "cpu"
    d_c, d_t = torch.randn(B, P, 3), torch.randn(B, P, 4, 4)
    out = _run(IMPLS[impl], points, verts, mats, k, d_c, d_t, device)
    for t, shape in zip(out, [(B, P, 3), (B, P, 4, 4), (B, P, 3), (B, 4, 3), (B, 4, 4, 4)]):
        assert t.shape == shape and not t.any()


@pytest.mark.interpret
def test_inverse_lbs_ops_dispatch():
    points, verts, mats = make_inverse_lbs_inputs(1, 20, 6, seed=2)
    ref = ops.inverse_lbs(points, verts, mats, k=2, impl="ref")
    tri = ops.inverse_lbs(points.to(DEVICE), verts.to(DEVICE), mats.to(DEVICE), k=2, impl="triton")
    for name, t, r in zip(NAMES, tri, ref):
        assert_close(t, r, atol=1e-5, rtol=1e-4, name=name)


@pytest.mark.interpret
def test_inverse_lbs_backward_is_deterministic():
    points, verts, mats = make_inverse_lbs_inputs(2, 257, 33, seed=5)
    d_c, d_t = torch.randn(2, 257, 3), torch.randn(2, 257, 4, 4)
    runs = [_run(inverse_lbs_triton, points, verts, mats, 2, d_c, d_t, DEVICE) for _ in range(2)]
    for name, a, b in zip(NAMES, *runs):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize(
    "p_shape,v_shape,m_shape,k,match",
    [
        ((2, 5, 2), (2, 4, 3), (2, 4, 4, 4), 1, r"points must have shape \[B, P, 3\]"),
        ((2, 5, 3), (2, 4), (2, 4, 4, 4), 1, r"verts must have shape \[B, V, 3\]"),
        ((2, 5, 3), (3, 4, 3), (3, 4, 4, 4), 1, r"verts must have shape \[B, V, 3\] with B=2"),
        ((2, 5, 3), (2, 4, 3), (2, 4, 3, 4), 1, r"vert_transforms must have shape \[B, V, 4, 4\]"),
        ((2, 5, 3), (2, 4, 3), (2, 5, 4, 4), 1, r"vert_transforms must have shape \[B, V, 4, 4\] with"),
        ((2, 5, 3), (2, 4, 3), (2, 4, 4, 4), 0, r"1 <= k <= 8"),
        ((2, 5, 3), (2, 9, 3), (2, 9, 4, 4), 9, r"1 <= k <= 8"),
        ((2, 5, 3), (2, 4, 3), (2, 4, 4, 4), 2.0, r"1 <= k <= 8"),
        ((2, 5, 3), (2, 4, 3), (2, 4, 4, 4), 5, r"verts must have shape \[B, V, 3\] with V >= k"),
    ],
)
def test_inverse_lbs_rejects_bad_inputs(impl, p_shape, v_shape, m_shape, k, match):
    with pytest.raises(ValueError, match=match):
        IMPLS[impl](torch.zeros(p_shape), torch.zeros(v_shape), torch.zeros(m_shape), k=k)


def test_inverse_lbs_rejects_bad_dtype():
    points, verts, mats = make_inverse_lbs_inputs(1, 2, 3)
    with pytest.raises(ValueError, match=r"points must .*dtype float16, bfloat16, float32, float64"):
        ops.inverse_lbs(points.long(), verts, mats)
    with pytest.raises(ValueError, match=r"vert_transforms must .*dtype float16, bfloat16, float32, float64"):
        ops.inverse_lbs(points, verts, mats.to(torch.int32))


def test_inverse_lbs_ref_chunking_is_invisible(monkeypatch):
    points, verts, mats = make_inverse_lbs_inputs(2, 33, 10, dtype=torch.float64, seed=1)
    full = inverse_lbs_ref(points, verts, mats, k=2)
    monkeypatch.setattr(inverse_lbs_module, "_REF_CHUNK_ELEMS", 2 * 10 * 4)  # chunks of 4 queries
    for a, b in zip(inverse_lbs_ref(points, verts, mats, k=2), full):
        assert torch.equal(a, b)


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_kdtree_search_equals_brute_force(k, dtype):
    from aniportrait.kernels.inverse_lbs import _nearest_ids_brute, _nearest_ids_kdtree

    gen = torch.Generator().manual_seed(k)
    verts = torch.rand(2, 300, 3, generator=gen, dtype=dtype)
    # Adversarial cases: duplicated vertices (exact ties), queries on vertices, and queries on a lattice of
    # vertices (many equidistant neighbours), next to random queries.
    verts[:, 100:110] = verts[:, 10:20]
    lattice = torch.stack(torch.meshgrid(*[torch.arange(4, dtype=dtype) / 4] * 3, indexing="ij"), -1).reshape(-1, 3)
    verts[:, 200:264] = lattice
    points = torch.cat(
        [
            torch.rand(2, 500, 3, generator=gen, dtype=dtype) * 1.2 - 0.1,
            verts[:, :50],
            lattice[None, :27].expand(2, -1, -1) + 1 / 8,
            torch.full((2, 1, 3), float("nan"), dtype=dtype),
        ],
        dim=1,
    )
    brute = _nearest_ids_brute(points[:, :-1], verts, k)
    assert torch.equal(_nearest_ids_kdtree(points[:, :-1], verts, k), brute)
    assert _nearest_ids_kdtree(points, verts, k).shape == (2, points.shape[1], k)  # NaN query: no crash


@pytest.mark.parametrize(
    ("B", "P", "V", "k", "dtype"),
    [
        (2, 37, 19, 1, torch.float64),
        (1, 100, 33, 4, torch.float32),
        # P * V above KD_MIN_PAIRS: the CPU reference takes the certified KD-tree path.
        (1, 4100, 1030, 1, torch.float32),
        (1, 4100, 1030, 4, torch.float64),
    ],
    ids=["small-k1", "small-k4", "kdtree-k1", "kdtree-k4"],
)
def test_reference_equals_the_plain_spec(B, P, V, k, dtype):
    """inverse_lbs_ref (chunked search, KD-tree fast path) computes exactly what the plain spec defines."""
    from aniportrait.kernels.inverse_lbs import KD_MIN_PAIRS, inverse_lbs_spec

    assert (P * V >= KD_MIN_PAIRS) == (P > 1000)
    points, verts, mats = make_inverse_lbs_inputs(B, P, V, dtype=dtype, seed=P + V + k)
    d_c = torch.randn(B, P, 3, dtype=torch.float64)
    d_t = torch.randn(B, P, 4, 4, dtype=torch.float64)
    ref = _run(inverse_lbs_ref, points, verts, mats, k, d_c, d_t)
    spec = _run(inverse_lbs_spec, points, verts, mats, k, d_c, d_t)
    for name, r, s in zip(NAMES, ref, spec):
        assert r.dtype == s.dtype == dtype, name
        assert_close(r, s, atol=1e-12 if dtype == torch.float64 else 1e-6, rtol=1e-6, name=name)


# -- the release's sizes on a real GPU (marker gpu, skipped without CUDA; see gpu_helpers.py) ----------------------


@pytest.mark.gpu
@pytest.mark.parametrize("k", [1, 4])
def test_inverse_lbs_release_size(k):
    """The release's strided query grid (64 x 64 x 32) against all 6,890 SMPL vertices."""
    points, verts, mats = make_inverse_lbs_inputs(1, 64 * 64 * 32, 6890, device="cuda")

    def run(impl, dtype):
        return _outputs_and_grads(
            lambda p, v, m: ops.inverse_lbs(p, v, m, k=k, impl=impl),
            (points.to(dtype), verts.to(dtype), mats.to(dtype)),
        )

    (tri_can, tri_tf), tri_grads = run("triton", torch.float32)
    (ref_can, ref_tf), ref_grads = run("ref", torch.float64)
    # fp32 distances can swap two near-equal neighbours; such queries are rare and compared no further.
    same = (tri_tf - ref_tf).abs().amax(dim=(-2, -1)) < 1e-3
    assert same.float().mean() > 0.999
    assert_close(tri_can[same], ref_can[same], atol=1e-4, rtol=1e-4, name="canonical")
    assert_close(tri_tf[same], ref_tf[same], atol=1e-4, rtol=1e-4, name="transforms")
    assert_close(tri_grads[0][same], ref_grads[0][same], atol=1e-3, rtol=1e-3, name="d_points")
