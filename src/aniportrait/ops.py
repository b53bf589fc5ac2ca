"""Public op API. Models and the renderer call only these three functions.

Each op takes ``impl="auto" | "ref" | "triton"`` (see :mod:`aniportrait.kernels._registry`): ``auto`` runs the
Triton kernel when every tensor is on CUDA and the plain-PyTorch reference otherwise, ``ANIPORTRAIT_IMPL``
overrides ``auto``, and an explicit ``"triton"`` that cannot run raises. Inputs may be float16, bfloat16, float32
or float64 and non-contiguous; computation happens in float32 (float64 for float64 inputs). Shape letters are
defined in :mod:`aniportrait.kernels`.

The release's semantics and the quirks kept for parity: docs/release.md.
"""

from __future__ import annotations

import torch

from aniportrait.kernels import inverse_lbs as _lbs
from aniportrait.kernels import manifold_intersect as _mi
from aniportrait.kernels import volume_composite as _vc
from aniportrait.kernels._registry import Impl, resolve_impl

__all__ = ["inverse_lbs", "manifold_intersect", "volume_composite"]


def manifold_intersect(
    s: torch.Tensor,
    points: torch.Tensor,
    levels: torch.Tensor,
    *,
    two_sided: bool = False,
    min_step: float = 0.05,
    impl: Impl = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersect rays with the level sets of a scalar field sampled along them.

    For each level ``l`` the first interval ``i`` (nearest the camera) with ``s[i] >= l >= s[i+1]`` is chosen.
    If ``|s[i+1] - s[i]| > min_step`` the hit is the linear interpolation of ``points`` at ``l``; otherwise it is
    ``points[i+1]``. Without a crossing the last interval is used: the hit is ``points[S-1]`` and ``valid`` is
    False. ``two_sided=True`` is the release's per-identity rule: the first strict crossing in either direction
    among the intervals before the last; without one, the first interval that only touches the level (an end equal
    to it), else the last interval. Validity stays one-sided (``s[i] >= l >= s[i+1]``).

    Args:
        s: [B, R, S] scalar field at S >= 2 samples per ray, near to far.
        points: [B, R, S, C] per-sample attributes to interpolate (C >= 1).
        levels: [L] level values.
        two_sided: use the release's ``manifold_sr`` interval rule.
        min_step: interpolate only where ``|s[i+1] - s[i]| > min_step``.
        impl: ``"auto"``, ``"ref"`` or ``"triton"``.

    Returns:
        hits [B, R, L, C] in ``points.dtype``, differentiable w.r.t. ``s`` and ``points``;
        valid [B, R, L] bool.

    Example:
        >>> hits, valid = manifold_intersect(s, xyz, torch.linspace(23, 8, 24))
    """
    fn = _mi.manifold_intersect_ref
    if resolve_impl("manifold_intersect", impl, s, points, levels) == "triton":
        fn = _mi.manifold_intersect_triton
    return fn(s, points, levels, two_sided=two_sided, min_step=min_step)


def inverse_lbs(
    points: torch.Tensor,
    verts: torch.Tensor,
    vert_transforms: torch.Tensor,
    *,
    k: int = 1,
    impl: Impl = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map observation-space points to canonical space with the transforms of their nearest posed vertices.

    ``transforms`` is the matrix of the nearest vertex (``k=1``), or for ``k > 1`` the blend of the ``k`` nearest
    matrices weighted by ``1 / max(d², 1e-12)`` (squared Euclidean distance), normalised. Exact distance ties go to
    the lower vertex index. ``canonical`` is ``(transforms @ [p, 1])[:3]``.

    Args:
        points: [B, P, 3] query points.
        verts: [B, V, 3] posed vertices (V >= k).
        vert_transforms: [B, V, 4, 4] per-vertex inverse skinning matrices.
        k: neighbours per query, 1 <= k <= 8.
        impl: ``"auto"``, ``"ref"`` or ``"triton"``.

    Returns:
        canonical [B, P, 3] and transforms [B, P, 4, 4], differentiable w.r.t. ``points`` and ``vert_transforms``,
        and w.r.t. ``verts`` through the ``k > 1`` weights.

    Example:
        >>> canonical, transforms = inverse_lbs(samples, posed_verts, inv_skin, k=1)
    """
    fn = _lbs.inverse_lbs_ref
    if resolve_impl("inverse_lbs", impl, points, verts, vert_transforms) == "triton":
        fn = _lbs.inverse_lbs_triton
    return fn(points, verts, vert_transforms, k=k)


def volume_composite(
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    depth: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    white_back: bool = True,
    impl: Impl = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Alpha-composite L entries per ray in depth order.

    Entries where ``valid`` is False get alpha 0 and depth 10 (as in the release). Entries are sorted by depth
    (stable); ``T_i = prod_{j<i} (1 - alpha_j + 1e-10)``, ``w_i = alpha_i T_i``, ``color = sum_i w_i c_i``
    plus ``1 - sum_i w_i`` when ``white_back``, and ``out_depth = sum_i w_i z_i / sum_i w_i``, or 10 (the
    invalid-depth fill) where ``sum_i w_i == 0`` (the release returns NaN there).

    Args:
        rgb: [B, R, L, C] colours or features (C >= 1).
        alpha: [B, R, L] opacities in [0, 1].
        depth: [B, R, L] depths used for sorting and the depth output.
        valid: optional [B, R, L] bool mask.
        white_back: composite over a white (1.0) background.
        impl: ``"auto"``, ``"ref"`` or ``"triton"``.

    Returns:
        color [B, R, C], out_depth [B, R] and weights [B, R, L] (in the input order), differentiable w.r.t.
        ``rgb``, ``alpha`` and ``depth``.

    Example:
        >>> color, depth_map, weights = volume_composite(rgba[..., :3], rgba[..., 3], z, valid=is_valid)
    """
    fn = _vc.volume_composite_ref
    if resolve_impl("volume_composite", impl, rgb, alpha, depth, valid) == "triton":
        fn = _vc.volume_composite_triton
    return fn(rgb, alpha, depth, valid=valid, white_back=white_back)
