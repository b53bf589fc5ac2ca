"""Compile every Triton kernel for a GPU target on a machine without a GPU (a developer check, used by the tests).

``python -m aniportrait.kernels._compile_check [--target cuda:90] [--dtypes fp32,bf16,fp64]`` runs Triton's full
compiler (to PTX and a cubin through the ``ptxas`` in the Triton wheel) for each kernel with representative
constexprs, and reports failures and local-memory use (register spills). The interpreter that runs the kernels in
the CPU tests cannot catch compile-time errors of the GPU path; this does. It needs ``TRITON_INTERPRET`` unset.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

DTYPES = {"fp32": ("*fp32", "float32"), "bf16": ("*bf16", "float32"), "fp64": ("*fp64", "float64")}


def _cases(p: str, acc):
    from aniportrait.kernels import inverse_lbs as lbs
    from aniportrait.kernels import manifold_intersect as mi
    from aniportrait.kernels import volume_composite as vc

    f32 = "*fp32"
    blocks = {"BLOCK_R": 16, "BLOCK_S": 32, "BLOCK_L": 32}
    mi_common = {
        "s_ptr": p,
        "points_ptr": p,
        "levels_ptr": p,
        "R": "i32",
        "S": 256,
        "C": "i32",
        "L": "i32",
        "min_step": "fp32",
        "ACC": acc,
    }
    lbs_common = {"points_ptr": p, "verts_ptr": p, "P": "i32", "V": "i32", "K": 4, "ACC": acc}
    vc_common = {
        "rgb_ptr": p,
        "alpha_ptr": p,
        "depth_ptr": p,
        "valid_ptr": "*u8",
        "w_sum_ptr": f32,
        "mean_dz_ptr": f32,
        "n_rows": "i32",
    }
    vc_common.update(L="i32", C="i32", HAS_VALID=True, WHITE_BACK=True, INVALID_DEPTH=10.0, EPS=1e-10, ACC=acc)
    strides = ("rgb_row", "rgb_l", "rgb_c", "alpha_row", "alpha_l", "depth_row", "depth_l")
    vc_common.update({f"stride_{s}": "i32" for s in strides})
    return [
        (
            mi._manifold_intersect_fwd_kernel,
            dict(mi_common, hits_ptr=p, valid_ptr="*u8", idx_ptr="*i32", TWO_SIDED=True, **blocks),
        ),
        (
            mi._manifold_intersect_bwd_kernel,
            dict(
                mi_common,
                idx_ptr="*i32",
                d_hits_ptr=p,
                d_s_ptr=p,
                d_points_ptr=p,
                NEED_DS=True,
                NEED_DPOINTS=True,
                **blocks,
            ),
        ),
        (
            lbs._inverse_lbs_fwd_kernel,
            dict(lbs_common, mats_ptr=p, canonical_ptr=p, transforms_ptr=p, ids_ptr="*i32", min_sq_dist="fp32", KP=4)
            | {"BLOCK_P": 128, "BLOCK_V": 64},
        ),
        (
            lbs._inverse_lbs_bwd_query_kernel,
            dict(lbs_common, mats_ptr=p, ids_ptr="*i32", d_canonical_ptr=p, d_transforms_ptr=p, d_points_ptr=p)
            | {
                "w_ptr": f32,
                "g_ptr": f32,
                "min_sq_dist": "fp32",
                "KP": 4,
                "NEED_DPOINTS": True,
                "WRITE_WG": True,
                "BLOCK_P": 128,
            },
        ),
        (
            lbs._inverse_lbs_bwd_vertex_kernel,
            dict(lbs_common, d_canonical_ptr=p, d_transforms_ptr=p, w_ptr=f32, g_ptr=f32, order_ptr="*i64")
            | {
                "offsets_ptr": "*i64",
                "d_mats_ptr": p,
                "d_verts_ptr": p,
                "NEED_DMATS": True,
                "NEED_DVERTS": True,
                "BLOCK_Q": 64,
            },
        ),
        (
            vc._volume_composite_fwd_kernel,
            dict(vc_common, color_ptr=p, out_depth_ptr=p, weights_ptr=p, BLOCK_R=64, BLOCK_L=32),
        ),
        (
            vc._volume_composite_bwd_kernel,
            dict(vc_common, g_color_ptr=p, g_depth_ptr=p, g_weights_ptr=p, d_rgb_ptr=p, d_alpha_ptr=p, d_depth_ptr=p)
            | {
                "HAS_G_COLOR": True,
                "HAS_G_DEPTH": True,
                "HAS_G_WEIGHTS": True,
                "NEED_D_RGB": True,
                "NEED_D_ALPHA": True,
            }
            | {"NEED_D_DEPTH": True, "BLOCK_R": 64, "BLOCK_L": 32},
        ),
    ]


def compile_kernel(kernel, args: dict, target, num_warps: int = 4):
    """Compile ``kernel`` (a ``@triton.jit`` function) for ``target``: args maps names to types or constexprs."""
    import triton

    signature, constexprs = {}, {}
    for name in kernel.arg_names:
        value = args[name]
        if isinstance(value, str) and (value.startswith("*") or value in ("i32", "i64", "fp32", "fp64")):
            signature[name] = value
        else:
            signature[name], constexprs[name] = "constexpr", value
    source = triton.compiler.ASTSource(fn=kernel, constexprs=constexprs, signature=signature)
    backend = triton.compiler.make_backend(target)
    options = backend.parse_options({"num_warps": num_warps})
    return triton.compile(source, target=target, options=options.__dict__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cuda:90", help="backend:arch, e.g. cuda:90 (H100) or cuda:80 (A100)")
    parser.add_argument("--dtypes", default="fp32,bf16", help="storage dtypes to compile for (fp32, bf16, fp64)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("unset TRITON_INTERPRET: the interpreter replaces the compiler")
        return 2
    import triton.language as tl
    from triton.backends.compiler import GPUTarget

    backend, arch = args.target.split(":")
    target = GPUTarget(backend, int(arch), 32)
    failures = 0
    for name in args.dtypes.split(","):
        pointer, acc = DTYPES[name]
        for kernel, kernel_args in _cases(pointer, getattr(tl, acc)):
            start = time.perf_counter()
            try:
                compiled = compile_kernel(kernel, kernel_args, target)
            except Exception as err:  # noqa: BLE001  (report every kernel, then fail)
                failures += 1
                print(f"FAIL {name} {kernel.fn.__name__}: {type(err).__name__}: {str(err).splitlines()[:1]}")
                continue
            spills = " (uses local memory)" if ".local" in compiled.asm.get("ptx", "") else ""
            print(f"ok   {name} {kernel.fn.__name__} {time.perf_counter() - start:.1f}s{spills}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
