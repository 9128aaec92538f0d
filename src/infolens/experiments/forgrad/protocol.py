"""FORGrad's protocol (arXiv 2307.09591, Sec. 4) on one ImageNet model: every method's maps on the
photographs, the cut-off curve of every gradient method, the cut-off chosen on held-out photographs,
and per-image scores of every variant. Pure computation: returns per-image tensors; the caller
(:mod:`.claims`) writes tables and decides the claims.

Variants of a gradient-based method's map ``a`` (N, C, H, W):

* ``standard``: the map as Xplique produces it (Saliency: ``max_c |g|``; the others keep their sign and
  channels), scored as Xplique's metrics score it (signed channel mean). F3 compares against it.
* ``signed``: the raw signed channel mean (Saliency's plain gradient).
* ``abs``: ``|channel mean|`` alone (FORGrad's filter with every frequency kept, the last grid point,
  computed once, without a Fourier transform).
* ``forgrad``: ``|channel mean|`` low-passed at the method's own cut-off sigma*, chosen on held-out
  photographs (below).

Cut-off (the paper: sigma* maximises the mean faithfulness on 1,280 held-out validation images, per model
and method): the photographs are split by source photograph into two folds; each fold is scored with
the sigma* that maximises mean Insertion - Deletion on the *other* fold (cross-fitting), so every
photograph is scored with a cut-off chosen on photographs disjoint from it. One cut-off per model (the
sigma* of the mean curve over gradient methods) is computed the same way and reported beside it.

Settings: one protocol on every device, the paper's (:class:`Settings`, :data:`PROTOCOL`); a lowering is
explicit (:meth:`Settings.lowered`) and makes the claims that involve it inconclusive (:data:`DEPENDS`).
Every map is scored by Deletion, Insertion and MuFidelity at every grid cut-off (MuFidelity's masked
passes are shared by all maps of an image, so its whole curve costs no extra pass), under the softmax
(primary) and the logit (sensitivity) read from the same passes.

Gray-box (Grad-CAM, Grad-CAM++) and prediction-based methods (Occlusion, RISE, Sobol, HSIC) are scored
unfiltered;
the sanity references (centred blob, input magnitude, uniform noise) likewise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from ..._torch import frozen
from ...attribution import (REFERENCES, attribute_many, forgrad, high_frequency_share, make_method, make_reference,
                            max_cutoff, method_kind)
from ...attribution.metrics import Deletion, Insertion, MuFidelity

GRADIENT = ("saliency", "gradient_x_input", "integrated_gradients", "smoothgrad", "squaregrad", "vargrad",
            "guided_backprop")
"""The paper's white-box (gradient-based) methods: filtered."""
GRAY = ("gradcam", "gradcam_pp")
"""Gray-box: reported, never filtered, never counted as gradient-based."""
PREDICTION = ("occlusion", "rise", "sobol", "hsic")
"""Black-box (prediction-based) methods, the paper's four: never filtered."""
METRICS = ("deletion", "insertion", "mufidelity")
SCORES = ("softmax", "logit")
"""The primary score (the target's softmax probability) and the sensitivity one (the logit, as Xplique
scores whatever the model outputs); both are read from the same passes."""


GRADIENT_SETTINGS = ("ig_steps", "noise_samples", "noise_stdev")
"""Settings of the gradient-based methods."""
METRIC_SETTINGS = ("steps", "mufidelity_masks")
"""Settings of the faithfulness metrics."""
PREDICTION_SETTINGS = ("rise_masks", "sobol_designs", "sobol_grid", "hsic_designs", "hsic_grid", "occlusion_patches")
"""Settings of the prediction-based methods."""
CUTOFF_SETTINGS = ("cutoffs",)
"""The searched cut-off grid."""
DEPENDS: dict[str, tuple[str, ...]] = {
    "F1": GRADIENT_SETTINGS + PREDICTION_SETTINGS,
    "F2": GRADIENT_SETTINGS + METRIC_SETTINGS + CUTOFF_SETTINGS,
    "F3": GRADIENT_SETTINGS + METRIC_SETTINGS + CUTOFF_SETTINGS,
    "F4": GRADIENT_SETTINGS + METRIC_SETTINGS + CUTOFF_SETTINGS + PREDICTION_SETTINGS,
}
"""The protocol settings each claim's statistic involves: F1 compares the maps of the gradient and the
prediction methods (no metric, no cut-off); F2 and F3 are the gradient methods' cut-off curves and
scores; F4 ranks every method by the metrics."""
SPEED_ONLY = ("batch_size", "internal_batch_size")
"""Settings that change how fast the protocol runs, never its numbers."""


