"""SROP (arXiv 2102.00369): layer-wise spectral roll-off points of feature maps, and the paper's three
sanity checks. CLI command ``infolens srop``; the first section of ``infolens demo``.

Checks (``docs/methods.md``, section 1; the details are our reading):

* ``none``: the SROP statistics of every selected layer on the data (per image and aggregated).
* ``input`` (a): the same images with their useful content removed or randomised
  (:data:`infolens.srop.INPUT_VARIANTS`: low-pass, high-pass, uniform noise, shuffled pixels, centre
  removed) against the originals, layer by layer.
* ``architecture`` (b): the trained network against the same architecture randomly initialised (the
  demo puts the three built-in architectures side by side).
* ``randomization`` (b): cascading layer randomisation from the output down (Adebayo et al. 2018).
* ``training`` (c): SROP statistics at every stage checkpoint of a training run beside the test
  accuracy, and their correlation (Pearson and Spearman) over the stages.

Every check measures at one point, ``--at`` (:mod:`infolens.srop.points`): ``activation`` (default),
``conv`` or ``block``. The paper's claims S1-S3 at every point: :func:`claims`
(:mod:`infolens.experiments.srop.verdicts`, used by ``infolens reproduce``).

Work is done in units of global image indices per (check, model, variant), each written as a part
(resumable after a kill; shardable over torchrun processes, giving the rows of one process).
Tables: ``images`` (image x layer x variant statistics of the channel SROPs), ``histogram`` (channel
counts per SROP bin; empty bins left out), ``layers`` (averaged over images), ``summary`` (averaged over layers), and for the
training check ``correlation``.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ... import _progress
from ...distributed import Unit, gather_table, is_main, run_units, work_units
from ...probe import parse_layer_selection
from ...results import RunDir
from ...srop import (DEFAULT_AT, INPUT_VARIANTS, MEASUREMENT_POINTS, cascading_randomization, correlation,
                    SpectralRolloff, input_variant, srop_statistics, summarize_image_rows)

HELP = ("SROP (arXiv 2102.00369): spectral roll-off points of feature maps layer by layer, with the paper's "
        "sanity checks (input, architecture/randomisation, training stage)")
TAKES_MODEL = True

ANALYSIS = "srop"
CHECKS = ("none", "input", "architecture", "randomization", "training")
STAT_COLUMNS = ("mean", "median", "std")

ModelLike = nn.Module | Callable[[], nn.Module]


@dataclass
class Settings:
    """What fixes the numbers of every unit (the SROP parameters of :func:`infolens.srop.layer_srops`)."""

    layers: Any = "all conv"
    at: str = DEFAULT_AT
    kappa: float = 0.85
    q: float = 2.0
    keep_dc: bool = True
    disc: bool = False
    bins: int = 28
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    channels: bool = False
    progress: bool = True
    _loaded: dict = field(default_factory=dict, repr=False)


def _slug(s: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", str(s)).strip("_") or "x"


def measure(run: RunDir, model: ModelLike, model_name: str, images: torch.Tensor, names: Sequence[str],
            cfg: Settings, *, check: str, variant: str, step: int = 0,
            transform: Callable[[torch.Tensor, list[int]], torch.Tensor] | None = None,
            extra: Mapping[str, Any] | None = None) -> int:
    """SROP statistics of one (check, model, variant) for every image, as resumable parts.

    ``model`` may be a zero-argument callable that builds it (called only if some unit is left to do).
    ``transform(x, global_indices)`` makes the variant from the unit's images. Writes parts of tables
    ``images`` (one row per image x layer), ``histogram`` and, with ``cfg.channels``, ``channels``.
    Returns the number of units computed.
    """
    fixed = {"check": check, "model": model_name, "step": int(step), "variant": variant, "at": cfg.at, **(extra or {})}
    prefix = ".".join(_slug(v) for v in (check, model_name, variant))
    units = [Unit(key=f"{prefix}.{u.key}", indices=u.indices) for u in work_units(images.shape[0], cfg.batch_size)]
    holder: dict[str, nn.Module] = {}

    def get_model() -> nn.Module:
        if "m" not in holder:
            holder["m"] = model if isinstance(model, nn.Module) else model()
        return holder["m"]

    def unit_fn(u: Unit) -> list[dict[str, Any]]:
        idx = list(u.indices)
        x = images[idx]
        if transform is not None:
            x = transform(x, idx)
        res = SpectralRolloff(get_model(), cfg.layers, at=cfg.at, kappa=cfg.kappa, q=cfg.q, keep_dc=cfg.keep_dc,
                              disc=cfg.disc, batch_size=len(idx), device=cfg.device).measure(x, indices=idx)
        st = srop_statistics(res, bins=cfg.bins)
        rows = st.image_rows(extra=fixed)
        for r in rows:
            r["name"] = names[r["index"]]
        # secondary parts first, never rewritten: a resumed run leaves every finished file untouched
        if not run.has_part("histogram", u.key):
            run.write_part("histogram", u.key, st.histogram_rows(extra=fixed, skip_empty=True))
        if cfg.channels and not run.has_part("channels", u.key):
            run.write_part("channels", u.key, res.rows(extra=fixed))
        return rows

    return run_units(run, "images", units, unit_fn, desc=f"SROP {check} {model_name} {variant}",
                     progress=cfg.progress, data=images)


# --------------------------------------------------------------------------- the checks


def check_none(run: RunDir, model: ModelLike, model_name: str, images: torch.Tensor, names: Sequence[str],
               cfg: Settings) -> None:
    """The plain analysis: SROP statistics of the selected layers on the images."""
    measure(run, model, model_name, images, names, cfg, check="none", variant="original")


def check_input(run: RunDir, model: ModelLike, model_name: str, images: torch.Tensor, names: Sequence[str],
                cfg: Settings, *, variants: Sequence[str] = INPUT_VARIANTS, cutoff: float = 0.25,
                center: float = 0.5) -> None:
    """Sanity check (a): originals against variants with the useful content removed or randomised."""
    for step, v in enumerate(variants):
        def tf(x: torch.Tensor, idx: list[int], v: str = v) -> torch.Tensor:
            return input_variant(x, v, indices=idx, seed=cfg.seed, cutoff=cutoff, center=center)

        measure(run, model, model_name, images, names, cfg, check="input", variant=v, step=step, transform=tf)


def check_architecture(run: RunDir, trained: ModelLike, random: ModelLike, model_name: str, images: torch.Tensor,
                       names: Sequence[str], cfg: Settings) -> None:
    """Sanity check (b): the trained network against the same architecture randomly initialised."""
    measure(run, trained, model_name, images, names, cfg, check="architecture", variant="trained", step=0)
    measure(run, random, model_name, images, names, cfg, check="architecture", variant="random init", step=1)


def check_randomization(run: RunDir, model: nn.Module, model_name: str, images: torch.Tensor,
                        names: Sequence[str], cfg: Settings) -> None:
    """Sanity check (b): cascading randomisation from the output down; variant = the last layer re-initialised."""
    for step, (layer, m) in enumerate(cascading_randomization(model, seed=cfg.seed)):
        measure(run, m, model_name, images, names, cfg, check="randomization", variant=layer, step=step)


@dataclass
class Stage:
    """One training stage: where it is, its test accuracy, and how to build the model."""

    epoch: float
    test_acc: float
    load: Callable[[], nn.Module]


def builtin_stages(name: str, *, quick: bool = False, device: str = "cpu", progress: bool = True) -> list[Stage]:
    """The stage checkpoints of a built-in network (the testbed's shipped stages)."""
    from .verdicts import mnist_stages

    return [Stage(epoch, acc, load) for epoch, acc, load in mnist_stages(name, quick=quick, device=device,
                                                                        progress=progress)]


def check_training(run: RunDir, stages: Sequence[Stage], model_name: str, images: torch.Tensor,
                   names: Sequence[str], cfg: Settings) -> None:
    """Sanity check (c): SROP statistics at every training stage (accuracy kept beside them)."""
    for step, s in enumerate(stages):
        measure(run, s.load, model_name, images, names, cfg, check="training", variant=f"epoch {s.epoch:g}",
                step=step, extra={"epoch": s.epoch, "test_acc": s.test_acc})


# --------------------------------------------------------------------------- tables, figures, summary


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and v == v


def summarize(images: list[dict[str, Any]]) -> tuple[list[dict], list[dict], list[dict]]:
    """``layers`` (per check, model, variant, layer: averaged over images), ``summary`` (averaged over
    layers too) and ``correlation`` (training check: each statistic against test accuracy over stages)."""
    carry = ("depth", "stride", "epoch", "test_acc")
    layers = summarize_image_rows(images, by=("check", "model", "step", "variant", "layer"), carry=carry)
    groups: dict[tuple, list[dict]] = {}
    for r in layers:
        groups.setdefault((r["check"], r["model"], r["step"], r["variant"]), []).append(r)
    summary = []
    for (check, model, step, variant), rs in groups.items():
        row: dict[str, Any] = {"check": check, "model": model, "step": step, "variant": variant}
        if check == "training":
            row.update(epoch=rs[0]["epoch"], test_acc=rs[0]["test_acc"])
        for k in ("mean", "median", "std", "mean_input"):
            vals = [float(r[k]) for r in rs if _finite(r.get(k))]
            row[f"srop_{k}"] = round(sum(vals) / len(vals), 6) if vals else float("nan")
        row["n_layers"] = len(rs)
        row["dead_share"] = round(sum(r["n_dead"] for r in rs) / max(1, sum(r["n_channels"] for r in rs)), 6)
        summary.append(row)
    corr = []
    for model in dict.fromkeys(r["model"] for r in summary if r["check"] == "training"):
        every = [r for r in summary if r["check"] == "training" and r["model"] == model]
        lay = [r for r in layers if r["check"] == "training" and r["model"] == model]
        # over every stage, and over the trained ones only (the initialisation is another regime: check b)
        for scope, keep in (("all", lambda r: True), ("epoch > 0", lambda r: float(r["epoch"]) > 0)):
            stages = [r for r in every if keep(r)]
            acc = [r["test_acc"] for r in stages]
            for stat in STAT_COLUMNS:
                c = correlation([r[f"srop_{stat}"] for r in stages], acc)
                corr.append({"model": model, "stages": scope, "layer": "mean over layers", "statistic": stat,
                             "pearson": round(c["pearson"], 4), "spearman": round(c["spearman"], 4), "n_stages": c["n"]})
            if scope != "all":
                continue
            for name in dict.fromkeys(r["layer"] for r in lay):
                rs = sorted((r for r in lay if r["layer"] == name), key=lambda r: r["step"])
                c = correlation([r["mean"] for r in rs], [r["test_acc"] for r in rs])
                corr.append({"model": model, "stages": scope, "layer": name, "statistic": "mean",
                             "pearson": round(c["pearson"], 4), "spearman": round(c["spearman"], 4), "n_stages": c["n"]})
    return layers, summary, corr


def _sum_histogram(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    acc: dict[tuple, int] = {}
    for r in rows:
        k = (r["check"], r["model"], r["step"], r["variant"], r["layer"], r["depth"], r["bin_lo"], r["bin_hi"])
        acc[k] = acc.get(k, 0) + int(r["count"])
    return [{"check": k[0], "model": k[1], "step": k[2], "variant": k[3], "layer": k[4], "depth": k[5],
             "bin_lo": k[6], "bin_hi": k[7], "count": v} for k, v in acc.items()]


def headline(summary: list[dict[str, Any]], corr: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers shown first: mean SROP (over layers and images) per check, model and variant;
    the training-stage correlations of the mean SROP with accuracy."""
    out: dict[str, Any] = {}
    for r in summary:
        if r["check"] in ("none", "input", "architecture"):
            out.setdefault(f"mean SROP ({r['check']})", {}).setdefault(r["model"], {})[r["variant"]] = r["srop_mean"]
        elif r["check"] == "randomization":
            d = out.setdefault("mean SROP (cascading randomisation: none -> all)", {})
            d.setdefault(r["model"], []).append(r["srop_mean"])
    for r in corr:
        if r["layer"] == "mean over layers":
            out.setdefault("training: correlation of SROP with test accuracy", {}).setdefault(
                r["model"], {}).setdefault(f"stages {r['stages']}", {})[r["statistic"]] = {
                    "pearson": r["pearson"], "spearman": r["spearman"]}
    return out


FIGURE_CAPTIONS = {
    "input": "Sanity check (a), the input: mean channel SROP per layer (fraction of the layer's Nyquist; band: "
             "mean of the per-image quartiles) for the original images and variants with the useful content "
             "removed (low-pass, centre removed) or randomised (noise, shuffled pixels), per model.",
    "architecture": "Sanity check (b), the architecture: distribution of channel SROPs per layer (box: quartiles, "
                    "whiskers: 10th-90th percentile, averaged over images; dot: mean) of each trained network beside "
                    "the same architecture randomly initialised.",
    "randomization": "Sanity check (b), cascading randomisation (Adebayo et al. 2018): mean channel SROP per layer "
                     "as the layers are re-initialised from the output down (one line per step).",
    "training": "Sanity check (c), the training stage: mean channel SROP (averaged over layers) and test accuracy at "
                "each checkpoint (top); SROP against accuracy with Pearson's r and Spearman's rho over all stages and "
                "over the trained ones (epoch > 0) (bottom).",
    "none": "Mean channel SROP per layer (band: mean of the per-image quartiles), in the layer's own frequency "
            "(solid) and in cycles per input pixel (dashed, fraction of the input's Nyquist).",
}


def make_figures(run: RunDir, layers: list[dict], summary: list[dict], corr: list[dict],
                 only: Sequence[str] | None = None) -> dict[str, str]:
    """One figure per check present (or per check of ``only``), from the tables; returns name -> caption."""
    try:
        from ...plots import srop as splots
    except ImportError:  # pragma: no cover - matplotlib missing
        return {}
    figures = {}
    present = [c for c in dict.fromkeys(r["check"] for r in layers) if only is None or c in only]
    makers = {"none": lambda: splots.profile_figure(layers, check="none", input_pixels=True),
              "input": lambda: splots.profile_figure(layers, check="input"),
              "architecture": lambda: splots.architecture_figure(layers),
              "randomization": lambda: splots.profile_figure(layers, check="randomization", band=False),
              "training": lambda: splots.training_figure(summary, corr)}
    for check in present:
        try:
            fig = makers[check]()
        except ImportError:  # pragma: no cover
            return figures
        run.save_figure(fig, f"srop_{check}")
        figures[f"srop_{check}"] = FIGURE_CAPTIONS[check]
    return figures


def finish_run(run: RunDir, *, t0: float, order: int = 10, extra_summary: Mapping[str, Any] | None = None,
               figures: bool | Sequence[str] = True, channels: bool = False) -> dict[str, Any] | None:
    """Merge the parts (all ranks wait), then rank 0 writes the derived tables, figures and summary."""
    images = gather_table(run, "images", sort_by=("check", "model", "step", "index", "depth"))
    hist = gather_table(run, "histogram", sort_by=("check", "model", "step", "depth", "bin_lo"))
    if channels:
        gather_table(run, "channels", sort_by=("check", "model", "step", "index", "depth", "channel"))
    if not is_main():
        return None
    run.write_table("histogram", _sum_histogram(hist))
    layers, summary, corr = summarize(images)
    run.write_table("layers", layers)
    run.write_table("summary", summary)
    tables = []
    for check in dict.fromkeys(r["check"] for r in summary):  # small per-check tables for the report
        if check != "randomization":
            run.write_table(f"summary_{check}", [{k: v for k, v in r.items() if k != "check"}
                                                 for r in summary if r["check"] == check])
            tables.append(f"summary_{check}")
    if corr:
        run.write_table("correlation", corr)
        tables.append("correlation")
    figs = make_figures(run, layers, summary, corr, only=None if figures is True else figures) if figures else {}
    run.write_meta(order=order, report_tables=tables, figures=figs)
    head = {**headline(summary, corr), **(extra_summary or {}), "seconds": round(time.perf_counter() - t0, 1)}
    run.finish(head)
    return head


# --------------------------------------------------------------------------- CLI


def parse_checks(value: str) -> list[str]:
    """``none`` | ``all`` | a comma-separated list of :data:`CHECKS`."""
    items = [v.strip().lower() for v in str(value).split(",") if v.strip()]
    if items == ["all"]:
        return ["input", "architecture", "randomization", "training"]
    bad = [v for v in items if v not in CHECKS]
    if bad or not items:
        raise ValueError(f"--check must be 'all' or a comma-separated list of {', '.join(CHECKS)}, got {value!r}")
    return list(dict.fromkeys(items))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", default="all conv", help="layers to analyse: 'all conv' (default), names or globs "
                   "separated by ';' or ',' (list them with `infolens layers MODEL`)")
    p.add_argument("--at", default=DEFAULT_AT, choices=MEASUREMENT_POINTS,
                   help="measurement point: activation (default: after each convolution's non-linearity), conv "
                   "(the convolution output) or block (residual/stage block outputs)")
    p.add_argument("--check", default="none", help="sanity checks: none (only the layer statistics), input, "
                   "architecture, randomization, training, a comma-separated list, or all")
    p.add_argument("--variants", default=",".join(INPUT_VARIANTS), help="input variants of the input check")
    p.add_argument("--kappa", type=float, default=0.85, help="energy threshold of the roll-off (default 0.85)")
    p.add_argument("--q", type=float, default=2.0, help="spectrum exponent: 2 power (default), 1 magnitude")
    p.add_argument("--no-dc", action="store_true", help="leave the DC bin out of the spectrum")
    p.add_argument("--disc", action="store_true", help="only the inscribed disc (radius <= Nyquist)")
    p.add_argument("--bins", type=int, default=28, help="histogram bins over [0, sqrt(2)]")
    p.add_argument("--channels", action="store_true", help="also write every channel's SROP (table 'channels')")
    p.add_argument("--stages", default=None, help="training check for a non-built-in model: a CSV with columns "
                   "checkpoint, epoch and optionally test_acc (else measured on --data)")


#: The kind of each option above (:data:`infolens.experiments.common.KINDS`), checked before any work.
OPTIONS: dict[str, str] = {"layers": "text", "at": "choice", "check": "list", "variants": "list", "kappa": "fraction",
                           "q": "positive_float", "no_dc": "flag", "disc": "flag", "bins": "positive",
                           "channels": "flag", "stages": "file"}


def _random_init(spec: str, source: str, seed: int, device: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from ...models import build_builtin, load_model

        if source == "builtin":
            return build_builtin(spec, seed=seed).to(device).eval()
        state = torch.get_rng_state()
        try:
            torch.manual_seed(seed)
            return load_model(spec, device=device, pretrained=False).model
        finally:
            torch.set_rng_state(state)
    return build


def _stages_from_file(path: str, spec: str, images: torch.Tensor, labels: torch.Tensor, device: str) -> list[Stage]:
    from ...models import evaluate, load_model

    rows = _read_stages(path)
    stages = []
    for r in rows:
        def load(ck: str = str(r["checkpoint"])) -> nn.Module:
            return load_model(spec, checkpoint=ck, device=device).model
        acc = r.get("test_acc", float("nan"))
        if not _finite(acc):
            if bool((labels < 0).all()):
                raise ValueError(f"--stages {path} gives no test_acc and --data has no labels to measure it")
            acc = evaluate(load(), images, labels, device=device)
        stages.append(Stage(float(r["epoch"]), float(acc), load))
    return stages


def _validate(args: argparse.Namespace) -> None:
    parse_checks(args.check)
    bad = [v for v in _variants(args) if v not in INPUT_VARIANTS]
    if bad:
        raise ValueError(f"--variants: unknown {', '.join(bad)}; choose from {', '.join(INPUT_VARIANTS)}")
    parse_layer_selection(args.layers, name="--layers")
    if args.stages:
        _read_stages(args.stages)


def _read_stages(path: str) -> list[dict]:
    """The ``--stages`` CSV (columns checkpoint, epoch, optionally test_acc), or a one-line error naming it."""
    import csv

    from ...results import read_csv

    if not Path(path).is_file():
        raise FileNotFoundError(f"--stages {path} does not exist; pass a CSV with columns checkpoint, epoch "
                                f"(and optionally test_acc)")
    try:
        rows = read_csv(path)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"--stages {path} cannot be parsed as CSV ({type(exc).__name__}: {str(exc)[:120]}); pass "
                         f"a CSV with columns checkpoint, epoch (and optionally test_acc)") from None
    if not rows or "checkpoint" not in rows[0] or "epoch" not in rows[0]:
        raise ValueError(f"--stages {path} must be a CSV with columns checkpoint, epoch (and optionally test_acc)")
    return rows


def _check_training_source(args: argparse.Namespace, lm: Any) -> None:
    """``--check training`` needs stages: a cached built-in's, or ``--stages``. Refused before any work."""
    if "training" in parse_checks(args.check) and not args.stages and not (
            lm.source == "builtin" and args.checkpoint is None):
        raise ValueError("--check training needs --stages FILE (checkpoint, epoch, test_acc) for a model "
                         "other than a cached built-in")


def _validate_points(lm: Any, layers: Any, at: str, device: str) -> None:
    """Unknown layers, or no activation to measure, fail before any work."""
    from ...probe import resolve_layers
    from ...srop import plan_points

    from ..common import check_spatial

    check_spatial(lm, resolve_layers(lm.model, layers))
    plan_points(lm.model.eval(), torch.zeros(1, *lm.input_shape, device=device), layers, at)


def _variants(args: argparse.Namespace) -> list[str]:
    return [v.strip() for v in args.variants.split(",") if v.strip()]


def main(args: argparse.Namespace) -> Path:
    from ..common import end_run, start_run

    layers = parse_layer_selection(args.layers, name="--layers")
    params = {k: getattr(args, k) for k in ("model", "checkpoint", "data", "limit", "seed", "layers", "at", "check",
                                            "variants", "kappa", "q", "no_dc", "disc", "bins", "batch_size",
                                            "channels", "stages")}
    s = start_run(args, analysis=ANALYSIS, title=f"SROP: {args.model}", description=__doc__.split("\n\n")[0],
                  params=params, validate=_validate,
                  validate_model=lambda lm: (_check_training_source(args, lm),
                                             _validate_points(lm, layers, args.at, args.device)), stream=True)
    lm, images, labels, names, run = s.model, s.images, s.labels, s.names, s.run
    cfg = Settings(layers=layers, at=args.at, kappa=args.kappa, q=args.q, keep_dc=not args.no_dc, disc=args.disc, bins=args.bins,
                   batch_size=args.batch_size, seed=args.seed, device=args.device, channels=args.channels,
                   progress=s.progress)
    for check in parse_checks(args.check):
        if check == "none":
            check_none(run, lm.model, lm.name, images, names, cfg)
        elif check == "input":
            check_input(run, lm.model, lm.name, images, names, cfg, variants=_variants(args))
        elif check == "architecture":
            check_architecture(run, lm.model, _random_init(args.model, lm.source, args.seed, args.device), lm.name,
                               images, names, cfg)
        elif check == "randomization":
            check_randomization(run, lm.model, lm.name, images, names, cfg)
        elif check == "training":
            if args.stages:
                stages = _stages_from_file(args.stages, args.model, images, labels, args.device)
            elif lm.source == "builtin" and args.checkpoint is None:
                stages = builtin_stages(args.model, device=args.device, progress=s.progress)
            else:
                raise ValueError("--check training needs --stages FILE (checkpoint, epoch, test_acc) for a model "
                                 "other than a cached built-in")
            check_training(run, stages, lm.name, images, names, cfg)
    head = finish_run(run, t0=s.t0, channels=args.channels)
    if head is None:  # not the main process under torchrun
        return s.out
    return end_run(s, args, head)


# --------------------------------------------------------------------------- demo

DEMO = {"n_mnist": 100, "n_photos": 4, "n_cascade": 32, "variants": list(INPUT_VARIANTS),
        "photo_variants": ["original", "lowpass", "noise", "shuffled"], "batch_size": 100,
        "photo_layers": ["_conv_stem", "_blocks.*._depthwise_conv", "_conv_head"],
        "cascade_models": ["mnist_vgg", "mnist_resnet", "mnist_allconv"]}
QUICK = {"n_mnist": 32, "n_photos": 0, "n_cascade": 16, "variants": ["original", "lowpass", "noise", "shuffled"],
         "photo_variants": [], "batch_size": 32, "cascade_models": [], "figures": ["input", "training"]}


def demo(out: Path, *, quick: bool = False, device: str = "cpu", progress: bool = True) -> Path:
    """The SROP section of ``infolens demo``: the three checks on the built-in MNIST networks (test
    images) and the input check on EfficientNet-Lite0 with the bundled photographs."""
    from ... import data
    from ...models import build_builtin
    from ..testbed import DEMO_MODELS, demo_models

    cfg_d = QUICK if quick else DEMO
    run = RunDir(out, writer=is_main(), analysis=ANALYSIS, params={"quick": quick, **cfg_d}, device=device, overwrite=True,
                 title="SROP: spectral roll-off points of feature maps",
                 description=("Rotation-invariant 2-D spectral roll-off points (arXiv 2102.00369; 85% of the power "
                              "spectrum, as a fraction of each layer's Nyquist frequency) of every channel of every "
                              "convolution, summarised per layer, with the paper's sanity checks: (a) the input "
                              "(originals against content removed or randomised), (b) the architecture (the three "
                              "built-in networks trained and randomly initialised; cascading randomisation) and "
                              "(c) the training stage (SROP beside test accuracy at each checkpoint), on MNIST test "
                              "digits, and (a) for EfficientNet-Lite0 on bundled photographs (its stem, the depthwise "
                              "convolution of every block and its head), each measured after its non-linearity."))
    cfg = Settings(batch_size=cfg_d["batch_size"], device=device, progress=progress)
    t0 = time.perf_counter()
    mx, _ = data.mnist_tensors("test", limit=cfg_d["n_mnist"])
    mnames = [f"mnist-test-{i:05d}" for i in range(mx.shape[0])]
    nets = demo_models(quick=quick, device=device, progress=progress)
    for name in DEMO_MODELS:
        _progress.say(f"[srop] {name}", progress=progress)
        check_input(run, nets[name], name, mx, mnames, cfg, variants=cfg_d["variants"])
        check_architecture(run, nets[name], lambda n=name: build_builtin(n).to(device).eval(), name, mx, mnames, cfg)
        check_training(run, builtin_stages(name, quick=quick, device=device, progress=progress), name, mx, mnames, cfg)
        if name in cfg_d["cascade_models"]:
            check_randomization(run, nets[name], name, mx[:cfg_d["n_cascade"]], mnames, cfg)
    if cfg_d["n_photos"]:
        from ...models import load_model

        _progress.say("[srop] efficientnet_lite0", progress=progress)
        lm = load_model("efficientnet_lite0", device=device)
        px, pnames = data.load_photos(size=224)
        pcfg = Settings(layers=cfg_d["photo_layers"], batch_size=cfg_d["n_photos"], device=device, progress=progress)
        check_input(run, lm.model, lm.name, px[:cfg_d["n_photos"]], list(pnames), pcfg,
                    variants=cfg_d["photo_variants"])
    finish_run(run, t0=t0, order=10, figures=cfg_d.get("figures", True))
    return out


# --------------------------------------------------------------------------- claims


def claims(out: Path, *, quick: bool, device: str = "cpu", progress: bool = True,
           models: Sequence[str] | None = None) -> list[dict]:
    """Claims S1-S3 (``docs/claims.md``) on the testbed at every measurement point: see
    :mod:`infolens.experiments.srop.verdicts` (``models``: a partial run on some testbed models)."""
    from .verdicts import claims as _claims

    return _claims(out, quick=quick, device=device, progress=progress, models=models)
