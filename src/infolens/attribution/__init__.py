"""Attribution maps (one class per method, Captum's calling convention: :mod:`.gradient`, :mod:`.cam`,
:mod:`.perturbation`; :mod:`.metrics`: Deletion, Insertion, MuFidelity; :mod:`.registry`:
names, families, shared passes; :mod:`.references`: the sanity references) and FORGrad (:mod:`.forgrad`:
the low-pass filter of arXiv 2307.09591, spectra of maps, the cut-off search).

Public extension point: subclass :class:`Attribution`.
"""

from __future__ import annotations

from .forgrad import (CutoffSelection, FORGrad, attribution_spectrum, default_cutoffs, forgrad,
                      high_frequency_share, max_cutoff, select_cutoff)
from ._base import Attribution, model_scores, to_map
from .cam import GradCAM, GradCAMPlusPlus
from .gradient import (GradientXInput, GuidedBackprop, IntegratedGradients, Saliency, SmoothGrad, SquareGrad,
                       VarGrad)
from .metrics import Deletion, FaithfulnessResult, Insertion, Metric, MuFidelity, make_metric
from .perturbation import HSIC, RISE, Occlusion, Sobol
from .registry import METHODS, attribute_many, make_method, method_kind
from .references import REFERENCES, CentredBlob, InputMagnitude, UniformNoise, make_reference

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
    "GradCAMPlusPlus",
    "Occlusion",
    "RISE",
    "Sobol",
    "HSIC",
    "FORGrad",
    "CentredBlob",
    "InputMagnitude",
    "UniformNoise",
    "REFERENCES",
    "make_reference",
    "high_frequency_share",
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
    "Deletion",
    "Insertion",
    "MuFidelity",
    "Metric",
    "FaithfulnessResult",
    "make_metric",
]