@dataclass(frozen=True)
class Settings:
    """The paper's protocol (arXiv 2307.09591, Sec. 4, with Xplique's defaults), the same on every device:
    ``Settings()`` *is* the protocol (:data:`PROTOCOL`). Only ``batch_size`` and ``internal_batch_size``
    (speed) may change freely; any other change is a lowering (:meth:`lowered`), named in the run's
    ``meta.json``, and every claim row whose statistic involves it (:data:`DEPENDS`) is inconclusive.

    Parameters
    ----------
    ig_steps : int
        Integrated Gradients steps (Xplique ``steps=50``).
    noise_samples : int
        SmoothGrad / SquareGrad / VarGrad samples (Xplique ``nb_samples=50``).
    noise_stdev : float
        Their noise, 0.2 in the model's normalised input units, i.e. ``0.2 x`` the normalisation's std in
        pixels (Xplique ``noise=0.2`` on preprocessed inputs).
    rise_masks : int
        RISE masks (Xplique ``nb_samples=4000``, grid 7, p 0.5).
    sobol_designs, sobol_grid : int
        Sobol designs (``nb_design=32``, each ``8^2 + 1`` passes) on an ``8 x 8`` grid.
    hsic_designs, hsic_grid : int
        HSIC designs (``nb_design=1500``, one pass each) on a ``7 x 7`` grid.
    occlusion_patches : int
        Occlusion windows per side at 224 px: Xplique's 3-px patch and stride (75).
    steps : int
        Deletion / Insertion steps (Xplique ``steps=10``).
    mufidelity_masks : int
        MuFidelity masks (Xplique ``nb_samples=200``, grid 9, subset 20 %).
    cutoffs : tuple of float
        The cut-off grid in frequency steps at 224 px (scaled with the input size), plus the unfiltered
        map; 15 is the paper's default.
    batch_size, internal_batch_size : int
        Speed only (default 8: on a CPU, batches of 4-8 channels-last images ran 2x faster per image than
        batches of 32, ``benchmarks/RESULTS.md``).
    """

    ig_steps: int = 50
    noise_samples: int = 50
    noise_stdev: float = 0.2
    rise_masks: int = 4000
    sobol_designs: int = 32
    sobol_grid: int = 8
    hsic_designs: int = 1500
    hsic_grid: int = 7
    occlusion_patches: int = 75
    steps: int = 10
    mufidelity_masks: int = 200
    cutoffs: tuple[float, ...] = (1, 2, 4, 8, 15, 30, 60)
    batch_size: int = 8
    internal_batch_size: int = 8

    @classmethod
    def for_device(cls, device: str | torch.device = "cpu", **speed: int) -> "Settings":
        """The protocol for ``device``: the same settings on every device (only the speed knobs
        ``batch_size`` / ``internal_batch_size`` may be given)."""
        bad = set(speed) - set(SPEED_ONLY)
        if bad:
            raise ValueError(f"for_device takes only the speed settings {SPEED_ONLY}, got {sorted(bad)}; "
                             "lower a protocol setting explicitly with Settings().lowered(...)")
        return cls(**speed)

    def lowered(self, **changes: Any) -> "Settings":
        """An explicit, named lowering of protocol settings (``Settings().lowered(rise_masks=400)``): the
        run records it (:meth:`lowerings`) and the claim rows that involve it are inconclusive."""
        names = {f for f in vars(self)}
        bad = [k for k in changes if k not in names or k in SPEED_ONLY]
        if bad:
            raise ValueError(f"lowered: unknown or speed-only setting(s) {bad}; protocol settings are "
                             f"{sorted(names - set(SPEED_ONLY))}")
        return replace(self, **{k: (tuple(v) if k == "cutoffs" else v) for k, v in changes.items()})

    def lowerings(self) -> dict[str, str]:
        """``setting -> sentence`` for every protocol setting that differs from :data:`PROTOCOL`'s."""
        out = {}
        for k, v in vars(self).items():
            p = getattr(PROTOCOL, k)
            if k in SPEED_ONLY:
                continue
            if k == "cutoffs":
                if tuple(v) != tuple(p):
                    out[k] = f"cut-off grid {list(v)} frequency steps (+ the unfiltered map) instead of {list(p)}"
            elif v != p:
                out[k] = f"{k.replace('_', ' ')} {v} instead of the paper's/Xplique's {p}"
        return out

    def lowered_for(self, claim: str) -> str | None:
        """The lowered settings claim ``claim``'s statistic involves (:data:`DEPENDS`), as one note, or
        None when it runs at the protocol's settings."""
        low = self.lowerings()
        hit = [low[k] for k in DEPENDS.get(claim, ()) if k in low]
        return "; ".join(hit) if hit else None


