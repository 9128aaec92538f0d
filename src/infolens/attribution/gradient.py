"""Gradient-based (white-box) attribution methods: Saliency, Gradient x Input, Integrated Gradients, the
noise tunnel (SmoothGrad, SquareGrad, VarGrad) and Guided Backprop. In FORGrad (arXiv 2307.09591) these
are the methods that get low-pass filtered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._torch import per_image_randn
from ._base import Score, _check_positive_int, _groups, _input_grad, Attribution


class Saliency(Attribution):
    """``|d y_target / d x|`` (Simonyan et al. 2014), as Captum's ``Saliency(abs=True)``."""

    name = "saliency"

    def __init__(self, model: nn.Module, *, abs: bool = True, **kw: Any) -> None:  # noqa: A002
        super().__init__(model, **kw)
        self.abs = abs

    def _attribute(self, x, t, idx):
        g = _input_grad(self.model, x, t, self.score)
        return g.abs() if self.abs else g


class GradientXInput(Attribution):
    """``x * d y_target / d x`` (Shrikumar et al. 2016), as Captum's ``InputXGradient``."""

    name = "gradient_x_input"

    def _attribute(self, x, t, idx):
        return x * _input_grad(self.model, x, t, self.score)


def _ig_nodes(n_steps: int, method: str) -> tuple[Tensor, Tensor]:
    """Path positions ``alpha_k`` and weights ``w_k`` (sum 1), with Captum's positions. The trapezoid
    weights are the exact rule ``1/(n-1)`` (Captum uses ``1/n``, so its trapezoid IG is ours times
    ``(n-1)/n``); Gauss-Legendre and the left/middle/right rules equal Captum's."""
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n_steps)
        return torch.as_tensor(0.5 * (x + 1), dtype=torch.float64), torch.as_tensor(0.5 * w, dtype=torch.float64)
    k = torch.arange(n_steps, dtype=torch.float64)
    if method == "riemann_trapezoid":
        a = torch.linspace(0, 1, n_steps, dtype=torch.float64)
        w = torch.full((n_steps,), 1.0 / (n_steps - 1), dtype=torch.float64)
        w[0] = w[-1] = 0.5 / (n_steps - 1)
        return a, w
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    if method not in offsets:
        raise ValueError(f"method must be gausslegendre, riemann_trapezoid, riemann_left, riemann_right or "
                         f"riemann_middle, got {method!r}")
    return (k + offsets[method]) / n_steps, torch.full((n_steps,), 1.0 / n_steps, dtype=torch.float64)


class IntegratedGradients(Attribution):
    """``(x - b) * sum_k w_k d y / d x (b + alpha_k (x - b))`` (Sundararajan et al. 2017, Eq. 3).

    Defaults as Captum: 50 Gauss-Legendre nodes, baseline 0 (black image).
    """

    name = "integrated_gradients"

    def __init__(self, model: nn.Module, *, n_steps: int = 50, method: str = "gausslegendre",
                 baseline: float = 0.0, **kw: Any) -> None:
        super().__init__(model, **kw)
        self.n_steps = _check_positive_int(n_steps, "n_steps")
        if method == "riemann_trapezoid" and self.n_steps < 2:
            raise ValueError("n_steps must be >= 2 for riemann_trapezoid")
        self.alphas, self.weights = _ig_nodes(self.n_steps, method)
        self.baseline = float(baseline)

    def _attribute(self, x, t, idx):
        b = torch.full_like(x, self.baseline)
        total = torch.zeros_like(x)
        for grp in _groups(self.n_steps, x.shape[0], self.internal_batch_size):
            a = self.alphas[list(grp)].to(x.dtype).to(x.device)
            w = self.weights[list(grp)].to(x.dtype).to(x.device)
            pts = (b[:, None] + a[None, :, None, None, None] * (x - b)[:, None]).flatten(0, 1)
            g = _input_grad(self.model, pts, t.repeat_interleave(len(grp)), self.score)
            total += (g.view(x.shape[0], len(grp), *x.shape[1:]) * w[None, :, None, None, None]).sum(1)
        return (x - b) * total


NOISE_SALT = "noise_tunnel"
"""Salt of the per-image seeds of SmoothGrad's noise: copy ``k`` of image ``i`` uses
``per_image_randn(..., seed, [i], salt=f"noise_tunnel:{k}")``."""


