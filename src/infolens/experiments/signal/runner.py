"""What classifiers like to see (arXiv 1803.08337): one autoencoder pre-trained on reconstruction, one copy
tuned through each frozen classifier; the cross-classifier accuracy matrix with paired intervals, the
order it implies (McNemar's exact test per pair), NMI between images and reconstructions, reconstructions
with their differences, power spectra, and claims A1-A4 (``docs/claims.md``).
CLI command ``infolens signal --models A,B,C``; a section of ``infolens demo``; ``claims()`` for
``infolens reproduce``.

Protocol (``docs/methods.md``, method 3; amendment 1 of ``docs/claims.md``).

* **Stage 1 off the classifiers' domain** (primary): the autoencoder reconstructs grey 28 x 28 patches of
  natural photographs (:func:`infolens.signal.photo_patches`: random crops at 7 scales, flips) of the
  14 testbed photographs not in :data:`HELD_OUT_PHOTOS`; patches of those 3 held-out photographs decide
  its plateau. Never MNIST, as the paper pre-trains on YFCC100m and tests on ImageNet. Sensitivity: the
  same autoencoder pre-trained on the MNIST training digits (the earlier testbed, on which A1 had nothing
  to let in).
* **Stage 2**: a copy per classifier tunes its decoder on the classifier's cross-entropy over the MNIST
  training split (55,000 digits); the first ``val_images`` of the 5,000 held-out training digits decide the
  plateau, and the best held-out state is kept. The test split is measured; reconstructions reach the
  classifiers unclipped.
* Both stages stop at a plateau of the held-out loss (:func:`infolens.signal.plateaued`: no relative
  improvement over 1 % in 3 evaluations) or at the cap; each stage runs for every seed of ``seeds``
  (at least 3: one training run is one sample).

Schedule caps (fixed before any verdict of this testbed was seen, from the cost measured on the 2-core
development machine while it ran other jobs, load about 7: stage 1 1.75 steps/s, stage 2 1.8-5.0 steps/s
(``mnist_allconv`` / ``mnist_lenet5`` slowest, ``mnist_mlp`` fastest), one thread each; an idle machine runs stage 1 at about 8 steps/s on
2 threads, the earlier note of 2,400 steps in about 5 minutes): stage 1 at most 2,000 steps (batch 128,
held-out MSE every 100 steps), stage 2 at most 300 steps (held-out cross-entropy every 25 steps); 3 seeds;
5,000 test digits. Estimate of the full run on an idle 2-core machine, both autoencoders (primary and
sensitivity), 3 seeds each, with every stage at its cap: 6 x stage 1 (<= 250 s) + 30 x stage 2 (<= 40 s with
its 12 held-out evaluations) + 6 measurements of 7 sources x 5 classifiers x 5,000 digits (about 60 s each;
16 s for 500 digits under load 11): at most about 50 minutes, within the 60-minute budget; the plateau
rule usually stops earlier. Not measured on an idle machine (it was shared throughout).

Checkpoints: the methods never write a file; this runner saves what they hand to ``on_checkpoint``
(atomically) and passes it back as ``resume``. The pre-trained autoencoder is cached in
``$INFOLENS_CACHE/signal`` under a key of its settings, data and seed; each tuned one in the result folder's
``checkpoints/``; both resume.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ... import _progress
from ...distributed import is_main
from ...results import RunDir
from ..._io import atomic_torch_save
from ...signal import (InputSignal, Schedule, SignalMeasurement, build_autoencoder, finetune_through_classifier,
                      fingerprint, photo_patches, predict, pretrain_autoencoder)
from . import verdicts as V
from .checkpoints import _cache_path, load_checkpoint, saver

HELP = ("what classifiers let through an autoencoder tuned on their gradients (arXiv 1803.08337): "
        "cross-classifier accuracy matrix, its order, NMI, spectra")
TAKES_MODEL = False
ANALYSIS = "signal"
ORDER = 40
PAPER = V.PAPER

HELD_OUT_PHOTOS: tuple[str, ...] = ("chelsea", "coins", "grass")
"""Testbed photographs whose patches only decide stage 1's plateau (an animal, objects, a texture; fixed
before any result was seen); the other 14 give the training patches."""

DOMAINS: dict[str, str] = {"photos": "photograph patches", "mnist": "MNIST digits"}
"""Stage 1's data: ``photos`` (primary, off the classifiers' domain), ``mnist`` (sensitivity)."""

DEVIATIONS = [
    "Autoencoder: SegNet's shape scaled to 28x28 (two pooling stages of two 3x3 convolutions, widths 16/32, "
    "28 k parameters) instead of the paper's five-stage VGG-16 SegNet (13 + 13 convolutions, 29 M parameters).",
    "Stage 1 data: grey 28x28 patches of 14 natural photographs (random crops of 28-224 px resized to 28, flips), "
    "3 further photographs held out for the plateau, instead of YFCC100m; what matters is kept: the autoencoder "
    "never sees the classifiers' domain (MNIST). The MNIST-pretrained autoencoder is a sensitivity row set.",
    "Stage 1 loss (MSE), optimiser (Adam, lr 1e-3, batch 128) and the plateau rule (held-out loss not improving by "
    "1 % in 3 evaluations) are our readings; the paper's training schedule could not be read. Caps: stage 1 "
    "2,000 steps, stage 2 300 steps (fixed from the measured cost before any verdict).",
    "Stage 2 tunes the decoder only, with the encoder frozen and its code and pooling indices detached (the "
    "released code); the classifier is frozen; loss: cross-entropy with the true labels, no pixel term; the "
    "best held-out state is kept.",
    "Training variance: every autoencoder is trained with 3 seeds (initialisation and batch order); A1's interval "
    "resamples digits and seeds, an A2 pair is decided only when every seed decides it alike.",
    "NMI: 256 equal-width levels over each pair's joint range (original and reconstruction), not clipped; the "
    "share of reconstruction pixels outside [0, 1] is reported beside it (reconstructions reach the classifiers "
    "unclipped, as the paper's code).",
    "Classifiers: the testbed's MNIST set instead of the paper's ImageNet networks (AlexNet, VGG, ResNet, ...); "
    "5,000 test digits.",
    "ImageNet trio not run: an autoencoder at ImageNet scale cannot be trained within the budget on this machine.",
    "The order (ours; the paper reads it off the matrix): A lets in more signal than B when B's accuracy on A's "
    "reconstructions exceeds A's on B's, McNemar exact test per pair at alpha 0.05, no multiplicity correction.",
]


@dataclass(frozen=True)
class Settings:
    """Everything that fixes the numbers of a signal run besides the classifiers and the data.

    ``widths``/``convs_per_stage``: the autoencoder; ``pretrain``/``finetune``: the two stages'
    :class:`~infolens.signal.Schedule` (max steps, batch, lr, evaluation period, plateau rule);
    ``seeds``: training seeds (initialisation and batch order; at least 3 for decisive verdicts);
    ``domains``: stage 1's data, the first primary (``photos``), the others sensitivity (``mnist``);
    ``patches``/``held_patches``: photograph patches for training / for the plateau;
    ``train_limit``: training digits (None: the whole 55,000 training split); ``val_images``: held-out digits
    for stage 2's plateau (and stage 1's on MNIST); ``test_images``: test digits measured (None: all 10,000);
    ``calibration_images``: precise-BatchNorm statistics at the end of each stage; ``bins``: NMI levels;
    ``show``: digits in the figures; ``tune``: ``"decoder"`` (the paper) or ``"all"``; ``lowered``: the
    settings a quick run lowers below the protocol (its rows are inconclusive)."""

    widths: tuple[int, ...] = (16, 32)
    convs_per_stage: int = 2
    pretrain: Schedule = field(default_factory=lambda: Schedule(max_steps=2000, eval_every=100))
    finetune: Schedule = field(default_factory=lambda: Schedule(max_steps=300, eval_every=25))
    tune: str = "decoder"
    seeds: tuple[int, ...] = (0, 1, 2)
    domains: tuple[str, ...] = ("photos", "mnist")
    patches: int = 50000
    held_patches: int = 2000
    train_limit: int | None = None
    val_images: int = 2000
    test_images: int | None = 5000
    calibration_images: int = 2048
    eval_batch_size: int = 500
    bins: int = 256
    show: int = 8
    lowered: str | None = None

    def __post_init__(self) -> None:
        if self.tune not in ("decoder", "all"):
            raise ValueError(f"tune must be 'decoder' or 'all', got {self.tune!r}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {self.widths}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct training seeds (at least one; 3 for decisive rows), got "
                             f"{self.seeds}")
        bad = [d for d in self.domains if d not in DOMAINS]
        if not self.domains or bad:
            raise ValueError(f"domains must be drawn from {list(DOMAINS)}, got {self.domains}")
        for k in ("val_images", "eval_batch_size", "show", "convs_per_stage", "patches", "held_patches"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")

    def params(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


#: ``claims(quick=False)``: the full protocol (caps and budget: the module docstring).
FULL = Settings()
#: ``claims(quick=True)`` and ``infolens demo --quick``: every row filled (rows inconclusive: protocol lowered).
QUICK = Settings(pretrain=Schedule(max_steps=40, eval_every=20), finetune=Schedule(max_steps=10, eval_every=5),
                 patches=4000, held_patches=500, train_limit=12000, val_images=500, test_images=500,
                 calibration_images=512, lowered="stage 1 at most 40 steps, stage 2 at most 10, 500 test digits (quick)")
#: ``infolens demo``: between the two (primary autoencoder, one seed: an illustration, not a verdict).
DEMO = replace(FULL, pretrain=Schedule(max_steps=600, eval_every=100), finetune=Schedule(max_steps=100, eval_every=25),
               domains=("photos",), seeds=(0,), test_images=2000, lowered="demo schedules, one seed")


# --------------------------------------------------------------------------- the classifiers


def mnist_set(*, quick: bool, device: str = "cpu", progress: bool = True,
              names: list[str] | None = None) -> dict[str, nn.Module]:
    """The testbed's MNIST classifiers (``experiments.testbed.MNIST_SET``), trained and cached, in eval mode."""
    from .. import testbed

    names = list(names or testbed.MNIST_SET)
    return {n: testbed.mnist_model(n, quick=quick, device=device, progress=progress) for n in names}


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- stage 1's data


