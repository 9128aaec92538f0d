"""infolens: what information a vision network uses, keeps and throws away.

The public API, re-exported. Importing infolens needs only torch and numpy; torchvision, timm,
matplotlib and the CLI extras are imported lazily where they are used.
"""

from __future__ import annotations

from ._version import __version__  # noqa: E402

from . import spectral  # noqa: E402
from . import claims  # noqa: E402
from .attribution import (  # noqa: E402
    Attribution,
    CentredBlob,
    FORGrad,
    GradCAM,
    GradCAMPlusPlus,
    GradientXInput,
    GuidedBackprop,
    HSIC,
    InputMagnitude,
    IntegratedGradients,
    Occlusion,
    RISE,
    Saliency,
    SmoothGrad,
    Sobol,
    SquareGrad,
    UniformNoise,
    VarGrad,
    attribution_spectrum,
    forgrad,
    high_frequency_share,
    select_cutoff,
)
from .discard import (InformationDiscarding, ReconstructionUncertainty, gaussian_entropy,  # noqa: E402
                      reconstruction_uncertainty)
from .attribution.metrics import Deletion, FaithfulnessResult, Insertion, Metric, MuFidelity  # noqa: E402
from .signal import (InputSignal, finetune_through_classifier, mutual_information, nmi,  # noqa: E402
                     pretrain_autoencoder)
from .srop import SpectralRolloff, layer_srops, srop_statistics  # noqa: E402
from .probe import Capture, LayerInfo, capture, list_layers, resolve_layers  # noqa: E402
from .results import RunDir, read_csv, write_csv  # noqa: E402
from .spectral import (  # noqa: E402
    frequency_radius,
    lowpass_filter,
    lowpass_mask,
    power_spectrum,
    radial_profile,
    rolloff_1d,
    srop_2d,
)

__all__ = [
    "__version__",
    "spectral",
    "Capture",
    "LayerInfo",
    "capture",
    "list_layers",
    "resolve_layers",
    "RunDir",
    "read_csv",
    "write_csv",
    "frequency_radius",
    "lowpass_filter",
    "lowpass_mask",
    "power_spectrum",
    "radial_profile",
    "rolloff_1d",
    "srop_2d",
    "claims",
    # method 1: SROP
    "SpectralRolloff",
    "layer_srops",
    "srop_statistics",
    # method 2: information discarding
    "InformationDiscarding",
    "ReconstructionUncertainty",
    "gaussian_entropy",
    "reconstruction_uncertainty",
    # method 3: input signal
    "InputSignal",
    "pretrain_autoencoder",
    "finetune_through_classifier",
    "mutual_information",
    "nmi",
    # method 4: attributions, FORGrad, faithfulness
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
    "high_frequency_share",
    "forgrad",
    "attribution_spectrum",
    "select_cutoff",
    "Metric",
    "Deletion",
    "Insertion",
    "MuFidelity",
    "FaithfulnessResult",
]
