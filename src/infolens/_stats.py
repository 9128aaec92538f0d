"""Rank and correlation statistics shared by the methods (MuFidelity's per-image Spearman, SROP's
correlation with accuracy over training stages): batched, float64, scipy's conventions."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

def average_ranks(x: Tensor) -> Tensor:
    """Ranks along the last dimension (1-based), ties given their average rank (scipy's ``rankdata``),
    batched: ``#{j: x_j < x_i} + (#{j: x_j == x_i} + 1) / 2``."""
    less = (x[..., None, :] < x[..., :, None]).sum(-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(-1)
    return less.to(torch.float64) + (equal.to(torch.float64) + 1) / 2


def rowwise_correlation(a: Tensor, b: Tensor, *, method: Literal["spearman", "pearson"] = "spearman") -> Tensor:
    """Correlation of each row of ``a`` with the same row of ``b`` (float64); NaN where a row is constant."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    if method == "spearman":
        a, b = average_ranks(a), average_ranks(b)
    elif method != "pearson":
        raise ValueError(f"correlation must be 'spearman' or 'pearson', got {method!r}")
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    den = a.norm(dim=-1) * b.norm(dim=-1)
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
