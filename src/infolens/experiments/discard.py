"""Information discarding (arXiv 1906.04109): layer-wise discarded information through depth, pixel-wise
entropy maps, reconstruction uncertainty, and the claims D1-D5 of ``../shared/CLAIMS.md``. CLI command
``infolens discard``; :func:`claims` for ``infolens reproduce``; a section of ``infolens demo``.

Protocol (``../shared/METHODS.md`` section 2; mechanics in :mod:`infolens.discard`): for every image and
layer, sigma such that the post-ReLU feature error is 1.5 times that of uniform 0.01 noise, in the model's
normalised input space, under ``solver="release"`` (the official code's procedure) and ``"constrained"``
(the exact optimum). Claims (fixed before any result): D1 background (no ink) minus stroke (mean ink > 0.2)
cells at the deepest layer; D2 Spearman rho(depth, mean entropy) per model, both testbeds; D3 isometries
against the closed form within 0.01 nats; D4 rho(test accuracy, D1's gap) over stage checkpoints; D5
rho(depth, reconstruction uncertainty) per MNIST model. Intervals: bootstrap over images
(:func:`infolens.claims.bootstrap`). Work is done in resumable units of global image indices.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import _progress
from ..discard import HALF_LOG_2PI_E, FeatureDecoder, InformationDiscarding, ReconstructionUncertainty, train_decoder
from ..discard.reconstruction import reconstruction_at_sigma
from ..distributed import Unit, gather_table, run_units, work_units
from ..probe import parse_layer_selection, resolve_layers
from ..claims import bootstrap, claim_row, most_row, spearman
from ..results import RunDir, atomic_torch_save

HELP = ("Information discarding (arXiv 1906.04109): pixel-wise entropy maps and the discarded information "
        "of each layer, with reconstruction uncertainty")
TAKES_MODEL = True
ANALYSIS = "discard"

#: Layers measured by default: the ReLU outputs (the release measures after ReLU), shallow to deep.
DEFAULT_LAYERS: dict[str, list[str]] = {
    "mnist_vgg": ["features.2", "features.5", "features.9", "features.12", "classifier.1"],
    "mnist_resnet": ["relu", "layer1.0.relu2", "layer2.0.relu2", "layer3.0.relu2"],
    "mnist_allconv": ["features.2", "features.5", "features.8", "features.11", "features.14"],
}

H_ISOMETRY = math.log(0.01 * math.sqrt(1.5)) + HALF_LOG_2PI_E
"""Mean entropy (nats) of an isometric layer at the defaults (sigma = 0.01 sqrt(1.5)): -2.9835."""


def default_layers(model: nn.Module, name: str, *, most: int = 5) -> list[str]:
    """The built-ins' ReLU outputs; otherwise up to ``most`` ReLU modules spread evenly over depth."""
    if name in DEFAULT_LAYERS:
        return list(DEFAULT_LAYERS[name])
    relus = [n for n, m in model.named_modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU))]
    if not relus:
        raise ValueError(f"model {name!r} has no ReLU-like modules to choose by default; pass --layers")
    if len(relus) <= most:
        return relus
    return [relus[round(i * (len(relus) - 1) / (most - 1))] for i in range(most)]


