"""Faithfulness metrics of attribution maps: Deletion, Insertion, MuFidelity; batched, on any device.

Definitions are Xplique's (``xplique.metrics.fidelity``), the ones FORGrad (arXiv 2307.09591) reports:

* **Deletion** (Petsiuk et al. 2018, RISE paper Sec. 4.1): pixels ranked by the signed channel mean of
  the map, most important first (no absolute value); at step ``k`` of ``n_steps`` the first
  ``floor(k * n / n_steps)`` pixels (all channels) are set to the baseline; the score is the model's
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
batch composition. Several maps of one image that rank its pixels identically share their Deletion /
Insertion passes, and ``score_many_by`` reads several scores (softmax and logit) from the same passes.
Forward-only passes run in inference mode with channels-last inputs (on the CPU 1.5-3x faster for
convolutional networks; the outputs agree to float32 rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .._stats import rowwise_correlation
from .._method import MethodResult, freeze, method_call
from ._base import Score, model_scores, to_map
from .._torch import image_generators

__all__ = ["FaithfulnessResult", "Metric", "Deletion", "Insertion", "MuFidelity", "METRICS", "make_metric"]


@dataclass
class FaithfulnessResult(MethodResult):
    """What a metric returns for one set of maps.

    Attributes
    ----------
    name : str
        The metric (``deletion``, ``insertion``, ``mufidelity``).
    scores : torch.Tensor, shape (N,)
        Per-image scores.
    curves : torch.Tensor, shape (N, n_steps + 1), or None
        The target's score after each step (Deletion, Insertion); ``None`` for MuFidelity.
    mean : float
        The mean score.
    higher_is_better : bool
        The metric's direction.
    indices : list of int or None
        The images' global indices (``index`` in :meth:`to_rows`; ``None``: ``0..N-1``).

    Examples
    --------
    >>> import torch
    >>> r = FaithfulnessResult("deletion", torch.tensor([0.25, 0.5]), None, 0.375, False, [7, 9])
    >>> [(row["index"], row["score"]) for row in r.to_rows()]
    [(7, 0.25), (9, 0.5)]
    """

    name: str
    scores: Tensor
    curves: Tensor | None
    mean: float
    higher_is_better: bool
    indices: list[int] | None = None

    def to_rows(self, *, indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """One row per image: ``index`` (global: ``indices``, else the call's, else 0..N-1), ``metric``,
        ``score``, ``higher_is_better``, and for Deletion/Insertion the curve as ``step_0 .. step_S``
        (the target's score after each step)."""
        n = int(self.scores.shape[0])
        indices = self.indices if indices is None else indices
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
    """    Base of every faithfulness metric: built with the model and the metric's parameters, called on
    ``(inputs, target, attributions, *, indices=None)`` through the methods' entry (checked inputs, the
    target filled with the prediction, the model frozen), returning a :class:`FaithfulnessResult` of
    per-image scores. ``score_many(inputs, target, [maps, ...], indices=...)`` scores several maps of the
    same images, sharing the work that does not depend on the maps. Subclasses set ``name`` and
    ``higher_is_better`` and implement both.

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``.
    baseline : float
        The value of removed pixels (0, Xplique's), in the units of the images passed in.
    score : {"softmax", "logit", "log_softmax"}
        The target's softmax probability (default, see the module docstring), its logit or log-softmax.
    batch_size : int >= 1
        Perturbed images per forward pass (the only memory knob).

    Examples
    --------
    >>> import torch
    >>> class MeanScore(Metric):
    ...     name = "mean_score"
    ...     def __call__(self, inputs, target, attributions, *, indices=None):
    ...         with self._call(inputs, target, indices) as c:
    ...             s = self._scores(c.inputs, c.target)
    ...         return FaithfulnessResult(self.name, s, None, float(s.mean()), True, c.indices)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> MeanScore(net)(torch.rand(3, 1, 4, 4), 0, None).scores.shape
    torch.Size([3])
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
        return self._scores_by(x, t, (self.score,))[0]

    def _scores_by(self, x: Tensor, t: Tensor, scores: Sequence[str]) -> Tensor:
        """``(len(scores), B)``: each requested score of the target from ONE forward pass of ``x`` (B, C, H, W).
        Forward-only: run in inference mode with a channels-last input (on the CPU 1.5-3x faster for
        convolutional networks; outputs equal to float32 rounding); the result is an ordinary tensor."""
        self.forward_passes += x.shape[0]
        with torch.inference_mode():
            xin = x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
            out = self.model(xin)
            out = out[0] if isinstance(out, (tuple, list)) else out
            res = torch.stack([model_scores(out, t, s) for s in scores])
        return res.clone()

    @staticmethod
    def _check_scores(scores: Sequence[str]) -> tuple[str, ...]:
        scores = tuple(scores)
        for sc in scores:
            if sc not in ("logit", "softmax", "log_softmax"):
                raise ValueError(f"scores must hold 'logit', 'softmax' or 'log_softmax', got {sc!r}")
        return scores

    def _call(self, inputs: Tensor, target: Any, indices: Sequence[int] | None) -> Any:
        """The shared entry (:func:`infolens._method.method_call`): checked inputs, the target filled
        with the prediction, the model frozen for the block and restored exactly afterwards."""
        return method_call(self.model, inputs, target, indices, batch_size=self.batch_size)

    @staticmethod
    def _maps(inputs: Tensor, attributions: Any) -> Tensor:
        """One ``(N, H, W)`` map per image in the inputs' dtype, or a clear error."""
        n = inputs.shape[0]
        maps = to_map(attributions).to(inputs.device, inputs.dtype)
        if maps.shape[0] != n or maps.shape[-2:] != inputs.shape[-2:]:
            raise ValueError(f"attributions must hold one {tuple(inputs.shape[-2:])} map per image ({n}), "
                             f"got shape {tuple(attributions.shape)}")
        if not bool(torch.isfinite(maps).all()):
            raise ValueError("attributions contain non-finite values (NaN or inf); clean the maps first")
        return maps

    def __call__(self, inputs: Tensor, target: Any, attributions: Any, *,
                 indices: Sequence[int] | None = None) -> FaithfulnessResult:
        """The metric's per-image scores for one map per image.

        Parameters
        ----------
        inputs : torch.Tensor, shape (N, C, H, W)
            Floating images in the model's dtype.
        target : int, sequence of N ints, LongTensor (N,) or None
            The class scored per image; ``None``: the predicted class.
        attributions : torch.Tensor, shape (N, C, H, W) or (N, H, W), or AttributionResult
            The maps (channel mean, signed).
        indices : sequence of N ints or None
            Global image indices (``index`` of the rows; they seed MuFidelity's masks), default ``0..N-1``.

        Returns
        -------
        FaithfulnessResult
            ``scores`` (N,): Deletion / Insertion the trapezoid areas with ``curves`` (N, n_steps + 1);
            MuFidelity the correlations in ``[-1, 1]`` with ``curves`` None.
        """
        return self.score_many(inputs, target, [attributions], indices=indices)[0]

    def score_many(self, inputs: Tensor, target: Any, attributions: Sequence[Any], *,
                   indices: Sequence[int] | None = None) -> list[FaithfulnessResult]:
        """Score several maps of the same images (methods, filtered variants, cut-offs) at once, sharing the
        passes that do not depend on the map (Deletion / Insertion: the curves' end points, and one set of
        passes per distinct pixel ranking; MuFidelity: every masked pass). Equal to calling the metric on
        each map."""
        return self.score_many_by(inputs, target, attributions, scores=(self.score,), indices=indices)[self.score]

    def score_many_by(self, inputs: Tensor, target: Any, attributions: Sequence[Any], *,
                      scores: Sequence[Score] = ("softmax", "logit"), indices: Sequence[int] | None = None
                      ) -> dict[str, list[FaithfulnessResult]]:
        """:meth:`score_many` under several scores at once (``score -> results``): each perturbed input
        goes through the model once and every score is read from the same output (a sensitivity
        analysis of the score costs no extra pass)."""
        if isinstance(attributions, Tensor):
            raise TypeError("attributions must be a sequence of (N, [C,] H, W) maps; call the metric for one map")
        scores = self._check_scores(scores)
        if not len(attributions):
            return {sc: [] for sc in scores}
        with self._call(inputs, target, indices) as c:
            return self._score_many(c.inputs, c.target, c.indices, attributions, scores)

    def _score_many(self, inputs: Tensor, t: Tensor, idx: list[int], attributions: Sequence[Any],
                    scores: tuple[str, ...]) -> dict[str, list[FaithfulnessResult]]:  # pragma: no cover
        raise NotImplementedError

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

    def __init__(self, model: nn.Module, *, n_steps: int = 10, baseline: float = 0.0, score: Score = "softmax",
                 max_fraction: float = 1.0, batch_size: int = 256) -> None:
        super().__init__(model, baseline=baseline, score=score, batch_size=batch_size)
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        if not 0 < max_fraction <= 1:
            raise ValueError(f"max_fraction must lie in (0, 1], got {max_fraction}")
        self.n_steps, self.max_fraction = n_steps, float(max_fraction)

    def counts(self, n_pixels: int) -> Tensor:
        """Pixels perturbed at each step: ``floor(k * n_max / n_steps)``, as Xplique's integer ``linspace``."""
        n_max = int(n_pixels * self.max_fraction)
        return torch.arange(self.n_steps + 1) * n_max // self.n_steps

    def _score_many(self, inputs: Tensor, t: Tensor, idx: list[int], attributions: Sequence[Any],
                    scores: tuple[str, ...]) -> dict[str, list[FaithfulnessResult]]:
        n_sc = len(scores)
        maps = torch.stack([self._maps(inputs, a) for a in attributions])  # (M, N, H, W)
        m_maps, n = maps.shape[:2]
        h, w = inputs.shape[-2:]
        dev = inputs.device
        counts = self.counts(h * w).to(dev)
        order = torch.argsort(maps.flatten(2), dim=2, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(2, order, torch.arange(h * w, device=dev).expand_as(order))
        rank = rank.view(m_maps * n, h * w)
        # rows r = map * n + image; rows of one image with the same ranking have the same curve: pass only
        # the first of each (``first[r]`` is the row whose curve row ``r`` copies)
        key = torch.cat([(torch.arange(m_maps * n, device=dev) % n)[:, None], rank], 1)
        _, inv = torch.unique(key, dim=0, return_inverse=True)
        first = torch.full((int(inv.max()) + 1,), m_maps * n, device=dev, dtype=torch.long)
        first.scatter_reduce_(0, inv, torch.arange(m_maps * n, device=dev), reduce="amin")
        first = first[inv]
        uniq = torch.nonzero(first == torch.arange(m_maps * n, device=dev)).flatten()
        rank = rank.view(m_maps * n, 1, h, w)
        base = torch.full_like(inputs[:1], self.baseline)
        curves = torch.empty(n_sc, m_maps * n, self.n_steps + 1, device=dev, dtype=inputs.dtype)
        # steps whose input does not depend on the ranking: none perturbed, and all perturbed
        fixed = [k for k in (0, self.n_steps) if int(counts[k]) in (0, h * w)]

        def endpoints() -> dict[int, Tensor]:
            orig = torch.cat([self._scores_by(inputs[s:s + self.batch_size], t[s:s + self.batch_size], scores)
                              for s in range(0, n, self.batch_size)], 1)
            # the baseline image is the same for every image: one pass, its output read at each target
            self.forward_passes += 1
            with torch.inference_mode():
                out = self.model(base)
                out = out[0] if isinstance(out, (tuple, list)) else out
                blank = torch.stack([model_scores(out.expand(n, -1), t, sc) for sc in scores])
            return {0: orig, h * w: blank.clone()}

        ends = self._cached(("ends", scores, self.baseline, t.tolist()), inputs, endpoints)
        for k in fixed:
            none_perturbed = int(counts[k]) == 0
            curves[:, :, k] = (ends[0] if none_perturbed == (self.mode == "deletion") else ends[h * w]).repeat(1, m_maps)
        todo = [k for k in range(self.n_steps + 1) if k not in fixed]
        # every (unique row, step) pair is one model input
        pairs_r = uniq.repeat_interleave(len(todo))
        pairs_k = torch.tensor(todo, device=dev, dtype=torch.long).repeat(uniq.numel())
        t_rows = t.repeat(m_maps)
        with torch.no_grad():
            for s in range(0, pairs_r.numel(), self.batch_size):
                rr, kk = pairs_r[s:s + self.batch_size], pairs_k[s:s + self.batch_size]
                ii = rr % n
                gone = rank[rr] < counts[kk].view(-1, 1, 1, 1)  # pixels at the "end" state
                x = torch.where(gone, base, inputs[ii]) if self.mode == "deletion" else \
                    torch.where(gone, inputs[ii], base)
                curves[:, rr, kk] = self._scores_by(x, t_rows[rr], scores).to(curves.dtype)
        if todo:
            curves[:, :, todo] = curves[:, first][:, :, todo]
        curves = curves.view(n_sc, m_maps, n, self.n_steps + 1)
        areas = ((curves[..., :-1] + curves[..., 1:]) / 2).mean(-1)
        return {sc: [FaithfulnessResult(self.name, areas[q, j], curves[q, j], float(areas[q, j].mean()),
                                        self.higher_is_better, list(idx)) for j in range(m_maps)]
                for q, sc in enumerate(scores)}


class Deletion(_Causal):
    """    Deletion (Petsiuk et al. 2018, Sec. 4.1; Xplique's ``Deletion``): pixels ranked by the map, most
    important first, removed in ``n_steps`` steps; the score is the area under the target's score curve,
    ``mean_k (s_k + s_(k+1)) / 2``. Lower is better.

    Parameters
    ----------
    model : nn.Module or callable
        The classifier; frozen during the call.
    n_steps : int >= 1
        Steps of the curve (10, Xplique's).
    baseline : float
        The removed pixels' value (0, Xplique's).
    score : {"softmax", "logit", "log_softmax"}
        The target's softmax probability (RISE's definition, default).
    max_fraction : float in (0, 1]
        Share of the pixels removed at the last step (1).
    batch_size : int >= 1
        Perturbed images per forward pass.

    References
    ----------
    .. [1] V. Petsiuk, A. Das, K. Saenko, "RISE: randomized input sampling for explanation of black-box
       models", BMVC 2018, arXiv 1806.07421.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x, maps = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    >>> res = Deletion(net, n_steps=4)(x, 3, maps, indices=[0, 1])
    >>> tuple(res.curves.shape), res.higher_is_better
    ((2, 5), False)
    """

    name, mode, higher_is_better = "deletion", "deletion", False


class Insertion(_Causal):
    """    Insertion (Petsiuk et al. 2018, Sec. 4.1; Xplique's ``Insertion``): the same ranking as
    :class:`Deletion`, starting from the baseline image and inserting pixels. Higher is better.

    Parameters
    ----------
    model, n_steps, baseline, score, max_fraction, batch_size
        As :class:`Deletion`.

    References
    ----------
    .. [1] V. Petsiuk, A. Das, K. Saenko, arXiv 1806.07421.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x, maps = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    >>> ins, dele = Insertion(net, n_steps=4), Deletion(net, n_steps=4)
    >>> a, b = ins(x, 3, maps), dele(x, 3, maps)
    >>> torch.allclose(a.curves[:, 0], b.curves[:, -1])  # both start or end at the baseline image
    True
    """

    name, mode, higher_is_better = "insertion", "insertion", True


def _cell_index(h: int, w: int, grid: int, device: torch.device) -> Tensor:
    """Grid cell of each pixel under nearest upsampling with half-pixel centres (TF ``resize``
    'nearest', PyTorch 'nearest-exact'): ``floor((i + 0.5) * grid / size)``."""
    r = ((torch.arange(h, device=device) + 0.5) * grid / h).floor().long().clamp(max=grid - 1)
    c = ((torch.arange(w, device=device) + 0.5) * grid / w).floor().long().clamp(max=grid - 1)
    return (r[:, None] * grid + c[None, :]).flatten()


class MuFidelity(Metric):
    """    MuFidelity (Bhatt et al. 2020, Def. 3; Xplique's ``MuFidelity``): per image, the correlation between
    the drop of the target score when a random subset of a ``grid x grid`` grid is set to the baseline and
    the sum of the attributions over that subset. Higher is better.

    Parameters
    ----------
    model : nn.Module or callable
        The classifier; frozen during the call.
    n_masks : int >= 2
        Random subsets per image (200, Xplique's).
    grid : int >= 1
        Cells per side (9).
    subset_percent : float in (0, 1)
        Probability that a cell is dropped (0.2).
    baseline : float
        The dropped pixels' value (0).
    correlation : {"spearman", "pearson"}
        Spearman (Xplique's) or Pearson.
    score : {"softmax", "logit", "log_softmax"}
        The target's softmax probability (default).
    seed : int
        With the images' global indices, seeds each image's masks.
    batch_size : int >= 1
        Perturbed images per forward pass.

    References
    ----------
    .. [1] U. Bhatt, A. Weller, J. M. F. Moura, "Evaluating and aggregating feature-based model
       explanations", IJCAI 2020, arXiv 2005.00631.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x, maps = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    >>> res = MuFidelity(net, n_masks=16, grid=2)(x, 3, maps, indices=[5, 6])
    >>> bool(((res.scores >= -1) & (res.scores <= 1)).all()), [r["index"] for r in res.to_rows()]
    (True, [5, 6])
    """

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

    def drops(self, inputs: Tensor, target: Tensor, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """``(score(x) - score(x with the subset at the baseline), dropped cells)`` for every mask:
        ``(N, n_masks)`` float64 and ``(N, n_masks, grid * grid)`` booleans (model frozen for the call)."""
        with freeze(self.model):
            out, dropped = self._drops_by(inputs, target, indices, (self.score,))
        return out[0], dropped

    def _drops_by(self, inputs: Tensor, targets: Tensor, indices: Sequence[int], scores: Sequence[str]
                  ) -> tuple[Tensor, Tensor]:
        """The score drops ``(len(scores), N, n_masks)`` float64 (every score from the same passes) and the
        dropped cells ``(N, n_masks, grid * grid)``."""
        n, c, h, w = inputs.shape
        dropped = self.dropped(indices, inputs.device)
        cell = _cell_index(h, w, self.grid, inputs.device)
        out = torch.empty(len(scores), n, self.n_masks, device=inputs.device, dtype=torch.float64)
        pairs_i = torch.arange(n, device=inputs.device).repeat_interleave(self.n_masks)
        pairs_m = torch.arange(self.n_masks, device=inputs.device).repeat(n)
        with torch.no_grad():
            base = torch.cat([self._scores_by(inputs[s:s + self.batch_size], targets[s:s + self.batch_size], scores)
                              for s in range(0, n, self.batch_size)], 1)
            for s in range(0, pairs_i.numel(), self.batch_size):
                ii, mm = pairs_i[s:s + self.batch_size], pairs_m[s:s + self.batch_size]
                gone = dropped[ii, mm][:, cell].view(-1, 1, h, w)
                x = torch.where(gone, torch.full_like(inputs[:1], self.baseline), inputs[ii])
                out[:, ii, mm] = (base[:, ii] - self._scores_by(x, targets[ii], scores)).to(torch.float64)
        return out, dropped

    def _score_many(self, inputs: Tensor, t: Tensor, idx: list[int], attributions: Sequence[Any],
                    scores: tuple[str, ...]) -> dict[str, list[FaithfulnessResult]]:
        maps = torch.stack([self._maps(inputs, a) for a in attributions])  # (M, N, H, W)
        m_maps = maps.shape[0]
        n, c, h, w = inputs.shape
        key = ("drops", scores, self.baseline, self.seed, self.n_masks, self.grid, self.subset_percent,
               t.tolist(), tuple(idx))
        drops, dropped = self._cached(key, inputs, lambda: self._drops_by(inputs, t, idx, scores))
        cell = _cell_index(h, w, self.grid, inputs.device)
        pooled = torch.zeros(m_maps, n, self.grid * self.grid, device=inputs.device, dtype=torch.float64)
        pooled.index_add_(2, cell, maps.flatten(2).to(torch.float64))
        attr = torch.einsum("anc,nmc->anm", pooled, dropped.to(torch.float64))  # (M, N, n_masks)
        out: dict[str, list[FaithfulnessResult]] = {}
        for q, sc in enumerate(scores):
            corr = rowwise_correlation(drops[q].expand(m_maps, -1, -1).reshape(m_maps * n, -1),
                                       attr.reshape(m_maps * n, -1), method=self.correlation)
            vals = torch.nan_to_num(corr, nan=0.0).to(inputs.dtype).view(m_maps, n)
            out[sc] = [FaithfulnessResult(self.name, vals[j], None, float(vals[j].mean()), self.higher_is_better,
                                          list(idx)) for j in range(m_maps)]
        return out


METRICS: dict[str, type[Metric]] = {"deletion": Deletion, "insertion": Insertion, "mufidelity": MuFidelity}


def make_metric(name: str, model: nn.Module, **kwargs: Any) -> Metric:
    """Build a metric by name (``deletion``, ``insertion``, ``mufidelity``)."""
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in METRICS:
        raise ValueError(f"unknown faithfulness metric {name!r} (known: {', '.join(METRICS)})")
    return METRICS[key](model, **kwargs)