def photo_patch_sets(st: Settings) -> tuple[Tensor, Tensor, list[str], list[str]]:
    """Training and held-out patches (:func:`~infolens.signal.photo_patches`) of the testbed photographs
    (260 px): training patches from every photograph but :data:`HELD_OUT_PHOTOS`, held-out patches from
    those only (whole photographs held out). Fixed data seeds (1, 2): the training seeds vary the
    autoencoder, not its data. Returns ``(train, held_out, train_names, held_out_names)``."""
    from .. import testbed

    ph = testbed.photos(260, quick=True)
    missing = [n for n in HELD_OUT_PHOTOS if n not in ph.names]
    if missing:
        raise FileNotFoundError(f"the testbed photographs lack {missing}; reinstall infolens")
    held = [i for i, n in enumerate(ph.names) if n in HELD_OUT_PHOTOS]
    train = [i for i, n in enumerate(ph.names) if n not in HELD_OUT_PHOTOS]
    tp, _ = photo_patches(ph.images[train], st.patches, seed=1)
    hp, _ = photo_patches(ph.images[held], st.held_patches, seed=2)
    return tp, hp, [ph.names[i] for i in train], [ph.names[i] for i in held]


def stage1_data(domain: str, st: Settings, mnist_train: Tensor, mnist_val: Tensor) -> tuple[Tensor, Tensor]:
    """(training images, held-out images) of stage 1 for ``domain``."""
    if domain == "photos":
        tp, hp, _, _ = photo_patch_sets(st)
        return tp, hp
    return mnist_train, mnist_val


