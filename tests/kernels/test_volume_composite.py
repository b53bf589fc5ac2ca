"""Tests of ``volume_composite``: the reference against the release formula, Triton against the reference."""

from __future__ import annotations

import pytest
import torch

from aniportrait import ops
from aniportrait.kernels import volume_composite as vc
from aniportrait.kernels._testing import (
    assert_close,
    assert_close_lowp,
    kernel_device,
    lowp_atol,
    make_volume_composite_inputs,
    on_kernel_device,
)
from aniportrait.kernels.volume_composite import INVALID_DEPTH, VolumeCompositeFunction, volume_composite_ref
from aniportrait.kernels.volume_composite import volume_composite_triton as _volume_composite_triton
from tests.kernels.gpu_helpers import outputs_and_grads as _outputs_and_grads

volume_composite_triton = on_kernel_device(_volume_composite_triton)

IMPLS = {"ref": volume_composite_ref, "triton": volume_composite_triton}
BOTH_IMPLS = [pytest.param("ref", id="ref"), pytest.param("triton", id="triton", marks=pytest.mark.interpret)]
OUTPUT_NAMES = ("color", "out_depth", "weights")
GRAD_NAMES = ("d_rgb", "d_alpha", "d_depth")


def _release_alpha_integration(rgb, alpha, depth, valid, white_back):
    """The release's ``render()`` + ``alpha_integration`` steps, written out (depth is 0/0 = NaN where W == 0)."""
    z = depth.masked_fill(~valid, 10.0)
    z_sorted, idx = torch.sort(z, dim=-1, stable=True)
    rgb_sorted = torch.gather(rgb, -2, idx.unsqueeze(-1).expand_as(rgb))
    alphas = torch.gather(alpha, -1, idx) * torch.gather(valid, -1, idx).to(alpha.dtype)
    alphas_shifted = torch.cat([torch.ones_like(alphas[..., :1]), 1 - alphas + 1e-10], -1)
    w = alphas * torch.cumprod(alphas_shifted, -1)[..., :-1]
    w_total = w.sum(-1)
    color = (w.unsqueeze(-1) * rgb_sorted).sum(-2)
    if white_back:
        color = color + 1 - w_total.unsqueeze(-1)
    out_depth = (w * z_sorted).sum(-1) / w_total
    return color, out_depth, torch.empty_like(w).scatter_(-1, idx, w)


