"""FORGrad's protocol (arXiv 2307.09591, Sec. 4) on one ImageNet model: every method's maps on the
photographs, the cut-off curve of every gradient method, the cut-off chosen on held-out photographs,
and per-image scores of every variant. Pure computation: returns per-image tensors; the caller
(:mod:`.claims`) writes tables and decides the claims.

Variants of a gradient-based method's map ``a`` (N, C, H, W):

* ``standard``: the map as Xplique produces it (Saliency: ``max_c |g|``; the others keep their sign and
  channels), scored as Xplique's metrics score it (signed channel mean). F3 compares against it.
* ``signed``: the raw signed channel mean (Saliency's plain gradient).
* ``abs``: ``|channel mean|`` alone (FORGrad's filter with every frequency kept, the last grid point).
* ``forgrad``: ``|channel mean|`` low-passed at the method's own cut-off sigma*, chosen on held-out
  photographs (below).

Cut-off (the paper: sigma* maximises the mean faithfulness on 1,280 held-out validation images, per model
and method): the photographs are split by source photograph into two folds; each fold is scored with
the sigma* that maximises mean Insertion - Deletion on the *other* fold (cross-fitting), so every
photograph is scored with a cut-off chosen on photographs disjoint from it. One cut-off per model (the
sigma* of the mean curve over gradient methods) is computed the same way and reported beside it.

Gray-box (Grad-CAM, Grad-CAM++) and prediction-based methods (Occlusion, RISE, Sobol, HSIC) are scored
unfiltered;
the sanity references (centred blob, input magnitude, uniform noise) likewise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Settings:
    """Sample counts and metric settings. :data:`PAPER` holds the paper's / Xplique's defaults."""

    ig_steps: int = 50            # Xplique IntegratedGradients steps=50
    noise_samples: int = 50       # Xplique SmoothGrad/SquareGrad/VarGrad nb_samples=50
    noise_stdev: float = 0.2      # Xplique noise=0.2, in the model's (normalised) input units
    rise_masks: int = 4000        # Xplique RISE nb_samples=4000 (grid 7, p 0.5)
    sobol_designs: int = 32       # Xplique SobolAttributionMethod nb_design=32 (x (8^2 + 1) passes: B's are not needed)
    sobol_grid: int = 8           # Xplique SobolAttributionMethod grid_size=8
    hsic_designs: int = 1500      # Xplique's recommended HsicAttributionMethod: nb_design=1500 (binary LHS)
    hsic_grid: int = 7            # ... and grid_size=7
    occlusion_patches: int = 75   # Xplique Occlusion patch 3 px at stride 3 -> 75 per side at 224
    steps: int = 10               # Xplique Deletion/Insertion steps=10
    mufidelity_masks: int = 200   # Xplique MuFidelity nb_samples=200 (grid 9, subset 0.2)
    cutoffs: tuple[float, ...] = (1, 2, 4, 8, 15, 30, 60)  # frequency steps at 224 (15 = the paper's default)
    score: str = "softmax"
    batch_size: int = 64
    internal_batch_size: int = 128

    def lowered(self) -> list[str]:
        """One sentence per setting below :data:`PAPER`'s."""
        out = []
        for k, v in vars(self).items():
            p = getattr(PAPER, k)
            if k in ("batch_size", "internal_batch_size", "score"):
                continue
            if k == "cutoffs":
                if tuple(v) != tuple(p):
                    out.append(f"cut-off grid {list(v)} frequency steps (+ the identity) instead of {list(p)}")
            elif v != p:
                out.append(f"{k.replace('_', ' ')} {v} instead of the paper's/Xplique's {p}")
        return out


PAPER = Settings()


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
    """Per-image results of one model (``N`` photographs, ``G`` grid cut-offs)."""

    name: str
    sources: Tensor                                  # (N,) source photograph of each image
    folds: Tensor                                    # (N,) 0 / 1 (split by source)
    cutoffs: list[float]                             # grid, the last one the identity
    curves: dict[str, dict[str, Tensor]]             # method -> {"insertion", "deletion"}: (G, N)
    chosen: dict[str, Tensor]                        # method -> (N,) grid index used for each image
    chosen_model: Tensor                             # (N,) grid index of the one-per-model cut-off
    scores: dict[tuple[str, str, str], Tensor]       # (method, variant, metric) -> (N,)
    hf_share: dict[str, Tensor]                      # method -> (N,) high-frequency share of its map
    spectra: dict[str, Tensor]                       # method -> (n_bins,) mean radial spectrum
    frequencies: Tensor
    examples: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


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


