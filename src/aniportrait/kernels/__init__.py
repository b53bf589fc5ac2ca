"""Fused kernels behind :mod:`aniportrait.ops`.

One module per op, each holding the plain-PyTorch reference (``<op>_ref``, the spec and the CPU path), the Triton
forward and backward kernels, their host launchers, a thin ``torch.autograd.Function`` and the Triton entry
``<op>_triton``.

Shape letters used in every docstring:

- ``B``: batch.
- ``R``: rays (pixels) per batch item.
- ``S``: samples per ray, ordered near to far.
- ``L``: levels (manifolds) per ray.
- ``C``: channels of a per-sample or per-hit attribute.
- ``P``: query points per batch item.
- ``V``: vertices per batch item.
- ``K``: neighbours per query (``k``).
"""

from aniportrait.kernels._registry import IMPLS, resolve_impl, use_impl

__all__ = ["IMPLS", "resolve_impl", "use_impl"]
