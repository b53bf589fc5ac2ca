"""Inverse linear blend skinning: map posed-space points to canonical space with their nearest vertices' transforms.

For a query ``p`` and vertices ``v_j`` with 4x4 matrices ``M_j``, let ``d2_j = dx*dx + dy*dy + dz*dz`` (squared
Euclidean distance, computed in exactly this form so the nearest vertex is exact) and ``N`` the ``k`` nearest
vertices, ordered by ``(d2_j, j)`` (exact distance ties go to the lower vertex index). Then

    u_i = 1 / max(d2_i, MIN_SQ_DIST),   w_i = u_i / sum_{j in N} u_j,   T = sum_{i in N} w_i M_i,
    canonical = (T @ [p, 1])[:3]

For ``k = 1`` the weight is exactly 1 and ``T`` is the nearest vertex's matrix, as in the release. The release maps
the weight ``1 / 0 = inf`` of a query sitting on a vertex to the magic constant 100086; that only matters for
``k > 1``, which the release never uses, so we clamp the distance to ``MIN_SQ_DIST`` instead (a zero distance gives
finite values and zero gradient through the clamp).

Shapes: ``points`` [B, P, 3], ``verts`` [B, V, 3], ``vert_transforms`` [B, V, 4, 4] -> ``canonical`` [B, P, 3] and
``transforms`` [B, P, 4, 4]. Computation is in float32 (float64 for float64 inputs); outputs take the dtype of
``points`` (canonical) and ``vert_transforms`` (transforms).

Three implementations: ``inverse_lbs_spec`` writes the definition above plainly (all distances at once: the test
oracle); ``inverse_lbs_ref`` is the same on any device with a chunked search, and on large CPU problems a KD-tree
search with an exactness certificate (the CPU path; tested equal to the spec); ``inverse_lbs_triton`` is the fused
kernel.

Triton forward: one program owns BLOCK_P queries of one batch item and scans all vertices in chunks of BLOCK_V on a
[BLOCK_P, BLOCK_V] distance tile, keeping the running best (``k = 1``) or a top-k list, then gathers and blends the
chosen matrices. Saved for backward: the inputs and the neighbour ids [B, P, k] int32 (k/16 of the size of the
``transforms`` output); distances and weights are recomputed. The backward is two passes and uses no atomics, so it
is deterministic: a per-query pass gives ``d_points`` and, for ``k > 1``, the weights ``w`` and the distance
gradients ``g = dL/dd2`` [B, P, k]; then the (query, slot) pairs are sorted by vertex id on the host (stable sort) and
a per-vertex pass sums each vertex's pairs in a fixed order into ``d_vert_transforms`` and ``d_verts``.

Reference: ``run_model_lbs`` in YueWuHKUST/AniPortraitGAN ``generators/renderer.py`` (pytorch3d ``knn_points``, K=1,
squared distances).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from aniportrait.kernels._triton import tl, triton
from aniportrait.kernels._utils import (
    check_same_device,
    check_tensor,
    compute_dtype,
    rows_per_program,
    store_cast,
    tl_dtype,
)

MAX_K = 8  # largest supported number of neighbours (the top-k list lives in registers)
MIN_SQ_DIST = 1e-12  # squared distances are clamped to this before 1/d2 (the release uses 1/0 -> 100086 instead)
_REF_CHUNK_ELEMS = 1 << 25  # the reference's [B, chunk, V] distance tile stays below this many elements
KD_MIN_PAIRS = 1 << 22  # CPU neighbour searches with at least this many (query, vertex) pairs use the KD-tree
KD_EXTRA = 2  # extra KD-tree candidates per query, for the exactness certificate
KD_MARGIN_ULPS = 16  # the certificate's margin, in units of the compute dtype's epsilon times the k-th distance
# The tree is rebuilt for every posed body, and most ray samples lie far from it: unbalanced, uncompacted nodes with
# 32-point leaves build and query faster than scipy's defaults (the built-in default's frames: 1.09x, README,
# Performance). Any exact tree returns the same neighbours.
KD_TREE_OPTIONS = {"leafsize": 32, "compact_nodes": False, "balanced_tree": False}


def _check_inputs(points, verts, vert_transforms, k) -> tuple[int, int, int]:
    sizes: dict[str, int] = {}
    check_tensor("points", points, ["B", "P", "3"], sizes)
    check_tensor("verts", verts, ["B", "V", "3"], sizes)
    check_tensor("vert_transforms", vert_transforms, ["B", "V", "4", "4"], sizes)
    check_same_device(points=points, verts=verts, vert_transforms=vert_transforms)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an int with 1 <= k <= {MAX_K}, got {k!r}")
    if sizes["V"] < k:
        raise ValueError(f"verts must have shape [B, V, 3] with V >= k = {k}, got {list(verts.shape)}")
    return sizes["B"], sizes["P"], sizes["V"]


# ---------------------------------------------------------------------------------------------------------------------
# Reference


def _sq_dist(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``dx*dx + dy*dy + dz*dz`` of broadcast ``p - v`` over the last dimension (3)."""
    dx = p[..., 0] - v[..., 0]
    dy = p[..., 1] - v[..., 1]
    dz = p[..., 2] - v[..., 2]
    return dx * dx + dy * dy + dz * dz