# --------------------------------------------------------------------------- checkpoints (the runner's files)


def pretrained_key(domain: str, st: Settings, seed: int) -> str:
    """Cache key of a pre-trained autoencoder: its architecture, stage-1 schedule, data settings and seed."""
    return fingerprint(domain, st.widths, st.convs_per_stage, vars(st.pretrain), st.calibration_images, seed,
                       st.patches if domain == "photos" else st.train_limit,
                       st.held_patches if domain == "photos" else st.val_images, HELD_OUT_PHOTOS)


# --------------------------------------------------------------------------- training


def pretrain(domain: str, seed: int, data: tuple[Tensor, Tensor], st: Settings, *, device: str = "cpu",
             progress: bool = True, cache: bool = True, run: RunDir | None = None) -> tuple[nn.Module, Any]:
    """Stage 1 for one seed (cached under :func:`pretrained_key` when ``cache``, else in ``run``'s
    checkpoints). Returns the autoencoder and its :class:`~infolens.signal.FitResult`."""
    tx, vx = data
    ae0 = build_autoencoder(tx.shape[1], st.widths, seed=seed, convs_per_stage=st.convs_per_stage)
    if cache or run is None:
        path = _cache_path(f"ae-{domain}-{pretrained_key(domain, st, seed)}.pt")
    else:
        path = run.root / "checkpoints" / f"ae_pretrained-{domain}-seed{seed}.pt"
    _progress.say(f"[signal] stage 1 ({DOMAINS[domain]}, seed {seed}): pre-training (MSE) to a plateau",
                  progress=progress)
    r = pretrain_autoencoder(ae0, tx, held_out=vx, schedule=st.pretrain, seed=seed, device=device,
                             calibration_images=st.calibration_images, progress=progress,
                             resume=load_checkpoint(path), on_checkpoint=saver(path))
    return ae0.eval(), r