def _score_many(metric: Any, images: Tensor, targets: Tensor, maps: Sequence[Tensor], chunk: int) -> list[Tensor]:
    """Per-image scores (CPU) of every map, the images taken ``chunk`` at a time (memory stays bounded:
    the metrics hold a rank tensor per map and image); global indices seed MuFidelity's masks."""
    chunk = max(1, chunk // 8)
    out: list[list[Tensor]] = [[] for _ in maps]
    for i in range(0, images.shape[0], chunk):
        sl = slice(i, i + chunk)
        res = metric.score_many(images[sl], targets[sl], [m[sl] for m in maps],
                                indices=list(range(i, min(i + chunk, images.shape[0]))))
        for j, r in enumerate(res):
            out[j].append(r.scores.detach().cpu())
    return [torch.cat(o) for o in out]


def run_model(model: nn.Module, name: str, images: Tensor, sources: Tensor, cfg: Settings, *,
              methods: Sequence[str] = GRADIENT + GRAY + PREDICTION, progress: bool = True) -> ModelResult:
    """The protocol on one model (see the module docstring); ``images`` (N, 3, S, S) in [0, 1]."""
    from ... import _progress

    t0 = time.perf_counter()
    zero, scale = input_zero(model), input_scale(model)
    s = images.shape[-1]
    # the paper's cut-offs are frequency steps at 224 px: scale them to this size
    grid = [round(c * s / 224, 3) for c in cfg.cutoffs] + [round(max_cutoff(s, s), 4)]
    common = {"batch_size": cfg.batch_size, "internal_batch_size": cfg.internal_batch_size}
    kw = {"saliency": {"abs": False}, "integrated_gradients": {"n_steps": cfg.ig_steps, "baseline": zero},
          **{m: {"n_samples": cfg.noise_samples, "stdev": cfg.noise_stdev * scale} for m in
             ("smoothgrad", "squaregrad", "vargrad")},
          "occlusion": {"window": max(1, round(s / cfg.occlusion_patches)), "baseline": zero},
          "rise": {"n_masks": cfg.rise_masks},
          "sobol": {"n_design": cfg.sobol_designs, "grid_size": cfg.sobol_grid},
          "hsic": {"n_design": cfg.hsic_designs, "grid_size": cfg.hsic_grid}}
    built = {m: make_method(m, model, **common, **kw.get(m, {})) for m in methods}
    refs = {r: make_reference(r, model, **({"baseline": zero} if r == "magnitude" else {})) for r in REFERENCES}
    idx = list(range(images.shape[0]))
    metrics = {"deletion": Deletion(model, steps=cfg.steps, baseline=zero, score=cfg.score,
                                    batch_size=cfg.batch_size),
               "insertion": Insertion(model, steps=cfg.steps, baseline=zero, score=cfg.score,
                                      batch_size=cfg.batch_size),
               "mufidelity": MuFidelity(model, n_masks=cfg.mufidelity_masks, baseline=zero, score=cfg.score,
                                        batch_size=cfg.batch_size)}
    with frozen(model):
        with torch.no_grad():
            t = torch.cat([model(images[i:i + cfg.batch_size]).argmax(1) for i in range(0, len(idx), cfg.batch_size)])
        _progress.say(f"[forgrad] {name}: maps of {len(methods)} methods on {len(idx)} photographs", progress=progress)
        maps = attribute_many(model, built, images, t, indices=idx)
        maps.update({r: m.attribute(images, t, indices=idx) for r, m in refs.items()})
        folds = _fold_of(sources)
        grad = [m for m in methods if m in GRADIENT]
        # every map Deletion / Insertion score: the grid of each gradient method, and the standard maps
        variants: dict[tuple[str, str], Tensor] = {}
        for m in grad:
            a = maps[m]
            for k, c in enumerate(grid):
                variants[(m, f"grid{k}")] = forgrad(a, c)
            variants[(m, "standard")] = _standard(m, a)
            if m == "saliency":  # elsewhere signed == standard (Xplique returns the signed map)
                variants[(m, "signed")] = a
        for m in list(methods) + list(refs):
            if m not in grad:
                variants[(m, "standard")] = maps[m]
        keys = list(variants)
        _progress.say(f"[forgrad] {name}: Deletion/Insertion of {len(keys)} maps", progress=progress)
        causal = {k: _score_many(metrics[k], images, t, [variants[v] for v in keys], cfg.batch_size)
                  for k in ("deletion", "insertion")}
        scores: dict[tuple[str, str, str], Tensor] = {}
        curves, chosen = {}, {}
        for j, (m, var) in enumerate(keys):
            for k in ("deletion", "insertion"):
                scores[(m, var, k)] = causal[k][j]
        for m in grad:
            curves[m] = {k: torch.stack([scores[(m, f"grid{g}", k)] for g in range(len(grid))]) for k in
                         ("insertion", "deletion")}
            chosen[m] = cross_fit(curves[m]["insertion"] - curves[m]["deletion"], folds)
        mean_curve = torch.stack([curves[m]["insertion"] - curves[m]["deletion"] for m in grad]).mean(0)
        chosen_model = cross_fit(mean_curve, folds)
        # final variants: forgrad at the own (cross-fitted) cut-off; abs = the identity grid point
        final: dict[tuple[str, str], Tensor] = {}
        n = len(idx)
        for m in grad:
            stack = torch.stack([variants[(m, f"grid{g}")] for g in range(len(grid))])  # (G, N, 1, H, W)
            final[(m, "forgrad")] = stack[chosen[m].to(stack.device), torch.arange(n, device=stack.device)]
            final[(m, "forgrad_model")] = stack[chosen_model.to(stack.device), torch.arange(n, device=stack.device)]
            for k in ("deletion", "insertion"):
                c = curves[m][k]
                scores[(m, "forgrad", k)] = c[chosen[m], torch.arange(n)]
                scores[(m, "forgrad_model", k)] = c[chosen_model, torch.arange(n)]
                scores[(m, "abs", k)] = c[-1]
            final[(m, "abs")] = variants[(m, f"grid{len(grid) - 1}")]
            final[(m, "standard")] = variants[(m, "standard")]
            if (m, "signed") in variants:
                final[(m, "signed")] = variants[(m, "signed")]
        for m in list(methods) + list(refs):
            if m not in grad:
                final[(m, "standard")] = variants[(m, "standard")]
        fkeys = [k for k in final if k[1] != "forgrad_model"]
        _progress.say(f"[forgrad] {name}: MuFidelity of {len(fkeys)} maps", progress=progress)
        muf = _score_many(metrics["mufidelity"], images, t, [final[k] for k in fkeys], cfg.batch_size)
        for k, r in zip(fkeys, muf):
            scores[(k[0], k[1], "mufidelity")] = r
        for m in grad:  # signed == standard where Xplique returns the signed map
            if (m, "signed", "deletion") not in scores:
                for k in METRICS:
                    scores[(m, "signed", k)] = scores[(m, "standard", k)]
        scores = {k: v for k, v in scores.items() if not k[1].startswith("grid")}
        hf = {m: high_frequency_share(maps[m]).cpu() for m in methods}
        spectra, freqs = {}, None
        for m in methods:
            spectra[m], freqs = _spectrum(maps[m])
        ex = {"image": images[:1].cpu(), "cutoff": {m: grid[int(chosen[m][0])] for m in grad},
              "standard": {m: maps[m][:1].mean(1).cpu() if m != "saliency" else _standard(m, maps[m][:1])[:, 0].cpu()
                           for m in methods},
              "forgrad": {m: final[(m, "forgrad")][:1, 0].cpu() for m in grad}}
    return ModelResult(name=name, sources=sources.cpu(), folds=folds, cutoffs=grid, curves=curves, chosen=chosen,
                       chosen_model=chosen_model, scores=scores, hf_share=hf, spectra={k: v.cpu() for k, v in spectra.items()},
                       frequencies=freqs.cpu(), examples=ex, seconds=time.perf_counter() - t0)


def method_family(name: str) -> str:
    """``gradient`` / ``gray`` / ``prediction`` / ``reference``."""
    return "reference" if name in REFERENCES else method_kind(name)


def ranking(means: Mapping[str, float], *, higher_is_better: bool) -> list[str]:
    """Methods ordered best first."""
    return sorted(means, key=lambda m: means[m], reverse=higher_is_better)
