"""FORGrad (arXiv 2307.09591): attribution maps with and without low-pass filtering, their spectra, and
their faithfulness (Deletion, Insertion, MuFidelity), per model; the ranking of methods before and after
filtering. CLI command ``infolens forgrad``; a section of ``infolens demo``; claims F1-F5 for
``infolens reproduce`` (:func:`claims`, in :mod:`.verdicts`, on the paper's protocol in :mod:`.protocol`).

CLI protocol (``docs/methods.md``, section 4). Every method explains the model's predicted class. Only
gradient-based methods are filtered; gray-box (Grad-CAM, Grad-CAM++) and prediction-based methods are
ranked with their own maps before and after filtering, beside the sanity references (centred blob, input
magnitude, uniform noise; a warning is printed when the blob beats half the methods: a degenerate metric).
The cut-off is chosen per model (and per method, or from one reference method) on held-out images
(MNIST: the validation split, never the test images reported on; other data: ``--heldout-data``, else
mirrored copies of the images, a weaker hold-out that the summary states) by Insertion - Deletion over a
log-spaced grid of cut-offs that ends with the identity, saved in ``cutoffs.json`` and reused.
Work is done in units of global image indices (resumable, torchrun-shardable); tables are tidy.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ... import _progress
from ...attribution.registry import _canonical
from ..._method import predict
from ...attribution import (METHODS, REFERENCES, make_reference, attribute_many, attribution_spectrum, default_cutoffs, forgrad,
                           make_method, max_cutoff, select_cutoff)
from ...distributed import Unit, gather_table, is_main, run_units, work_units
from ...attribution.metrics import Deletion, Insertion, make_metric
from ...results import RunDir
from ..._io import atomic_torch_save
from .tables import DEFAULT_METRICS, _family, degenerate_warnings, load_cutoffs, mean_spectra, save_cutoffs, summarize

HELP = ("FORGrad (arXiv 2307.09591): attribution maps with/without low-pass filtering, their spectra, and "
        "Deletion / Insertion / MuFidelity with the ranking of methods")
TAKES_MODEL = True

ANALYSIS = "forgrad"


# --------------------------------------------------------------------------- settings



def method_settings(*, ig_steps: int = 50, noise_samples: int = 50, noise_stdev: float = 0.2,
                    rise_masks: int = 4000, sobol_designs: int = 32, hsic_designs: int = 1500,
                    occlusion_window: int | None = None, seed: int = 0,
                    batch_size: int = 64, internal_batch_size: int = 256,
                    gradcam_layer: str | None = None) -> dict[str, dict[str, Any]]:
    """Constructor arguments of every method. Defaults are Xplique's (IntegratedGradients steps 50;
    SmoothGrad/SquareGrad/VarGrad nb_samples 50, noise 0.2 in the model's normalised input units, which
    :func:`build_methods` turns into pixels; RISE nb_samples 4000; Sobol nb_design 32; HSIC
    nb_design 1500); the grids and the rest are the methods' own (``infolens.attribution``)."""
    common = {"batch_size": batch_size, "internal_batch_size": internal_batch_size}
    return {
        "saliency": dict(common), "gradient_x_input": dict(common), "guided_backprop": dict(common),
        "integrated_gradients": {**common, "n_steps": ig_steps},
        "smoothgrad": {**common, "n_samples": noise_samples, "stdev": noise_stdev, "seed": seed},
        "squaregrad": {**common, "n_samples": noise_samples, "stdev": noise_stdev, "seed": seed},
        "vargrad": {**common, "n_samples": noise_samples, "stdev": noise_stdev, "seed": seed},
        "gradcam": {**common, "layer": gradcam_layer},
        "occlusion": {**common, "window": occlusion_window},
        "rise": {**common, "n_masks": rise_masks, "seed": seed},
        "sobol": {**common, "n_design": sobol_designs, "seed": seed},
        "hsic": {**common, "n_design": hsic_designs, "seed": seed},
    }


