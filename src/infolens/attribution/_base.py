"""Attribution maps for a batch: one class per method, Captum's calling convention
(``Saliency(model).attribute(inputs, target=...)``) so users can switch between the two.

Every method is implemented in this package (:mod:`.gradient`, :mod:`.cam`, :mod:`.perturbation`), batched,
in plain autograd: one backward pass per chunk of images x copies (noisy samples, path points, masks, windows), with memory bounded by two knobs
(``docs/design.md``): ``batch_size`` (images per step) and ``internal_batch_size`` (perturbed / noisy /
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
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .._method import MethodCall, MethodResult, method_call
from ..spectral import frequency_radius, power_spectrum


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
        # channels-last: the same gradient, 1.2-1.3x faster convolutions on the CPU
        x = (x.detach().contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x.detach()).requires_grad_(True)
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
    (Xplique's convention for metrics and FORGrad); ``(N, H, W)`` passes through; an
    :class:`AttributionResult` gives its ``.maps``'s."""
    if isinstance(attributions, AttributionResult):
        attributions = attributions.maps
    if not isinstance(attributions, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, C, H, W) or (N, H, W), got {type(attributions).__name__}")
    if attributions.ndim == 4:
        return attributions.mean(1)
    if attributions.ndim == 3:
        return attributions
    raise ValueError(f"{name} must have shape (N, C, H, W) or (N, H, W), got {tuple(attributions.shape)}")


# --------------------------------------------------------------------------- the result


def high_frequency_share(attributions: Tensor | AttributionResult, *, above: float = 0.5,
                         absolute: bool = True) -> Tensor:
    """Share of each map's power at radial frequencies above ``above`` x Nyquist.

    The map is the channel mean, made non-negative with ``|.|`` when ``absolute`` (the map FORGrad
    filters, arXiv 2307.09591 Eq. 2); its mean is removed first, so the DC term (the map's overall level)
    does not count and the share describes how the map's variation is spread over frequencies.

    Parameters
    ----------
    attributions : torch.Tensor, shape (N, C, H, W) or (N, H, W), or AttributionResult
        The maps.
    above : float in (0, sqrt(2)]
        The radius, as a fraction of Nyquist, above which power counts as high (default 0.5, half
        Nyquist: the claims' statistic, see ``docs/claims.md``).
    absolute : bool
        Take ``|map|`` first (default).

    Returns
    -------
    torch.Tensor, shape (N,)
        In ``[0, 1]``; a constant map gives 0.

    Examples
    --------
    >>> import torch
    >>> checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1  # Nyquist pattern
    >>> high_frequency_share(checker[None], absolute=False)
    tensor([1.])
    >>> high_frequency_share(torch.ones(1, 8, 8))
    tensor([0.])
    """
    dtype = attributions.dtype
    maps = to_map(attributions).to(torch.float64)
    if absolute:
        maps = maps.abs()
    maps = maps - maps.mean((-2, -1), keepdim=True)
    power = power_spectrum(maps)
    rho = frequency_radius(*maps.shape[-2:], device=maps.device, dtype=torch.float64)
    total = power.sum((-2, -1))
    high = (power * (rho > above)).sum((-2, -1))
    share = torch.where(total > 0, high / total.clamp(min=1e-300), torch.zeros_like(total))
    return share.to(dtype)


