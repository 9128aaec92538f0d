"""The one entry every method goes through, and the one result base every method returns.

Every method of infolens (attribution maps, faithfulness metrics, SROP, information discarding, input
signal) and every batched helper the runners use (:func:`infolens.attribution.attribute_many`,
``Metric.score_many``, :func:`infolens.probe.capture`) is called with one shape::

    method(inputs, target=None, *, indices=None)

and enters through :func:`method_call`, which

* checks ``inputs``: a floating ``(N, C, H, W)`` tensor in the model's dtype with the model's channels,
  finite; a 3-D tensor is refused with the fix (``unsqueeze(0)`` for one image, ``unsqueeze(1)`` for a
  batch of grey images), since ``(C, H, W)`` and ``(N, H, W)`` cannot be told apart for one channel;
* fills ``target``: an int or ``(N,)`` class indices, default the model's predicted class;
* fills ``indices``: the images' global indices in the data set (default ``0..N-1``), which seed each
  image's randomness so that numbers never depend on the batch an image came in;
* freezes the model(s) for the call: eval mode (BatchNorm uses its running statistics, dropout is off),
  ``requires_grad=False`` on every parameter, and afterwards every submodule's mode, every
  ``requires_grad`` flag and every buffer restored exactly (:func:`infolens._torch.frozen`).

Results derive from :class:`MethodResult`: ``.to_rows()`` gives a tidy table keyed on ``index``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parameter import is_lazy

from ._checks import check_images, check_targets, frozen_model

__all__ = ["MethodCall", "MethodResult", "method_call", "check_indices", "predict"]


@dataclass
class MethodResult:
    """Base of every method's result: a dataclass whose :meth:`to_rows` is a tidy table, one row per
    image (or per image x layer, source, ...), keyed on ``index``, the image's global index."""

    def to_rows(self) -> list[dict[str, Any]]:  # pragma: no cover - every result implements it
        """One dict per row, each with ``index`` (the global image index)."""
        raise NotImplementedError


@dataclass
class MethodCall:
    """The checked arguments of one call: ``inputs`` ``(N, C, H, W)``, ``target`` ``(N,)`` long on the
    inputs' device (``None`` where the method takes no target and none was given), ``indices`` (N global
    image indices)."""

    inputs: Tensor
    target: Tensor | None
    indices: list[int]


def check_indices(indices: Sequence[int] | Tensor | range | None, n: int, *, name: str = "indices") -> list[int]:
    """Global image indices as a list of ``n`` ints; ``None`` gives ``0..n-1``.

    Raises
    ------
    ValueError
        When the count differs from ``n``.
    """
    if indices is None:
        return list(range(n))
    if isinstance(indices, Tensor):
        indices = indices.reshape(-1).tolist()
    try:
        idx = [int(i) for i in indices]
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of ints (one global image index per image), "
                        f"got {type(indices).__name__}") from exc
    if len(idx) != n:
        raise ValueError(f"{name} must give one global index per image ({n}), got {len(idx)}; "
                         f"pass indices=range(start, start + {n}) for a slice of a data set")
    return idx


def predict(model: Any, inputs: Tensor, batch_size: int = 256) -> Tensor:
    """The predicted class of each image (the default target of every method), ``(N,)`` long.

    Through the same entry as the methods: checked inputs, the model frozen in eval mode (a train-mode
    BatchNorm uses its running statistics) and restored exactly afterwards.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> predict(net, torch.rand(5, 1, 2, 2)).shape
    torch.Size([5])
    """
    with method_call(model, inputs, None, None, batch_size=batch_size) as call:
        return call.target


def _predict(model: Any, inputs: Tensor, batch_size: int = 256) -> Tensor:
    """``argmax`` of the model's output in batches, no gradients (the model already frozen)."""
    with torch.no_grad():
        outs = []
        for s in range(0, inputs.shape[0], batch_size):
            out = model(inputs[s:s + batch_size])
            out = out[0] if isinstance(out, (tuple, list)) else out
            outs.append(out.argmax(1))
    return torch.cat(outs)


