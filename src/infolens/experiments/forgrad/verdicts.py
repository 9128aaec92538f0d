"""FORGrad's claims F1-F5 (``docs/claims.md``) on the testbed: the paper's protocol
(:mod:`.protocol`) on the ImageNet trio, and the aliasing test on the MNIST anti-aliasing pair.

``claims(out, *, quick, device, progress)`` writes its result folder at ``out`` (tables, figures,
meta.json with ``claim_figures`` and ``deviations``; resumable per model) and returns the claim rows.
Intervals are percentile bootstraps over source photographs (digits for F5), :func:`infolens.claims.bootstrap`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ... import _progress
from ...claims import bootstrap, claim_row, most_row
from ...distributed import is_main
from ...results import RunDir
from ..._io import atomic_torch_save
from .protocol import GRADIENT, GRAY, METRICS, PREDICTION, PROTOCOL, ModelResult, Settings, cross_fit, run_model

PAPER_NAME = "forgrad"
IMAGENET_TRIO = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
AA_PAIR = ("mnist_resnet", "mnist_resnet_aa")
REFS = ("blob", "magnitude", "noise")

PREDICTION_ON_CPU = False
"""Whether the claims runner computes the prediction methods (Occlusion at Xplique's 3-px patch and stride,
RISE 4,000 masks, Sobol 32 x 65 and HSIC 1,500 passes: about 13,000 forward passes per photograph and model)
on a CPU. They are never lowered to fit: where they are not run, F1 and F4 are "inconclusive (protocol not
run on this device)" and are decided by a run on a GPU (``benchmarks/RESULTS.md`` has the measured costs)."""
QUICK_PHOTOS = 2
QUICK_MODELS = 1
"""A quick run (a smoke test of every code path, never evidence) measures the first :data:`QUICK_MODELS`
model(s) of the trio on :data:`QUICK_PHOTOS` photographs each, at the protocol's settings: photographs are
what it lowers, and the other models get none (at the paper's settings one photograph costs about a
minute of one core per model, ``benchmarks/RESULTS.md``)."""
F5_DIGITS = {True: 64, False: 500}


# --------------------------------------------------------------------------- testbed access

def _testbed() -> Any:
    try:
        from .. import testbed
    except ImportError:
        return None
    return testbed


def trio() -> tuple[str, ...]:
    tb = _testbed()
    return tuple(getattr(tb, "IMAGENET_TRIO", IMAGENET_TRIO)) if tb else IMAGENET_TRIO


def load_trio_model(name: str, device: str) -> Any:
    """The testbed's model (input size and normalisation built in), else :func:`infolens.models.load_model`."""
    tb = _testbed()
    if tb is not None and hasattr(tb, "imagenet_model"):
        return tb.imagenet_model(name, device=device)
    from ...models import load_model

    return load_model(name, device=device)


def load_photos(size: int, *, quick: bool) -> tuple[Tensor, Tensor, list[str]]:
    """Photographs ``(N, 3, size, size)``, their source photograph ids and names: the testbed's
    :func:`photos` (crops/flips share a source), else the bundled photographs (one image per source).
    Only the first image of each source is used (cost); ``quick`` keeps :data:`QUICK_PHOTOS` sources."""
    tb = _testbed()
    if tb is not None and hasattr(tb, "photos"):
        ph = tb.photos(size, quick=quick)
        images, sources, names = ph.images, ph.source.long(), list(ph.names)
    else:
        from ... import data

        images, names = data.load_photos(size=size)
        sources, names = torch.arange(images.shape[0]), list(names)
    first = [i for i, s in enumerate(sources.tolist()) if s not in sources[:i].tolist()]
    if quick:
        first = first[:QUICK_PHOTOS]
    return images[first], sources[first], [names[i] for i in first]


# --------------------------------------------------------------------------- statistics

def _by_source(values: Tensor, sources: Tensor) -> Tensor:
    """Mean per source photograph, ``(S, ...)`` in sorted source order."""
    uniq, inv = torch.unique(sources, return_inverse=True)
    out = torch.zeros((len(uniq),) + values.shape[1:], dtype=torch.float64)
    out.index_add_(0, inv, values.to(torch.float64))
    return out / torch.bincount(inv, minlength=len(uniq)).view(-1, *([1] * (values.ndim - 1)))


