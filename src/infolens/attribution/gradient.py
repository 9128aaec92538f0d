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
    """    Saliency, the absolute input gradient of the target score (Simonyan et al. 2014, Eq. 2):
    ``M(x) = |d y_target / d x|``; as Captum's ``Saliency(abs=True)``.

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    abs : bool
        Take ``|.|`` (default, the paper's map); ``False`` keeps the signed gradient.

    References
    ----------
    .. [1] K. Simonyan, A. Vedaldi, A. Zisserman, "Deep inside convolutional networks: visualising image
       classification models and saliency maps", ICLR workshop 2014, arXiv 1312.6034.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> res = Saliency(net).attribute(x, target=3)
    >>> tuple(res.maps.shape), bool((res.maps >= 0).all())
    ((2, 1, 8, 8), True)
    """

    name = "saliency"

    def __init__(self, model: nn.Module, *, abs: bool = True, **kw: Any) -> None:  # noqa: A002
        super().__init__(model, **kw)
        self.abs = abs

    def _attribute(self, x, t, idx):
        g = _input_grad(self.model, x, t, self.score)
        return g.abs() if self.abs else g


class GradientXInput(Attribution):
    """    Gradient x Input (Shrikumar et al. 2016): ``M(x) = x * d y_target / d x``; as Captum's
    ``InputXGradient``.

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.

    References
    ----------
    .. [1] A. Shrikumar, P. Greenside, A. Shcherbina, A. Kundaje, "Not just a black box: learning important
       features through propagating activation differences", arXiv 1605.01713, 2016.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> x = torch.rand(1, 1, 4, 4)
    >>> res = GradientXInput(net).attribute(x, target=0)
    >>> torch.allclose(res.maps.flatten(), x.flatten() * net[1].weight[0])  # linear: x * w
    True
    """

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
    """    Integrated Gradients (Sundararajan et al. 2017, Eq. 3):
    ``M(x) = (x - b) * sum_k w_k d y_target / d x (b + alpha_k (x - b))``, the path integral of the gradient
    from the baseline ``b`` to ``x`` on quadrature nodes ``alpha_k`` with weights ``w_k``.

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    n_steps : int >= 1
        Quadrature nodes (50, Captum's default).
    method : {"gausslegendre", "riemann_trapezoid", ...}
        The quadrature (Gauss-Legendre by default, as Captum).
    baseline : float
        The baseline image's value (0: black, as Captum).

    References
    ----------
    .. [1] M. Sundararajan, A. Taly, Q. Yan, "Axiomatic attribution for deep networks", ICML 2017,
       arXiv 1703.01365.

    Examples
    --------
    Completeness (the paper's Prop. 1): the map sums to ``y(x) - y(b)`` (exactly, for a smooth network and
    enough nodes).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(144, 10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> res = IntegratedGradients(net, n_steps=64).attribute(x, target=1)
    >>> gap = net(x)[:, 1] - net(torch.zeros_like(x))[:, 1]
    >>> torch.allclose(res.maps.sum((1, 2, 3)), gap, atol=1e-5)
    True
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
    """    SmoothGrad (Smilkov et al. 2017, Eq. 3): ``M(x) = 1/n sum_k d y_target / d x (x + eps_k)``,
    ``eps_k ~ N(0, stdev^2)``; Captum's ``NoiseTunnel(Saliency(abs=False), "smoothgrad")``. Each image's
    noise comes from its own seed (``seed`` and its global index).

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    n_samples : int >= 1
        Noisy copies per image (50, Xplique's, as FORGrad used).
    stdev : float >= 0
        Noise level in input units (0.2 absolute, Xplique's).
    seed : int
        With the images' global indices, seeds the noise.

    References
    ----------
    .. [1] D. Smilkov, N. Thorat, B. Kim, F. Viegas, M. Wattenberg, "SmoothGrad: removing noise by adding
       noise", arXiv 1706.03825, 2017.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> a = SmoothGrad(net, n_samples=4).attribute(x, target=0, indices=[7, 8]).maps
    >>> b = SmoothGrad(net, n_samples=4).attribute(x[1:], target=0, indices=[8]).maps
    >>> torch.allclose(a[1:], b)  # image 8's noise does not depend on its batch
    True
    """

    name = "smoothgrad"

    @staticmethod
    def combine(m1, m2):
        return m1


class SquareGrad(_NoiseTunnel):
    """    SquareGrad (Hooker et al. 2019): ``M(x) = 1/n sum_k (d y_target / d x (x + eps_k))^2``; Captum's
    ``smoothgrad_sq``. Parameters as :class:`SmoothGrad`.

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    n_samples, stdev, seed
        As :class:`SmoothGrad` (50 samples, 0.2).

    References
    ----------
    .. [1] S. Hooker, D. Erhan, P.-J. Kindermans, B. Kim, "A benchmark for interpretability methods in deep
       neural networks", NeurIPS 2019, arXiv 1806.10758.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> bool((SquareGrad(net, n_samples=3).attribute(x, target=2).maps >= 0).all())
    True
    """

    name = "squaregrad"

    @staticmethod
    def combine(m1, m2):
        return m2


class VarGrad(_NoiseTunnel):
    """    VarGrad (Adebayo et al. 2018): ``M(x) = E[g^2] - E[g]^2`` of the noisy gradients
    ``g = d y_target / d x (x + eps)``; Captum's ``vargrad``. Parameters as :class:`SmoothGrad`.

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    n_samples, stdev, seed
        As :class:`SmoothGrad` (50 samples, 0.2).

    References
    ----------
    .. [1] J. Adebayo, J. Gilmer, I. Goodfellow, B. Kim, "Local explanation methods for deep neural networks
       lack sensitivity to parameter values", ICLR workshop 2018, arXiv 1810.03307.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))  # constant gradient
    >>> VarGrad(net, n_samples=3).attribute(torch.rand(1, 1, 4, 4), target=0).maps.abs().max() < 1e-6
    tensor(True)
    """

    name = "vargrad"

    @staticmethod
    def combine(m1, m2):
        return m2 - m1.square()


class GuidedBackprop(Attribution):
    """    Guided Backpropagation (Springenberg et al. 2015, Fig. 1): the input gradient with negative gradients
    zeroed at every ReLU on the way back.

    As Captum: a full backward hook on each ``nn.ReLU`` (and ``nn.ReLU6``, gated the same way) replaces its
    input gradient by ``relu(grad)``. In-place ReLUs are switched to out-of-place for the pass. Functional
    ReLUs (``F.relu`` in ``forward``) cannot be hooked and are passed through unchanged.

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.

    References
    ----------
    .. [1] J. T. Springenberg, A. Dosovitskiy, T. Brox, M. Riedmiller, "Striving for simplicity: the all
       convolutional net", ICLR workshop 2015, arXiv 1412.6806.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> tuple(GuidedBackprop(net).attribute(x, target=5).maps.shape)
    (2, 1, 8, 8)
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
