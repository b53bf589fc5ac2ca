"""Helpers shared by the kernel modules: input validation, compute dtypes and launch sizes."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aniportrait.kernels._registry import interpreter_enabled
from aniportrait.kernels._triton import tl, triton

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(
    name: str,
    t: object,
    dims: Sequence[str],
    sizes: dict[str, int],
    *,
    dtypes: Sequence[torch.dtype] = FLOAT_DTYPES,
) -> torch.Tensor:
    """Check that ``t`` is a tensor of shape ``dims`` and one of ``dtypes``.

    ``dims`` names each dimension: a letter (``"B"``) binds to the first size seen in ``sizes`` and must agree with
    it afterwards; a digit string (``"4"``) is a fixed size. Raises ``ValueError`` naming the expected shape.
    """
    spec = "[" + ", ".join(dims) + "]"
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of shape {spec}, got {type(t).__name__}")
    if t.dim() != len(dims):
        raise ValueError(f"{name} must have shape {spec}, got {list(t.shape)}")
    for dim, size in zip(dims, t.shape):
        if dim.isdigit():
            if size != int(dim):
                raise ValueError(f"{name} must have shape {spec}, got {list(t.shape)}")
        elif dim in sizes and sizes[dim] != size:
            bound = ", ".join(f"{k}={v}" for k, v in sizes.items())
            raise ValueError(f"{name} must have shape {spec} with {bound}, got {list(t.shape)}")
        else:
            sizes[dim] = size
    if t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{name} must be a {spec} tensor of dtype {names}, got {str(t.dtype).replace('torch.', '')}")
    return t


def check_same_device(**tensors: torch.Tensor | None) -> None:
    """Raise ``ValueError`` unless every given tensor lives on one device."""
    present = {k: v for k, v in tensors.items() if v is not None}
    devices = {str(v.device) for v in present.values()}
    if len(devices) > 1:
        listing = ", ".join(f"{k} on {v.device}" for k, v in present.items())
        raise ValueError(f"all inputs must be on one device, got {listing}")


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 if any input is float64, else float32: low precision is upcast, never computed in."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def tl_dtype(dtype: torch.dtype):
    """The Triton accumulator dtype for a torch compute dtype."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def rows_per_program(n_rows: int, gpu_rows: int, interpret_rows: int = 1024) -> int:
    """Rows handled by one program: ``gpu_rows`` on a GPU, large tiles under the (per-program slow) interpreter."""
    rows = interpret_rows if interpreter_enabled() else gpu_rows
    return max(1, min(rows, triton.next_power_of_2(max(n_rows, 1))))


@triton.jit
def store_cast(ptr, value, mask):
    """``tl.store`` converting ``value`` to the pointer's dtype through float32 (a direct float64 -> bfloat16
    conversion gives garbage in the Triton 3.9 interpreter; going through float32 is exact for every other pair)."""
    if ptr.dtype.element_ty == tl.float64:
        tl.store(ptr, value.to(tl.float64), mask=mask)
    else:
        tl.store(ptr, value.to(tl.float32).to(ptr.dtype.element_ty), mask=mask)