def _boot(per_source: Tensor, statistic: Any) -> Any:
    """Bootstrap a statistic of per-source values ``(S, ...)`` (``statistic(rows) -> float``)."""
    return bootstrap(lambda idx: statistic(per_source[idx]), per_source.shape[0])


NOT_RUN = ("protocol not run on this device: the prediction methods at the paper's counts (Occlusion 3-px "
           "patch and stride, RISE 4,000, Sobol 32 designs, HSIC 1,500) do not fit the CPU budget; decided by a "
           "GPU run")


def f1_rows(results: Sequence[ModelResult], cfg: Settings = PROTOCOL) -> list[dict[str, Any]]:
    """F1: per model, the high-frequency share of the gradient maps minus that of the prediction maps."""
    rows = []
    for r in results:
        if not any(m in r.hf_share for m in PREDICTION):
            rows.append(claim_row(PAPER_NAME, "F1", r.name, F1_STAT, math.nan, 0.0, verdict="inconclusive",
                                  note=NOT_RUN))
            continue
        g = torch.stack([r.hf_share[m] for m in GRADIENT if m in r.hf_share]).mean(0)
        p = torch.stack([r.hf_share[m] for m in PREDICTION if m in r.hf_share]).mean(0)
        ps = _by_source(torch.stack([g, p], 1), r.sources)
        iv = _boot(ps, lambda v: float((v[:, 0] - v[:, 1]).mean()))
        rows.append(claim_row(PAPER_NAME, "F1", r.name, F1_STAT, iv, 0.0, side=">", lowered=cfg.lowered_for("F1")))
    rows.append(most_row(rows, share=1.0, model="every ImageNet model", note="F1 must hold on every model"))
    return rows


F1_STAT = "high-frequency share (power above half Nyquist): mean over gradient methods minus mean over prediction methods"


def _inside_margin(curve: Tensor) -> float:
    """Best score strictly inside the grid minus the best score at its two ends (> 0: an inner maximum)."""
    if curve.shape[0] < 3:
        return math.nan
    return float(curve[1:-1].max() - torch.maximum(curve[0], curve[-1]))


def _variant(r: ModelResult) -> str:
    return "primary" if r.score == "softmax" else "sensitivity"


def _score_note(r: ModelResult) -> str:
    return "" if r.score == "softmax" else f"scores are the target's {r.score}s (sensitivity)"


def f2_rows(results: Sequence[ModelResult], cfg: Settings = PROTOCOL) -> list[dict[str, Any]]:
    """F2: per (model, gradient method), the best inner cut-off minus the best end of the grid."""
    rows = []
    for r in results:
        for m, c in r.curves.items():
            ps = _by_source((c["insertion"] - c["deletion"]).T, r.sources)  # (S, G)
            iv = _boot(ps, lambda v: _inside_margin(v.mean(0)))
            rows.append(claim_row(PAPER_NAME, "F2", f"{r.name}/{m}", "cut-off curve (Insertion - Deletion): best inner "
                                  "cut-off minus best end of the grid", iv, 0.0, side=">", variant=_variant(r),
                                  lowered=cfg.lowered_for("F2"), note=_score_note(r)))
    return rows + [most_row(rows, model="most (model, gradient method) pairs")] if rows else rows


def _wins(std: dict[str, Tensor], filt: dict[str, Tensor]) -> Tensor:
    """``(S, 3)`` per-source improvement of the filtered over the standard map (positive = better)."""
    return torch.stack([std["deletion"] - filt["deletion"], filt["insertion"] - std["insertion"],
                        filt["mufidelity"] - std["mufidelity"]], 1)