def _with_grads(fn, inputs, valid, white_back, cotangents):
    """Outputs of ``fn`` and the gradients of sum(outputs * cotangents) w.r.t. rgb, alpha and depth."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    outputs = fn(*leaves, valid=valid, white_back=white_back)
    grads = torch.autograd.grad(outputs, leaves, [g.to(o.dtype) for g, o in zip(cotangents, outputs)])
    return [o.detach() for o in outputs], list(grads)


def _cotangents(B, R, L, C, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for shape in ((B, R, C), (B, R), (B, R, L))]


# Shape, whether a valid mask is given, white background.
SHAPES = [
    pytest.param(1, 1, 24, 3, True, True, id="B1-R1-L24-C3-valid-white"),
    pytest.param(2, 37, 24, 4, True, False, id="B2-R37-L24-C4-valid-black"),
    pytest.param(2, 37, 24, 3, False, True, id="B2-R37-L24-C3-nomask-white"),
    pytest.param(1, 300, 5, 3, True, True, id="B1-R300-L5-C3-valid-white"),
    pytest.param(1, 300, 5, 1, False, False, id="B1-R300-L5-C1-nomask-black"),
    pytest.param(3, 7, 1, 1, True, True, id="B3-R7-L1-C1-valid-white"),
    pytest.param(2, 9, 1, 4, False, False, id="B2-R9-L1-C4-nomask-black"),
    pytest.param(1, 5, 24, 36, True, True, id="B1-R5-L24-C36-valid-white"),
    pytest.param(2, 16, 13, 3, True, False, id="B2-R16-L13-C3-valid-black"),
]


@pytest.mark.parametrize("B, R, L, C, has_valid, white_back", SHAPES)
def test_volume_composite_ref_matches_release(B, R, L, C, has_valid, white_back):
    rgb, alpha, depth, valid = make_volume_composite_inputs(B, R, L, C, dtype=torch.float64)
    if has_valid:
        valid[0, 0] = False  # one ray without any valid entry
    else:
        valid = torch.ones_like(valid)
    ref = volume_composite_ref(rgb, alpha, depth, valid=valid if has_valid else None, white_back=white_back)
    release = _release_alpha_integration(rgb, alpha, depth, valid, white_back)
    has_w = release[2].sum(-1) > 0
    assert_close(ref[0], release[0], atol=1e-12, rtol=1e-12, name="color")
    assert_close(ref[2], release[2], atol=1e-12, rtol=1e-12, name="weights")
    assert_close(ref[1][has_w], release[1][has_w], atol=1e-12, rtol=1e-12, name="out_depth")
    assert (ref[1][~has_w] == INVALID_DEPTH).all()


@pytest.mark.interpret
@pytest.mark.parametrize("B, R, L, C, has_valid, white_back", SHAPES)
def test_volume_composite_matches_ref(B, R, L, C, has_valid, white_back):
    rgb, alpha, depth, valid = make_volume_composite_inputs(B, R, L, C, dtype=torch.float32)
    valid = valid if has_valid else None
    cot = _cotangents(B, R, L, C)
    tri_out, tri_grads = _with_grads(volume_composite_triton, (rgb, alpha, depth), valid, white_back, cot)
    ref_out, ref_grads = _with_grads(
        volume_composite_ref, [t.double() for t in (rgb, alpha, depth)], valid, white_back, cot
    )
    for tri, ref, name in zip(tri_out + tri_grads, ref_out + ref_grads, OUTPUT_NAMES + GRAD_NAMES):
        assert tri.dtype == torch.float32, name
        assert_close(tri, ref, atol=1e-5, rtol=1e-4, name=name)


@pytest.mark.interpret
@pytest.mark.parametrize(
    "B, R, L, C, has_valid, white_back, dtype",
    [
        pytest.param(2, 37, 24, 3, True, True, torch.float16, id="B2-R37-L24-C3-valid-white-fp16"),
        pytest.param(1, 300, 5, 4, False, False, torch.float16, id="B1-R300-L5-C4-nomask-black-fp16"),
        pytest.param(2, 37, 24, 3, True, True, torch.bfloat16, id="B2-R37-L24-C3-valid-white-bf16"),
        pytest.param(3, 7, 1, 1, True, False, torch.bfloat16, id="B3-R7-L1-C1-valid-black-bf16"),
    ],
)
def test_volume_composite_matches_ref_lowp(B, R, L, C, has_valid, white_back, dtype):
    rgb, alpha, depth, valid = make_volume_composite_inputs(B, R, L, C, dtype=dtype)
    valid = valid if has_valid else None
    cot = _cotangents(B, R, L, C)
    tri_out, tri_grads = _with_grads(volume_composite_triton, (rgb, alpha, depth), valid, white_back, cot)
    lowp_out, lowp_grads = _with_grads(volume_composite_ref, (rgb, alpha, depth), valid, white_back, cot)
    ref_out, ref_grads = _with_grads(
        volume_composite_ref, [t.double() for t in (rgb, alpha, depth)], valid, white_back, cot
    )
    for tri, lowp, ref, name in zip(
        tri_out + tri_grads, lowp_out + lowp_grads, ref_out + ref_grads, OUTPUT_NAMES + GRAD_NAMES
    ):
        assert tri.dtype == dtype, name
        assert_close_lowp(tri, lowp, ref, atol=lowp_atol(dtype, ref.abs().max().item()), name=name)


@pytest.mark.parametrize("impl", BOTH_IMPLS)
def test_volume_composite_non_contiguous(impl):
    fn = IMPLS[impl]
    B, R, L, C = 2, 11, 6, 3
    rgb, alpha, depth, valid = make_volume_composite_inputs(B, R, L, C)
    cot = _cotangents(B, R, L, C)
    # Same values, laid out as a transposed rgb, a strided alpha slice, and transposed depth and valid.
    rgb_nc = rgb.transpose(-1, -2).contiguous().transpose(-1, -2)
    alpha_nc = torch.stack([alpha, torch.zeros_like(alpha)], -1).flatten(-2)[..., ::2]
    depth_nc = depth.transpose(1, 2).contiguous().transpose(1, 2)
    valid_nc = valid.transpose(1, 2).contiguous().transpose(1, 2)
    assert not any(t.is_contiguous() for t in (rgb_nc, alpha_nc, depth_nc, valid_nc))
    out, grads = _with_grads(fn, (rgb, alpha, depth), valid, True, cot)
    out_nc, grads_nc = _with_grads(fn, (rgb_nc, alpha_nc, depth_nc), valid_nc, True, cot)
    for a, b, name in zip(out + grads, out_nc + grads_nc, OUTPUT_NAMES + GRAD_NAMES):
        assert torch.equal(a, b), name


# --- Strided inputs: slices of one RGBA tensor are read in place ----------------------------------------------------


def _in_layout(t, layout):
    """The values of ``t`` (rgba [B, R, L, 4] or depth [B, R, L]) in a memory layout, as a leaf tensor."""
    if layout == "contiguous":
        return t.clone(memory_format=torch.contiguous_format)
    if layout == "padded":  # rgba: the first 4 channels of [B, R, L, 5] whose last channel is NaN (never read)
        return torch.cat([t, torch.full_like(t[..., :1], float("nan"))], -1)[..., :4]
    if layout == "planar":  # rgba: the generator's grid_sample output [B, L, 4, R] permuted to [B, R, L, 4]
        return t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    if layout == "entries-major":  # depth stored [L, B, R]: B and R still merge into one row stride
        return t.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    if layout == "strided":  # depth: every other element of a [B, R, L, 2] tensor whose other half is NaN
        return torch.stack([t, torch.full_like(t, float("nan"))], -1)[..., 0]
    if layout == "rays-permuted":  # stored [R, B, L]: no single row stride when B > 1, so the launcher copies it
        return t.transpose(0, 1).contiguous().transpose(0, 1)
    raise AssertionError(layout)


def _rgba_inputs(B, R, L, rgba_layout, depth_layout, dtype=torch.float32):
    """rgba [B, R, L, 4] (alpha in the last channel) and depth as leaves on the kernel device, valid and cotangents."""
    rgb, alpha, depth, valid = make_volume_composite_inputs(B, R, L, 3, dtype=dtype, device=kernel_device())
    rgba = _in_layout(torch.cat([rgb, alpha[..., None]], -1), rgba_layout).requires_grad_()
    depth = _in_layout(depth, depth_layout).requires_grad_()
    cot = [g.to(rgba.device) for g in _cotangents(B, R, L, 3)]
    return rgba, depth, valid, cot


def _rgba_outputs_and_grads(fn, rgba, depth, valid, white_back, cot):
    """Outputs of ``fn`` on ``rgba[..., :3]``, ``rgba[..., 3]`` and ``depth``, and the gradients of
    sum(outputs * cotangents) w.r.t. ``rgba`` and ``depth``, all on the CPU."""
    out = fn(rgba[..., :3], rgba[..., 3], depth, valid=valid, white_back=white_back)
    grads = torch.autograd.grad(out, (rgba, depth), [g.to(o.dtype) for g, o in zip(cot, out)])
    return [o.detach().cpu() for o in out], [g.cpu() for g in grads]


@pytest.mark.interpret
@pytest.mark.parametrize(
    "B, R, L, rgba_layout, depth_layout, has_valid, white_back",
    [
        pytest.param(2, 11, 5, "contiguous", "contiguous", True, True, id="B2-R11-L5-rgba-depth"),
        pytest.param(2, 11, 5, "padded", "entries-major", False, False, id="B2-R11-L5-padded-entries-major"),
        pytest.param(3, 6, 7, "contiguous", "strided", True, False, id="B3-R6-L7-rgba-strided-depth"),
        pytest.param(1, 13, 5, "planar", "entries-major", True, True, id="B1-R13-L5-planar-entries-major"),
        pytest.param(2, 7, 5, "padded", "rays-permuted", True, False, id="B2-R7-L5-padded-depth-copied"),
        pytest.param(2, 5, 3, "planar", "rays-permuted", False, True, id="B2-R5-L3-planar-copied-depth-copied"),
    ],
)
def test_volume_composite_rgba_slices(B, R, L, rgba_layout, depth_layout, has_valid, white_back):
    """rgb and alpha as slices of one RGBA tensor, depth in another layout: forward and backward equal the Triton
    result on contiguous copies exactly (only the addressing differs) and the fp64 reference to fp32 accuracy."""
    rgba, depth, valid, cot = _rgba_inputs(B, R, L, rgba_layout, depth_layout)
    valid = valid if has_valid else None
    assert not (rgba[..., :3].is_contiguous() or rgba[..., 3].is_contiguous())
    assert depth.is_contiguous() == (depth_layout == "contiguous")
    out, grads = _rgba_outputs_and_grads(_volume_composite_triton, rgba, depth, valid, white_back, cot)
    leaves = [_in_layout(t.detach(), "contiguous").requires_grad_() for t in (rgba, depth)]
    dense_out, dense_grads = _rgba_outputs_and_grads(_volume_composite_triton, *leaves, valid, white_back, cot)
    leaves = [t.double().requires_grad_() for t in (rgba.detach(), depth.detach())]
    ref_out, ref_grads = _rgba_outputs_and_grads(volume_composite_ref, *leaves, valid, white_back, cot)
    names = OUTPUT_NAMES + ("d_rgba", "d_depth")
    for tri, dense, ref, name in zip(out + grads, dense_out + dense_grads, ref_out + ref_grads, names):
        assert torch.equal(tri, dense), name
        assert_close(tri, ref, atol=1e-5, rtol=1e-4, name=name)
    assert all(o.is_contiguous() for o in out)


class _LaunchSpy:
    """Stands in for a ``@triton.jit`` kernel: records the arguments of each launch, then launches the kernel."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.calls.append(args)
            return self.kernel[grid](*args, **kwargs)

        return launch