def build_methods(model: nn.Module, names: Sequence[str], settings: dict[str, dict[str, Any]]) -> dict:
    """The methods ``names`` on ``model``; the noise methods' ``stdev`` (in the model's normalised input
    units, Xplique's 0.2 on preprocessed inputs) becomes ``stdev x`` the normalisation's std in the pixel
    units the model takes (a model without built-in normalisation: unchanged)."""
    from .protocol import input_scale

    scale = input_scale(model)
    out = {}
    for n in names:
        kw = dict(settings.get(n, {}))
        if "stdev" in kw:
            kw["stdev"] = float(kw["stdev"]) * scale
        out[n] = make_method(n, model, **kw)
    return out


def build_metrics(model: nn.Module, names: Sequence[str], *, steps: int = 10, mufidelity_masks: int = 200,
                  score: str = "softmax", batch_size: int = 256, seed: int = 0) -> dict:
    out = {}
    for n in names:
        kw: dict[str, Any] = {"score": score, "batch_size": batch_size}
        if n in ("deletion", "insertion"):
            kw["n_steps"] = steps
        elif n == "mufidelity":
            kw.update(n_masks=mufidelity_masks, seed=seed)
        out[n] = make_metric(n, model, **kw)
    return out


def parse_figures(value: str) -> tuple[str, ...]:
    """``all`` | ``none`` | a comma-separated subset of :data:`FIGURES`."""
    v = str(value).strip().lower()
    if v in ("all", ""):
        return FIGURES
    if v == "none":
        return ()
    names = tuple(f.strip() for f in v.split(",") if f.strip())
    bad = [f for f in names if f not in FIGURES]
    if bad:
        raise ValueError(f"--figures: unknown figure(s) {', '.join(bad)}; choose from {', '.join(FIGURES)}, all, none")
    return names


def parse_forgrad(value: str | float | None) -> str | float:
    """``auto`` | ``off`` | a positive cut-off."""
    if value is None:
        return "auto"
    v = str(value).strip().lower()
    if v in ("auto", "off"):
        return v
    try:
        c = float(v)
    except ValueError:
        raise ValueError(f"--forgrad must be 'auto', 'off' or a positive cut-off, got {value!r}") from None
    if not c > 0 or c == float("inf"):
        raise ValueError(f"--forgrad cut-off must be a positive finite number, got {value!r}; pass e.g. 15, or "
                         f"'off' for no filtering")
    return c


# --------------------------------------------------------------------------- cut-off selection


def choose_cutoffs(run: RunDir, model: nn.Module, model_name: str, methods: dict, heldout: torch.Tensor, *,
                   unit: str = "steps", window: str = "ideal", select_by: str = "each", steps: int = 10,
                   batch_size: int = 256, grid: Sequence[float] | None = None, reuse: Path | None = None,
                   note: str = "", progress: bool = True, target: int | None = None) -> dict[str, float]:
    """Per method cut-offs for ``model``: reused from ``reuse`` (a cutoffs.json) when it holds them for this
    model with the same unit and window, else selected on ``heldout`` images and saved in the run folder."""
    path = run.root / "cutoffs.json"
    grid = [float(c) for c in grid] if grid is not None else default_cutoffs(*heldout.shape[-2:], unit=unit)
    # the run folder's own file is reused only for the very same selection (a resumed run); a file
    # given with --cutoffs-file is reused whenever it has this model's cut-offs in the same unit and window
    same = {"unit": unit, "window": window}
    own = {**same, "cutoffs": grid, "n_images": int(heldout.shape[0]), "selected_on": note, "steps": steps}
    for src, keys in [(p, k) for p, k in ((reuse, same), (path, own)) if p is not None]:
        saved = load_cutoffs(src, model_name)
        if saved and all(m in saved or "*" in saved for m in methods if _family(m) == "gradient") and \
                all(v.get(k) == val for v in saved.values() for k, val in keys.items()):
            if src != path:
                save_cutoffs(path, model_name, saved)
            return {m: float(saved.get(m, saved.get("*"))["cutoff"]) for m in methods if m in saved or "*" in saved}
    device = next(iter(model.parameters())).device if list(model.parameters()) else torch.device("cpu")
    x = heldout.to(device)
    with torch.no_grad():
        t = torch.cat([model(x[s:s + batch_size]).argmax(1) for s in range(0, x.shape[0], batch_size)])
    if target is not None:  # --target: one class explained for every image
        t = torch.full_like(t, target)
    metrics = [Insertion(model, n_steps=steps, batch_size=batch_size), Deletion(model, n_steps=steps, batch_size=batch_size)]
    targets = [m for m in methods if _family(m) == "gradient"] if select_by == "each" else [_canonical(select_by)]
    with _progress.stage(f"cut-off {model_name}", progress=progress,
                         work=f"maps of {x.shape[0]} held-out images x {len(targets)} method(s), then "
                              f"{len(grid)} cut-offs x Insertion and Deletion"):
        chosen_maps = attribute_many(model, {m: methods[m] if m in methods else make_method(m, model)
                                             for m in targets}, x, t)
    selections, rows = {}, []
    for m in _progress.track(targets, desc=f"cut-off {model_name}", progress=progress):
        sel = select_cutoff(chosen_maps[m], x, t, metrics, cutoffs=grid, unit=unit, window=window)
        sel.extra.update({"selected_on": note, "scored_by": "insertion - deletion", "method": m, "steps": steps})
        selections[m] = sel
        for c, s, ins, dele in zip(sel.cutoffs, sel.scores, sel.per_metric["insertion"], sel.per_metric["deletion"]):
            rows.append({"model": model_name, "method": m, "cutoff": c, "unit": unit, "score": s, "insertion": ins,
                         "deletion": dele, "chosen": c == sel.best, "identity": c >= sel.identity - 1e-6})
    if select_by != "each":
        selections = {"*": selections[targets[0]]}
    save_cutoffs(path, model_name, selections)
    old = run.read_table("cutoff_curves") if run.has_table("cutoff_curves") else []
    run.write_table("cutoff_curves", [r for r in old if r.get("model") != model_name] + rows)
    return {m: selections.get(m, selections.get("*")).best for m in methods if m in selections or "*" in selections}


