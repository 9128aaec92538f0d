"""Information discarding (arXiv 1906.04109): layer-wise discarded information through the depth of a
network, pixel-wise entropy maps, reconstruction uncertainty, and the comparison across models and
training stages. CLI command ``infolens discard``; a section of ``infolens demo``.

Protocol (``../shared/METHODS.md``, section 2; the mechanics are in :mod:`infolens.discard`). For every
image and layer, sigma is learnt so that the layer's feature error is 1.5 times the error of uniform
0.01 noise, with the largest entropy; the layer value is the mean entropy per cell (nats, [0, 1] pixel
space), reported as measured and as a cumulative maximum over depth. Reconstruction uncertainty uses a
decoder per layer trained on training images (never the analysed ones). Work is done in units of
global image indices (resumable, torchrun-shardable, seeds per image); tables are tidy (one row per
image x layer x model x stage).
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
from ..discard import (HALF_LOG_2PI_E, FeatureDecoder, InformationDiscarding, reconstruction_uncertainty,
                       train_decoder)
from ..distributed import Unit, gather_table, run_units, work_units
from ..probe import parse_layer_selection, resolve_layers
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
    "efficientnet_lite0": ["_blocks.0", "_blocks.2", "_blocks.4"],
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


def get_decoders(run: RunDir, model: nn.Module, tag: str, layers: Sequence[str], train_images: torch.Tensor, *,
                 epochs: int = 1, width: int = 16, seed: int = 0, device: str = "cpu",
                 progress: bool = True) -> dict[str, nn.Module]:
    """One :class:`infolens.discard.FeatureDecoder` per layer, trained on ``train_images`` and kept in
    ``decoders/TAG-LAYER.pt`` (a resumed run reuses them; every rank trains the same one, seeded)."""
    out = {}
    for layer in _progress.track(list(layers), desc=f"decoders {tag}", progress=progress):
        path = run.root / "decoders" / f"{tag}-{layer}.pt"
        dec = None
        if path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            dec = FeatureDecoder(**saved["config"])
            dec.load_state_dict(saved["state_dict"])
        if dec is None:
            dec = train_decoder(model, layer, train_images, epochs=epochs, width=width, seed=seed, device=device)
            atomic_torch_save({"config": dec.config, "state_dict": {k: v.cpu() for k, v in dec.state_dict().items()}},
                              path)
        out[layer] = dec.to(device).eval()
    return out


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
    tag = f"{model_name}-{stage}"
    units = [Unit(key=f"{tag}-{u.key}", indices=u.indices) for u in work_units(images.shape[0], batch_size)]
    depth = {name: i for i, name in enumerate(method.layers)}

    def unit_fn(u: Unit) -> list[dict[str, Any]]:
        idx = list(u.indices)
        x = images[idx].to(device)
        r = method.attribute(x, indices=idx)
        cum = r.cumulative()
        rel = r.release_value()
        rows = []
        for j, i in enumerate(idx):
            for l, layer in enumerate(r.layers):
                rows.append({"model": model_name, "stage": stage, "epoch": epoch, "index": i, "image": names[i],
                             "layer": layer, "depth": depth[layer], "entropy": float(r.layer_entropy[j, l]),
                             "entropy_cummax": float(cum[j, l]), "release_log_sigma2": float(rel[j, l]),
                             "sigma_mean": float(r.sigma[j, l].mean()), "feature_error": float(r.feature_error[j, l]),
                             "sigma_f2": float(r.sigma_f2[j, l]), "lambda": float(r.lam[j, l]),
                             "steps_run": int(r.steps_run[j, l])})
        if decoders:
            rec = reconstruction_uncertainty(model, decoders, x, r, samples=recon_samples, indices=idx,
                                             seed=settings.get("seed", 0))
            rrows = [{"model": model_name, "stage": stage, "index": i, "layer": layer, "depth": depth[layer],
                      "entropy": float(r.layer_entropy[j, l]), "uncertainty": float(rec.uncertainty[j, l]),
                      "clean": float(rec.clean[j, l]), "induced": float(rec.induced[j, l])}
                     for j, i in enumerate(idx) for l, layer in enumerate(r.layers) if layer in decoders]
            run.write_part("reconstruction", u.key, rrows)
        first = [j for j, i in enumerate(idx) if i < n_maps]
        if first:
            atomic_torch_save({"images": x[first].cpu(), "maps": r.entropy_map[first].cpu(), "layers": r.layers,
                               "names": [names[idx[j]] for j in first], "indices": [idx[j] for j in first]},
                              run.root / "maps" / f"{tag}-{u.key}.pt")
        return rows

    return run_units(run, "entropy", units, unit_fn, desc=f"discard {tag}", progress=progress)


def layer_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, stage, layer): mean and standard deviation over images of the discarded entropy,
    its cumulative maximum over depth, and the mean feature error and sigma."""
    acc: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        acc[(r["model"], r["stage"], int(r["depth"]), r["layer"])].append(r)
    out = []
    for (model, stage, depth, layer), rs in sorted(acc.items(), key=lambda kv: (_model_key(kv[0][0]), str(kv[0][1]),
                                                                                 kv[0][2])):
        ent = torch.tensor([float(r["entropy"]) for r in rs], dtype=torch.float64)
        out.append({"model": model, "stage": stage, "epoch": rs[0].get("epoch"), "depth": depth, "layer": layer,
                    "images": len(rs), "entropy_mean": float(ent.mean()),
                    "entropy_std": float(ent.std()) if len(rs) > 1 else 0.0,
                    "entropy_cummax_mean": sum(float(r["entropy_cummax"]) for r in rs) / len(rs),
                    "above_isometry": float(ent.mean()) - H_ISOMETRY,
                    "sigma_mean": sum(float(r["sigma_mean"]) for r in rs) / len(rs),
                    "feature_error_mean": sum(float(r["feature_error"]) for r in rs) / len(rs)})
    return out


