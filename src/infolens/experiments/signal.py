"""What classifiers like to see (arXiv 1803.08337): one autoencoder pre-trained on reconstruction, one copy
tuned through each frozen classifier; the cross-classifier accuracy matrix with its baselines, the order it
implies, NMI between images and reconstructions, reconstructions side by side and their power spectra.
CLI command ``infolens signal --models A,B,C``; a section of ``infolens demo``.

Protocol (``../shared/METHODS.md``, section 3). Training (stage 1, then stage 2 per classifier) runs on
the training images (MNIST: the first images of the training split; other data: the analysed images
themselves, which the summary states); each stage's final state is checkpointed in ``checkpoints/`` and
loaded on a resumed run. Evaluation runs on the test images in units of global image indices
(resumable, torchrun-shardable; under torchrun rank 0 trains and the others load its checkpoints).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import _progress
from .._torch import per_image_randn
from ..distributed import (Unit, barrier, gather_table, is_main, rank_world, run_units,
                           work_units)
from ..results import RunDir, atomic_torch_save
from ..signal import (build_autoencoder, classify, finetune_through_classifier, mutual_information, predict,
                      pretrain_autoencoder, reconstruct, signal_order)
from ..spectral import frequency_radius, power_spectrum, radial_profile

HELP = ("what classifiers let through an autoencoder tuned on their gradients (arXiv 1803.08337): "
        "cross-classifier accuracy matrix, its order, NMI, spectra")
TAKES_MODEL = False
ANALYSIS = "signal"
ORDER = 40
AVERAGES = ("arithmetic", "geometric")



@dataclass(frozen=True)
class Settings:
    """Everything that fixes the numbers of a signal run besides the classifiers and the data.

    Defaults are the CLI's; :data:`DEMO` and :data:`QUICK` are the demo's (2 idle cores: <= 75 s and
    <= 10 s with the classifiers cached). ``widths``: channels per encoder stage (one 2x2 pooling each);
    ``train_limit`` images for stage 1, the first ``finetune_limit`` of them for stage 2 (None: all);
    ``calibration_images``: precise-BatchNorm statistics at the end of each stage; ``checkpoint_every``:
    mid-stage checkpoints (steps) so a killed run resumes inside a stage; ``eval_batch_size``: test images
    per unit of work (also the group within which inter-NMI partners are drawn); ``bins``: NMI levels;
    ``show``: test images in the reconstructions figure; ``z``: standard errors that decide a pair.
    Learning rates: 3e-3 (stage 1) and 5e-3 (stage 2), above the library functions' 1e-3 reading
    because the demo trains one short epoch per stage; widths 8,16 keep a stage within seconds on a CPU.
    """

    widths: tuple[int, ...] = (8, 16)
    train_limit: int | None = 20000
    finetune_limit: int | None = None
    pretrain_epochs: int = 1
    finetune_epochs: int = 1
    batch_size: int = 64
    pretrain_lr: float = 3e-3
    finetune_lr: float = 5e-3
    tune: str = "decoder"
    calibration_images: int = 2048
    checkpoint_every: int | None = 50
    eval_batch_size: int = 256
    bins: int = 256
    show: int = 8
    z: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tune not in ("decoder", "all"):
            raise ValueError(f"tune must be 'decoder' or 'all', got {self.tune!r}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {self.widths}")
        for k in ("pretrain_epochs", "finetune_epochs", "batch_size", "eval_batch_size", "show"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.bins < 2:
            raise ValueError(f"bins must be >= 2, got {self.bins}")

    def params(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


#: The demo section: 100 pre-training and 100 tuning steps per classifier, 1000 test images.
DEMO = Settings(train_limit=6400, finetune_limit=6400, calibration_images=1024, show=10)
DEMO_TEST = 1000
#: ``infolens demo --quick`` (end-to-end test): plumbing on tiny subsets, numbers not meant to be read.
QUICK = Settings(train_limit=1024, finetune_limit=384, batch_size=32, pretrain_lr=1e-2, calibration_images=256,
                 checkpoint_every=None, eval_batch_size=64, show=6)
QUICK_TEST = 64


def _source_label(s: str) -> str:
    return s.replace("tuned:", "tuned for ")


# --------------------------------------------------------------------------- training


def train_autoencoders(run: RunDir, classifiers: Mapping[str, nn.Module], train_x: Tensor, train_y: Tensor,
                       settings: Settings, *, device: str = "cpu",
                       progress: bool = True) -> tuple[nn.Module, dict[str, nn.Module], list[dict[str, Any]]]:
    """Stage 1 (shared, on all ``train_x``) and stage 2 (one copy per classifier, on the first
    ``finetune_limit`` images), each checkpointed under ``run.root/checkpoints`` (a resumed run loads them).

    Units: stage 1 runs on rank 0 (the others wait and load its checkpoint); the tunings are units of one
    classifier each, shared out ``names[rank::world]`` under torchrun, then every rank loads all of them.
    Labels < 0 (unknown) are replaced, per classifier, by its own prediction on the original image.
    """
    st = settings
    ck = run.root / "checkpoints"
    rank, world = rank_world()
    rows: list[dict[str, Any]] = []
    kw = dict(batch_size=st.batch_size, seed=st.seed, device=device, progress=progress,
              calibration_images=st.calibration_images, checkpoint_every=st.checkpoint_every)
    fx, fy = train_x[:st.finetune_limit], train_y[:st.finetune_limit]

    ae0 = build_autoencoder(train_x.shape[1], st.widths, seed=st.seed)

    def stage1():
        return pretrain_autoencoder(ae0, train_x, epochs=st.pretrain_epochs, lr=st.pretrain_lr,
                                    checkpoint=ck / "ae_pretrained.pt", **kw)

    _progress.say("[signal] stage 1: autoencoder pre-training (MSE)", progress=progress)
    r0 = stage1() if is_main() else None
    barrier()
    r0 = r0 or stage1()  # the other ranks load rank 0's checkpoint
    rows += [{"stage": "pretrain", "classifier": "", **_hist(h), "resumed": r0.resumed or ""} for h in r0.history]

    names = list(classifiers)

    def stage2(name: str):
        clf = classifiers[name]
        y = fy
        if bool((y < 0).any()):
            y = torch.where(y < 0, predict(clf, fx, device=device).cpu(), y)
        return finetune_through_classifier(copy.deepcopy(ae0), clf, fx, y, tune=st.tune, epochs=st.finetune_epochs,
                                           lr=st.finetune_lr, checkpoint=ck / f"ae_tuned_{name}.pt", **kw)

    done = {}
    for name in names[rank::world]:
        _progress.say(f"[signal] stage 2: tuning the {st.tune} through {name}", progress=progress)
        done[name] = stage2(name)
    barrier()
    tuned: dict[str, nn.Module] = {}
    for name in names:
        r = done.get(name) or stage2(name)  # tuned by another rank: load its checkpoint
        tuned[name] = r.model.eval()
        rows += [{"stage": "finetune", "classifier": name, **_hist(h), "resumed": r.resumed or ""} for h in r.history]
    return ae0.eval(), tuned, rows


def _hist(h: Mapping[str, Any]) -> dict[str, Any]:
    return {k: h.get(k) for k in ("epoch", "step", "loss", "train_acc", "seconds")}


# --------------------------------------------------------------------------- per-unit evaluation


def hf_fraction(images: Tensor, *, above: float = 0.5) -> Tensor:
    """Share of each image's non-DC power at radii above ``above`` x Nyquist (summed over channels)."""
    ps = power_spectrum(images).sum(1)
    rho = frequency_radius(*images.shape[-2:], device=images.device, dtype=ps.dtype)
    total = (ps * (rho > 0)).sum((-2, -1))
    return (ps * (rho > above)).sum((-2, -1)) / total.clamp_min(1e-30)