# --------------------------------------------------------------------------- evaluation


def evaluate(run: RunDir, model: nn.Module, model_name: str, images: torch.Tensor, names: Sequence[str], *,
             methods: dict, metrics: dict, cutoffs: dict[str, float | None], unit: str = "steps",
             window: str = "ideal", batch_size: int = 64, device: str = "cpu", progress: bool = True,
             n_examples: int = 2, target: int | None = None) -> None:
    """Scores (table ``scores``: image x method x forgrad x metric) and spectra (table ``spectra``) for
    ``images``, in resumable units of global image indices."""
    units = [Unit(key=f"{model_name}-{u.key}", indices=u.indices) for u in work_units(images.shape[0], batch_size)]

    def unit_fn(u: Unit) -> list[dict[str, Any]]:
        idx = list(u.indices)
        x = images[idx].to(device)
        t = predict(model, x) if target is None else \
            torch.full((x.shape[0],), target, dtype=torch.long, device=x.device)
        maps = attribute_many(model, methods, x, t, indices=idx)
        rows, spec_rows, examples = [], [], {}
        variants: dict[tuple[str, str], torch.Tensor] = {}
        for m, a in maps.items():
            variants[(m, "off")] = a  # the method's own map (metrics rank its signed channel mean)
            if cutoffs.get(m) is not None:
                variants[(m, "forgrad")] = forgrad(a, cutoffs[m], unit=unit, window=window)
        keys = list(variants)
        for metric_name, metric in metrics.items():
            # all maps of the unit in shared batches
            results = metric.score_many(x, t, [variants[k] for k in keys], indices=idx)
            for (m, var), r in zip(keys, results):
                c = cutoffs.get(m) if var == "forgrad" else float("nan")
                for j, i in enumerate(idx):
                    rows.append({"model": model_name, "index": i, "image": names[i], "target": int(t[j]),
                                 "method": m, "kind": _family(m), "forgrad": var, "cutoff": c,
                                 "metric": metric_name, "score": float(r.scores[j])})
        for m, a in maps.items():
            kind, c = _family(m), cutoffs.get(m)
            prof = attribution_spectrum(a)
            for j, i in enumerate(idx):
                for b, (f, p) in enumerate(zip(prof.frequencies.tolist(), prof.values[j].tolist())):
                    spec_rows.append({"model": model_name, "index": i, "method": m, "kind": kind, "bin": b,
                                      "frequency": f, "power": p})
            filt = variants[(m, "forgrad")][:n_examples, 0] if (m, "forgrad") in variants else a[:n_examples].mean(1).abs()
            examples[m] = {"raw": a[:n_examples].mean(1).cpu(), "forgrad": filt.cpu(), "cutoff": c}
        if idx[0] == 0:
            atomic_torch_save({"images": x[:n_examples].cpu(), "maps": examples, "names": [names[i] for i in idx[:n_examples]]},
                              run.root / "examples" / f"{model_name}.pt")
        run.write_part("spectra", u.key, spec_rows)
        return rows

    run_units(run, "scores", units, unit_fn, desc=f"attribution {model_name}", progress=progress, data=images,
              work=f"{images.shape[0]} images x {len(methods)} methods (with and without FORGrad) x "
                   f"{len(metrics)} metrics, in {len(units)} batches")