@pytest.mark.interpret
@pytest.mark.parametrize(
    "depth_layout, depth_copied",
    [pytest.param("entries-major", False, id="depth-in-place"), pytest.param("rays-permuted", True, id="depth-copied")],
)
def test_volume_composite_reads_slices_without_copy(monkeypatch, depth_layout, depth_copied):
    """The kernels get the rgba slices themselves (same data pointer and strides), forward and backward; only a
    depth whose B and R dims do not merge into one row stride is copied (to contiguous memory). The buffers the
    launchers allocate (outputs, gradients) are contiguous."""
    B, R, L = 2, 6, 3
    rgba, depth, valid, cot = _rgba_inputs(B, R, L, "contiguous", depth_layout)
    spies = {}
    for name in ("_volume_composite_fwd_kernel", "_volume_composite_bwd_kernel"):
        spies[name] = _LaunchSpy(getattr(vc, name))
        monkeypatch.setattr(vc, name, spies[name])
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    out = _volume_composite_triton(rgb, alpha, depth, valid=valid)
    torch.autograd.grad(out, (rgba, depth), cot)
    (fwd_args,) = spies["_volume_composite_fwd_kernel"].calls
    (bwd_args,) = spies["_volume_composite_bwd_kernel"].calls
    for args in (fwd_args, bwd_args):
        for passed, given in zip(args[:2], (rgb, alpha)):
            assert passed.data_ptr() == given.data_ptr() and passed.stride() == given.stride()
        assert (args[2].data_ptr() != depth.data_ptr()) == depth_copied
        assert args[2].is_contiguous() == depth_copied
        assert torch.equal(args[2], depth)
    assert all(t.is_contiguous() for t in fwd_args[4:9])  # color, out_depth, weights, W, out_depth - z0
    assert all(t.is_contiguous() for t in bwd_args[9:12])  # d_rgb, d_alpha, d_depth


