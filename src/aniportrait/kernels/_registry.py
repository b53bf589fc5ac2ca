"""Choice between the reference and the Triton implementation of an op.

Priority: the explicit ``impl`` argument, then :func:`use_impl`, then the environment variable
``ANIPORTRAIT_IMPL``, then ``auto``. ``auto`` picks Triton iff every tensor argument is on CUDA. An explicit
``"triton"`` that cannot run raises; only ``auto`` falls back to the reference.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from typing import Literal

import torch

from aniportrait.kernels._triton import HAS_TRITON

IMPLS = ("auto", "ref", "triton")
# The type of every ``impl`` argument: ``auto`` (Triton on CUDA tensors, else the reference), ``ref`` or ``triton``.
Impl = Literal["auto", "ref", "triton"]
ENV_VAR = "ANIPORTRAIT_IMPL"

_log = logging.getLogger(__name__)
_context_impl: contextvars.ContextVar[str | None] = contextvars.ContextVar("aniportrait_impl", default=None)
_logged: set[tuple[str, str]] = set()


def interpreter_enabled() -> bool:
    """True when Triton kernels run on the CPU interpreter (``TRITON_INTERPRET=1`` at import time)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def _check_impl(impl: str, source: str) -> str:
    if impl not in IMPLS:
        fix = "set it to auto, ref or triton, or unset it" if source == f"${ENV_VAR}" else "use auto, ref or triton"
        raise ValueError(f"unknown impl {impl!r} from {source}; {fix}")
    return impl


def env_impl() -> str | None:
    """The implementation named by ``$ANIPORTRAIT_IMPL`` (case and spaces ignored), or None when it is unset or empty.

    Raises:
        ValueError: the variable names no implementation (the message says how to fix it).
    """
    value = os.environ.get(ENV_VAR, "").strip().lower()
    return _check_impl(value, f"${ENV_VAR}") if value else None


@contextlib.contextmanager
def use_impl(impl: str):
    """Context manager that sets the implementation for every op called inside it (unless one passes ``impl``).

    Example:
        >>> with use_impl("ref"):
        ...     hits, valid = ops.manifold_intersect(s, points, levels)
    """
    token = _context_impl.set(_check_impl(impl, "use_impl()"))
    try:
        yield
    finally:
        _context_impl.reset(token)


def resolve_impl(op: str, impl: str, *tensors: torch.Tensor | None) -> str:
    """Return ``"ref"`` or ``"triton"`` for ``op`` called with ``tensors``.

    Raises:
        ValueError: ``impl`` (or the context or environment value) is not one of ``auto``, ``ref``, ``triton``.
        RuntimeError: ``triton`` was asked for explicitly but cannot run on these tensors.
    """
    source = "the impl argument"
    if impl == "auto" and _context_impl.get() is not None:
        impl, source = _context_impl.get(), "use_impl()"
    if impl == "auto" and env_impl() is not None:
        impl, source = env_impl(), f"${ENV_VAR}"
    _check_impl(impl, source)
    present = [t for t in tensors if t is not None]
    on_cuda = bool(present) and all(t.is_cuda for t in present)
    if impl == "auto":
        choice = "triton" if (on_cuda and HAS_TRITON and not interpreter_enabled()) else "ref"
    elif impl == "triton":
        if not HAS_TRITON:
            raise RuntimeError(f"{op}: impl='triton' needs the triton package (Linux); install it or use impl='ref'")
        if on_cuda and interpreter_enabled():
            raise RuntimeError(f"{op}: TRITON_INTERPRET=1 runs kernels on CPU tensors only; unset it for CUDA tensors")
        if not on_cuda and not interpreter_enabled():
            devices = sorted({str(t.device) for t in present})
            raise RuntimeError(
                f"{op}: impl='triton' needs every tensor on CUDA (got {', '.join(devices)}); "
                "use impl='ref' on CPU, or set TRITON_INTERPRET=1 before importing aniportrait to run the interpreter"
            )
        choice = "triton"
    else:
        choice = "ref"
    if (op, choice) not in _logged:
        _logged.add((op, choice))
        _log.info("%s: using the %s implementation", op, choice)
    return choice