FIGURES = ("spectra", "spectra_per_method", "examples", "faithfulness", "cutoffs")


def finish_run(run: RunDir, *, params_note: dict[str, Any] | None = None, t0: float, order: int = 20,
               extra_summary: dict[str, Any] | None = None, figures: Sequence[str] = FIGURES) -> dict[str, Any]:
    """Merge tables, write the summary tables, figures and the headline numbers."""
    scores = gather_table(run, "scores", sort_by=("model", "index", "method", "forgrad", "metric"))
    spectra = gather_table(run, "spectra", sort_by=("model", "index", "method", "bin"))
    summary_rows, ranking, headline = summarize(scores)
    summ = {"improved": headline, "seconds": round(time.perf_counter() - t0, 1), **(extra_summary or {})}
    if not is_main():  # under torchrun rank 0 writes the tables and figures
        return summ
    run.write_table("summary", summary_rows)
    run.write_table("ranking", ranking)
    mspec = mean_spectra(spectra)
    run.write_table("mean_spectra", mspec)
    wanted, figures = set(figures), {}
    try:
        from ...plots import forgrad as fplots

        if "spectra" in wanted:
            fig = fplots.spectra_figure(mspec, per_method="spectra_per_method" in wanted)
            run.save_figure(fig, "spectra")
            figures["spectra"] = ("Mean radial power spectrum (each map normalised to unit power) of gradient-based vs "
                              "prediction-based attribution maps (top; Grad-CAM left out of the gradient average), and per method (bottom); frequency as a fraction of Nyquist.")
        ex = sorted((run.root / "examples").glob("*.pt"), key=lambda p: (not p.stem.startswith("mnist"), p.stem))
        if ex and "examples" in wanted:
            fig = fplots.examples_figure({p.stem: torch.load(p, weights_only=True) for p in ex})
            run.save_figure(fig, "examples")
            figures["examples"] = ("Example maps, first test image of each model: every method's raw map (|channel "
                                   "mean|, top row) and its FORGrad-filtered map (bottom row), each scaled to its own range.")
        if "faithfulness" in wanted:
            run.save_figure(fplots.ranking_figure(summary_rows), "faithfulness")
            figures["faithfulness"] = ("Deletion (lower is better) and Insertion (higher is better) of each method, raw "
                                   "(open) and FORGrad-filtered (filled), per model.")
        if run.has_table("cutoff_curves") and "cutoffs" in wanted:
            fig = fplots.cutoff_figure(run.read_table("cutoff_curves"))
            run.save_figure(fig, "cutoffs")
            figures["cutoffs"] = ("Cut-off selection on held-out images: Insertion - Deletion against the cut-off "
                                  "(frequency steps; the last point keeps every frequency).")
    except ImportError:  # matplotlib missing: tables only
        pass
    run.write_meta(order=order, report_tables=["summary", "ranking_top"], figures=figures)
    top = [r for r in ranking if r["rank"] <= 3]
    run.write_table("ranking_top", top)
    run.finish(summ)
    return summ


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated attribution methods (default all: {','.join(METHODS)}); Captum's class "
                   "names are accepted too (IntegratedGradients, NoiseTunnel = smoothgrad, LayerGradCam, ...)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated: deletion,insertion,mufidelity")
    p.add_argument("--forgrad", default="auto", help="'auto' (select the cut-off on held-out images, or reuse the "
                   "saved one), 'off', or a cut-off (frequency steps, or a fraction of Nyquist with --cutoff-unit nyquist)")
    p.add_argument("--cutoff-unit", choices=("steps", "nyquist"), default="steps", help="unit of a cut-off given "
                   "with --forgrad: frequency steps (default, the paper's) or a fraction of Nyquist")
    p.add_argument("--window", choices=("ideal", "gaussian"), default="ideal", help="low-pass window")
    p.add_argument("--cutoffs-file", default=None, help="a cutoffs.json from an earlier run to reuse")
    p.add_argument("--select-images", type=int, default=64, help="held-out images for the cut-off selection")
    p.add_argument("--select-by", default="each", help="'each' (a cut-off per method) or a method name whose "
                   "cut-off every method uses")
    p.add_argument("--heldout-data", default=None, help="held-out images for the selection (default: the MNIST "
                   "validation split for MNIST, else mirrored copies of --data)")
    p.add_argument("--steps", type=int, default=10, help="Deletion/Insertion steps (Xplique's default 10)")
    p.add_argument("--mufidelity-masks", type=int, default=200, help="random masks per image for MuFidelity "
                   "(Xplique's default 200)")
    p.add_argument("--score", choices=("logit", "softmax"), default="softmax", help="model output the metrics use "
                   "(default the target's softmax probability, RISE's definition of Deletion/Insertion)")
    p.add_argument("--ig-steps", type=int, default=50, help="Integrated Gradients steps (Xplique's default 50)")
    p.add_argument("--noise-samples", type=int, default=50, help="SmoothGrad/SquareGrad/VarGrad samples (Xplique 50)")
    p.add_argument("--rise-masks", type=int, default=4000, help="RISE masks (Xplique 4000)")
    p.add_argument("--sobol-designs", type=int, default=32, help="Sobol designs, each 8^2 + 1 passes (Xplique 32)")
    p.add_argument("--hsic-designs", type=int, default=1500, help="HSIC designs, one pass each (Xplique 1500)")
    p.add_argument("--occlusion-window", type=int, default=None, help="Occlusion patch side in pixels (default: "
                   "the method's own, from the image size)")
    p.add_argument("--target", default="predicted", help="the class each map explains: a class index, or "
                   "'predicted' (the default: each image's predicted class, as Captum's and Xplique's examples do)")
    p.add_argument("--gradcam-layer", default=None, help="layer for Grad-CAM (default the last Conv2d)")
    p.add_argument("--internal-batch-size", type=int, default=256, help="perturbed/noisy copies per pass")
    p.add_argument("--figures", default="all", help=f"comma-separated figures to draw ({','.join(FIGURES)}), "
                   "'all' or 'none'")


