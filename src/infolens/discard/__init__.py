"""Method 2: layer-wise and pixel-wise information discarding (Ma et al., arXiv 1906.04109, ICML 2022),
read against the official release (haotianSustc/deepinfo; ``docs/methods.md`` section 2).

* :class:`InformationDiscarding` (``measure``): per image and layer, the noise the layer tolerates at
  feature error 1.5 x that of uniform 0.01 noise; ``solver="release"`` (the release's procedure,
  :mod:`.release`) or ``"constrained"`` (the exact optimum, :mod:`.constrained`).
* :class:`ReconstructionUncertainty` (``measure``) with :class:`FeatureDecoder` / :func:`train_decoder`:
  the release's reconstruction uncertainty (:mod:`.reconstruction`).
* :mod:`._core`: entropies, the noise grid and space, the batched noisy forward pass.
"""

from ._core import HALF_LOG_2PI_E, gaussian_entropy
from .method import CONSTRAINED_OPTIONS, RELEASE_OPTIONS, DiscardResult, InformationDiscarding
from .reconstruction import (FeatureDecoder, ReconstructionResult, ReconstructionUncertainty,
                             reconstruction_uncertainty, train_decoder)

__all__ = [
    "HALF_LOG_2PI_E",
    "gaussian_entropy",
    "InformationDiscarding",
    "DiscardResult",
    "RELEASE_OPTIONS",
    "CONSTRAINED_OPTIONS",
    "FeatureDecoder",
    "train_decoder",
    "ReconstructionUncertainty",
    "reconstruction_uncertainty",
    "ReconstructionResult",
]