def tune(run: RunDir, domain: str, seed: int, ae0: nn.Module, classifiers: Mapping[str, nn.Module],
         train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], st: Settings, *, device: str = "cpu",
         progress: bool = True) -> tuple[dict[str, nn.Module], list[dict[str, Any]], dict[str, dict]]:
    """Stage 2 for one seed: a copy of ``ae0`` per classifier (checkpoints in ``run.root/checkpoints``).
    Returns the tuned autoencoders, their curve rows and per-classifier facts."""
    tx, ty = train
    vx, vy = val
    tuned: dict[str, nn.Module] = {}
    rows: list[dict[str, Any]] = []
    facts: dict[str, dict] = {}
    for name, clf in classifiers.items():
        _progress.say(f"[signal] stage 2 ({DOMAINS[domain]}, seed {seed}): tuning the {st.tune} through {name}",
                      progress=progress)
        y = torch.where(ty < 0, predict(clf, tx, device=device).cpu(), ty) if bool((ty < 0).any()) else ty
        path = run.root / "checkpoints" / f"ae_tuned-{domain}-seed{seed}-{name}.pt"
        r = finetune_through_classifier(copy.deepcopy(ae0), clf, tx, y, held_out=(vx, vy), tune=st.tune,
                                        schedule=st.finetune, seed=seed, device=device,
                                        calibration_images=st.calibration_images, progress=progress,
                                        resume=load_checkpoint(path), on_checkpoint=saver(path))
        tuned[name] = r.model.eval()
        rows += [{"autoencoder": domain, "seed": seed, "stage": "finetune", "classifier": name, **h} for h in r.history]
        facts[name] = {"plateau": r.plateau, "steps": r.steps, "kept_step": r.kept_step, "val_loss": r.val_loss,
                       "val_acc": r.kept().get("val_acc"), "val_loss_start": r.history[0]["val_loss"],
                       "val_acc_start": r.history[0]["val_acc"], "seconds": round(r.seconds, 1),
                       "resumed": r.resumed or ""}
    return tuned, rows, facts


# --------------------------------------------------------------------------- measuring


def measure(classifiers: Mapping[str, nn.Module], ae0: nn.Module, tuned: Mapping[str, nn.Module], images: Tensor,
            labels: Tensor, st: Settings, *, device: str = "cpu", progress: bool = True,
            seed: int = 0) -> SignalMeasurement:
    """:class:`~infolens.signal.InputSignal` on the test digits, in chunks of ``eval_batch_size`` (global
    indices seed the chance level), concatenated."""
    method = InputSignal(classifiers, {"untuned": ae0, **{f"tuned:{n}": a for n, a in tuned.items()}},
                         bins=st.bins, batch_size=st.eval_batch_size, seed=seed)
    parts = []
    chunks = range(0, images.shape[0], st.eval_batch_size)
    for i in _progress.track(chunks, desc="signal: measuring", total=len(chunks), progress=progress):
        j = min(i + st.eval_batch_size, images.shape[0])
        parts.append(method.measure(images[i:j].to(device), labels[i:j].to(device), indices=range(i, j)))
    first = parts[0]

    def cat(k: str, d: int) -> Tensor:
        return torch.cat([getattr(p, k).cpu() for p in parts], d)

    return SignalMeasurement(first.sources, first.classifiers, [i for p in parts for i in p.indices],
                             cat("labels", 1), cat("pred", 2), cat("correct", 2), cat("loss", 2), cat("nmi", 1),
                             cat("nmi_geometric", 1), cat("nmi_chance", 1), cat("out_of_range", 1), cat("mse", 1))


