"""What classifiers like to see (arXiv 1803.08337): one autoencoder pre-trained on reconstruction, one copy
tuned through each frozen classifier; the cross-classifier accuracy matrix with paired intervals, the
order it implies (McNemar's exact test per pair), NMI between images and reconstructions, reconstructions
with their differences, power spectra, and claims A1-A4 (``../shared/CLAIMS.md``).
CLI command ``infolens signal --models A,B,C``; a section of ``infolens demo``; ``claims()`` for
``infolens reproduce``.

Protocol (``../shared/METHODS.md`` section 3). Data: the MNIST training split (55,000 digits; the last
5,000 training digits are held out) trains both stages; the first ``val_images`` held-out digits decide
the plateaus; the test split is measured. Stage 1 stops at a plateau of the held-out MSE, stage 2 at a
plateau of the held-out cross-entropy (:func:`infolens.signal.plateaued`, rule fixed in advance: no
relative improvement over 1 % in 3 evaluations) or at ``max_steps``. The pre-trained autoencoder is cached
(``$INFOLENS_CACHE/signal``), each tuned one in the result folder's ``checkpoints/``; both resume.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ... import _progress
from ...claims import bootstrap, claim_row, most_row, spearman
from ...distributed import is_main
from ...results import RunDir
from ..._io import atomic_torch_save
from ...signal import (InputSignal, Schedule, SignalMeasurement, build_autoencoder, finetune_through_classifier,
                      kruskal_wallis, predict, pretrain_autoencoder)
from ...spectral import radial_profile

HELP = ("what classifiers let through an autoencoder tuned on their gradients (arXiv 1803.08337): "
        "cross-classifier accuracy matrix, its order, NMI, spectra")
TAKES_MODEL = False
ANALYSIS = "signal"
ORDER = 40
PAPER = "signal"

DEVIATIONS = [
    "Autoencoder: SegNet's shape scaled to 28x28 digits (two pooling stages of two 3x3 convolutions, widths 16/32, "
    "28 k parameters) instead of the paper's five-stage VGG-16 SegNet (13 + 13 convolutions, 29 M parameters).",
    "Stage 1 loss (MSE), optimiser (Adam, lr 1e-3, batch 128) and the plateau rule (held-out loss not improving by "
    "1 % in 3 evaluations) are our readings; the paper's training schedule could not be read.",
    "Stage 2 tunes the decoder only, with the encoder frozen and its code and pooling indices detached (the "
    "released code); the classifier is frozen; loss: cross-entropy with the true labels, no pixel term.",
    "NMI: 256 equal-width levels over each pair's joint range (original and reconstruction), not clipped; the "
    "share of reconstruction pixels outside [0, 1] is reported beside it.",
    "Classifiers: the testbed's MNIST set instead of the paper's ImageNet networks (AlexNet, VGG, ResNet, ...).",
    "ImageNet trio not run: an autoencoder pre-trained on photographs at ImageNet scale cannot be trained or "
    "loaded offline within the budget, and none is shipped; A1-A4 are decided on the MNIST set only.",
    "The order (ours; the paper reads it off the matrix): A lets in more signal than B when B's accuracy on A's "
    "reconstructions exceeds A's on B's, McNemar exact test per pair at alpha 0.05, no multiplicity correction.",
]


@dataclass(frozen=True)
class Settings:
    """Everything that fixes the numbers of a signal run besides the classifiers and the data.

    ``widths``/``convs_per_stage``: the autoencoder; ``pretrain``/``finetune``: the two stages'
    :class:`~infolens.signal.Schedule` (max steps, batch, lr, evaluation period, plateau rule);
    ``train_limit``: training digits (None: the whole 55,000 training split); ``val_images``: held-out digits
    for the plateaus; ``test_images``: test digits measured (None: all 10,000); ``calibration_images``:
    precise-BatchNorm statistics at the end of each stage; ``bins``: NMI levels; ``show``: digits in the
    figures; ``tune``: ``"decoder"`` (the paper) or ``"all"``."""

    widths: tuple[int, ...] = (16, 32)
    convs_per_stage: int = 2
    pretrain: Schedule = field(default_factory=lambda: Schedule(max_steps=10000, eval_every=100))
    finetune: Schedule = field(default_factory=lambda: Schedule(max_steps=600, eval_every=50))
    tune: str = "decoder"
    train_limit: int | None = None
    val_images: int = 2000
    test_images: int | None = None
    calibration_images: int = 2048
    eval_batch_size: int = 500
    bins: int = 256
    show: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tune not in ("decoder", "all"):
            raise ValueError(f"tune must be 'decoder' or 'all', got {self.tune!r}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {self.widths}")
        for k in ("val_images", "eval_batch_size", "show", "convs_per_stage"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")

    def params(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


#: ``claims(quick=False)``: the full protocol (stage 1 reaches its plateau at 2,400 steps, about 5 minutes on 2 cores;
#: the whole protocol about 15 minutes on one core).
FULL = Settings()
#: ``claims(quick=True)`` and ``infolens demo --quick``: every row filled in about 2 minutes.
QUICK = Settings(pretrain=Schedule(max_steps=200, eval_every=50), finetune=Schedule(max_steps=60, eval_every=20),
                 train_limit=12000, val_images=500, test_images=1000, calibration_images=512)
#: ``infolens demo``: between the two.
DEMO = replace(FULL, pretrain=Schedule(max_steps=600, eval_every=100), finetune=Schedule(max_steps=200, eval_every=50),
               test_images=2000)


# --------------------------------------------------------------------------- the classifiers


def mnist_set(*, quick: bool, device: str = "cpu", progress: bool = True,
              names: list[str] | None = None) -> dict[str, nn.Module]:
    """The testbed's MNIST classifiers (``experiments.testbed.MNIST_SET``), trained and cached, in eval mode;
    until the testbed exists, the built-in networks (fewer than the 5 the claims need: A2/A3 say so)."""
    try:
        from .. import testbed  # type: ignore[attr-defined]

        names = list(names or testbed.MNIST_SET)
        return {n: testbed.mnist_model(n, quick=quick, device=device, progress=progress) for n in names}
    except ImportError:
        from ...models import BUILTIN_MODELS, pretrained_builtin

        names = list(names or BUILTIN_MODELS)
        return {n: pretrained_builtin(n, quick=quick, device=device, progress=progress) for n in names}


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- training


def _cache_path(name: str) -> Path:
    from ...models import cache_dir

    return cache_dir() / "signal" / name


def train_autoencoders(run: RunDir, classifiers: Mapping[str, nn.Module], train: tuple[Tensor, Tensor],
                       val: tuple[Tensor, Tensor], st: Settings, *, device: str = "cpu", progress: bool = True,
                       cache_tag: str = "") -> tuple[nn.Module, dict[str, nn.Module], list[dict[str, Any]], dict]:
    """Stage 1 (shared; checkpoint in the infolens cache when ``cache_tag`` is given, else in the run) and
    stage 2 (one copy per classifier, checkpoints in ``run.root/checkpoints``). Returns the pre-trained
    autoencoder, the tuned ones, the loss-curve rows and per-stage facts (plateau, steps, seconds)."""
    tx, ty = train
    vx, vy = val
    kw = dict(seed=st.seed, device=device, progress=progress, calibration_images=st.calibration_images)
    ae0 = build_autoencoder(tx.shape[1], st.widths, seed=st.seed, convs_per_stage=st.convs_per_stage)
    ck1 = _cache_path(f"ae_pretrained-{cache_tag}.pt") if cache_tag else run.root / "checkpoints" / "ae_pretrained.pt"
    _progress.say("[signal] stage 1: autoencoder pre-training (MSE) to a plateau", progress=progress)
    r0 = pretrain_autoencoder(ae0, tx, held_out=vx, schedule=st.pretrain, checkpoint=ck1, **kw)
    rows = [{"stage": "pretrain", "classifier": "", **h} for h in r0.history]
    facts = {"pretrain": {"plateau": r0.plateau, "steps": r0.steps, "val_loss": r0.val_loss,
                          "seconds": round(r0.seconds, 1), "resumed": r0.resumed or ""}}
    tuned: dict[str, nn.Module] = {}
    for name, clf in classifiers.items():
        _progress.say(f"[signal] stage 2: tuning the {st.tune} through {name}", progress=progress)
        y = ty
        if bool((y < 0).any()):
            y = torch.where(y < 0, predict(clf, tx, device=device).cpu(), y)
        r = finetune_through_classifier(copy.deepcopy(ae0), clf, tx, y, held_out=(vx, vy), tune=st.tune,
                                        schedule=st.finetune, checkpoint=run.root / "checkpoints" / f"ae_tuned_{name}.pt",
                                        **kw)
        tuned[name] = r.model.eval()
        rows += [{"stage": "finetune", "classifier": name, **h} for h in r.history]
        facts[name] = {"plateau": r.plateau, "steps": r.steps, "val_loss": r.val_loss, "val_acc": r.history[-1]["val_acc"],
                       "val_loss_start": r.history[0]["val_loss"], "val_acc_start": r.history[0]["val_acc"],
                       "seconds": round(r.seconds, 1), "resumed": r.resumed or ""}
    return ae0.eval(), tuned, rows, facts


# --------------------------------------------------------------------------- measuring


def measure(classifiers: Mapping[str, nn.Module], ae0: nn.Module, tuned: Mapping[str, nn.Module], images: Tensor,
            labels: Tensor, st: Settings, *, device: str = "cpu", progress: bool = True) -> SignalMeasurement:
    """:class:`~infolens.signal.InputSignal` on the test digits, in chunks of ``eval_batch_size`` (global
    indices seed the chance level), concatenated."""
    method = InputSignal(classifiers, {"untuned": ae0, **{f"tuned:{n}": a for n, a in tuned.items()}},
                         bins=st.bins, batch_size=st.eval_batch_size, seed=st.seed)
    parts = []
    chunks = range(0, images.shape[0], st.eval_batch_size)
    for i in _progress.track(chunks, desc="signal: measuring", total=len(chunks), progress=progress):
        j = min(i + st.eval_batch_size, images.shape[0])
        parts.append(method.measure(images[i:j].to(device), labels[i:j].to(device), indices=range(i, j)))
    first = parts[0]
    cat = lambda k, d: torch.cat([getattr(p, k).cpu() for p in parts], d)
    return SignalMeasurement(first.sources, first.classifiers, [i for p in parts for i in p.indices],
                             cat("labels", 1), cat("pred", 2), cat("correct", 2), cat("loss", 2), cat("nmi", 1),
                             cat("nmi_geometric", 1), cat("nmi_chance", 1), cat("out_of_range", 1), cat("mse", 1))


def _label(s: str) -> str:
    return s.replace("tuned:", "tuned for ")


# --------------------------------------------------------------------------- the claims


def claim_rows(m: SignalMeasurement, params: Mapping[str, int], *, min_classifiers: int = 5) -> tuple[list[dict], dict]:
    """A1-A4 exactly as ``../shared/CLAIMS.md`` defines them, from one measurement; returns the rows and the
    numbers behind them (order, rhos, Kruskal-Wallis)."""
    names = m.classifiers
    k, n = len(names), len(m.indices)
    c = m.correct.double()
    untuned = m.sources.index("untuned")
    rows: list[dict[str, Any]] = []
    # A1: per classifier, own tuned reconstructions minus untuned, paired over the same images
    a1 = []
    for j, nm in enumerate(names):
        d = c[m.sources.index(f"tuned:{nm}"), j] - c[untuned, j]
        iv = bootstrap(lambda idx, d=d: d[idx].mean(-1), n, batched=True)
        a1.append(claim_row(PAPER, "A1", nm, "accuracy on own tuned reconstructions minus on the untuned AE's", iv, 0.0))
    rows += a1 + [most_row(a1, share=1.0, model="every classifier",
                           note="A1 must hold for every classifier")]
    # A2: the order
    order = m.order()
    n_dec = sum(p["decided"] for p in order.pairs)
    few = k < min_classifiers
    if order.cycles or (not order.is_transitive):
        v2 = "not reproduced"
    elif order.is_total and not few:
        v2 = "reproduced"
    else:
        v2 = "inconclusive"
    note2 = (f"{n_dec} of {len(order.pairs)} pairs decided (McNemar exact, alpha {order.alpha}); "
             f"{'transitive' if order.is_transitive else 'cycles: ' + str(order.cycles)}; order: {order.describe()}"
             + (f"; only {k} classifiers (CLAIMS.md needs >= {min_classifiers})" if few else ""))
    rows.append(claim_row(PAPER, "A2", f"MNIST set ({k})", "share of classifier pairs decided, relation transitive",
                          {"value": n_dec / max(len(order.pairs), 1), "n": n}, 1.0, side=">=", verdict=v2, note=note2))
    # A3: the order against accuracy and size
    pos = order.position()
    acc = c[m.sources.index("plain")].mean(-1)
    size = torch.tensor([float(params[nm]) for nm in names], dtype=torch.float64)
    rho_acc, rho_size = float(spearman(pos, acc)), float(spearman(pos, size))
    same = [w for w, r in (("accuracy", rho_acc), ("parameter count", rho_size)) if abs(r) >= 1 - 1e-12]
    if few or not order.is_total or not (math.isfinite(rho_acc) and math.isfinite(rho_size)):
        v3 = "inconclusive"  # no total order, or tied accuracies / sizes leave rho undefined
    else:
        v3 = "not reproduced" if same else "reproduced"
    note3 = (f"rho(order, parameter count) = {rho_size:.3f}; order {'total' if order.is_total else 'not total'}"
             + (f"; the order equals the {' and '.join(same)} order" if same else "")
             + (f"; only {k} classifiers" if few else ""))
    rows.append(claim_row(PAPER, "A3", f"MNIST set ({k})", "Spearman rho(order, test accuracy)",
                          {"value": rho_acc, "n": k}, 1.0, side="<", verdict=v3, note=note3))
    # A4: Kruskal-Wallis over the tuned autoencoders' per-image NMI (paired images resampled together)
    tuned_rows = [m.sources.index(f"tuned:{nm}") for nm in names]
    g = m.nmi[tuned_rows]  # (K, N)
    h, p = kruskal_wallis(g)

    def kw_p(idx: Tensor) -> Tensor:
        if idx.ndim == 1:  # the point estimate
            return kruskal_wallis(g[:, idx])[1]
        out = []
        for b in range(0, idx.shape[0], 50):
            out.append(kruskal_wallis(g[:, idx[b:b + 50]].transpose(0, 1))[1])
        return torch.cat(out)

    iv4 = bootstrap(kw_p, n, batched=True)
    mean_nmi = g.mean(1)
    rho4 = float(spearman(pos, mean_nmi))
    rows.append(claim_row(PAPER, "A4", f"MNIST set ({k})", "Kruskal-Wallis p over the tuned AEs' per-image NMI",
                          {"value": float(p), "ci_low": iv4.low, "ci_high": iv4.high, "n": n}, 0.01, side="<",
                          note=f"H = {float(h):.1f}; rho(mean NMI, order) = {rho4:.3f}; the groups share their "
                               "images (Kruskal-Wallis treats them as independent, as CLAIMS.md prescribes)"))
    facts = {"order": order, "rho_accuracy": rho_acc, "rho_size": rho_size, "kw_h": float(h), "kw_p": float(p),
             "rho_nmi": rho4, "position": pos.tolist(), "accuracy": acc.tolist()}
    return rows, facts


# --------------------------------------------------------------------------- the whole protocol


def run_protocol(run: RunDir, classifiers: Mapping[str, nn.Module], train: tuple[Tensor, Tensor],
                 val: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], st: Settings, *, device: str = "cpu",
                 progress: bool = True, cache_tag: str = "") -> tuple[list[dict], dict[str, Any]]:
    """Train, measure, decide, draw and write the tables; returns the claim rows and the summary."""
    t0 = time.perf_counter()
    names = list(classifiers)
    if len(names) < 2:
        raise ValueError(f"classifiers needs at least two entries for the cross matrix, got {names}")
    ae0, tuned, curve, facts = train_autoencoders(run, classifiers, train, val, st, device=device, progress=progress,
                                                  cache_tag=cache_tag)
    t_train = time.perf_counter() - t0
    run.write_table("training", curve)
    tx, ty = test
    m = measure(classifiers, ae0, tuned, tx, ty, st, device=device, progress=progress)
    params = {nm: n_parameters(classifiers[nm]) for nm in names}
    rows, info = claim_rows(m, params)
    order = info["order"]
    n = len(m.indices)
    c = m.correct.double()

    acc_iv = {}
    acc_rows = []
    for si, s in enumerate(m.sources):
        for j, b in enumerate(names):
            iv = bootstrap(lambda idx, v=c[si, j]: v[idx].mean(-1), n, batched=True)
            acc_iv[(si, j)] = iv
            acc_rows.append({"images": _label(s), "classifier": b, "accuracy": iv.value, "ci_low": iv.low,
                             "ci_high": iv.high, "loss": float(m.loss[si, j].mean()), "n": n})
    run.write_table("accuracy", acc_rows)
    run.write_table("matrix", [{"images": _label(s), **{b: round(acc_iv[(si, j)].value, 4) for j, b in enumerate(names)}}
                               for si, s in enumerate(m.sources)])
    tc = m.tuned_correct()
    order_rows = []
    for p in order.pairs:
        a, b = names.index(p["a"]), names.index(p["b"])
        d = tc[a, b].double() - tc[b, a].double()
        iv = bootstrap(lambda idx, d=d: d[idx].mean(-1), n, batched=True)
        order_rows.append({**p, "diff_ci_low": iv.low, "diff_ci_high": iv.high})
    run.write_table("order", order_rows)
    cls_rows = []
    for j, nm in enumerate(names):
        si = m.sources.index(f"tuned:{nm}")
        cls_rows.append({"classifier": nm, "parameters": params[nm], "test_accuracy": info["accuracy"][j],
                         "untuned_ae_accuracy": float(c[m.sources.index('untuned'), j].mean()),
                         "own_tuned_accuracy": float(c[si, j].mean()), "order_position": int(info["position"][j]),
                         "wins": int(order.wins[j]), "mean_nmi_of_its_ae": float(m.nmi[si].mean()),
                         **{f"stage2_{k}": v for k, v in facts[nm].items()}})
    run.write_table("classifiers", cls_rows)
    nmi_rows = [{"images": _label(s), "nmi": float(m.nmi[si].mean()), "nmi_geometric": float(m.nmi_geometric[si].mean()),
                 "nmi_chance": float(m.nmi_chance[si].mean()), "out_of_range": float(m.out_of_range[si].mean()),
                 "mse": float(m.mse[si].mean())} for si, s in enumerate(m.sources)]
    run.write_table("nmi_summary", nmi_rows)
    run.write_table("claims", rows)
    atomic_torch_save({"sources": m.sources, "classifiers": names, "correct": m.correct, "nmi": m.nmi.float(),
                       "nmi_chance": m.nmi_chance.float(), "out_of_range": m.out_of_range.float()},
                      run.root / "measurement.pt")
    figures = _figures(run, m, names, tx[:st.show], ae0, tuned, acc_iv, order, curve, params, info)
    t_total = time.perf_counter() - t0
    verdicts = {f"{r['claim']} ({r['model']})": r["verdict"] for r in rows}
    summary: dict[str, Any] = {
        **{f"verdict {k}": v for k, v in verdicts.items()},
        "order (more signal > less)": order.describe(),
        "order_is_total": order.is_total,
        "ranking (most signal first)": " > ".join(order.ranking),
        "rho(order, accuracy)": round(info["rho_accuracy"], 3),
        "rho(order, parameters)": round(info["rho_size"], 3),
        "Kruskal-Wallis H / p": f"{info['kw_h']:.1f} / {info['kw_p']:.3g}",
        "rho(mean NMI, order)": round(info["rho_nmi"], 3),
        "stage 1: held-out MSE, plateau, steps": (f"{facts['pretrain']['val_loss']:.5f}, "
                                                  f"{facts['pretrain']['plateau']}, {facts['pretrain']['steps']}"),
    }
    for nm in names:
        f = facts[nm]
        summary[f"stage 2 {nm}: held-out CE start -> end, plateau, steps"] = (
            f"{f['val_loss_start']:.4f} -> {f['val_loss']:.4f}, {f['plateau']}, {f['steps']}")
    summary.update({"test_images": n, "train_images": int(train[0].shape[0]),
                    "out-of-range share of tuned reconstructions": round(float(m.out_of_range[2:].mean()), 4),
                    "seconds_training": round(t_train, 1), "seconds_total": round(t_total, 1)})
    claim_figures = {"A1": "figures/matrix.png", "A2": "figures/matrix.png", "A3": "figures/matrix.png",
                     "A4": "figures/nmi.png"}
    run.write_meta(order=ORDER, report_tables=["claims", "classifiers", "matrix", "order", "nmi_summary"],
                   figures=figures, claim_figures={k: v for k, v in claim_figures.items() if Path(v).stem in figures},
                   deviations=DEVIATIONS,
                   order_definition=("A lets in more signal than B when B's accuracy on A's reconstructions exceeds A's "
                                     "on B's, decided per pair by McNemar's exact test at alpha 0.05; total = every "
                                     "pair decided and transitive"))
    run.finish(summary, seconds=round(t_total, 1))
    return rows, summary


def _figures(run: RunDir, m: SignalMeasurement, names: list[str], shown: Tensor, ae0: nn.Module,
             tuned: Mapping[str, nn.Module], acc_iv: Mapping, order: Any, curve: list[dict], params: Mapping[str, int],
             info: Mapping[str, Any]) -> dict[str, str]:
    try:
        from ...plots import subplots
        from ...plots.signal import (accuracy_matrix, difference_mosaic, loss_curves, nmi_distributions, order_panel,
                                    reconstruction_mosaic, spectra)
    except ImportError:  # pragma: no cover - matplotlib missing
        return {}
    from ...signal import reconstruct

    s_n, k = len(m.sources), len(names)
    acc = torch.tensor([[acc_iv[(i, j)].value for j in range(k)] for i in range(s_n)])
    lo = torch.tensor([[acc_iv[(i, j)].low for j in range(k)] for i in range(s_n)])
    hi = torch.tensor([[acc_iv[(i, j)].high for j in range(k)] for i in range(s_n)])
    fig, ax = subplots(1, 2, width=1.0, height=0.5 * s_n + 1.4, gridspec_kw={"width_ratios": [1.5 * k + 2.5, 3.2]})
    fig.set_size_inches(1.5 * k + 5.7, 0.5 * s_n + 1.4)
    accuracy_matrix(ax[0, 0], acc, [_label(s) for s in m.sources], names, low=lo, high=hi)
    extra = {nm: f"acc {info['accuracy'][j]:.3f}, {params[nm] / 1000:.0f}k params" for j, nm in enumerate(names)}
    order_panel(ax[0, 1], order.ranking, {nm: int(order.wins[j]) for j, nm in enumerate(names)}, total=order.is_total,
                extra=extra)
    run.save_figure(fig, "matrix")

    samples = {"original": shown, "untuned AE": reconstruct(ae0, shown)}
    samples.update({f"tuned for {n}": reconstruct(a, shown) for n, a in tuned.items()})
    fig, ax = subplots(2, 1, width=0.75 * shown.shape[0] + 2.0, height=0.75 * len(samples) + 0.3)
    reconstruction_mosaic(ax[0, 0], samples, title="reconstructions (display clipped to [0, 1])")
    difference_mosaic(ax[1, 0], shown, {k: v for k, v in samples.items() if k != "original"},
                      title="reconstruction minus original")
    run.save_figure(fig, "reconstructions")

    freqs, prof = None, {}
    for s, v in [("original", shown)] + [(k, v) for k, v in samples.items() if k != "original"]:
        rp = radial_profile(v.double())
        freqs, prof[s] = rp.frequencies, rp.values.mean(1).mean(0)
    fig, ax = subplots(1, 1, width=5.5, height=3.6)
    spectra(ax[0, 0], freqs, prof, title=f"mean radial power spectrum ({shown.shape[0]} digits)")
    run.save_figure(fig, "spectra")

    fig, ax = subplots(1, 1, width=1.0 * s_n + 2, height=3.4)
    labels = [_label(s) for s in m.sources[1:]]
    nmi_distributions(ax[0, 0], {l: m.nmi[i + 1] for i, l in enumerate(labels)},
                      chance={l: m.nmi_chance[i + 1] for i, l in enumerate(labels)},
                      title="per-image NMI, 256 levels over the joint range")
    run.save_figure(fig, "nmi")

    fig, ax = subplots(1, 2, width=4.6, height=3.4)
    pre = [r for r in curve if r["stage"] == "pretrain"]
    loss_curves(ax[0, 0], {"held-out MSE": ([r["step"] for r in pre], [r["val_loss"] for r in pre]),
                           "training MSE": ([r["step"] for r in pre[1:]], [r["train_loss"] for r in pre[1:]])},
                title="stage 1: pre-training", ylabel="MSE")
    loss_curves(ax[0, 1], {nm: ([r["step"] for r in curve if r["classifier"] == nm],
                                [r["val_loss"] for r in curve if r["classifier"] == nm]) for nm in names},
                title="stage 2: held-out cross-entropy", ylabel="cross-entropy")
    run.save_figure(fig, "training")
    return {
        "matrix": "Top-1 accuracy (95 % bootstrap interval over test digits) of classifier B (columns) on plain "
                  "digits, on the untuned autoencoder's reconstructions and on those of the autoencoder tuned for "
                  "classifier A (rows); right: the order (McNemar exact per pair, alpha 0.05).",
        "reconstructions": "Test digits, their reconstructions (display clipped to [0, 1]) and the reconstruction "
                           "minus the original (not clipped).",
        "spectra": "Mean radial power spectra of the shown digits and of each autoencoder's reconstructions.",
        "nmi": "Per-image NMI between each test digit and its reconstruction (boxes: quartiles, whiskers 5-95 %); "
               "x: the pixel-permuted chance level.",
        "training": "Loss curves: stage 1 held-out and training MSE; stage 2 held-out cross-entropy per classifier "
                    "(the stopping rule: no 1 % improvement in 3 evaluations).",
    }


# --------------------------------------------------------------------------- entry points


def _mnist(st: Settings) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    from ... import data

    sp = data.mnist_splits()
    tx, ty = sp["train"].tensors
    vx, vy = sp["val"].tensors
    test = data.mnist_tensors("test", limit=st.test_images)
    return (tx[:st.train_limit], ty[:st.train_limit]), (vx[:st.val_images], vy[:st.val_images]), test


def claims(out: Path, *, quick: bool, device: str = "cpu", progress: bool = True) -> list[dict]:
    """Claims A1-A4 of arXiv 1803.08337 on the testbed's MNIST set (``../shared/CLAIMS.md``): writes the result
    folder ``out`` (tables, figures, meta.json; resumable) and returns the claim rows. ``quick``: every row in
    about 2 minutes (quick classifiers, short stages, 1,000 test digits)."""
    st = QUICK if quick else FULL
    classifiers = mnist_set(quick=quick, device=device, progress=progress)
    run = RunDir(Path(out), writer=is_main(), analysis=ANALYSIS, params={"quick": quick, "classifiers": list(classifiers), **st.params()},
                 device=device, overwrite=True, seed=st.seed,
                 title="What deep networks like to see: claims A1-A4 on the MNIST set",
                 description=("arXiv 1803.08337: a SegNet-style autoencoder pre-trained on MNIST, one copy per "
                              "classifier whose decoder is tuned on that frozen classifier's cross-entropy; the cross "
                              "accuracy matrix, its order, NMI. Verdicts first; see the deviations."))
    train, val, test = _mnist(st)
    rows, _ = run_protocol(run, classifiers, train, val, test, st, device=device, progress=progress,
                           cache_tag=f"{'quick' if quick else 'full'}")
    return rows


def demo(out: Path, *, quick: bool = False, device: str = "cpu", progress: bool = True) -> Path:
    """The signal section of ``infolens demo``: the built-in MNIST networks, the shared pre-trained autoencoder
    and one tuned per classifier (short schedules), measured on test digits; resumable."""
    from ..testbed import demo_models

    st = QUICK if quick else DEMO
    classifiers = demo_models(quick=quick, device=device, progress=progress)
    run = RunDir(out, writer=is_main(), analysis=ANALYSIS, params={"quick": quick, **st.params()}, device=device, overwrite=True,
                 seed=st.seed, title="What classifiers like to see: autoencoders tuned through frozen classifiers",
                 description="arXiv 1803.08337 on the built-in MNIST networks (demo schedules; the claims run longer).")
    train, val, test = _mnist(st)
    run_protocol(run, classifiers, train, val, test, st, device=device, progress=progress,
                 cache_tag=f"demo-{'quick' if quick else 'full'}")
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
    p.add_argument("--show", type=int, default=d.show, help="test digits in the figures")


#: The kind of each option above (:data:`infolens.experiments.common.KINDS`), checked before any work.
OPTIONS: dict[str, str] = {"models": "list", "checkpoints": "text", "train_limit": "count",
                           "pretrain_steps": "positive", "finetune_steps": "positive", "lr": "positive_float",
                           "tune": "choice", "widths": "list", "val_images": "positive", "bins": "positive",
                           "show": "count"}


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
        raise ValueError(f"--data must be mnist for signal (the autoencoder trains on the MNIST training split), "
                         f"got {args.data!r}")
    st = Settings(widths=widths, train_limit=args.train_limit, tune=args.tune, val_images=args.val_images,
                  test_images=args.limit, bins=args.bins, show=args.show, seed=args.seed,
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
