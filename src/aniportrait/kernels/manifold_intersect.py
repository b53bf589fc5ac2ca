"""Ray-manifold intersection: the first crossing of each level set of a scalar field sampled along rays.

For ray samples ``s[0..S-1]`` (near to far), attributes ``p[0..S-1]`` and a level ``l``, the chosen interval ``i``
is the first with ``s[i] >= l >= s[i+1]`` (``two_sided``: see ``aniportrait.ops.manifold_intersect``), and

    hit = ((s[i+1] - l) p[i] + (l - s[i]) p[i+1]) / (s[i+1] - s[i])     if valid and |s[i+1] - s[i]| > min_step
    hit = p[i+1]                                                        otherwise

with ``valid = s[i] >= l >= s[i+1]`` on the chosen interval. Without a crossing (one-sided rule) ``i = S - 2`` (so
``hit = p[S-1]``).
The release divides by ``min_step`` instead of a small ``Delta`` so that the discarded branch stays finite, and so
do we, which keeps the backward free of inf/NaN.

Shapes: ``s`` [B, R, S], ``points`` [B, R, S, C], ``levels`` [L] -> ``hits`` [B, R, L, C], ``valid`` [B, R, L].

Triton forward: one program owns BLOCK_R rays and scans their samples once, in chunks of BLOCK_S intervals, for all
levels at once on a [BLOCK_R, BLOCK_S, BLOCK_L] tile; it then gathers the two ends of each chosen interval.
Saved for backward: the inputs and the chosen interval ids [B, R, L] int32 (L/S of the size of ``s``); the
interpolation weights are recomputed. The backward writes the dense gradients ``ds`` [B, R, S] and ``dpoints``
[B, R, S, C] chunk by chunk from the same program that owns the rays, so it needs no atomics and is deterministic.

Reference: ``SampleNet.get_intersections`` (two-sided) and ``get_s_and_intersections_target_lbs_with_deform``
(one-sided) in YueWuHKUST/AniPortraitGAN ``generators/siren.py``.
"""

from __future__ import annotations

import math

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


def _check_inputs(s, points, levels, min_step) -> tuple[int, int, int, int, int]:
    sizes: dict[str, int] = {}
    check_tensor("s", s, ["B", "R", "S"], sizes)
    check_tensor("points", points, ["B", "R", "S", "C"], sizes)
    check_tensor("levels", levels, ["L"], sizes)
    check_same_device(s=s, points=points, levels=levels)
    if sizes["S"] < 2:
        raise ValueError(f"s must have shape [B, R, S] with S >= 2 samples per ray, got {list(s.shape)}")
    if sizes["C"] < 1 or sizes["L"] < 1:
        raise ValueError(
            f"points [B, R, S, C] needs C >= 1 and levels [L] needs L >= 1, got {list(points.shape)}, {list(levels.shape)}"
        )
    if not (isinstance(min_step, (int, float)) and math.isfinite(min_step) and min_step > 0):
        raise ValueError(f"min_step must be a finite positive number, got {min_step!r}")
    return sizes["B"], sizes["R"], sizes["S"], sizes["C"], sizes["L"]


# ---------------------------------------------------------------------------------------------------------------------
# Reference


# Rays per block of the reference's interval search: its [rays, L, S-1] masks then stay in cache (on a 2-core CPU at
# the release's 16,384 rays x 256 samples x 24 levels, 0.09 s against 0.33 s for one [B, R, S-1, L] pass).
SEARCH_BLOCK_RAYS = 512