@dataclass
class AttributionResult(MethodResult):
    """What :meth:`Attribution.attribute` returns: the maps of a batch with the targets they explain.

    Attributes
    ----------
    maps : torch.Tensor, shape (N, C, H, W) or (N, 1, H, W)
        ``(N, C, H, W)`` for the pixel-wise gradient methods, ``(N, 1, H, W)`` for the others; detached,
        on the inputs' device, in their dtype.
    target : torch.Tensor, shape (N,)
        The class explained per image (the predicted class when none was given).
    indices : list of int
        The images' global indices (``index`` in :meth:`to_rows`).
    method : str
        The method's name (``saliency``, ``gradcam``, ``saliency+forgrad``, ...).

    The tensor itself is ``.maps``; ``shape``, ``dtype``, ``device`` and ``len()`` are the maps'.

    Examples
    --------
    >>> import torch
    >>> from infolens import Saliency
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> res = Saliency(net).attribute(torch.rand(2, 1, 8, 8), target=3, indices=[10, 11])
    >>> res.maps.shape
    torch.Size([2, 1, 8, 8])
    >>> [(r["index"], r["target"], r["method"]) for r in res.to_rows()]
    [(10, 3, 'saliency'), (11, 3, 'saliency')]
    """

    maps: Tensor
    target: Tensor
    indices: list[int]
    method: str

    @property
    def shape(self) -> torch.Size:
        return self.maps.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.maps.dtype

    @property
    def device(self) -> torch.device:
        return self.maps.device

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per image: ``index``, ``target``, ``method`` and summaries of the channel-mean map
        (:func:`to_map`): ``map_mean``, ``map_abs_mean``, ``map_max`` and ``high_frequency_share`` (the
        power of ``|map|`` above half Nyquist, :func:`high_frequency_share`)."""
        m = to_map(self.maps).detach().double()
        cols = {"map_mean": m.mean((-2, -1)), "map_abs_mean": m.abs().mean((-2, -1)),
                "map_max": m.amax((-2, -1)), "high_frequency_share": high_frequency_share(m)}
        vals = {k: v.cpu().tolist() for k, v in cols.items()}
        tgt = self.target.cpu().tolist()
        return [{"index": i, "target": int(tgt[j]), "method": self.method, **{k: v[j] for k, v in vals.items()}}
                for j, i in enumerate(self.indices)]


# --------------------------------------------------------------------------- methods


class Attribution:
    """Base of every attribution method: settings in the constructor, data in :meth:`attribute`
    (Captum's convention, ``Method(model).attribute(inputs, target=...)``).

    A new method subclasses it, sets ``name`` and ``kind`` and implements ``_attribute(x, t, idx)``
    (one slice of at most ``batch_size`` checked images, their targets and global indices -> maps).

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)`` scores. It is frozen during
        :meth:`attribute` (eval mode, no weight gradients) and comes back exactly as it was passed.
    batch_size : int >= 1
        Images per step (default 64).
    internal_batch_size : int >= 1
        Model inputs per pass for the methods that expand each image into copies (noisy samples, path
        points, masks, windows; default 256). Changes no number, only memory.
    score : {"logit", "softmax", "log_softmax"}
        What is explained: the target ``logit`` (default, as Captum and Xplique), or its softmax /
        log-softmax.

    Examples
    --------
    A method of one's own: the input itself as its map.

    >>> import torch
    >>> class Identity(Attribution):
    ...     name = "identity"
    ...     def _attribute(self, x, t, idx):
    ...         return x.mean(1, keepdim=True)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> x = torch.rand(2, 1, 4, 4)
    >>> torch.equal(Identity(net).attribute(x, target=0).maps, x)
    True
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
                  indices: Sequence[int] | Tensor | None = None) -> AttributionResult:
        """Attribution maps of a batch.

        Parameters
        ----------
        inputs : torch.Tensor, shape (N, C, H, W)
            Floating images in the model's dtype (a 3-D tensor is refused with the fix).
        target : int, sequence of N ints, LongTensor (N,) or None
            The class explained per image; default the predicted class.
        indices : sequence of N ints or None
            The images' global indices in the data set (default ``0..N-1``): they seed per-image
            randomness, so numbers never depend on batching.

        Returns
        -------
        AttributionResult
            ``.maps`` (N, C, H, W) for pixel-wise gradient methods, (N, 1, H, W) for the others.

        The model is evaluated in eval mode with frozen weights and comes back exactly as it was passed
        (every submodule's mode, ``requires_grad`` flag and buffer; :func:`infolens._method.method_call`).
        """
        with method_call(self.model, inputs, target, indices, batch_size=self.batch_size) as c:
            maps = self._slices(self._attribute, c)
        return AttributionResult(maps, c.target, c.indices, self.name or type(self).__name__)

    def _slices(self, fn: Any, c: MethodCall) -> Tensor:
        """``fn(x, t, idx)`` over ``batch_size`` slices of a checked call; results concatenated."""
        outs = []
        for s in range(0, c.inputs.shape[0], self.batch_size):
            sl = slice(s, s + self.batch_size)
            outs.append(fn(c.inputs[sl], c.target[sl], c.indices[sl]).detach())
        return torch.cat(outs)

    def _batched(self, fn: Any, inputs: Tensor, target: Tensor | int | Sequence[int] | None,
                 indices: Sequence[int] | Tensor | None) -> Tensor:
        """``fn(x, t, idx)`` over ``batch_size`` slices of the checked inputs, the model frozen."""
        with method_call(self.model, inputs, target, indices, batch_size=self.batch_size) as c:
            return self._slices(fn, c)

    def _attribute(self, x: Tensor, t: Tensor, idx: list[int]) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
