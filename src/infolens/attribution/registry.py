"""The registry of attribution methods (name -> class, FORGrad's three families) and
:func:`attribute_many`, which shares gradient passes between methods of one batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._method import method_call
from ._base import Attribution, _input_grad
from .cam import GradCAM, GradCAMPlusPlus
from .gradient import (GradientXInput, GuidedBackprop, IntegratedGradients, Saliency, SmoothGrad, SquareGrad, VarGrad,
                       _NoiseTunnel)
from .perturbation import HSIC, RISE, Occlusion, Sobol

__all__ = ["METHODS", "CAPTUM_ALIASES", "XPLIQUE_ALIASES", "method_kind", "make_method", "attribute_many"]


METHODS: dict[str, type[Attribution]] = {
    "saliency": Saliency,
    "gradient_x_input": GradientXInput,
    "integrated_gradients": IntegratedGradients,
    "smoothgrad": SmoothGrad,
    "squaregrad": SquareGrad,
    "vargrad": VarGrad,
    "guided_backprop": GuidedBackprop,
    "gradcam": GradCAM,
    "gradcam_pp": GradCAMPlusPlus,
    "occlusion": Occlusion,
    "rise": RISE,
    "sobol": Sobol,
    "hsic": HSIC,
}
"""Method name -> class. ``kind`` is ``"gradient"`` (white box: filtered by FORGrad), ``"gray"`` (Grad-CAM,
Grad-CAM++: reported, never filtered) or ``"prediction"`` (black box: never filtered), the paper's three
families (arXiv 2307.09591, Sec. 4). The black-box family is the paper's: Occlusion, RISE, Sobol, HSIC."""

_ALIASES = {"gxi": "gradient_x_input", "inputxgradient": "gradient_x_input", "ig": "integrated_gradients",
            "grad_cam": "gradcam", "gradcampp": "gradcam_pp", "gradcam++": "gradcam_pp", "grad_cam_pp": "gradcam_pp", "guidedbackprop": "guided_backprop", "gbp": "guided_backprop",
            "sobol_attribution": "sobol", "hsic_attribution": "hsic"}

CAPTUM_ALIASES: dict[str, str] = {
    "Saliency": "saliency", "InputXGradient": "gradient_x_input", "IntegratedGradients": "integrated_gradients",
    "NoiseTunnel": "smoothgrad", "GuidedBackprop": "guided_backprop", "LayerGradCam": "gradcam",
    "Occlusion": "occlusion",
}
"""Captum's class names accepted as method names (case and ``_``/``-`` ignored). ``NoiseTunnel`` is
Captum's wrapper for SmoothGrad, SquareGrad (``smoothgrad_sq``) and VarGrad; by itself it means its default,
``nt_type="smoothgrad"``: ``smoothgrad``. Captum has no Grad-CAM++, RISE, Sobol or HSIC."""

XPLIQUE_ALIASES: dict[str, str] = {
    "GradientInput": "gradient_x_input", "GradCAMPP": "gradcam_pp", "Rise": "rise",
    "SobolAttributionMethod": "sobol", "HsicAttributionMethod": "hsic", "SmoothGrad": "smoothgrad",
    "SquareGrad": "squaregrad", "VarGrad": "vargrad", "GradCAM": "gradcam",
}
"""Xplique's class names (the library FORGrad's paper used), accepted likewise."""


def _compact(name: str) -> str:
    return "".join(ch for ch in str(name).strip().lower() if ch not in "_- ")


_LOOKUP: dict[str, str] = {
    **{_compact(k): k for k in METHODS},
    **{_compact(cls.__name__): k for k, cls in METHODS.items()},  # our own class names: GradientXInput, ...
    **{_compact(a): k for a, k in _ALIASES.items()},
    **{_compact(a): k for a, k in XPLIQUE_ALIASES.items()},
    **{_compact(a): k for a, k in CAPTUM_ALIASES.items()},
}


