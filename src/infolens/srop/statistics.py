"""Distributions of per-channel SROPs per layer: per image and aggregated over images
(``docs/methods.md``, section 1, "Layer statistic"), their table forms, and the correlation used
by the training-stage check.

Dead channels: an all-zero map (a dead ReLU channel) has no spectrum; its SROP is NaN, it is left out
of every statistic and counted (``n_dead``). A layer whose channels are all dead for an image gives NaN
statistics for that image, and those images are left out of the average over images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from .._stats import rowwise_correlation
from .._method import check_indices
from .measure import LayerSROPs

__all__ = ["DEFAULT_QUANTILES", "SROP_MAX", "SROPStatistics", "srop_statistics", "quantile_name",
           "summarize_image_rows", "correlation"]

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.75, 0.9)
"""Quantiles reported beside the median (the box and whiskers of the distribution figures)."""

SROP_MAX = math.sqrt(2.0)
"""Largest possible SROP (the corner of the 2-D spectrum) as a fraction of Nyquist; histogram range."""


def quantile_name(q: float) -> str:
    """Column name of a quantile: 0.1 -> ``q10``, 0.025 -> ``q2.5``."""
    v = round(float(q) * 100, 6)
    return f"q{int(v)}" if v == int(v) else f"q{v:g}"



# --------------------------------------------------------------------------- statistics


def _stats_rows(v: Tensor, quantiles: Sequence[float], edges: Tensor) -> dict[str, Tensor]:
    """NaN-aware statistics of each row of ``v`` (R, C): NaN entries are missing (dead channels)."""
    alive = ~torch.isnan(v)
    n_alive = alive.sum(1)
    vd = v.double()
    mean = torch.nanmean(vd, dim=1)
    std = torch.sqrt(torch.nanmean((vd - mean[:, None]).square(), dim=1))  # population std (ddof=0)
    qs = torch.tensor([0.5, *quantiles], dtype=torch.float64)
    if v.shape[1] > 0:
        qv = torch.nanquantile(vd, qs, dim=1)  # (Q, R), linear interpolation as numpy
    else:
        qv = torch.full((len(qs), v.shape[0]), float("nan"), dtype=torch.float64)
    out = {"n_channels": torch.full_like(n_alive, v.shape[1]), "n_dead": v.shape[1] - n_alive,
           "mean": mean, "median": qv[0], "std": std}
    for i, q in enumerate(quantiles):
        out[quantile_name(q)] = qv[i + 1]
    nb = edges.numel() - 1
    idx = torch.bucketize(vd.nan_to_num(0.0), edges.double(), right=True).sub(1).clamp(0, nb - 1)
    out["histogram"] = torch.zeros(v.shape[0], nb, dtype=torch.float64).scatter_add_(1, idx, alive.double())
    return out


@dataclass
class SROPStatistics:
    """Distribution of the per-channel SROPs of each layer, per image and aggregated.

    ``per_image[stat]`` is ``(N, L)`` and ``aggregated[stat]`` is ``(L,)`` for ``stat`` in
    ``mean, median, std, q10, q25, q75, q90, n_channels, n_dead`` (float64; ``n_*`` are counts).
    ``histogram`` is ``(N, L, B)`` channel counts per bin (``edges``, fractions of Nyquist); the
    aggregated histogram is its sum over images. All statistics are of SROPs as fractions of the
    layer's Nyquist; divide by ``strides`` for cycles per input pixel (every statistic here scales).
    """

    layers: list[str]
    strides: list[float]
    quantiles: tuple[float, ...]
    per_image: dict[str, Tensor]
    aggregated: dict[str, Tensor]
    histogram: Tensor
    edges: Tensor
    aggregate: str
    indices: list[int] | None = None

    STATS = ("mean", "median", "std")

    def _stat_names(self) -> list[str]:
        return [*self.STATS, *(quantile_name(q) for q in self.quantiles)]

    def image_rows(self, *, indices: Sequence[int] | None = None, extra: Mapping[str, Any] | None = None,
                   decimals: int | None = 6) -> list[dict[str, Any]]:
        """One row per image x layer, keyed on ``index`` (``indices``, default the measured images'):
        counts, statistics, and ``mean_input``/``median_input``."""
        n = int(self.per_image["mean"].shape[0])
        ids = check_indices(self.indices if indices is None else indices, n)
        cols = {k: _rounded(self.per_image[k], decimals) for k in self._stat_names()}
        counts = {k: self.per_image[k].long().tolist() for k in ("n_channels", "n_dead")}
        rows = []
        for i in range(n):
            for j, name in enumerate(self.layers):
                r = {**(extra or {}), "index": ids[i], "layer": name, "depth": j, "stride": self.strides[j],
                     "n_channels": counts["n_channels"][i][j], "n_dead": counts["n_dead"][i][j]}
                r.update({k: cols[k][i][j] for k in cols})
                r["mean_input"] = _round1(cols["mean"][i][j] / self.strides[j], decimals)
                r["median_input"] = _round1(cols["median"][i][j] / self.strides[j], decimals)
                rows.append(r)
        return rows

    def layer_rows(self, *, extra: Mapping[str, Any] | None = None, decimals: int | None = 6) -> list[dict[str, Any]]:
        """One row per layer: the aggregated statistics (``aggregate`` says how)."""
        cols = {k: _rounded(self.aggregated[k], decimals) for k in self._stat_names()}
        rows = []
        for j, name in enumerate(self.layers):
            r = {**(extra or {}), "layer": name, "depth": j, "stride": self.strides[j],
                 "n_images": int(self.aggregated["n_images"][j]),
                 "n_channels": int(self.aggregated["n_channels"][j]), "n_dead": int(self.aggregated["n_dead"][j])}
            r.update({k: cols[k][j] for k in cols})
            r["mean_input"] = _round1(cols["mean"][j] / self.strides[j], decimals)
            r["median_input"] = _round1(cols["median"][j] / self.strides[j], decimals)
            rows.append(r)
        return rows

    def histogram_rows(self, *, extra: Mapping[str, Any] | None = None,
                       skip_empty: bool = False) -> list[dict[str, Any]]:
        """One row per layer x bin: the channel counts summed over images (additive over batches);
        ``skip_empty`` leaves out bins with no channel (a sparse table)."""
        h = self.histogram.sum(0).long().tolist()
        e = self.edges.tolist()
        return [{**(extra or {}), "layer": name, "depth": j, "bin_lo": round(e[b], 6), "bin_hi": round(e[b + 1], 6),
                 "count": h[j][b]}
                for j, name in enumerate(self.layers) for b in range(len(e) - 1) if h[j][b] or not skip_empty]


def _rounded(t: Tensor, decimals: int | None) -> list:
    t = t.double()
    if decimals is not None:
        t = t.mul(10 ** decimals).round().div(10 ** decimals)
    return t.tolist()


def _round1(v: float, decimals: int | None) -> float:
    return v if decimals is None or v != v else round(v, decimals)


def srop_statistics(result: LayerSROPs, *, quantiles: Sequence[float] = DEFAULT_QUANTILES, bins: int = 28,
                    aggregate: Literal["images", "pooled"] = "images") -> SROPStatistics:
    """Per-layer distribution of channel SROPs: per image, and aggregated over images.

    Parameters
    ----------
    result : the output of :func:`layer_srops`.
    quantiles : reported beside the median (default 0.1, 0.25, 0.75, 0.9); linear interpolation.
    bins : histogram bins of equal width over ``[0, sqrt(2)]`` (default 28: about 0.05 of Nyquist).
    aggregate : ``"images"`` (default; docs/methods.md, "averaged over inputs"): each statistic is computed per
        image over its channels, then averaged over the images that have a live channel; ``"pooled"``:
        the statistics of all image x channel values of a layer taken together. Counts (``n_channels``,
        ``n_dead``) are totals over images either way; ``n_images`` counts the images used.

    Dead channels (NaN) are excluded and counted in ``n_dead``; the standard deviation is the
    population one (ddof = 0).
    """
    if not isinstance(result, LayerSROPs):
        raise TypeError(f"result must be a LayerSROPs (from layer_srops), got {type(result).__name__}")
    if aggregate not in ("images", "pooled"):
        raise ValueError(f"aggregate must be 'images' or 'pooled', got {aggregate!r}")
    quantiles = tuple(float(q) for q in quantiles)
    if any(not 0.0 <= q <= 1.0 for q in quantiles):
        raise ValueError(f"quantiles must lie in [0, 1], got {quantiles}")
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = torch.linspace(0.0, SROP_MAX, int(bins) + 1, dtype=torch.float64)
    edges[-1] = SROP_MAX + 1e-9  # the corner value itself falls in the last bin
    per_layer = [_stats_rows(result.values[n], quantiles, edges) for n in result.layers]
    keys = [k for k in per_layer[0] if k != "histogram"] if per_layer else []
    per_image = {k: torch.stack([p[k].double() for p in per_layer], dim=1) for k in keys}
    hist = torch.stack([p["histogram"] for p in per_layer], dim=1)
    if aggregate == "images":
        agg = {k: torch.nanmean(per_image[k], dim=0) for k in keys}
        agg["n_images"] = (~torch.isnan(per_image["mean"])).sum(0).double()
    else:
        pooled = [_stats_rows(result.values[n].reshape(1, -1), quantiles, edges) for n in result.layers]
        agg = {k: torch.stack([p[k].double()[0] for p in pooled]) for k in keys}
        agg["n_images"] = torch.full((len(result.layers),), float(result.n_images), dtype=torch.float64)
    for k in ("n_channels", "n_dead"):
        agg[k] = per_image[k].sum(0)
    return SROPStatistics(layers=list(result.layers), strides=[result.strides[n] for n in result.layers],
                          quantiles=quantiles, per_image=per_image, aggregated=agg, histogram=hist,
                          edges=edges, aggregate=aggregate, indices=result.indices)


# --------------------------------------------------------------------------- tables and correlation


_SUMMARY_STATS = ("mean", "median", "std", *(quantile_name(q) for q in DEFAULT_QUANTILES), "mean_input",
                  "median_input")


def summarize_image_rows(rows: Sequence[Mapping[str, Any]], *, by: Sequence[str] = ("layer",),
                         stats: Sequence[str] | None = None, carry: Sequence[str] = ("depth", "stride"),
                         decimals: int | None = 6) -> list[dict[str, Any]]:
    """Average per-image rows (:meth:`SROPStatistics.image_rows`) over images, per group of ``by``.

    The table form of ``srop_statistics(aggregate="images")``: each statistic is averaged over the
    images where it is defined (an image whose channels are all dead has none); ``n_images`` counts
    those images; ``n_channels`` and ``n_dead`` are summed. Groups keep their first-seen order; the
    ``carry`` columns (constant within a group) are copied from the group's first row when present.
    """
    stats = [s for s in (stats or _SUMMARY_STATS) if rows and s in rows[0]]
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    out = []
    for key, rs in groups.items():
        row: dict[str, Any] = dict(zip(by, key))
        for k in carry:
            if k in rs[0] and k not in row:
                row[k] = rs[0][k]
        means = torch.tensor([[float(r[s]) for s in stats] for r in rs], dtype=torch.float64)
        row["n_images"] = int((~torch.isnan(means[:, 0])).sum()) if stats else len(rs)
        row["n_channels"] = int(sum(int(r.get("n_channels", 0)) for r in rs))
        row["n_dead"] = int(sum(int(r.get("n_dead", 0)) for r in rs))
        avg = _rounded(torch.nanmean(means, dim=0), decimals) if stats else []
        row.update(dict(zip(stats, avg)))
        out.append(row)
    return out


def correlation(x: Sequence[float] | Tensor, y: Sequence[float] | Tensor) -> dict[str, float]:
    """Pearson and Spearman correlation of two equally long series (NaN pairs dropped).

    Returns ``{"pearson", "spearman", "n"}``; a correlation is NaN with fewer than 3 pairs or a
    constant series.
    """
    xt = torch.as_tensor(x, dtype=torch.float64).flatten()
    yt = torch.as_tensor(y, dtype=torch.float64).flatten()
    if xt.numel() != yt.numel():
        raise ValueError(f"x and y must have the same length, got {xt.numel()} and {yt.numel()}")
    ok = ~(torch.isnan(xt) | torch.isnan(yt))
    xt, yt = xt[ok], yt[ok]
    n = int(xt.numel())
    if n < 3:
        return {"pearson": float("nan"), "spearman": float("nan"), "n": n}
    return {"pearson": float(rowwise_correlation(xt[None], yt[None], method="pearson")[0]),
            "spearman": float(rowwise_correlation(xt[None], yt[None], method="spearman")[0]), "n": n}