PROTOCOL = Settings()
"""The one protocol (every device)."""


def input_zero(model: nn.Module) -> float:
    """The pixel value that the model's built-in normalisation maps to 0 (the mean), else 0: Xplique's
    baseline 0 and noise are applied to preprocessed inputs, so on a model that takes [0, 1] pixels the
    same baseline is the normalisation's mean (0.5 for EfficientNet-Lite)."""
    ms = getattr(model, "_infolens_mean_std", None)
    if not ms:
        return 0.0
    return float(sum(ms[0]) / len(ms[0]))


def input_scale(model: nn.Module) -> float:
    """The normalisation's std (1 without one): Xplique's noise 0.2 on preprocessed inputs is
    ``0.2 * std`` in pixels."""
    ms = getattr(model, "_infolens_mean_std", None)
    if not ms:
        return 1.0
    return float(sum(ms[1]) / len(ms[1]))


@dataclass
class ModelResult:
    """Per-image results of one model under one score (``N`` photographs, ``G`` grid cut-offs, the last
    the unfiltered map). ``by_score`` holds the same results under the sensitivity score (logits), read
    from the same passes."""

    name: str
    sources: Tensor                                  # (N,) source photograph of each image
    folds: Tensor                                    # (N,) 0 / 1 (split by source)
    cutoffs: list[float]                             # grid, the last one the identity
    curves: dict[str, dict[str, Tensor]]             # method -> {"insertion", "deletion", "mufidelity"}: (G, N)
    chosen: dict[str, Tensor]                        # method -> (N,) grid index used for each image
    chosen_model: Tensor                             # (N,) grid index of the one-per-model cut-off
    scores: dict[tuple[str, str, str], Tensor]       # (method, variant, metric) -> (N,)
    hf_share: dict[str, Tensor]                      # method -> (N,) high-frequency share of its map
    spectra: dict[str, Tensor]                       # method -> (n_bins,) mean radial spectrum
    frequencies: Tensor
    examples: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    score: str = "softmax"
    by_score: dict[str, "ModelResult"] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _fold_of(sources: Tensor) -> Tensor:
    """Two folds split by source photograph (alternating over the sorted source ids)."""
    uniq = torch.unique(sources)
    rank = {int(s): k for k, s in enumerate(uniq.tolist())}
    return torch.tensor([rank[int(s)] % 2 for s in sources.tolist()], dtype=torch.long)


def cross_fit(score: Tensor, folds: Tensor) -> Tensor:
    """For a curve ``score`` (G, N) of per-image scores, the grid index used for each image: the argmax of
    the mean score over the images of the *other* fold (ties: the smaller cut-off). (N,)"""
    out = torch.empty(score.shape[1], dtype=torch.long)
    for f in (0, 1):
        other = folds != f
        if not bool(other.any()):  # a single fold: fall back to all images (stated by the caller)
            other = torch.ones_like(folds, dtype=torch.bool)
        out[folds == f] = int(torch.argmax(score[:, other].mean(1)))
    return out


def _standard(name: str, a: Tensor) -> Tensor:
    """The map as Xplique returns it: Saliency is ``max_c |grad|``; the others are returned as computed."""
    return a.abs().amax(1, keepdim=True) if name == "saliency" else a


def _spectrum(maps: Tensor, n_bins: int = 32) -> tuple[Tensor, Tensor]:
    """Mean normalised radial power spectrum of ``|channel mean|`` (mean removed), as the HF share."""
    from ...attribution import attribution_spectrum

    m = maps.mean(1).abs() if maps.ndim == 4 else maps.abs()
    m = (m - m.mean((-2, -1), keepdim=True))[:, None]
    prof = attribution_spectrum(m, n_bins=n_bins, max_radius=math.sqrt(2.0))
    return prof.values.mean(0), prof.frequencies