@pytest.mark.parametrize(
    "shape, layout, mergeable",
    [
        pytest.param((2, 6, 5), "contiguous", True, id="contiguous"),
        pytest.param((2, 6, 5), "entries-major", True, id="entries-major"),
        pytest.param((2, 6, 5), "strided", True, id="strided"),
        pytest.param((2, 6, 5), "rays-permuted", False, id="rays-permuted"),
        pytest.param((1, 6, 5), "rays-permuted", True, id="rays-permuted-B1"),
        pytest.param((3, 1, 5), "rays-permuted", True, id="rays-permuted-R1"),
        pytest.param((2, 6, 5, 4), "planar", False, id="planar"),
        pytest.param((1, 6, 5, 4), "planar", True, id="planar-B1"),
        pytest.param((2, 6, 5, 4), "padded", True, id="padded"),
    ],
)
def test_volume_composite_row_strides(shape, layout, mergeable):
    """The launcher's layout rule: the strides it returns address row b * R + r of [B * R, ...] exactly as t[b, r]."""
    t = _in_layout(torch.arange(float(torch.Size(shape).numel())).reshape(shape), layout)
    strides = vc._row_strides(t)
    assert (strides is not None) == mergeable
    if mergeable:
        flat = torch.as_strided(t, (shape[0] * shape[1], *shape[2:]), strides, t.storage_offset())
        assert torch.equal(flat, t.reshape(flat.shape))
        assert vc._rows_readable(t) is t
    else:
        readable = vc._rows_readable(t)
        assert readable.is_contiguous() and torch.equal(readable, t)


