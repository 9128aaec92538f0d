"""FORGrad (Muzellec et al., arXiv 2307.09591, "Saliency strikes back", Eq. 2; Xplique
``commons.forgrad``): average the map over colour channels, take the absolute value, low-pass filter
it with an ideal circular mask of radius ``sigma`` frequency steps around DC
(:func:`infolens.spectral.lowpass_filter`), invert, take the absolute value. Unlike Xplique, exact sizes
are kept for odd and non-square maps (no bicubic resize), and the cut-off may also be given as a
fraction of Nyquist (``unit="nyquist"``) or as the width of a Gaussian window.

Also: spectra of attribution maps and the per-model, per-method cut-off search.
"""


from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .._checks import check_images
from ..spectral import RadialProfile, frequency_radius, lowpass_filter, power_spectrum, radial_profile
from ._base import Attribution, to_map

__all__ = ["FORGrad", "forgrad", "attribution_spectrum", "high_frequency_share", "default_cutoffs", "max_cutoff", "CutoffSelection",
           "select_cutoff"]


# --------------------------------------------------------------------------- FORGrad


def max_cutoff(h: int, w: int, unit: Literal["steps", "nyquist"] = "steps") -> float:
    """The smallest cut-off that keeps every frequency bin of an ``h x w`` map (the filter is then the
    identity): the corner radius ``sqrt((h//2)^2 + (w//2)^2)`` steps, or ``sqrt(2)`` of Nyquist."""
    return math.hypot(h // 2, w // 2) if unit == "steps" else math.sqrt(2.0)


def forgrad(attributions: Tensor, cutoff: float = 15.0, *, unit: Literal["steps", "nyquist"] = "steps",
            window: Literal["ideal", "gaussian"] = "ideal") -> Tensor:
    """FORGrad filtering (arXiv 2307.09591, Eq. 2, as Xplique's ``commons.forgrad``): channel mean,
    ``|.|``, low-pass (:func:`infolens.spectral.lowpass_filter`), ``|.|``. Returns ``(N, 1, H, W)``.

    ``cutoff`` : the radius kept, in frequency steps (``unit="steps"``; the paper's default 15 is for
    224 x 224 maps) or as a fraction of Nyquist (``unit="nyquist"``, which transfers across sizes);
    ``math.inf`` (or ``None``) skips the filter (only mean and ``|.|``). ``window="gaussian"`` uses the
    Gaussian ``exp(-r^2 / 2 cutoff^2)`` instead of the ideal disc.
    """
    maps = to_map(attributions).abs()
    if cutoff is None or math.isinf(float(cutoff)):
        return maps[:, None]
    if not float(cutoff) > 0:
        raise ValueError(f"cutoff must be positive (or inf for no filtering), got {cutoff}")
    return lowpass_filter(maps, float(cutoff), unit=unit, window=window).abs()[:, None]


class FORGrad(Attribution):
    """Any attribution method followed by :func:`forgrad` filtering (``FORGrad(Saliency(model), 4)``)."""

    def __init__(self, method: Attribution, cutoff: float = 15.0, *, unit: Literal["steps", "nyquist"] = "steps",
                 window: Literal["ideal", "gaussian"] = "ideal") -> None:
        if not isinstance(method, Attribution):
            raise TypeError(f"method must be an Attribution, got {type(method).__name__}")
        self.method, self.cutoff, self.unit, self.window = method, cutoff, unit, window
        self.model, self.batch_size = method.model, method.batch_size
        self.kind, self.name = method.kind, f"{method.name}+forgrad"

    def attribute(self, inputs: Tensor, target: Any = None, *, indices: Any = None) -> Tensor:
        maps = self.method.attribute(inputs, target, indices=indices)
        return forgrad(maps, self.cutoff, unit=self.unit, window=self.window)

    __call__ = attribute


def attribution_spectrum(attributions: Tensor, *, normalize: bool = True, n_bins: int | None = None,
                         max_radius: float = 1.0) -> RadialProfile:
    """Radially averaged power spectrum of each map (channel mean), via
    :func:`infolens.spectral.radial_profile`; ``values`` is ``(N, n_bins)``, frequencies as fractions of
    Nyquist. With ``normalize`` each map's profile is divided by its sum, so maps of different scales
    (gradients vs output differences) compare by where their power lies."""
    maps = to_map(attributions).to(torch.float64)
    prof = radial_profile(maps, q=2.0, n_bins=n_bins, max_radius=max_radius)
    vals = prof.values
    if normalize:
        vals = vals / vals.sum(-1, keepdim=True).clamp(min=1e-300)
    return RadialProfile(values=vals.to(attributions.dtype), frequencies=prof.frequencies.to(attributions.dtype),
                         edges=prof.edges.to(attributions.dtype))


def high_frequency_share(attributions: Tensor, *, above: float = 0.5, absolute: bool = True) -> Tensor:
    """Share of each map's power at radial frequencies above ``above`` x Nyquist (default half Nyquist,
    ``docs/claims.md`` F1 and F5), ``(N,)``.

    The map is the channel mean, made non-negative with ``|.|`` when ``absolute`` (the map FORGrad
    filters); its mean is removed first, so the DC term (the map's overall level) does not count and the
    share describes how the map's variation is spread over frequencies. A constant map gives 0."""
    maps = to_map(attributions).to(torch.float64)
    if absolute:
        maps = maps.abs()
    maps = maps - maps.mean((-2, -1), keepdim=True)
    power = power_spectrum(maps)
    rho = frequency_radius(*maps.shape[-2:], device=maps.device, dtype=torch.float64)
    total = power.sum((-2, -1))
    high = (power * (rho > above)).sum((-2, -1))
    return torch.where(total > 0, high / total.clamp(min=1e-300), torch.zeros_like(total)).to(attributions.dtype)


# --------------------------------------------------------------------------- cut-off selection


def default_cutoffs(h: int, w: int, *, n: int = 8, unit: Literal["steps", "nyquist"] = "steps") -> list[float]:
    """A log-spaced grid of cut-offs from 1 frequency step to the identity (:func:`max_cutoff`); in steps
    the values are whole numbers (duplicates dropped), in Nyquist units ``1/min(h//2, w//2)`` to ``sqrt 2``."""
    top = max_cutoff(h, w, unit)
    low = 1.0 if unit == "steps" else 1.0 / max(1, min(h // 2, w // 2))
    grid = np.geomspace(low, top, n)
    if unit == "steps":
        vals = sorted({float(round(v)) for v in grid[:-1]} | {round(float(top), 4)})
    else:
        vals = sorted({round(float(v), 4) for v in grid})
    return [v for v in vals if v > 0]


@dataclass
class CutoffSelection:
    """Result of :func:`select_cutoff`: the whole curve and the best cut-off.

    ``scores[k]`` is the mean selection score at ``cutoffs[k]`` (the sum of each metric's mean, with a
    minus sign for metrics where lower is better); ``per_metric[name][k]`` each metric's mean.
    ``identity`` is the cut-off that keeps every bin (so choosing it means "do not filter").
    """

    cutoffs: list[float]
    scores: list[float]
    per_metric: dict[str, list[float]]
    best: float
    unit: str
    window: str
    identity: float
    n_images: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"cutoff": self.best, "unit": self.unit, "window": self.window, "cutoffs": self.cutoffs,
                "scores": self.scores, "per_metric": self.per_metric, "identity": self.identity,
                "n_images": self.n_images, **self.extra}


def select_cutoff(attributions: Tensor, inputs: Tensor, targets: Tensor, metrics: Any | Sequence[Any], *,
                  cutoffs: Sequence[float] | None = None, unit: Literal["steps", "nyquist"] = "steps",
                  window: Literal["ideal", "gaussian"] = "ideal", indices: Sequence[int] | None = None
                  ) -> CutoffSelection:
    """Choose the FORGrad cut-off for one model and one method (arXiv 2307.09591, Sec. 4: sigma* maximises
    the mean faithfulness on held-out images).

    ``attributions`` are the method's maps on held-out ``inputs`` (never the images results are reported
    on). Each cut-off of the grid (default :func:`default_cutoffs`, log-spaced, ending with the identity)
    filters them and is scored by ``metrics`` (a :mod:`infolens.attribution.metrics` metric or a list; the score
    is the sum of their means, negated for lower-is-better ones: the default pair Insertion + Deletion
    gives Insertion - Deletion, our reading of the paper's combined score). Returns the whole curve.
    """
    inputs = check_images(inputs, name="inputs")
    h, w = inputs.shape[-2:]
    grid = list(cutoffs) if cutoffs is not None else default_cutoffs(h, w, unit=unit)
    if not grid:
        raise ValueError("cutoffs is empty; give at least one cut-off")
    mets = list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]
    per: dict[str, list[float]] = {getattr(m, "name", type(m).__name__.lower()): [] for m in mets}
    maps = [forgrad(attributions, c, unit=unit, window=window) for c in grid]
    scores = [0.0] * len(grid)
    for m, key in zip(mets, per):
        # every cut-off's maps in shared batches (metrics without score_many are called per map)
        res = m.score_many(inputs, targets, maps, indices=indices) if hasattr(m, "score_many") else \
            [m(inputs, targets, f, indices=indices) for f in maps]
        sign = 1.0 if getattr(m, "higher_is_better", True) else -1.0
        for k, r in enumerate(res):
            per[key].append(float(r.mean))
            scores[k] += sign * float(r.mean)
    best = grid[int(np.nanargmax(scores))]
    return CutoffSelection(cutoffs=[float(c) for c in grid], scores=scores, per_metric=per, best=float(best),
                           unit=unit, window=window, identity=max_cutoff(h, w, unit), n_images=inputs.shape[0])