#: The kind of each option above (:data:`infolens.experiments.common.KINDS`), checked before any work.
OPTIONS: dict[str, str] = {"methods": "list", "metrics": "list", "forgrad": "text", "cutoff_unit": "choice",
                           "window": "choice", "cutoffs_file": "file", "select_images": "positive",
                           "select_by": "text", "heldout_data": "text", "steps": "positive",
                           "mufidelity_masks": "positive", "score": "choice", "ig_steps": "positive",
                           "noise_samples": "positive", "rise_masks": "positive", "sobol_designs": "positive",
                           "hsic_designs": "positive", "occlusion_window": "positive", "gradcam_layer": "text",
                           "internal_batch_size": "positive", "figures": "list", "target": "text"}


def _heldout(spec: str, images: torch.Tensor, n: int, size: int | None) -> tuple[torch.Tensor, str]:
    from ... import data

    if spec == "mnist-val":
        x = data.mnist_splits()["val"].tensors[0][:n]
        return x, "MNIST validation split (last 5,000 training images)"
    if spec == "mirror":
        return images[:n].flip(-1), "mirrored copies of the evaluated images (no separate held-out set)"
    x = data.load_dataset(spec, split="test", limit=n, size=size).images
    return x, f"held-out data {spec}"


def run_model(run: RunDir, model: nn.Module, model_name: str, images: torch.Tensor, names: Sequence[str], *,
              method_names: Sequence[str], metric_names: Sequence[str], forgrad_mode: str | float,
              heldout: tuple[torch.Tensor, str] | None, settings: dict[str, dict[str, Any]], unit: str = "steps",
              window: str = "ideal", steps: int = 10, mufidelity_masks: int = 200, score: str = "softmax",
              select_by: str = "each", metric_batch_size: int = 256, batch_size: int = 64, seed: int = 0,
              cutoff_grid: Sequence[float] | None = None, reuse: Path | None = None, device: str = "cpu",
              progress: bool = True, target: int | None = None) -> dict[str, float | None]:
    """Cut-offs, then scores and spectra of one model; returns the cut-off used per method. ``target``: the
    class explained for every image (default None: each image's predicted class)."""
    model = model.eval().to(device)
    methods = build_methods(model, method_names, settings)
    if not any(_family(m) == "gradient" for m in methods):
        forgrad_mode = "off"  # only gradient-based methods are filtered
    if forgrad_mode == "off":
        cutoffs: dict[str, float | None] = {m: None for m in methods}
    elif forgrad_mode == "auto":
        x, note = heldout
        cutoffs = choose_cutoffs(run, model, model_name, methods, x, unit=unit, window=window, select_by=select_by,
                                 steps=steps, batch_size=metric_batch_size, grid=cutoff_grid, reuse=reuse, note=note,
                                 progress=progress, target=target)
    else:
        cutoffs = {m: float(forgrad_mode) for m in methods}
    cutoffs = {m: (cutoffs.get(m) if _family(m) == "gradient" else None) for m in methods}
    # the sanity references ride along, unfiltered (never counted as methods)
    methods.update({r: make_reference(r, model) for r in REFERENCES})
    cutoffs.update({r: None for r in REFERENCES})
    metrics = build_metrics(model, metric_names, steps=steps, mufidelity_masks=mufidelity_masks, score=score,
                            batch_size=metric_batch_size, seed=seed)
    evaluate(run, model, model_name, images, names, methods=methods, metrics=metrics, cutoffs=cutoffs, unit=unit,
             window=window, batch_size=batch_size, device=device, progress=progress, target=target)
    return cutoffs


