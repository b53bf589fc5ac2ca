"""Adaptive sampling of the scalar field: the same intersections as the exact path from fewer evaluations, its
interval rule, and the limit it documents (a bump narrower than the coarse grid)."""

import math

import pytest
import torch

from aniportrait import ops
from aniportrait.models import field_sampling as fs
from aniportrait.models.field_sampling import refine_intervals, sample_field


def _rays(B, R, S, seed=0):
    """Fine samples along rays: t in [0, 1] in channel 0, a per-ray offset in channels 1 and 2."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, S, dtype=torch.float64).expand(B, R, S)
    offsets = torch.rand(B, R, 1, 2, generator=gen, dtype=torch.float64).expand(B, R, S, 2)
    return torch.cat([t[..., None], offsets], dim=-1).contiguous()


def _smooth_field(p):
    """Falls from about 25 to 5 along the ray with a wobble that crosses some levels more than once."""
    t, u, v = p.unbind(-1)
    s = 25 - 20 * t + 2.5 * torch.sin(9 * t + 6 * u) + v
    return s, 2 * p, 0.1 * p


def _counting(field):
    calls = []

    def wrapped(p):
        calls.append(p.shape[1])
        return field(p)

    return wrapped, calls


def _intersections(found, levels):
    return ops.manifold_intersect(found["s"], found["lookup"], levels, impl="ref")


@pytest.mark.parametrize(("S", "L"), [(256, 24), (33, 7), (17, 1), (5, 3), (2, 4)])
def test_adaptive_finds_the_exact_intersections_of_smooth_fields(S, L):
    x = _rays(2, 37, S)
    levels = torch.linspace(23, 8, L, dtype=torch.float64)
    exact = sample_field(_smooth_field, x, levels, sampling="exact")
    field, calls = _counting(_smooth_field)
    adaptive = sample_field(field, x, levels, sampling="adaptive")
    hits_e, valid_e = _intersections(exact, levels)
    hits_a, valid_a = _intersections(adaptive, levels)
    assert torch.equal(valid_a, valid_e) and torch.equal(hits_a, hits_e)
    assert valid_e.any()
    done = adaptive["evaluated"]
    assert done[..., 0].all() and done[..., -1].all()
    for key in ("s", "lookup", "d"):
        assert torch.equal(adaptive[key][done], exact[key][done]), key
    if S == 256:
        assert done.double().mean() < 0.6, "the coarse-to-fine search should skip most samples"
        assert len(calls) == 1 + 3  # the coarse grid (spacing 8), then spacings 4, 2 and 1


def test_exact_sampling_evaluates_every_sample_once():
    x = _rays(1, 5, 9)
    field, calls = _counting(_smooth_field)
    found = sample_field(field, x, torch.tensor([10.0], dtype=torch.float64))
    assert calls == [45] and found["evaluated"].all()


def test_each_sample_is_evaluated_at_most_once():
    x = _rays(1, 11, 64)
    field, calls = _counting(_smooth_field)
    found = sample_field(field, x, torch.linspace(23, 8, 24, dtype=torch.float64), sampling="adaptive")
    assert sum(calls) == int(found["evaluated"].sum())


def test_refine_intervals_follows_each_levels_first_bracket():
    levels = torch.tensor([7.0])
    s = torch.tensor([[10.0, 8.0, 6.0, 4.0]])
    assert refine_intervals(s, levels).tolist() == [[False, True, False]]
    # A second level just below the last interval's range is near it (the margin), and not yet bracketed.
    assert refine_intervals(s, torch.tensor([7.0, 4.0 - fs.MARGIN_FLOOR / 2])).tolist() == [[False, True, True]]
    # Once a level is bracketed, later intervals that merely touch it are not refined.
    s = torch.tensor([[10.0, 8.0, 9.0, 5.0]])
    assert refine_intervals(s, torch.tensor([8.5])).tolist() == [[True, False, False]]
    # An interval near a level but before its first bracket is refined: the field may dip to it in between.
    s = torch.tensor([[10.0, 8.6, 9.5, 5.0]])
    assert refine_intervals(s, torch.tensor([8.5])).tolist() == [[True, True, True]]
    # NaN never counts as near.
    s = torch.tensor([[float("nan"), 8.0, 6.0]])
    assert refine_intervals(s, torch.tensor([7.0])).tolist() == [[False, True]]


def test_curvature_widens_the_margin():
    levels = torch.tensor([9.0])
    straight = torch.tensor([[12.0, 11.0, 10.0, 11.0, 12.0]])  # a kink at the middle node: |second difference| 2
    assert refine_intervals(straight, levels).tolist() == [[False, True, True, False]]
    assert refine_intervals(torch.tensor([[12.0, 11.0, 10.0, 9.5]]), torch.tensor([8.0])).tolist() == [
        [False, False, False]
    ]


def test_a_bump_narrower_than_the_coarse_grid_is_the_documented_limit():
    S = 33
    x = _rays(1, 1, S)

    def field(p):
        dip = torch.isclose(p[..., 0], torch.tensor(3 / (S - 1), dtype=p.dtype))
        # One fine sample (index 3, between the coarse samples 0 and 8) dips through the level.
        return torch.where(dip, 10.0, 20.0).to(p.dtype), p, p

    levels = torch.tensor([15.0], dtype=torch.float64)
    _, valid_e = _intersections(sample_field(field, x, levels, sampling="exact"), levels)
    _, valid_a = _intersections(sample_field(field, x, levels, sampling="adaptive"), levels)
    assert valid_e.all() and not valid_a.any()


def test_bad_arguments_are_refused():
    x = _rays(1, 2, 8)
    with pytest.raises(ValueError, match="sampling must be one of exact, adaptive, got 'fast'"):
        sample_field(_smooth_field, x, torch.tensor([1.0]), sampling="fast")
    with pytest.raises(ValueError, match="at most 62 levels"):
        sample_field(_smooth_field, x, torch.linspace(25, 5, 63, dtype=torch.float64), sampling="adaptive")


@torch.no_grad()
def test_generator_frames_are_the_same_with_adaptive_sampling(generator, body):
    from aniportrait.config import TINY
    from aniportrait.models.generator import sample_identity_latents

    identity = generator.prepare_identity(*sample_identity_latents(TINY, [0, 1]), psi=0.7, impl="ref")
    camera = torch.tensor([[math.pi / 2, math.pi / 2 + 0.3]] * 2)
    pose = torch.zeros(2, 6, 3)
    pose[:, 3, 2] = 0.2
    expression = torch.full((2, TINY.z_exp_dim), 0.5)
    exact = generator.render_frame(identity, body, camera, pose, expression, impl="ref")
    adaptive = generator.render_frame(identity, body, camera, pose, expression, impl="ref", sampling="adaptive")
    for key in exact:
        assert torch.equal(exact[key], adaptive[key]), key