def _score_many(metric: Any, images: Tensor, targets: Tensor, maps: Sequence[Tensor], chunk: int
                ) -> dict[str, list[Tensor]]:
    """Per-image scores (CPU) of every map under each of :data:`SCORES` (read from the same passes), the
    images taken ``chunk`` at a time (memory stays bounded: the metrics hold a rank tensor per map and
    image); global indices seed MuFidelity's masks."""
    chunk = max(1, chunk // 8)
    out: dict[str, list[list[Tensor]]] = {sc: [[] for _ in maps] for sc in SCORES}
    for i in range(0, images.shape[0], chunk):
        sl = slice(i, i + chunk)
        res = metric.score_many_by(images[sl], targets[sl], [m[sl] for m in maps], scores=SCORES,
                                   indices=list(range(i, min(i + chunk, images.shape[0]))))
        for sc in SCORES:
            for j, r in enumerate(res[sc]):
                out[sc][j].append(r.scores.detach().cpu())
    return {sc: [torch.cat(o) for o in out[sc]] for sc in SCORES}


def _assemble(raw: dict[tuple[str, str, str], Tensor], grad: Sequence[str], others: Sequence[str], n_grid: int,
              folds: Tensor) -> tuple[dict, dict, Tensor, dict]:
    """From the raw per-map scores ``(method, variant, metric) -> (N,)`` of one score: the cut-off curves,
    the cross-fitted choice per method and per model, and the scores of the final variants."""
    n = folds.shape[0]
    ar = torch.arange(n)
    curves = {m: {k: torch.stack([raw[(m, f"grid{g}", k)] for g in range(n_grid)]) for k in METRICS} for m in grad}
    chosen = {m: cross_fit(curves[m]["insertion"] - curves[m]["deletion"], folds) for m in grad}
    if grad:
        mean_curve = torch.stack([curves[m]["insertion"] - curves[m]["deletion"] for m in grad]).mean(0)
        chosen_model = cross_fit(mean_curve, folds)
    else:
        chosen_model = torch.zeros(n, dtype=torch.long)
    scores: dict[tuple[str, str, str], Tensor] = {}
    for m in grad:
        for k in METRICS:
            c = curves[m][k]
            scores[(m, "forgrad", k)] = c[chosen[m], ar]
            scores[(m, "forgrad_model", k)] = c[chosen_model, ar]
            scores[(m, "abs", k)] = c[-1]
            scores[(m, "standard", k)] = raw[(m, "standard", k)]
            # signed == standard where Xplique returns the signed map (all but Saliency)
            scores[(m, "signed", k)] = raw.get((m, "signed", k), raw[(m, "standard", k)])
    for m in others:
        for k in METRICS:
            scores[(m, "standard", k)] = raw[(m, "standard", k)]
    return curves, chosen, chosen_model, scores


def run_model(model: nn.Module, name: str, images: Tensor, sources: Tensor, cfg: Settings = PROTOCOL, *,
              methods: Sequence[str] = GRADIENT + GRAY + PREDICTION, progress: bool = True) -> ModelResult:
    """The protocol on one model (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        Takes ``images`` (N, 3, S, S) in [0, 1] (normalisation built in).
    sources : Tensor
        (N,) source photograph of each image (folds and bootstrap units).
    cfg : Settings
        The protocol (:data:`PROTOCOL`, the paper's settings); a lowered one is recorded by the caller.
    methods : sequence of str
        The methods to run (default all 13); the prediction methods may be left out where the device
        cannot afford them (their claims are then not decided, never decided on fewer passes).

    Returns
    -------
    ModelResult
        Under the softmax score, with ``by_score["logit"]`` the same protocol under logits. Every map is
        computed once: the unfiltered grid point and ``abs`` are the same map, the cut-off curves and the
        final scores come from the same metric passes, and maps ranking an image's pixels alike share them.
    """
    from ... import _progress

    t0 = time.perf_counter()
    stage: dict[str, float] = {}
    images = images.contiguous(memory_format=torch.channels_last)  # faster convolutions on the CPU
    zero, scale = input_zero(model), input_scale(model)
    s = images.shape[-1]
    # the paper's cut-offs are frequency steps at 224 px: scale them to this size; the last grid point is
    # the unfiltered |channel mean| (every frequency kept)
    grid = [round(c * s / 224, 3) for c in cfg.cutoffs] + [round(max_cutoff(s, s), 4)]
    common = {"batch_size": cfg.batch_size, "internal_batch_size": cfg.internal_batch_size}
    kw = {"saliency": {"abs": False}, "integrated_gradients": {"n_steps": cfg.ig_steps, "baseline": zero},
          **{m: {"n_samples": cfg.noise_samples, "stdev": cfg.noise_stdev * scale} for m in
             ("smoothgrad", "squaregrad", "vargrad")},
          "occlusion": {"window": max(1, round(s / cfg.occlusion_patches)), "baseline": zero},
          "rise": {"n_masks": cfg.rise_masks},
          "sobol": {"n_design": cfg.sobol_designs, "grid": cfg.sobol_grid},
          "hsic": {"n_design": cfg.hsic_designs, "grid": cfg.hsic_grid}}
    built = {m: make_method(m, model, **common, **kw.get(m, {})) for m in methods}
    refs = {r: make_reference(r, model, **({"baseline": zero} if r == "magnitude" else {})) for r in REFERENCES}
    idx = list(range(images.shape[0]))
    mk = {"baseline": zero, "batch_size": cfg.batch_size}
    metrics = {"deletion": Deletion(model, n_steps=cfg.steps, **mk), "insertion": Insertion(model, n_steps=cfg.steps, **mk),
               "mufidelity": MuFidelity(model, n_masks=cfg.mufidelity_masks, **mk)}
    with frozen(model):
        with torch.inference_mode():
            t = torch.cat([model(images[i:i + cfg.batch_size]).argmax(1) for i in range(0, len(idx), cfg.batch_size)])
        t = t.clone()
        grad = [m for m in methods if m in GRADIENT]
        others = [m for m in methods if m not in grad] + list(refs)
        _progress.say(f"[forgrad] {name}: maps of {len(methods)} methods on {len(idx)} photographs", progress=progress)
        maps = {}
        for group in (grad + [m for m in methods if m in GRAY], [m for m in methods if m in PREDICTION]):
            if group:
                t1 = time.perf_counter()
                maps.update(attribute_many(model, {m: built[m] for m in group}, images, t, indices=idx))
                stage["gradient" if group[0] not in PREDICTION else "prediction"] = time.perf_counter() - t1
        maps.update({r: m.attribute(images, t, indices=idx).maps for r, m in refs.items()})
        folds = _fold_of(sources)
        # every map every metric scores: the grid of each gradient method (the last point unfiltered), its
        # standard map (and Saliency's signed one), the other methods' and the references' own maps
        variants: dict[tuple[str, str], Tensor] = {}
        for m in grad:
            a = maps[m]
            for k, c in enumerate(grid):
                variants[(m, f"grid{k}")] = forgrad(a, c if k < len(grid) - 1 else math.inf)
            variants[(m, "standard")] = _standard(m, a)
            if m == "saliency":  # elsewhere signed == standard (Xplique returns the signed map)
                variants[(m, "signed")] = a
        for m in others:
            variants[(m, "standard")] = maps[m]
        keys = list(variants)
        raw: dict[str, dict[tuple[str, str, str], Tensor]] = {sc: {} for sc in SCORES}
        for k in METRICS:
            _progress.say(f"[forgrad] {name}: {k} of {len(keys)} maps", progress=progress)
            t1 = time.perf_counter()
            res = _score_many(metrics[k], images, t, [variants[v] for v in keys], cfg.batch_size)
            stage[k] = time.perf_counter() - t1
            for sc in SCORES:
                for (m, var), v in zip(keys, res[sc]):
                    raw[sc][(m, var, k)] = v
        hf = {m: high_frequency_share(maps[m]).cpu() for m in methods}
        spectra, freqs = {}, None
        for m in methods:
            spectra[m], freqs = _spectrum(maps[m])
        spectra = {k: v.cpu() for k, v in spectra.items()}
        out: dict[str, ModelResult] = {}
        for sc in SCORES:
            curves, chosen, chosen_model, scores = _assemble(raw[sc], grad, others, len(grid), folds)
            ex: dict[str, Any] = {}
            if sc == SCORES[0]:
                stack = {m: torch.stack([variants[(m, f"grid{g}")][:1] for g in range(len(grid))]) for m in grad}
                ex = {"image": images[:1].cpu(), "cutoff": {m: grid[int(chosen[m][0])] for m in grad},
                      "standard": {m: maps[m][:1].mean(1).cpu() if m != "saliency" else
                                   _standard(m, maps[m][:1])[:, 0].cpu() for m in methods},
                      "forgrad": {m: stack[m][int(chosen[m][0]), :, 0].cpu() for m in grad}}
            out[sc] = ModelResult(name=name, sources=sources.cpu(), folds=folds, cutoffs=grid, curves=curves,
                                  chosen=chosen, chosen_model=chosen_model, scores=scores, hf_share=hf,
                                  spectra=spectra, frequencies=freqs.cpu(), examples=ex, score=sc)
    main = out[SCORES[0]]
    main.by_score = {sc: out[sc] for sc in SCORES[1:]}
    main.seconds = time.perf_counter() - t0
    main.stage_seconds = {k: round(v, 1) for k, v in stage.items()}
    return main


def method_family(name: str) -> str:
    """``gradient`` / ``gray`` / ``prediction`` / ``reference``."""
    return "reference" if name in REFERENCES else method_kind(name)


def ranking(means: Mapping[str, float], *, higher_is_better: bool) -> list[str]:
    """Methods ordered best first."""
    return sorted(means, key=lambda m: means[m], reverse=higher_is_better)
