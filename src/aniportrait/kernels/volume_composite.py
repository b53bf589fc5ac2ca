"""Alpha compositing of L depth-sorted entries per ray (the release's ``alpha_integration``).

Math, per ray, with entries taken in stable ascending depth order (invalid entries get ``alpha = 0`` and
``z = 10``)::

    f_j = 1 - alpha_j + 1e-10,   T_i = prod_{j before i} f_j,   w_i = alpha_i T_i,   W = sum_i w_i
    color_c = sum_i w_i rgb_ic (+ 1 - W with a white background),   out_depth = sum_i w_i z_i / W  (10 if W == 0)

Shapes: ``rgb`` [B, R, L, C], ``alpha``/``depth``/``valid`` [B, R, L] in; ``color`` [B, R, C], ``out_depth`` [B, R]
and ``weights`` [B, R, L] (input order) out.

The Triton kernels never sort. Entry ``j`` is *before* entry ``i`` iff ``z_j < z_i`` or ``z_j == z_i and j < i``,
which is exactly the stable sort. A program holds [BLOCK_R, BLOCK_L] tiles of rays x entries and loops over the
``j`` in input order, multiplying ``f_j`` into every entry that ``j`` is before: O(L^2) work per ray, meant for the
release's L = 24. Backward, with ``g_w`` the gradient reaching ``w`` from all three outputs::

    d_alpha_k = T_k g_w_k - (1 / f_k) sum_{i after k} g_w_i w_i        (w_i contains f_k, so f_k >= 1e-10 is safe)
    g_w_i = sum_c g_color_c (rgb_ic - [white_back]) + g_depth (z_i - out_depth) / W + g_weights_i
    d_z_i = g_depth w_i / W,   d_rgb_ic = w_i g_color_c

The kernels take the depth mean relative to z0, the ray's nearest depth with alpha > 0, so that ``z_i - out_depth``
is accurate when W is small (the reference, and the release, lose it to the rounding of ``|z| / W``).

The kernels read ``rgb``, ``alpha`` and ``depth`` at their element strides, so views such as ``rgba[..., :3]`` and
``rgba[..., 3]`` of one [B, R, L, 4] tensor are read in place; only a tensor whose B and R dims do not merge into one
row stride (a B/R-permuted layout) is copied to contiguous memory first. Outputs and gradients are contiguous.

Saved for backward: the inputs as the kernels read them (no copies of such views) and two per-ray statistics in the
compute dtype, ``W`` and ``out_depth - z0``: O(B R) extra memory instead of O(B R L) for ``T`` or ``w``, which backward
recomputes.

References: ``generators/utils.py:alpha_integration`` and ``generators_manifold_sr.py:render`` of the AniPortraitGAN
release; AniPortraitGAN (Wu et al., SIGGRAPH Asia 2023).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from aniportrait.constants import INVALID_DEPTH
from aniportrait.kernels._triton import tl, triton
from aniportrait.kernels._utils import (
    check_same_device,
    check_tensor,
    compute_dtype,
    rows_per_program,
    store_cast,
    tl_dtype,
)

__all__ = [
    "INVALID_DEPTH",
    "TRANSMITTANCE_EPS",
    "VolumeCompositeFunction",
    "volume_composite_ref",
    "volume_composite_triton",
]

# INVALID_DEPTH (constants): the depth given to invalid entries, and the output depth of rays without weight. The
# release writes 10.0 into the z-values of invalid intersections; it leaves 0/0 = NaN for empty rays.
# Floor added to every transmittance factor: ``1 - alphas + 1e-10`` in ``alpha_integration`` (generators/utils.py).
TRANSMITTANCE_EPS = 1e-10
# Elements of the [BLOCK_R, BLOCK_L] tiles one GPU program works on (64 rays at L = 24), and the cap on its rays.
_GPU_TILE_ELEMS = 2048
_GPU_MAX_ROWS = 256


# ---------------------------------------------------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------------------------------------------------


def _check_inputs(rgb, alpha, depth, valid) -> None:
    """Shapes, dtypes and devices of the op's inputs; raises ``ValueError`` naming the expected shape."""
    sizes: dict[str, int] = {}
    check_tensor("rgb", rgb, ["B", "R", "L", "C"], sizes)
    check_tensor("alpha", alpha, ["B", "R", "L"], sizes)
    check_tensor("depth", depth, ["B", "R", "L"], sizes)
    if valid is not None:
        if isinstance(valid, torch.Tensor) and valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool tensor of shape [B, R, L], got dtype {valid.dtype}")
        check_tensor("valid", valid, ["B", "R", "L"], sizes, dtypes=(torch.bool,))
    if sizes["L"] < 1 or sizes["C"] < 1:
        raise ValueError(f"rgb must have shape [B, R, L, C] with L >= 1 and C >= 1, got {list(rgb.shape)}")
    check_same_device(rgb=rgb, alpha=alpha, depth=depth, valid=valid)


