"""Rank and correlation statistics shared by the methods (MuFidelity's per-image Spearman, SROP's
correlation with accuracy over training stages, the claims' correlations over layers and stages): batched,
float64, scipy's conventions.

Missing values propagate (scipy's ``nan_policy="propagate"``): a row with a NaN has NaN ranks and a NaN
correlation. A NaN is never ranked as the lowest (or highest) value: a claim row with a missing value is
undecided, not decided from the values that happen to be present."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

def average_ranks(x: Tensor) -> Tensor:
    """Ranks along the last dimension (1-based), ties given their average rank (scipy's ``rankdata``),
    batched: ``#{j: x_j < x_i} + (#{j: x_j == x_i} + 1) / 2``. A row holding a NaN gets NaN ranks
    throughout (``rankdata(..., nan_policy="propagate")``)."""
    less = (x[..., None, :] < x[..., :, None]).sum(-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(-1)
    ranks = less.to(torch.float64) + (equal.to(torch.float64) + 1) / 2
    missing = torch.isnan(x).any(-1, keepdim=True) if x.is_floating_point() else None
    if missing is not None:
        ranks = ranks.masked_fill(missing, float("nan"))
    return ranks


def rowwise_correlation(a: Tensor, b: Tensor, *, method: Literal["spearman", "pearson"] = "spearman") -> Tensor:
    """Correlation of each row of ``a`` with the same row of ``b`` (float64); NaN where a row is constant or
    holds a NaN (in ``a`` or ``b``)."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    if method == "spearman":
        a, b = average_ranks(a), average_ranks(b)
    elif method != "pearson":
        raise ValueError(f"correlation must be 'spearman' or 'pearson', got {method!r}")
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    den = a.norm(dim=-1) * b.norm(dim=-1)
    # NaN compares false with > 0: a row with a missing value falls to the NaN branch
    return torch.where(den > 0, (a * b).sum(-1) / den.clamp(min=1e-300), torch.full_like(den, float("nan")))


def ranks_and_ties(v: Tensor) -> tuple[Tensor, Tensor]:
    """Ranks (1-based, ties averaged, scipy's ``rankdata``) along the last dimension by one sort (batched,
    O(n log n) memory and time, for long rows such as Kruskal-Wallis' pooled samples), and per row
    ``sum(t^3 - t)`` over the groups of ``t`` tied values (the tie corrections of rank tests)."""
    m = v.shape[-1]
    s, order = torch.sort(v, dim=-1)
    pos = torch.arange(m, device=v.device).expand_as(s)
    start = torch.ones_like(s, dtype=torch.bool)
    start[..., 1:] = s[..., 1:] != s[..., :-1]
    end = torch.ones_like(s, dtype=torch.bool)
    end[..., :-1] = start[..., 1:]
    first = torch.where(start, pos, torch.zeros_like(pos)).cummax(-1).values
    last = torch.where(end, pos, torch.full_like(pos, m)).flip(-1).cummin(-1).values.flip(-1)
    rank_sorted = (first + last).double() / 2 + 1
    t = (last - first + 1).double()
    ranks = torch.empty_like(rank_sorted).scatter_(-1, order, rank_sorted)
    return ranks, (t * t - 1).sum(-1)  # each group of t contributes t * (t^2 - 1) = t^3 - t
