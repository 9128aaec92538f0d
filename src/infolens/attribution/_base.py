"""Attribution maps for a batch: one class per method, Captum's calling convention
(``Saliency(model).attribute(inputs, target=...)``) so users can switch between the two.

Every method is implemented in this package (:mod:`.gradient`, :mod:`.cam`, :mod:`.perturbation`), batched,
in plain autograd: one backward pass per chunk of images x copies (noisy samples, path points, masks, windows), with memory bounded by two knobs
(``../shared/DESIGN.md``): ``batch_size`` (images per step) and ``internal_batch_size`` (perturbed / noisy /
interpolated copies in flight). Captum is not needed at run time; ``tests/test_attribution.py`` checks that
every method Captum also has gives Captum's numbers (Saliency, InputXGradient, IntegratedGradients,
NoiseTunnel smoothgrad / smoothgrad_sq / vargrad, GuidedBackprop, LayerGradCam + bilinear interpolation,
Occlusion). We implement rather than wrap because Captum's NoiseTunnel draws its noise from the global
generator (results then depend on batch composition), while ours draws each image's noise from its own seed
(:func:`infolens._torch.per_image_randn`), and because gradient methods that share passes (Saliency /
Gradient x Input; SmoothGrad / SquareGrad / VarGrad) can then share them (:func:`attribute_many`).

A new attribution method subclasses :class:`Attribution` and implements ``_attribute(x, t, idx)``.
This module holds what they share: the score a map explains, the chunking of copies, the base class.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_images, check_targets, frozen_model


Score = Literal["logit", "softmax", "log_softmax"]


# --------------------------------------------------------------------------- helpers


def logits_of(output: Any) -> Tensor:
    """The class scores of a model's output: the output itself, or the first tensor of a tuple or list
    (a forward returning ``(logits, features)``)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def model_scores(output: Tensor, target: Tensor, score: Score = "logit") -> Tensor:
    """The scalar each image is explained by: ``output[i, target[i]]`` after an optional (log-)softmax."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.ndim != 2:
        raise ValueError(f"the model must return (N, classes) scores, got shape {tuple(output.shape)}")
    if score == "softmax":
        output = output.softmax(1)
    elif score == "log_softmax":
        output = output.log_softmax(1)
    elif score != "logit":
        raise ValueError(f"score must be 'logit', 'softmax' or 'log_softmax', got {score!r}")
    return output.gather(1, target.to(output.device)[:, None])[:, 0]


def _input_grad(model: nn.Module, x: Tensor, target: Tensor, score: Score) -> Tensor:
    """``d score(model(x))[target] / dx`` for a batch (one forward and one backward pass)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = model_scores(model(x), target, score)
        (g,) = torch.autograd.grad(s.sum(), x)
    return g


def _groups(n_copies: int, n_images: int, internal_batch_size: int) -> Iterator[range]:
    """Copies per pass so that ``n_images * len(group) <= internal_batch_size`` (at least one copy)."""
    per = max(1, internal_batch_size // max(1, n_images))
    for s in range(0, n_copies, per):
        yield range(s, min(n_copies, s + per))


def copy_scores(model: nn.Module, copies: Tensor, target: Tensor, score: Score) -> Tensor:
    """Scores of ``G`` perturbed copies of each of ``N`` images, ``copies`` ``(N, G, C, H, W)`` -> ``(N, G)``,
    in one forward pass (the black-box methods' inner step: Occlusion, RISE, Sobol, HSIC)."""
    n, g = copies.shape[:2]
    return model_scores(model(copies.flatten(0, 1)), target.repeat_interleave(g), score).view(n, g)


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def to_map(attributions: Tensor, *, name: str = "attributions") -> Tensor:
    """An attribution tensor as one 2-D map per image, ``(N, H, W)``: the channel mean of ``(N, C, H, W)``
    (Xplique's convention for metrics and FORGrad); ``(N, H, W)`` passes through."""
    if not isinstance(attributions, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, C, H, W) or (N, H, W), got {type(attributions).__name__}")
    if attributions.ndim == 4:
        return attributions.mean(1)
    if attributions.ndim == 3:
        return attributions
    raise ValueError(f"{name} must have shape (N, C, H, W) or (N, H, W), got {tuple(attributions.shape)}")


# --------------------------------------------------------------------------- methods


class Attribution:
    """Base class: settings in the constructor, data in :meth:`attribute` (Captum's convention).

    Parameters
    ----------
    model : a frozen ``nn.Module`` taking ``(N, C, H, W)`` images and returning ``(N, classes)``; its
        mode is not changed (pass it in eval mode).
    batch_size : images per step.
    internal_batch_size : model inputs per pass for the methods that expand each image into copies.
    score : what is explained: the target ``logit`` (default, as Captum and Xplique), or its
        ``softmax`` / ``log_softmax``.
    """

    kind: str = "gradient"
    name: str = ""

    def __init__(self, model: nn.Module, *, batch_size: int = 64, internal_batch_size: int = 256,
                 score: Score = "logit") -> None:
        if not isinstance(model, nn.Module) and not callable(model):
            raise TypeError(f"model must be an nn.Module or callable, got {type(model).__name__}")
        self.model = model
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.internal_batch_size = _check_positive_int(internal_batch_size, "internal_batch_size")
        if score not in ("logit", "softmax", "log_softmax"):
            raise ValueError(f"score must be 'logit', 'softmax' or 'log_softmax', got {score!r}")
        self.score = score

    def attribute(self, inputs: Tensor, target: Tensor | int | Sequence[int] | None = None, *,
                  indices: Sequence[int] | Tensor | None = None) -> Tensor:
        """Attribution maps for ``inputs`` (N, C, H, W) with respect to ``target`` (class per image, or
        one int; default the predicted class). ``indices`` are the images' global indices in the data
        set (default ``0..N-1``): they seed per-image randomness, so numbers never depend on batching.
        Returns (N, C, H, W) for pixel-wise gradient methods, (N, 1, H, W) for the others.

        The model is evaluated in eval mode with frozen weights and comes back exactly as it was passed
        (every submodule's mode, ``requires_grad`` flag and buffer; :func:`infolens._torch.frozen`)."""
        return self._batched(self._attribute, inputs, target, indices)

    __call__ = attribute

    def _batched(self, fn: Any, inputs: Tensor, target: Tensor | int | Sequence[int] | None,
                 indices: Sequence[int] | Tensor | None) -> Tensor:
        """``fn(x, t, idx)`` over ``batch_size`` slices of the checked inputs, the model frozen, the
        target defaulting to the prediction; results concatenated."""
        inputs = check_images(inputs, name="inputs", model=self.model)
        n = inputs.shape[0]
        with frozen_model(self.model):
            t = check_targets(target, n)
            if t is None:
                t = self._predict(inputs)
            t = t.to(inputs.device)
            idx = _indices(indices, n)
            outs = []
            for s in range(0, n, self.batch_size):
                sl = slice(s, s + self.batch_size)
                outs.append(fn(inputs[sl], t[sl], idx[sl]).detach())
        return torch.cat(outs)

    def _predict(self, inputs: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([logits_of(self.model(inputs[s:s + self.batch_size])).argmax(1)
                              for s in range(0, inputs.shape[0], self.batch_size)])

    def _attribute(self, x: Tensor, t: Tensor, idx: list[int]) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _indices(indices: Sequence[int] | Tensor | None, n: int) -> list[int]:
    if indices is None:
        return list(range(n))
    idx = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]
    if len(idx) != n:
        raise ValueError(f"indices must give one global index per image ({n}), got {len(idx)}")
    return idx