def _label(s: str) -> str:
    return s.replace("tuned:", "tuned for ")


def claim_rows(m: SignalMeasurement | list[SignalMeasurement], params: Mapping[str, int], **kw: Any
               ) -> tuple[list[dict], dict]:
    """A1-A4 (:func:`.verdicts.claim_rows`) from one measurement or one per seed."""
    return V.claim_rows(m if isinstance(m, list) else [m], params, **kw)


# --------------------------------------------------------------------------- the whole protocol


def _stage1_rows(domain: str, seed: int, r: Any) -> list[dict[str, Any]]:
    return [{"autoencoder": domain, "seed": seed, "stage": "pretrain", "classifier": "", **h} for h in r.history]


def run_protocol(run: RunDir, classifiers: Mapping[str, nn.Module], train: tuple[Tensor, Tensor],
                 val: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], st: Settings, *, device: str = "cpu",
                 progress: bool = True, cache: bool = True,
                 stage1: Mapping[str, tuple[Tensor, Tensor]] | None = None) -> tuple[list[dict], dict[str, Any]]:
    """Train (every domain of ``st.domains``, every seed), measure, decide, draw and write the tables;
    returns the claim rows and the summary. ``stage1``: domain -> (training, held-out) images of stage 1
    (default :func:`stage1_data`); ``cache``: keep the pre-trained autoencoders in the infolens cache."""
    t0 = time.perf_counter()
    names = list(classifiers)
    if len(names) < 2:
        raise ValueError(f"classifiers needs at least two entries for the cross matrix, got {names}")
    tx, ty = test
    params = {nm: n_parameters(classifiers[nm]) for nm in names}
    curve: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    acc_rows: list[dict[str, Any]] = []
    spread: list[dict[str, Any]] = []
    cls_rows: list[dict[str, Any]] = []
    per_domain: dict[str, dict[str, Any]] = {}
    for d_i, domain in enumerate(st.domains):
        variant = "primary" if d_i == 0 else "sensitivity"
        data = (stage1 or {}).get(domain) or stage1_data(domain, st, train[0], val[0])
        ms, first = [], None
        for seed in st.seeds:
            ae0, r0 = pretrain(domain, seed, data, st, device=device, progress=progress, cache=cache, run=run)
            curve += _stage1_rows(domain, seed, r0)
            tuned, crows, facts = tune(run, domain, seed, ae0, classifiers, train, val, st, device=device,
                                       progress=progress)
            curve += crows
            m = measure(classifiers, ae0, tuned, tx, ty, st, device=device, progress=progress, seed=seed)
            ms.append(m)
            for nm in names:
                cls_rows.append({"autoencoder": domain, "seed": seed, "classifier": nm,
                                 "stage1_steps": r0.steps, "stage1_plateau": r0.plateau,
                                 "stage1_val_mse": r0.val_loss, **{f"stage2_{k}": v for k, v in facts[nm].items()}})
            if first is None:
                first = (ae0, tuned, m, r0)
        label = "" if variant == "primary" else f"{DOMAINS[domain]}-pretrained AE"
        d_rows, info = V.claim_rows(ms, params, variant=variant, label=label)
        if st.lowered:  # a lowered protocol decides nothing (docs/claims.md)
            from ...claims import claim_row

            d_rows = [claim_row(**{**_row_args(r), "lowered": st.lowered}) for r in d_rows]
        rows += d_rows
        acc_rows += V.accuracy_rows(ms, autoencoder=domain)
        s_rows = V.seed_rows(ms, st.seeds, info, autoencoder=domain)
        spread += s_rows
        per_domain[domain] = {"ms": ms, "info": info, "first": first, "spread": V.spread_summary(s_rows)}
    t_train = time.perf_counter() - t0

    primary = st.domains[0]
    pd = per_domain[primary]
    ms, info, order = pd["ms"], pd["info"], pd["info"]["order"]
    m0 = ms[0]
    n = len(m0.indices)
    c = torch.stack([m.correct.double() for m in ms])  # (seeds, S, K, N)
    s_n, k = len(m0.sources), len(names)
    acc = torch.zeros(s_n, k, dtype=torch.float64)
    lo, hi = torch.zeros_like(acc), torch.zeros_like(acc)
    acc_full = []
    for si, s in enumerate(m0.sources):
        for j, b in enumerate(names):
            iv = V.seeds_and_digits(c[:, si, j])
            acc[si, j], lo[si, j], hi[si, j] = iv.value, iv.low, iv.high
            acc_full.append({"images": _label(s), "classifier": b, "accuracy": iv.value, "ci_low": iv.low,
                             "ci_high": iv.high, "n": n, "seeds": len(ms)})
    tc = torch.stack([m.tuned_correct().double() for m in ms])  # (seeds, K, K, N)
    order_rows = []
    for p in order.pairs:
        a, b = names.index(p["a"]), names.index(p["b"])
        iv = V.seeds_and_digits(tc[:, a, b] - tc[:, b, a])
        order_rows.append({**p, "diff_ci_low": iv.low, "diff_ci_high": iv.high})
    nmi_rows = [{"autoencoder": dom, "images": _label(s), "nmi": float(torch.stack([m.nmi[si] for m in d["ms"]]).mean()),
                 "nmi_chance": float(torch.stack([m.nmi_chance[si] for m in d["ms"]]).mean()),
                 "out_of_range": float(torch.stack([m.out_of_range[si] for m in d["ms"]]).mean()),
                 "mse": float(torch.stack([m.mse[si] for m in d["ms"]]).mean())}
                for dom, d in per_domain.items() for si, s in enumerate(d["ms"][0].sources)]
    run.write_table("training", curve)
    run.write_table("accuracy", acc_full)
    run.write_table("signal_accuracy", acc_rows)
    run.write_table("seeds", spread)
    run.write_table("matrix", [{"images": _label(s), **{b: round(float(acc[si, j]), 4) for j, b in enumerate(names)}}
                               for si, s in enumerate(m0.sources)])
    run.write_table("order", order_rows)
    run.write_table("classifiers", cls_rows)
    run.write_table("nmi_summary", nmi_rows)
    run.write_table("claims", rows)
    atomic_torch_save({dom: {"sources": d["ms"][0].sources, "classifiers": names, "seeds": list(st.seeds),
                             "correct": torch.stack([m.correct for m in d["ms"]]),
                             "nmi": torch.stack([m.nmi.float() for m in d["ms"]]),
                             "out_of_range": torch.stack([m.out_of_range.float() for m in d["ms"]])}
                       for dom, d in per_domain.items()}, run.root / "measurement.pt")
    from .figures import draw

    ae0, tuned, _, _ = pd["first"]
    figures = draw(run, m0, names, tx[:st.show], ae0, tuned, acc, lo, hi, order, curve, params, info,
                   {d: DOMAINS[d] for d in st.domains})
    t_total = time.perf_counter() - t0
    summary: dict[str, Any] = {f"verdict {r['claim']} ({r['model']})": r["verdict"] for r in rows}
    drops = {r["classifier"]: r["untuned_drop"] for r in acc_rows if r["autoencoder"] == primary}
    small = sum(v < 0.01 for v in drops.values())
    summary.update({
        "order (more signal > less)": order.describe(),
        "order_is_total": order.is_total,
        "ranking (most signal first)": " > ".join(order.ranking),
        "rho(order, accuracy)": round(info["rho_accuracy"], 3),
        "Kruskal-Wallis H / p": f"{info['kw_h']:.1f} / {info['kw_p']:.3g}",
        "untuned accuracy drop per classifier (primary AE)": ", ".join(f"{k}: {v:+.4f}" for k, v in drops.items()),
        "untuned drop under 1 point": (f"for {small} of {len(drops)} classifiers"
                                       + ("; most classifiers lose under 1 point on the untuned reconstructions, so "
                                          "A1 has little to let back in" if small > len(drops) / 2 else "")),
        "A1 difference over seeds (min .. max)": "; ".join(f"{k}: {v}" for k, v in pd["spread"].items()),
        "seeds": ", ".join(map(str, st.seeds)),
        "out-of-range share of tuned reconstructions (primary AE)": round(
            sum(r["out_of_range_tuned"] for r in acc_rows if r["autoencoder"] == primary) / len(drops), 4),
        "test_images": n, "train_images": int(train[0].shape[0]),
        "seconds_training_and_measuring": round(t_train, 1), "seconds_total": round(t_total, 1),
    })
    claim_figures = {"A1": "figures/matrix.png", "A2": "figures/matrix.png", "A3": "figures/matrix.png",
                     "A4": "figures/nmi.png"}
    run.write_meta(order=ORDER, report_tables=["claims", "signal_accuracy", "seeds", "classifiers", "matrix", "order",
                                               "nmi_summary"],
                   figures=figures, claim_figures={k: v for k, v in claim_figures.items() if Path(v).stem in figures},
                   deviations=DEVIATIONS,
                   order_definition=("A lets in more signal than B when B's accuracy on A's reconstructions exceeds A's "
                                     "on B's, decided per pair by McNemar's exact test at alpha 0.05 and only when "
                                     "every training seed decides it alike; total = every pair decided and "
                                     "transitive"))
    run.finish(summary, seconds=round(t_total, 1))
    return rows, summary


