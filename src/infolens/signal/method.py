"""The method's one verb: :class:`InputSignal` scores images through autoencoders and classifiers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._method import MethodResult, method_call
from .._torch import per_image_randn
from .autoencoder import reconstruct
from .nmi import Binning, mutual_information, out_of_range
from .stats import ALPHA, SignalOrder, signal_order

ROW_COLUMNS: tuple[str, ...] = ("index", "source", "classifier", "label", "pred", "correct", "loss", "nmi",
                                "nmi_geometric", "nmi_chance", "out_of_range", "mse")


@dataclass
class SignalMeasurement(MethodResult):
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
                    rows.append({"index": img, "source": src, "classifier": clf, "label": lab[k][i],
                                 "pred": pred[s][k][i], "correct": int(cor[s][k][i]), "loss": loss[s][k][i],
                                 **{c: v[s][i] for c, v in per_src.items()}})
        return rows


class InputSignal:
    """What a classifier likes to see (Palacio et al., CVPR 2018, arXiv 1803.08337): how well each of
    ``classifiers`` recognises the images as each of ``autoencoders`` reconstructs them, and how much of the
    image each reconstruction keeps (NMI).

    The paper's measure is the accuracy of classifier ``C`` on ``A_C(x)``, the reconstruction of an
    autoencoder fine-tuned through ``C`` (its Sec. 3), and the normalised mutual information
    ``NMI(x, A(x)) = 2 I(x; A(x)) / (H(x) + H(A(x)))`` of the pixel intensities (its Sec. 4).

    Parameters
    ----------
    classifiers : mapping of str to nn.Module
        Name -> classifier; each is frozen during :meth:`measure` and restored after.
    autoencoders : mapping of str to nn.Module
        Name -> autoencoder, by convention ``"untuned"`` for the stage-1 autoencoder and ``"tuned:C"`` for
        the one tuned through classifier ``C`` (:func:`~infolens.signal.finetune_through_classifier`).
        Reconstructions are scored as they come out (no clipping). ``"plain"`` is reserved.
    bins : int >= 2
        NMI levels (256, as 8-bit images).
    binning : {"joint", ...}
        How the levels span the pair (default: the joint range of original and reconstruction).
    batch_size : int >= 1
        Images per forward pass.
    seed : int
        With the global image indices, seeds the pixel permutation of the chance level.

    References
    ----------
    .. [1] J. Palacio, J. Folz, J. Hees, F. Raue, D. Borth, A. Dengel, "What do deep networks like to
       see?", CVPR 2018, arXiv 1803.08337.

    Examples
    --------
    >>> import torch
    >>> clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    >>> ae = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.Sigmoid())
    >>> res = InputSignal({"net": clf}, {"untuned": ae}, bins=16).measure(torch.rand(4, 1, 8, 8), [0, 1, 2, 1])
    >>> res.sources, tuple(res.correct.shape), tuple(res.nmi.shape)
    (['plain', 'untuned'], (2, 1, 4), (2, 4))
    >>> res.to_rows()[0]["index"], len(res.to_rows())
    (0, 8)
    """

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
    def measure(self, inputs: Tensor, target: Tensor | Sequence[int] | int | None = None, *,
                indices: Sequence[int] | None = None) -> SignalMeasurement:
        """Score a batch through every autoencoder and classifier.

        Parameters
        ----------
        inputs : torch.Tensor, shape (N, C, H, W)
            Floating images in ``[0, 1]``, in the classifiers' dtype.
        target : int, sequence of N ints, LongTensor (N,) or None
            The labels (< 0: unknown). Where unknown (or ``None``), each classifier is scored by agreement
            with its own prediction on the original.
        indices : sequence of N ints or None
            Global image indices (default ``0..N-1``) that seed the chance level, so results do not depend
            on batch composition.

        Returns
        -------
        SignalMeasurement
        """
        first, *others = list(self.classifiers.values())
        with method_call(first, inputs, target, indices, fill_target=False,
                         also_frozen=[*others, *self.autoencoders.values()]) as call:
            images, idx = call.inputs, call.indices
            n = images.shape[0]
            labels = call.target if call.target is not None else torch.full((n,), -1, dtype=torch.long,
                                                                           device=images.device)
            return self._measure(images, labels, idx)

    def _measure(self, images: Tensor, labels: Tensor, idx: list[int]) -> SignalMeasurement:
        n = images.shape[0]
        dev = images.device
        srcs = {"plain": images}
        for name, ae in self.autoencoders.items():
            srcs[name] = reconstruct(ae, images, batch_size=self.batch_size)
        names, sources = list(self.classifiers), list(srcs)
        stacked = torch.cat(list(srcs.values()))
        correct, loss, pred, targets = [], [], [], []
        for clf in self.classifiers.values():
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