@contextlib.contextmanager
def _frozen_all(models: Sequence[Any]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        seen: set[int] = set()
        for m in models:
            if id(m) not in seen:
                seen.add(id(m))
                stack.enter_context(frozen_model(m))
        yield


@contextlib.contextmanager
def method_call(model: Any, inputs: object, target: object = None, indices: object = None, *,
                name: str = "inputs", fill_target: bool = True, batch_size: int = 256,
                also_frozen: Sequence[Any] = (), channels: int | None = None) -> Iterator[MethodCall]:
    """Check a method's arguments and freeze its model(s) for the ``with`` block.

    Parameters
    ----------
    model : nn.Module or callable
        The model measured. Its dtype and first convolution's channels define the accepted inputs; an
        ``nn.Module`` is frozen inside the block and restored exactly afterwards.
    inputs : torch.Tensor, shape (N, C, H, W)
        Floating images in the model's dtype, finite.
    target : int, sequence of N ints, LongTensor (N,) or None
        The class explained per image; ``None`` gives the predicted class (``fill_target``) or stays
        ``None``.
    indices : sequence of N ints or None
        Global image indices; default ``0..N-1``.
    name : str
        The argument's name in error messages.
    fill_target : bool
        Predict the target when none is given.
    batch_size : int
        Images per forward pass of the prediction.
    also_frozen : sequence of nn.Module
        Further models frozen for the block (autoencoders, decoders, other classifiers).
    channels : int or None
        Expected channels when the model has no convolution to read them from.

    Yields
    ------
    MethodCall
        ``inputs``, ``target`` (on the inputs' device) and ``indices``.

    Raises
    ------
    ValueError
        A 3-D or otherwise mis-shaped tensor, the wrong channel count, non-finite values, a target or
        indices of the wrong length.
    TypeError
        Not a tensor, integer pixels, pixels in another dtype than the model's weights.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(3))
    >>> _ = net(torch.rand(2, 1, 6, 6))  # materialise the lazy layer
    >>> with method_call(net, torch.rand(4, 1, 6, 6)) as call:
    ...     print(call.target.shape, call.indices, net.training)
    torch.Size([4]) [0, 1, 2, 3] False
    >>> net.training
    True
    """
    if isinstance(inputs, Tensor) and inputs.ndim == 3:
        check_images(inputs, name=name, model=model, channels=channels)  # the model-specific message first
        raise ValueError(f"{name} has shape {tuple(inputs.shape)} (3-D) but methods take a batch (N, C, H, W): "
                         f"pass {name}.unsqueeze(0) for one (C, H, W) image, or {name}.unsqueeze(1) for a batch "
                         f"of (H, W) grey images")
    x = check_images(inputs, name=name, model=model, allow_3d=False, channels=channels)
    _materialize_lazy(model, x)
    n = x.shape[0]
    idx = check_indices(indices, n)
    with _frozen_all([model, *also_frozen]):
        t = check_targets(target, n)
        if t is None and fill_target:
            t = _predict(model, x, batch_size)
        if t is not None:
            t = t.to(x.device)
        yield MethodCall(x, t, idx)


def _materialize_lazy(model: Any, x: Tensor) -> None:
    """Give lazy modules (``nn.LazyLinear``, ...) their shapes with one image, in eval mode and without
    gradients (no running statistic moves), so that they can be frozen like any other module."""
    if not isinstance(model, nn.Module) or not any(is_lazy(p) for p in model.parameters()):
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for m, t in modes:
            m.training = t


def freeze(*models: Any) -> contextlib.AbstractContextManager:
    """Freeze every ``nn.Module`` of ``models`` for a ``with`` block (see :func:`infolens._torch.frozen`)."""
    return _frozen_all(models)