def _row_args(r: Mapping[str, Any]) -> dict[str, Any]:
    """A claim row back into :func:`~infolens.claims.claim_row`'s arguments (to apply the lowered rule)."""
    side, _, thr = str(r["threshold"]).partition(" ")
    note = r["note"]
    return {"paper": r["paper"], "claim": r["claim"], "model": r["model"], "statistic": r["statistic"],
            "interval": {"value": r["value"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"]},
            "threshold": float(thr), "side": side, "note": note, "verdict": r["verdict"], "variant": r["variant"],
            "min_units": None}


# --------------------------------------------------------------------------- entry points


def _mnist(st: Settings) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    from ... import data

    sp = data.mnist_splits()
    tx, ty = sp["train"].tensors
    vx, vy = sp["val"].tensors
    test = data.mnist_tensors("test", limit=st.test_images)
    return (tx[:st.train_limit], ty[:st.train_limit]), (vx[:st.val_images], vy[:st.val_images]), test


def claims(out: Path, *, quick: bool, device: str = "cpu", progress: bool = True) -> list[dict]:
    """Claims A1-A4 of arXiv 1803.08337 on the testbed's MNIST set (``docs/claims.md``): writes the result
    folder ``out`` (tables, figures, meta.json; resumable) and returns the claim rows. Primary rows: the
    autoencoder pre-trained on photograph patches; sensitivity rows: the MNIST-pretrained one. ``quick``:
    every row filled in a few minutes (short stages, 500 test digits; rows inconclusive, protocol lowered)."""
    st = QUICK if quick else FULL
    classifiers = mnist_set(quick=quick, device=device, progress=progress)
    run = RunDir(Path(out), writer=is_main(), analysis=ANALYSIS, params={"quick": quick, "classifiers": list(classifiers), **st.params()},
                 device=device, overwrite=True, seed=st.seeds[0],
                 title="What deep networks like to see: claims A1-A4 on the MNIST set",
                 description=("arXiv 1803.08337: a SegNet-style autoencoder pre-trained on grey patches of natural "
                              "photographs (off the classifiers' domain; the MNIST-pretrained one as a sensitivity "
                              "row set), 3 training seeds, one copy per classifier whose decoder is tuned on that "
                              "frozen classifier's cross-entropy; the cross accuracy matrix, its order, NMI. "
                              "Verdicts first; see the deviations."))
    train, val, test = _mnist(st)
    rows, _ = run_protocol(run, classifiers, train, val, test, st, device=device, progress=progress)
    return rows


def demo(out: Path, *, quick: bool = False, device: str = "cpu", progress: bool = True) -> Path:
    """The signal section of ``infolens demo``: the built-in MNIST networks, the pre-trained autoencoder
    (photograph patches) and one tuned per classifier (short schedules), measured on test digits; resumable."""
    from ..testbed import demo_models

    st = QUICK if quick else DEMO
    classifiers = demo_models(quick=quick, device=device, progress=progress)
    run = RunDir(out, writer=is_main(), analysis=ANALYSIS, params={"quick": quick, **st.params()}, device=device, overwrite=True,
                 seed=st.seeds[0], title="What classifiers like to see: autoencoders tuned through frozen classifiers",
                 description="arXiv 1803.08337 on the built-in MNIST networks (demo schedules; the claims run longer).")
    train, val, test = _mnist(st)
    run_protocol(run, classifiers, train, val, test, st, device=device, progress=progress)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = FULL
    p.add_argument("--models", default="mnist_vgg,mnist_resnet,mnist_allconv",
                   help="comma-separated classifiers (at least two; same input shape)")
    p.add_argument("--checkpoints", default=None, help="comma-separated state-dict files aligned with --models "
                   "(empty entries: the model's default weights)")
    p.add_argument("--train-limit", type=int, default=d.train_limit, help="training digits (default: all 55,000)")
    p.add_argument("--pretrain-steps", type=int, default=d.pretrain.max_steps, help="most steps of stage 1")
    p.add_argument("--finetune-steps", type=int, default=d.finetune.max_steps, help="most steps of stage 2")
    p.add_argument("--lr", type=float, default=d.pretrain.lr, help="Adam learning rate of both stages")
    p.add_argument("--tune", choices=("decoder", "all"), default=d.tune,
                   help="stage 2 tunes the decoder (the paper's S2SNets) or the whole autoencoder")
    p.add_argument("--widths", default=",".join(map(str, d.widths)), help="channels per encoder stage")
    p.add_argument("--val-images", type=int, default=d.val_images, help="held-out digits that decide the plateaus")
    p.add_argument("--bins", type=int, default=d.bins, help="quantisation levels of the NMI")
    p.add_argument("--seeds", type=int, default=len(d.seeds), help="training seeds (--seed, --seed + 1, ...; at least "
                   "3 for decisive rows)")
    p.add_argument("--pretrain-data", default="photos", choices=("photos", "mnist", "both"),
                   help="stage 1's data: grey patches of natural photographs (the protocol), the MNIST training "
                        "digits, or both (photos primary)")
    p.add_argument("--show", type=int, default=d.show, help="test digits in the figures")


#: The kind of each option above (:data:`infolens.experiments.common.KINDS`), checked before any work.
OPTIONS: dict[str, str] = {"models": "list", "checkpoints": "text", "train_limit": "count",
                           "pretrain_steps": "positive", "finetune_steps": "positive", "lr": "positive_float",
                           "tune": "choice", "widths": "list", "val_images": "positive", "bins": "positive",
                           "show": "count", "seeds": "positive", "pretrain_data": "choice"}


def main(args: argparse.Namespace) -> Path:
    from ... import models
    from ...report import build_report
    from ..common import runner_options, validate_common

    validate_common(args, runner_options(ANALYSIS))  # every declared option, before any work
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"--models needs at least two different classifiers, got {args.models!r}")
    cks = [c.strip() or None for c in args.checkpoints.split(",")] if args.checkpoints else [None] * len(names)
    if len(cks) != len(names):
        raise ValueError(f"--checkpoints has {len(cks)} entries but --models has {len(names)}; align them")
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        raise ValueError(f"--widths must be comma-separated integers such as 16,32, got {args.widths!r}") from None
    if args.data not in (None, "mnist"):
        raise ValueError(f"--data must be mnist for signal (the classifiers and stage 2 use MNIST digits), "
                         f"got {args.data!r}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    domains = ("photos", "mnist") if args.pretrain_data == "both" else (args.pretrain_data,)
    st = Settings(widths=widths, train_limit=args.train_limit, tune=args.tune, val_images=args.val_images,
                  test_images=args.limit, bins=args.bins, show=args.show,
                  seeds=tuple(range(args.seed, args.seed + args.seeds)), domains=domains,
                  pretrain=replace(FULL.pretrain, max_steps=args.pretrain_steps, lr=args.lr),
                  finetune=replace(FULL.finetune, max_steps=args.finetune_steps, lr=args.lr))
    loaded = [models.load_model(n, checkpoint=c, device=args.device) for n, c in zip(names, cks)]
    if any(lm.input_shape != (1, 28, 28) for lm in loaded):
        raise ValueError(f"--models must take 1x28x28 digits, got {[(lm.name, lm.input_shape) for lm in loaded]}")
    out = Path(args.out or f"results/signal-{'+'.join(names)}")
    run = RunDir(out, writer=is_main(), analysis=ANALYSIS, params={"models": names, "checkpoints": cks, **st.params()}, seed=args.seed,
                 device=args.device, overwrite=args.overwrite, title=f"What classifiers like to see: {', '.join(names)}",
                 description=__doc__.split("\n\n")[0])
    train, val, test = _mnist(st)
    _, summ = run_protocol(run, {lm.name: lm.model for lm in loaded}, train, val, test, st, device=args.device,
                           progress=_progress.enabled())
    print(f"order: {summ['order (more signal > less)']} (total: {summ['order_is_total']})")
    if not args.no_report and is_main():  # under torchrun rank 0 writes the page
        build_report(out)
    return out
