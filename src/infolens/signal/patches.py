"""Grey patches of natural photographs: the autoencoder's pre-training data off the classifiers' domain.

arXiv 1803.08337 pre-trains its SegNet on YFCC100m photographs and measures it on ImageNet, so the
untuned reconstructions lose part of what each classifier needs and tuning the decoder can let it back
in. On the 28 x 28 MNIST testbed the same separation is: pre-train on grey 28 x 28 patches of natural
photographs (random crops at several scales, mirrored), never on digits.

Pure, seeded tensor functions: nothing here reads a file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

#: Crop sides (pixels of the source photograph) each patch is taken at before it is resized to the patch
#: size: the "rescales". 28 px keeps the photograph's own resolution, 224 px shrinks a large part of it.
SIDES: tuple[int, ...] = (28, 40, 56, 80, 112, 160, 224)

#: ITU-R BT.601 luma weights (R, G, B) for grey.
LUMA: tuple[float, float, float] = (0.299, 0.587, 0.114)


def to_grey(images: Tensor) -> Tensor:
    """``(N, 3, H, W)`` colour images in [0, 1] to ``(N, 1, H, W)`` grey (BT.601 luma); ``(N, 1, H, W)``
    passes through."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be a tensor (N, 1 or 3, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    if images.shape[1] == 1:
        return images
    w = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True)


def photo_patches(photos: Tensor, n: int, *, size: int = 28, sides: Sequence[int] = SIDES, flips: bool = True,
                  seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` random grey ``size`` x ``size`` patches of ``photos``, and the photograph each came from.

    Parameters
    ----------
    photos : Tensor
        ``(P, C, H, W)`` photographs in [0, 1], ``C`` 1 or 3 (converted to grey, BT.601 luma).
    n : int
        Number of patches.
    size : int
        Patch side (28: the MNIST classifiers' input).
    sides : sequence of int
        Crop sides in source pixels, one drawn uniformly per patch; the crop is resized to ``size`` with
        antialiased bilinear interpolation (the whole photograph is resized once per side, so every patch
        of one side is an exact crop of one resized image). Sides larger than the photographs are refused.
    flips : bool
        Mirror each patch left-right and up-down with probability 1/2 each.
    seed : int
        All draws (photograph, side, position, flips) come from one generator seeded here: the same
        arguments give the same patches on every machine.

    Returns
    -------
    patches : Tensor
        ``(n, 1, size, size)`` float32 in [0, 1].
    source : Tensor
        ``(n,)`` long: index of each patch's photograph in ``photos``.
    """
    if not isinstance(photos, Tensor) or photos.ndim != 4 or photos.shape[0] < 1:
        raise ValueError(f"photos must be a tensor (P >= 1, C, H, W), got "
                         f"{tuple(photos.shape) if isinstance(photos, Tensor) else type(photos).__name__}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be an int >= 1 (number of patches), got {n!r}")
    if not (isinstance(size, int) and size >= 1):
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    sides = tuple(int(s) for s in sides)
    h, w = photos.shape[-2:]
    if not sides or min(sides) < size or max(sides) > min(h, w):
        raise ValueError(f"sides must lie between the patch size {size} and the photographs' shorter side "
                         f"{min(h, w)}, got {sides}; pass sides within that range")
    grey = to_grey(photos.float())
    g = torch.Generator().manual_seed(int(seed))
    src = torch.randint(0, photos.shape[0], (n,), generator=g)
    which = torch.randint(0, len(sides), (n,), generator=g)
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    flip = torch.rand(n, 2, generator=g) < 0.5 if flips else torch.zeros(n, 2, dtype=torch.bool)
    out = torch.empty(n, 1, size, size, device=grey.device)
    ar = torch.arange(size)
    for k, s in enumerate(sides):  # one resize per scale; the crops themselves are one gather
        sel = (which == k).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        scaled = grey if s == size else F.interpolate(
            grey, size=(round(h * size / s), round(w * size / s)), mode="bilinear", antialias=True,
            align_corners=False)
        hs, ws = scaled.shape[-2:]
        top = (u[sel, 0] * (hs - size + 1)).long().clamp_max(hs - size)
        left = (u[sel, 1] * (ws - size + 1)).long().clamp_max(ws - size)
        rows = top[:, None] + ar  # (m, size)
        cols = left[:, None] + ar
        rows = torch.where(flip[sel, 0, None], rows.flip(1), rows)
        cols = torch.where(flip[sel, 1, None], cols.flip(1), cols)
        out[sel, 0] = scaled[src[sel][:, None, None], 0, rows[:, :, None], cols[:, None, :]]
    return out.clamp_(0.0, 1.0), src