def _sources(x: Tensor, ae0: nn.Module, tuned: Mapping[str, nn.Module], bs: int) -> dict[str, Tensor]:
    out = {"plain": x, "untuned": reconstruct(ae0, x, batch_size=bs)}
    out.update({f"tuned:{n}": reconstruct(ae, x, batch_size=bs) for n, ae in tuned.items()})
    return out


def evaluate_unit(run: RunDir, unit: Unit, images: Tensor, labels: Tensor, classifiers: Mapping[str, nn.Module],
                  ae0: nn.Module, tuned: Mapping[str, nn.Module], *, bins: int, seed: int, device: str,
                  batch_size: int) -> list[dict[str, Any]]:
    """One unit: predictions of every classifier on every source (returned), and the ``nmi``, ``pixels`` and
    ``spectrum`` parts (written here). The partner of an image for inter-NMI is the next image of its unit
    (cyclically); units are fixed global index ranges, so the pairing does not depend on the number of
    processes (a unit of one image has no partner: NaN)."""
    idx = torch.tensor(unit.indices)
    m = len(idx)
    x = images[idx].to(device)
    src = _sources(x, ae0, tuned, batch_size)
    lab = labels[idx].to(device)
    pred_rows = []
    stacked = torch.cat(list(src.values()))
    for cname, clf in classifiers.items():
        logits = classify(clf, stacked, batch_size=batch_size).view(len(src), m, -1)
        p = logits.argmax(-1)
        target = torch.where(lab >= 0, lab, p[0])  # unknown labels: agreement with the prediction on the original
        ce = F.cross_entropy(logits.flatten(0, 1), target.repeat(len(src)), reduction="none").view(len(src), m)
        for si, s in enumerate(src):
            pred_rows += [{"image": i, "source": s, "classifier": cname, "label": t, "pred": q, "correct": int(q == t),
                           "loss": c} for i, t, q, c in zip(unit.indices, target.tolist(), p[si].tolist(),
                                                             ce[si].tolist())]
    orig = x
    pix = orig[0].numel()
    perm = per_image_randn((pix,), seed, unit.indices, salt="signal-chance").argsort(-1).to(device)
    nmi_rows, pix_rows, spec_rows = [], [], []
    for s, r in src.items():
        mine, theirs = r, r.roll(1, 0)
        shuffled = mine.reshape(m, -1).gather(1, perm).view_as(mine)
        # histograms once per pair kind; both normalisations from them
        intra = mutual_information(orig, mine, bins=bins)
        chance = mutual_information(orig, shuffled, bins=bins)
        inter = mutual_information(mine, theirs, bins=bins) if m > 1 else None
        for avg in AVERAGES:
            a_intra, a_chance = intra.normalized(avg).tolist(), chance.normalized(avg).tolist()
            a_inter = inter.normalized(avg).tolist() if inter is not None else [math.nan] * m
            nmi_rows += [{"image": i, "source": s, "average": avg, "intra": x, "inter": y, "chance": z}
                         for i, x, y, z in zip(unit.indices, a_intra, a_inter, a_chance)]
        mse = (mine - orig).square().flatten(1).mean(1)
        hf = hf_fraction(mine)
        oor = ((mine < 0) | (mine > 1)).flatten(1).float().mean(1)
        pix_rows += [{"image": i, "source": s, "mse": float(a), "hf_fraction": float(b), "out_of_range": float(c)}
                     for i, a, b, c in zip(unit.indices, mse.tolist(), hf.tolist(), oor.tolist())]
        prof = radial_profile(mine.double())  # rings up to Nyquist, one per frequency step
        total = prof.values.mean(1).sum(0)  # mean over channels, summed over the unit's images
        spec_rows += [{"unit": unit.key, "source": s, "bin": b, "frequency": float(f), "power_sum": float(v), "n": m}
                      for b, (f, v) in enumerate(zip(prof.frequencies.tolist(), total.tolist()))]
    run.write_part("nmi", unit.key, nmi_rows)
    run.write_part("pixels", unit.key, pix_rows)
    run.write_part("spectrum", unit.key, spec_rows)
    return pred_rows


