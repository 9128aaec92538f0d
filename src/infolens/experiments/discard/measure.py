"""The measurement: the layers measured, the reconstruction decoders, the per-image tables in resumable units
(:func:`analyse`, with D1's background-minus-stroke gap, :func:`ink_gap`), their summaries and the finished
result folder (:func:`finish_run`)."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ... import _progress
from ...claims import bootstrap
from ...discard import HALF_LOG_2PI_E, FeatureDecoder, InformationDiscarding, ReconstructionUncertainty, train_decoder
from ...discard.reconstruction import reconstruction_at_sigma
from ...distributed import Unit, gather_table, run_units, work_units
from ...results import RunDir
from ..._io import atomic_torch_save

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


def block_layers(model: nn.Module, name: str, *, most: int = 5) -> list[str]:
    """EfficientNet's block outputs ``_blocks.k`` (each module runs once per pass; its activations are
    reused inside a block), ``most`` spread evenly from the first to the last; else :func:`default_layers`."""
    blocks = getattr(model, "_blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        return default_layers(model, name, most=most)
    n = len(blocks)
    return [f"_blocks.{round(i * (n - 1) / (most - 1))}" for i in range(most)]


# --------------------------------------------------------------------------- decoders


def get_decoders(run: RunDir, model: nn.Module, tag: str, layers: Sequence[str], train_images: torch.Tensor,
                 held_out: torch.Tensor, *, max_epochs: int = 30, width: int = 16, seed: int = 0, device: str = "cpu",
                 progress: bool = True) -> tuple[dict[str, nn.Module], list[dict[str, Any]]]:
    """One :class:`infolens.discard.FeatureDecoder` per layer, trained on ``train_images`` to a plateau of
    the loss on ``held_out`` and kept in ``decoders/TAG-LAYER.pt`` with its history (a resumed run reuses
    them). Returns the decoders and one row per layer (plateau loss, epochs, plateau reached)."""
    out, rows = {}, []
    for layer in _progress.track(list(layers), desc=f"decoders {tag}", progress=progress, unit="layers",
                                 work=f"one decoder per layer: {len(layers)} layers x {train_images.shape[0]} "
                                      f"training images, up to {max_epochs} epochs each"):
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


def shared_decoders(run: RunDir, models: Mapping[str, nn.Module], layer_sets: Mapping[str, Sequence[str]],
                    train_images: torch.Tensor, held_out: torch.Tensor, *, max_epochs: int = 30, width: int = 16,
                    seed: int = 0, device: str = "cpu", progress: bool = True
                    ) -> tuple[dict[str, dict[str, nn.Module]], list[dict[str, Any]]]:
    """:func:`get_decoders` for several models, every (model, layer) a unit shared out over the torchrun ranks:
    each decoder is trained once, by one rank, and saved; after a barrier every rank loads them all. Returns
    the decoders per model and the rows of the ``decoders`` table (written by rank 0)."""
    jobs = [(name, layer) for name, layers in layer_sets.items() for layer in layers]

    def fit(u: Unit) -> list[dict[str, Any]]:
        name, layer = jobs[u.indices[0]]
        return get_decoders(run, models[name], name, [layer], train_images, held_out, max_epochs=max_epochs,
                            width=width, seed=seed, device=device, progress=False)[1]
    run_units(run, "decoders", [Unit(key=f"{n}-{l}", indices=(k,)) for k, (n, l) in enumerate(jobs)], fit,
              desc="decoders", progress=progress, work=f"one decoder per (model, layer): {len(jobs)} decoders x "
              f"{train_images.shape[0]} training images, up to {max_epochs} epochs each")
    rows = gather_table(run, "decoders")  # a barrier: every decoder is saved before any rank loads one
    out = {name: get_decoders(run, models[name], name, layers, train_images, held_out, max_epochs=max_epochs,
                              width=width, seed=seed, device=device, progress=False)[0]
           for name, layers in layer_sets.items()}
    return out, rows


def recon_settings(settings: Mapping[str, Any], method: InformationDiscarding) -> dict[str, Any]:
    """The reconstruction solver's settings matching the pixel-wise method's (grid, space, steps...)."""
    return {"grid": method.grid, "space": method.space, "relu": method.relu, "n_steps": method.n_steps,
            "n_samples": method.n_samples, "tau": method.tau, "sigma0": method.sigma0, "seed": method.seed,
            "internal_batch_size": method.internal_batch_size}


# --------------------------------------------------------------------------- measurement

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
                   reconstruction_at_sigma(model, decoders, x, r, indices=idx, seed=method.seed, n_samples=method.n_samples))
            run.write_part("reconstruction", u.key, [{"model": model_name, "stage": stage, "solver": method.solver, **row}
                                                     for row in rec.to_rows()])
        first = [j for j, i in enumerate(idx) if i < n_maps]
        if first:
            atomic_torch_save({"images": x[first].cpu(), "maps": r.entropy_map[first].cpu(), "layers": r.layers,
                               "names": [names[idx[j]] for j in first], "indices": [idx[j] for j in first]},
                              run.root / "maps" / f"{u.key}.pt")
        return rows

    return run_units(run, "entropy", units, unit_fn, desc=f"discard {tag}", progress=progress,
                     work=f"{images.shape[0]} images x {len(layers)} layers x {method.n_steps} steps, in {len(units)} "
                          f"batches")


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
    """Merge the tables, write the summaries, the figures and the headline numbers (all ranks gather; the
    writer, rank 0, writes). Returns the summary on every rank."""
    from ...plots import discard as dplots

    rows = gather_table(run, "entropy", sort_by=("model", "solver", "stage", "index", "depth"))
    summary_rows = layer_summary(rows)
    recon = (gather_table(run, "reconstruction", sort_by=("model", "solver", "stage", "index", "depth"))
             if run.part_keys("reconstruction") else [])
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
    if not run.writer:  # another torchrun rank: the tables, figures and meta are rank 0's to write
        return summary
    run.write_table("layers", summary_rows)
    if recon:
        run.write_table("reconstruction_summary", recon_summary(recon))
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
