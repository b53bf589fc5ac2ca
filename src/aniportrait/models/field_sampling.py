"""Where along each ray the scalar field is evaluated: every fine sample (exact), or coarse to fine (adaptive).

A frame needs, per ray and manifold level, only the first fine interval in which the scalar field s crosses the
level downward (``ops.manifold_intersect``). The exact path evaluates DeformNet and SampleNet at all fine samples
(256 per ray in ``sshq512``, about 90% of a frame's arithmetic). The adaptive path finds the same intervals from a
fraction of them:

1. Evaluate every ``stride``-th sample (and the last).
2. Halve the spacing ``log2(stride)`` times. At each step an interval between two samples of the current grid is
   *refined* (its midpoint evaluated) when some level lies within ``[min - m, max + m]`` of its end values and the
   interval does not come after that level's first bracketing interval (one whose ends satisfy
   ``s[a] >= level >= s[b]``: it holds a downward crossing, so later ones cannot be the first). The margin
   ``m = SAFETY * (largest |second difference| of s at the interval's two ends) + FLOOR`` covers a field that
   overshoots its end values between them.
3. Samples never evaluated take values linearly interpolated between their nearest evaluated neighbours, which
   lie within those neighbours' range, so an unrefined interval never shows a crossing.

The result equals the exact one unless the field crosses a level inside an unrefined interval by more than its
margin: a bump narrower than the grid spacing that its neighbourhood's curvature does not reveal. The error on
trained and planar-initialised models is measured by ``benchmarks/cpu_frame_time.py``; the exact path stays the
default and the oracle. Both return the same keys; with ``adaptive``, ``d`` and ``s`` hold interpolated values at
the samples that were not evaluated (``evaluated`` marks the others).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from aniportrait.config import SAMPLINGS

# Spacing of the first, coarsest grid, in fine samples (a power of two).
ADAPTIVE_STRIDE = 8
# Margin per unit of |second difference|: a piecewise-linear field (SampleNet is a ReLU MLP) with one kink inside an
# interval overshoots its chord by at most half the larger second difference at the interval's ends; 1 doubles that.
MARGIN_SAFETY = 1.0
# Absolute margin added to every interval, in units of s (the levels are 15 / 23 apart in sshq512: 0.65).
MARGIN_FLOOR = 0.02

Field = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


def sample_field(
    field: Field, x: Tensor, levels: Tensor, *, sampling: str = "exact", chunk: Callable | None = None
) -> dict[str, Tensor]:
    """Evaluate ``field`` along rays, at every fine sample or adaptively.

    Args:
        field: points [B, P, 3] -> (s [B, P], lookup [B, P, 3], d [B, P, 3]).
        x: fine samples [B, R, S, 3], ordered along each ray.
        levels: [L] manifold levels.
        sampling: ``"exact"`` or ``"adaptive"`` (module docstring).
        chunk: ``chunk(field, points)`` applies ``field`` piecewise (the caller's memory bound); None calls it once.

    Returns:
        ``s`` [B, R, S], ``lookup`` [B, R, S, 3], ``d`` [B, R, S, 3] and ``evaluated`` [B, R, S] (bool).
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    call = field if chunk is None else (lambda p: chunk(field, p))
    B, R, S, _ = x.shape
    if sampling == "exact" or S <= 2:
        s, lookup, d = call(x.reshape(B, R * S, 3))
        evaluated = torch.ones(B, R, S, dtype=torch.bool, device=x.device)
        return {
            "s": s.reshape(B, R, S),
            "lookup": lookup.reshape(B, R, S, 3),
            "d": d.reshape(B, R, S, 3),
            "evaluated": evaluated,
        }
    return _AdaptiveSampler(call, x, levels).run()


def grid_mask(n: int, spacing: int, device=None) -> Tensor:
    """[n] bool: the samples of the grid with this spacing (every ``spacing``-th, and the last)."""
    mask = torch.arange(n, device=device) % spacing == 0
    mask[-1] = True
    return mask


def refine_intervals(s_nodes: Tensor, levels: Tensor) -> Tensor:
    """Which intervals of a grid may hold a level's first downward crossing (module docstring, step 2).

    Args:
        s_nodes: [..., N] the field at the grid's samples along each ray.
        levels: [L].

    Returns:
        [..., N - 1] bool.
    """
    a, b = s_nodes[..., :-1], s_nodes[..., 1:]
    bend = torch.zeros_like(s_nodes)
    if s_nodes.shape[-1] > 2:
        bend[..., 1:-1] = (s_nodes[..., :-2] - 2 * s_nodes[..., 1:-1] + s_nodes[..., 2:]).abs()
        bend[..., 0], bend[..., -1] = bend[..., 1], bend[..., -2]
        bend = bend.nan_to_num(nan=0.0)  # a NaN sample never crosses; it must not hide its neighbours' crossings
    margin = MARGIN_SAFETY * torch.maximum(bend[..., :-1], bend[..., 1:]) + MARGIN_FLOOR
    low, high = torch.minimum(a, b), torch.maximum(a, b)
    # Each interval's sets of levels as bit masks over the sorted levels: those near it, and those it brackets.
    sorted_levels = torch.sort(levels.to(s_nodes.dtype)).values
    near = _level_bits(sorted_levels, low - margin, high + margin)
    brackets = _level_bits(sorted_levels, b, a)
    # A level bracketed by an earlier interval has its first crossing there: drop it from the later ones.
    seen = torch.zeros_like(near[..., 0])
    refine = torch.empty_like(near, dtype=torch.bool)
    for j in range(near.shape[-1]):
        refine[..., j] = (near[..., j] & ~seen) != 0
        seen = seen | brackets[..., j]
    return refine


# Bit masks hold the level sets: int64 without its sign bit.
MAX_LEVELS = 62


def _level_bits(sorted_levels: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """int64 bit masks of the levels in ``[low, high]`` (bit k: the k-th smallest level); 0 where empty or NaN."""
    if sorted_levels.numel() > MAX_LEVELS:
        raise ValueError(f"adaptive sampling handles at most {MAX_LEVELS} levels, got {sorted_levels.numel()}")
    first = torch.searchsorted(sorted_levels, low.contiguous(), right=False)
    stop = torch.searchsorted(sorted_levels, high.contiguous(), right=True)
    one = torch.ones((), dtype=torch.int64, device=low.device)
    bits = (one << stop) - (one << first)
    return torch.where((stop > first) & ~(low.isnan() | high.isnan()), bits, 0)


class _AdaptiveSampler:
    """One adaptive evaluation (module docstring): the arrays being filled and the steps that fill them."""

    def __init__(self, call, x: Tensor, levels: Tensor) -> None:
        self.call, self.x, self.levels = call, x, levels
        B, R, S, _ = x.shape
        self.s = x.new_zeros(B, R, S)
        self.lookup = x.new_zeros(B, R, S, 3)
        self.d = x.new_zeros(B, R, S, 3)
        self.evaluated = torch.zeros(B, R, S, dtype=torch.bool, device=x.device)

    def run(self) -> dict[str, Tensor]:
        S, device = self.x.shape[2], self.x.device
        spacing = min(ADAPTIVE_STRIDE, 1 << (S - 1).bit_length() - 1)
        self._evaluate(grid_mask(S, spacing, device).expand_as(self.evaluated))
        while spacing > 1:
            nodes = grid_mask(S, spacing, device)
            node_index = nodes.nonzero()[:, 0]
            # Nodes inside intervals left unrefined take the interpolated values (they never show a crossing).
            s_nodes = _interpolate_missing(node_index, self.evaluated[..., node_index], self.s[..., node_index])
            refine = refine_intervals(s_nodes, self.levels)  # [B, R, N-1]
            spacing //= 2
            # Each new sample lies inside one interval of the coarser grid: the number of its nodes at or before it.
            new = grid_mask(S, spacing, device) & ~nodes
            interval = (torch.cumsum(nodes.long(), 0) - 1).clamp(max=node_index.numel() - 2)
            self._evaluate(refine[..., interval] & new)
        index = torch.arange(S, device=device)
        s, lookup, d = _interpolate_missing(index, self.evaluated, self.s, self.lookup, self.d)
        return {"s": s, "lookup": lookup, "d": d, "evaluated": self.evaluated}

    def _evaluate(self, mask: Tensor) -> None:
        """Evaluate the field where ``mask`` [B, R, S] holds and the sample is not yet evaluated."""
        mask = mask & ~self.evaluated
        B, R, S = mask.shape
        flat = mask.reshape(B, R * S)
        counts = flat.sum(dim=1)
        count = int(counts.max())
        if count == 0:
            return
        # Each batch item's selected samples in order, padded with sample 0 up to the largest count.
        batch, sample = flat.nonzero(as_tuple=True)
        slot = torch.cumsum(counts, 0) - counts
        position = torch.arange(batch.numel(), device=flat.device) - slot[batch]
        order = torch.zeros(B, count, dtype=torch.long, device=flat.device)
        order[batch, position] = sample
        points = torch.gather(self.x.reshape(B, R * S, 3), 1, order[..., None].expand(-1, -1, 3))
        s, lookup, d = self.call(points)
        for array, value in ((self.s, s), (self.lookup, lookup), (self.d, d)):
            array.view(B, R * S, -1)[batch, sample] = value.reshape(B, count, -1)[batch, position].to(array.dtype)
        self.evaluated |= mask


def _interpolate_missing(position: Tensor, known: Tensor, *arrays: Tensor):
    """Fill the entries of ``arrays`` [B, R, N, ...] where ``known`` [B, R, N] is False by linear interpolation
    (in ``position`` [N], increasing) between the nearest known entries before and after; the first and last
    entries must be known. Returns one array, or a tuple for several."""
    N = known.shape[-1]
    index = torch.arange(N, device=known.device).expand_as(known)
    before = torch.where(known, index, -1).cummax(dim=-1).values
    after = torch.where(known, index, N).flip(-1).cummin(dim=-1).values.flip(-1)
    p_before, p_after = position[before], position[after]
    t = (position - p_before) / (p_after - p_before).clamp(min=1)
    out = []
    for array in arrays:
        extra = (1,) * (array.dim() - 3)
        at_before = torch.gather(array, 2, before.view(*before.shape, *extra).expand_as(array))
        at_after = torch.gather(array, 2, after.view(*after.shape, *extra).expand_as(array))
        weight = t.view(*t.shape, *extra).to(array.dtype)
        mixed = at_before * (1 - weight) + at_after * weight
        out.append(torch.where(known.view(*known.shape, *extra), array, mixed))
    return out[0] if len(out) == 1 else tuple(out)
