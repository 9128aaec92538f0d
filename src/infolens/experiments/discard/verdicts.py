"""The claims D1-D5 of ``docs/claims.md`` under both solvers (:func:`claims`, for ``infolens reproduce``):
the testbeds (the MNIST set with its stage checkpoints and decoders, the ImageNet trio), D3's isometries
(:func:`isometry_rows`) and the verdicts from the tidy tables (:func:`decide_claims`).

The primary variant is the release's solver (``solver="release"``, the official code's procedure); the
constrained optimum gives sensitivity rows, aggregated apart (D5's constrained rows are not the official
definition and say so). Samples (:data:`FULL_CLAIMS`): 100 test digits per model for D1, D2, D5, 30 per
stage for D4, and every source photograph of the testbed at each ImageNet model's native size, views of one
photograph grouped into one unit. A Spearman rho over layers or stages needs :data:`~infolens.claims.MIN_POINTS`
points: every MNIST model is measured at 5 or more layers (:data:`CLAIM_LAYERS`); a model with fewer is left
out of that claim's aggregate, and its row says so."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...claims import AGGREGATE, MIN_POINTS, MIN_UNITS, MOST, bootstrap, claim_row, most_row, spearman
from ...discard import InformationDiscarding
from ...distributed import Unit, gather_table, is_main, run_units
from ...results import RunDir
from .measure import (ANALYSIS, DEFAULT_LAYERS, H_ISOMETRY, analyse, block_layers, convergence, default_layers,
                      finish_run, shared_decoders)


def _testbed() -> Any:
    try:
        from .. import testbed  # type: ignore[attr-defined]
    except ImportError:  # until the testbed is merged: the built-ins and EfficientNet-Lite0
        return None
    return testbed


def _mnist(quick: bool, device: str) -> tuple[dict[str, Any], Any]:
    """The MNIST set: name -> (model loader, stage rows, stage loader)."""
    from ...models import build_builtin, builtin_history, load_checkpoint, pretrained_builtin

    tb = _testbed()
    if tb is not None:
        return ({n: (lambda n=n: tb.mnist_model(n, quick=quick, device=device, progress=False),
                     lambda n=n: tb.mnist_stages(n, quick=quick, progress=False),
                     lambda row, n=n: tb.load_stage(n, row, device=device)) for n in tb.MNIST_SET}, tb.mnist_data)

    def load_row(row: Mapping[str, Any], n: str) -> nn.Module:
        net = build_builtin(n)
        load_checkpoint(row["path"], net)
        return net.to(device).eval()

    from ...data import mnist_tensors
    names = ("mnist_vgg", "mnist_resnet", "mnist_allconv")

    def data(split: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:  # "val": the last training digits
        if split == "val":
            x, y = mnist_tensors("train")
            return x[-limit:], y[-limit:]
        return mnist_tensors(split, limit=limit)
    return ({n: (lambda n=n: pretrained_builtin(n, quick=quick, device=device, progress=False),
                 lambda n=n: builtin_history(n, quick=quick, progress=False), lambda row, n=n: load_row(row, n))
             for n in names}, data)


def _imagenet(device: str) -> dict[str, Any]:
    """The ImageNet trio: name -> loader of a :class:`infolens.models.LoadedModel` (its ``input_shape``
    gives the native size)."""
    from ...models import load_model

    tb = _testbed()
    if tb is not None:
        return {n: (lambda n=n: tb.imagenet_model(n, device=device)) for n in tb.IMAGENET_TRIO}
    return {"efficientnet_lite0": lambda: load_model("efficientnet_lite0", device=device)}


def _photos(size: int, views: str) -> tuple[torch.Tensor, list[str], int]:
    """The testbed photographs at ``size`` px (``views="full"``: the unaltered photographs; ``"all"``: every
    view), the name of each image (``source`` or ``source/view``) and the number of source photographs."""
    tb = _testbed()
    if tb is not None:
        ph = tb.photos(size, quick=views == "full")
        return ph.images, list(ph.names), ph.n_sources
    from ...data import load_photos

    x, names = load_photos(size=size)
    return x, list(names), len(names)


QUICK_CLAIMS = {"n": 3, "batch": 2, "stage_batch": 2, "steps": 15, "samples": 2, "stages": 5, "stage_n": 3,
                "dec_train": 100, "dec_val": 50, "dec_epochs": 1, "dec_width": 4, "photos": 3, "photo_size": 64, "photo_views": "full", "photo_steps": 5,
                "photo_samples": 2, "iso_widths": (1, 3), "iso_sizes": (28,), "iso_n": 3, "iso_steps": 15}
"""A smoke test: every row is filled, most are inconclusive by n (and the trio by its lowered size)."""
FULL_CLAIMS = {"n": 100, "batch": 25, "stage_batch": 15, "steps": 100, "samples": 8, "stages": 99, "stage_n": 30,
               "dec_train": 1000, "dec_val": 250, "dec_epochs": 30, "dec_width": 16, "photos": None, "photo_size": None, "photo_views": "full",
               "photo_steps": 100, "photo_samples": 8, "iso_widths": (1, 3, 8), "iso_sizes": (28, 56), "iso_n": 4,
               "iso_steps": 100}
"""The claims' protocol: 100 test digits per model (D1, D2, D5), 30 per stage at every stage checkpoint (D4),
every source photograph (``photos: None``) at each model's native size (``photo_size: None``). ``batch`` and
``stage_batch`` cut the digits into resumable units (4 of 25 and 2 of 15) that torchrun ranks share evenly;
they change no number (noise is seeded per digit and layer)."""
SOLVERS = ("release", "constrained")
PRIMARY_SOLVER = "release"
"""The primary variant (the official code's procedure); the constrained solver gives sensitivity rows."""

TRIO_ON_CPU = False
"""Whether the claims runner measures the ImageNet trio (D2) on a CPU. The protocol there (every source
photograph at 224/240/260 px, 5 block outputs, 100 steps x 8 samples, both solvers) costs more than 200 s
per photograph, layer set and solver on one core (``benchmarks/RESULTS.md``): about 7 hours for the trio,
far past the paper's 60-minute budget. It is never lowered to fit: where it is not run, the trio's D2 rows
are "inconclusive (protocol not run on this device)" and are decided by a run on a GPU. The MNIST set's
rows (D1, D2, D4, D5) and D3 are measured on every device."""
NOT_ON_DEVICE = ("protocol not run on this device: the ImageNet trio at native size costs about 7 hours of one "
                 "CPU core (benchmarks/RESULTS.md); decided by a GPU run (`--device cuda`)")

MIN_IMAGES = MIN_UNITS
"""Kept for older imports: a decisive row needs :data:`infolens.claims.MIN_UNITS` source units."""

#: Layers measured for the claims (D2 and D5 are Spearman rho over depth: at least 5 points). The ReLU
#: outputs, shallow to deep; where a model has fewer than 5, each linear output before and after its ReLU
#: and the logits (the MLP), or the ReLU outputs and the logits (LeNet-5).
CLAIM_LAYERS: dict[str, list[str]] = {
    "mnist_resnet": ["relu", "layer1.0.relu1", "layer1.0.relu2", "layer2.0.relu1", "layer2.0.relu2",
                     "layer3.0.relu1", "layer3.0.relu2"],
    "mnist_mlp": ["fc1", "relu1", "fc2", "relu2", "fc3"],
    "mnist_lenet5": ["relu1", "relu2", "relu3", "relu4", "fc3"],
}


def variant_of(solver: str) -> str:
    """``"primary"`` for the release solver, ``"sensitivity"`` for any other."""
    return "primary" if solver == PRIMARY_SOLVER else "sensitivity"


def _row(claim: str, model: str, statistic: str, iv: Any, threshold: float, side: str, note: str = "", *,
         solver: str = PRIMARY_SOLVER, verdict: str | None = None, lowered: str | None = None,
         min_units: int | None = MIN_UNITS) -> dict[str, Any]:
    """:func:`infolens.claims.claim_row` with the solver's variant (inconclusive below 15 source units)."""
    if solver != PRIMARY_SOLVER and claim == "D5":
        note = "constrained solver: not the official definition of reconstruction uncertainty" + (
            f"; {note}" if note else "")
    return claim_row("discard", claim, model, statistic, iv, threshold, side=side, note=note, variant=variant_of(solver),
                     verdict=verdict, lowered=lowered, min_units=min_units)


def _rho_row(claim: str, model: str, statistic: str, mat: torch.Tensor, xs: torch.Tensor, threshold: float, side: str,
             what: str, *, solver: str, note: str = "", lowered: str | None = None) -> tuple[dict[str, Any], bool]:
    """A Spearman row over ``what`` (layers or stages); inconclusive and left out of the aggregate (second
    value False) with fewer than :data:`~infolens.claims.MIN_POINTS` points."""
    k = int(xs.numel())
    iv = _rho(mat, xs)
    if k < MIN_POINTS:
        return _row(claim, model, statistic, iv, threshold, side, solver=solver, verdict="inconclusive",
                    note=f"only {k} {what} (a correlation needs >= {MIN_POINTS}): left out of the claim"
                         + (f"; {note}" if note else "")), False
    return _row(claim, model, statistic, iv, threshold, side, f"{k} {what}" + (f"; {note}" if note else ""),
                solver=solver, lowered=lowered), True


def _rho(mat: torch.Tensor, xs: torch.Tensor) -> Any:
    """Spearman rho between ``xs`` (K,) and the unit mean of ``mat`` (n, K), bootstrapped over units (rows).
    A missing value (NaN) in ``mat`` propagates: the row's rho is NaN, hence inconclusive."""
    mat = mat.double()

    def stat(idx: torch.Tensor) -> torch.Tensor:
        means = mat[idx].mean(-2)
        return spearman(xs.double().expand_as(means), means)
    return bootstrap(stat, mat.shape[0], batched=True)


def _mean(vals: torch.Tensor) -> Any:
    vals = vals.double()
    return bootstrap(lambda idx: vals[idx].mean(-1), vals.numel(), batched=True)


def source_of(row: Mapping[str, Any]) -> str:
    """The source unit of a table row: the photograph of a view (``"chelsea/flip"`` -> ``"chelsea"``), the
    digit otherwise (the row's ``image`` name, else its index)."""
    name = row.get("image")
    return str(name).split("/")[0] if name not in (None, "") else str(int(row["index"]))


def _matrix(rows: Sequence[Mapping[str, Any]], key: str, col: str) -> tuple[torch.Tensor, list[Any]]:
    """(source units, columns) matrix of ``key`` with columns sorted by ``col``: the views of one source
    photograph averaged into one row; a missing (unit, column) cell is NaN (and propagates)."""
    cols = sorted({r[col] for r in rows}, key=lambda v: float(v) if col != "layer" else 0)
    acc: dict[tuple[str, Any], list[float]] = {}
    for r in rows:
        acc.setdefault((source_of(r), r[col]), []).append(float(r[key]))
    units = sorted({source_of(r) for r in rows})
    by = {k: sum(v) / len(v) for k, v in acc.items()}
    return torch.tensor([[by.get((u, c), math.nan) for c in cols] for u in units], dtype=torch.float64), cols


def isometry_rows(cfg: Mapping[str, Any], solver: str, device: str) -> list[dict[str, Any]]:
    """D3: identity and orthogonal 1x1 convolutions of several widths and input sizes, measured without
    the ReLU (an isometry must be one at the measurement point), against ``H* = log(sigma0 sqrt(tau)) +
    1/2 log(2 pi e)``; grid 14 (it divides every size, so cells are equal)."""
    out = []
    for kind in ("identity", "orthogonal"):
        for w in cfg["iso_widths"]:
            for size in cfg["iso_sizes"]:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(w * 1000 + size)
                    conv = nn.Conv2d(w, w, 1, bias=False)
                    nn.init.orthogonal_(conv.weight.view(w, w)) if kind == "orthogonal" else \
                        torch.nn.init.eye_(conv.weight.view(w, w))
                    x = 0.2 + 0.6 * torch.rand(cfg["iso_n"], w, size, size)
                net = nn.Sequential(conv).eval()
                r = InformationDiscarding(net, "0", grid=14, relu=False, solver=solver, n_steps=cfg["iso_steps"],
                                          device=device).measure(x.to(device))
                for j in range(x.shape[0]):
                    out.append({"kind": kind, "width": w, "size": size, "index": j, "solver": solver,
                                "entropy": float(r.layer_entropy[j, 0]), "deviation": float(r.layer_entropy[j, 0]) - H_ISOMETRY,
                                "feature_error": float(r.feature_error[j, 0])})
    return out


def claims(out: Path, *, quick: bool, device: str = "cpu", progress: bool = True, only_mnist: bool | None = None,
           models: Sequence[str] | None = None, imagenet_models: Sequence[str] | None = None) -> list[dict]:
    """Claims D1-D5 of ``docs/claims.md`` under both solvers, on the MNIST set (final models, stage
    checkpoints for D4, decoders for D5) and the ImageNet trio (D2); D3 on isometries. Writes ``out``
    (resumable) and returns the claim rows. ``models``/``imagenet_models`` restrict the testbeds (a
    partial run, e.g. where the MNIST set is not trained yet); the default is every model.
    ``only_mnist`` leaves the trio out, its D2 rows then "inconclusive (protocol not run on this device)";
    by default (None) it is True for a full run on a CPU (unless :data:`TRIO_ON_CPU`), False for a quick run
    and on a GPU."""
    if only_mnist is None:
        only_mnist = not quick and not str(device).startswith("cuda") and not TRIO_ON_CPU
    cfg = QUICK_CLAIMS if quick else FULL_CLAIMS
    t0 = time.perf_counter()
    run = RunDir(out, writer=is_main(), analysis=ANALYSIS, params={"quick": quick, "cfg": cfg, "only_mnist": only_mnist,
                                                 "models": models, "imagenet_models": imagenet_models}, device=device,
                 title="Information discarding (arXiv 1906.04109): claims D1-D5",
                 description="")
    nets, mnist_data = _mnist(quick, device)
    nets = {k: v for k, v in nets.items() if models is None or k in models}
    x, _ = mnist_data("test", cfg["n"])
    names = [f"mnist-test-{i:05d}" for i in range(x.shape[0])]
    tx = torch.cat([mnist_data("train", cfg["dec_train"])[0], mnist_data("val", cfg["dec_val"])[0]])
    base = {"grid": 14, "n_steps": cfg["steps"], "n_samples": cfg["samples"]}
    loaded = {name: load() for name, (load, _, _) in nets.items()}
    layer_sets = {name: CLAIM_LAYERS.get(name) or DEFAULT_LAYERS.get(name) or default_layers(model, name)
                  for name, model in loaded.items()}
    decoders, _ = shared_decoders(run, loaded, layer_sets, tx[:cfg["dec_train"]], tx[cfg["dec_train"]:],
                                  max_epochs=cfg["dec_epochs"], width=cfg["dec_width"], device=device,
                                  progress=progress)
    accs = {}
    for name, (_, stages, load_stage) in nets.items():
        model, layers, decs = loaded[name], layer_sets[name], decoders[name]
        rows_st = list(stages())
        pick = rows_st if len(rows_st) <= cfg["stages"] else [rows_st[round(i * (len(rows_st) - 1) / (cfg["stages"] - 1))]
                                                              for i in range(cfg["stages"])]
        for solver in SOLVERS:
            analyse(run, model, name, x, names, layers=layers, settings={**base, "solver": solver}, decoders=decs,
                    batch_size=cfg["batch"], device=device, progress=progress, n_maps=1)
            for row in pick:
                e = float(row["epoch"])
                accs[(name, f"epoch {e:g}")] = float(row["test_acc"])
                analyse(run, load_stage(row), name, x[:cfg["stage_n"]], names, layers=layers[-1:],
                        settings={**base, "solver": solver}, stage=f"epoch {e:g}", epoch=e, device=device,
                        batch_size=cfg["stage_batch"], progress=progress, n_maps=0)
    imagenet: list[str] = []
    photo_lowered: dict[str, str] = {}
    if not only_mnist:
        inets = {k: v for k, v in _imagenet(device).items() if imagenet_models is None or k in imagenet_models}
        for name, load in inets.items():
            lm = load()
            native = int(lm.input_shape[-1])
            size = cfg["photo_size"] or native
            px, pnames, total = _photos(size, cfg["photo_views"])
            if cfg["photos"] is not None:  # keep whole source photographs (every view of each kept one)
                keep_src = sorted({n.split("/")[0] for n in pnames})[:cfg["photos"]]
                sel = [i for i, n in enumerate(pnames) if n.split("/")[0] in keep_src]
                px, pnames = px[sel], [pnames[i] for i in sel]
            kept = len({n.split("/")[0] for n in pnames})
            low = ([f"{total - kept} of {total} source photographs dropped"] if kept < total else []) + \
                  ([f"{size} px instead of the native {native} px"] if size != native else [])
            if low:
                photo_lowered[name] = "; ".join(low)
            imagenet.append(name)
            for solver in SOLVERS:
                analyse(run, lm.model, name, px, pnames, layers=block_layers(lm.model, name, most=5), device=device,
                        settings={"grid": 16, "n_steps": cfg["photo_steps"], "n_samples": cfg["photo_samples"], "solver": solver},
                        batch_size=8, progress=progress, n_maps=1)
    run_units(run, "isometry", [Unit(key=s, indices=(k,)) for k, s in enumerate(SOLVERS)],
              lambda u: isometry_rows(cfg, SOLVERS[u.indices[0]], device), desc="isometries", progress=progress)
    iso = gather_table(run, "isometry", sort_by=("solver", "kind", "width", "size", "index"))
    rows = gather_table(run, "entropy", sort_by=("model", "solver", "stage", "index", "depth"))
    recon = gather_table(run, "reconstruction", sort_by=("model", "solver", "stage", "index", "depth"))
    full = FULL_CLAIMS
    cut = [f"{k} {cfg[k]} (protocol {full[k]})" for k in ("steps", "samples", "photo_steps", "photo_samples",
                                                          "iso_steps", "dec_epochs", "dec_width") if cfg[k] < full[k]]
    out_rows, gaps = decide_claims(rows, recon, iso, accs, list(nets), imagenet, lowered=photo_lowered,
                                   protocol_lowered=", ".join(cut) or None)
    if only_mnist and imagenet_models is None:  # the trio's D2 rows say why they are not decided here
        # the testbed's aggregate row (as most_row would write it), so the claim's headline shows the trio undecided
        out_rows += [_row("D2", f"ImageNet trio [{solver}]", f"{AGGREGATE} (Spearman rho(depth, mean entropy))",
                          math.nan, MOST, ">=", NOT_ON_DEVICE, solver=solver, verdict="inconclusive", min_units=None)
                     for solver in SOLVERS]
    if is_main():
        run.write_table("stages_gap", gaps)
    conv = convergence(rows)
    desc = ("Claims of arXiv 1906.04109 decided on the testbed under both solvers: 'release' (the official code's "
            "procedure: SGD on sigma, lambda 5, the step closest to error 1.5) and 'constrained' (the exact optimum "
            "at error 1.5). Noise in the model's normalised input space (the release); entropies in nats per cell. "
            "Verdicts: " + "; ".join(f"{r['claim']} {r['model']}: {r['verdict']}" for r in out_rows
                                       if r['model'].startswith(('most', 'MNIST', 'ImageNet', 'isometries')))
            + f". Convergence: {conv}." + (" Quick mode: fewer images and steps." if quick else ""))
    run.meta["description"] = desc
    finish_run(run, t0=t0, order=30, claim_rows=out_rows, extra_meta={
        "claim_figures": {"D1": "figures/maps.png", "D2": "figures/depth.png", "D3": "figures/depth.png",
                          "D4": "figures/stages.png", "D5": "figures/reconstruction.png"},
        "deviations": DEVIATIONS + ([f"quick mode: {cfg['steps']} steps x {cfg['samples']} samples, {cfg['n']} images"]
                                    if quick else [])})
    return out_rows


DEVIATIONS = [
    "MNIST: 14 x 14 cells of 2 x 2 pixels (the release's 16 cells per side do not divide 28 pixels).",
    "ImageNet photographs: every source photograph's unaltered view at each model's native size (224, 240, 260 px); "
    "the mirror and corner views are not measured (CPU budget); ImageNet models have no decoders, so D5 is decided on "
    "the MNIST set only.",
    "Layers: every ReLU output of the convolutional MNIST models; the MLP at each linear output before and after its "
    "ReLU plus the logits, LeNet-5 at its ReLU outputs plus the logits (a Spearman rho over depth needs >= 5 points); "
    "the trio at 5 block outputs spread evenly over depth.",
    "Primary variant: the release's solver; the constrained optimum is a sensitivity row, aggregated apart.",
    "On a CPU the ImageNet trio is not measured (about 7 hours of one core at the protocol; TRIO_ON_CPU): its D2 rows "
    "are inconclusive (protocol not run on this device) and are decided by a GPU run.",
    "Noise drawn per (image, layer) from generators seeded by the image index, not the global CUDA stream.",
    "D3's isometries are measured without the release's ReLU (an isometry followed by ReLU is not one).",
    "Decoders: trained on post-ReLU features to a plateau of the held-out loss (release: 5 epochs on raw features); "
    "the uncertainty averages over all samples and channels (release: sample 0, channel 0).",
    "The constrained solver's D5 uses the decoder residual at its own sigma (the release optimises a separate sigma).",
]


def decide_claims(rows: Sequence[Mapping[str, Any]], recon: Sequence[Mapping[str, Any]], iso: Sequence[Mapping[str, Any]],
                  accs: Mapping[tuple[str, str], float], mnist: Sequence[str], imagenet: Sequence[str], *,
                  lowered: Mapping[str, str] | None = None, protocol_lowered: str | None = None
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The claim rows (docs/claims.md) and D4's per-stage gap table, from the tidy tables.

    Release rows are ``primary``, constrained rows ``sensitivity``; each solver gets its own "most" rows.
    ``lowered``: per ImageNet model, what its photographs lowered (dropped photographs, a size below the
    native one): its rows are inconclusive and say so. ``protocol_lowered``: a solver setting lowered below
    the release's for every row (a quick run): every row is inconclusive and names it."""
    lowered = dict(lowered or {})

    def low(m: str | None = None) -> str | None:
        return "; ".join(x for x in (protocol_lowered, lowered.get(m or "")) if x) or None

    out: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    for solver in SOLVERS:
        sel = [r for r in rows if r["solver"] == solver]
        final = [r for r in sel if r["stage"] == "final"]
        per: dict[tuple[str, str], list[tuple[dict[str, Any], bool]]] = {
            k: [] for k in (("D1", "MNIST set"), ("D2", "MNIST set"), ("D2", "ImageNet trio"), ("D4", "MNIST set"),
                            ("D5", "MNIST set"))}
        for m in list(mnist) + list(imagenet):
            fr = [r for r in final if r["model"] == m]
            if not fr:
                continue
            label = f"{m} [{solver}]"
            depth_max = max(int(r["depth"]) for r in fr)
            mat, cols = _matrix(fr, "entropy", "depth")
            per[("D2", "MNIST set" if m in mnist else "ImageNet trio")].append(_rho_row(
                "D2", label, "Spearman rho(depth, mean entropy)", mat, torch.tensor([float(c) for c in cols]), 0.8,
                ">=", "layers", solver=solver, lowered=low(m)))
            if m not in mnist:
                continue
            g = torch.tensor([float(r["gap"]) for r in fr if int(r["depth"]) == depth_max], dtype=torch.float64)
            ok = torch.isfinite(g)  # a digit without background or stroke cells has no gap (not a missing value)
            per[("D1", "MNIST set")].append((_row(
                "D1", label, "deepest layer: mean H(background) - H(stroke) (nats)", _mean(g[ok]), 0.0, ">",
                "" if bool(ok.all()) else f"{int((~ok).sum())} digits without background or stroke cells left out",
                solver=solver, lowered=low(m)), True))
            st = [r for r in sel if r["model"] == m and r["stage"] != "final"]  # deepest layer only
            if st:
                gm, stages = _matrix(st, "gap", "epoch")
                keep = ~torch.isnan(gm).all(1)  # digits without cells of either kind (NaN at every stage)
                gm = gm[keep]
                acc = torch.tensor([accs.get((m, f"epoch {float(e):g}"), math.nan) for e in stages], dtype=torch.float64)
                for k, e in enumerate(stages):
                    iv = _mean(gm[:, k][torch.isfinite(gm[:, k])])
                    gaps.append({"model": m, "solver": solver, "epoch": float(e), "test_acc": float(acc[k]),
                                 "gap_mean": iv.value, "ci_low": iv.low, "ci_high": iv.high})
                per[("D4", "MNIST set")].append(_rho_row(
                    "D4", label, "Spearman rho(test accuracy, deepest-layer background - stroke entropy) over stages",
                    gm, acc, 0.8, "abs>=", "stages", solver=solver, lowered=low(m)))
            rr = [r for r in recon if r["model"] == m and r["solver"] == solver and r["stage"] == "final"]
            if rr:
                um, ucols = _matrix(rr, "uncertainty", "depth")
                per[("D5", "MNIST set")].append(_rho_row(
                    "D5", label, "Spearman rho(depth, reconstruction uncertainty)", um,
                    torch.tensor([float(c) for c in ucols]), 0.8, ">=", "layers", solver=solver, lowered=low(m),
                    note=decoder_share(rr)))
        for (claim, label), pairs in per.items():
            if not pairs:
                continue
            rs = [r for r, _ in pairs]
            counted = [r for r, ok in pairs if ok]
            left = [r["model"] for r, ok in pairs if not ok]
            out += rs
            if counted:
                out.append(_most(counted, f"{label} [{solver}]", solver, left))
        ir = [r for r in iso if r["solver"] == solver]
        d3 = []
        for key in sorted({(r["kind"], int(r["width"]), int(r["size"])) for r in ir}):
            dev = torch.tensor([float(r["deviation"]) for r in ir if (r["kind"], int(r["width"]), int(r["size"])) == key])
            iv = bootstrap(lambda idx, d=dev.double(): d[idx].mean(-1).abs(), dev.numel(), batched=True)
            d3.append(_row("D3", f"{key[0]} width {key[1]} size {key[2]} [{solver}]",
                           "|mean entropy - closed form| (nats)", iv, 0.01, "<=", solver=solver,
                           min_units=None, lowered=low()))  # a closed-form check of the metric, not a sample of sources
        if d3:
            out += d3 + [most_row(d3, share=1.0, model=f"isometries [{solver}]",
                                  note="every width and size" + ("" if solver == PRIMARY_SOLVER else "; sensitivity"))]
    return out, gaps


def decoder_share(rows: Sequence[Mapping[str, Any]]) -> str:
    """D5's note: how much of the reconstruction uncertainty is the noise's and how much the decoder's own.

    Per layer, the mean uncertainty minus the mean of the same quantity on clean features (the decoder's own
    error, ``clean``); set against the spread of the uncertainty across layers. Where the noise adds little,
    the order over depth is the order of the decoders' errors, which retraining a decoder can change."""
    if any(r.get("clean") in (None, "") for r in rows):  # a table without the decoder's clean error
        return ""
    per: dict[Any, list[tuple[float, float]]] = {}
    for r in rows:
        per.setdefault(r["depth"], []).append((float(r["uncertainty"]), float(r["clean"])))
    unc = [sum(u for u, _ in v) / len(v) for v in per.values()]
    add = [sum(u - c for u, c in v) / len(v) for v in per.values()]
    spread = max(unc) - min(unc)
    if not (math.isfinite(spread) and all(math.isfinite(a) for a in add)) or len(unc) < 2:
        return ""
    big = max(add, key=abs)
    text = (f"noise adds {min(add):+.3f} to {max(add):+.3f} to the decoder's clean error per layer, against a spread "
            f"of {spread:.3f} across layers")
    return text + (": the decoders' own errors set the order" if abs(big) < 0.1 * spread else "")


def _most(rows: list[dict[str, Any]], model: str, solver: str, left: Sequence[str]) -> dict[str, Any]:
    notes = []
    if solver != PRIMARY_SOLVER:
        notes.append(f"sensitivity (the primary variant is the {PRIMARY_SOLVER} solver)")
    if left:
        notes.append(f"left out (fewer than {MIN_POINTS} points): {', '.join(left)}")
    return most_row(rows, model=model, note="; ".join(notes))