def _gradcheck_inputs():
    """fp64, distinct depths (no order flips under perturbation), alpha in [0.1, 0.9], one all-invalid ray."""
    B, R, L, C = 1, 3, 4, 2
    g = torch.Generator().manual_seed(3)
    rgb = torch.rand(B, R, L, C, generator=g, dtype=torch.float64)
    alpha = 0.1 + 0.8 * torch.rand(B, R, L, generator=g, dtype=torch.float64)
    depth = 1.7 + 0.1 * torch.argsort(torch.rand(B, R, L, generator=g), -1).double()
    depth = depth + 0.01 * torch.rand(B, R, L, generator=g, dtype=torch.float64)
    valid = torch.tensor([[[True, False, True, True], [False, False, False, False], [True, True, True, True]]])
    return [t.requires_grad_() for t in (rgb, alpha, depth)], valid


@pytest.mark.gradcheck
@pytest.mark.parametrize("white_back", [pytest.param(True, id="white"), pytest.param(False, id="black")])
def test_volume_composite_ref_gradcheck(white_back):
    inputs, valid = _gradcheck_inputs()
    assert torch.autograd.gradcheck(lambda *x: volume_composite_ref(*x, valid=valid, white_back=white_back), inputs)
    assert torch.autograd.gradcheck(lambda *x: volume_composite_ref(*x, white_back=white_back), inputs)


@pytest.mark.gradcheck
@pytest.mark.interpret
@pytest.mark.parametrize("white_back", [pytest.param(True, id="white"), pytest.param(False, id="black")])
def test_volume_composite_gradcheck(white_back):
    inputs, valid = _gradcheck_inputs()
    assert torch.autograd.gradcheck(
        lambda *x: on_kernel_device(VolumeCompositeFunction.apply)(*x, valid, white_back), inputs
    )
    assert torch.autograd.gradcheck(lambda *x: volume_composite_triton(*x, white_back=white_back), inputs)