def _canonical(name: str) -> str:
    """The registry's name for a method name, an alias, or a Captum/Xplique class name (case, ``_``, ``-``
    and spaces ignored): ``IntegratedGradients`` -> ``integrated_gradients``."""
    key = _LOOKUP.get(_compact(name))
    if key is None:
        import difflib

        close = difflib.get_close_matches(str(name).strip().lower().replace("-", "_"), list(METHODS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown attribution method {name!r}{hint} (known: {', '.join(METHODS)}, or Captum's "
                         f"class names such as IntegratedGradients, NoiseTunnel, LayerGradCam)")
    return key


def method_kind(name: str) -> str:
    """``"gradient"``, ``"gray"`` or ``"prediction"`` for a method name (FORGrad's three families)."""
    return METHODS[_canonical(name)].kind


def make_method(name: str, model: nn.Module, **kwargs: Any) -> Attribution:
    """Build a method by name; keyword arguments the class does not take are refused with a clear error."""
    import inspect

    cls = METHODS[_canonical(name)]
    allowed = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        allowed |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "model", "kw")}
    bad = sorted(set(kwargs) - allowed)
    if bad:
        raise TypeError(f"{cls.__name__} takes no argument(s) {', '.join(bad)}; it takes {', '.join(sorted(allowed))}")
    return cls(model, **kwargs)


def attribute_many(model: nn.Module, methods: Mapping[str, Attribution] | Sequence[str], inputs: Tensor,
                   target: Tensor | int | Sequence[int] | None = None, *, indices: Sequence[int] | None = None,
                   **kwargs: Any) -> dict[str, Tensor]:
    """Maps of several methods for the same batch, sharing passes where the methods allow.

    Saliency and Gradient x Input share one gradient; SmoothGrad, SquareGrad and VarGrad share their
    noisy gradients (when built with the same settings). Each map equals ``method.attribute(...).maps``:
    the call goes through the same entry (:func:`infolens._method.method_call`): checked inputs, the
    target filled with the prediction, every model frozen in eval mode and restored exactly afterwards.

    Parameters
    ----------
    model : nn.Module
        The model (also the one the named methods are built with).
    methods : sequence of str or mapping label -> Attribution
        Names (built with ``kwargs`` by :func:`make_method`) or built methods.
    inputs : torch.Tensor, shape (N, C, H, W)
        Floating images in the model's dtype.
    target : int, sequence of N ints, LongTensor (N,) or None
        The class explained per image; default the predicted class.
    indices : sequence of N ints or None
        The images' global indices (seeds of per-image randomness), default ``0..N-1``.
    **kwargs
        Settings for the methods built by name.

    Returns
    -------
    dict of str to torch.Tensor
        Label -> maps, as :attr:`AttributionResult.maps`.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(3, 1, 8, 8)
    >>> maps = attribute_many(net, ["saliency", "gradient_x_input"], x, target=2)
    >>> torch.equal(maps["saliency"], Saliency(net).attribute(x, target=2).maps)
    True
    """
    built = {m: make_method(m, model, **kwargs) for m in methods} if not isinstance(methods, Mapping) \
        else dict(methods)
    if not built:
        raise ValueError("methods is empty; name at least one attribution method")
    bs = min(m.batch_size for m in built.values())
    out: dict[str, list[Tensor]] = {k: [] for k in built}
    with method_call(model, inputs, target, indices, batch_size=bs,
                     also_frozen=[m.model for m in built.values()]) as c:
        for s in range(0, c.inputs.shape[0], bs):
            x, tt, ii = c.inputs[s:s + bs], c.target[s:s + bs], c.indices[s:s + bs]
            shared: dict[tuple, Any] = {}
            for label, m in built.items():
                if type(m) in (Saliency, GradientXInput):
                    key = ("grad", id(m.model), m.score)
                    if key not in shared:
                        shared[key] = _input_grad(m.model, x, tt, m.score)
                    g = shared[key]
                    r = (g.abs() if m.abs else g) if isinstance(m, Saliency) else x * g
                elif isinstance(m, _NoiseTunnel):
                    key = ("noise", id(m.model), m.score, m.n_samples, m.stdev, m.seed)
                    if key not in shared:
                        shared[key] = m.moments(x, tt, ii)
                    r = m.combine(*shared[key])
                else:
                    r = m._attribute(x, tt, ii)
                out[label].append(r.detach())
    return {k: torch.cat(v) for k, v in out.items()}