def _validate(args: argparse.Namespace) -> None:
    from ..common import parse_target

    if not [m for m in args.methods.split(",") if m.strip()]:
        raise ValueError("--methods must name at least one attribution method")
    for m in args.methods.split(","):
        if m.strip():
            _canonical(m)
    if not [m for m in args.metrics.split(",") if m.strip()]:
        raise ValueError("--metrics must name at least one of deletion, insertion, mufidelity")
    parse_forgrad(args.forgrad)
    parse_figures(args.figures)
    parse_target(args.target)


def main(args: argparse.Namespace) -> Path:
    import sys

    from ..common import end_run, parse_target, start_run

    torch.manual_seed(args.seed)
    method_names = [_canonical(m) for m in args.methods.split(",") if m.strip()]
    metric_names = [m.strip().lower() for m in args.metrics.split(",") if m.strip()]
    params = {k: getattr(args, k) for k in ("model", "checkpoint", "data", "limit", "seed", "methods", "metrics",
                                            "forgrad", "cutoff_unit", "window", "select_images", "select_by",
                                            "heldout_data", "steps", "mufidelity_masks", "score", "ig_steps",
                                            "noise_samples", "rise_masks", "sobol_designs", "hsic_designs",
                                            "occlusion_window", "gradcam_layer")}
    if parse_target(args.target) is not None:  # the default (predicted) leaves earlier folders' parameters as they were
        params["target"] = parse_target(args.target)

    def validate_model(lm: Any) -> None:  # before meta.json is written: a corrected command starts clean
        target = parse_target(args.target)
        if target is not None and target >= lm.num_classes:
            raise ValueError(f"--target {target} is not a class of {lm.name}, which has {lm.num_classes} classes "
                             f"(0..{lm.num_classes - 1}); pass one of those, or predicted")
        for m in metric_names:
            make_metric(m, lm.model)  # validates the name
        if args.gradcam_layer is not None:
            from ...probe import resolve_layers
            from ..common import check_spatial

            try:
                names = resolve_layers(lm.model, args.gradcam_layer)
            except ValueError as exc:
                raise ValueError(f"--gradcam-layer {args.gradcam_layer}: {exc}") from None
            if len(names) != 1:
                raise ValueError(f"--gradcam-layer {args.gradcam_layer!r} selects {len(names)} layers; name exactly "
                                 f"one (list them with `infolens layers {lm.name}`)")
            check_spatial(lm, names, option="--gradcam-layer")

    s = start_run(args, analysis=ANALYSIS, title=f"FORGrad attribution: {args.model}",
                  description=__doc__.split("\n\n")[0], params=params, validate=_validate,
                  validate_model=validate_model, stream=True)
    lm, images, names, run, spec = s.model, s.images, s.names, s.run, s.data
    fmode = parse_forgrad(args.forgrad)
    size = lm.input_shape[-1] if spec != "mnist" else None
    heldout = None
    if fmode == "auto":
        hspec = args.heldout_data or ("mnist-val" if spec == "mnist" else "mirror")
        heldout = _heldout(hspec, images, args.select_images, size)
    settings = method_settings(ig_steps=args.ig_steps, noise_samples=args.noise_samples, rise_masks=args.rise_masks,
                               sobol_designs=args.sobol_designs, hsic_designs=args.hsic_designs,
                               occlusion_window=args.occlusion_window, seed=args.seed, batch_size=args.batch_size,
                               internal_batch_size=args.internal_batch_size, gradcam_layer=args.gradcam_layer)
    cut = run_model(run, lm.model, lm.name, images, names, method_names=method_names, metric_names=metric_names,
                    forgrad_mode=fmode, heldout=heldout, settings=settings, unit=args.cutoff_unit, window=args.window,
                    steps=args.steps, mufidelity_masks=args.mufidelity_masks, score=args.score,
                    select_by=args.select_by, batch_size=args.batch_size, seed=args.seed,
                    reuse=Path(args.cutoffs_file) if args.cutoffs_file else None, device=args.device,
                    progress=s.progress, target=parse_target(args.target))
    summ = finish_run(run, t0=s.t0, extra_summary={"cutoffs": {lm.name: cut},
                                                   "held_out": heldout[1] if heldout else "not used"},
                      figures=parse_figures(args.figures))
    for line in degenerate_warnings(run.read_table("summary") if run.has_table("summary") else []):
        print(line, file=sys.stderr)
    lines = [f"{model}: " + "; ".join(f"{k}: {v}" for k, v in h.items()) for model, h in summ["improved"].items()]
    return end_run(s, args, None, lines)


