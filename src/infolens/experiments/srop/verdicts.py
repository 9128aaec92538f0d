"""Claims S1-S3 of SROP (arXiv 2102.00369) decided on the testbed, at every measurement point
(``docs/claims.md``). The primary variant is SROP at ``activation`` (:data:`PRIMARY`); ``conv`` and
``block`` are sensitivity rows.

* **S1** (SROP distributions change with the input's useful content): per model and point, the mean over
  layers of the Wasserstein-1 distance between the SROP distributions (images x channels) of the
  originals and of a UI-destroying variant (pixel shuffle, uniform noise), divided by the same distance
  for a UI-keeping low-pass. The statistic is the smaller of the two ratios (both must exceed 1).
  The low-pass cut-off is fixed per model *before any SROP is computed*, on held-out images, by one
  rule: going down the grid :data:`CUTOFFS` (fractions of Nyquist), the lowest cut-off such that it and
  every cut-off above it keep accuracy within 2 points of the unfiltered images. When no cut-off keeps
  accuracy, the premise of S1 is missing and the row is inconclusive (never decided with a fallback).
* **S2** (trained and randomly initialised models differ): mean over layers of W1(trained, random init),
  averaged over :data:`SEEDS` (three random initialisations, the model's own initialiser where it has one),
  divided by the mean over the three seed pairs of the mean over layers of W1(random seed i, random seed j).
  The interval resamples images and seed pairs together.
* **S3** (SROP moves in step with accuracy): Spearman's rho between the layer-averaged mean SROP and
  test accuracy over the stage checkpoints (MNIST set); ``abs(rho) >= 0.8`` on most, one sign for all.
  The robustness table gives rho under q = 1 / 2 and DC kept / dropped.

Intervals: percentile bootstrap over source images (:func:`infolens.claims.bootstrap`, 1,000 resamples,
seed 0); crops or flips of one photograph share its source. Every point (``conv``, ``activation``,
``block``) gets its own rows (model column ``name@point``) and its own "most" rows; the ``activation``
rows are ``primary``, the others ``sensitivity``. Per-model SROPs are
cached under ``parts/srop_cache/`` in the result folder (resumable; a run with other parameters starts afresh).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ... import _progress
from .. import testbed
from ...claims import MIN_POINTS, bootstrap, claim_row, most_row, spearman
from ...distributed import is_main
from ...results import RunDir
from ..._io import atomic_torch_save
from ...spectral import lowpass_filter
from ...srop import (MEASUREMENT_POINTS, SpectralRolloff, input_variant, plan_points, random_init, resample_counts,
                     resample_histograms, srop_histograms, wasserstein1)

PAPER = "srop"
POINTS: tuple[str, ...] = MEASUREMENT_POINTS
PRIMARY: str = "activation"
"""The primary measurement point (docs/claims.md); the other points are sensitivity rows."""
SEEDS: tuple[int, ...] = (1, 2, 3)
"""S2's random initialisations: at least 3 seeds, so at least 3 seed pairs (docs/claims.md)."""


def variant_of(at: str) -> str:
    """``"primary"`` at :data:`PRIMARY`, ``"sensitivity"`` at every other measurement point."""
    return "primary" if at == PRIMARY else "sensitivity"

CUTOFFS: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1)
"""Low-pass cut-offs tried for S1's UI-keeping variant, highest first (fractions of Nyquist)."""
ACC_DROP = 0.02
"""The low-pass must keep accuracy within 2 points (docs/claims.md, S1)."""
S3_SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("q=2, DC kept", {}), ("q=1, DC kept", {"q": 1.0}), ("q=2, DC dropped", {"keep_dc": False}),
    ("q=1, DC dropped", {"q": 1.0, "keep_dc": False}))
"""S3's default setting (first) and the alternatives of the robustness table."""
DESTROY = ("shuffled", "noise")

