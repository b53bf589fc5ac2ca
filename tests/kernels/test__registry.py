"""Dispatch between the reference and the Triton implementations."""

import pytest
import torch

from aniportrait.kernels import _registry
from aniportrait.kernels._registry import resolve_impl, use_impl


def test_auto_picks_ref_for_cpu_tensors(monkeypatch):
    monkeypatch.delenv("ANIPORTRAIT_IMPL", raising=False)
    assert resolve_impl("op", "auto", torch.zeros(2)) == "ref"


def test_explicit_impl_wins_over_context_and_environment(monkeypatch):
    monkeypatch.setenv("ANIPORTRAIT_IMPL", "triton")
    with use_impl("triton"):
        assert resolve_impl("op", "ref", torch.zeros(2)) == "ref"


def test_context_wins_over_environment(monkeypatch):
    monkeypatch.setenv("ANIPORTRAIT_IMPL", "triton")
    with use_impl("ref"):
        assert resolve_impl("op", "auto", torch.zeros(2)) == "ref"


@pytest.mark.interpret
def test_environment_overrides_auto(monkeypatch):
    monkeypatch.setenv("ANIPORTRAIT_IMPL", "triton")
    assert resolve_impl("op", "auto", torch.zeros(2)) == "triton"


@pytest.mark.parametrize("where", ["argument", "context", "environment"])
def test_unknown_impl_is_rejected(monkeypatch, where):
    monkeypatch.delenv("ANIPORTRAIT_IMPL", raising=False)
    with pytest.raises(ValueError, match="unknown impl 'cuda'"):
        if where == "argument":
            resolve_impl("op", "cuda", torch.zeros(2))
        elif where == "context":
            with use_impl("cuda"):
                pass
        else:
            monkeypatch.setenv("ANIPORTRAIT_IMPL", "cuda")
            resolve_impl("op", "auto", torch.zeros(2))


def test_explicit_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setattr(_registry, "interpreter_enabled", lambda: False)
    with pytest.raises(RuntimeError, match="needs every tensor on CUDA"):
        resolve_impl("manifold_intersect", "triton", torch.zeros(2))


def test_explicit_triton_without_triton_installed_raises(monkeypatch):
    monkeypatch.setattr(_registry, "HAS_TRITON", False)
    with pytest.raises(RuntimeError, match="needs the triton package"):
        resolve_impl("manifold_intersect", "triton", torch.zeros(2))


@pytest.mark.interpret
@pytest.mark.parametrize("impl", ["ref", "triton"])
def test_ops_dispatch_reaches_the_chosen_implementation(monkeypatch, impl):
    from aniportrait import ops
    from aniportrait.kernels import manifold_intersect as module

    called = []
    for name in ("manifold_intersect_ref", "manifold_intersect_triton"):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _o=original, _n=name, **k: called.append(_n) or _o(*a, **k))
    s, points, levels = torch.zeros(1, 1, 3), torch.zeros(1, 1, 3, 1), torch.zeros(1)
    ops.manifold_intersect(s, points, levels, impl=impl)
    assert called == [f"manifold_intersect_{impl}"]
