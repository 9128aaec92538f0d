"""Distances between SROP distributions (claims S1 and S2 of ``docs/claims.md``).

A layer's SROP distribution for a set of images is the pool of its channel SROPs over those images
(images x channels, dead channels left out). The Wasserstein-1 distance between two such pools is
``integral |F1(r) - F2(r)| dr`` over ``r`` in ``[0, sqrt(2)]`` (fractions of Nyquist). We compute it from
per-image histograms on a fine grid (:data:`W1_BINS` bins, width ``sqrt(2) / 512 ~ 0.0028`` of Nyquist,
finer than the SROP's own resolution on any map under 256 px), so that a bootstrap resample of images is
one matrix product: ``counts (R, N) @ histograms (N, B)``, and a thousand resamples cost one pass.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["W1_BINS", "srop_histograms", "wasserstein1", "resample_histograms", "resample_counts"]

W1_BINS = 512
_RANGE = math.sqrt(2.0)


def srop_histograms(values: Tensor, *, bins: int = W1_BINS) -> Tensor:
    """``(N, B)`` float64 counts of each image's live channel SROPs (``values``: ``(N, C)``, NaN = dead)
    in ``bins`` equal bins over ``[0, sqrt(2)]``."""
    v = values.double()
    alive = ~torch.isnan(v)
    idx = (v.nan_to_num(0.0) / _RANGE * bins).floor().long().clamp(0, bins - 1)
    return torch.zeros(v.shape[0], bins, dtype=torch.float64, device=v.device).scatter_add_(1, idx, alive.double())


def wasserstein1(h1: Tensor, h2: Tensor) -> Tensor:
    """Wasserstein-1 distance between the distributions of two histograms on the same grid over
    ``[0, sqrt(2)]``, batched over leading dimensions: ``sum |cdf1 - cdf2| * bin width``. NaN where a
    histogram is empty (every channel dead)."""
    if h1.shape[-1] != h2.shape[-1]:
        raise ValueError(f"histograms must share their bins, got {h1.shape[-1]} and {h2.shape[-1]}")
    width = _RANGE / h1.shape[-1]
    n1, n2 = h1.sum(-1, keepdim=True), h2.sum(-1, keepdim=True)
    f1 = h1.cumsum(-1) / n1
    f2 = h2.cumsum(-1) / n2
    return (f1 - f2).abs().sum(-1) * width


def resample_counts(idx: Tensor, n: int) -> Tensor:
    """``(R, n)`` float64: how often each of ``n`` source images occurs in each row of ``idx`` (R, k)."""
    idx = torch.as_tensor(idx).long()
    if idx.ndim == 1:
        idx = idx[None]
    return torch.zeros(idx.shape[0], n, dtype=torch.float64).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))


def resample_histograms(hist: Tensor, counts: Tensor) -> Tensor:
    """Pooled histograms of resampled image sets: ``counts (R, N) @ hist (N, B) -> (R, B)``."""
    return counts.to(hist) @ hist
