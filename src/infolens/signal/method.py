"""The method's one verb: :class:`InputSignal` scores images through autoencoders and classifiers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._checks import check_images, check_targets
from .._torch import frozen, per_image_randn
from .autoencoder import reconstruct
from .nmi import Binning, mutual_information, out_of_range
from .stats import ALPHA, SignalOrder, signal_order

ROW_COLUMNS: tuple[str, ...] = ("image", "source", "classifier", "label", "pred", "correct", "loss", "nmi",
                                "nmi_geometric", "nmi_chance", "out_of_range", "mse")


@dataclass
class SignalMeasurement:
    """What :meth:`InputSignal.measure` returns; ``S`` sources (``"plain"`` then the autoencoders' names),
    ``K`` classifiers, ``N`` images.

    ``correct`` ``(S, K, N)`` bool and ``loss`` ``(S, K, N)``: classifier ``k`` on the images of source ``s``
    (cross-entropy with the labels); ``nmi`` / ``nmi_geometric`` ``(S, N)``: NMI of each original with its
    reconstruction (arithmetic / geometric normalisation, 256 levels over the pair's joint range);
    ``nmi_chance`` ``(S, N)``: the same against a pixel-permuted reconstruction (the plug-in bias level);
    ``out_of_range`` ``(S, N)``: share of reconstruction pixels outside [0, 1]; ``mse`` ``(S, N)``."""

    sources: list[str]
    classifiers: list[str]
    indices: list[int]
    labels: Tensor
    pred: Tensor
    correct: Tensor
    loss: Tensor
    nmi: Tensor
    nmi_geometric: Tensor
    nmi_chance: Tensor
    out_of_range: Tensor
    mse: Tensor

    def accuracy(self) -> Tensor:
        """``(S, K)`` top-1 accuracy of each classifier on each source."""
        return self.correct.double().mean(-1)

    def tuned_correct(self, prefix: str = "tuned:") -> Tensor:
        """``(K, K, N)``: ``[a, b, i]`` = classifier ``b`` right on image ``i`` reconstructed for ``a``."""
        missing = [f"{prefix}{c}" for c in self.classifiers if f"{prefix}{c}" not in self.sources]
        if missing:
            raise ValueError(f"no autoencoder named {missing} among the sources {self.sources}; name the one "
                             f"tuned for classifier C '{prefix}C'")
        return torch.stack([self.correct[self.sources.index(f"{prefix}{c}")] for c in self.classifiers])

    def order(self, *, alpha: float = ALPHA, prefix: str = "tuned:") -> SignalOrder:
        """The order of the classifiers (:func:`~infolens.signal.signal_order`) from the tuned rows."""
        return signal_order(self.tuned_correct(prefix), self.classifiers, alpha=alpha)

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per (image, source, classifier) with the columns :data:`ROW_COLUMNS`."""
        rows = []
        per_src = {k: getattr(self, k).tolist() for k in ("nmi", "nmi_geometric", "nmi_chance", "out_of_range", "mse")}
        lab, pred, cor, loss = (self.labels.tolist(), self.pred.tolist(), self.correct.tolist(), self.loss.tolist())
        for s, src in enumerate(self.sources):
            for k, clf in enumerate(self.classifiers):
                for i, img in enumerate(self.indices):
                    rows.append({"image": img, "source": src, "classifier": clf, "label": lab[k][i],
                                 "pred": pred[s][k][i], "correct": int(cor[s][k][i]), "loss": loss[s][k][i],
                                 **{c: v[s][i] for c, v in per_src.items()}})
        return rows


class InputSignal:
    """What a classifier likes to see (Palacio et al., CVPR 2018, arXiv 1803.08337): how well each of
    ``classifiers`` recognises the images as each of ``autoencoders`` reconstructs them, and how much of the
    image each reconstruction keeps (NMI).

    Construct with the classifiers (name -> model, frozen during the call) and the autoencoders (name ->
    model: by convention ``"untuned"`` for the stage-1 autoencoder and ``"tuned:C"`` for the one tuned
    through classifier ``C``, see :func:`~infolens.signal.finetune_through_classifier`);
    :meth:`measure` takes a batch and its labels. Reconstructions are scored as they come out (no
    clipping). ``bins``/``binning``: NMI levels (256 over the joint range of original and reconstruction);
    ``seed``: the pixel permutation of the chance level, per global image index."""

    def __init__(self, classifiers: Mapping[str, nn.Module], autoencoders: Mapping[str, nn.Module], *,
                 bins: int = 256, binning: Binning = "joint", batch_size: int = 256, seed: int = 0) -> None:
        if not isinstance(classifiers, Mapping) or not classifiers:
            raise TypeError("classifiers must be a non-empty mapping name -> nn.Module")
        if not isinstance(autoencoders, Mapping):
            raise TypeError("autoencoders must be a mapping name -> nn.Module (e.g. {'untuned': ae0, 'tuned:vgg': ae1})")
        for name, m in [*classifiers.items(), *autoencoders.items()]:
            if not isinstance(m, nn.Module):
                raise TypeError(f"{name!r} must be an nn.Module, got {type(m).__name__}")
        if "plain" in autoencoders:
            raise ValueError("'plain' is reserved for the original images; rename that autoencoder")
        if not (isinstance(bins, int) and bins >= 2):
            raise ValueError(f"bins must be an int >= 2, got {bins!r}")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.classifiers = dict(classifiers)
        self.autoencoders = dict(autoencoders)
        self.bins, self.binning, self.batch_size, self.seed = bins, binning, batch_size, seed

    @torch.no_grad()
    def measure(self, images: Tensor, labels: Tensor, *, indices: Sequence[int] | None = None) -> SignalMeasurement:
        """Score ``images`` ``(N, C, H, W)`` with ``labels`` ``(N,)`` (< 0: unknown; then each classifier is
        scored by agreement with its own prediction on the original). ``indices``: global image indices
        (default ``0..N-1``) that seed the chance level, so results do not depend on batch composition."""
        images = check_images(images, allow_3d=False)
        n = images.shape[0]
        labels = check_targets(labels, n, name="labels")
        if labels is None:
            raise ValueError("labels are required (use -1 for unknown labels)")
        idx = list(range(n)) if indices is None else [int(i) for i in indices]
        if len(idx) != n:
            raise ValueError(f"indices has {len(idx)} entries for {n} images")
        dev = images.device
        srcs = {"plain": images}
        for name, ae in self.autoencoders.items():
            with frozen(ae):
                srcs[name] = reconstruct(ae, images, batch_size=self.batch_size)
        names, sources = list(self.classifiers), list(srcs)
        stacked = torch.cat(list(srcs.values()))
        correct, loss, pred, targets = [], [], [], []
        for clf in self.classifiers.values():
            with frozen(clf):
                logits = torch.cat([clf(stacked[i:i + self.batch_size])
                                    for i in range(0, stacked.shape[0], self.batch_size)]).view(len(srcs), n, -1)
            p = logits.argmax(-1)
            t = torch.where(labels.to(dev) >= 0, labels.to(dev), p[0])
            ce = F.cross_entropy(logits.flatten(0, 1).double(), t.repeat(len(srcs)), reduction="none").view(len(srcs), n)
            correct.append(p == t)
            loss.append(ce)
            pred.append(p)
            targets.append(t)
        perm = per_image_randn((images[0].numel(),), self.seed, idx, salt="signal-chance").argsort(-1).to(dev)
        nmi_a, nmi_g, chance, oor, mse = [], [], [], [], []
        for r in srcs.values():
            mi = mutual_information(images, r, bins=self.bins, binning=self.binning)
            shuffled = r.reshape(n, -1).gather(1, perm).view_as(r)
            nmi_a.append(mi.normalized("arithmetic"))
            nmi_g.append(mi.normalized("geometric"))
            chance.append(mutual_information(images, shuffled, bins=self.bins, binning=self.binning).normalized())
            oor.append(out_of_range(r))
            mse.append((r - images).double().square().reshape(n, -1).mean(1))
        st = torch.stack
        return SignalMeasurement(sources, names, idx, st(targets), st(pred, 1), st(correct, 1), st(loss, 1),
                                 st(nmi_a), st(nmi_g), st(chance), st(oor), st(mse))

