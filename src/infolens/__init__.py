"""infolens: what information a vision network uses, keeps and throws away.

The public API, re-exported. Importing infolens needs only torch and numpy; torchvision, timm,
matplotlib and the CLI extras are imported lazily where they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import spectral  # noqa: E402
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
]
