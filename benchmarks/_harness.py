"""Timing helper shared by the benchmark files (see conftest.py for how to run them)."""

from __future__ import annotations

import importlib.metadata

import torch


def nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def run_case(benchmark, copy_bandwidth: float, *, provider: str, mode: str, make_inputs, op, rounds=20):
    """Time ``op`` (fwd, bwd or fwd_bwd) on fresh inputs from ``make_inputs()`` and fill ``extra_info``.

    ``make_inputs()`` returns the differentiable inputs as a tuple; ``op(*inputs)`` returns a tuple of outputs, of
    which the differentiable ones receive a cotangent of ones in the backward modes. ``min_bytes`` counts the inputs
    and outputs once (plus, with a backward, the incoming and outgoing gradients): a lower bound on the traffic.
    """
    torch.manual_seed(0)
    inputs = make_inputs()
    grad_inputs = [t for t in inputs if isinstance(t, torch.Tensor) and t.is_floating_point()]

    def forward_backward(backward: bool):
        outs = op(*inputs)
        diff = [o for o in outs if o.is_floating_point() and o.requires_grad]
        if backward:
            torch.autograd.backward(diff, [torch.ones_like(o) for o in diff])
        return outs

    if mode == "fwd":
        for t in grad_inputs:
            t.requires_grad_(False)

        def fn():
            with torch.no_grad():
                outs = op(*inputs)
            torch.cuda.synchronize()
            return outs

        setup = None
    elif mode == "fwd_bwd":
        for t in grad_inputs:
            t.requires_grad_(True)

        def fn():
            for t in grad_inputs:
                t.grad = None
            outs = forward_backward(True)
            torch.cuda.synchronize()
            return outs

        setup = None
    else:  # bwd: the forward runs in an untimed setup
        for t in grad_inputs:
            t.requires_grad_(True)
        state = {}

        def setup():
            for t in grad_inputs:
                t.grad = None
            outs = op(*inputs)
            diff = [o for o in outs if o.is_floating_point() and o.requires_grad]
            state["outs"], state["grads"] = diff, [torch.ones_like(o) for o in diff]
            torch.cuda.synchronize()

        def fn():
            torch.autograd.backward(state["outs"], state["grads"])
            torch.cuda.synchronize()

    # Warm up (compiles the kernels), then one run for peak memory.
    for _ in range(3):
        if setup:
            setup()
        outs = fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    if setup:
        setup()
    outs = fn()
    peak = torch.cuda.max_memory_allocated() - base

    if setup:
        benchmark.pedantic(fn, setup=setup, rounds=rounds, warmup_rounds=2, iterations=1)
    else:
        benchmark.pedantic(fn, rounds=rounds, warmup_rounds=2, iterations=1)

    with torch.no_grad():
        out_tensors = [o for o in (op(*inputs) if outs is None else outs) if isinstance(o, torch.Tensor)]
    moved = nbytes(*inputs) + nbytes(*out_tensors)
    if mode != "fwd":
        moved += 2 * nbytes(*grad_inputs) + nbytes(*[o for o in out_tensors if o.is_floating_point()])
    median = benchmark.stats.stats.median
    info = benchmark.extra_info
    info.update(
        gpu=torch.cuda.get_device_name(),
        torch=torch.__version__,
        triton=importlib.metadata.version("triton"),
        provider=provider,
        mode=mode,
        peak_mib=round(peak / 2**20, 1),
        min_bytes=moved,
        achieved_gbps=round(moved / median / 1e9, 1),
        copy_gbps=round(copy_bandwidth / 1e9, 1),
        fraction_of_copy=round(moved / median / copy_bandwidth, 3),
    )
