"""Faithfulness metrics of attribution maps: Deletion, Insertion, MuFidelity; batched, on any device.

Definitions are Xplique's (``xplique.metrics.fidelity``), the ones FORGrad (arXiv 2307.09591) reports:

* **Deletion** (Petsiuk et al. 2018, RISE paper Sec. 4.1): pixels ranked by the signed channel mean of
  the map, most important first (no absolute value); at step ``k`` of ``steps`` the first
  ``floor(k * n / steps)`` pixels (all channels) are set to the baseline; the score is the model's
  target output; the area is the trapezoid mean
  ``mean_k (s_k + s_{k+1}) / 2``. Lower is better.
* **Insertion**: the same ranking, starting from the baseline image and inserting pixels. Higher is better.
* **MuFidelity** (Bhatt et al. 2020, Def. 3): ``n_masks`` random subsets of a ``grid x grid`` grid (each
  cell dropped with probability ``subset_percent``; nearest upsampling as TF's half-pixel resize) are set
  to the baseline; per image, the correlation (Spearman by default, as Xplique; Pearson, as before 2021,
  on request) between the drop of the target score and the sum of the attributions over the dropped
  pixels. A constant series gives 0, as in Xplique. Higher is better.

**Score** (every metric): the softmax probability of the target class by default (``score="softmax"``), as
the RISE paper defines Deletion and Insertion ("the drop in the probability of a class", Petsiuk et al.
2018, Sec. 4.1, quoted by Xplique's metric documentation) and as FORGrad's reported scores (between 0 and
1, arXiv 2307.09591 Fig. 1) imply; Xplique itself scores whatever the model outputs. ``score="logit"``
takes the raw target logit. **Baseline**: the value removed pixels take, default 0 (Xplique's
``baseline_mode=0.0``), in the units of the images passed in (for a model with built-in normalisation
that takes [0, 1] pixels, 0 is black; the FORGrad runner passes the value that the model's normalisation
maps to 0, as Xplique's 0 on preprocessed inputs).

Public extension point: subclass :class:`Metric`.

Unlike Xplique and Quantus, which loop over steps / samples on the host, every perturbed input of many
images is built on the device and goes through the model in batches of ``batch_size`` (the only memory
knob: at most ``batch_size`` perturbed images exist at a time). Scores are per image; the curves come
with them. Work that does not depend on the attributions is cached for repeated calls on the same inputs
(the start and end points of the Deletion/Insertion curves; MuFidelity's score drops, which are the
whole forward cost of the metric), so scoring many maps of the same images costs only their own passes.
MuFidelity's masks are seeded per image (``indices`` = global image indices), so numbers never depend on
batch composition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

import functools

from .._checks import check_images, check_targets, frozen_model


def _keeps_model(fn: Any) -> Any:
    """Run a metric's verb with its model frozen in eval mode, and give the model back exactly as it
    was passed (modes, ``requires_grad`` flags, buffers: :func:`infolens._torch.frozen`)."""
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with frozen_model(self.model):
            return fn(self, *args, **kwargs)
    return wrapper
from .._stats import rowwise_correlation
from ._base import Score, _indices, model_scores, to_map
from .._torch import image_generators

__all__ = ["FaithfulnessResult", "Metric", "Deletion", "Insertion", "MuFidelity", "METRICS", "make_metric"]


@dataclass
class FaithfulnessResult:
    """Per-image ``scores`` (N,), the curves (N, steps + 1) for Deletion/Insertion (None for MuFidelity),
    and their ``mean``."""

    name: str
    scores: Tensor
    curves: Tensor | None
    mean: float
    higher_is_better: bool

    def to_rows(self, *, indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """One row per image: ``index`` (global, default 0..N-1), ``metric``, ``score``, ``higher_is_better``,
        and for Deletion/Insertion the curve as ``step_0 .. step_S`` (the target's score after each step)."""
        n = int(self.scores.shape[0])
        idx = list(range(n)) if indices is None else [int(i) for i in indices]
        if len(idx) != n:
            raise ValueError(f"indices must hold one index per image ({n}), got {len(idx)}")
        scores = self.scores.detach().double().cpu().tolist()
        curves = self.curves.detach().double().cpu().tolist() if self.curves is not None else None
        rows = []
        for j, i in enumerate(idx):
            row: dict[str, Any] = {"index": i, "metric": self.name, "score": scores[j],
                                   "higher_is_better": self.higher_is_better}
            if curves is not None:
                row.update({f"step_{k}": v for k, v in enumerate(curves[j])})
            rows.append(row)
        return rows


class Metric:
    """Base of every faithfulness metric: built with the model and the metric's parameters, called on
    ``(inputs, targets, attributions)``, returning a :class:`FaithfulnessResult` of per-image scores.
    Subclasses set ``name`` and ``higher_is_better`` and implement ``__call__`` (and may implement
    ``score_many`` to share work across several maps of the same images).

    ``score``: ``"softmax"`` (default, see the module docstring), ``"logit"`` or ``"log_softmax"``;
    ``baseline``: the value of removed pixels (default 0, Xplique's).
    """

    name = ""
    higher_is_better = True

    def __init__(self, model: nn.Module, *, baseline: float = 0.0, score: Score = "softmax",
                 batch_size: int = 256) -> None:
        if not callable(model):
            raise TypeError(f"model must be an nn.Module or callable, got {type(model).__name__}")
        if score not in ("logit", "softmax", "log_softmax"):
            raise ValueError(f"score must be 'logit', 'softmax' or 'log_softmax', got {score!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model, self.baseline, self.score, self.batch_size = model, float(baseline), score, batch_size
        self._cache: tuple | None = None
        self.forward_passes = 0  # model inputs evaluated so far (for benchmarks)

    def _scores(self, x: Tensor, t: Tensor) -> Tensor:
        self.forward_passes += x.shape[0]
        return model_scores(self.model(x), t, self.score)

    def _prepare(self, inputs: Tensor, targets: Any, attributions: Tensor | None
                 ) -> tuple[Tensor, Tensor, Tensor | None]:
        inputs = check_images(inputs, name="inputs", model=self.model)
        n = inputs.shape[0]
        t = check_targets(targets, n, name="targets")
        if t is None:
            with torch.no_grad():
                t = torch.cat([self.model(inputs[s:s + self.batch_size]).argmax(1)
                               for s in range(0, n, self.batch_size)])
        t = t.to(inputs.device)
        maps = None
        if attributions is not None:
            maps = to_map(attributions).to(inputs.device, inputs.dtype)
            if maps.shape[0] != n or maps.shape[-2:] != inputs.shape[-2:]:
                raise ValueError(f"attributions must hold one {tuple(inputs.shape[-2:])} map per image ({n}), "
                                 f"got shape {tuple(attributions.shape)}")
            if not bool(torch.isfinite(maps).all()):
                raise ValueError("attributions contain non-finite values (NaN or inf)")
        return inputs, t, maps

    def _cached(self, key: tuple, inputs: Tensor, compute: Any) -> Any:
        """Reuse what was computed for the very same inputs tensor (same object, unmodified) and key."""
        c = self._cache
        if c is not None and c[0] is inputs and c[1] == inputs._version and c[2] == key:
            return c[3]
        value = compute()
        self._cache = (inputs, inputs._version, key, value)
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(score={self.score!r}, baseline={self.baseline})"


class _Causal(Metric):
    mode = "deletion"

    def __init__(self, model: nn.Module, *, steps: int = 10, baseline: float = 0.0, score: Score = "softmax",
                 max_fraction: float = 1.0, batch_size: int = 256) -> None:
        super().__init__(model, baseline=baseline, score=score, batch_size=batch_size)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if not 0 < max_fraction <= 1:
            raise ValueError(f"max_fraction must lie in (0, 1], got {max_fraction}")
        self.steps, self.max_fraction = steps, float(max_fraction)

    def counts(self, n_pixels: int) -> Tensor:
        """Pixels perturbed at each step: ``floor(k * n_max / steps)``, as Xplique's integer ``linspace``."""
        n_max = int(n_pixels * self.max_fraction)
        return torch.arange(self.steps + 1) * n_max // self.steps

    def __call__(self, inputs: Tensor, targets: Any, attributions: Tensor, *,
                 indices: Sequence[int] | None = None) -> FaithfulnessResult:
        """Curves and areas for ``inputs`` (N, C, H, W), ``targets`` (N,) and maps (N, [C,] H, W)."""
        return self.score_many(inputs, targets, [attributions], indices=indices)[0]

    @_keeps_model
    def score_many(self, inputs: Tensor, targets: Any, attributions: Sequence[Tensor], *,
                   indices: Sequence[int] | None = None) -> list[FaithfulnessResult]:
        """Score several maps of the same images (methods, filtered variants, cut-offs) at once: every
        (map, image, step) input goes through the model in shared batches of ``batch_size``; the
        curves' end points, which do not depend on the map, are computed once. Equal to calling the
        metric on each map."""
        if isinstance(attributions, Tensor):
            raise TypeError("attributions must be a sequence of (N, [C,] H, W) maps; call the metric for one map")
        if not len(attributions):
            return []
        inputs, t, first = self._prepare(inputs, targets, attributions[0])
        maps = torch.stack([first] + [self._prepare(inputs, t, a)[2] for a in attributions[1:]])  # (M, N, H, W)
        m_maps, n = maps.shape[:2]
        h, w = inputs.shape[-2:]
        dev = inputs.device
        counts = self.counts(h * w).to(dev)
        order = torch.argsort(maps.flatten(2), dim=2, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(2, order, torch.arange(h * w, device=dev).expand_as(order))
        rank = rank.view(m_maps * n, 1, h, w)
        base = torch.full_like(inputs[:1], self.baseline)
        curves = torch.empty(m_maps * n, self.steps + 1, device=dev, dtype=inputs.dtype)
        # steps whose input does not depend on the ranking: none perturbed, and all perturbed
        fixed = [k for k in (0, self.steps) if int(counts[k]) in (0, h * w)]

        def endpoints() -> dict[int, Tensor]:
            with torch.no_grad():
                orig = torch.cat([self._scores(inputs[s:s + self.batch_size], t[s:s + self.batch_size])
                                  for s in range(0, n, self.batch_size)])
                # the baseline image is the same for every image: one pass, its output read at each target
                self.forward_passes += 1
                out = self.model(base)
                out = out[0] if isinstance(out, (tuple, list)) else out
                blank = model_scores(out.expand(n, -1), t, self.score)
            return {0: orig, h * w: blank}

        ends = self._cached(("ends", self.score, self.baseline, t.tolist()), inputs, endpoints)
        for k in fixed:
            none_perturbed = int(counts[k]) == 0
            curves[:, k] = (ends[0] if none_perturbed == (self.mode == "deletion") else ends[h * w]).repeat(m_maps)
        todo = [k for k in range(self.steps + 1) if k not in fixed]
        # rows r = map * n + image; every (row, step) pair is one model input
        pairs_r = torch.arange(m_maps * n, device=dev).repeat_interleave(len(todo))
        pairs_k = torch.tensor(todo, device=dev, dtype=torch.long).repeat(m_maps * n)
        t_rows = t.repeat(m_maps)
        with torch.no_grad():
            for s in range(0, pairs_r.numel(), self.batch_size):
                rr, kk = pairs_r[s:s + self.batch_size], pairs_k[s:s + self.batch_size]
                ii = rr % n
                gone = rank[rr] < counts[kk].view(-1, 1, 1, 1)  # pixels at the "end" state
                x = torch.where(gone, base, inputs[ii]) if self.mode == "deletion" else \
                    torch.where(gone, inputs[ii], base)
                curves[rr, kk] = self._scores(x, t_rows[rr]).to(curves.dtype)
        curves = curves.view(m_maps, n, self.steps + 1)
        scores = ((curves[..., :-1] + curves[..., 1:]) / 2).mean(-1)
        return [FaithfulnessResult(self.name, scores[j], curves[j], float(scores[j].mean()), self.higher_is_better)
                for j in range(m_maps)]


class Deletion(_Causal):
    """Deletion (see the module docstring); lower is better. Defaults: 10 steps and baseline 0 (Xplique's),
    the softmax probability of the target (RISE's definition)."""

    name, mode, higher_is_better = "deletion", "deletion", False


class Insertion(_Causal):
    """Insertion (see the module docstring); higher is better. Defaults as Xplique."""

    name, mode, higher_is_better = "insertion", "insertion", True


def _cell_index(h: int, w: int, grid: int, device: torch.device) -> Tensor:
    """Grid cell of each pixel under nearest upsampling with half-pixel centres (TF ``resize``
    'nearest', PyTorch 'nearest-exact'): ``floor((i + 0.5) * grid / size)``."""
    r = ((torch.arange(h, device=device) + 0.5) * grid / h).floor().long().clamp(max=grid - 1)
    c = ((torch.arange(w, device=device) + 0.5) * grid / w).floor().long().clamp(max=grid - 1)
    return (r[:, None] * grid + c[None, :]).flatten()


class MuFidelity(Metric):
    """MuFidelity (see the module docstring). Defaults as Xplique: 200 masks, a 9 x 9 grid, each cell
    dropped with probability 0.2, baseline 0, Spearman correlation; the softmax probability of the target
    (as Deletion and Insertion). ``seed`` and the
    images' global ``indices`` seed each image's masks."""

    name, higher_is_better = "mufidelity", True

    def __init__(self, model: nn.Module, *, n_masks: int = 200, grid: int = 9, subset_percent: float = 0.2,
                 baseline: float = 0.0, correlation: Literal["spearman", "pearson"] = "spearman",
                 score: Score = "softmax", seed: int = 0, batch_size: int = 256) -> None:
        super().__init__(model, baseline=baseline, score=score, batch_size=batch_size)
        if isinstance(n_masks, bool) or not isinstance(n_masks, int) or n_masks < 2:
            raise ValueError(f"n_masks must be an integer >= 2, got {n_masks!r}")
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
            raise ValueError(f"grid must be a positive integer, got {grid!r}")
        if not 0 < subset_percent < 1:
            raise ValueError(f"subset_percent must lie in (0, 1), got {subset_percent}")
        if correlation not in ("spearman", "pearson"):
            raise ValueError(f"correlation must be 'spearman' or 'pearson', got {correlation!r}")
        self.n_masks, self.grid, self.subset_percent = n_masks, grid, float(subset_percent)
        self.correlation, self.seed = correlation, int(seed)

    def dropped(self, indices: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        """Which grid cells each mask drops, ``(len(indices), n_masks, grid * grid)`` booleans; image ``i``'s
        masks come from its own seed, ``uniform > subset_percent`` keeps a cell (Xplique)."""
        gens = image_generators(self.seed, indices, salt="mufidelity")
        u = torch.stack([torch.rand(self.n_masks, self.grid * self.grid, generator=g) for g in gens])
        return (u <= self.subset_percent).to(device)

    @_keeps_model
    def drops(self, inputs: Tensor, targets: Tensor, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """``(score(x) - score(x with the subset at the baseline), dropped cells)`` for every mask."""
        n, c, h, w = inputs.shape
        dropped = self.dropped(indices, inputs.device)
        cell = _cell_index(h, w, self.grid, inputs.device)
        out = torch.empty(n, self.n_masks, device=inputs.device, dtype=torch.float64)
        pairs_i = torch.arange(n, device=inputs.device).repeat_interleave(self.n_masks)
        pairs_m = torch.arange(self.n_masks, device=inputs.device).repeat(n)
        with torch.no_grad():
            base = torch.cat([self._scores(inputs[s:s + self.batch_size], targets[s:s + self.batch_size])
                              for s in range(0, n, self.batch_size)])
            for s in range(0, pairs_i.numel(), self.batch_size):
                ii, mm = pairs_i[s:s + self.batch_size], pairs_m[s:s + self.batch_size]
                gone = dropped[ii, mm][:, cell].view(-1, 1, h, w)
                x = torch.where(gone, torch.full_like(inputs[:1], self.baseline), inputs[ii])
                out[ii, mm] = (base[ii] - self._scores(x, targets[ii])).to(torch.float64)
        return out, dropped

    @_keeps_model
    def __call__(self, inputs: Tensor, targets: Any, attributions: Tensor, *,
                 indices: Sequence[int] | None = None) -> FaithfulnessResult:
        inputs, t, maps = self._prepare(inputs, targets, attributions)
        n, c, h, w = inputs.shape
        idx = _indices(indices, n)
        key = ("drops", self.score, self.baseline, self.seed, self.n_masks, self.grid, self.subset_percent,
               t.tolist(), tuple(idx))
        drops, dropped = self._cached(key, inputs, lambda: self.drops(inputs, t, idx))
        cell = _cell_index(h, w, self.grid, inputs.device)
        pooled = torch.zeros(n, self.grid * self.grid, device=inputs.device, dtype=torch.float64)
        pooled.index_add_(1, cell, maps.flatten(1).to(torch.float64))
        attr = torch.einsum("nc,nmc->nm", pooled, dropped.to(torch.float64))
        corr = rowwise_correlation(drops, attr, method=self.correlation)
        scores = torch.nan_to_num(corr, nan=0.0).to(inputs.dtype)
        return FaithfulnessResult(self.name, scores, None, float(scores.mean()), self.higher_is_better)


    @_keeps_model
    def score_many(self, inputs: Tensor, targets: Any, attributions: Sequence[Tensor], *,
                   indices: Sequence[int] | None = None) -> list[FaithfulnessResult]:
        """Several maps of the same images: the score drops (the metric's whole forward cost) are computed
        once and shared."""
        if isinstance(attributions, Tensor):
            raise TypeError("attributions must be a sequence of (N, [C,] H, W) maps; call the metric for one map")
        return [self(inputs, targets, a, indices=indices) for a in attributions]


METRICS: dict[str, type[Metric]] = {"deletion": Deletion, "insertion": Insertion, "mufidelity": MuFidelity}


def make_metric(name: str, model: nn.Module, **kwargs: Any) -> Metric:
    """Build a metric by name (``deletion``, ``insertion``, ``mufidelity``)."""
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in METRICS:
        raise ValueError(f"unknown faithfulness metric {name!r} (known: {', '.join(METRICS)})")
    return METRICS[key](model, **kwargs)