DEVIATIONS = [
    "Measurement point: the paper's 'feature maps' are read as the output of the non-linearity after each "
    "convolution (default at='activation'); every claim is also decided at the convolution output and at block "
    "outputs, side by side.",
    "At the activation point, convolutions without an activation module before the next weight layer (1x1 "
    "downsample shortcuts, linear-bottleneck projections, a final class convolution) have no point and are left out.",
    "Wasserstein-1 distances are computed from the cumulative distributions on a grid of 512 bins over "
    "[0, sqrt(2)] of Nyquist (error below 0.003 of Nyquist), so that 1,000 bootstrap resamples are matrix products.",
    "S1's statistic per model is the smaller of the pixel-shuffle and noise ratios (both must exceed 1).",
    "S1's low-pass cut-off is chosen per model on held-out images by a fixed rule (the lowest cut-off on the "
    "grid 0.9..0.1 of Nyquist such that it and every higher one keep accuracy within 2 points); on photographs, "
    "which carry few labels, accuracy is agreement with the model's own top-1 on the unfiltered photograph.",
    "S2's random initialisations (three seeds, three seed pairs): the MNIST set's networks are rebuilt by their own "
    "constructor (their own initialiser) under seeds 1-3; the ImageNet trio's are re-initialised with the framework's "
    "default initialisation (their own scheme is not replayed).",
    "S1 is inconclusive for a model where no low-pass cut-off keeps accuracy within 2 points (the premise is missing).",
    "S3 uses every stage checkpoint of the testbed (initialisation included); test accuracy is held fixed in "
    "the bootstrap, which resamples the images the SROPs are measured on.",
    "Models without 2-D feature maps (an MLP) have no SROP and are left out of every claim.",
]


@dataclass(frozen=True)
class Plan:
    """Sizes of one claims run (quick or full)."""

    n_mnist: int
    n_heldout: int
    photo_sources: int | None
    photo_views: tuple[str, ...]
    held_views: tuple[str, ...] | None
    batch_size: int = 100
    seed: int = 0


QUICK = Plan(n_mnist=48, n_heldout=500, photo_sources=4, photo_views=("full",), held_views=("full",), batch_size=48)
FULL = Plan(n_mnist=300, n_heldout=2000, photo_sources=None, photo_views=("full", "flip"), held_views=None,
            batch_size=50)
"""Full: 300 test digits measured (2,000 held out for the cut-off), every photograph's unaltered view and its
mirror image for the even-ranked sources; every view of the odd-ranked photographs chooses the cut-off."""


# --------------------------------------------------------------------------- testbed


def mnist_names() -> list[str]:
    return list(testbed.MNIST_SET)


def mnist_model(name: str, *, quick: bool, device: str, progress: bool) -> nn.Module:
    return testbed.mnist_model(name, quick=quick, device=device, progress=progress)


def mnist_stages(name: str, *, quick: bool, device: str, progress: bool) -> list[tuple[float, float, Callable[[], nn.Module]]]:
    """``(epoch, test accuracy, load)`` per stage checkpoint, in training order."""
    return [(float(r["epoch"]), float(r["test_acc"]), lambda r=r: testbed.load_stage(name, r, device=device))
            for r in testbed.mnist_stages(name, quick=quick, progress=progress)]


def mnist_test(limit: int) -> tuple[Tensor, Tensor]:
    return testbed.mnist_data("test", limit)