# --------------------------------------------------------------------------- demo

DEMO_MNIST = {"n_images": 24, "n_select": 16, "methods": ["saliency", "gradient_x_input", "integrated_gradients",
              "smoothgrad", "squaregrad", "vargrad", "guided_backprop", "gradcam", "occlusion", "rise"],
              "ig_steps": 16, "noise_samples": 16, "rise_masks": 128, "mufidelity_masks": 100,
              "cutoff_grid": None, "select_by": "saliency"}
DEMO_PHOTOS = {"n_images": 4, "methods": ["saliency", "gradcam", "occlusion"], "noise_samples": 4,
               "mufidelity_masks": 16, "steps": 5, "cutoff": 15.0, "occlusion_window": 56}
"""224 x 224 on EfficientNet-Lite0 costs ~80 ms per forward pass on one CPU core: the demo keeps to one method
of each family and 5 Deletion/Insertion steps (the CLI default is Xplique's 10) to stay within its budget."""
QUICK = {"n_images": 4, "n_select": 4, "methods": ["saliency", "occlusion"],
         "ig_steps": 4, "noise_samples": 4, "rise_masks": 32, "mufidelity_masks": 16,
         "cutoff_grid": [3.0, round(max_cutoff(28, 28), 4)], "select_by": "saliency",
         "occlusion_window": 7, "figures": ["spectra"]}