def f3_statistic(curves: Tensor, standard: Tensor, folds: Tensor) -> float:
    """F3's statistic on a set of source photographs, the cut-off chosen anew on them.

    ``curves`` (S, G, 3): each photograph's Deletion, Insertion and MuFidelity at every grid cut-off;
    ``standard`` (S, 3): the standard map's; ``folds`` (S,). Each photograph is scored at the cut-off
    that maximises mean Insertion - Deletion over the photographs of the other fold (:func:`cross_fit`);
    returns the number of metrics on which the filtered map beats the standard one on average. Called on
    each bootstrap resample, so the interval includes the variance of the cut-off choice."""
    chosen = cross_fit((curves[:, :, 1] - curves[:, :, 0]).T, folds)
    filt = curves[torch.arange(curves.shape[0]), chosen]  # (S, 3)
    wins = torch.stack([standard[:, 0] - filt[:, 0], filt[:, 1] - standard[:, 1], filt[:, 2] - standard[:, 2]], 1)
    return float((wins.mean(0) > 0).sum())


def _source_folds(r: ModelResult) -> Tensor:
    uniq, inv = torch.unique(r.sources, return_inverse=True)
    out = torch.zeros(len(uniq), dtype=torch.long)
    out[inv] = r.folds.long()
    return out


def f3_rows(results: Sequence[ModelResult], cfg: Settings = PROTOCOL) -> list[dict[str, Any]]:
    """F3: per (model, gradient method), the metrics on which the map filtered at its own cut-off (chosen
    on the other fold) beats the standard map; the bootstrap redoes the cut-off choice in each resample."""
    rows = []
    for r in results:
        sfolds = _source_folds(r)
        for m in r.curves:
            cur = _by_source(torch.stack([r.curves[m][k] for k in METRICS], -1).transpose(0, 1), r.sources)  # (S,G,3)
            std = _by_source(torch.stack([r.scores[(m, "standard", k)] for k in METRICS], 1), r.sources)  # (S, 3)
            iv = bootstrap(lambda idx: f3_statistic(cur[idx], std[idx], sfolds[idx]), cur.shape[0])
            rows.append(claim_row(PAPER_NAME, "F3", f"{r.name}/{m}", "metrics (of Deletion, Insertion, MuFidelity) on "
                                  "which the filtered map beats the method's standard map, at its own cut-off "
                                  "chosen on the other photographs (chosen anew in each bootstrap resample)", iv,
                                  2.0, side=">=", variant=_variant(r), lowered=cfg.lowered_for("F3"),
                                  note=_score_note(r)))
    return rows + [most_row(rows, model="most (model, gradient method) pairs")] if rows else rows


def ranked_methods(r: ModelResult, *, filtered: bool) -> list[tuple[str, str]]:
    """(method, variant) competing in a ranking: gradient methods standard or filtered at their own
    cut-off, gray-box and prediction-based methods and the sanity references unfiltered."""
    grad = [m for m in GRADIENT if m in r.curves]
    return [(m, "forgrad" if filtered else "standard") for m in grad] + \
        [(m, "standard") for m in GRAY + PREDICTION + REFS if (m, "standard", "deletion") in r.scores]


def f4_rows(results: Sequence[ModelResult], cfg: Settings = PROTOCOL) -> list[dict[str, Any]]:
    """F4: per model, the metrics whose best method is a filtered gradient method."""
    rows = []
    for r in results:
        stat_name = ("metrics (of 3) whose best method is a filtered gradient method (gray-box and prediction-based "
                     "methods unfiltered)")
        if not any((m, "standard", "deletion") in r.scores for m in PREDICTION):
            rows.append(claim_row(PAPER_NAME, "F4", r.name, stat_name, math.nan, 2.0, side=">=",
                                  verdict="inconclusive", variant=_variant(r), note=NOT_RUN))
            continue
        cands = [c for c in ranked_methods(r, filtered=True) if c[0] not in REFS]
        vals = torch.stack([torch.stack([r.scores[(m, v, k)] for k in METRICS], 1) for m, v in cands], 1)  # (N, M, 3)
        ps = _by_source(vals, r.sources)
        is_grad = torch.tensor([m in GRADIENT for m, _ in cands])
        sign = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # Deletion: lower is better

        def stat(v: Tensor) -> float:
            best = (v.mean(0) * sign).argmax(0)  # (3,) best candidate per metric
            return float(is_grad[best].sum())

        iv = _boot(ps, stat)
        rows.append(claim_row(PAPER_NAME, "F4", r.name, stat_name, iv, 2.0, side=">=", variant=_variant(r),
                              lowered=cfg.lowered_for("F4"), note=_score_note(r)))
    return rows + [most_row(rows, model="most ImageNet models")] if rows else rows


