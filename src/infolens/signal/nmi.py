"""Normalised mutual information between images and their reconstructions (arXiv 1803.08337), per image.

Binning (one rule, documented here and in the report): the pixels of an original ``a[i]`` and of its
reconstruction ``b[i]`` are quantised to ``bins`` (256, the paper's reading) equal-width levels over
their **joint range** ``[min(a[i], b[i]), max(a[i], b[i])]``; nothing is clipped. For an 8-bit image
and a reconstruction inside [0, 1] that both reach 0 and 1 this is the usual ``round(255 x)`` level.
Reconstructions leave [0, 1] (the released decoder ends in a 1x1 convolution with no activation):
:func:`out_of_range` gives the share of such pixels, which the report states beside the NMI.
``binning="unit"`` gives the clipped [0, 1] levels instead (for comparison only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Average = Literal["arithmetic", "geometric", "min", "max"]
Binning = Literal["joint", "unit"]
AVERAGES: tuple[str, ...] = ("arithmetic", "geometric", "min", "max")


def quantize(x: Tensor, *, bins: int = 256, low: Tensor | float = 0.0, high: Tensor | float = 1.0) -> Tensor:
    """Values to integer levels ``0..bins-1``: equal-width bins over ``[low, high]`` (per image when
    ``low``/``high`` are ``(N,)`` tensors), ``floor((x - low) / (high - low) * bins)``, the top edge in the
    last bin (numpy's histogram convention). Values outside ``[low, high]`` land in the edge bins; pass
    the data's own range (:func:`joint_range`) to avoid that. A constant image (``high == low``) is
    level 0. Integer tensors are taken as already quantised and must lie in ``[0, bins)``."""
    if not (isinstance(bins, int) and bins >= 2):
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    if not x.is_floating_point():
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= bins):
            raise ValueError(f"integer pixels must lie in [0, {bins}), got range [{int(x.min())}, {int(x.max())}]")
        return x.long()
    shape = (-1,) + (1,) * (x.ndim - 1)
    lo = torch.as_tensor(low, dtype=torch.float64, device=x.device).reshape(shape if torch.is_tensor(low) else ())
    hi = torch.as_tensor(high, dtype=torch.float64, device=x.device).reshape(shape if torch.is_tensor(high) else ())
    width = (hi - lo).clamp_min(1e-300)
    q = torch.floor((x.double() - lo) / width * bins)
    return q.clamp(0, bins - 1).long()


def joint_range(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image ``(low, high)``: the smallest and largest value over ``a[i]`` and ``b[i]`` together."""
    n = a.shape[0]
    both = torch.cat([a.reshape(n, -1), b.reshape(n, -1)], 1)
    return both.amin(1), both.amax(1)


def out_of_range(x: Tensor, *, low: float = 0.0, high: float = 1.0) -> Tensor:
    """Share of each image's values outside ``[low, high]`` (the originals' pixel range): ``(N,)``."""
    return ((x < low) | (x > high)).reshape(x.shape[0], -1).double().mean(1)


def _entropy(counts: Tensor, total: float) -> Tensor:
    """Plug-in entropy (nats) of each row of a histogram of ``total`` samples."""
    return math.log(total) - torch.special.xlogy(counts, counts).sum(-1) / total


@dataclass(frozen=True)
class MutualInformation:
    """Per-image plug-in mutual information and entropies (nats), from :func:`mutual_information`.

    ``mi``, ``entropy_a``, ``entropy_b``: ``(N,)`` float64; ``constant_a`` / ``constant_b``: the image
    has a single level (entropy 0). :meth:`normalized` turns them into NMI with any of the averages."""

    mi: Tensor
    entropy_a: Tensor
    entropy_b: Tensor
    constant_a: Tensor
    constant_b: Tensor

    def normalized(self, average: Average = "arithmetic") -> Tensor:
        """``mi / mean(entropy_a, entropy_b)`` with scikit-learn's limit cases (both constant: 1; one: 0)."""
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
        ha, hb = self.entropy_a, self.entropy_b
        norm = {"arithmetic": lambda: (ha + hb) / 2, "geometric": lambda: torch.sqrt(ha * hb),
                "min": lambda: torch.minimum(ha, hb), "max": lambda: torch.maximum(ha, hb)}[average]()
        one_a, one_b = self.constant_a, self.constant_b
        out = torch.where(one_a | one_b, torch.zeros_like(self.mi), self.mi / norm.clamp_min(1e-300))
        return torch.where(one_a & one_b, torch.ones_like(out), out)


def mutual_information(a: Tensor, b: Tensor, *, bins: int = 256, binning: Binning = "joint") -> MutualInformation:
    """Plug-in mutual information between the pixels of ``a[i]`` and ``b[i]``, per image.

    Pixels are quantised to ``bins`` levels (256: the paper's reading) over the joint range of the pair
    (``binning="joint"``, see the module docstring) or over [0, 1] with clipping (``"unit"``), then
    ``I(A; B) = sum_xy p(x, y) log(p(x, y) / (p(x) p(y)))`` over the pixels of one image (nats), as
    ``sklearn.metrics.mutual_info_score(qa.ravel(), qb.ravel())`` computes it. Integer inputs are used
    as levels directly.

    Vectorised over the batch: the marginal histograms are one ``bincount`` over ``(image, level)``
    keys, the joint histograms one sort-based count of ``(image, level_a, level_b)`` keys (memory
    O(N*H*W), not O(N*bins^2)). Float64 sums.
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"a and b must be torch.Tensors of shape (N, ...), got {type(a).__name__} and "
                        f"{type(b).__name__}")
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"a and b must have the same shape (N, ...) with at least 2 dimensions, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if not (isinstance(bins, int) and bins >= 2):
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    if binning not in ("joint", "unit"):
        raise ValueError(f"binning must be 'joint' (the joint range of the pair) or 'unit' ([0, 1], clipped), "
                         f"got {binning!r}")
    for name, t in (("a", a), ("b", b)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    n = a.shape[0]
    if binning == "joint" and (a.is_floating_point() or b.is_floating_point()):
        lo, hi = joint_range(a.double(), b.double())
        qa, qb = quantize(a.double(), bins=bins, low=lo, high=hi), quantize(b.double(), bins=bins, low=lo, high=hi)
    else:
        qa, qb = quantize(a, bins=bins), quantize(b, bins=bins)
    qa, qb = qa.reshape(n, -1), qb.reshape(n, -1)
    p = qa.shape[1]
    if p == 0:
        raise ValueError(f"a and b have no pixels per image (shape {tuple(a.shape)})")
    row = torch.arange(n, device=qa.device).unsqueeze(1) * bins
    ca = torch.bincount((row + qa).flatten(), minlength=n * bins).view(n, bins).double()
    cb = torch.bincount((row + qb).flatten(), minlength=n * bins).view(n, bins).double()
    small = torch.int32 if bins * bins < 2 ** 31 else torch.int64
    keys = torch.sort((qa * bins + qb).to(small), dim=1).values.flatten()
    first = torch.ones_like(keys, dtype=torch.bool)
    first[1:] = keys[1:] != keys[:-1]
    first[::p] = True  # a new image starts a new cell
    starts = first.nonzero().squeeze(1)
    cj = torch.diff(starts, append=starts.new_tensor([keys.numel()])).double()
    cell = keys[starts].long()
    img = starts // p
    la, lb = img * bins + cell // bins, img * bins + cell % bins
    terms = cj * (torch.log(cj) + math.log(p) - torch.log(ca.flatten()[la]) - torch.log(cb.flatten()[lb]))
    mi = torch.zeros(n, dtype=torch.float64, device=qa.device).index_add_(0, img, terms / p).clamp_min(0)
    return MutualInformation(mi, _entropy(ca, p), _entropy(cb, p), (ca > 0).sum(1) == 1, (cb > 0).sum(1) == 1)


def nmi(a: Tensor, b: Tensor, *, bins: int = 256, average: Average = "arithmetic",
        binning: Binning = "joint") -> Tensor:
    """Normalised mutual information between the pixels of ``a[i]`` and ``b[i]``, per image: ``(N,)``.

    ``NMI = I(A; B) / mean(H(A), H(B))`` (:func:`mutual_information`; 256 levels over the pair's joint
    range by default). ``average``: ``"arithmetic"`` (scikit-learn's default since 0.22), ``"geometric"``
    (its default before; likely a 2018 computation's), ``"min"`` or ``"max"``. Equal to
    ``sklearn.metrics.normalized_mutual_info_score(qa.ravel(), qb.ravel(), average_method=average)`` on the
    quantised pixels, limit cases included (both constant: 1, one constant: 0).

    Finite-sample bias: the plug-in MI of *independent* images is about ``(Ka - 1)(Kb - 1) / (2 P)`` nats
    for Ka, Kb occupied levels and P pixels (:func:`nmi_noise_bias`); on 28 x 28 images this is large,
    so read NMI against a chance level (e.g. pixel-permuted pairs).
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
    return mutual_information(a, b, bins=bins, binning=binning).normalized(average)


def nmi_noise_bias(levels_a: Tensor | float, levels_b: Tensor | float, pixels: int,
                   entropy_a: Tensor | float, entropy_b: Tensor | float) -> Tensor:
    """First-order expected plug-in NMI of two *independent* images (arithmetic normalisation):
    ``(Ka - 1)(Kb - 1) / (2 P) / ((Ha + Hb) / 2)`` (Miller 1955; Panzeri & Treves 1996). Valid while
    ``Ka * Kb << P``; for small images with many grey levels the true bias saturates below this."""
    f64 = lambda v: torch.as_tensor(v, dtype=torch.float64)
    return (f64(levels_a) - 1) * (f64(levels_b) - 1) / (2 * pixels) / ((f64(entropy_a) + f64(entropy_b)) / 2)