@pytest.mark.interpret
@pytest.mark.parametrize("output", [0, 1, 2], ids=OUTPUT_NAMES)
def test_volume_composite_single_output_grads(output):
    """Only one output gets a gradient (the others arrive as None) and only some inputs require one."""
    B, R, L, C = 2, 9, 7, 3
    rgb, alpha, depth, valid = make_volume_composite_inputs(B, R, L, C, dtype=torch.float64)
    cot = _cotangents(B, R, L, C)[output]
    for needs in ((True, True, True), (False, True, False), (True, False, True)):
        results = []
        for fn in (volume_composite_ref, volume_composite_triton):
            leaves = [t.clone().requires_grad_(n) for t, n in zip((rgb, alpha, depth), needs)]
            out = fn(*leaves, valid=valid)[output]
            wanted = [t for t in leaves if t.requires_grad]
            if not out.requires_grad:  # the reference's weights depend on depth only through the (detached) order
                results.append([torch.zeros_like(t) for t in wanted])
                continue
            results.append(torch.autograd.grad(out, wanted, cot, allow_unused=True, materialize_grads=True))
        for tri, ref in zip(results[1], results[0]):
            assert_close(tri, ref, atol=1e-12, rtol=1e-10, name=f"{OUTPUT_NAMES[output]} {needs}")


@pytest.mark.interpret
def test_volume_composite_deterministic():
    B, R, L, C = 2, 37, 24, 3
    rgb, alpha, depth, valid = make_volume_composite_inputs(B, R, L, C)
    cot = _cotangents(B, R, L, C)
    _, first = _with_grads(volume_composite_triton, (rgb, alpha, depth), valid, True, cot)
    _, second = _with_grads(volume_composite_triton, (rgb, alpha, depth), valid, True, cot)
    for a, b, name in zip(first, second, GRAD_NAMES):
        assert torch.equal(a, b), name


@pytest.mark.interpret
@pytest.mark.parametrize("L", [pytest.param(1, id="L1"), pytest.param(3, id="L3")])
def test_volume_composite_depth_grad_small_weight(L):
    """fp32 rays whose entries share one depth and have little weight: out_depth does not depend on alpha, so
    d_alpha from out_depth must be ~0, not the rounding error of |z| / W (the kernels centre depths per ray)."""
    g = torch.Generator().manual_seed(5)
    R = 64
    rgb = torch.rand(1, R, L, 3, generator=g)
    alpha = 10 ** (-4 + 2 * torch.rand(1, R, L, generator=g))
    depth = (1.7 + 0.4 * torch.rand(1, R, 1, generator=g)).expand(1, R, L).contiguous()
    leaves = [t.clone().requires_grad_() for t in (rgb, alpha, depth)]
    out_depth = volume_composite_triton(*leaves)[1]
    d_alpha, d_depth = torch.autograd.grad(out_depth, leaves[1:], torch.ones_like(out_depth))
    assert_close(d_alpha, torch.zeros_like(d_alpha), atol=1e-5, rtol=0, name="d_alpha")
    w = volume_composite_ref(*(t.double() for t in (rgb, alpha, depth)))[2]
    assert_close(d_depth, w / w.sum(-1, keepdim=True), atol=1e-6, rtol=1e-5, name="d_depth")


# --- Edge cases (both implementations) ---------------------------------------------------------------------------


def _check_against_ref(impl, rgb, alpha, depth, valid, white_back, atol=1e-12):
    """Outputs and gradients of ``impl`` in fp64, finite and equal to the reference's."""
    B, R, L, C = rgb.shape
    cot = _cotangents(B, R, L, C)
    out, grads = _with_grads(IMPLS[impl], (rgb, alpha, depth), valid, white_back, cot)
    ref_out, ref_grads = _with_grads(volume_composite_ref, (rgb, alpha, depth), valid, white_back, cot)
    for a, b, name in zip(out + grads, ref_out + ref_grads, OUTPUT_NAMES + GRAD_NAMES):
        assert_close(a, b, atol=atol, rtol=1e-10, name=name)  # also asserts finiteness
    return out, grads


@pytest.mark.parametrize("impl", BOTH_IMPLS)
@pytest.mark.parametrize("white_back", [pytest.param(True, id="white"), pytest.param(False, id="black")])
def test_volume_composite_all_invalid(impl, white_back):
    rgb, alpha, depth, valid = make_volume_composite_inputs(2, 3, 5, 3, dtype=torch.float64)
    valid[0, 1] = False
    (color, out_depth, weights), (d_rgb, d_alpha, d_depth) = _check_against_ref(
        impl, rgb, alpha, depth, valid, white_back
    )
    assert (color[0, 1] == (1.0 if white_back else 0.0)).all()
    assert out_depth[0, 1] == INVALID_DEPTH
    assert (weights[0, 1] == 0).all()
    for grad in (d_rgb, d_alpha, d_depth):
        assert (grad[0, 1] == 0).all()


