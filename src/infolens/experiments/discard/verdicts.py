"""The claims D1-D5 of ``../shared/CLAIMS.md`` under both solvers (:func:`claims`, for ``infolens reproduce``):
the testbeds (the MNIST set with its stage checkpoints and decoders, the ImageNet trio), D3's isometries
(:func:`isometry_rows`) and the verdicts from the tidy tables (:func:`decide_claims`)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...claims import bootstrap, claim_row, most_row, spearman
from ...discard import InformationDiscarding
from ...distributed import gather_table, is_main
from ...results import RunDir
from .measure import (ANALYSIS, DEFAULT_LAYERS, H_ISOMETRY, analyse, block_layers, convergence, default_layers,
                      finish_run, get_decoders)


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


def _imagenet(size: int, quick: bool, device: str) -> tuple[dict[str, Any], torch.Tensor, list[str], torch.Tensor]:
    from ...data import load_photos
    from ...models import load_model

    tb = _testbed()
    if tb is not None:
        ph = tb.photos(size, quick=quick)
        return ({n: (lambda n=n: tb.imagenet_model(n, device=device).model) for n in tb.IMAGENET_TRIO}, ph.images,
                list(ph.names), ph.source)
    x, names = load_photos(size=size)
    return {"efficientnet_lite0": lambda: load_model("efficientnet_lite0", device=device).model}, x, list(names), \
        torch.arange(x.shape[0])


QUICK_CLAIMS = {"n": 3, "steps": 15, "samples": 2, "stages": 3, "stage_n": 3, "dec_train": 100, "dec_val": 50,
                "dec_epochs": 1, "dec_width": 4, "photos": 3, "photo_size": 64, "photo_steps": 5, "photo_samples": 2,
                "iso_widths": (1, 3), "iso_sizes": (28,), "iso_n": 3, "iso_steps": 15}
FULL_CLAIMS = {"n": 10, "steps": 100, "samples": 8, "stages": 99, "stage_n": 6, "dec_train": 1000, "dec_val": 250,
               "dec_epochs": 30, "dec_width": 16, "photos": 3, "photo_size": 128, "photo_steps": 100, "photo_samples": 8,
               "iso_widths": (1, 3, 8), "iso_sizes": (28, 56), "iso_n": 4, "iso_steps": 100}
SOLVERS = ("release", "constrained")


MIN_IMAGES = 3
"""Fewer source images than this give an inconclusive verdict (a bootstrap over one or two images has no spread)."""


def _row(claim: str, model: str, statistic: str, iv: Any, threshold: float, side: str, note: str = "") -> dict[str, Any]:
    """:func:`infolens.claims.claim_row`, inconclusive below :data:`MIN_IMAGES` source images."""
    if iv.n < MIN_IMAGES:
        return claim_row("discard", claim, model, statistic, iv, threshold, side=side, verdict="inconclusive",
                         note=f"only {iv.n} source image(s); at least {MIN_IMAGES} needed. {note}".strip())
    return claim_row("discard", claim, model, statistic, iv, threshold, side=side, note=note)


def _rho(mat: torch.Tensor, xs: torch.Tensor) -> Any:
    """Spearman rho between ``xs`` (K,) and the image mean of ``mat`` (n, K), bootstrapped over images."""
    mat = mat.double()

    def stat(idx: torch.Tensor) -> torch.Tensor:
        means = mat[idx].mean(-2)
        return spearman(xs.double().expand_as(means), means)
    return bootstrap(stat, mat.shape[0], batched=True)


def _mean(vals: torch.Tensor) -> Any:
    vals = vals.double()
    return bootstrap(lambda idx: vals[idx].mean(-1), vals.numel(), batched=True)


def _matrix(rows: Sequence[Mapping[str, Any]], key: str, col: str) -> tuple[torch.Tensor, list[Any]]:
    """(images, columns) matrix of ``key`` with columns sorted by ``col``."""
    cols = sorted({r[col] for r in rows}, key=lambda v: float(v) if col != "layer" else 0)
    by = {(int(r["index"]), r[col]): float(r[key]) for r in rows}
    imgs = sorted({int(r["index"]) for r in rows})
    return torch.tensor([[by.get((i, c), math.nan) for c in cols] for i in imgs]), cols


def isometry_rows(run: RunDir, cfg: Mapping[str, Any], solver: str, device: str) -> list[dict[str, Any]]:
    """D3: identity and orthogonal 1x1 convolutions of several widths and input sizes, measured without
    the ReLU (an isometry must be one at the measurement point), against ``H* = log(sigma0 sqrt(tau)) +
    1/2 log(2 pi e)``; grid 14 (it divides every size, so cells are equal)."""
    if run.has_part("isometry", solver):
        return run.read_part("isometry", solver)
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
                r = InformationDiscarding(net, "0", grid=14, relu=False, solver=solver, steps=cfg["iso_steps"],
                                          device=device).measure(x.to(device))
                for j in range(x.shape[0]):
                    out.append({"kind": kind, "width": w, "size": size, "index": j, "solver": solver,
                                "entropy": float(r.layer_entropy[j, 0]), "deviation": float(r.layer_entropy[j, 0]) - H_ISOMETRY,
                                "feature_error": float(r.feature_error[j, 0])})
    run.write_part("isometry", solver, out)
    return out


def claims(out: Path, *, quick: bool, device: str = "cpu", progress: bool = True, only_mnist: bool = False,
           models: Sequence[str] | None = None, imagenet_models: Sequence[str] | None = None) -> list[dict]:
    """Claims D1-D5 of ``../shared/CLAIMS.md`` under both solvers, on the MNIST set (final models, stage
    checkpoints for D4, decoders for D5) and the ImageNet trio (D2); D3 on isometries. Writes ``out``
    (resumable) and returns the claim rows. ``models``/``imagenet_models`` restrict the testbeds (a
    partial run, e.g. where the MNIST set is not trained yet); the default is every model."""
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
    base = {"grid": 14, "steps": cfg["steps"], "samples": cfg["samples"]}
    dec_rows, accs = [], {}
    for name, (load, stages, load_stage) in nets.items():
        model = load()
        layers = DEFAULT_LAYERS.get(name) or default_layers(model, name)
        decs, drows = get_decoders(run, model, name, layers, tx[:cfg["dec_train"]], tx[cfg["dec_train"]:],
                                   max_epochs=cfg["dec_epochs"], width=cfg["dec_width"], device=device, progress=progress)
        dec_rows += drows
        rows_st = list(stages())
        pick = rows_st if len(rows_st) <= cfg["stages"] else [rows_st[round(i * (len(rows_st) - 1) / (cfg["stages"] - 1))]
                                                              for i in range(cfg["stages"])]
        for solver in SOLVERS:
            analyse(run, model, name, x, names, layers=layers, settings={**base, "solver": solver}, decoders=decs,
                    device=device, progress=progress, n_maps=1)
            for row in pick:
                e = float(row["epoch"])
                accs[(name, f"epoch {e:g}")] = float(row["test_acc"])
                analyse(run, load_stage(row), name, x[:cfg["stage_n"]], names, layers=layers[-1:],
                        settings={**base, "solver": solver}, stage=f"epoch {e:g}", epoch=e, device=device,
                        progress=progress, n_maps=0)
    run.write_table("decoders", dec_rows)
    imagenet: list[str] = []
    if not only_mnist:
        inets, px, pnames, _src = _imagenet(cfg["photo_size"], quick, device)
        inets = {k: v for k, v in inets.items() if imagenet_models is None or k in imagenet_models}
        px, pnames = px[:cfg["photos"]], pnames[:cfg["photos"]]
        for name, load in inets.items():
            model = load()
            imagenet.append(name)
            for solver in SOLVERS:
                analyse(run, model, name, px, pnames, layers=block_layers(model, name), device=device,
                        settings={"grid": 16, "steps": cfg["photo_steps"], "samples": cfg["photo_samples"], "solver": solver},
                        batch_size=8, progress=progress, n_maps=1)
    iso = [r for s in SOLVERS for r in isometry_rows(run, cfg, s, device)]
    run.write_table("isometry", iso)
    rows = gather_table(run, "entropy", sort_by=("model", "solver", "stage", "index", "depth"))
    recon = gather_table(run, "reconstruction", sort_by=("model", "solver", "stage", "index", "depth"))
    out_rows, gaps = decide_claims(rows, recon, iso, accs, list(nets), imagenet)
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
    "ImageNet photographs at reduced size and few images (CPU budget); ImageNet models have no decoders, so D5 is "
    "decided on the MNIST set only.",
    "Noise drawn per (image, layer) from generators seeded by the image index, not the global CUDA stream.",
    "D3's isometries are measured without the release's ReLU (an isometry followed by ReLU is not one).",
    "Decoders: trained on post-ReLU features to a plateau of the held-out loss (release: 5 epochs on raw features); "
    "the uncertainty averages over all samples and channels (release: sample 0, channel 0).",
    "The constrained solver's D5 uses the decoder residual at its own sigma (the release optimises a separate sigma).",
]


def decide_claims(rows: Sequence[Mapping[str, Any]], recon: Sequence[Mapping[str, Any]], iso: Sequence[Mapping[str, Any]],
                  accs: Mapping[tuple[str, str], float], mnist: Sequence[str], imagenet: Sequence[str]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The claim rows (CLAIMS.md) and D4's per-stage gap table, from the tidy tables."""
    out: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    for solver in SOLVERS:
        sel = [r for r in rows if r["solver"] == solver]
        final = [r for r in sel if r["stage"] == "final"]
        d1, d2m, d2i, d4, d5 = [], [], [], [], []
        for m in list(mnist) + list(imagenet):
            fr = [r for r in final if r["model"] == m]
            if not fr:
                continue
            depth_max = max(int(r["depth"]) for r in fr)
            mat, cols = _matrix(fr, "entropy", "depth")
            row = _row("D2", f"{m} [{solver}]", "Spearman rho(depth, mean entropy)",
                            _rho(mat, torch.tensor([float(c) for c in cols])), 0.8, side=">=")
            (d2m if m in mnist else d2i).append(row)
            if m not in mnist:
                continue
            g = torch.tensor([float(r["gap"]) for r in fr if int(r["depth"]) == depth_max])
            d1.append(_row("D1", f"{m} [{solver}]", "deepest layer: mean H(background) - H(stroke) "
                                "(nats)", _mean(g[torch.isfinite(g)]), 0.0, side=">"))
            st = [r for r in sel if r["model"] == m and r["stage"] != "final"]  # deepest layer only
            if st:
                gm, stages = _matrix(st, "gap", "epoch")
                acc = torch.tensor([accs.get((m, f"epoch {float(e):g}"), math.nan) for e in stages])
                for k, e in enumerate(stages):
                    iv = _mean(gm[:, k][torch.isfinite(gm[:, k])])
                    gaps.append({"model": m, "solver": solver, "epoch": float(e), "test_acc": float(acc[k]),
                                 "gap_mean": iv.value, "ci_low": iv.low, "ci_high": iv.high})
                d4.append(_row("D4", f"{m} [{solver}]", "Spearman rho(test accuracy, deepest-layer "
                                    "background - stroke entropy) over stages", _rho(gm, acc), 0.8, side="abs>=",
                                    note=f"{len(stages)} stages"))
            rr = [r for r in recon if r["model"] == m and r["solver"] == solver and r["stage"] == "final"]
            if rr:
                um, ucols = _matrix(rr, "uncertainty", "depth")
                d5.append(_row("D5", f"{m} [{solver}]", "Spearman rho(depth, reconstruction uncertainty)",
                                    _rho(um, torch.tensor([float(c) for c in ucols])), 0.8, side=">="))
        for claim, rs, label in (("D1", d1, "MNIST set"), ("D2", d2m, "MNIST set"), ("D2", d2i, "ImageNet trio"),
                                 ("D4", d4, "MNIST set"), ("D5", d5, "MNIST set")):
            if rs:
                out += rs + [most_row(rs, model=f"{label} [{solver}]")]
        ir = [r for r in iso if r["solver"] == solver]
        d3 = []
        for key in sorted({(r["kind"], int(r["width"]), int(r["size"])) for r in ir}):
            dev = torch.tensor([float(r["deviation"]) for r in ir if (r["kind"], int(r["width"]), int(r["size"])) == key])
            iv = bootstrap(lambda idx, d=dev.double(): d[idx].mean(-1).abs(), dev.numel(), batched=True)
            d3.append(_row("D3", f"{key[0]} width {key[1]} size {key[2]} [{solver}]",
                                "|mean entropy - closed form| (nats)", iv, 0.01, side="<="))
        if d3:
            out += d3 + [most_row(d3, share=1.0, model=f"isometries [{solver}]", note="every width and size")]
    return out, gaps