def block_layers(model: nn.Module, name: str, *, most: int = 4) -> list[str]:
    """EfficientNet's block outputs ``_blocks.k`` (each module runs once per pass; its activations are
    reused inside a block), ``most`` spread evenly from the first to the last; else :func:`default_layers`."""
    blocks = getattr(model, "_blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        return default_layers(model, name, most=most)
    n = len(blocks)
    return [f"_blocks.{round(i * (n - 1) / (most - 1))}" for i in range(most)]


def parse_grid(value: str | int | None) -> int | None:
    """``--grid``: cells per side, or ``pixel`` for one sigma per pixel."""
    if value is None or str(value).lower() in ("pixel", "none", "0"):
        return None
    try:
        g = int(value)
    except ValueError:
        raise ValueError(f"--grid must be a positive int or 'pixel', got {value!r}") from None
    if g < 1:
        raise ValueError(f"--grid must be a positive int or 'pixel', got {value!r}")
    return g


# --------------------------------------------------------------------------- decoders


def get_decoders(run: RunDir, model: nn.Module, tag: str, layers: Sequence[str], train_images: torch.Tensor,
                 held_out: torch.Tensor, *, max_epochs: int = 30, width: int = 16, seed: int = 0, device: str = "cpu",
                 progress: bool = True) -> tuple[dict[str, nn.Module], list[dict[str, Any]]]:
    """One :class:`infolens.discard.FeatureDecoder` per layer, trained on ``train_images`` to a plateau of
    the loss on ``held_out`` and kept in ``decoders/TAG-LAYER.pt`` with its history (a resumed run reuses
    them). Returns the decoders and one row per layer (plateau loss, epochs, plateau reached)."""
    out, rows = {}, []
    for layer in _progress.track(list(layers), desc=f"decoders {tag}", progress=progress):
        path = run.root / "decoders" / f"{tag}-{layer}.pt"
        if path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            dec = FeatureDecoder(**saved["config"])
            dec.load_state_dict(saved["state_dict"])
            hist = saved["history"]
        else:
            dec, hist = train_decoder(model, layer, train_images, held_out, width=width, max_epochs=max_epochs,
                                      seed=seed, device=device)
            atomic_torch_save({"config": dec.config, "history": hist,
                               "state_dict": {k: v.cpu() for k, v in dec.state_dict().items()}}, path)
        out[layer] = dec.to(device).eval()
        rows.append({"model": tag, "layer": layer, "plateau_loss": hist["plateau_loss"], "epochs": hist["epochs"],
                     "plateau": hist["plateau"], "train_images": int(train_images.shape[0]),
                     "held_out_images": int(held_out.shape[0])})
    return out, rows


def recon_settings(settings: Mapping[str, Any], method: InformationDiscarding) -> dict[str, Any]:
    """The reconstruction solver's settings matching the pixel-wise method's (grid, space, steps...)."""
    return {"grid": method.grid, "space": method.space, "relu": method.relu, "steps": method.steps,
            "samples": method.samples, "tau": method.tau, "sigma0": method.sigma0, "seed": method.seed,
            "internal_batch_size": method.internal_batch_size}


# --------------------------------------------------------------------------- measurement


def analyse(run: RunDir, model: nn.Module, model_name: str, images: torch.Tensor, names: Sequence[str], *,
            layers: Sequence[str], settings: Mapping[str, Any], batch_size: int = 64, stage: str = "final",
            epoch: float | None = None, decoders: Mapping[str, nn.Module] | None = None, recon_samples: int = 8,
            n_maps: int = 4, device: str = "cpu", progress: bool = True) -> int:
    """Tables ``entropy`` (image x layer) and ``reconstruction`` for ``images``, in resumable units of
    global image indices; entropy maps of the first ``n_maps`` images in ``maps/MODEL-STAGE.pt``.
    Returns the number of units computed by this process (0 when a resumed run had them all)."""
    model = model.to(device).eval()
    method = InformationDiscarding(model, list(layers), device=device, **settings)
    layers = method.layers
    tag = f"{model_name}-{method.solver}-{stage}"
    units = [Unit(key=f"{tag}-{u.key}", indices=u.indices) for u in work_units(images.shape[0], batch_size)]
    depth = {name: i for i, name in enumerate(method.layers)}

    def unit_fn(u: Unit) -> list[dict[str, Any]]:
        idx = list(u.indices)
        x = images[idx].to(device)
        r = method.measure(x, indices=idx)
        gap = ink_gap(x, r.entropy_map).tolist()
        rows = [{"model": model_name, "stage": stage, "epoch": epoch, "image": names[row["index"]], **row,
                 "gap": gap[idx.index(row["index"])][row["depth"]]} for row in r.to_rows()]
        if decoders:  # release: its own sigma optimisation (step_capability_y); constrained: at its sigma
            rec = (ReconstructionUncertainty(model, decoders, **recon_settings(settings, method)).measure(x, indices=idx)
                   if method.solver == "release" else
                   reconstruction_at_sigma(model, decoders, x, r, indices=idx, seed=method.seed, samples=method.samples))
            run.write_part("reconstruction", u.key, [{"model": model_name, "stage": stage, "solver": method.solver, **row}
                                                     for row in rec.to_rows()])
        first = [j for j, i in enumerate(idx) if i < n_maps]
        if first:
            atomic_torch_save({"images": x[first].cpu(), "maps": r.entropy_map[first].cpu(), "layers": r.layers,
                               "names": [names[idx[j]] for j in first], "indices": [idx[j] for j in first]},
                              run.root / "maps" / f"{u.key}.pt")
        return rows

    return run_units(run, "entropy", units, unit_fn, desc=f"discard {tag}", progress=progress)


def _ci(vals: torch.Tensor) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean over images (claims.bootstrap, fixed seed)."""
    if vals.numel() < 2:
        return math.nan, math.nan
    iv = bootstrap(lambda idx: vals[idx].mean(-1), vals.numel(), batched=True)
    return iv.low, iv.high


def layer_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, solver, stage, layer): mean entropy over images with its 95 % bootstrap interval,
    the pixel-space mean, the cumulative maximum, the feature error and the convergence share."""
    acc: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        acc[(r["model"], r.get("solver", "release"), str(r["stage"]), int(r["depth"]), r["layer"])].append(r)
    out = []
    for (model, solver, stage, depth, layer), rs in sorted(acc.items(), key=lambda kv: (_model_key(kv[0][0]),
                                                                                        *kv[0][1:4])):
        ent = torch.tensor([float(r["entropy"]) for r in rs], dtype=torch.float64)
        lo, hi = _ci(ent)
        mean = lambda k: sum(float(r[k]) for r in rs) / len(rs)  # noqa: E731
        out.append({"model": model, "solver": solver, "stage": stage, "epoch": rs[0].get("epoch"), "depth": depth,
                    "layer": layer, "images": len(rs), "entropy_mean": float(ent.mean()), "ci_low": lo, "ci_high": hi,
                    "entropy_std": float(ent.std()) if len(rs) > 1 else 0.0, "entropy_pixel_mean": mean("entropy_pixel"),
                    "entropy_cummax_mean": mean("entropy_cummax"), "feature_error_mean": mean("feature_error"),
                    "converged_share": mean("converged"), "at_step_limit_share": mean("at_step_limit"),
                    "steps_run_mean": mean("steps_run")})
    return out


def recon_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, solver, layer): mean reconstruction uncertainty and the decoder's clean error."""
    acc: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        acc[(r["model"], r.get("solver", "release"), int(r["depth"]), r["layer"])].append(r)
    return [{"model": k[0], "solver": k[1], "depth": k[2], "layer": k[3], "images": len(v),
             "uncertainty_mean": sum(float(r["uncertainty"]) for r in v) / len(v),
             "clean_mean": sum(float(r["clean"]) for r in v) / len(v),
             "converged_share": sum(float(r["converged"]) for r in v) / len(v)}
            for k, v in sorted(acc.items(), key=lambda kv: (_model_key(kv[0][0]), *kv[0][1:3]))]


