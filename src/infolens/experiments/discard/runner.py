"""Information discarding (arXiv 1906.04109): layer-wise discarded information through depth, pixel-wise
entropy maps, reconstruction uncertainty, and the claims D1-D5 of ``docs/claims.md``. CLI command
``infolens discard``; :func:`claims` for ``infolens reproduce``; a section of ``infolens demo``.

Protocol (``docs/methods.md`` section 2; mechanics in :mod:`infolens.discard`): for every image and
layer, sigma such that the post-ReLU feature error is 1.5 times that of uniform 0.01 noise, in the model's
normalised input space, under ``solver="release"`` (the official code's procedure) and ``"constrained"``
(the exact optimum). Claims (fixed before any result): D1 background (no ink) minus stroke (mean ink > 0.2)
cells at the deepest layer; D2 Spearman rho(depth, mean entropy) per model, both testbeds; D3 isometries
against the closed form within 0.01 nats; D4 rho(test accuracy, D1's gap) over stage checkpoints; D5
rho(depth, reconstruction uncertainty) per MNIST model. Intervals: bootstrap over images
(:func:`infolens.claims.bootstrap`). Work is done in resumable units of global image indices.

The measurement is in :mod:`.measure`, the claims in :mod:`.verdicts` (both re-exported here); this module
holds the runner: the CLI (:func:`add_arguments`, :func:`main`) and :func:`demo`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ...probe import parse_layer_selection, resolve_layers
from .measure import (ANALYSIS, DEFAULT_LAYERS, H_ISOMETRY, INK_STROKE, analyse, block_layers, convergence,
                      default_layers, finish_run, get_decoders, ink_gap, layer_summary, recon_settings, recon_summary,
                      shared_decoders)
from .verdicts import (DEVIATIONS, FULL_CLAIMS, MIN_IMAGES, QUICK_CLAIMS, SOLVERS, claims, decide_claims,
                       isometry_rows)

__all__ = [
    "HELP", "TAKES_MODEL", "ANALYSIS", "DEFAULT_LAYERS", "H_ISOMETRY", "INK_STROKE", "SOLVERS", "MIN_IMAGES",
    "QUICK_CLAIMS", "FULL_CLAIMS", "DEVIATIONS", "default_layers", "block_layers", "parse_grid", "get_decoders",
    "shared_decoders",
    "recon_settings", "ink_gap", "analyse", "layer_summary", "recon_summary", "convergence", "finish_run",
    "add_arguments", "OPTIONS", "auto_grid", "settings_from", "main", "demo", "isometry_rows", "claims", "decide_claims",
]

HELP = ("Information discarding (arXiv 1906.04109): pixel-wise entropy maps and the discarded information "
        "of each layer, with reconstruction uncertainty")
TAKES_MODEL = True


def parse_grid(value: str | int | None) -> int | None:
    """``--grid``: cells per side, or ``pixel`` for one sigma per pixel (``None``). ``0`` is refused: it
    would otherwise read as per-pixel without saying so."""
    if value is None or str(value).strip().lower() == "pixel":
        return None
    try:
        g = int(value)
    except ValueError:
        raise ValueError(f"--grid must be a positive integer (cells per side) or 'pixel', got {value!r}") from None
    if g < 1:
        raise ValueError(f"--grid must be a positive integer (cells per side), got {value!r}; pass --grid pixel for "
                         f"one sigma per pixel")
    return g


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


#: The kind of each option above (:data:`infolens.experiments.common.KINDS`), checked before any work.
OPTIONS: dict[str, str] = {"layers": "list", "solver": "choice", "space": "choice", "steps": "positive",
                           "samples": "positive", "grid": "text", "tau": "positive_float",
                           "sigma0": "positive_float", "internal_batch_size": "positive", "decoders": "count"}


def auto_grid(image_size: int) -> int:
    """16 cells per side (the release's ``capability_sigma_size``) unless it does not divide the image:
    then 14 for 28 px MNIST (2 x 2 cells; a grid that divides the image keeps cells of equal size)."""
    return 16 if image_size % 16 == 0 else (14 if image_size % 14 == 0 else 16)


def settings_from(args: argparse.Namespace, image_size: int) -> dict[str, Any]:
    grid = auto_grid(image_size) if str(args.grid) == "auto" else parse_grid(args.grid)
    return {"grid": grid, "solver": args.solver, "space": args.space, "n_steps": args.steps, "n_samples": args.samples,
            "tau": args.tau, "sigma0": args.sigma0, "internal_batch_size": args.internal_batch_size, "seed": args.seed}


def main(args: argparse.Namespace) -> Path:
    from ... import data
    from ..common import end_run, start_run

    def params(lm: Any, spec: str) -> dict[str, Any]:
        return {"model": args.model, "checkpoint": args.checkpoint, "data": spec, "limit": args.limit,
                "layers": args.layers, "settings": settings_from(args, lm.input_shape[-1]), "decoders": args.decoders}

    def validate(a: argparse.Namespace) -> None:
        parse_grid(a.grid) if str(a.grid) != "auto" else None

    def validate_model(lm: Any) -> None:  # before meta.json is written: a corrected command starts clean
        try:
            resolve_layers(lm.model, parse_layer_selection(args.layers, name="--layers") if args.layers
                           else default_layers(lm.model, lm.name))
        except ValueError as exc:
            raise ValueError(f"--layers {args.layers}: {exc}" if args.layers else str(exc)) from None
        grid, size = settings_from(args, lm.input_shape[-1])["grid"], lm.input_shape[-1]
        if grid is not None and grid > size:
            raise ValueError(f"--grid {grid} is finer than the model's {size}x{size} images; pass at most {size}, "
                             f"or --grid pixel for one sigma per pixel")

    setup = start_run(args, analysis=ANALYSIS, title="Information discarding", description=__doc__.split("\n\n")[0],
                      params=params, validate=validate, validate_model=validate_model)
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
        decoders = shared_decoders(setup.run, {lm.name: lm.model}, {lm.name: layers}, tx[:n_dec], tx[n_dec:],
                                   seed=args.seed, device=args.device, progress=setup.progress)[0][lm.name]
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
