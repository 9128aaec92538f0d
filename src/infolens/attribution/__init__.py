"""Attribution maps (:mod:`.methods`: one class per method, Captum's calling convention) and FORGrad
(:mod:`.forgrad`: the low-pass filter of arXiv 2307.09591, spectra of maps, the cut-off search).

Public extension point: subclass :class:`Attribution`.
"""

from __future__ import annotations

from .forgrad import (CutoffSelection, FORGrad, attribution_spectrum, default_cutoffs, forgrad,
                      max_cutoff, select_cutoff)
from .methods import (METHODS, RISE, Attribution, GradCAM, GradientXInput, GuidedBackprop, IntegratedGradients,
                      Occlusion, Saliency, SmoothGrad, SquareGrad, VarGrad, attribute_many, make_method, method_kind,
                      model_scores, to_map)

__all__ = [
    "Attribution",
    "Saliency",
    "GradientXInput",
    "IntegratedGradients",
    "SmoothGrad",
    "SquareGrad",
    "VarGrad",
    "GuidedBackprop",
    "GradCAM",
    "Occlusion",
    "RISE",
    "FORGrad",
    "METHODS",
    "method_kind",
    "make_method",
    "attribute_many",
    "model_scores",
    "forgrad",
    "to_map",
    "attribution_spectrum",
    "default_cutoffs",
    "max_cutoff",
    "CutoffSelection",
    "select_cutoff",
]