def volume_composite_ref(
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    depth: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    white_back: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain-PyTorch compositing: mask, stable sort, exclusive cumprod, weights back in input order.

    Args:
        rgb: [B, R, L, C] colours or features (C >= 1).
        alpha: [B, R, L] opacities in [0, 1].
        depth: [B, R, L] depths used for sorting and the depth output.
        valid: optional [B, R, L] bool mask; invalid entries get alpha 0 and depth ``INVALID_DEPTH``.
        white_back: composite over a white (1.0) background.

    Returns:
        color [B, R, C] in ``rgb.dtype``, out_depth [B, R] in ``depth.dtype`` (``INVALID_DEPTH`` where the weights
        sum to 0) and weights [B, R, L] in ``alpha.dtype``; differentiable w.r.t. ``rgb``, ``alpha`` and ``depth``.

    Example:
        >>> color, depth_map, weights = volume_composite_ref(rgba[..., :3], rgba[..., 3], z, valid=is_valid)
    """
    _check_inputs(rgb, alpha, depth, valid)
    acc = compute_dtype(rgb, alpha, depth)
    x, a, z = rgb.to(acc), alpha.to(acc), depth.to(acc)
    if valid is not None:
        a = torch.where(valid, a, 0.0)
        z = torch.where(valid, z, INVALID_DEPTH)
    order = torch.sort(z.detach(), dim=-1, stable=True).indices  # the ordering itself is not differentiable
    a_s = a.gather(-1, order)
    z_s = z.gather(-1, order)
    x_s = x.gather(-2, order.unsqueeze(-1).expand_as(x))
    f = 1.0 - a_s + TRANSMITTANCE_EPS
    trans = torch.cat([torch.ones_like(f[..., :1]), torch.cumprod(f, dim=-1)[..., :-1]], dim=-1)
    w_s = a_s * trans
    w_sum = w_s.sum(-1)
    color = (w_s.unsqueeze(-1) * x_s).sum(-2)
    if white_back:
        color = color + (1.0 - w_sum).unsqueeze(-1)
    # Divide by 1 where W == 0 so that the discarded branch of the where has a finite gradient.
    has_w = w_sum > 0
    mean_z = (w_s * z_s).sum(-1) / torch.where(has_w, w_sum, 1.0)
    out_depth = torch.where(has_w, mean_z, INVALID_DEPTH)
    weights = torch.zeros_like(w_s).scatter(-1, order, w_s)
    return color.to(rgb.dtype), out_depth.to(depth.dtype), weights.to(alpha.dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Triton kernels
# ---------------------------------------------------------------------------------------------------------------------


@triton.jit
def _column(x, cols, j):
    """x[:, j] of a [BLOCK_R, BLOCK_L] tile as [BLOCK_R] (a masked sum, so exact)."""
    return tl.sum(tl.where(cols[None, :] == j, x, 0.0), axis=1)


@triton.jit
def _before(z_p, p, z_q, q):
    """Entry p comes before entry q in the stable ascending depth order (broadcasting)."""
    return (z_p < z_q) | ((z_p == z_q) & (p < q))


@triton.jit
def _transmittance(a, z, cols, L, EPS: tl.constexpr):
    """T [BLOCK_R, BLOCK_L]: for each entry j, multiply f_j into every entry that j comes before."""
    f = 1.0 - a + EPS
    trans = tl.full(a.shape, 1.0, a.dtype)
    for j in range(L):
        z_j = _column(z, cols, j)
        f_j = _column(f, cols, j)
        trans *= tl.where(_before(z_j[:, None], j, z, cols[None, :]), f_j[:, None], 1.0)
    return trans


@triton.jit
def _depth_shift(a, z, INVALID_DEPTH: tl.constexpr):
    """Per-ray z0: the nearest depth with alpha > 0 (else INVALID_DEPTH). Depth means are taken of z - z0, so that
    z_i - out_depth in backward does not cancel to the rounding error of |z| / W."""
    return tl.min(tl.where(a > 0, z, INVALID_DEPTH), axis=1)


@triton.jit
def _ray_tile(n_rows, L, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr):
    """This program's [BLOCK_R rays, BLOCK_L entries] tile: ray ids (int64), entry ids, the ray mask, the tile mask,
    the tile's offsets into the contiguous [n_rows, L] tensors (valid, weights and the gradients) and its 64-bit
    entry offsets for the strided inputs."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_L)
    row_mask = rows < n_rows
    mask = row_mask[:, None] & (cols[None, :] < L)
    offs = rows[:, None] * L + cols[None, :]
    entries = cols[None, :].to(tl.int64)
    return rows, cols, row_mask, mask, offs, entries


@triton.jit
def _load_alpha_depth(
    alpha_ptr,
    depth_ptr,
    valid_ptr,
    rows,
    entries,
    offs,
    mask,
    stride_alpha_row,
    stride_alpha_l,
    stride_depth_row,
    stride_depth_l,
    HAS_VALID: tl.constexpr,
    INVALID_DEPTH: tl.constexpr,
    ACC: tl.constexpr,
):
    """The [BLOCK_R, BLOCK_L] alpha and depth tiles in ACC, read at their strides, with invalid entries (per the
    contiguous uint8 mask at ``offs``) set to alpha 0 and INVALID_DEPTH, and the tile's in-bounds valid entries
    (``mask`` itself without HAS_VALID): the preamble of both kernels."""
    a = tl.load(alpha_ptr + rows[:, None] * stride_alpha_row + entries * stride_alpha_l, mask=mask, other=0.0)
    z = tl.load(depth_ptr + rows[:, None] * stride_depth_row + entries * stride_depth_l, mask=mask, other=0.0)
    a, z = a.to(ACC), z.to(ACC)
    keep = mask
    if HAS_VALID:
        keep = tl.load(valid_ptr + offs, mask=mask, other=0) != 0
        a = tl.where(keep, a, 0.0)
        z = tl.where(keep, z, INVALID_DEPTH)
    return a, z, keep


@triton.jit
def _volume_composite_fwd_kernel(
    rgb_ptr,  # [n_rows, L, C] colours, read at the stride_rgb_* element strides
    alpha_ptr,  # [n_rows, L] opacities, read at the stride_alpha_* element strides
    depth_ptr,  # [n_rows, L] depths, read at the stride_depth_* element strides
    valid_ptr,  # [n_rows, L] uint8 mask, contiguous (read only if HAS_VALID)
    color_ptr,  # out [n_rows, C] composited colour, rgb dtype, contiguous
    out_depth_ptr,  # out [n_rows] weighted mean depth, depth dtype
    weights_ptr,  # out [n_rows, L] weights in input order, alpha dtype, contiguous
    w_sum_ptr,  # out [n_rows] sum of the weights W, ACC dtype (saved for backward)
    mean_dz_ptr,  # out [n_rows] out_depth - z0 where W > 0 (else 0), ACC dtype (saved for backward)
    n_rows,  # B * R
    L,  # entries per ray
    C,  # channels
    stride_rgb_row,  # element strides of rgb: between rays,
    stride_rgb_l,  # between entries,
    stride_rgb_c,  # and between channels
    stride_alpha_row,  # element strides of alpha: between rays,
    stride_alpha_l,  # and between entries
    stride_depth_row,  # element strides of depth: between rays,
    stride_depth_l,  # and between entries
    HAS_VALID: tl.constexpr,  # whether valid_ptr is a mask
    WHITE_BACK: tl.constexpr,  # add 1 - W to every channel
    INVALID_DEPTH: tl.constexpr,  # depth of invalid entries and of rays without weight
    EPS: tl.constexpr,  # transmittance floor
    ACC: tl.constexpr,  # accumulator dtype: fp32, or fp64 for fp64 inputs
    BLOCK_R: tl.constexpr,  # rays per program
    BLOCK_L: tl.constexpr,  # next_pow2(L)
):
    """Composite BLOCK_R rays: T over the stable depth order without sorting, then the three outputs."""
    rows, cols, row_mask, mask, offs, entries = _ray_tile(n_rows, L, BLOCK_R, BLOCK_L)
    a, z, _ = _load_alpha_depth(
        alpha_ptr, depth_ptr, valid_ptr, rows, entries, offs, mask,
        stride_alpha_row, stride_alpha_l, stride_depth_row, stride_depth_l,
        HAS_VALID, INVALID_DEPTH, ACC,
    )  # fmt: skip
    w = a * _transmittance(a, z, cols, L, EPS)
    store_cast(weights_ptr + offs, w, mask)

    w_sum = tl.sum(w, axis=1)
    has_w = w_sum > 0
    z0 = _depth_shift(a, z, INVALID_DEPTH)
    mean_dz = tl.where(has_w, tl.sum(w * (z - z0[:, None]), axis=1) / tl.where(has_w, w_sum, 1.0), 0.0)
    out_depth = tl.where(has_w, z0 + mean_dz, INVALID_DEPTH)
    store_cast(out_depth_ptr + rows, out_depth, row_mask)
    tl.store(w_sum_ptr + rows, w_sum, mask=row_mask)
    tl.store(mean_dz_ptr + rows, mean_dz, mask=row_mask)

    x_ptrs = rgb_ptr + rows[:, None] * stride_rgb_row + entries * stride_rgb_l  # channel c, stepped per channel
    for c in range(C):
        x = tl.load(x_ptrs, mask=mask, other=0.0).to(ACC)
        x_ptrs += stride_rgb_c
        col = tl.sum(w * x, axis=1)
        if WHITE_BACK:
            col += 1.0 - w_sum
        store_cast(color_ptr + rows * C + c, col, row_mask)


@triton.jit
def _volume_composite_bwd_kernel(
    rgb_ptr,  # [n_rows, L, C] colours, read at the stride_rgb_* element strides
    alpha_ptr,  # [n_rows, L] opacities, read at the stride_alpha_* element strides
    depth_ptr,  # [n_rows, L] depths, read at the stride_depth_* element strides
    valid_ptr,  # [n_rows, L] uint8 mask, contiguous (read only if HAS_VALID)
    w_sum_ptr,  # [n_rows] saved W, ACC dtype
    mean_dz_ptr,  # [n_rows] saved out_depth - z0, ACC dtype
    g_color_ptr,  # [n_rows, C] gradient of color, contiguous (read only if HAS_G_COLOR)
    g_depth_ptr,  # [n_rows] gradient of out_depth (read only if HAS_G_DEPTH)
    g_weights_ptr,  # [n_rows, L] gradient of weights, contiguous (read only if HAS_G_WEIGHTS)
    d_rgb_ptr,  # out [n_rows, L, C], contiguous (written only if NEED_D_RGB)
    d_alpha_ptr,  # out [n_rows, L], contiguous (written only if NEED_D_ALPHA)
    d_depth_ptr,  # out [n_rows, L], contiguous (written only if NEED_D_DEPTH)
    n_rows,  # B * R
    L,  # entries per ray
    C,  # channels
    stride_rgb_row,  # element strides of rgb: between rays,
    stride_rgb_l,  # between entries,
    stride_rgb_c,  # and between channels
    stride_alpha_row,  # element strides of alpha: between rays,
    stride_alpha_l,  # and between entries
    stride_depth_row,  # element strides of depth: between rays,
    stride_depth_l,  # and between entries
    HAS_VALID: tl.constexpr,  # whether valid_ptr is a mask
    WHITE_BACK: tl.constexpr,  # the forward added 1 - W
    HAS_G_COLOR: tl.constexpr,  # color received a gradient
    HAS_G_DEPTH: tl.constexpr,  # out_depth received a gradient
    HAS_G_WEIGHTS: tl.constexpr,  # weights received a gradient
    NEED_D_RGB: tl.constexpr,  # write d_rgb (implies HAS_G_COLOR)
    NEED_D_ALPHA: tl.constexpr,  # write d_alpha
    NEED_D_DEPTH: tl.constexpr,  # write d_depth (implies HAS_G_DEPTH)
    INVALID_DEPTH: tl.constexpr,  # depth of invalid entries
    EPS: tl.constexpr,  # transmittance floor
    ACC: tl.constexpr,  # accumulator dtype: fp32, or fp64 for fp64 inputs
    BLOCK_R: tl.constexpr,  # rays per program
    BLOCK_L: tl.constexpr,  # next_pow2(L)
):
    """Gradients for BLOCK_R rays with T recomputed; each program writes only its own rays (no atomics)."""
    rows, cols, row_mask, mask, offs, entries = _ray_tile(n_rows, L, BLOCK_R, BLOCK_L)
    a, z, keep = _load_alpha_depth(
        alpha_ptr, depth_ptr, valid_ptr, rows, entries, offs, mask,
        stride_alpha_row, stride_alpha_l, stride_depth_row, stride_depth_l,
        HAS_VALID, INVALID_DEPTH, ACC,
    )  # fmt: skip
    trans = _transmittance(a, z, cols, L, EPS)
    w = a * trans

    # g_w: the gradient reaching each weight from color, out_depth and weights.
    g_w = tl.zeros([BLOCK_R, BLOCK_L], dtype=ACC)
    if HAS_G_COLOR:
        x_ptrs = rgb_ptr + rows[:, None] * stride_rgb_row + entries * stride_rgb_l  # channel c, stepped per channel
        for c in range(C):
            g = tl.load(g_color_ptr + rows * C + c, mask=row_mask, other=0.0).to(ACC)
            if NEED_D_ALPHA:
                x = tl.load(x_ptrs, mask=mask, other=0.0).to(ACC)
                x_ptrs += stride_rgb_c
                if WHITE_BACK:
                    x -= 1.0
                g_w += g[:, None] * x
            if NEED_D_RGB:
                store_cast(d_rgb_ptr + offs * C + c, w * g[:, None], mask)
    if HAS_G_DEPTH:
        w_sum = tl.load(w_sum_ptr + rows, mask=row_mask, other=0.0)
        mean_dz = tl.load(mean_dz_ptr + rows, mask=row_mask, other=0.0)
        has_w = w_sum > 0
        # g_depth / W where W > 0; elsewhere out_depth is the constant INVALID_DEPTH.
        g_over_w = tl.where(has_w, tl.load(g_depth_ptr + rows, mask=row_mask, other=0.0).to(ACC), 0.0)
        g_over_w = g_over_w / tl.where(has_w, w_sum, 1.0)
        if NEED_D_ALPHA:
            z0 = _depth_shift(a, z, INVALID_DEPTH)
            g_w += g_over_w[:, None] * ((z - z0[:, None]) - mean_dz[:, None])
        if NEED_D_DEPTH:
            d_z = g_over_w[:, None] * w  # zero at invalid entries, whose w is 0
            store_cast(d_depth_ptr + offs, d_z, mask)
    if HAS_G_WEIGHTS:
        g_w += tl.load(g_weights_ptr + offs, mask=mask, other=0.0).to(ACC)

    if NEED_D_ALPHA:
        # after_k = sum of g_w_j w_j over the entries j that come after k (padded j are not visited).
        gww = g_w * w
        after = tl.zeros([BLOCK_R, BLOCK_L], dtype=ACC)
        for j in range(L):
            z_j = _column(z, cols, j)
            gww_j = _column(gww, cols, j)
            after += tl.where(_before(z, cols[None, :], z_j[:, None], j), gww_j[:, None], 0.0)
        d_a = trans * g_w - after / (1.0 - a + EPS)
        if HAS_VALID:  # an invalid entry's alpha was replaced by 0: no gradient reaches the input
            d_a = tl.where(keep, d_a, 0.0)
        store_cast(d_alpha_ptr + offs, d_a, mask)


# ---------------------------------------------------------------------------------------------------------------------
# Host launchers
# ---------------------------------------------------------------------------------------------------------------------


def _launch_sizes(n_rows: int, L: int) -> tuple[int, int, tuple[int]]:
    """BLOCK_R, BLOCK_L and the grid: [BLOCK_R, BLOCK_L] tiles of about ``_GPU_TILE_ELEMS`` elements on a GPU."""
    block_l = triton.next_power_of_2(L)
    gpu_rows = max(1, min(_GPU_MAX_ROWS, _GPU_TILE_ELEMS // block_l))
    block_r = rows_per_program(n_rows, gpu_rows=gpu_rows)
    return block_r, block_l, (triton.cdiv(n_rows, block_r),)


def _row_strides(t: torch.Tensor) -> tuple[int, ...] | None:
    """Element strides of ``t`` [B, R, ...] read as [B * R, ...]: the one stride between consecutive rays (row
    ``b * R + r``), then the strides of the trailing dims; None where B and R do not merge into one row stride."""
    B, R = t.shape[:2]
    stride_b, stride_r = t.stride(0), t.stride(1)
    if R == 1:
        return (stride_b, *t.stride()[2:])
    if B == 1 or stride_b == R * stride_r:
        return (stride_r, *t.stride()[2:])
    return None  # e.g. a B/R-permuted layout


def _rows_readable(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself where the kernels can read it in place (see :func:`_row_strides`), else a contiguous copy."""
    return t if _row_strides(t) is not None else t.contiguous()


def _input_strides(rgb: torch.Tensor, alpha: torch.Tensor, depth: torch.Tensor) -> tuple[int, ...]:
    """The seven stride arguments of the kernels, for inputs that went through :func:`_rows_readable`."""
    return (*_row_strides(rgb), *_row_strides(alpha), *_row_strides(depth))


def _as_uint8(valid: torch.Tensor | None) -> torch.Tensor | None:
    return None if valid is None else valid.contiguous().view(torch.uint8)


def _volume_composite_fwd(
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    depth: torch.Tensor,
    valid: torch.Tensor | None,
    white_back: bool,
) -> tuple[torch.Tensor, ...]:
    """Run the forward kernel on inputs that went through :func:`_rows_readable` (read at their strides); returns
    the contiguous color, out_depth, weights, W and out_depth - z0."""
    B, R, L, C = rgb.shape
    n_rows = B * R
    acc = compute_dtype(rgb, alpha, depth)
    dev = rgb.device
    color = torch.empty(B, R, C, dtype=rgb.dtype, device=dev)
    out_depth = torch.empty(B, R, dtype=depth.dtype, device=dev)
    weights = torch.empty(B, R, L, dtype=alpha.dtype, device=dev)
    w_sum = torch.empty(B, R, dtype=acc, device=dev)
    mean_dz = torch.empty(B, R, dtype=acc, device=dev)
    if n_rows == 0:
        return color, out_depth, weights, w_sum, mean_dz
    block_r, block_l, grid = _launch_sizes(n_rows, L)
    valid_u8 = _as_uint8(valid)
    _volume_composite_fwd_kernel[grid](
        rgb, alpha, depth, alpha if valid_u8 is None else valid_u8,
        color, out_depth, weights, w_sum, mean_dz,
        n_rows, L, C, *_input_strides(rgb, alpha, depth),
        HAS_VALID=valid_u8 is not None, WHITE_BACK=bool(white_back),
        INVALID_DEPTH=INVALID_DEPTH, EPS=TRANSMITTANCE_EPS, ACC=tl_dtype(acc),
        BLOCK_R=block_r, BLOCK_L=block_l,
    )  # fmt: skip
    return color, out_depth, weights, w_sum, mean_dz


def _volume_composite_bwd(
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    depth: torch.Tensor,
    valid: torch.Tensor | None,
    w_sum: torch.Tensor,
    mean_dz: torch.Tensor,
    g_color: torch.Tensor | None,
    g_depth: torch.Tensor | None,
    g_weights: torch.Tensor | None,
    white_back: bool,
    needs: tuple[bool, bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Run the backward kernel; returns contiguous d_rgb, d_alpha, d_depth, each None where it is not needed or is
    zero."""
    B, R, L, C = rgb.shape
    n_rows = B * R
    need_rgb = needs[0] and g_color is not None
    need_alpha = needs[1] and (g_color is not None or g_depth is not None or g_weights is not None)
    need_depth = needs[2] and g_depth is not None
    contiguous = torch.contiguous_format  # empty_like would copy the layout of a dense but permuted input
    d_rgb = torch.empty_like(rgb, memory_format=contiguous) if need_rgb else None
    d_alpha = torch.empty_like(alpha, memory_format=contiguous) if need_alpha else None
    d_depth = torch.empty_like(depth, memory_format=contiguous) if need_depth else None
    if n_rows == 0 or not (need_rgb or need_alpha or need_depth):
        return d_rgb, d_alpha, d_depth
    block_r, block_l, grid = _launch_sizes(n_rows, L)
    valid_u8 = _as_uint8(valid)
    g_color = None if g_color is None else g_color.contiguous()
    g_depth = None if g_depth is None else g_depth.contiguous()
    g_weights = None if g_weights is None else g_weights.contiguous()
    dummy = alpha  # stands in for absent tensors; never read or written
    _volume_composite_bwd_kernel[grid](
        rgb, alpha, depth, dummy if valid_u8 is None else valid_u8, w_sum, mean_dz,
        dummy if g_color is None else g_color, dummy if g_depth is None else g_depth,
        dummy if g_weights is None else g_weights,
        dummy if d_rgb is None else d_rgb, dummy if d_alpha is None else d_alpha,
        dummy if d_depth is None else d_depth,
        n_rows, L, C, *_input_strides(rgb, alpha, depth),
        HAS_VALID=valid_u8 is not None, WHITE_BACK=bool(white_back),
        HAS_G_COLOR=g_color is not None, HAS_G_DEPTH=g_depth is not None, HAS_G_WEIGHTS=g_weights is not None,
        NEED_D_RGB=need_rgb, NEED_D_ALPHA=need_alpha, NEED_D_DEPTH=need_depth,
        INVALID_DEPTH=INVALID_DEPTH, EPS=TRANSMITTANCE_EPS, ACC=tl_dtype(w_sum.dtype),
        BLOCK_R=block_r, BLOCK_L=block_l,
    )  # fmt: skip
    return d_rgb, d_alpha, d_depth


# ---------------------------------------------------------------------------------------------------------------------
# Autograd
# ---------------------------------------------------------------------------------------------------------------------


class VolumeCompositeFunction(torch.autograd.Function):
    """``apply(rgb, alpha, depth, valid, white_back) -> (color, out_depth, weights)``.

    Saves the inputs as the kernels read them (views in place; a contiguous copy only where B and R do not merge into
    one row stride) plus W and out_depth - z0 per ray; T is recomputed in backward. No AMP input casting: the kernels
    read any float dtype and upcast in registers.
    """

    @staticmethod
    def forward(ctx, rgb, alpha, depth, valid, white_back):
        rgb, alpha, depth = _rows_readable(rgb), _rows_readable(alpha), _rows_readable(depth)
        valid = None if valid is None else valid.contiguous()
        color, out_depth, weights, w_sum, mean_dz = _volume_composite_fwd(rgb, alpha, depth, valid, white_back)
        ctx.save_for_backward(rgb, alpha, depth, valid, w_sum, mean_dz)
        ctx.white_back = white_back
        ctx.set_materialize_grads(False)  # unused outputs arrive as None and their terms are skipped
        return color, out_depth, weights

    @staticmethod
    @once_differentiable
    def backward(ctx, g_color, g_depth, g_weights):
        rgb, alpha, depth, valid, w_sum, mean_dz = ctx.saved_tensors
        d_rgb, d_alpha, d_depth = _volume_composite_bwd(
            rgb, alpha, depth, valid, w_sum, mean_dz, g_color, g_depth, g_weights,
            ctx.white_back, tuple(ctx.needs_input_grad[:3]),
        )  # fmt: skip
        return (
            d_rgb,
            d_alpha,
            d_depth,
            None,  # valid: a bool mask
            None,  # white_back: a flag
        )


# ---------------------------------------------------------------------------------------------------------------------
# Triton entry
# ---------------------------------------------------------------------------------------------------------------------


@torch.compiler.disable
def volume_composite_triton(
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    depth: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    white_back: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton compositing with the semantics of :func:`volume_composite_ref` (CUDA, or CPU under the interpreter).

    Args:
        rgb, alpha, depth: [B, R, L, C], [B, R, L] and [B, R, L] float tensors on one device.
        valid: optional [B, R, L] bool mask.
        white_back: composite over a white (1.0) background.

    Returns:
        color [B, R, C], out_depth [B, R] and weights [B, R, L] in the dtypes of ``rgb``, ``depth`` and ``alpha``.

    Example:
        >>> color, depth_map, weights = volume_composite_triton(rgb, alpha, z, valid=is_valid, white_back=True)
    """
    _check_inputs(rgb, alpha, depth, valid)
    return VolumeCompositeFunction.apply(rgb, alpha, depth, valid, bool(white_back))