def noise_tunnel_moments(model: nn.Module, x: Tensor, t: Tensor, idx: Sequence[int], *, n_samples: int,
                         stdev: float, seed: int, score: Score = "logit",
                         internal_batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """First and second moments ``(E[g], E[g^2])`` of the input gradient under Gaussian input noise
    ``N(0, stdev^2)`` (SmoothGrad, Smilkov et al. 2017), each image's noise from its own seed."""
    m1 = torch.zeros_like(x)
    m2 = torch.zeros_like(x)
    for grp in _groups(n_samples, x.shape[0], internal_batch_size):
        noise = torch.stack([per_image_randn(x.shape[1:], seed, idx, salt=f"{NOISE_SALT}:{k}",
                                             device=x.device, dtype=x.dtype) for k in grp], 1)
        pts = (x[:, None] + stdev * noise).flatten(0, 1)
        g = _input_grad(model, pts, t.repeat_interleave(len(grp)), score).view(x.shape[0], len(grp), *x.shape[1:])
        m1 += g.sum(1)
        m2 += g.square().sum(1)
    return m1 / n_samples, m2 / n_samples


class _NoiseTunnel(Attribution):
    """Shared settings of SmoothGrad / SquareGrad / VarGrad.

    Defaults are Xplique's (``SmoothGrad``, ``SquareGrad``, ``VarGrad``: ``nb_samples=50``, ``noise=0.2``), the
    ones FORGrad (arXiv 2307.09591) used: 50 samples, ``stdev`` 0.2 absolute, in the model's input units
    (here [0, 1] pixels; Xplique adds its noise to whatever the model takes).
    """

    def __init__(self, model: nn.Module, *, n_samples: int = 50, stdev: float = 0.2, seed: int = 0,
                 **kw: Any) -> None:
        super().__init__(model, **kw)
        self.n_samples = _check_positive_int(n_samples, "n_samples")
        if not stdev >= 0:
            raise ValueError(f"stdev must be >= 0, got {stdev}")
        self.stdev = float(stdev)
        self.seed = int(seed)

    def moments(self, x: Tensor, t: Tensor, idx: Sequence[int]) -> tuple[Tensor, Tensor]:
        return noise_tunnel_moments(self.model, x, t, idx, n_samples=self.n_samples, stdev=self.stdev,
                                    seed=self.seed, score=self.score, internal_batch_size=self.internal_batch_size)

    @staticmethod
    def combine(m1: Tensor, m2: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def _attribute(self, x, t, idx):
        return self.combine(*self.moments(x, t, idx))


class SmoothGrad(_NoiseTunnel):
    """``E[grad(x + eps)]`` (Smilkov et al. 2017); Captum ``NoiseTunnel(Saliency(abs=False), 'smoothgrad')``."""

    name = "smoothgrad"

    @staticmethod
    def combine(m1, m2):
        return m1


class SquareGrad(_NoiseTunnel):
    """``E[grad(x + eps)^2]`` (Hooker et al. 2019); Captum's ``smoothgrad_sq``."""

    name = "squaregrad"

    @staticmethod
    def combine(m1, m2):
        return m2


class VarGrad(_NoiseTunnel):
    """``Var[grad(x + eps)] = E[g^2] - E[g]^2`` (Adebayo et al. 2018); Captum's ``vargrad``."""

    name = "vargrad"

    @staticmethod
    def combine(m1, m2):
        return m2 - m1.square()


class GuidedBackprop(Attribution):
    """Gradient with negative gradients zeroed at every ReLU on the way back (Springenberg et al. 2015).

    As Captum: a full backward hook on each ``nn.ReLU`` (and ``nn.ReLU6``, gated the same way) replaces
    its input gradient by ``relu(grad)``. In-place ReLUs are switched to out-of-place for the pass.
    Functional ReLUs (``F.relu`` in ``forward``) cannot be hooked and are passed through unchanged.
    """

    name = "guided_backprop"

    def _attribute(self, x, t, idx):
        relus = [m for m in self.model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
        handles, inplace = [], [getattr(m, "inplace", False) for m in relus]

        def hook(module, grad_input, grad_output):
            return tuple(F.relu(g) if g is not None else None for g in grad_input)

        try:
            for m in relus:
                m.inplace = False
                handles.append(m.register_full_backward_hook(hook))
            return _input_grad(self.model, x, t, self.score)
        finally:
            for h in handles:
                h.remove()
            for m, ip in zip(relus, inplace):
                m.inplace = ip
