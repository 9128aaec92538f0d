"""Method 1: layer-wise spectral roll-off points (SROP) of feature maps (arXiv 2102.00369).

For every selected layer ``l`` and image ``x`` we take the set ``{SROP(A_{l,c}(x)) : channels c}`` of
rotation-invariant 2-D roll-off points (:func:`infolens.spectral.srop_2d`, fractions of the layer's
Nyquist frequency) and summarise its distribution: mean, median, quantiles, spread, histogram, per
image and aggregated over images (``docs/methods.md``, section 1, "Layer statistic").

The method: :class:`SpectralRolloff` (``SpectralRolloff(model, at=...).measure(images)``), with
:func:`layer_srops` as its functional form. ``at`` is the measurement point: ``"activation"`` (default:
after each convolution's non-linearity), ``"conv"`` or ``"block"`` (:mod:`infolens.srop.points` says
how each is found and what the default rests on).

Readings (the paper's text beyond its abstract could not be read; ``docs/methods.md``): the
spectrum is the power (q = 2) with DC kept and kappa = 0.85 (librosa's default); the layer statistic is
the distribution of the channel SROPs of one image, averaged over images. The paper measures radii on
each layer's own frequency axis; because downsampling lowers a layer's Nyquist frequency, we also offer
the radius in cycles per *input* pixel: ``srop / stride`` with ``stride = input H / layer H``.

Sub-modules: ``points`` (where to measure), ``measure`` (the method), ``statistics`` (distributions,
tables, correlation), ``checks`` (the sanity checks' inputs and models), ``distance`` (Wasserstein-1
between SROP distributions, for the claims).
"""

from __future__ import annotations

from .checks import INPUT_VARIANTS, cascading_randomization, input_variant, random_init
from .distance import W1_BINS, resample_counts, resample_histograms, srop_histograms, wasserstein1
from .measure import LayerSROPs, SpectralRolloff, layer_srops
from .points import ACTIVATION_TYPES, DEFAULT_AT, MEASUREMENT_POINTS, plan_points
from .statistics import (DEFAULT_QUANTILES, SROP_MAX, SROPStatistics, correlation, quantile_name, srop_statistics,
                         summarize_image_rows)

__all__ = [
    "DEFAULT_QUANTILES",
    "SROP_MAX",
    "INPUT_VARIANTS",
    "MEASUREMENT_POINTS",
    "DEFAULT_AT",
    "ACTIVATION_TYPES",
    "W1_BINS",
    "LayerSROPs",
    "SROPStatistics",
    "SpectralRolloff",
    "layer_srops",
    "plan_points",
    "srop_statistics",
    "quantile_name",
    "input_variant",
    "cascading_randomization",
    "random_init",
    "summarize_image_rows",
    "correlation",
    "srop_histograms",
    "wasserstein1",
    "resample_counts",
    "resample_histograms",
]
