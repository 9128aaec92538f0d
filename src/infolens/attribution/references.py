"""Sanity references for every ranking of attribution methods (``docs/claims.md``): maps that know
nothing of the model, so a faithfulness metric that scores them as well as a method is not measuring the
method. They are shown beside the methods and never counted as methods.

* :class:`CentredBlob`: a centred Gaussian blob, blind to the input (objects sit near the centre of most
  photographs, and of every MNIST digit).
* :class:`InputMagnitude`: the input's own magnitude ``mean_c |x - baseline|`` (on MNIST with baseline 0
  this is the digit itself).
* :class:`UniformNoise`: uniform noise in [0, 1), seeded per image.

They take the :class:`~infolens.attribution.Attribution` shape (model, one ``attribute`` verb), so they
go through the same scoring code as the methods; ``kind`` is ``"reference"``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._torch import image_generators
from ._base import Attribution

__all__ = ["CentredBlob", "InputMagnitude", "UniformNoise", "REFERENCES", "make_reference"]


class CentredBlob(Attribution):
    """``exp(-r^2 / (2 (width * min(H, W))^2))``, ``r`` the distance to the image centre; ``width`` 0.25 by
    default (our choice: the blob covers about the central half of the image).

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    width : float > 0
        The Gaussian's standard deviation as a fraction of the shorter side (0.25).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> m = CentredBlob(net).attribute(x).maps
    >>> float(m[0, 0, 3:5, 3:5].min()) > float(m[0, 0, 0, 0])  # highest in the centre
    True
    """

    kind, name = "reference", "blob"

    def __init__(self, model: nn.Module, *, width: float = 0.25, **kw: Any) -> None:
        super().__init__(model, **kw)
        if not width > 0:
            raise ValueError(f"width must be positive (a fraction of the image side), got {width}")
        self.width = float(width)

    def _attribute(self, x, t, idx):
        n, _, h, w = x.shape
        yy = torch.arange(h, device=x.device, dtype=x.dtype) - (h - 1) / 2
        xx = torch.arange(w, device=x.device, dtype=x.dtype) - (w - 1) / 2
        s = self.width * min(h, w)
        blob = torch.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / (2 * s * s))
        return blob.expand(n, 1, h, w).clone()


class InputMagnitude(Attribution):
    """``mean_c |x - baseline|``: the input's own magnitude against the metrics' baseline (default 0).

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    baseline : float
        Subtracted before ``|.|`` (0, the metrics' baseline).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> torch.equal(InputMagnitude(net).attribute(x).maps, x.abs())
    True
    """

    kind, name = "reference", "magnitude"

    def __init__(self, model: nn.Module, *, baseline: float = 0.0, **kw: Any) -> None:
        super().__init__(model, **kw)
        self.baseline = float(baseline)

    def _attribute(self, x, t, idx):
        return (x - self.baseline).abs().mean(1, keepdim=True)


class UniformNoise(Attribution):
    """Uniform noise in [0, 1), one map per image from its own seed (``seed`` and the global index).

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    seed : int
        With the images' global indices, seeds each map.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> a = UniformNoise(net).attribute(x, indices=[3, 4]).maps
    >>> torch.equal(a[1:], UniformNoise(net).attribute(x[1:], indices=[4]).maps)
    True
    """

    kind, name = "reference", "noise"

    def __init__(self, model: nn.Module, *, seed: int = 0, **kw: Any) -> None:
        super().__init__(model, **kw)
        self.seed = int(seed)

    def _attribute(self, x, t, idx):
        n, _, h, w = x.shape
        gens = image_generators(self.seed, idx, salt="uniform_reference")
        return torch.stack([torch.rand(1, h, w, generator=g) for g in gens]).to(x.device, x.dtype)


REFERENCES: dict[str, type[Attribution]] = {"blob": CentredBlob, "magnitude": InputMagnitude,
                                            "noise": UniformNoise}
"""Reference name -> class (the order in which the report shows them)."""


def make_reference(name: str, model: nn.Module, **kwargs: Any) -> Attribution:
    """Build a sanity reference by name (``blob``, ``magnitude``, ``noise``)."""
    if name not in REFERENCES:
        raise ValueError(f"unknown sanity reference {name!r} (known: {', '.join(REFERENCES)})")
    return REFERENCES[name](model, **kwargs)