# --------------------------------------------------------------------------- the whole analysis


def run_signal(run: RunDir, classifiers: Mapping[str, nn.Module], train: tuple[Tensor, Tensor],
               test: tuple[Tensor, Tensor], settings: Settings = Settings(), *, training_note: str = "",
               device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Train, evaluate (units), gather, summarise, draw; returns the summary (also written to the run).

    ``classifiers``: name -> frozen classifier (at least two, same input shape); ``train`` / ``test``:
    ``(images, labels)`` (labels < 0: unknown; then a classifier is scored by agreement with its own
    prediction on the original image).
    """
    t0 = time.perf_counter()
    st = settings
    names = list(classifiers)
    if len(names) < 2:
        raise ValueError(f"classifiers needs at least two entries for the cross matrix, got {names}")
    train_x, train_y = train
    test_x, test_y = test
    ae0, tuned, train_rows = train_autoencoders(run, classifiers, train_x, train_y, st, device=device,
                                                progress=progress)
    t_train = time.perf_counter() - t0
    if is_main():
        run.write_table("training", train_rows)
    units = work_units(test_x.shape[0], st.eval_batch_size)
    run_units(run, "predictions", units,
              lambda u: evaluate_unit(run, u, test_x, test_y, classifiers, ae0, tuned, bins=st.bins, seed=st.seed,
                                      device=device, batch_size=st.eval_batch_size),
              desc="signal: evaluation", progress=progress)
    preds = gather_table(run, "predictions", sort_by=("image", "source", "classifier"))
    if not is_main():
        return {}
    nmi_rows = run.merge("nmi", sort_by=("image", "source", "average"))
    pix_rows = run.merge("pixels", sort_by=("image", "source"))
    spec_rows = run.merge("spectrum", sort_by=("unit", "source", "bin"))
    sources = ["plain", "untuned"] + [f"tuned:{a}" for a in names]

    correct: dict[tuple[str, str], list[int]] = {}
    losses: dict[tuple[str, str], list[float]] = {}
    for r in preds:
        correct.setdefault((r["source"], r["classifier"]), []).append(int(r["correct"]))
        losses.setdefault((r["source"], r["classifier"]), []).append(float(r["loss"]))
    c = torch.tensor([[correct[(s, b)] for b in names] for s in sources], dtype=torch.float64)  # (S, K, N)
    ce = torch.tensor([[losses[(s, b)] for b in names] for s in sources], dtype=torch.float64).mean(-1)
    acc = c.mean(-1)
    se = c.std(-1) / math.sqrt(c.shape[-1]) if c.shape[-1] > 1 else torch.zeros_like(acc)
    accuracy_rows = [{"source": s, "classifier": b, "accuracy": float(acc[i, j]), "se": float(se[i, j]),
                      "loss": float(ce[i, j]), "n": c.shape[-1]}
                     for i, s in enumerate(sources) for j, b in enumerate(names)]
    run.write_table("accuracy", accuracy_rows)
    tuned_c = c[2:]
    order = signal_order(tuned_c, names, z=st.z)
    eye = torch.eye(len(names), dtype=torch.bool)
    matrix_rows = []
    for i, s in enumerate(sources):
        row = {"images": _source_label(s), **{b: round(float(acc[i, j]), 4) for j, b in enumerate(names)}}
        if i >= 2:
            row["mean_of_others"] = round(float(acc[i][~eye[i - 2]].mean()), 4)
        matrix_rows.append(row)
    run.write_table("matrix", matrix_rows)
    run.write_table("order", [{k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                               for k, v in p.items()} for p in order.pairs])

    nmi_summary = []
    for s in sources:
        pr = [r for r in pix_rows if r["source"] == s]
        for avg in AVERAGES:
            rr = [r for r in nmi_rows if r["source"] == s and r["average"] == avg]
            nmi_summary.append({"images": _source_label(s), "average": avg,
                                "intra": _mean(r["intra"] for r in rr), "inter": _mean(r["inter"] for r in rr),
                                "chance": _mean(r["chance"] for r in rr),
                                "mse": _mean(r["mse"] for r in pr), "hf_fraction": _mean(r["hf_fraction"] for r in pr),
                                "out_of_range": _mean(r["out_of_range"] for r in pr)})
    run.write_table("nmi_summary", nmi_summary)
    spectra: dict[str, list[float]] = {}
    freqs: list[float] = []
    for s in sources:
        rr = [r for r in spec_rows if r["source"] == s]
        nb = max(r["bin"] for r in rr) + 1
        tot = sum(r["n"] for r in rr if r["bin"] == 0)
        spectra[s] = [sum(r["power_sum"] for r in rr if r["bin"] == b) / tot for b in range(nb)]
        freqs = [next(r["frequency"] for r in rr if r["bin"] == b) for b in range(nb)]
    run.write_table("spectra", [{"images": _source_label(s), "frequency": f, "mean_power": v}
                                for s in sources for f, v in zip(freqs, spectra[s])])

    k = min(st.show, test_x.shape[0])
    samples = _sources(test_x[:k].to(device), ae0, tuned, st.eval_batch_size)
    atomic_torch_save({s: v.cpu() for s, v in samples.items()}, run.root / "samples.pt")
    figures = _figures(run, samples, acc, sources, names, freqs, spectra)

    arith = {r["images"]: r for r in nmi_summary if r["average"] == "arithmetic"}
    summary: dict[str, Any] = {
        "order (more signal > less)": order.describe(),
        "order_is_total": order.is_total,
        "order_is_transitive": order.is_transitive,
        "ranking (most signal first)": " > ".join(order.ranking),
    }
    for j, b in enumerate(names):  # the diagonal against its baselines: does tuning help the classifier?
        summary[f"{b}: accuracy plain / untuned AE / tuned AE"] = (
            f"{float(acc[0, j]):.4f} / {float(acc[1, j]):.4f} / {float(acc[2 + j, j]):.4f}")
        summary[f"{b}: loss untuned AE -> tuned AE"] = f"{float(ce[1, j]):.4f} -> {float(ce[2 + j, j]):.4f}"
        others = [float(acc[2 + j, k]) for k in range(len(names)) if k != j]
        summary[f"tuned for {b}: mean accuracy of the other classifiers"] = round(sum(others) / len(others), 4)
    for s_ in sources:
        r = arith[_source_label(s_)]
        summary[f"NMI intra / inter / chance, {_source_label(s_)}"] = (
            f"{r['intra']:.4f} / {r['inter']:.4f} / {r['chance']:.4f}")
    summary.update({
        "test_images": int(test_x.shape[0]),
        "train_images": int(train_x.shape[0]),
        "training": training_note or "training split",
        "seconds_training": round(t_train, 1),
        "seconds_total": round(time.perf_counter() - t0, 1),
    })
    run.write_meta(order=ORDER, report_tables=["matrix", "order", "nmi_summary", "training"], figures=figures,
                   order_definition=("A lets in more signal than B when acc[A->B] > acc[B->A] by more than "
                                     f"{st.z} paired standard errors (acc[A->B]: accuracy of B on reconstructions "
                                     "tuned for A); total = every pair decided and transitive"))
    run.finish(summary, seconds=round(time.perf_counter() - t0, 1))
    return summary


def _mean(values) -> float:
    v = [float(x) for x in values]
    v = [x for x in v if x == x]
    return sum(v) / len(v) if v else float("nan")


def _figures(run: RunDir, samples: Mapping[str, Tensor], acc: Tensor, sources: list[str], names: list[str],
             freqs: list[float], spectra: Mapping[str, list[float]]) -> dict[str, str]:
    try:
        from ..plots import subplots
        from ..plots.signal import accuracy_matrix, reconstruction_mosaic, spectra as plot_spectra
    except ImportError:  # pragma: no cover - matplotlib missing
        return {}
    fig, ax = subplots(1, 1, width=0.75 * next(iter(samples.values())).shape[0] + 1.6,
                       height=0.75 * len(samples) + 0.3)
    reconstruction_mosaic(ax[0, 0], {_source_label(s): v for s, v in samples.items()})
    run.save_figure(fig, "reconstructions")
    fig, ax = subplots(1, 1, width=1.3 * len(names) + 2.5, height=0.45 * len(sources) + 1.2)
    accuracy_matrix(ax[0, 0], acc, [_source_label(s) for s in sources], names)
    run.save_figure(fig, "matrix")
    fig, ax = subplots(1, 1, width=5.5, height=3.6)
    plot_spectra(ax[0, 0], freqs, {_source_label(s): v for s, v in spectra.items()})
    run.save_figure(fig, "spectra")
    return {"reconstructions": "Test images (top row) and their reconstructions by the pre-trained autoencoder and "
                               "by each copy tuned through a frozen classifier (clipped to [0, 1] for display).",
            "matrix": "Top-1 accuracy of classifier B (columns) on plain images, on reconstructions by the un-tuned "
                      "autoencoder, and on reconstructions by the autoencoder tuned for classifier A (rows).",
            "spectra": "Mean radial power spectra of the test images and of each autoencoder's reconstructions "
                       "(rings up to Nyquist): peaks away from the originals' curve are patterns a classifier "
                       "lets in that the images do not have."}


# --------------------------------------------------------------------------- CLI and demo


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Settings()
    p.add_argument("--models", default="mnist_vgg,mnist_resnet,mnist_allconv",
                   help="comma-separated classifiers (at least two; same input shape)")
    p.add_argument("--checkpoints", default=None, help="comma-separated state-dict files aligned with --models "
                   "(empty entries: the model's default weights)")
    p.add_argument("--train-limit", type=int, default=d.train_limit, help="training images of stage 1 (pre-training)")
    p.add_argument("--finetune-limit", type=int, default=d.finetune_limit,
                   help="training images of stage 2 (the first of stage 1's; default: all of them)")
    p.add_argument("--pretrain-epochs", type=int, default=d.pretrain_epochs)
    p.add_argument("--finetune-epochs", type=int, default=d.finetune_epochs)
    p.add_argument("--pretrain-lr", type=float, default=d.pretrain_lr, help="Adam learning rate of stage 1")
    p.add_argument("--finetune-lr", type=float, default=d.finetune_lr, help="Adam learning rate of stage 2")
    p.add_argument("--tune", choices=("decoder", "all"), default=d.tune,
                   help="stage 2 tunes the decoder (the paper's S2SNets) or the whole autoencoder")
    p.add_argument("--widths", default=",".join(map(str, d.widths)),
                   help="channels per encoder stage (one 2x2 pooling each)")
    p.add_argument("--calibration-images", type=int, default=d.calibration_images,
                   help="images for the BatchNorm statistics at the end of each stage (0: running averages)")
    p.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size, help="test images per unit of work")
    p.add_argument("--bins", type=int, default=d.bins, help="quantisation levels of the NMI")
    p.add_argument("--show", type=int, default=d.show, help="test images in the reconstructions figure")


def main(args: argparse.Namespace) -> Path:
    from .. import data, models
    from ..report import build_report
    from . import default_data

    torch.manual_seed(args.seed)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"--models needs at least two different classifiers, got {args.models!r}")
    cks = [c.strip() or None for c in args.checkpoints.split(",")] if args.checkpoints else [None] * len(names)
    if len(cks) != len(names):
        raise ValueError(f"--checkpoints has {len(cks)} entries but --models has {len(names)}; align them")
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        raise ValueError(f"--widths must be comma-separated integers such as 8,16, got {args.widths!r}") from None
    st = Settings(widths=widths, train_limit=args.train_limit, finetune_limit=args.finetune_limit,
                  pretrain_epochs=args.pretrain_epochs, finetune_epochs=args.finetune_epochs,
                  batch_size=args.batch_size, pretrain_lr=args.pretrain_lr, finetune_lr=args.finetune_lr,
                  tune=args.tune, calibration_images=args.calibration_images,
                  eval_batch_size=args.eval_batch_size, bins=args.bins, show=args.show, seed=args.seed)
    loaded = [models.load_model(n, checkpoint=c, device=args.device) for n, c in zip(names, cks)]
    shapes = {lm.input_shape for lm in loaded}
    if len(shapes) != 1:
        raise ValueError(f"--models must share one input shape, got {[(lm.name, lm.input_shape) for lm in loaded]}")
    shape = loaded[0].input_shape
    spec = args.data or default_data(loaded[0].source)
    size = shape[-1] if spec != "mnist" else None
    test = data.load_dataset(spec, split="test", limit=args.limit, size=size, channels=shape[0])
    if spec == "mnist":
        tx, ty = data.mnist_splits()["train"].tensors
        train, note = (tx[:st.train_limit], ty[:st.train_limit]), "MNIST training split"
    else:
        train = (test[0][:st.train_limit], test[1][:st.train_limit])
        note = "no separate training split: the autoencoders were trained on the analysed images themselves"
    out = Path(args.out or f"results/signal-{'+'.join(names)}")
    params = {"models": names, "checkpoints": cks, "data": spec, "limit": args.limit, **st.params()}
    run = RunDir(out, analysis=ANALYSIS, params=params, seed=args.seed, device=args.device, overwrite=args.overwrite,
                 title=f"What classifiers like to see: {', '.join(names)}", description=__doc__.split("\n\n")[0])
    summ = run_signal(run, {lm.name: lm.model for lm in loaded}, train, (test[0], test[1]), st, training_note=note,
                      device=args.device, progress=_progress.enabled())
    if summ:
        print(f"order: {summ['order (more signal > less)']} (total: {summ['order_is_total']})")
    if not args.no_report and is_main():
        build_report(out)
    return out


def demo(out: Path, *, quick: bool = False, device: str = "cpu", progress: bool = True) -> Path:
    """The signal section of ``infolens demo``: the three built-in MNIST classifiers, one shared pre-trained
    autoencoder and one tuned per classifier on a training subset (1 epoch each), evaluated on test images.
    A second call with the same settings loads the stage checkpoints and skips the finished units."""
    from .. import data
    from .demo import demo_models

    st, n_test = (QUICK, QUICK_TEST) if quick else (DEMO, DEMO_TEST)
    run = RunDir(out, analysis=ANALYSIS, params={"quick": quick, "n_test": n_test, **st.params()}, device=device,
                 overwrite=True, seed=st.seed,
                 title="What classifiers like to see: autoencoders tuned through frozen classifiers",
                 description=("arXiv 1803.08337 on the built-in MNIST networks: a SegNet-style autoencoder (max-"
                              "unpooling by indices) pre-trained to reconstruct, then one copy per classifier whose "
                              "decoder is tuned on that frozen classifier's cross-entropy alone. The matrix gives "
                              "the accuracy of every classifier B on images reconstructed for classifier A, beside "
                              "plain images and the un-tuned autoencoder; the order follows from the pairs "
                              "acc[A->B] vs acc[B->A]. NMI (256 levels, per image) compares images with their "
                              "reconstructions (intra), reconstructions of different digits (inter) and a "
                              "pixel-shuffled chance level: on 784-pixel images the plug-in NMI is biased upwards, "
                              "so read it against the chance column. Demo budget: a training subset and one "
                              "epoch per stage."))
    classifiers = demo_models(quick=quick, device=device, progress=progress)
    tx, ty = data.mnist_splits()["train"].tensors
    test = data.mnist_tensors("test", limit=n_test)
    run_signal(run, classifiers, (tx[:st.train_limit], ty[:st.train_limit]), test, st,
               training_note=(f"first {st.train_limit} (stage 1) and {st.finetune_limit} (stage 2) images of the "
                              "MNIST training split, 1 epoch per stage"),
               device=device, progress=progress)
    return out
