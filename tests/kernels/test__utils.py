"""The helpers shared by the kernel modules: input validation, compute dtypes and launch sizes."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from aniportrait.kernels import _utils
from aniportrait.kernels._testing import kernel_device
from aniportrait.kernels._triton import HAS_TRITON, tl, triton
from aniportrait.kernels._utils import (
    FLOAT_DTYPES,
    check_same_device,
    check_tensor,
    compute_dtype,
    rows_per_program,
    store_cast,
    tl_dtype,
)

needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="needs the triton package")

# ---------------------------------------------------------------------------------------------------------------------
# check_tensor


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_check_tensor_accepts_a_matching_tensor_and_binds_its_sizes(dtype):
    t = torch.zeros(2, 5, 3, dtype=dtype)
    sizes: dict[str, int] = {}
    assert check_tensor("points", t, ["B", "P", "3"], sizes) is t
    assert sizes == {"B": 2, "P": 5}  # fixed (digit) dimensions are not recorded


def test_check_tensor_records_sizes_across_calls():
    sizes: dict[str, int] = {}
    check_tensor("points", torch.zeros(2, 5, 3), ["B", "P", "3"], sizes)
    check_tensor("verts", torch.zeros(2, 7, 3), ["B", "V", "3"], sizes)
    check_tensor("weights", torch.zeros(2, 5, 7), ["B", "P", "V"], sizes)
    assert sizes == {"B": 2, "P": 5, "V": 7}


def test_check_tensor_rejects_a_size_that_disagrees_with_an_earlier_call():
    sizes: dict[str, int] = {}
    check_tensor("points", torch.zeros(2, 5, 3), ["B", "P", "3"], sizes)
    with pytest.raises(ValueError, match=r"^verts must have shape \[B, V, 3\] with B=2, P=5, got \[4, 7, 3\]$"):
        check_tensor("verts", torch.zeros(4, 7, 3), ["B", "V", "3"], sizes)


def test_check_tensor_binds_a_letter_within_one_shape():
    check_tensor("m", torch.zeros(3, 3), ["N", "N"], {})
    with pytest.raises(ValueError, match=r"^m must have shape \[N, N\] with N=3, got \[3, 4\]$"):
        check_tensor("m", torch.zeros(3, 4), ["N", "N"], {})


def test_check_tensor_honours_preset_sizes():
    with pytest.raises(ValueError, match="with B=3"):
        check_tensor("points", torch.zeros(2, 5, 3), ["B", "P", "3"], {"B": 3})


@pytest.mark.parametrize("shape", [(2, 5), (2, 5, 3, 1), ()])
def test_check_tensor_rejects_a_wrong_rank(shape):
    message = f"points must have shape [B, P, 3], got {list(shape)}"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        check_tensor("points", torch.zeros(shape), ["B", "P", "3"], {})


def test_check_tensor_rejects_a_wrong_fixed_size():
    with pytest.raises(ValueError, match=r"^points must have shape \[B, P, 3\], got \[2, 5, 4\]$"):
        check_tensor("points", torch.zeros(2, 5, 4), ["B", "P", "3"], {})


def test_check_tensor_rejects_a_wrong_dtype():
    with pytest.raises(
        ValueError, match=r"^rgb must be a \[B, 3\] tensor of dtype float16, bfloat16, float32, float64, got int64$"
    ):
        check_tensor("rgb", torch.zeros(2, 3, dtype=torch.int64), ["B", "3"], {})


def test_check_tensor_takes_a_custom_dtype_list():
    valid = torch.ones(4, dtype=torch.bool)
    assert check_tensor("valid", valid, ["R"], {}, dtypes=(torch.bool,)) is valid
    with pytest.raises(ValueError, match=r"^valid must be a \[R\] tensor of dtype bool, got float32$"):
        check_tensor("valid", torch.ones(4), ["R"], {}, dtypes=(torch.bool,))


@pytest.mark.parametrize("value", [np.zeros((2, 3)), [[0.0] * 3] * 2, None])
def test_check_tensor_rejects_a_non_tensor(value):
    with pytest.raises(ValueError, match=rf"^levels must be a tensor of shape \[B, 3\], got {type(value).__name__}$"):
        check_tensor("levels", value, ["B", "3"], {})


# ---------------------------------------------------------------------------------------------------------------------
# check_same_device


def test_check_same_device_accepts_one_device_and_ignores_none():
    check_same_device(a=torch.zeros(2), b=torch.ones(3), c=None)
    check_same_device(a=None)
    check_same_device()


def test_check_same_device_names_each_input_and_its_device():
    # The "meta" device stands in for a second device on machines without one.
    with pytest.raises(ValueError, match=r"^all inputs must be on one device, got a on cpu, b on meta$"):
        check_same_device(a=torch.zeros(2), b=torch.zeros(2, device="meta"), c=None)


# ---------------------------------------------------------------------------------------------------------------------
# compute_dtype


@pytest.mark.parametrize(
    "dtypes", [(torch.float16,), (torch.bfloat16,), (torch.float32,), (torch.float16, torch.float32)]
)
def test_compute_dtype_is_float32_without_float64_inputs(dtypes):
    assert compute_dtype(*(torch.zeros(1, dtype=d) for d in dtypes)) == torch.float32


@pytest.mark.parametrize("other", [torch.float16, torch.bfloat16, torch.float32])
def test_compute_dtype_is_float64_when_any_input_is_float64(other):
    a, b = torch.zeros(1, dtype=other), torch.zeros(1, dtype=torch.float64)
    assert compute_dtype(a, b) == torch.float64
    assert compute_dtype(b, None, a) == torch.float64


def test_compute_dtype_ignores_none_and_non_float_inputs():
    assert compute_dtype() == torch.float32
    assert compute_dtype(None, None) == torch.float32
    assert compute_dtype(torch.zeros(1, dtype=torch.bool), None) == torch.float32


# ---------------------------------------------------------------------------------------------------------------------
# rows_per_program


@pytest.mark.parametrize(
    ("n_rows", "expected"),
    [(10_000, 64), (64, 64), (65, 64), (33, 64), (5, 8), (8, 8), (1, 1), (0, 1)],
)
def test_rows_per_program_on_a_gpu(monkeypatch, n_rows, expected):
    monkeypatch.setattr(_utils, "interpreter_enabled", lambda: False)
    assert rows_per_program(n_rows, 64) == expected


@pytest.mark.parametrize(
    ("n_rows", "interpret_rows", "expected"),
    [(100_000, 1024, 1024), (1000, 1024, 1024), (300, 1024, 512), (100_000, 256, 256), (3, 256, 4)],
)
def test_rows_per_program_under_the_interpreter(monkeypatch, n_rows, interpret_rows, expected):
    monkeypatch.setattr(_utils, "interpreter_enabled", lambda: True)
    assert rows_per_program(n_rows, 64, interpret_rows) == expected


# ---------------------------------------------------------------------------------------------------------------------
# Triton helpers (need the triton package, not a GPU)


@needs_triton
def test_tl_dtype_accumulates_in_float64_only_for_float64():
    assert tl_dtype(torch.float64) == tl.float64
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        assert tl_dtype(dtype) == tl.float32


@triton.jit
def _store_cast_kernel(src_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    value = tl.load(src_ptr + offs, mask=mask, other=0.0)
    store_cast(dst_ptr + offs, value, mask)


# Relative spacing of each destination dtype: the cast must round to (about) the nearest representable value.
_REL_STEP = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-23, torch.float64: 2.0**-52}


@needs_triton
@pytest.mark.interpret
@pytest.mark.parametrize("src_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dst_dtype", list(_REL_STEP))
def test_store_cast_converts_to_the_pointer_dtype(src_dtype, dst_dtype):
    device = kernel_device()
    g = torch.Generator().manual_seed(0)
    n = 100
    src = (torch.rand(n, generator=g, dtype=torch.float64) * 8 - 4).to(device, src_dtype)
    dst = torch.full((n + 28,), -7.0, dtype=dst_dtype, device=device)  # the masked tail must stay untouched
    _store_cast_kernel[(1,)](src, dst, n, BLOCK=128)
    out, tail = dst[:n].cpu().double(), dst[n:].cpu().double()
    ref = src.cpu().double()
    assert torch.isfinite(out).all()
    assert ((out - ref).abs() <= _REL_STEP[dst_dtype] * ref.abs() + 1e-30).all()
    assert (tail == -7.0).all()