def _first_true(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first True along the last dim (0 where there is none) and whether there is one, both [..., 1]."""
    as_bytes = mask.view(torch.uint8)
    first = as_bytes.argmax(dim=-1, keepdim=True)
    return first, as_bytes.gather(-1, first).bool()


def _chosen_intervals(s: torch.Tensor, levels: torch.Tensor, two_sided: bool) -> torch.Tensor:
    """The interval rule (module docstring): of each ray of ``s`` [B, R, S] and each level [L], the chosen interval
    [B, R, L] int64. Searched in blocks of rays, each level's crossings along the last (contiguous) dim."""
    n_int = s.shape[-1] - 1
    rows = s.reshape(-1, 1, s.shape[-1])  # [B R, 1, S]
    lv = levels[:, None]  # [L, 1]
    out = torch.empty(rows.shape[0], levels.numel(), 1, dtype=torch.long, device=s.device)
    with torch.no_grad():
        for start in range(0, rows.shape[0], SEARCH_BLOCK_RAYS):
            block = rows[start : start + SEARCH_BLOCK_RAYS]
            s_lo, s_hi = block[..., :-1], block[..., 1:]  # [n, 1, S-1]
            if two_sided:
                prod = (s_hi - lv) * (lv - s_lo)  # [n, L, S-1]
                # The release's argmax of sign(prod) * linspace(S-2..0): the first strict crossing before the last
                # interval, else the first interval whose score is 0 (a touching interval), else the last one.
                strict_mask = prod > 0
                strict_mask[..., -1] = False
                strict, has_strict = _first_true(strict_mask)
                zero, has_zero = _first_true(prod == 0)
                idx = torch.where(has_strict, strict, torch.where(has_zero, zero, n_int - 1))
            else:
                first, has = _first_true((s_hi <= lv) & (lv <= s_lo))
                idx = torch.where(has, first, n_int - 1)
            out[start : start + block.shape[0]] = idx
    return out.view(*s.shape[:-1], levels.numel())


def manifold_intersect_ref(
    s: torch.Tensor,
    points: torch.Tensor,
    levels: torch.Tensor,
    *,
    two_sided: bool = False,
    min_step: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch :func:`aniportrait.ops.manifold_intersect` (the spec; any device, differentiable).

    A NaN in ``s`` never counts as a crossing.
    """
    _check_inputs(s, points, levels, min_step)
    acc = compute_dtype(s, points, levels)
    s_acc, p_acc, lv = s.to(acc), points.to(acc), levels.to(acc)
    idx = _chosen_intervals(s_acc, lv, two_sided)  # [B, R, L]
    sl = torch.gather(s_acc, -1, idx)  # [B, R, L]
    sh = torch.gather(s_acc, -1, idx + 1)
    valid = (sh <= lv) & (lv <= sl)
    delta = sh - sl
    steep = delta.abs() > min_step
    scale = torch.where(steep, delta, torch.full_like(delta, min_step))
    C = points.shape[-1]
    pl = torch.gather(p_acc, -2, idx[..., None].expand(*idx.shape, C))  # [B, R, L, C]
    ph = torch.gather(p_acc, -2, (idx + 1)[..., None].expand(*idx.shape, C))
    interp = ((sh - lv)[..., None] * pl + (lv - sl)[..., None] * ph) / scale[..., None]
    hits = torch.where((valid & steep)[..., None], interp, ph)
    return hits.to(points.dtype), valid


# ---------------------------------------------------------------------------------------------------------------------
# Triton kernels


@triton.jit
def _ray_level_tile(R, L, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr):
    """This program's [BLOCK_R rays, BLOCK_L levels] tile: global ray ids (int64 against overflow at large
    B*R*S*C), level ids, and the in-bounds masks of both."""
    offs_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_l = tl.arange(0, BLOCK_L)
    ray = (tl.program_id(1) * R + offs_r).to(tl.int64)
    return ray, offs_l, offs_r < R, offs_l < L


@triton.jit
def _chosen_interval(s_ptr, ray, idx, lv, mask, S: tl.constexpr, min_step, ACC: tl.constexpr):
    """Of each chosen interval ``idx`` [BLOCK_R, BLOCK_L]: ``s[i]``, ``s[i+1]`` in ACC, whether level ``lv``
    [1, BLOCK_L] lies in it (valid), whether it is steep (|delta s| > min_step), and the divisor (delta or
    min_step)."""
    sl = tl.load(s_ptr + ray[:, None] * S + idx, mask=mask, other=0.0).to(ACC)
    sh = tl.load(s_ptr + ray[:, None] * S + idx + 1, mask=mask, other=0.0).to(ACC)
    valid = (sh <= lv) & (lv <= sl)
    delta = sh - sl
    steep = tl.abs(delta) > min_step
    scale = tl.where(steep, delta, min_step)
    return sl, sh, valid, steep, scale


@triton.jit
def _manifold_intersect_fwd_kernel(
    s_ptr,  # [B, R, S] scalar field, contiguous
    points_ptr,  # [B, R, S, C] attributes, contiguous
    levels_ptr,  # [L] level values
    hits_ptr,  # out [B, R, L, C], points' dtype
    valid_ptr,  # out [B, R, L] uint8
    idx_ptr,  # out [B, R, L] int32: chosen interval, saved for backward
    R,  # rays per batch item
    S: tl.constexpr,  # samples per ray (specialised: it bounds the scan)
    C,  # channels
    L,  # levels
    min_step,  # interpolate only where |delta s| > min_step
    TWO_SIDED: tl.constexpr,  # the release's manifold_sr interval rule
    ACC: tl.constexpr,  # accumulator dtype (float32, or float64 for float64 inputs)
    BLOCK_R: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    ray, offs_l, mask_r, mask_l = _ray_level_tile(R, L, BLOCK_R, BLOCK_L)
    lv = tl.load(levels_ptr + offs_l, mask=mask_l, other=0.0).to(ACC)
    lv3 = lv[None, None, :]

    # Running first hit per (ray, level); S means "none yet". The two-sided rule also tracks the first
    # zero-score interval (touching, or the last one), which always exists.
    first = tl.full((BLOCK_R, BLOCK_L), S, tl.int32)
    first_zero = tl.full((BLOCK_R, BLOCK_L), S - 2, tl.int32)
    for k0 in range(0, S - 1, BLOCK_S):
        offs_k = k0 + tl.arange(0, BLOCK_S)
        mask_k = offs_k < S - 1
        m2 = mask_r[:, None] & mask_k[None, :]
        s_lo = tl.load(s_ptr + ray[:, None] * S + offs_k[None, :], mask=m2, other=0.0).to(ACC)
        s_hi = tl.load(s_ptr + ray[:, None] * S + offs_k[None, :] + 1, mask=m2, other=0.0).to(ACC)
        s_lo3 = s_lo[:, :, None]
        s_hi3 = s_hi[:, :, None]
        k3 = offs_k[None, :, None]
        in_range = mask_k[None, :, None] & mask_l[None, None, :]
        if TWO_SIDED:
            prod = (s_hi3 - lv3) * (lv3 - s_lo3)
            is_last = k3 == S - 2
            strict = (prod > 0) & (~is_last) & in_range
            zero = ((prod == 0) | is_last) & in_range
            first = tl.minimum(first, tl.min(tl.where(strict, k3, S), axis=1))
            first_zero = tl.minimum(first_zero, tl.min(tl.where(zero, k3, S), axis=1))
        else:
            down = (s_hi3 <= lv3) & (lv3 <= s_lo3) & in_range
            first = tl.minimum(first, tl.min(tl.where(down, k3, S), axis=1))
    if TWO_SIDED:
        idx = tl.where(first < S, first, first_zero)
    else:
        idx = tl.where(first < S, first, S - 2)

    m2 = mask_r[:, None] & mask_l[None, :]
    lv2 = lv[None, :]
    sl, sh, valid, steep, scale = _chosen_interval(s_ptr, ray, idx, lv2, m2, S, min_step, ACC)
    interp = valid & steep
    hit_lr = ray[:, None] * L + offs_l[None, :]  # (ray, level) row of hits
    tl.store(valid_ptr + hit_lr, valid.to(tl.uint8), mask=m2)
    tl.store(idx_ptr + hit_lr, idx, mask=m2)
    for c in range(C):
        pl = tl.load(points_ptr + (ray[:, None] * S + idx) * C + c, mask=m2, other=0.0).to(ACC)
        ph = tl.load(points_ptr + (ray[:, None] * S + idx + 1) * C + c, mask=m2, other=0.0).to(ACC)
        hit = tl.where(interp, ((sh - lv2) * pl + (lv2 - sl) * ph) / scale, ph)
        store_cast(hits_ptr + hit_lr * C + c, hit, m2)


@triton.jit
def _manifold_intersect_bwd_kernel(
    s_ptr,  # [B, R, S] scalar field
    points_ptr,  # [B, R, S, C] attributes
    levels_ptr,  # [L] level values
    idx_ptr,  # [B, R, L] int32 chosen intervals from the forward
    d_hits_ptr,  # [B, R, L, C] incoming gradient
    d_s_ptr,  # out [B, R, S] in s' dtype (written only if NEED_DS)
    d_points_ptr,  # out [B, R, S, C] in points' dtype (written only if NEED_DPOINTS)
    R,  # rays per batch item
    S: tl.constexpr,  # samples per ray
    C,  # channels
    L,  # levels
    min_step,  # the forward's interpolation threshold
    NEED_DS: tl.constexpr,
    NEED_DPOINTS: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    ray, offs_l, mask_r, mask_l = _ray_level_tile(R, L, BLOCK_R, BLOCK_L)
    m2 = mask_r[:, None] & mask_l[None, :]
    hit_lr = ray[:, None] * L + offs_l[None, :]
    lv = tl.load(levels_ptr + offs_l, mask=mask_l, other=0.0).to(ACC)[None, :]
    # Padded levels point at an impossible interval so they never match a sample below.
    idx = tl.load(idx_ptr + hit_lr, mask=m2, other=-2)
    sl, sh, valid, steep, scale = _chosen_interval(s_ptr, ray, idx, lv, m2, S, min_step, ACC)
    interp = valid & steep
    w_lo = tl.where(interp, (sh - lv) / scale, 0.0)  # d hit / d p[i]
    w_hi = tl.where(interp, (lv - sl) / scale, 1.0)  # d hit / d p[i+1]
    idx3 = idx[:, None, :]

    if NEED_DS:
        # d hit / d s[i] = (p[i+1] - p[i]) (l - s[i+1]) / delta^2, d hit / d s[i+1] = (p[i+1] - p[i]) (s[i] - l) / delta^2
        g_dp = tl.zeros((BLOCK_R, BLOCK_L), ACC)  # sum_c d_hit_c (p[i+1] - p[i])_c
        for c in range(C):
            pl = tl.load(points_ptr + (ray[:, None] * S + idx) * C + c, mask=m2, other=0.0).to(ACC)
            ph = tl.load(points_ptr + (ray[:, None] * S + idx + 1) * C + c, mask=m2, other=0.0).to(ACC)
            g = tl.load(d_hits_ptr + hit_lr * C + c, mask=m2, other=0.0).to(ACC)
            g_dp += g * (ph - pl)
        g_lo = tl.where(interp, g_dp * (lv - sh) / (scale * scale), 0.0)[:, None, :]
        g_hi = tl.where(interp, g_dp * (sl - lv) / (scale * scale), 0.0)[:, None, :]
        for k0 in range(0, S, BLOCK_S):
            offs_k = k0 + tl.arange(0, BLOCK_S)
            k3 = offs_k[None, :, None]
            ds = tl.sum(tl.where(k3 == idx3, g_lo, 0.0) + tl.where(k3 == idx3 + 1, g_hi, 0.0), axis=2)
            m_out = mask_r[:, None] & (offs_k < S)[None, :]
            store_cast(d_s_ptr + ray[:, None] * S + offs_k[None, :], ds, m_out)

    if NEED_DPOINTS:
        for k0 in range(0, S, BLOCK_S):
            offs_k = k0 + tl.arange(0, BLOCK_S)
            k3 = offs_k[None, :, None]
            is_lo = k3 == idx3
            is_hi = k3 == idx3 + 1
            m_out = mask_r[:, None] & (offs_k < S)[None, :]
            for c in range(C):
                g = tl.load(d_hits_ptr + hit_lr * C + c, mask=m2, other=0.0).to(ACC)
                dp = tl.sum(
                    tl.where(is_lo, (w_lo * g)[:, None, :], 0.0) + tl.where(is_hi, (w_hi * g)[:, None, :], 0.0), axis=2
                )
                store_cast(d_points_ptr + (ray[:, None] * S + offs_k[None, :]) * C + c, dp, m_out)


# ---------------------------------------------------------------------------------------------------------------------
# Host launchers


def _blocks(R: int, S: int, L: int) -> tuple[int, int, int]:
    """(BLOCK_R, BLOCK_S, BLOCK_L): about 16K elements per [BLOCK_R, BLOCK_S, BLOCK_L] tile on a GPU."""
    block_l = triton.next_power_of_2(L)
    block_r = rows_per_program(R, gpu_rows=16, interpret_rows=64)
    budget = 1 << 20 if block_r > 16 else 1 << 14  # the interpreter prefers few, large tiles
    block_s = max(1, min(triton.next_power_of_2(S), budget // (block_r * block_l)))
    return block_r, block_s, block_l


def _manifold_intersect_fwd(s, points, levels, two_sided: bool, min_step: float):
    B, R, S = s.shape
    C, L = points.shape[-1], levels.shape[0]
    hits = torch.empty(B, R, L, C, device=s.device, dtype=points.dtype)
    valid = torch.empty(B, R, L, device=s.device, dtype=torch.uint8)
    idx = torch.empty(B, R, L, device=s.device, dtype=torch.int32)
    if B * R > 0:
        block_r, block_s, block_l = _blocks(R, S, L)
        grid = (triton.cdiv(R, block_r), B)
        _manifold_intersect_fwd_kernel[grid](
            s, points, levels, hits, valid, idx, R, S, C, L, float(min_step),
            TWO_SIDED=bool(two_sided), ACC=tl_dtype(compute_dtype(s, points, levels)),
            BLOCK_R=block_r, BLOCK_S=block_s, BLOCK_L=block_l,
        )  # fmt: skip
    return hits, valid.view(torch.bool), idx


def _manifold_intersect_bwd(s, points, levels, idx, d_hits, min_step: float, need_ds: bool, need_dpoints: bool):
    B, R, S = s.shape
    C, L = points.shape[-1], levels.shape[0]
    d_s = torch.empty_like(s) if need_ds else None
    d_points = torch.empty_like(points) if need_dpoints else None
    if B * R > 0 and (need_ds or need_dpoints):
        block_r, block_s, block_l = _blocks(R, S, L)
        grid = (triton.cdiv(R, block_r), B)
        _manifold_intersect_bwd_kernel[grid](
            s, points, levels, idx, d_hits,
            d_s if need_ds else s, d_points if need_dpoints else points,  # placeholders are never written
            R, S, C, L, float(min_step),
            NEED_DS=need_ds, NEED_DPOINTS=need_dpoints, ACC=tl_dtype(compute_dtype(s, points, levels)),
            BLOCK_R=block_r, BLOCK_S=block_s, BLOCK_L=block_l,
        )  # fmt: skip
    return d_s, d_points


# ---------------------------------------------------------------------------------------------------------------------
# Autograd


class ManifoldIntersectFunction(torch.autograd.Function):
    """Autograd wrapper of the Triton kernels; saves the inputs and the chosen interval ids."""

    @staticmethod
    def forward(ctx, s, points, levels, two_sided: bool, min_step: float):
        s, points, levels = s.contiguous(), points.contiguous(), levels.contiguous()
        hits, valid, idx = _manifold_intersect_fwd(s, points, levels, two_sided, min_step)
        ctx.save_for_backward(s, points, levels, idx)
        ctx.min_step = min_step
        ctx.mark_non_differentiable(valid)
        return hits, valid

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hits, _d_valid):
        s, points, levels, idx = ctx.saved_tensors
        need_ds, need_dpoints = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if d_hits is None:
            d_hits = torch.zeros(*idx.shape, points.shape[-1], device=points.device, dtype=points.dtype)
        d_s, d_points = _manifold_intersect_bwd(
            s, points, levels, idx, d_hits.contiguous(), ctx.min_step, need_ds, need_dpoints
        )
        return (
            d_s,
            d_points,
            None,  # levels
            None,  # two_sided
            None,  # min_step
        )


@torch.compiler.disable
def manifold_intersect_triton(
    s: torch.Tensor,
    points: torch.Tensor,
    levels: torch.Tensor,
    *,
    two_sided: bool = False,
    min_step: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton :func:`aniportrait.ops.manifold_intersect` (CUDA tensors, or CPU under ``TRITON_INTERPRET=1``)."""
    _check_inputs(s, points, levels, min_step)
    return ManifoldIntersectFunction.apply(s, points, levels, bool(two_sided), float(min_step))
