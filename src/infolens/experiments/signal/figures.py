"""The signal run's figures (arXiv 1803.08337): the cross-classifier matrix with the order, reconstructions,
spectra, NMI, the stage-2 curves, and the autoencoder's pre-training curve on held-out patches. Draws what
the runner measured; returns ``{name: caption}`` (empty without matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ...results import RunDir
from ...signal import SignalMeasurement
from ...spectral import radial_profile


def _label(s: str) -> str:
    return s.replace("tuned:", "tuned for ")


def draw(run: RunDir, m: SignalMeasurement, names: list[str], shown: Tensor, ae0: nn.Module,
         tuned: Mapping[str, nn.Module], acc: Tensor, low: Tensor, high: Tensor, order: Any,
         curve: Sequence[Mapping[str, Any]], params: Mapping[str, int], info: Mapping[str, Any],
         domains: Mapping[str, str]) -> dict[str, str]:
    """``acc``/``low``/``high``: ``(S, K)`` accuracy with intervals (pooled over seeds); ``m``: one seed's
    measurement (its NMI distributions); ``ae0``/``tuned``: that seed's autoencoders (the samples);
    ``curve``: the training rows of every domain and seed; ``domains``: domain -> label."""
    try:
        from ...plots import subplots
        from ...plots.signal import (accuracy_matrix, difference_mosaic, loss_curves, nmi_distributions, order_panel,
                                    reconstruction_mosaic, spectra)
    except ImportError:  # pragma: no cover - matplotlib missing
        return {}
    from ...signal import reconstruct

    s_n, k = len(m.sources), len(names)
    fig, ax = subplots(1, 2, width=1.0, height=0.5 * s_n + 1.4, gridspec_kw={"width_ratios": [1.5 * k + 2.5, 3.2]})
    fig.set_size_inches(1.5 * k + 5.7, 0.5 * s_n + 1.4)
    accuracy_matrix(ax[0, 0], acc, [_label(s) for s in m.sources], names, low=low, high=high)
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
    for s, v in samples.items():
        rp = radial_profile(v.double())
        freqs, prof[s] = rp.frequencies, rp.values.mean(1).mean(0)
    fig, ax = subplots(1, 1, width=5.5, height=3.6)
    spectra(ax[0, 0], freqs, prof, title=f"mean radial power spectrum ({shown.shape[0]} digits)")
    run.save_figure(fig, "spectra")

    fig, ax = subplots(1, 1, width=1.0 * s_n + 2, height=3.4)
    labels = [_label(s) for s in m.sources[1:]]
    nmi_distributions(ax[0, 0], {lb: m.nmi[i + 1] for i, lb in enumerate(labels)},
                      chance={lb: m.nmi_chance[i + 1] for i, lb in enumerate(labels)},
                      title="per-image NMI, 256 levels over the joint range")
    run.save_figure(fig, "nmi")

    # the autoencoder's pre-training curve on held-out data, per domain and seed
    fig, ax = subplots(1, len(domains), width=4.6, height=3.4)
    for i, (dom, lab) in enumerate(domains.items()):
        rows = [r for r in curve if r["stage"] == "pretrain" and r["autoencoder"] == dom]
        seeds = list(dict.fromkeys(r["seed"] for r in rows))
        loss_curves(ax[0, i], {f"seed {s}": ([r["step"] for r in rows if r["seed"] == s],
                                            [r["val_loss"] for r in rows if r["seed"] == s]) for s in seeds},
                    title=f"stage 1, {lab}", ylabel="held-out MSE")
    run.save_figure(fig, "pretraining")

    first = next(iter(domains))
    rows = [r for r in curve if r["stage"] == "finetune" and r["autoencoder"] == first]
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    fig, ax = subplots(1, 1, width=5.5, height=3.6)
    loss_curves(ax[0, 0], {f"{nm}, seed {s}": ([r["step"] for r in rows if r["classifier"] == nm and r["seed"] == s],
                                               [r["val_loss"] for r in rows if r["classifier"] == nm and r["seed"] == s])
                           for nm in names for s in seeds},
                title=f"stage 2 ({domains[first]}): held-out cross-entropy", ylabel="cross-entropy")
    run.save_figure(fig, "training")
    return {
        "matrix": "Top-1 accuracy (95 % interval over test digits and training seeds) of classifier B (columns) on "
                  "plain digits, on the untuned autoencoder's reconstructions and on those of the autoencoder tuned "
                  "for classifier A (rows); right: the order (McNemar exact per pair, alpha 0.05, decided only when "
                  "every seed decides it alike).",
        "reconstructions": "Test digits, their reconstructions by one seed's autoencoders (display clipped to "
                           "[0, 1]) and the reconstruction minus the original (not clipped).",
        "spectra": "Mean radial power spectra of the shown digits and of each autoencoder's reconstructions.",
        "nmi": "Per-image NMI between each test digit and its reconstruction, one seed (boxes: quartiles, whiskers "
               "5-95 %); x: the pixel-permuted chance level.",
        "pretraining": "Stage 1: the autoencoder's mean squared error on held-out data during pre-training, one "
                       "curve per training seed (photograph patches: patches of photographs never trained on; "
                       "MNIST: held-out training digits). The stage stops when the held-out loss has not improved "
                       "by 1 % in 3 evaluations.",
        "training": "Stage 2: held-out cross-entropy of each classifier on its tuned autoencoder's reconstructions, "
                    "per seed (stops as stage 1; the best held-out state is kept).",
    }