def _nearest_ids_brute(p: torch.Tensor, v: torch.Tensor, k: int) -> torch.Tensor:
    """[B, P, k] int64 ids of the k nearest vertices by brute force, ordered by (distance, index): the spec."""
    B, P, _ = p.shape
    V = v.shape[1]
    ids = torch.empty(B, P, k, device=p.device, dtype=torch.long)
    chunk = max(1, _REF_CHUNK_ELEMS // max(B * V, 1))
    with torch.no_grad():
        for p0 in range(0, P, chunk):
            d2 = _sq_dist(p[:, p0 : p0 + chunk, None, :], v[:, None, :, :])  # [B, chunk, V]
            if k == 1:
                ids[:, p0 : p0 + chunk, 0] = torch.argmin(d2, dim=-1)  # the first minimal index
            else:
                ids[:, p0 : p0 + chunk] = torch.sort(d2, dim=-1, stable=True).indices[..., :k]
    return ids


def _nearest_ids_kdtree(p: torch.Tensor, v: torch.Tensor, k: int) -> torch.Tensor:
    """The same ids as :func:`_nearest_ids_brute`, through scipy's KD-tree (CPU), with an exactness certificate.

    The tree returns ``k + KD_EXTRA`` candidates by float64 distance. They are re-ranked by the spec's own distance
    (``_sq_dist`` in the compute dtype, ties to the lower index). That ranking is provably the brute-force one when
    the farthest candidate is farther than the k-th by more than twice the rounding bound of ``_sq_dist``: then no
    vertex outside the candidates can reach (or tie) the k-th. Queries without that margin (near-ties at the
    boundary, non-finite points) are redone by brute force.
    """
    from scipy.spatial import cKDTree

    B, P, _ = p.shape
    kk = min(k + KD_EXTRA, v.shape[1])
    eps = torch.finfo(p.dtype).eps
    ids = torch.empty(B, P, k, dtype=torch.long)
    with torch.no_grad():
        for b in range(B):
            vb, pb = v[b], p[b]
            finite = torch.isfinite(pb).all(dim=1)
            query = torch.where(finite[:, None], pb, torch.zeros_like(pb))  # the tree rejects NaN; redone below
            dist, cand = cKDTree(vb.double().numpy(), **KD_TREE_OPTIONS).query(query.double().numpy(), k=kk)
            dist = torch.from_numpy(dist.reshape(P, kk))
            cand = torch.from_numpy(cand.reshape(P, kk)).clamp_max(vb.shape[0] - 1)
            d2 = _sq_dist(pb[:, None, :], vb[cand])  # spec distances of the candidates [P, kk]
            # Stable sort on distance after sorting on index: the (distance, index) order of the brute force.
            by_index = torch.sort(cand, dim=-1).indices
            d2, cand = torch.gather(d2, 1, by_index), torch.gather(cand, 1, by_index)
            order = torch.sort(d2, dim=-1, stable=True).indices[:, :k]
            ids[b] = torch.gather(cand, 1, order)
            sq = dist.square()
            margin = KD_MARGIN_ULPS * eps * sq[:, k - 1] + torch.finfo(p.dtype).tiny
            certified = (
                finite
                & torch.isfinite(sq).all(dim=1)
                & ((sq[:, kk - 1] - sq[:, k - 1] > margin) if kk > k else torch.ones(P, dtype=torch.bool))
            )
            redo = (~certified).nonzero()[:, 0]
            if redo.numel():
                ids[b, redo] = _nearest_ids_brute(pb[redo][None], vb[None], k)[0]
    return ids


def _nearest_ids(p: torch.Tensor, v: torch.Tensor, k: int) -> torch.Tensor:
    """[B, P, k] int64 ids of the k nearest vertices, ordered by (distance, index); no gradient.

    Large CPU problems go through the certified KD-tree search (same result, ~100x faster at the release's sizes).
    """
    if p.device.type == "cpu" and p.shape[1] * v.shape[1] >= KD_MIN_PAIRS:
        return _nearest_ids_kdtree(p, v, k)
    return _nearest_ids_brute(p, v, k)


def inverse_lbs_spec(
    points: torch.Tensor, verts: torch.Tensor, vert_transforms: torch.Tensor, *, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition of :func:`aniportrait.ops.inverse_lbs`, written plainly (all pairwise distances at once).

    Each point takes the transforms of its ``k`` nearest vertices (ties to the lower index), blended by inverse
    squared distance (clamped below at ``MIN_SQ_DIST``), and is mapped by the blend: ``canonical = T[:3, :3] p +
    T[:3, 3]``. The test oracle of :func:`inverse_lbs_ref`, which computes the same with less memory and faster.
    """
    _check_inputs(points, verts, vert_transforms, k)
    acc = compute_dtype(points, verts, vert_transforms)
    p, v, mats = points.to(acc), verts.to(acc), vert_transforms.to(acc)
    with torch.no_grad():
        d2 = _sq_dist(p[:, :, None, :], v[:, None, :, :])  # [B, P, V]
        ids = torch.sort(d2, dim=-1, stable=True).indices[..., :k]  # [B, P, k]
    batch = torch.arange(len(p), device=p.device)[:, None, None]
    m_k = mats[batch, ids]  # [B, P, k, 4, 4]
    u = 1.0 / _sq_dist(p[:, :, None, :], v[batch, ids]).clamp_min(MIN_SQ_DIST)
    t = m_k[:, :, 0] if k == 1 else ((u / u.sum(-1, keepdim=True))[..., None, None] * m_k).sum(dim=2)
    canonical = (t[..., :3, :3] @ p[..., None])[..., 0] + t[..., :3, 3]
    return canonical.to(points.dtype), t.to(vert_transforms.dtype)


def inverse_lbs_ref(
    points: torch.Tensor,
    verts: torch.Tensor,
    vert_transforms: torch.Tensor,
    *,
    k: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch :func:`aniportrait.ops.inverse_lbs` (any device, differentiable): :func:`inverse_lbs_spec`'s
    result with a chunked brute-force search, or on large CPU problems a certified KD-tree search.

    The neighbour search runs without gradient; the k distances are recomputed from the gathered vertices so the
    ``k > 1`` weights are differentiable. For ``k = 1`` ``verts`` gets no gradient (it is not in the graph).
    """
    B, P, V = _check_inputs(points, verts, vert_transforms, k)
    acc = compute_dtype(points, verts, vert_transforms)
    p, v = points.to(acc), verts.to(acc)
    mats = vert_transforms.to(acc).reshape(B, V, 16)
    ids = _nearest_ids(p, v, k)  # [B, P, k]
    flat = ids.reshape(B, P * k, 1)
    m_k = torch.gather(mats, 1, flat.expand(B, P * k, 16)).reshape(B, P, k, 16)
    if k == 1:
        t = m_k[:, :, 0]
    else:
        v_k = torch.gather(v, 1, flat.expand(B, P * k, 3)).reshape(B, P, k, 3)
        u = 1.0 / _sq_dist(p[:, :, None, :], v_k).clamp_min(MIN_SQ_DIST)  # [B, P, k]
        w = u / u.sum(dim=-1, keepdim=True)
        t = (w[..., None] * m_k).sum(dim=-2)
    t = t.reshape(B, P, 4, 4)
    canonical = (t[..., :3, :3] @ p[..., None])[..., 0] + t[..., :3, 3]
    return canonical.to(points.dtype), t.to(vert_transforms.dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Triton kernels


@triton.jit
def _homogeneous_tile(px, py, pz, e_col):
    """[BLOCK_P, 16] tile holding ``[p, 1][c]`` at row-major 4x4 entry (r, c), for ``e_col = entry % 4``."""
    return tl.where(e_col == 0, px[:, None], tl.where(e_col == 1, py[:, None], tl.where(e_col == 2, pz[:, None], 1.0)))


@triton.jit
def _inverse_lbs_fwd_kernel(
    points_ptr,  # [B, P, 3] query points, contiguous
    verts_ptr,  # [B, V, 3] vertices, contiguous
    mats_ptr,  # [B, V, 16] row-major 4x4 vertex transforms, contiguous
    canonical_ptr,  # out [B, P, 3], points' dtype
    transforms_ptr,  # out [B, P, 16], vert_transforms' dtype
    ids_ptr,  # out [B, P, K] int32 neighbour ids, saved for backward
    P,  # queries per batch item
    V,  # vertices per batch item
    min_sq_dist,  # distance clamp before 1/d2 (K > 1)
    K: tl.constexpr,  # neighbours per query
    KP: tl.constexpr,  # next power of two >= K (top-k list width)
    ACC: tl.constexpr,  # accumulator dtype (float32, or float64 for float64 inputs)
    BLOCK_P: tl.constexpr,  # queries per program
    BLOCK_V: tl.constexpr,  # vertices per scanned chunk
):
    """Brute-force k nearest vertices by (d2, index), then ``T = sum_i w_i M_i`` and ``canonical = T [p, 1]``."""
    pid_p = tl.program_id(0)
    pid_b = tl.program_id(1)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < P
    row = (pid_b * P + offs_p).to(tl.int64)  # global query id, int64 against overflow in the [.., 16] offsets
    vbase = pid_b.to(tl.int64) * V
    px = tl.load(points_ptr + row * 3 + 0, mask=mask_p, other=0.0).to(ACC)
    py = tl.load(points_ptr + row * 3 + 1, mask=mask_p, other=0.0).to(ACC)
    pz = tl.load(points_ptr + row * 3 + 2, mask=mask_p, other=0.0).to(ACC)
    slot = tl.arange(0, KP)

    if K == 1:
        best_d = tl.full((BLOCK_P,), float("inf"), ACC)
        best_i = tl.zeros((BLOCK_P,), tl.int32)
    else:
        # Top-k list ordered by (distance, index). Empty real slots hold (inf, V + slot); padding slots hold
        # distance -1 so they are never the worst entry. Ids are distinct, so (d, id) identifies one slot.
        top_d = tl.where(slot < K, float("inf"), -1.0).to(ACC)[None, :] + tl.zeros((BLOCK_P, KP), ACC)
        top_i = (V + slot)[None, :] + tl.zeros((BLOCK_P, KP), tl.int32)
    for v0 in range(0, V, BLOCK_V):
        offs_v = v0 + tl.arange(0, BLOCK_V)
        mask_v = offs_v < V
        vx = tl.load(verts_ptr + (vbase + offs_v) * 3 + 0, mask=mask_v, other=0.0).to(ACC)
        vy = tl.load(verts_ptr + (vbase + offs_v) * 3 + 1, mask=mask_v, other=0.0).to(ACC)
        vz = tl.load(verts_ptr + (vbase + offs_v) * 3 + 2, mask=mask_v, other=0.0).to(ACC)
        dx = px[:, None] - vx[None, :]
        dy = py[:, None] - vy[None, :]
        dz = pz[:, None] - vz[None, :]
        d2 = dx * dx + dy * dy + dz * dz  # [BLOCK_P, BLOCK_V]
        if K == 1:
            # Ties inside the chunk return the lowest index; strict < keeps the earlier (lower-index) chunk.
            d2 = tl.where(mask_v[None, :], d2, float("inf"))
            c_d, c_i = tl.min(d2, axis=1, return_indices=True)
            better = c_d < best_d
            best_d = tl.where(better, c_d, best_d)
            best_i = tl.where(better, c_i + v0, best_i)
        else:
            # Pull the chunk's k best in (d, index) order and insert each one that beats the list's worst.
            alive = mask_v[None, :] & (offs_p >= 0)[:, None]
            for _ in tl.static_range(K):
                c_d = tl.min(tl.where(alive, d2, float("inf")), axis=1)
                c_i = tl.min(tl.where(alive & (d2 == c_d[:, None]), offs_v[None, :], 2147483647), axis=1)
                alive = alive & (offs_v[None, :] != c_i[:, None])
                w_d = tl.max(top_d, axis=1)  # worst = largest distance, then the higher index
                w_i = tl.max(tl.where(top_d == w_d[:, None], top_i, -1), axis=1)
                better = (c_d < w_d) | ((c_d == w_d) & (c_i < w_i))
                hit = (top_d == w_d[:, None]) & (top_i == w_i[:, None]) & better[:, None]
                top_d = tl.where(hit, c_d[:, None], top_d)
                top_i = tl.where(hit, c_i[:, None], top_i)

    offs_e = tl.arange(0, 16)  # row-major 4x4 entry
    e_row = offs_e // 4
    e_col = offs_e % 4
    m_pe = mask_p[:, None] & (offs_e >= 0)[None, :]
    if K == 1:
        tl.store(ids_ptr + row, best_i, mask=mask_p)
        t = tl.load(mats_ptr + (vbase + best_i)[:, None] * 16 + offs_e[None, :], mask=m_pe, other=0.0).to(ACC)
    else:
        m_ps = mask_p[:, None] & (slot < K)[None, :]
        tl.store(ids_ptr + row[:, None] * K + slot[None, :], top_i, mask=m_ps)
        u = tl.where(m_ps, 1.0 / tl.maximum(top_d, min_sq_dist), 0.0)
        w = u / tl.where(mask_p, tl.sum(u, axis=1), 1.0)[:, None]
        t = tl.zeros((BLOCK_P, 16), ACC)
        for j in tl.static_range(K):
            id_j = tl.sum(tl.where(slot[None, :] == j, top_i, 0), axis=1)
            w_j = tl.sum(tl.where(slot[None, :] == j, w, 0.0), axis=1)
            m_j = tl.load(mats_ptr + (vbase + id_j)[:, None] * 16 + offs_e[None, :], mask=m_pe, other=0.0)
            t += w_j[:, None] * m_j.to(ACC)
    store_cast(transforms_ptr + row[:, None] * 16 + offs_e[None, :], t, m_pe)
    # canonical_r = sum_c T[r, c] [p, 1]_c
    tp = t * _homogeneous_tile(px, py, pz, e_col)
    for r in tl.static_range(3):
        store_cast(canonical_ptr + row * 3 + r, tl.sum(tl.where(e_row[None, :] == r, tp, 0.0), axis=1), mask_p)


@triton.jit
def _inverse_lbs_bwd_query_kernel(
    points_ptr,  # [B, P, 3] query points
    verts_ptr,  # [B, V, 3] vertices
    mats_ptr,  # [B, V, 16] vertex transforms
    ids_ptr,  # [B, P, K] int32 neighbour ids from the forward
    d_canonical_ptr,  # [B, P, 3] incoming gradient of canonical
    d_transforms_ptr,  # [B, P, 16] incoming gradient of transforms
    d_points_ptr,  # out [B, P, 3] in points' dtype (written only if NEED_DPOINTS)
    w_ptr,  # out [B, P, K] ACC blend weights (written only if WRITE_WG)
    g_ptr,  # out [B, P, K] ACC dL/dd2 per neighbour (written only if WRITE_WG)
    P,  # queries per batch item
    V,  # vertices per batch item
    min_sq_dist,  # the forward's distance clamp
    K: tl.constexpr,  # neighbours per query
    KP: tl.constexpr,  # next power of two >= K
    NEED_DPOINTS: tl.constexpr,
    WRITE_WG: tl.constexpr,  # K > 1 and the per-vertex pass needs w (d_vert_transforms) or g (d_verts)
    ACC: tl.constexpr,  # accumulator dtype
    BLOCK_P: tl.constexpr,  # queries per program
):
    """With ``G = dT + dc [p, 1]^T``: ``dp = T[:3, :3]^T dc + sum_i 2 g_i (p - v_i)``, ``a_i = <G, M_i>`` and
    ``g_i = -u_i w_i sum_j w_j (a_i - a_j)`` (``= -u_i^2 dL/du_i``, in a form free of cancellation when one w ~ 1)."""
    pid_p = tl.program_id(0)
    pid_b = tl.program_id(1)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < P
    row = (pid_b * P + offs_p).to(tl.int64)
    vbase = pid_b.to(tl.int64) * V
    offs_e = tl.arange(0, 16)
    e_row = offs_e // 4
    e_col = offs_e % 4
    m_pe = mask_p[:, None] & (offs_e >= 0)[None, :]
    px = tl.load(points_ptr + row * 3 + 0, mask=mask_p, other=0.0).to(ACC)
    py = tl.load(points_ptr + row * 3 + 1, mask=mask_p, other=0.0).to(ACC)
    pz = tl.load(points_ptr + row * 3 + 2, mask=mask_p, other=0.0).to(ACC)
    # dc broadcast over the 4 columns of rows 0..2 (zero in row 3), so G = dT + dc_t * ph.
    dc_t = tl.load(d_canonical_ptr + row[:, None] * 3 + e_row[None, :], mask=m_pe & (e_row < 3)[None, :], other=0.0)
    dc_t = dc_t.to(ACC)

    if K == 1:
        nn = tl.load(ids_ptr + row, mask=mask_p, other=0)
        t = tl.load(mats_ptr + (vbase + nn)[:, None] * 16 + offs_e[None, :], mask=m_pe, other=0.0).to(ACC)
    else:
        slot = tl.arange(0, KP)
        m_ps = mask_p[:, None] & (slot < K)[None, :]
        ids = tl.load(ids_ptr + row[:, None] * K + slot[None, :], mask=m_ps, other=0)
        vid = vbase + ids
        dx = px[:, None] - tl.load(verts_ptr + vid * 3 + 0, mask=m_ps, other=0.0).to(ACC)
        dy = py[:, None] - tl.load(verts_ptr + vid * 3 + 1, mask=m_ps, other=0.0).to(ACC)
        dz = pz[:, None] - tl.load(verts_ptr + vid * 3 + 2, mask=m_ps, other=0.0).to(ACC)
        d2 = dx * dx + dy * dy + dz * dz  # [BLOCK_P, KP], the forward's distances
        u = tl.where(m_ps, 1.0 / tl.maximum(d2, min_sq_dist), 0.0)
        w = u / tl.where(mask_p, tl.sum(u, axis=1), 1.0)[:, None]
        d_t = tl.load(d_transforms_ptr + row[:, None] * 16 + offs_e[None, :], mask=m_pe, other=0.0).to(ACC)
        big_g = d_t + dc_t * _homogeneous_tile(px, py, pz, e_col)
        t = tl.zeros((BLOCK_P, 16), ACC)
        a = tl.zeros((BLOCK_P, KP), ACC)  # a_i = dL/dw_i = <G, M_i>
        for j in tl.static_range(K):
            id_j = tl.sum(tl.where(slot[None, :] == j, vid, 0), axis=1)
            w_j = tl.sum(tl.where(slot[None, :] == j, w, 0.0), axis=1)
            m_j = tl.load(mats_ptr + id_j[:, None] * 16 + offs_e[None, :], mask=m_pe, other=0.0).to(ACC)
            t += w_j[:, None] * m_j
            a = tl.where(slot[None, :] == j, tl.sum(big_g * m_j, axis=1)[:, None], a)
        s = tl.zeros((BLOCK_P, KP), ACC)  # s_i = sum_j w_j (a_i - a_j) = S dL/du_i
        for j in tl.static_range(K):
            a_j = tl.sum(tl.where(slot[None, :] == j, a, 0.0), axis=1)
            w_j = tl.sum(tl.where(slot[None, :] == j, w, 0.0), axis=1)
            s += w_j[:, None] * (a - a_j[:, None])
        g = tl.where(m_ps & (d2 >= min_sq_dist), -u * w * s, 0.0)  # dL/dd2, zero through the clamp
        if WRITE_WG:
            tl.store(w_ptr + row[:, None] * K + slot[None, :], w, mask=m_ps)
            tl.store(g_ptr + row[:, None] * K + slot[None, :], g, mask=m_ps)

    if NEED_DPOINTS:
        tdc = t * dc_t  # dp_c = sum_r T[r, c] dc_r
        dpx = tl.sum(tl.where(e_col[None, :] == 0, tdc, 0.0), axis=1)
        dpy = tl.sum(tl.where(e_col[None, :] == 1, tdc, 0.0), axis=1)
        dpz = tl.sum(tl.where(e_col[None, :] == 2, tdc, 0.0), axis=1)
        if K > 1:
            dpx += tl.sum(2.0 * g * dx, axis=1)
            dpy += tl.sum(2.0 * g * dy, axis=1)
            dpz += tl.sum(2.0 * g * dz, axis=1)
        store_cast(d_points_ptr + row * 3 + 0, dpx, mask_p)
        store_cast(d_points_ptr + row * 3 + 1, dpy, mask_p)
        store_cast(d_points_ptr + row * 3 + 2, dpz, mask_p)


@triton.jit
def _inverse_lbs_bwd_vertex_kernel(
    points_ptr,  # [B, P, 3] query points
    verts_ptr,  # [B, V, 3] vertices
    d_canonical_ptr,  # [B, P, 3] incoming gradient of canonical
    d_transforms_ptr,  # [B, P, 16] incoming gradient of transforms
    w_ptr,  # [B, P, K] ACC blend weights (read only if K > 1)
    g_ptr,  # [B, P, K] ACC dL/dd2 (read only if NEED_DVERTS)
    order_ptr,  # [B, P*K] int32 (query, slot) pair ids sorted by vertex id (stable)
    offsets_ptr,  # [B, V+1] int32 start of each vertex's run in order
    d_mats_ptr,  # out [B, V, 16] in vert_transforms' dtype (written only if NEED_DMATS)
    d_verts_ptr,  # out [B, V, 3] in verts' dtype (written only if NEED_DVERTS)
    P,  # queries per batch item
    V,  # vertices per batch item
    K: tl.constexpr,  # neighbours per query
    NEED_DMATS: tl.constexpr,
    NEED_DVERTS: tl.constexpr,
    ACC: tl.constexpr,  # accumulator dtype
    BLOCK_Q: tl.constexpr,  # pairs per loop step
):
    """Segment sum over the pairs that chose vertex v: ``dM_v = sum w G_q`` and ``dv = sum -2 g (p_q - v)``."""
    pid_v = tl.program_id(0)
    pid_b = tl.program_id(1)
    start = tl.load(offsets_ptr + pid_b * (V + 1) + pid_v)
    end = tl.load(offsets_ptr + pid_b * (V + 1) + pid_v + 1)
    vrow = pid_b.to(tl.int64) * V + pid_v
    pair_base = pid_b.to(tl.int64) * P * K
    offs_e = tl.arange(0, 16)
    e_row = offs_e // 4
    e_col = offs_e % 4
    offs_c = tl.arange(0, 4)  # xyz (+ one padding lane)
    v4 = tl.load(verts_ptr + vrow * 3 + offs_c, mask=offs_c < 3, other=0.0).to(ACC)
    acc_m = tl.zeros((BLOCK_Q, 16), ACC)
    acc_v = tl.zeros((BLOCK_Q, 4), ACC)
    for q0 in range(start, end, BLOCK_Q):
        offs_q = q0 + tl.arange(0, BLOCK_Q)
        mask_q = offs_q < end
        pair = tl.load(order_ptr + pair_base + offs_q, mask=mask_q, other=0).to(tl.int64)
        qrow = pid_b.to(tl.int64) * P + pair // K  # global query id
        if NEED_DMATS:
            m_qe = mask_q[:, None] & (offs_e >= 0)[None, :]
            d_t = tl.load(d_transforms_ptr + qrow[:, None] * 16 + offs_e[None, :], mask=m_qe, other=0.0).to(ACC)
            m_dc = m_qe & (e_row < 3)[None, :]
            dc_t = tl.load(d_canonical_ptr + qrow[:, None] * 3 + e_row[None, :], mask=m_dc, other=0.0).to(ACC)
            m_p = m_qe & (e_col < 3)[None, :]
            ph = tl.load(points_ptr + qrow[:, None] * 3 + e_col[None, :], mask=m_p, other=1.0).to(ACC)
            big_g = d_t + dc_t * ph
            if K == 1:
                acc_m += big_g
            else:
                w = tl.load(w_ptr + pair_base + pair, mask=mask_q, other=0.0)
                acc_m += w[:, None] * big_g
        if NEED_DVERTS:
            g = tl.load(g_ptr + pair_base + pair, mask=mask_q, other=0.0)
            m_qc = mask_q[:, None] & (offs_c < 3)[None, :]
            p4 = tl.load(points_ptr + qrow[:, None] * 3 + offs_c[None, :], mask=m_qc, other=0.0).to(ACC)
            acc_v += tl.where(m_qc, -2.0 * g[:, None] * (p4 - v4[None, :]), 0.0)
    if NEED_DMATS:
        store_cast(d_mats_ptr + vrow * 16 + offs_e, tl.sum(acc_m, axis=0), offs_e >= 0)
    if NEED_DVERTS:
        store_cast(d_verts_ptr + vrow * 3 + offs_c, tl.sum(acc_v, axis=0), offs_c < 3)


# ---------------------------------------------------------------------------------------------------------------------
# Host launchers


# Every launch passes enable_fp_fusion=False: with FMA contraction ``dx*dx + dy*dy + dz*dz`` would round differently
# for permuted components, so exact ties of the reference could break (and Triton 3.9 warns when it is left unset).
# It costs about two FP32 instructions per (query, vertex) pair in the compute-bound scan.


def _inverse_lbs_fwd(points, verts, mats, k: int):
    """points [B, P, 3], verts [B, V, 3], mats [B, V, 16], all contiguous -> canonical, transforms [B, P, 16], ids."""
    B, P, _ = points.shape
    V = verts.shape[1]
    canonical = torch.empty(B, P, 3, device=points.device, dtype=points.dtype)
    transforms = torch.empty(B, P, 16, device=points.device, dtype=mats.dtype)
    ids = torch.empty(B, P, k, device=points.device, dtype=torch.int32)
    if B * P > 0:
        block_p = rows_per_program(P, gpu_rows=128)
        block_v = rows_per_program(V, gpu_rows=64, interpret_rows=256)
        grid = (triton.cdiv(P, block_p), B)
        _inverse_lbs_fwd_kernel[grid](
            points, verts, mats, canonical, transforms, ids, P, V, MIN_SQ_DIST,
            K=k, KP=triton.next_power_of_2(k), ACC=tl_dtype(compute_dtype(points, verts, mats)),
            BLOCK_P=block_p, BLOCK_V=block_v, enable_fp_fusion=False,
        )  # fmt: skip
    return canonical, transforms, ids


def _vertex_segments(ids: torch.Tensor, V: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(query, slot) pair ids [B, P*K] sorted by vertex id (stable) and each vertex's run start [B, V+1]."""
    B = ids.shape[0]
    sorted_ids, order = torch.sort(ids.reshape(B, -1), dim=1, stable=True)
    bounds = torch.arange(V + 1, device=ids.device, dtype=ids.dtype).expand(B, V + 1).contiguous()
    offsets = torch.searchsorted(sorted_ids.contiguous(), bounds, out_int32=True)
    return order.to(torch.int32), offsets


def _inverse_lbs_bwd(points, verts, mats, ids, d_canonical, d_transforms, need: tuple[bool, bool, bool]):
    """Gradients (d_points, d_verts, d_mats [B, V, 16]) for the flags ``need``; None where not needed."""
    B, P, k = ids.shape
    V = verts.shape[1]
    need_dpoints, need_dverts, need_dmats = need[0], need[1] and k > 1, need[2]
    acc = compute_dtype(points, verts, mats)
    write_wg = k > 1 and (need_dverts or need_dmats)
    d_points = torch.empty_like(points) if need_dpoints else None
    d_verts = torch.empty_like(verts) if need_dverts else None
    d_mats = torch.empty_like(mats) if need_dmats else None
    w = torch.empty(B, P, k, device=points.device, dtype=acc) if write_wg else None
    g = torch.empty(B, P, k, device=points.device, dtype=acc) if write_wg else None
    if B * P > 0 and (need_dpoints or write_wg):
        block_p = rows_per_program(P, gpu_rows=128)
        _inverse_lbs_bwd_query_kernel[(triton.cdiv(P, block_p), B)](
            points, verts, mats, ids, d_canonical, d_transforms,
            d_points if need_dpoints else points, w if write_wg else points, g if write_wg else points,  # placeholders
            P, V, MIN_SQ_DIST,
            K=k, KP=triton.next_power_of_2(k), NEED_DPOINTS=need_dpoints, WRITE_WG=write_wg, ACC=tl_dtype(acc),
            BLOCK_P=block_p, enable_fp_fusion=False,
        )  # fmt: skip
    if B * V > 0 and (need_dverts or need_dmats):
        order, offsets = _vertex_segments(ids, V)
        block_q = rows_per_program(max(1, P * k // V), gpu_rows=32, interpret_rows=256)
        _inverse_lbs_bwd_vertex_kernel[(V, B)](
            points, verts, d_canonical, d_transforms,
            w if write_wg else points, g if write_wg else points, order, offsets,
            d_mats if need_dmats else mats, d_verts if need_dverts else verts,  # placeholders are never written
            P, V,
            K=k, NEED_DMATS=need_dmats, NEED_DVERTS=need_dverts, ACC=tl_dtype(acc), BLOCK_Q=block_q,
            enable_fp_fusion=False,
        )  # fmt: skip
    return d_points, d_verts, d_mats


# ---------------------------------------------------------------------------------------------------------------------
# Autograd


class InverseLBSFunction(torch.autograd.Function):
    """Autograd wrapper of the Triton kernels; saves the inputs and the neighbour ids [B, P, k] int32."""

    @staticmethod
    def forward(ctx, points, verts, vert_transforms, k: int):
        B, P, _ = points.shape
        V = verts.shape[1]
        points, verts = points.contiguous(), verts.contiguous()
        mats = vert_transforms.reshape(B, V, 16).contiguous()
        canonical, transforms, ids = _inverse_lbs_fwd(points, verts, mats, k)
        ctx.save_for_backward(points, verts, mats, ids)
        return canonical, transforms.view(B, P, 4, 4)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_canonical, d_transforms):
        points, verts, mats, ids = ctx.saved_tensors
        (B, P, _), V = points.shape, verts.shape[1]
        d_points, d_verts, d_mats = _inverse_lbs_bwd(
            points, verts, mats, ids, d_canonical.contiguous(), d_transforms.reshape(B, P, 16).contiguous(),
            ctx.needs_input_grad[:3],
        )  # fmt: skip
        return (
            d_points,
            d_verts,  # None for k = 1: the nearest vertex's position does not enter the outputs
            None if d_mats is None else d_mats.view(B, V, 4, 4),
            None,  # k
        )


@torch.compiler.disable
def inverse_lbs_triton(
    points: torch.Tensor,
    verts: torch.Tensor,
    vert_transforms: torch.Tensor,
    *,
    k: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton :func:`aniportrait.ops.inverse_lbs` (CUDA tensors, or CPU under ``TRITON_INTERPRET=1``)."""
    _check_inputs(points, verts, vert_transforms, k)
    return InverseLBSFunction.apply(points, verts, vert_transforms, k)