@pytest.mark.parametrize("impl", BOTH_IMPLS)
def test_volume_composite_saturated_alpha(impl):
    # The nearest entry (input index 2) is opaque: everything behind it gets weight ~1e-10.
    rgb = torch.tensor([[[[0.1, 0.2], [0.3, 0.4], [0.9, 0.8], [0.5, 0.6]]]], dtype=torch.float64)
    alpha = torch.tensor([[[0.5, 0.7, 1.0, 0.3]]], dtype=torch.float64)
    depth = torch.tensor([[[1.9, 2.0, 1.8, 2.1]]], dtype=torch.float64)
    (color, out_depth, weights), _ = _check_against_ref(impl, rgb, alpha, depth, None, True)
    assert weights[0, 0, 2] == 1.0
    assert (weights[0, 0, [0, 1, 3]] < 1e-9).all()
    assert_close(color[0, 0], rgb[0, 0, 2], atol=1e-9, rtol=0, name="color")
    assert_close(out_depth[0, 0], depth[0, 0, 2], atol=1e-9, rtol=0, name="out_depth")


@pytest.mark.parametrize("impl", BOTH_IMPLS)
def test_volume_composite_all_transparent(impl):
    rgb, _, depth, valid = make_volume_composite_inputs(1, 4, 6, 3, dtype=torch.float64)
    alpha = torch.zeros_like(depth)
    (color, out_depth, weights), (_, d_alpha, d_depth) = _check_against_ref(impl, rgb, alpha, depth, valid, True)
    assert (color == 1.0).all() and (weights == 0).all() and (out_depth == INVALID_DEPTH).all()
    assert (d_depth == 0).all()
    assert (d_alpha[valid] != 0).any()  # raising an alpha from 0 still changes the colour


@pytest.mark.parametrize("impl", BOTH_IMPLS)
def test_volume_composite_depth_ties_keep_input_order(impl):
    # Entries 0 and 2 share a depth: the stable order is 1, 0, 2, so entry 0 occludes entry 2.
    rgb = torch.tensor([[[[1.0], [0.0], [0.25]]]], dtype=torch.float64)
    alpha = torch.tensor([[[0.5, 0.2, 0.8]]], dtype=torch.float64)
    depth = torch.tensor([[[2.0, 1.5, 2.0]]], dtype=torch.float64)
    (color, out_depth, weights), _ = _check_against_ref(impl, rgb, alpha, depth, None, False)
    expected_w = torch.tensor([0.8 * 0.5, 0.2, 0.8 * 0.5 * 0.8], dtype=torch.float64)  # 0.4, 0.2, 0.32
    assert_close(weights[0, 0], expected_w, atol=1e-9, rtol=0, name="weights")
    assert_close(color[0, 0], torch.tensor([0.4 * 1.0 + 0.32 * 0.25], dtype=torch.float64), atol=1e-9, rtol=0)
    expected_z = (0.4 * 2.0 + 0.2 * 1.5 + 0.32 * 2.0) / 0.92
    assert_close(out_depth[0, 0], torch.tensor(expected_z, dtype=torch.float64), atol=1e-9, rtol=0)


@pytest.mark.parametrize("impl", BOTH_IMPLS)
def test_volume_composite_single_entry(impl):
    rgb, alpha, depth, valid = make_volume_composite_inputs(1, 8, 1, 3, dtype=torch.float64)
    (color, out_depth, weights), _ = _check_against_ref(impl, rgb, alpha, depth, valid, True)
    a = alpha * valid
    assert_close(weights, a, atol=1e-15, rtol=0, name="weights")
    assert_close(color, a * rgb[:, :, 0] + 1 - a, atol=1e-15, rtol=0, name="color")
    assert_close(out_depth, torch.where(a[..., 0] > 0, depth[..., 0], INVALID_DEPTH), atol=1e-15, rtol=0)