def claim_rows(results: Sequence[ModelResult], cfg: Settings = PROTOCOL) -> list[dict[str, Any]]:
    """F1-F4 from the per-model results: the primary rows (softmax), then the sensitivity rows of the
    claims whose statistic uses a score (F2-F4 under logits), each set aggregated on its own."""
    rows = f1_rows(results, cfg) + f2_rows(results, cfg) + f3_rows(results, cfg) + f4_rows(results, cfg)
    sens = [r.by_score[k] for r in results for k in r.by_score]
    if sens:
        rows += f2_rows(sens, cfg) + f3_rows(sens, cfg) + f4_rows(sens, cfg)
    return rows


def f5_rows(quick: bool, device: str, progress: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Saliency's high-frequency share on the plain and the anti-aliased twin, the same test digits."""
    tb = _testbed()
    note = ""
    if tb is None or not hasattr(tb, "mnist_model"):
        row = claim_row(PAPER_NAME, "F5", "/".join(AA_PAIR), "high-frequency share of Saliency: plain minus "
                        "anti-aliased", math.nan, 0.0, side=">", verdict="inconclusive",
                        note="the testbed's anti-aliased twin (AA_PAIR) is not available in this build")
        return [row], {}
    from ...attribution import Saliency, high_frequency_share

    pair = tuple(getattr(tb, "AA_PAIR", AA_PAIR))
    x, _ = tb.mnist_data("test", F5_DIGITS[quick])
    x = x.to(device)
    shares, spectra = {}, {}
    for name in pair:
        _progress.say(f"[forgrad] F5: Saliency of {name}", progress=progress)
        model = tb.mnist_model(name, quick=quick, device=device)
        sal = Saliency(model, batch_size=128).attribute(x).maps
        shares[name] = high_frequency_share(sal).cpu()
        from .protocol import _spectrum

        spectra[name] = [v.tolist() for v in _spectrum(sal)]
    d = (shares[pair[0]] - shares[pair[1]]).to(torch.float64)
    iv = bootstrap(lambda idx: float(d[idx].mean()), d.shape[0])
    row = claim_row(PAPER_NAME, "F5", f"{pair[0]} vs {pair[1]}", "high-frequency share of Saliency (power above half "
                    "Nyquist): plain minus anti-aliased, same digits", iv, 0.0, side=">", note=note)
    return [row], {"shares": {k: float(v.mean()) for k, v in shares.items()}, "spectra": spectra}


# --------------------------------------------------------------------------- tables

def tables(results: Sequence[ModelResult]) -> dict[str, list[dict[str, Any]]]:
    """Tidy tables: per-image scores, the cut-off curves, cut-offs, the rankings (with sanity flags),
    high-frequency shares and mean spectra."""
    from .protocol import method_family

    scores, curves, cut, rank, hf, spec = [], [], [], [], [], []
    for r in results:
        n = r.sources.shape[0]
        for (m, var, k), v in r.scores.items():
            for i in range(n):
                scores.append({"model": r.name, "index": i, "source": int(r.sources[i]), "fold": int(r.folds[i]),
                               "method": m, "family": method_family(m), "variant": var, "metric": k,
                               "score": float(v[i])})
        for m, c in r.curves.items():
            for g, co in enumerate(r.cutoffs):
                curves.append({"model": r.name, "method": m, "cutoff": co, "identity": g == len(r.cutoffs) - 1,
                               "insertion": float(c["insertion"][g].mean()), "deletion": float(c["deletion"][g].mean()),
                               "score": float((c["insertion"][g] - c["deletion"][g]).mean())})
            for f in (0, 1):
                sel = r.folds == f
                if bool(sel.any()):
                    cut.append({"model": r.name, "method": m, "fold": f, "n_images": int(sel.sum()),
                                "cutoff": r.cutoffs[int(r.chosen[m][sel][0])],
                                "cutoff_one_per_model": r.cutoffs[int(r.chosen_model[sel][0])],
                                "chosen_on": "the other fold's photographs"})
        for filtered in (False, True):
            cands = ranked_methods(r, filtered=filtered)
            for k in METRICS + ("insertion-deletion",):
                def mean(m: str, v: str) -> float:
                    if k == "insertion-deletion":
                        return float((r.scores[(m, v, "insertion")] - r.scores[(m, v, "deletion")]).mean())
                    return float(r.scores[(m, v, k)].mean())

                means = {(m, v): mean(m, v) for m, v in cands}
                lower = k == "deletion"
                blob = means[("blob", "standard")]
                order = sorted(means, key=lambda mv: means[mv], reverse=not lower)
                for pos, (m, v) in enumerate(order, 1):
                    beats = means[(m, v)] < blob if lower else means[(m, v)] > blob
                    rank.append({"model": r.name, "metric": k, "stage": "after" if filtered else "before",
                                 "rank": pos, "method": m, "variant": v, "family": method_family(m),
                                 "mean": means[(m, v)], "beats_blob": bool(beats) if m != "blob" else None})
        for m, v in r.hf_share.items():
            hf.append({"model": r.name, "method": m, "family": method_family(m), "hf_share": float(v.mean())})
        for m, v in r.spectra.items():
            for b, (f, p) in enumerate(zip(r.frequencies.tolist(), v.tolist())):
                spec.append({"model": r.name, "method": m, "kind": method_family(m), "bin": b, "frequency": f,
                             "power": p})
    return {"scores": scores, "cutoff_curves": curves, "cutoffs": cut, "ranking": rank, "hf_share": hf,
            "mean_spectra": spec}


def effects(results: Sequence[ModelResult]) -> list[dict[str, Any]]:
    """The two effects apart, per (model, gradient method, metric): standard (Xplique's map), raw signed,
    |.| alone, |.| then filtered (own cut-off), |.| then filtered (one cut-off per model)."""
    rows = []
    for r in results:
        for m in r.curves:
            for k in METRICS:
                row = {"model": r.name, "method": m, "metric": k}
                for var in ("standard", "signed", "abs", "forgrad", "forgrad_model"):
                    v = r.scores.get((m, var, k))
                    row[var] = float(v.mean()) if v is not None else None
                rows.append(row)
    return rows


def sanity_flags(rank_rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per (model, stage) naming the methods that do not beat the centred blob on
    Insertion - Deletion."""
    out = []
    keys = sorted({(r["model"], r["stage"]) for r in rank_rows})
    for model, stage in keys:
        bad = [r["method"] for r in rank_rows if r["model"] == model and r["stage"] == stage and
               r["metric"] == "insertion-deletion" and r["beats_blob"] is False and r["family"] != "reference"]
        if bad:
            out.append(f"{model} ({stage} filtering): {', '.join(bad)} do not beat the centred blob on "
                       f"Insertion - Deletion")
    return out


# --------------------------------------------------------------------------- the runner entry

def deviations(cfg: Settings, *, quick: bool, n_photos: int, models_missing: Sequence[str], f5_note: str,
               prediction: bool = True) -> list[str]:
    out = [
        f"Photographs: {n_photos} offline photographs per model (one image per source photograph) instead of "
        "ImageNet validation images; the cut-off is chosen by two-fold cross-fitting over source photographs "
        "(each photograph scored with the cut-off that maximises mean Insertion - Deletion on the other fold) "
        "instead of 1,280 separate held-out images; F3's interval redoes that choice in each bootstrap resample.",
        "Every method explains the model's predicted class (the photographs have no ImageNet labels).",
        "Scores are the target's softmax probability (RISE's definition of Deletion/Insertion; primary rows); "
        "the same passes scored by the logit (Xplique scores whatever the model outputs) give the sensitivity "
        "rows. The baseline and SmoothGrad's noise are Xplique's 0 and 0.2 in the model's normalised input space "
        "(pixel 0.5 and 0.2 x the normalisation's std, 0.1 for EfficientNet-Lite, whose normalisation is "
        "(x - 0.5) / 0.5).",
        "Grad-CAM layer: the last Conv2d of the network (Xplique: the last convolutional layer); Grad-CAM maps "
        "are upsampled bilinearly (Xplique: bicubic).",
        "The cut-off grid is 1, 2, 4, 8, 15, 30, 60 frequency steps at 224 px, scaled to the model's input size, "
        "and the unfiltered map; the paper's searched range is not published.",
        "The high-frequency share is computed on |channel mean| of each map with its mean removed.",
        "One protocol on every device (the paper's settings); --device changes only the speed.",
    ]
    low = cfg.lowerings()
    if low:
        out.append("Protocol lowered (explicitly): " + "; ".join(low.values()) + "; the rows that involve it are "
                   "inconclusive.")
    if not prediction:
        out.append("The prediction methods (Occlusion, RISE, Sobol, HSIC) were not run on this device (their "
                   "paper counts cost about 13,000 forward passes per photograph and model); F1 and F4 are "
                   "inconclusive, to be decided by a GPU run.")
    if quick:
        out.append(f"quick mode: {QUICK_PHOTOS} photographs of the first {QUICK_MODELS} trio model(s), none of the "
                   f"others, and {F5_DIGITS[True]} digits for F5 (the protocol's settings otherwise): a smoke test, "
                   "every verdict inconclusive (n below 15).")
    if models_missing:
        out.append(f"Models not available offline in this build, left out: {', '.join(models_missing)}.")
    if f5_note:
        out.append(f5_note)
    return out


def claims(out: Path, *, quick: bool, device: str = "cpu", progress: bool = True, settings: Settings | None = None,
           prediction: bool | None = None) -> list[dict[str, Any]]:
    """Run FORGrad's protocol on the testbed and decide F1-F5 (``docs/claims.md``); writes its result
    folder at ``out`` (resumable per model) and returns the claim rows.

    Parameters
    ----------
    quick : bool
        :data:`QUICK_PHOTOS` photographs per model (a smoke test); the settings are the protocol's.
    device : str
        Where to run: changes the speed only.
    settings : Settings, optional
        The protocol (default :data:`~.protocol.PROTOCOL`, the paper's settings). A lowered one
        (``Settings().lowered(...)``) is recorded in meta.json and makes the rows that involve it inconclusive.
    prediction : bool, optional
        Whether to run the prediction methods (default: on a GPU, and on a CPU when
        :data:`PREDICTION_ON_CPU`); when not, F1 and F4 are "inconclusive (protocol not run on this device)".
    """
    out = Path(out)
    t0 = time.perf_counter()
    cfg = settings if settings is not None else Settings.for_device(device)
    if prediction is None:
        prediction = str(device).startswith("cuda") or PREDICTION_ON_CPU
    methods = GRADIENT + GRAY + (PREDICTION if prediction else ())
    # a folder holding another configuration is started afresh (its parts, with the per-model caches, go)
    names = trio()[:QUICK_MODELS] if quick else trio()
    run = RunDir(out, writer=is_main(), analysis=PAPER_NAME, params={"quick": quick, "settings": vars(cfg), "models": list(names),
                                                   "prediction": bool(prediction)},
                 device=device, title="FORGrad: low-pass filtered gradient attributions (claims F1-F5)",
                 description=__doc__.split("\n\n")[0], overwrite=True)
    results, missing, walls, stages = [], [], {}, {}
    n_photos = 0
    for name in names:
        cache = out / "parts" / "models" / f"{name}.pt"
        if cache.is_file():
            res = ModelResult(**torch.load(cache, weights_only=False))
        else:
            try:
                lm = load_trio_model(name, device)
            except (ValueError, FileNotFoundError, ImportError, ModuleNotFoundError) as e:
                _progress.say(f"[forgrad] {name} not available: {e}", progress=progress)
                missing.append(name)
                continue
            x, src, _ = load_photos(lm.input_shape[-1], quick=quick)
            res = run_model(lm.model, name, x.to(device), src, cfg, methods=methods, progress=progress)
            atomic_torch_save(vars(res), cache)
        n_photos = int(res.sources.shape[0])
        walls[name] = round(res.seconds, 1)
        stages[name] = res.stage_seconds
        results.append(res)
    rows: list[dict[str, Any]] = []
    if results:
        rows += claim_rows(results, cfg)
    else:
        for c in ("F1", "F2", "F3", "F4"):
            rows.append(claim_row(PAPER_NAME, c, "ImageNet trio", "no ImageNet model available", math.nan, 0.0,
                                  verdict="inconclusive", note="no model of the trio could be loaded"))
    t5 = time.perf_counter()
    f5, f5_info = f5_rows(quick, device, progress)
    walls["f5"] = round(time.perf_counter() - t5, 1)
    rows += f5
    tabs = tables(results)
    for k, v in tabs.items():
        run.write_table(k, v)
    run.write_table("effects", effects(results))
    run.write_table("claims", rows)
    flags = sanity_flags(tabs["ranking"])
    figures = _figures(run, results, tabs, f5_info)
    devs = deviations(cfg, quick=quick, n_photos=n_photos, models_missing=missing, prediction=bool(prediction),
                      f5_note=f5[0]["note"] if f5 and f5[0]["verdict"] == "inconclusive" and not f5_info else "")
    run.write_meta(claim_figures={k: v for k, v in {"F1": "figures/spectra.png", "F2": "figures/cutoffs.png",
                                                    "F3": "figures/effects.png", "F4": "figures/ranking.png",
                                                    "F5": "figures/aliasing.png"}.items()
                                  if v.split("/")[-1][:-4] in figures},
                   deviations=devs, sanity=flags, wall_seconds=walls, stage_seconds=stages,
                   protocol={"settings": vars(cfg), "lowered": cfg.lowerings(), "prediction_methods_run": bool(prediction)},
                   figures=figures, report_tables=["claims", "ranking_top", "cutoffs", "effects"])
    run.write_table("ranking_top", [r for r in tabs["ranking"] if r["metric"] == "insertion-deletion"])
    from ...plots.forgrad import opening

    summary = opening(rows, tabs["ranking"], flags, devs)
    summary.update({"cut-offs (frequency steps, per model, method and fold)": {
        f"{c['model']} {c['method']} fold {c['fold']}": f"{c['cutoff']:g} (one per model: {c['cutoff_one_per_model']:g})"
        for c in tabs["cutoffs"]},
        "F5 high-frequency share": f5_info.get("shares", {}), "wall seconds": walls,
        "seconds": round(time.perf_counter() - t0, 1)})
    run.finish(summary)
    return rows


def _figures(run: RunDir, results: Sequence[ModelResult], tabs: dict[str, list], f5_info: dict) -> dict[str, str]:
    """Draw the figures (matplotlib missing: none); returns name -> caption."""
    try:
        from ...plots import forgrad as fp
    except ImportError:  # pragma: no cover
        return {}
    figs: dict[str, str] = {}
    if not results:
        return figs
    run.save_figure(fp.spectra_figure([r for r in tabs["mean_spectra"] if r["kind"] in ("gradient", "prediction")],
                                      per_method=False), "spectra")
    figs["spectra"] = ("Mean radial power spectrum (each map's |channel mean|, mean removed, normalised to unit "
                       "power) of gradient-based vs prediction-based maps, per model (gray-box left out).")
    run.save_figure(fp.cutoff_figure(tabs["cutoff_curves"]), "cutoffs")
    figs["cutoffs"] = ("Cut-off curves: mean Insertion - Deletion of each gradient method against the cut-off "
                       "(frequency steps; the last point keeps every frequency), the maximum marked.")
    run.save_figure(fp.bump_figure(tabs["ranking"]), "ranking")
    figs["ranking"] = ("Ranking before and after filtering, per model and metric: gradient methods standard "
                       "(before) and filtered at their own cut-off (after); gray-box, prediction-based methods and "
                       "the sanity references (dashed) unfiltered.")
    run.save_figure(fp.effects_figure(effects(results)), "effects")
    figs["effects"] = ("The two effects apart: each gradient method's standard map, raw signed, |.| alone and "
                       "|.| then filtered (own cut-off), per metric and model.")
    run.save_figure(fp.trio_examples_figure([r.examples | {"model": r.name} for r in results]), "examples")
    figs["examples"] = "Example maps, first photograph of each model: standard (top) and filtered (bottom)."
    if f5_info:
        run.save_figure(fp.aliasing_figure(f5_info), "aliasing")
        figs["aliasing"] = ("Mean radial spectrum of Saliency on the plain and the anti-aliased twin, same digits; "
                            "the legend gives the high-frequency share.")
    return figs
