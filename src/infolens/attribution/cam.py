"""Gray-box attribution methods: Grad-CAM and Grad-CAM++ at a convolutional layer, upsampled to the input.
FORGrad (arXiv 2307.09591) reports them but never filters them."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..probe import capture_hooks, resolve_layers
from ._base import model_scores, Attribution


def default_cam_layer(model: nn.Module) -> str:
    """The last ``nn.Conv2d`` in module order (Grad-CAM's usual choice: the last convolutional layer)."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no nn.Conv2d layer for Grad-CAM; pass layer= explicitly")
    return convs[-1]


class GradCAM(Attribution):
    """Grad-CAM (Selvaraju et al. 2017, Eqs. 1-2): ``relu(sum_c mean_hw(dy/dA_c) A_c)`` at ``layer``,
    upsampled bilinearly to the input size. Same numbers as Captum's ``LayerGradCam(relu_attributions=True)``
    followed by ``LayerAttribution.interpolate(..., 'bilinear')``.

    ``layer`` : a dotted name or module (see :func:`infolens.probe.resolve_layers`); default the last Conv2d.

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    layer : str, nn.Module or None
        The layer whose maps ``A_c`` are weighted (a dotted name or module); default the last Conv2d.
    relu : bool
        Apply the ReLU of Eq. 2 (default).
    upsample : str
        ``F.interpolate`` mode to the input size ("bilinear").

    References
    ----------
    .. [1] R. R. Selvaraju, M. Cogswell, A. Das, R. Vedantam, D. Parikh, D. Batra, "Grad-CAM: visual
       explanations from deep networks via gradient-based localization", ICCV 2017, arXiv 1610.02391.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> res = GradCAM(net, layer="0").attribute(x, target=4)
    >>> tuple(res.maps.shape), bool((res.maps >= 0).all())
    ((2, 1, 8, 8), True)
    """

    kind = "gray"
    name = "gradcam"

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None, *, relu: bool = True,
                 upsample: str = "bilinear", **kw: Any) -> None:
        super().__init__(model, **kw)
        names = resolve_layers(model, layer) if layer is not None else [default_cam_layer(model)]
        if len(names) != 1:
            raise ValueError(f"layer must select exactly one layer for Grad-CAM, got {names}")
        self.layer = names[0]
        self.relu = relu
        self.upsample = upsample

    def _attribute(self, x, t, idx):
        with torch.enable_grad(), capture_hooks(self.model, [self.layer], detach=False) as cap:
            xg = x.detach().requires_grad_(True)
            s = model_scores(self.model(xg), t, self.score)
            a = cap.outputs[self.layer]
            (g,) = torch.autograd.grad(s.sum(), a)
        if a.ndim != 4:
            raise ValueError(f"Grad-CAM layer {self.layer!r} gives shape {tuple(a.shape)}; choose a layer with "
                             f"(N, C, H, W) output")
        cam = (self.channel_weights(g, a.detach()) * a.detach()).sum(1, keepdim=True)
        if self.relu:
            cam = F.relu(cam)
        return F.interpolate(cam, size=x.shape[-2:], mode=self.upsample,
                             **({} if self.upsample == "nearest" else {"align_corners": False}))


    @staticmethod
    def channel_weights(grads: Tensor, acts: Tensor) -> Tensor:
        """Grad-CAM's channel weights ``mean_hw(dy/dA_c)`` (Eq. 1), shape (N, C, 1, 1)."""
        return grads.mean((2, 3), keepdim=True)


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018, Eqs. 19-20), as Xplique's ``GradCAMPP``: channel weights
    ``mean_hw(alpha * relu(g))`` with ``alpha = g^2 / (2 g^2 + g^3 mean_hw(A))`` (0/0 taken as 0).
    Xplique averages over the map where the paper sums; the sum only rescales the map.

    Parameters
    ----------
    model, layer, relu, upsample, **kw
        As :class:`GradCAM`.

    References
    ----------
    .. [1] A. Chattopadhay, A. Sarkar, P. Howlader, V. N. Balasubramanian, "Grad-CAM++: generalized
       gradient-based visual explanations for deep convolutional networks", WACV 2018, arXiv 1710.11063.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> tuple(GradCAMPlusPlus(net).attribute(x, target=4).maps.shape)
    (2, 1, 8, 8)
    """

    name = "gradcam_pp"

    @staticmethod
    def channel_weights(grads: Tensor, acts: Tensor) -> Tensor:
        g2 = grads.square()
        den = 2 * g2 + g2 * grads * acts.mean((2, 3), keepdim=True)
        alpha = g2 / torch.where(den == 0, torch.ones_like(den), den)
        return (alpha * F.relu(grads)).mean((2, 3), keepdim=True)