def _model_key(name: str) -> tuple[bool, str]:
    return (not str(name).startswith("mnist"), str(name))


def convergence(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Share of (image, layer) pairs converged (kept error within 10 % of tau) and stopped at the step
    limit, per solver."""
    out = {}
    for solver in sorted({r.get("solver", "release") for r in rows}):
        rs = [r for r in rows if r.get("solver", "release") == solver]
        out[solver] = {"pairs": len(rs), "converged": round(sum(bool(r["converged"]) for r in rs) / len(rs), 4),
                       "at step limit": round(sum(bool(r["at_step_limit"]) for r in rs) / len(rs), 4)}
    return out


def finish_run(run: RunDir, *, t0: float, order: int | None = None, extra_summary: Mapping[str, Any] | None = None,
               claim_rows: Sequence[Mapping[str, Any]] = (), extra_meta: Mapping[str, Any] | None = None
               ) -> dict[str, Any]:
    """Merge the tables, write the summaries, the figures and the headline numbers."""
    from ..plots import discard as dplots

    rows = gather_table(run, "entropy", sort_by=("model", "solver", "stage", "index", "depth"))
    summary_rows = layer_summary(rows)
    run.write_table("layers", summary_rows)
    recon = (gather_table(run, "reconstruction", sort_by=("model", "solver", "stage", "index", "depth"))
             if run.part_keys("reconstruction") else [])
    if recon:
        run.write_table("reconstruction_summary", recon_summary(recon))
    curves: dict[str, dict[str, Any]] = {}
    for r in summary_rows:
        if r["stage"] == "final":
            curves.setdefault(f"{r['model']} [{r['solver']}]", {})[r["layer"]] = round(r["entropy_mean"], 4)
    summary = {"mean entropy per layer (nats, noise space), shallow to deep": curves,
               "convergence (share of image x layer pairs)": convergence(rows),
               "isometry level (nats)": round(H_ISOMETRY, 4)}
    if recon:
        summary["reconstruction uncertainty, mean log(r^2 + 1e-6)"] = {
            f"{r['model']} [{r['solver']}] {r['layer']}": round(r["uncertainty_mean"], 3) for r in recon_summary(recon)}
    summary.update(extra_summary or {})
    figures = {}
    final = [r for r in summary_rows if r["stage"] == "final"]
    run.save_figure(dplots.depth_figure(final), "depth")
    figures["depth"] = ("Discarded information through depth: mean entropy of the kept noise per cell (nats, the "
                        "model's normalised input space) per layer, one panel per solver; bars: 95 % bootstrap "
                        "intervals over images; dashed: cumulative maximum (step_result.py). Dotted: an isometry's level.")
    maps = {p.stem: torch.load(p, weights_only=True) for p in sorted((run.root / "maps").glob("*.pt"))}
    if maps:
        run.save_figure(dplots.maps_figure(maps), "maps")
        figures["maps"] = "Pixel-wise entropy maps per layer beside each image (bright: discarded)."
    if recon:
        run.save_figure(dplots.reconstruction_figure(recon_summary(recon)), "reconstruction")
        figures["reconstruction"] = ("Reconstruction uncertainty per layer, mean log(r^2 + 1e-6) with r the decoder's "
                                     "residual from noisy features, beside the decoder's clean error.")
    stage_rows = [r for r in summary_rows if r["stage"] != "final"]
    if stage_rows and run.has_table("stages_gap"):
        run.save_figure(dplots.gap_figure(run.read_table("stages_gap")), "stages")
        figures["stages"] = "D4: background minus stroke entropy at the deepest layer against test accuracy over stages."
    if claim_rows:
        run.write_table("claims", claim_rows)
    tables = (["claims"] if claim_rows else []) + ["layers"] + (["reconstruction_summary"] if recon else [])
    tables += [t for t in ("decoders", "stages_gap", "isometry") if run.has_table(t)]
    meta: dict[str, Any] = {"report_tables": tables, "figures": figures, **(extra_meta or {})}
    if order is not None:
        meta["order"] = order
    run.write_meta(**meta)
    run.finish(summary, seconds=round(time.perf_counter() - t0, 1))
    return summary


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", default=None, help="comma-separated layer names or globs (default: the ReLU "
                   "outputs of a built-in, else up to 5 ReLU modules spread over depth)")
    p.add_argument("--solver", default="release", choices=["release", "constrained"],
                   help="release: the official code's procedure (default); constrained: the exact optimum")
    p.add_argument("--space", default="normalized", choices=["normalized", "pixel"],
                   help="where the noise lives: after the model's own normalisation (the release) or in [0, 1] pixels")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps per image and layer (100)")
    p.add_argument("--samples", type=int, default=8, help="noise samples per step (8)")
    p.add_argument("--grid", default="auto", help="cells of sigma per side, or 'pixel' (auto: 14 for 28 px, 16 "
                   "for larger images)")
    p.add_argument("--tau", type=float, default=1.5, help="kept feature error / sigma_f^2 (1.5)")
    p.add_argument("--sigma0", type=float, default=0.01, help="calibration noise scale and start of sigma (0.01)")
    p.add_argument("--internal-batch-size", type=int, default=None, help="most noisy copies per forward + backward "
                   "pass (default 256 on a CPU, 8192 on a GPU)")
    p.add_argument("--decoders", type=int, default=None, help="training images for the reconstruction decoders "
                   "(0: none; default 1000 for MNIST, 0 otherwise)")


def auto_grid(image_size: int) -> int:
    """16 cells per side (the release's ``capability_sigma_size``) unless it does not divide the image:
    then 14 for 28 px MNIST (2 x 2 cells; a grid that divides the image keeps cells of equal size)."""
    return 16 if image_size % 16 == 0 else (14 if image_size % 14 == 0 else 16)


def settings_from(args: argparse.Namespace, image_size: int) -> dict[str, Any]:
    grid = auto_grid(image_size) if str(args.grid) == "auto" else parse_grid(args.grid)
    return {"grid": grid, "solver": args.solver, "space": args.space, "steps": args.steps, "samples": args.samples,
            "tau": args.tau, "sigma0": args.sigma0, "internal_batch_size": args.internal_batch_size, "seed": args.seed}


def main(args: argparse.Namespace) -> Path:
    from .. import data
    from . import end_run, start_run

    def params(lm: Any, spec: str) -> dict[str, Any]:
        return {"model": args.model, "checkpoint": args.checkpoint, "data": spec, "limit": args.limit,
                "layers": args.layers, "settings": settings_from(args, lm.input_shape[-1]), "decoders": args.decoders}

    def validate(a: argparse.Namespace) -> None:
        for name in ("steps", "samples"):
            if getattr(a, name) < 1:
                raise ValueError(f"--{name} must be a positive int, got {getattr(a, name)}")
        for name in ("tau", "sigma0"):
            if not getattr(a, name) > 0:
                raise ValueError(f"--{name} must be a positive number, got {getattr(a, name)}")
        if a.decoders is not None and a.decoders < 0:
            raise ValueError(f"--decoders must be >= 0, got {a.decoders}")
        parse_grid(a.grid) if str(a.grid) != "auto" else None

    setup = start_run(args, analysis=ANALYSIS, title="Information discarding", description=__doc__.split("\n\n")[0],
                      params=params, validate=validate)
    lm, images, names = setup.model, setup.images, setup.names
    layers = resolve_layers(lm.model, parse_layer_selection(args.layers, name="--layers") if args.layers
                            else default_layers(lm.model, lm.name))
    settings = settings_from(args, images.shape[-1])
    n_dec = args.decoders if args.decoders is not None else (1000 if setup.data == "mnist" else 0)
    decoders = None
    if n_dec > 0:
        if setup.data != "mnist":
            raise ValueError("--decoders needs training images; it is available with --data mnist (pass --decoders 0)")
        tx, _ = data.mnist_tensors("train", limit=n_dec + n_dec // 4)
        decoders, drows = get_decoders(setup.run, lm.model, lm.name, layers, tx[:n_dec], tx[n_dec:], seed=args.seed,
                                       device=args.device, progress=setup.progress)
        setup.run.write_table("decoders", drows)
    analyse(setup.run, lm.model, lm.name, images, names, layers=layers, settings=settings, batch_size=args.batch_size,
            decoders=decoders, device=args.device, progress=setup.progress)
    summ = finish_run(setup.run, t0=setup.t0)
    lines = [f"{k}: " + ", ".join(f"{layer} {h:.3f}" for layer, h in v.items())
             for k, v in summ["mean entropy per layer (nats, noise space), shallow to deep"].items()]
    return end_run(setup, args, {"convergence": summ["convergence (share of image x layer pairs)"]}, lines)


def demo(out: Path, *, quick: bool = False, device: str = "cpu", progress: bool = True) -> Path:
    """The information-discarding section of ``infolens demo``: the claims' protocol at its quick size."""
    claims(out, quick=True, device=device, progress=progress, only_mnist=quick)
    return out




# --------------------------------------------------------------------------- claims D1-D5 (CLAIMS.md)

INK_STROKE: float = 0.2
"""D1's cells, fixed before any result: a stroke cell has a mean ink (pixel value) above 0.2, a background
cell has no ink at all (every pixel exactly 0)."""


def ink_gap(x: torch.Tensor, entropy_map: torch.Tensor) -> torch.Tensor:
    """Mean entropy on background cells minus on stroke cells (:data:`INK_STROKE`), (N, L); NaN where an
    image has no cell of either kind. ``x`` (N, C, H, W) in [0, 1]; ``entropy_map`` (N, L, gh, gw)."""
    ink = torch.nn.functional.adaptive_avg_pool2d(x.mean(1, keepdim=True), entropy_map.shape[-2:])  # (N, 1, gh, gw)
    stroke, bg = (ink > INK_STROKE).float(), (ink == 0).float()
    h = entropy_map.to(x.device)
    mb = (h * bg).flatten(2).sum(2) / bg.flatten(2).sum(2)
    ms = (h * stroke).flatten(2).sum(2) / stroke.flatten(2).sum(2)
    return (mb - ms).cpu()


def _testbed() -> Any:
    try:
        from . import testbed  # type: ignore[attr-defined]
    except ImportError:  # until the testbed is merged: the built-ins and EfficientNet-Lite0
        return None
    return testbed


def _mnist(quick: bool, device: str) -> tuple[dict[str, Any], Any]:
    """The MNIST set: name -> (model loader, stage rows, stage loader)."""
    from ..models import build_builtin, builtin_history, load_checkpoint, pretrained_builtin

    tb = _testbed()
    if tb is not None:
        return ({n: (lambda n=n: tb.mnist_model(n, quick=quick, device=device, progress=False),
                     lambda n=n: tb.mnist_stages(n, quick=quick, progress=False),
                     lambda row, n=n: tb.load_stage(n, row, device=device)) for n in tb.MNIST_SET}, tb.mnist_data)

    def load_row(row: Mapping[str, Any], n: str) -> nn.Module:
        net = build_builtin(n)
        load_checkpoint(row["path"], net)
        return net.to(device).eval()

    from ..data import mnist_tensors
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
    from ..data import load_photos
    from ..models import load_model

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
    run = RunDir(out, analysis=ANALYSIS, params={"quick": quick, "cfg": cfg, "only_mnist": only_mnist,
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
    desc = (f"Claims of arXiv 1906.04109 decided on the testbed under both solvers: 'release' (the official code's "
            f"procedure: SGD on sigma, lambda 5, the step closest to error 1.5) and 'constrained' (the exact optimum "
            f"at error 1.5). Noise in the model's normalised input space (the release); entropies in nats per cell. "
            f"Verdicts: " + "; ".join(f"{r['claim']} {r['model']}: {r['verdict']}" for r in out_rows
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