def demo(out: Path, *, quick: bool = False, device: str = "cpu", progress: bool = True,
         photos: bool | None = None) -> Path:
    """The FORGrad section of ``infolens demo``: the three built-in MNIST networks (24 test images; one
    cut-off per model, selected by Saliency's Insertion - Deletion on 16 validation images over the default
    log grid, and applied to every method: a search per method, the CLI's default, costs more than the
    section's budget) and EfficientNet-Lite0 on 4 bundled photographs (the paper's cut-off, 15 steps at 224)."""
    from ... import data
    from ..testbed import demo_models

    cfg = QUICK if quick else DEMO_MNIST
    pcfg = DEMO_PHOTOS
    photos = (not quick) if photos is None else photos
    params = {"quick": quick, "mnist": cfg, "photos": pcfg if photos else None}
    run = RunDir(out, writer=is_main(), analysis=ANALYSIS, params=params, device=device, overwrite=True,
                 title="FORGrad: low-pass filtered attributions and their faithfulness",
                 description=("Attribution maps of gradient-based (Saliency, Gradient x Input, Integrated Gradients, "
                              "SmoothGrad, SquareGrad, VarGrad, Guided Backprop, Grad-CAM) and prediction-based "
                              "(Occlusion, RISE) methods, with and without FORGrad low-pass filtering "
                              "(arXiv 2307.09591), scored by Deletion (lower is better), Insertion and MuFidelity "
                              "(higher is better, Xplique's definitions), on the built-in MNIST networks (test "
                              "images; the cut-off is chosen per model on validation images) and EfficientNet-Lite0 "
                              "on the bundled photographs. A small demo sample: spreads are wide; run "
                              "`infolens attribution` for more images."))
    t0 = time.perf_counter()
    cutoffs: dict[str, Any] = {}
    mx, _ = data.mnist_tensors("test", limit=cfg["n_images"])
    mnames = [f"mnist-test-{i:05d}" for i in range(mx.shape[0])]
    hx = data.mnist_splits()["val"].tensors[0][:cfg["n_select"]]
    settings = method_settings(ig_steps=cfg["ig_steps"], noise_samples=cfg["noise_samples"],
                               rise_masks=cfg["rise_masks"], occlusion_window=cfg.get("occlusion_window"),
                               internal_batch_size=512)
    for name, model in demo_models(quick=quick, device=device, progress=progress).items():
        _progress.say(f"[attribution] {name}", progress=progress)
        cutoffs[name] = run_model(run, model, name, mx, mnames, method_names=cfg["methods"],
                                  metric_names=DEFAULT_METRICS, forgrad_mode="auto",
                                  heldout=(hx, "MNIST validation split"), settings=settings,
                                  mufidelity_masks=cfg["mufidelity_masks"], select_by=cfg["select_by"],
                                  cutoff_grid=cfg["cutoff_grid"], metric_batch_size=512, device=device,
                                  progress=progress)["saliency"]
    if photos:
        from ...models import load_model

        _progress.say("[attribution] efficientnet_lite0", progress=progress)
        lm = load_model("efficientnet_lite0", device=device)
        px, pnames = data.load_photos(size=224)
        px, pnames = px[:pcfg["n_images"]], list(pnames[:pcfg["n_images"]])
        psettings = method_settings(noise_samples=pcfg["noise_samples"], occlusion_window=pcfg["occlusion_window"],
                                    batch_size=8, internal_batch_size=32)
        cutoffs[lm.name] = run_model(run, lm.model, lm.name, px, pnames, method_names=pcfg["methods"],
                                     metric_names=DEFAULT_METRICS, forgrad_mode=pcfg["cutoff"], heldout=None,
                                     settings=psettings, mufidelity_masks=pcfg["mufidelity_masks"],
                                     steps=pcfg["steps"], metric_batch_size=32, batch_size=8, device=device,
                                     progress=progress)["saliency"]
    finish_run(run, t0=t0, extra_summary={"cutoff (steps)": cutoffs}, figures=cfg.get("figures", FIGURES))
    return out


# --------------------------------------------------------------------------- claims F1-F5

from .verdicts import claims  # noqa: E402, F401  (the paper's protocol on the testbed: ``verdicts.py``)
