"""The paper's sanity-check inputs and models: input variants (check a), cascading randomisation and
random re-initialisation (check b)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._checks import check_images
from .._torch import fork_rng, image_generators
from ..spectral import lowpass_filter

__all__ = ["INPUT_VARIANTS", "input_variant", "cascading_randomization", "random_init"]

# --------------------------------------------------------------------------- sanity check (a): the input

INPUT_VARIANTS: tuple[str, ...] = ("original", "lowpass", "highpass", "noise", "shuffled", "center_removed")
"""Input variants of sanity check (a) (``docs/methods.md``, section 1: originals against their low-passed and
high-passed versions, noise, shuffled pixels, and the image with its object removed)."""


def input_variant(images: Tensor, variant: str, *, indices: Sequence[int] | None = None, seed: int = 0,
                  cutoff: float = 0.25, center: float = 0.5) -> Tensor:
    """One input variant of sanity check (a), in ``[0, 1]``, same shape, dtype and device as ``images``.

    * ``original``: unchanged.
    * ``lowpass``: ideal circular low-pass at ``cutoff`` of Nyquist (default 0.25: the coarse shape;
      :func:`infolens.spectral.lowpass_filter`), clipped to ``[0, 1]``.
    * ``highpass``: the detail the low-pass removed, on the image's mean:
      ``x - lowpass(x) + mean(x)``, clipped.
    * ``noise``: uniform noise in ``[0, 1)``: no content at all (randomised input).
    * ``shuffled``: the pixels in a random order (one permutation for all colour channels): the same
      histogram without any spatial structure.
    * ``center_removed``: the central box (``center`` of each side; default half) filled with the mean
      colour of the image's border. Reading: the paper removes the object; without segmentations we
      rely on MNIST digits and the bundled photographs being centred on their object.

    Randomness is drawn per image from ``(seed, global index)`` (:func:`infolens._torch.image_seed`),
    so the variant of an image does not depend on the batch it is in or on the process count;
    ``indices`` default to ``0..N-1``.
    """
    images = check_images(images)
    n, c, h, w = images.shape
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    if len(idx) != n:
        raise ValueError(f"indices must hold one global index per image ({n}), got {len(idx)}")
    if variant == "original":
        return images
    if variant in ("lowpass", "highpass"):
        low = lowpass_filter(images, cutoff, unit="nyquist")
        if variant == "lowpass":
            return low.clamp(0, 1)
        return (images - low + images.mean((-2, -1), keepdim=True)).clamp(0, 1)
    if variant == "noise":
        gens = image_generators(seed, idx, "srop-noise")
        return torch.stack([torch.rand((c, h, w), generator=g, dtype=images.dtype) for g in gens]).to(images.device)
    if variant == "shuffled":
        gens = image_generators(seed, idx, "srop-shuffle")
        perm = torch.stack([torch.randperm(h * w, generator=g) for g in gens]).to(images.device)
        flat = images.reshape(n, c, h * w)
        return flat.gather(2, perm[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)
    if variant == "center_removed":
        if not 0.0 < float(center) <= 1.0:
            raise ValueError(f"center (the side fraction of the removed box) must lie in (0, 1], got {center}")
        border = torch.ones(h, w, dtype=torch.bool, device=images.device)
        border[1:-1, 1:-1] = False
        fill = images[..., border].mean(-1)  # (N, C) mean colour of the border
        bh, bw = max(1, round(h * center)), max(1, round(w * center))
        y0, x0 = (h - bh) // 2, (w - bw) // 2
        out = images.clone()
        out[..., y0:y0 + bh, x0:x0 + bw] = fill[..., None, None]
        return out
    raise ValueError(f"unknown input variant {variant!r}; choose from {', '.join(INPUT_VARIANTS)}")


# --------------------------------------------------------------------------- sanity check (b): randomisation


def _reinit(module: nn.Module, seed: int) -> None:
    """Re-initialise one module's own parameters (and buffers, e.g. BatchNorm statistics) from ``seed``."""
    with fork_rng(seed):
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()  # BatchNorm: also resets the running statistics
        else:
            for p in module.parameters(recurse=False):
                nn.init.normal_(p, std=0.02) if p.ndim > 1 else nn.init.zeros_(p)


def cascading_randomization(model: nn.Module, *, seed: int = 0):
    """Cascading layer randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", Sec. 3).

    Yields ``(layer_name, randomised_model)``: first ``("none", copy of model)``, then, from the output
    down, the copy with one more layer re-initialised (its framework default initialisation, seeded by
    ``seed`` and the step). A layer is a module with a weight matrix or kernel (convolution, linear)
    together with the parameterised modules without one that follow it (its BatchNorm, which gets
    fresh statistics too). The model passed in is never modified; the same copy is updated step by
    step, so use each model before asking for the next.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    work = copy.deepcopy(model).eval()
    groups: list[tuple[str, list[nn.Module]]] = []
    for n, m in work.named_modules():
        own = list(m.parameters(recurse=False))
        if not n or list(m.children()) or not own:
            continue
        if any(p.ndim > 1 for p in own) or not groups:
            groups.append((n, [m]))
        else:
            groups[-1][1].append(m)
    yield "none", work
    for step, (name, modules) in enumerate(reversed(groups), 1):
        for k, module in enumerate(modules):
            _reinit(module, seed * 1_000_003 + step * 101 + k)
        yield name, work




def random_init(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every parameterised module re-initialised (its framework default
    initialisation, e.g. Kaiming-uniform convolutions, unit BatchNorm with fresh statistics), seeded by
    ``seed``: the same architecture, randomly initialised, for any model (check b; two seeds measure
    what differs between two random draws). Deviation: a model's own initialisation scheme (e.g. a
    Kaiming-normal ``__init__``) is not replayed; the framework default stands in for it."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    work = copy.deepcopy(model).eval()
    k = 0
    for _, m in work.named_modules():
        if list(m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
            _reinit(m, seed * 1_000_003 + 7919 * k)
            k += 1
    return work