def imagenet_models(device: str, only: set[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The ImageNet trio that loads here (:class:`infolens.models.LoadedModel`, [0, 1] pixels at its native
    size), and a note per missing model."""
    out, missing = {}, []
    for n in testbed.IMAGENET_TRIO:
        if only is not None and n not in only:
            continue
        try:
            out[n] = testbed.imagenet_model(n, device=device)
        except (ValueError, FileNotFoundError, ImportError, RuntimeError) as e:
            missing.append(f"{n}: not available offline ({str(e).splitlines()[0][:120]})")
    return out, missing


def photos(size: int, *, views: Sequence[str] | None) -> tuple[Tensor, Tensor, list[str]]:
    """Photographs (N, 3, size, size) in [0, 1], the source photograph of each, and each one's view
    (``views``: the testbed views to keep; None: all)."""
    p = testbed.photos(size, quick=False)
    keep = [i for i, v in enumerate(p.views) if views is None or v in views]
    return p.images[keep], torch.as_tensor(p.source).long()[keep], [p.views[i] for i in keep]


def photo_split(source: Tensor, view: list[str], plan: Plan) -> tuple[Tensor, Tensor]:
    """Boolean masks: the measured images (views ``plan.photo_views`` of the even-ranked sources) and the
    held-out images of S1's cut-off rule (every view of the odd-ranked sources), disjoint in source."""
    uniq = torch.unique(source)
    meas_src, held_src = uniq[::2], uniq[1::2]
    if plan.photo_sources is not None:
        meas_src, held_src = meas_src[:plan.photo_sources], held_src[:plan.photo_sources]
    in_views = torch.tensor([v in plan.photo_views for v in view])
    return torch.isin(source, meas_src) & in_views, torch.isin(source, held_src)


# --------------------------------------------------------------------------- measuring (cached)


def _has_maps(model: nn.Module, x: Tensor) -> bool:
    try:
        plan_points(model.eval(), x[:1], "all conv", "conv")
        return True
    except ValueError:
        return False


def _measure(run: RunDir, key: str, model: nn.Module | Callable[[], nn.Module], images: Tensor, source: Tensor,
             settings: Sequence[dict[str, Any]], plan: Plan, device: str) -> dict[str, Any]:
    """Per point and setting: per-layer histograms grouped by source ``(S, B)``, per-source sums and counts
    of each layer's per-image mean SROP, and pooled quantiles per layer. Cached in ``parts/srop_cache/<key>.pt``."""
    path = run.root / "parts" / "srop_cache" / f"{key}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    m = model if isinstance(model, nn.Module) else model()
    res = SpectralRolloff(m, batch_size=plan.batch_size, device=device).measure_at(images, at=POINTS, settings=settings)
    n_src = int(source.max()) + 1
    out: dict[str, Any] = {}
    qs = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
    for (at, i), r in res.items():
        hists, means, quant = [], [], []
        for layer in r.layers:
            v = r.values[layer]
            h = srop_histograms(v)
            hists.append(torch.zeros(n_src, h.shape[1], dtype=torch.float64).index_add_(0, source, h))
            means.append(torch.nanmean(v.double(), dim=1))
            flat = v.double().flatten()
            flat = flat[~torch.isnan(flat)]
            quant.append(torch.quantile(flat, qs) if flat.numel() else torch.full((5,), math.nan, dtype=torch.float64))
        mean = torch.stack(means, 1)  # (N, L)
        ok = ~torch.isnan(mean)
        out[f"{at}/{i}"] = {
            "layers": list(r.layers), "hist": torch.stack(hists),  # (L, S, B)
            "msum": torch.zeros(n_src, mean.shape[1], dtype=torch.float64).index_add_(0, source, mean.nan_to_num(0)),
            "mcnt": torch.zeros(n_src, mean.shape[1], dtype=torch.float64).index_add_(0, source, ok.double()),
            "quant": torch.stack(quant), "lmean": torch.nanmean(mean, 0)}
    atomic_torch_save(out, path)
    return out


RANDOM: tuple[str, ...] = tuple(f"random {s}" for s in SEEDS)
SEED_PAIRS: tuple[tuple[str, str], ...] = tuple((RANDOM[i], RANDOM[j]) for i in range(len(RANDOM))
                                                for j in range(i + 1, len(RANDOM)))
PAIRS: tuple[tuple[str, str], ...] = ((("original", "lowpass"), ("original", "shuffled"), ("original", "noise"))
                                      + tuple(("original", r) for r in RANDOM) + SEED_PAIRS)
"""The distributions S1 and S2 compare."""


def layer_w1(h: dict[str, Tensor], counts: Tensor) -> dict[tuple[str, str], Tensor]:
    """``(R,)`` mean over layers of W1 between the pooled resampled histograms of each pair of :data:`PAIRS`
    (``h[variant]``: ``(L, S, B)`` per-source histograms; ``counts``: ``(R, S)``). One layer at a time,
    each variant resampled once per layer (float32 products of integer counts: exact)."""
    c = counts.float()
    pairs = [p for p in PAIRS if p[0] in h and p[1] in h]
    per: dict[tuple[str, str], list[Tensor]] = {p: [] for p in pairs}
    for l in range(h["original"].shape[0]):
        res = {v: resample_histograms(hv[l].float(), c).double() for v, hv in h.items()}
        for a, b in pairs:
            per[(a, b)].append(wasserstein1(res[a], res[b]))
    return {p: torch.nanmean(torch.stack(v), 0) for p, v in per.items()}


def s1_ratio(w: dict[tuple[str, str], Tensor]) -> Tensor:
    """S1: the smaller of W1(original, shuffled) and W1(original, noise), over W1(original, low-pass)."""
    keep = w[("original", "lowpass")]
    return torch.minimum(*[w[("original", v)] / keep for v in DESTROY])


def s2_ratio(w: dict[tuple[str, str], Tensor], pairs: Tensor | None = None) -> Tensor:
    """S2: mean W1(trained, random init) over mean W1(random i, random j), per resample.

    ``pairs`` ``(R, P)``: indices into :data:`SEED_PAIRS` drawn for each resample (with replacement; the
    bootstrap over seed pairs); the numerator averages W1(trained, seed) over the two seeds of each drawn
    pair, the denominator W1 between the seeds of each drawn pair. ``None``: every pair once (the point
    estimate: the mean over seeds over the mean over all pairs)."""
    between = torch.stack([w[p] for p in SEED_PAIRS], -1)  # (R, P)
    trained = torch.stack([(w[("original", a)] + w[("original", b)]) / 2 for a, b in SEED_PAIRS], -1)
    if pairs is None:
        return trained.mean(-1) / between.mean(-1)
    pairs = pairs.to(between.device).long()
    return trained.gather(-1, pairs).mean(-1) / between.gather(-1, pairs).mean(-1)


def seed_pair_draws(n_resamples: int, *, seed: int = 0) -> Tensor:
    """``(n_resamples, P)`` indices into :data:`SEED_PAIRS`, drawn with replacement (fixed CPU generator)."""
    g = torch.Generator().manual_seed(10_007 + int(seed))
    return torch.randint(0, len(SEED_PAIRS), (n_resamples, len(SEED_PAIRS)), generator=g)


def random_inits(name: str, model: nn.Module, device: str) -> dict[str, Callable[[], nn.Module]]:
    """S2's random initialisations of ``model`` (:data:`SEEDS`): a built-in network rebuilt by its own
    constructor under each seed (its own initialiser); any other model re-initialised with the framework
    default (:func:`infolens.srop.random_init`)."""
    from ...models import BUILTIN_MODELS, build_builtin

    if name in BUILTIN_MODELS:
        return {f"random {s}": (lambda s=s: build_builtin(name, seed=s).to(device).eval()) for s in SEEDS}
    return {f"random {s}": (lambda s=s: random_init(model, seed=s)) for s in SEEDS}


# --------------------------------------------------------------------------- S1 cut-off rule


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, device: str, batch: int = 250) -> Tensor:
    return torch.cat([model(x[i:i + batch].to(device)).argmax(1).cpu() for i in range(0, x.shape[0], batch)])


def choose_cutoff(model: nn.Module, images: Tensor, labels: Tensor | None, device: str) -> dict[str, Any]:
    """S1's low-pass cut-off by the fixed rule (module docstring), on held-out ``images``; accuracy against
    ``labels``, or agreement with the unfiltered prediction when ``labels`` is None."""
    model.eval()
    base_pred = _predict(model, images, device)
    ref = base_pred if labels is None else labels
    acc0 = float((base_pred == ref).double().mean())
    chosen, accs = None, {}
    for c in CUTOFFS:
        acc = float((_predict(model, lowpass_filter(images, c, unit="nyquist").clamp(0, 1), device) == ref)
                    .double().mean())
        accs[c] = acc
        if acc < acc0 - ACC_DROP:
            break
        chosen = c
    return {"cutoff": chosen if chosen is not None else CUTOFFS[0], "kept": chosen is not None, "acc0": acc0,
            "acc": accs.get(chosen if chosen is not None else CUTOFFS[0]), "tried": accs,
            "accuracy": "labels" if labels is not None else "agreement with the unfiltered top-1"}


# --------------------------------------------------------------------------- the claims per model


def _variants(x: Tensor, cutoff: float, seed: int) -> dict[str, Tensor]:
    idx = list(range(x.shape[0]))
    return {"original": x, "shuffled": input_variant(x, "shuffled", indices=idx, seed=seed),
            "noise": input_variant(x, "noise", indices=idx, seed=seed),
            "lowpass": input_variant(x, "lowpass", indices=idx, seed=seed, cutoff=cutoff)}


def s1_s2_model(run: RunDir, name: str, model: nn.Module, x: Tensor, source: Tensor, held: Tensor,
                held_labels: Tensor | None, plan: Plan, device: str, testbed: str,
                tables: dict[str, list]) -> tuple[list[dict], list[dict]]:
    """S1 and S2 rows (one per point) of one model; fills the distribution tables for the figures."""
    cut = choose_cutoff(model, held, held_labels, device)
    tables["cutoffs"].append({"model": name, "testbed": testbed, "cutoff": cut["cutoff"], "kept": cut["kept"],
                              "acc_unfiltered": round(cut["acc0"], 4), "acc_lowpass": round(cut["acc"], 4),
                              "accuracy": cut["accuracy"], "held_out": int(held.shape[0])})
    meas = {}
    for v, xv in _variants(x, cut["cutoff"], plan.seed).items():
        meas[v] = _measure(run, f"{name}.{v}", model, xv, source, [{}], plan, device)
    for label, make in random_inits(name, model, device).items():
        meas[label] = _measure(run, f"{name}.{label.replace(' ', '')}", make, x, source, [{}], plan, device)
    n_src = int(source.max()) + 1
    s1, s2 = [], []
    for at in POINTS:
        d = {v: m[f"{at}/0"] for v, m in meas.items()}
        for v, dv in d.items():
            for j, layer in enumerate(dv["layers"]):
                q = dv["quant"][j].tolist()
                tables["dist"].append({"model": name, "at": at, "variant": v, "layer": layer, "depth": j,
                                       "q10": q[0], "q25": q[1], "median": q[2], "q75": q[3], "q90": q[4],
                                       "mean": float(dv["lmean"][j])})
        h = {v: dv["hist"] for v, dv in d.items()}

        memo: list = []

        def w1(idx: Tensor, h: dict = h, memo: list = memo) -> dict:
            # S1 and S2 share the resamples (same seed): the distances of one matrix are computed once
            for old, w in memo:
                if old.shape == idx.shape and torch.equal(old, idx):
                    return w
            w = layer_w1(h, resample_counts(idx, n_src))
            memo.append((idx.clone(), w))
            return w

        iv = bootstrap(lambda idx: s1_ratio(w1(idx)), n_src, batched=True, seed=plan.seed)
        w = layer_w1(h, resample_counts(torch.arange(n_src), n_src))
        keep = float(w[("original", "lowpass")][0])
        ratios = {v: float(w[("original", v)][0]) / keep if keep > 0 else math.inf for v in DESTROY}
        note = (f"shuffle {ratios['shuffled']:.3g}, noise {ratios['noise']:.3g}; W1(original, low-pass) {keep:.3g}; "
                f"low-pass {cut['cutoff']:g} Nyquist keeps accuracy {cut['acc']:.3f} of {cut['acc0']:.3f}")
        s1.append(s1_row(name, at, iv, cut, note))
        draws = seed_pair_draws(1000, seed=plan.seed)

        def s2_stat(idx: Tensor, draws: Tensor = draws) -> Tensor:
            return s2_ratio(w1(idx), None if idx.ndim == 1 else draws[:idx.shape[0]])

        iv2 = bootstrap(s2_stat, n_src, batched=True, seed=plan.seed)
        trained = sum(float(w[("original", r)][0]) for r in RANDOM) / len(RANDOM)
        between = sum(float(w[p][0]) for p in SEED_PAIRS) / len(SEED_PAIRS)
        s2.append(claim_row(PAPER, "S2", f"{name}@{at}", f"mean-layer W1(trained, random init) / W1(random, random); "
                            f"{len(SEEDS)} seeds, {len(SEED_PAIRS)} seed pairs", iv2, 3.0, side=">=", variant=variant_of(at),
                            note=f"W1(trained, random) {trained:.3g}, W1(random, random) {between:.3g} (mean over "
                                 f"{len(SEED_PAIRS)} seed pairs); the interval resamples images and seed pairs"))
    return s1, s2


def s1_row(name: str, at: str, iv: Any, cut: dict[str, Any], note: str) -> dict[str, Any]:
    """S1's row of one model and point: decided from ``iv`` when a cut-off keeps accuracy within 2 points;
    otherwise inconclusive (the premise of S1, a UI-keeping variant, is missing)."""
    stat = "min over shuffle, noise of mean-layer W1(original, variant) / W1(original, low-pass)"
    if not cut["kept"]:
        return claim_row(PAPER, "S1", f"{name}@{at}", stat, iv, 1.0, side=">", variant=variant_of(at),
                         verdict="inconclusive",
                         note=f"premise missing: no cut-off keeps accuracy within 2 points (at "
                              f"{CUTOFFS[0]:g} Nyquist {cut['acc']:.3f} of {cut['acc0']:.3f}); {note}")
    return claim_row(PAPER, "S1", f"{name}@{at}", stat, iv, 1.0, side=">", variant=variant_of(at), note=note)


def s3_model(run: RunDir, name: str, x: Tensor, plan: Plan, quick: bool, device: str, progress: bool,
             tables: dict[str, list]) -> list[dict]:
    """S3 rows (one per point) of one MNIST model; fills the stage and robustness tables."""
    stages = mnist_stages(name, quick=quick, device=device, progress=progress)
    source = torch.arange(x.shape[0])
    settings = [s for _, s in S3_SETTINGS]
    meas = [_measure(run, f"{name}.stage{k}", load, x, source, settings, plan, device)
            for k, (_, _, load) in enumerate(stages)]
    acc = torch.tensor([a for _, a, _ in stages], dtype=torch.float64)
    epochs = [e for e, _, _ in stages]
    n = x.shape[0]
    rows = []
    for at in POINTS:
        for i, (label, _) in enumerate(S3_SETTINGS):
            ds = [m[f"{at}/{i}"] for m in meas]
            msum = torch.stack([d["msum"].sum(1) / d["mcnt"].sum(1) for d in ds])  # (T, n): layer-averaged
            msum = torch.where(torch.isnan(msum), torch.nanmean(msum, 1, keepdim=True), msum)  # all-dead images
            if i == 0:
                for k, d in enumerate(ds):
                    for j, layer in enumerate(d["layers"] + ["mean over layers"]):
                        val = float(d["lmean"][j]) if j < len(d["layers"]) else float(torch.nanmean(d["lmean"]))
                        tables["stages"].append({"model": name, "at": at, "stage": k, "epoch": epochs[k],
                                                 "test_acc": float(acc[k]), "layer": layer, "depth": j,
                                                 "srop_mean": val})

            def stat(idx: Tensor, msum: Tensor = msum) -> Tensor:
                c = resample_counts(idx, n)
                mm = (c @ msum.T) / c.sum(1, keepdim=True)  # (R, T)
                return spearman(mm, acc.expand_as(mm))

            iv = bootstrap(stat, n, batched=True, seed=plan.seed)
            few = len(stages) < MIN_POINTS
            row = claim_row(PAPER, "S3", f"{name}@{at}", f"Spearman rho(layer-averaged mean SROP, test accuracy) "
                            f"over {len(stages)} stages ({label})", iv, 0.8, side="abs>=", variant=variant_of(at),
                            verdict="inconclusive" if few else None,
                            note=(f"only {len(stages)} stages (a correlation needs >= {MIN_POINTS}); " if few else "")
                            + f"sign {'+' if iv.value >= 0 else '-'}; stages to epoch {max(epochs):g}")
            tables["robustness"].append({"model": name, "at": at, "setting": label, "rho": iv.value,
                                         "ci_low": iv.low, "ci_high": iv.high, "verdict": row["verdict"],
                                         "n_stages": len(stages), "last_epoch": max(epochs)})
            if i == 0:
                rows.append(row)
    return rows


def _s3_most(rows: list[dict], at: str, robustness: list[dict]) -> dict:
    r = most_row(rows, model=f"MNIST set @{at}")
    if at != PRIMARY:
        r["note"] = f"sensitivity (the primary point is {PRIMARY})" + (f"; {r['note']}" if r["note"] else "")
    signs = {math.copysign(1, x["value"]) for x in rows if x["verdict"] == "reproduced"}
    allsigns = "".join("+" if x["value"] >= 0 else "-" for x in rows)
    rob = [x for x in robustness if x["at"] == at and x["setting"] != S3_SETTINGS[0][0]]
    flips = sum(1 for x in rob for y in rows if y["model"].split("@")[0] == x["model"]
                and (x["rho"] >= 0) != (y["value"] >= 0))
    note = f"signs {allsigns}; robustness: {flips} of {len(rob)} alternative settings flip a model's sign"
    if r["verdict"] == "reproduced" and len(signs) > 1:
        r["verdict"] = "not reproduced"
        note += "; reproduced rows disagree in sign (the claim needs one sign for all)"
    r["note"] = f"{r['note']}; {note}"
    return r


# --------------------------------------------------------------------------- the runner


def _most(per: list[dict], at: str, model: str) -> dict:
    """The "most models" row of one point; rows at a point other than :data:`PRIMARY` aggregate into a
    sensitivity row, never into the claim's verdict."""
    return most_row(per, model=model, note="" if at == PRIMARY else f"sensitivity (the primary point is {PRIMARY})")


def claims(out: Path, *, quick: bool, device: str = "cpu", progress: bool = True,
           models: Sequence[str] | None = None) -> list[dict]:
    """Claims S1-S3 on the MNIST set and the ImageNet trio at every measurement point (module docstring):
    writes the result folder ``out`` (tables, figures, meta.json; resumable) and returns the claim rows.
    ``models`` restricts the run to some testbed models (a partial run; "most" rows then count those)."""
    plan = QUICK if quick else FULL
    t0 = time.perf_counter()
    only = None if models is None else set(models)
    run = RunDir(Path(out), writer=is_main(), analysis=PAPER, params={"claims": True, "quick": quick, **asdict(plan),
                                                    "models": sorted(only) if only is not None else "all"}, device=device,
                 seed=plan.seed, overwrite=True, title="SROP: claims S1-S3 at every measurement point",
                 description=__doc__.split("\n\n")[0])
    tables: dict[str, list] = {"cutoffs": [], "dist": [], "stages": [], "robustness": []}
    s1: dict[str, list] = {"MNIST": [], "ImageNet": []}
    s2: list[dict] = []
    s3: list[dict] = []
    skipped: list[str] = []
    xall, yall = mnist_test(10000 if not quick else plan.n_mnist + plan.n_heldout)
    x, held, held_y = xall[:plan.n_mnist], xall[-plan.n_heldout:], yall[-plan.n_heldout:]
    for name in mnist_names():
        if only is not None and name not in only:
            continue
        _progress.say(f"[srop claims] {name}", progress=progress)
        model = mnist_model(name, quick=quick, device=device, progress=progress)
        if not _has_maps(model, x.to(device)):
            skipped.append(f"{name}: no 2-D feature maps")
            continue
        a, b = s1_s2_model(run, name, model, x, torch.arange(x.shape[0]), held, held_y, plan, device, "MNIST", tables)
        s1["MNIST"] += a
        s2 += b
        s3 += s3_model(run, name, x, plan, quick, device, progress, tables)
    nets, missing = imagenet_models(device, only)
    skipped += missing
    for name, lm in nets.items():
        _progress.say(f"[srop claims] {name}", progress=progress)
        px, psrc, pview = photos(int(lm.input_shape[-1]), views=None if plan.held_views is None
                                 else tuple(set(plan.photo_views) | set(plan.held_views)))
        meas, held = photo_split(psrc, pview, plan)
        if plan.held_views is not None:
            held &= torch.tensor([v in plan.held_views for v in pview])
        a, b = s1_s2_model(run, name, lm.model, px[meas], torch.unique(psrc[meas], return_inverse=True)[1],
                           px[held], None, plan, device, "ImageNet", tables)
        s1["ImageNet"] += a
        s2 += b
    rows: list[dict] = []
    for at in POINTS:
        for tb, rs in s1.items():
            per = [r for r in rs if r["model"].endswith(f"@{at}")]
            rows += per
            if per:
                rows.append(_most(per, at, f"{tb} {'set' if tb == 'MNIST' else 'trio'} @{at}"))
    for at in POINTS:
        per = [r for r in s2 if r["model"].endswith(f"@{at}")]
        rows += per
        if per:
            rows.append(_most(per, at, f"all models @{at}"))
    for at in POINTS:
        per = [r for r in s3 if r["model"].endswith(f"@{at}")]
        rows += per
        if per:
            rows.append(_s3_most(per, at, tables["robustness"]))
    run.write_table("claims", rows)
    for k, v in tables.items():
        run.write_table({"dist": "distributions", "stages": "s3_stages", "robustness": "s3_robustness",
                         "cutoffs": "s1_cutoffs"}[k], v)
    figures = _figures(run, tables)
    run.write_meta(order=10, report_tables=["claims", "s3_robustness", "s1_cutoffs"], figures=figures,
                   claim_figures={k: f"figures/{v}.png" for k, v in
                                  (("S1", "srop_s1_distributions"), ("S2", "srop_s2_random"), ("S3", "srop_s3_stages"))
                                  if v in figures},
                   deviations=DEVIATIONS + [f"left out: {s}" for s in skipped])
    run.finish({"seconds": round(time.perf_counter() - t0, 1),
                "verdicts": {f"{r['claim']} {r['model']}": r["verdict"] for r in rows}})
    return rows


FIGURE_CAPTIONS = {
    "srop_s3_stages": "S3: mean channel SROP (thin: per layer; thick: averaged over layers; left axis) and test "
                      "accuracy (dashed, right axis) at every stage checkpoint, per model (rows) and measurement "
                      "point (columns).",
    "srop_s1_distributions": "S1: per-layer SROP distributions (median, band: 25-75 %, images x channels pooled) of "
                             "the originals, the UI-keeping low-pass and the UI-destroying variants (pixel shuffle, "
                             "noise), per model (rows) and measurement point (columns).",
    "srop_s2_random": "S2: per-layer SROP distributions (median, band: 25-75 %) of each trained model beside three "
                      "random initialisations of its architecture (seeds 1, 2 and 3).",
}


def _figures(run: RunDir, tables: dict[str, list]) -> dict[str, str]:
    try:
        from ...plots import srop as splots
    except ImportError:  # pragma: no cover - matplotlib missing
        return {}
    out = {}
    makers = {"srop_s3_stages": lambda: splots.claims_stage_figure(tables["stages"]),
              "srop_s1_distributions": lambda: splots.claims_distribution_figure(
                  tables["dist"], variants=("original", "lowpass", "shuffled", "noise")),
              "srop_s2_random": lambda: splots.claims_distribution_figure(
                  tables["dist"], variants=("original",) + RANDOM, labels={"original": "trained"})}
    for name, make in makers.items():
        if (name == "srop_s3_stages" and not tables["stages"]) or not tables["dist"]:
            continue
        run.save_figure(make(), name)
        out[name] = FIGURE_CAPTIONS[name]
    return out
