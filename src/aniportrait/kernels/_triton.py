"""Import Triton when it is installed; otherwise stand-ins that let the kernel modules import.

Triton ships for Linux only. On other systems the reference path still works, and asking for ``impl="triton"``
raises a clear error from :func:`aniportrait.kernels._registry.resolve_impl`.
"""

from __future__ import annotations

import types

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only where triton is absent
    HAS_TRITON = False

    def _jit(fn=None, **_kwargs):
        def wrap(f):
            def unavailable(*_a, **_k):
                raise RuntimeError("Triton is not installed; use impl='ref'")

            return unavailable

        return wrap(fn) if fn is not None else wrap

    triton = types.SimpleNamespace(jit=_jit, next_power_of_2=lambda n: 1 << max(int(n) - 1, 0).bit_length(), cdiv=None)
    tl = types.SimpleNamespace(constexpr=object, float32=None, float64=None)

__all__ = ["HAS_TRITON", "tl", "triton"]
