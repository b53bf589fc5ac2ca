"""Input factories and comparison helpers shared by the tests and the benchmarks."""

from __future__ import annotations

import functools
import os

import torch


def kernel_device() -> str:
    """Where tests run Triton kernels: CUDA when present, else the CPU (under ``TRITON_INTERPRET=1``)."""
    return "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1" else "cpu"


def on_kernel_device(fn):
    """Wrap a Triton entry so that tests can pass CPU tensors: inputs move to :func:`kernel_device` and outputs
    come back to the CPU, both differentiably (a no-op under the interpreter)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        device = kernel_device()
        moved = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]
        kwargs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        return tuple(o.cpu() for o in fn(*moved, **kwargs))

    return wrapped


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_manifold_intersect_inputs(
    B: int,
    R: int,
    S: int,
    C: int,
    L: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    noise: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``s`` [B, R, S] falling from 26 to 5 with noise (so crossings are mostly downward, some rising, some flat
    and a tenth of the rays never cross), ``points`` [B, R, S, C] and the release's ``levels`` [L] = 23 .. 8."""
    g = _generator(seed)
    trend = torch.linspace(26.0, 5.0, S, dtype=torch.float64)
    s = trend.expand(B, R, S) + noise * torch.randn(B, R, S, generator=g, dtype=torch.float64)
    no_hit = torch.rand(B, R, 1, generator=g, dtype=torch.float64) < 0.1
    s = torch.where(no_hit, s + 40.0, s)
    points = torch.randn(B, R, S, C, generator=g, dtype=torch.float64)
    levels = torch.linspace(23.0, 8.0, L, dtype=torch.float64)
    return s.to(device, dtype), points.to(device, dtype), levels.to(device, dtype)


def make_inverse_lbs_inputs(
    B: int,
    P: int,
    V: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``points`` [B, P, 3] and ``verts`` [B, V, 3] in a unit box, and near-identity ``vert_transforms``
    [B, V, 4, 4] with a perturbed upper 3x4 block and the last row [0, 0, 0, 1]."""
    g = _generator(seed)
    verts = torch.rand(B, V, 3, generator=g, dtype=torch.float64) * 2 - 1
    points = torch.rand(B, P, 3, generator=g, dtype=torch.float64) * 2.2 - 1.1
    mats = torch.eye(4, dtype=torch.float64).repeat(B, V, 1, 1)
    mats[..., :3, :] += 0.3 * torch.randn(B, V, 3, 4, generator=g, dtype=torch.float64)
    return points.to(device, dtype), verts.to(device, dtype), mats.to(device, dtype)


def make_volume_composite_inputs(
    B: int,
    R: int,
    L: int,
    C: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``rgb`` [B, R, L, C] in [0, 1], ``alpha`` [B, R, L] with 10% saturated (1.0) and 10% empty (0.0) entries,
    ``depth`` [B, R, L] in the release's range [1.7, 2.1] with exact ties, and ``valid`` [B, R, L] (80% True)."""
    g = _generator(seed)
    rgb = torch.rand(B, R, L, C, generator=g, dtype=torch.float64)
    alpha = torch.rand(B, R, L, generator=g, dtype=torch.float64)
    pick = torch.rand(B, R, L, generator=g, dtype=torch.float64)
    alpha = torch.where(pick < 0.1, torch.ones_like(alpha), torch.where(pick > 0.9, torch.zeros_like(alpha), alpha))
    depth = 1.7 + 0.4 * torch.rand(B, R, L, generator=g, dtype=torch.float64)
    depth = torch.where(torch.rand(B, R, L, generator=g) < 0.2, torch.round(depth * 20) / 20, depth)  # ties
    valid = torch.rand(B, R, L, generator=g) < 0.8
    return rgb.to(device, dtype), alpha.to(device, dtype), depth.to(device, dtype), valid.to(device)


def _worst(diff: torch.Tensor) -> str:
    flat = int(torch.argmax(diff.reshape(-1)))
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape))
    return f"worst at {index}"


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    name: str = "tensor",
) -> None:
    """``|actual - expected| <= atol + rtol * |expected|`` elementwise, with no NaN/Inf, reporting the worst index."""
    assert actual.shape == expected.shape, f"{name}: shape {list(actual.shape)} != {list(expected.shape)}"
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    assert torch.isfinite(a).all(), f"{name}: non-finite values in the result"
    assert torch.isfinite(e).all(), f"{name}: non-finite values in the expected tensor"
    diff = (a - e).abs()
    bound = atol + rtol * e.abs()
    bad = diff > bound
    if bad.any():
        where = _worst(diff - bound)
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{bad.numel()} elements differ; max |diff| {diff.max().item():.3e}, {where}"
        )


def assert_close_lowp(
    actual: torch.Tensor,
    ref_lowp: torch.Tensor,
    ref64: torch.Tensor,
    *,
    atol: float = 1e-3,
    name: str = "tensor",
) -> None:
    """The flash-attention rule for low precision: ``|actual - ref64| <= 2 |ref_lowp - ref64| + atol``.

    ``ref_lowp`` is the reference run on the same low-precision inputs, ``ref64`` the reference in float64.
    """
    assert actual.shape == ref64.shape, f"{name}: shape {list(actual.shape)} != {list(ref64.shape)}"
    a = actual.detach().to("cpu", torch.float64)
    r = ref_lowp.detach().to("cpu", torch.float64)
    e = ref64.detach().to("cpu", torch.float64)
    assert torch.isfinite(a).all(), f"{name}: non-finite values in the result"
    assert torch.isfinite(r).all() and torch.isfinite(e).all(), f"{name}: non-finite values in a reference"
    diff = (a - e).abs()
    bound = 2 * (r - e).abs() + atol
    bad = diff > bound
    if bad.any():
        where = _worst(diff - bound)
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{bad.numel()} elements exceed 2*|ref_lowp - ref64| + {atol}; "
            f"max |diff| {diff.max().item():.3e}, {where}"
        )


def lowp_atol(dtype: torch.dtype, scale: float = 1.0) -> float:
    """Absolute slack for a dtype: a few units in the last place at magnitude ``scale``."""
    floor = 1e-6 if dtype == torch.float32 else 0.0  # fp32 kernels sum in a different order than the reference
    return 4 * torch.finfo(dtype).eps * max(scale, 1.0) + floor


__all__ = [
    "assert_close",
    "assert_close_lowp",
    "kernel_device",
    "lowp_atol",
    "make_inverse_lbs_inputs",
    "make_manifold_intersect_inputs",
    "make_volume_composite_inputs",
    "on_kernel_device",
]