def stage_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`layer_summary` of the models measured at several training stages, on the images that
    every stage of the model has (so the stages compare on the same images)."""
    out = []
    for model, rs in sorted({r["model"]: [q for q in rows if q["model"] == r["model"]] for r in rows}.items()):
        stages = {str(r["stage"]) for r in rs}
        if len(stages) < 2:
            continue
        common = set.intersection(*({int(r["index"]) for r in rs if str(r["stage"]) == s} for s in stages))
        out.extend(layer_summary([r for r in rs if int(r["index"]) in common]))
    return out


def recon_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    acc: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        acc[(r["model"], r["stage"], int(r["depth"]), r["layer"])].append(r)
    return [{"model": k[0], "stage": k[1], "depth": k[2], "layer": k[3], "images": len(v),
             "entropy_mean": sum(float(r["entropy"]) for r in v) / len(v),
             "uncertainty_mean": sum(float(r["uncertainty"]) for r in v) / len(v),
             "clean_mean": sum(float(r["clean"]) for r in v) / len(v),
             "induced_mean": sum(float(r.get("induced", "nan")) for r in v) / len(v)}
            for k, v in sorted(acc.items(), key=lambda kv: (_model_key(kv[0][0]), str(kv[0][1]), kv[0][2]))]


def _model_key(name: str) -> tuple[bool, str]:
    return (not str(name).startswith("mnist"), str(name))


def finish_run(run: RunDir, *, t0: float, order: int | None = None, extra_summary: Mapping[str, Any] | None = None
               ) -> dict[str, Any]:
    """Merge the tables, write the summaries, the figures and the headline numbers."""
    rows = gather_table(run, "entropy", sort_by=("model", "stage", "index", "depth"))
    summary_rows = layer_summary(rows)
    run.write_table("layers", summary_rows)
    stage_rows = stage_summary(rows)
    if stage_rows:
        run.write_table("stages", stage_rows)
    recon = []
    if run.part_keys("reconstruction"):
        recon = gather_table(run, "reconstruction", sort_by=("model", "stage", "index", "depth"))
        run.write_table("reconstruction_summary", recon_summary(recon))
    curves: dict[str, dict[str, Any]] = {}
    for r in summary_rows:
        key = r["model"] if r["stage"] == "final" else f"{r['model']} @ {r['stage']}"
        curves.setdefault(key, {})[r["layer"]] = round(r["entropy_mean"], 4)
    increasing = {k: (list(v.values())[-1] - list(v.values())[0]) for k, v in curves.items()}
    summary = {"mean entropy per layer (nats), shallow to deep": curves,
               "deepest minus shallowest (nats)": {k: round(v, 4) for k, v in increasing.items()},
               "isometry level (nats)": round(H_ISOMETRY, 4),
               "images per model": {m: len({r["index"] for r in rows if r["model"] == m}) for m in curves
                                    if " @ " not in m}}
    if recon:
        summary["reconstruction uncertainty (nats/pixel)"] = {
            f"{r['model']} {r['layer']}": round(r["uncertainty_mean"], 4) for r in recon_summary(recon)}
    summary.update(extra_summary or {})
    figures = {}
    try:
        from ..plots import discard as dplots

        run.save_figure(dplots.depth_figure(summary_rows), "depth")
        figures["depth"] = ("Discarded information through depth: mean entropy of the learnt noise per cell (nats, "
                            "[0, 1] pixel space) at each layer, as measured (solid) and as a cumulative maximum "
                            "(dashed); bars: one standard deviation over images. The dotted line is an isometry's "
                            "level (nothing discarded beyond the 1.5 tolerance).")
        maps = {p.stem: torch.load(p, weights_only=True) for p in sorted((run.root / "maps").glob("*.pt"))}
        if maps:
            run.save_figure(dplots.maps_figure(maps), "maps")
            figures["maps"] = ("Pixel-wise entropy maps (bright: the layer discards that region's information) "
                               "overlaid on the images, shallow to deep layers.")
        if stage_rows:
            run.save_figure(dplots.stages_figure(stage_rows), "stages")
            figures["stages"] = ("Discarded information per layer at each training stage (epochs of training; the "
                                 "same images at every stage).")
        if recon:
            run.save_figure(dplots.reconstruction_figure(recon_summary(recon)), "reconstruction")
            figures["reconstruction"] = ("Reconstruction uncertainty per layer: Gaussian entropy of the residual of a "
                                         "decoder fed with the noisy feature (nats per pixel), beside the decoder's own "
                                         "error on clean features and the spread of the reconstruction caused by the noise alone (the "
                                         "decoder's bias removed).")
    except ImportError:
        pass
    tables = ["layers"] + (["stages"] if stage_rows else []) + (["reconstruction_summary"] if recon else [])
    meta: dict[str, Any] = {"report_tables": tables, "figures": figures}
    if order is not None:
        meta["order"] = order
    run.write_meta(**meta)
    run.finish(summary, seconds=round(time.perf_counter() - t0, 1))
    return summary


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", default=None, help="comma-separated layer names or globs (default: the ReLU "
                   "outputs of a built-in, else up to 5 ReLU modules spread over depth)")
    p.add_argument("--steps", type=int, default=100, help="most optimisation steps per image and layer (100)")
    p.add_argument("--samples", type=int, default=8, help="noise samples per step (8)")
    p.add_argument("--grid", default="auto", help="cells of sigma per side, or 'pixel' (auto: 7 for 28 px, 16 "
                   "for larger images)")
    p.add_argument("--per-channel", action="store_true", help="one sigma per colour channel (default: shared)")
    p.add_argument("--optimizer", default="balance", choices=["balance", "adam", "sgd"])
    p.add_argument("--mode", default="constrained", choices=["constrained", "select"])
    p.add_argument("--tau", type=float, default=1.5, help="tolerated feature error / sigma_f^2 (1.5)")
    p.add_argument("--sigma0", type=float, default=0.01, help="calibration noise scale (0.01)")
    p.add_argument("--lam", type=float, default=5.0, help="entropy weight for adam/sgd (5)")
    p.add_argument("--internal-batch-size", type=int, default=None, help="most noisy copies per forward + backward "
                   "pass (default 256 on a CPU, 8192 on a GPU)")
    p.add_argument("--decoders", type=int, default=None, help="training images for the reconstruction decoders "
                   "(0: no reconstruction uncertainty; default 2000 for MNIST, 0 otherwise)")
    p.add_argument("--decoder-epochs", type=int, default=2)


def settings_from(args: argparse.Namespace, image_size: int) -> dict[str, Any]:
    grid = (7 if image_size <= 32 else 16) if str(args.grid) == "auto" else parse_grid(args.grid)
    return {"grid": grid, "per_channel": args.per_channel, "steps": args.steps, "samples": args.samples,
            "optimizer": args.optimizer, "mode": args.mode, "tau": args.tau, "sigma0": args.sigma0, "lam": args.lam,
            "internal_batch_size": args.internal_batch_size, "seed": args.seed}


def main(args: argparse.Namespace) -> Path:
    from .. import data, models
    from ..report import build_report
    from . import default_data

    lm = models.load_model(args.model, checkpoint=args.checkpoint, device=args.device)
    spec = args.data or default_data(lm.source)
    size = lm.input_shape[-1] if spec != "mnist" else None
    loaded = data.load_dataset(spec, split="test", limit=args.limit, size=size, channels=lm.input_shape[0])
    images, names = loaded[0], list(loaded[2])
    layers = (parse_layer_selection(args.layers, name="--layers") if args.layers
              else default_layers(lm.model, lm.name))
    layers = resolve_layers(lm.model, layers)
    settings = settings_from(args, images.shape[-1])
    n_dec = args.decoders if args.decoders is not None else (2000 if spec == "mnist" else 0)
    out = Path(args.out or f"results/discard-{lm.name}")
    params = {"model": args.model, "checkpoint": args.checkpoint, "data": spec, "limit": args.limit,
              "layers": layers, "settings": settings, "decoders": n_dec, "decoder_epochs": args.decoder_epochs}
    run = RunDir(out, analysis=ANALYSIS, params=params, seed=args.seed, device=args.device, overwrite=args.overwrite,
                 title=f"Information discarding: {lm.name}", description=__doc__.split("\n\n")[0])
    t0 = time.perf_counter()
    progress = not getattr(args, "no_progress", False)
    decoders = None
    if n_dec > 0:
        if spec != "mnist":
            raise ValueError("--decoders needs training images; it is available with --data mnist (pass --decoders 0)")
        train_x, _ = data.mnist_tensors("train", limit=n_dec)
        decoders = get_decoders(run, lm.model, lm.name, layers, train_x, epochs=args.decoder_epochs, seed=args.seed,
                                device=args.device, progress=progress)
    analyse(run, lm.model, lm.name, images, names, layers=layers, settings=settings, batch_size=args.batch_size,
            decoders=decoders, device=args.device, progress=progress)
    summ = finish_run(run, t0=t0)
    for k, v in summ["mean entropy per layer (nats), shallow to deep"].items():
        print(f"{k}: " + ", ".join(f"{layer} {h:.3f}" for layer, h in v.items()))
    if not args.no_report:
        build_report(out)
    return out


# --------------------------------------------------------------------------- demo

DEMO = {"n_images": 6, "steps": 50, "samples": 4, "calib_samples": 48, "stage_images": 2,
        "stages": (0.0, 0.05, 0.25), "decoder_images": 800, "decoder_epochs": 1, "decoder_width": 16,
        "photos": 1, "photo_steps": 30, "photo_samples": 2, "photo_calib_samples": 12}
QUICK = {"n_images": 2, "steps": 20, "samples": 2, "calib_samples": 16, "stage_images": 1, "stages": (0.0,),
         "decoder_images": 100, "decoder_epochs": 1, "decoder_width": 8, "decoder_layers": ("features.5", "classifier.1"),
         "photos": 0}


def demo(out: Path, *, quick: bool = False, device: str = "cpu", progress: bool = True,
         photos: bool | None = None) -> Path:
    """The information-discarding section of ``infolens demo``: depth curves of the three built-in MNIST
    networks, entropy maps, reconstruction uncertainty (mnist_vgg), the curve at several training stages
    (mnist_vgg), and EfficientNet-Lite0 on a bundled photograph (not with ``quick``)."""
    from .. import data
    from ..models import build_builtin, load_checkpoint
    from .demo import demo_history, demo_models

    cfg = QUICK if quick else DEMO
    photos = bool(cfg["photos"]) if photos is None else photos
    settings = {"grid": 7, "steps": cfg["steps"], "samples": cfg["samples"], "calib_samples": cfg["calib_samples"]}
    run = RunDir(out, analysis=ANALYSIS, params={"quick": quick, "cfg": cfg, "photos": photos}, device=device,
                 overwrite=True, title="Information discarding through depth (arXiv 1906.04109)",
                 description=("For each image and layer, per-cell Gaussian noise scales are learnt so that the layer's "
                              "features move 1.5 times as much as under uniform 0.01 noise while the noise's entropy is "
                              "as large as possible (arXiv 1906.04109, our reading in METHODS.md). The mean entropy per "
                              "cell is the information the layer discards; an isometry keeps everything (-2.98 nats). "
                              "Built-in MNIST networks on test digits (7 x 7 cells), mnist_vgg at several training "
                              "stages and with reconstruction decoders, EfficientNet-Lite0 on a bundled photograph "
                              "(16 x 16 cells). A small demo sample: run `infolens discard` for more images."))
    t0 = time.perf_counter()
    x, _ = data.mnist_tensors("test", limit=cfg["n_images"])
    names = [f"mnist-test-{i:05d}" for i in range(x.shape[0])]
    nets = demo_models(quick=quick, device=device, progress=progress)
    for name, model in nets.items():
        decoders = None
        if name == "mnist_vgg":
            train_x, _ = data.mnist_tensors("train", limit=cfg["decoder_images"])
            decoders = get_decoders(run, model, name, cfg.get("decoder_layers", DEFAULT_LAYERS[name]), train_x, epochs=cfg["decoder_epochs"],
                                    width=cfg["decoder_width"], device=device, progress=progress)
        analyse(run, model, name, x, names, layers=DEFAULT_LAYERS[name], settings=settings, decoders=decoders,
                device=device, progress=progress, n_maps=1 if quick else 2)
    hist = demo_history("mnist_vgg", quick=quick)
    accs = {}
    for h in hist:
        if not any(abs(float(h["epoch"]) - e) < 1e-9 for e in cfg["stages"]) or float(h["epoch"]) >= 1.0:
            continue  # the final model is the "final" stage measured above
        net = build_builtin("mnist_vgg")
        load_checkpoint(h["path"], net)
        stage = f"epoch {float(h['epoch']):g}"
        accs[stage] = h.get("test_acc")
        analyse(run, net, "mnist_vgg", x[:cfg["stage_images"]], names, layers=DEFAULT_LAYERS["mnist_vgg"],
                settings=settings, stage=stage, epoch=float(h["epoch"]), device=device, progress=progress, n_maps=0)
    if photos:
        from ..models import load_model

        lm = load_model("efficientnet_lite0", device=device)
        px, pnames = data.load_photos(size=224)
        px, pnames = px[:cfg["photos"]], list(pnames[:cfg["photos"]])
        analyse(run, lm.model, lm.name, px, pnames, layers=DEFAULT_LAYERS["efficientnet_lite0"],
                settings={"grid": 16, "steps": cfg["photo_steps"], "samples": cfg["photo_samples"],
                          "calib_samples": cfg["photo_calib_samples"]},
                batch_size=8, device=device, progress=progress, n_maps=1)
    finish_run(run, t0=t0, order=30, extra_summary={"test accuracy at the stages (mnist_vgg)": accs})
    return out
