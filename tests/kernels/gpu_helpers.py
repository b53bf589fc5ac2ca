"""For the tests of Triton on a real GPU against the float64 reference, at the release's sizes (``pytest -m gpu``;
skipped without CUDA).

The interpreter-run tests (marker ``interpret``) cover awkward shapes; on a CUDA machine they already run the
compiled kernels (``kernel_device``). The ``gpu`` tests add what the interpreter is too slow for: one frame's worth of
work per op at the release's ``sshq512`` sizes, forward and backward, fp32 kernels against a float64 reference
computed on the same device. ``benchmarks/device_check.sh`` runs them with ``pytest -m "gpu or interpret"``.
"""

from __future__ import annotations

import torch


def outputs_and_grads(fn, inputs, seed: int = 1):
    """fn(*inputs) and the gradients of a fixed random projection of its floating outputs w.r.t. the inputs."""
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    outs = fn(*leaves)
    g = torch.Generator(device=leaves[0].device).manual_seed(seed)
    floating = [o for o in outs if o.is_floating_point()]
    cotangents = [torch.randn(o.shape, generator=g, device=o.device, dtype=torch.float64).to(o.dtype) for o in floating]
    wanted = [t for t in leaves if t.requires_grad]
    grads = torch.autograd.grad(floating, wanted, cotangents, allow_unused=True, materialize_grads=True)
    return list(outs), list(grads)