@pytest.mark.parametrize("impl", BOTH_IMPLS)
def test_volume_composite_output_dtypes_and_empty(impl):
    rgb, alpha, depth, valid = make_volume_composite_inputs(1, 4, 3, 2)
    color, out_depth, weights = IMPLS[impl](rgb.half(), alpha, depth.double(), valid=valid)
    assert (color.dtype, out_depth.dtype, weights.dtype) == (torch.float16, torch.float64, torch.float32)
    color, out_depth, weights = IMPLS[impl](rgb[:0], alpha[:0], depth[:0], valid=valid[:0])
    assert (color.shape, out_depth.shape, weights.shape) == ((0, 4, 2), (0, 4), (0, 4, 3))


# --- Validation ----------------------------------------------------------------------------------------------------


def _bad_inputs(case):
    rgb, alpha, depth, valid = make_volume_composite_inputs(2, 3, 4, 3)
    if case == "rgb-3d":
        rgb = rgb[..., 0]
    elif case == "alpha-rays":
        alpha = alpha[:, :2]
    elif case == "depth-levels":
        depth = depth[..., :3]
    elif case == "valid-float":
        valid = valid.float()
    elif case == "valid-shape":
        valid = valid[0]
    elif case == "rgb-no-channels":
        rgb = rgb[..., :0]
    elif case == "devices":
        rgb = rgb.to("meta")
    return rgb, alpha, depth, valid


@pytest.mark.parametrize("impl", BOTH_IMPLS)
@pytest.mark.parametrize(
    "case, message",
    [
        pytest.param("rgb-3d", r"rgb must have shape \[B, R, L, C\]", id="rgb-3d"),
        pytest.param("alpha-rays", r"alpha must have shape \[B, R, L\]", id="alpha-rays"),
        pytest.param("depth-levels", r"depth must have shape \[B, R, L\]", id="depth-levels"),
        pytest.param("valid-float", r"valid must be a bool tensor of shape \[B, R, L\]", id="valid-float"),
        pytest.param("valid-shape", r"valid must have shape \[B, R, L\]", id="valid-shape"),
        pytest.param("rgb-no-channels", r"rgb must have shape \[B, R, L, C\] with L >= 1 and C >= 1", id="C0"),
        pytest.param("devices", r"one device, got rgb on meta", id="devices"),
    ],
)
def test_volume_composite_validation(impl, case, message):
    rgb, alpha, depth, valid = _bad_inputs(case)
    entry = {"ref": volume_composite_ref, "triton": _volume_composite_triton}[impl]  # unwrapped: no device moves
    with pytest.raises(ValueError, match=message):
        entry(rgb, alpha, depth, valid=valid)


# -- the release's sizes on a real GPU (marker gpu, skipped without CUDA; see gpu_helpers.py) ----------------------


@pytest.mark.gpu
@pytest.mark.parametrize("side", [128, 512])
def test_volume_composite_release_size(side):
    """Compositing 24 manifolds for a 128x128 LR frame (RGB + features) and a 512x512 HR frame (RGBA)."""
    channels = 36 if side == 128 else 4
    rgb, alpha, depth, valid = make_volume_composite_inputs(1, side * side, 24, channels, device="cuda")

    def run(impl, dtype):
        return _outputs_and_grads(
            lambda c, a, d: ops.volume_composite(c, a, d, valid=valid, impl=impl),
            (rgb.to(dtype), alpha.to(dtype), depth.to(dtype)),
        )

    tri_out, tri_grads = run("triton", torch.float32)
    ref_out, ref_grads = run("ref", torch.float64)
    for tri, ref, name in zip(
        tri_out + tri_grads, ref_out + ref_grads, ("rgb", "depth", "weights", "d_rgb", "d_alpha", "d_depth")
    ):
        assert_close(tri, ref, atol=1e-5, rtol=1e-4, name=name)
