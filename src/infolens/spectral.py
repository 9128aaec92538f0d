"""Spectral math on batches of 2-D maps: power spectra, radial profiles, roll-off points, low-pass filters.

Pure tensor functions, librosa-style: keyword-only parameters with units, no knowledge of models.
Every function works on tensors of shape ``(..., H, W)`` (any leading batch dimensions: images,
channels, layers), any ``H x W`` (odd and non-square included), float32 or float64, on the caller's
device, with no Python loop over maps, channels or frequency bins.

Frequencies are expressed as a fraction of the Nyquist frequency (0.5 cycles per sample), so a value
of 1 is the Nyquist frequency along one axis and the corners of the 2-D spectrum reach ``sqrt(2)``.
Values therefore compare across layers of different sizes (``docs/design.md``).

References
----------
* Spectral roll-off, 1-D: librosa ``feature.spectral_rolloff`` (the smallest frequency whose
  cumulative spectrum reaches ``kappa`` of the total); used by SROP, arXiv 2102.00369, Sec. 3.
* Rotation-invariant 2-D roll-off (SROP): arXiv 2102.00369 extends the 1-D roll-off to feature maps
  by requiring rotation invariance; we accumulate the spectrum over discs of growing radius
  ``rho = sqrt(u^2 + v^2)`` (``docs/methods.md``, section 1).
* Ideal circular low-pass filter (FORGrad, arXiv 2307.09591, Eq. 2), as in Xplique's
  ``commons.forgrad`` (a disc of radius ``sigma`` frequency steps around DC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "NYQUIST",
    "RadialProfile",
    "frequency_radius",
    "power_spectrum",
    "radial_profile",
    "rolloff_1d",
    "srop_2d",
    "lowpass_mask",
    "lowpass_filter",
]

NYQUIST = 0.5
"""The Nyquist frequency in cycles per sample; radii are divided by it."""


def _check_maps(maps: Tensor, name: str = "maps") -> None:
    if not isinstance(maps, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (..., H, W), got {type(maps).__name__}")
    if maps.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (..., H, W), got shape {tuple(maps.shape)}")
    if maps.is_complex() or not maps.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {maps.dtype}; "
                        f"convert it with maps.float()")
    if maps.shape[-1] == 0 or maps.shape[-2] == 0:
        raise ValueError(f"{name} has an empty spatial size {tuple(maps.shape[-2:])}")


def _check_kappa(kappa: float) -> None:
    if not (0.0 < float(kappa) <= 1.0):
        raise ValueError(f"kappa (the energy threshold) must lie in (0, 1], got {kappa}")


def frequency_radius(h: int, w: int, *, half: bool = False, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """Radius ``sqrt(u^2 + v^2) / Nyquist`` of every DFT bin of an ``h x w`` map.

    ``u, v`` are ``fftfreq`` frequencies in cycles per sample (DC at index 0, unshifted). With
    ``half=True`` the grid matches ``torch.fft.rfft2`` (``w // 2 + 1`` columns). Values lie in
    ``[0, sqrt(2)]``.
    """
    fy = torch.fft.fftfreq(h, device=device, dtype=torch.float64)
    fx = torch.fft.rfftfreq(w, device=device, dtype=torch.float64) if half else \
        torch.fft.fftfreq(w, device=device, dtype=torch.float64)
    rho = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / NYQUIST
    return rho.to(dtype)


def _half_weights(w: int, device: torch.device | str | None, dtype: torch.dtype) -> Tensor:
    """How many bins of the full spectrum each ``rfft2`` column stands for (Hermitian symmetry)."""
    n = w // 2 + 1
    weights = torch.full((n,), 2.0, device=device, dtype=dtype)
    weights[0] = 1.0
    if w % 2 == 0:
        weights[-1] = 1.0  # the Nyquist column has no mirror
    return weights


def power_spectrum(maps: Tensor, *, q: float = 2.0, shift: bool = False) -> Tensor:
    """``|DFT2(maps)|^q`` over the last two dimensions (full ``H x W`` plane).

    Parameters
    ----------
    maps : (..., H, W) real tensor.
    q : spectrum exponent: 2 gives the power (energy) spectrum, 1 the magnitude spectrum.
    shift : move DC to the centre (``fftshift``), for display.
    """
    _check_maps(maps)
    spec = torch.fft.fft2(maps).abs()
    spec = spec.square() if q == 2 else spec.pow(q)
    return torch.fft.fftshift(spec, dim=(-2, -1)) if shift else spec


@dataclass(frozen=True)
class RadialProfile:
    """A radial (annular) spectrum: ``values[..., k]`` is the spectrum in ring ``k``.

    ``frequencies`` are the ring centres and ``edges`` the ring limits, as fractions of Nyquist.
    """

    values: Tensor
    frequencies: Tensor
    edges: Tensor


@lru_cache(maxsize=64)
def _ring_index(h: int, w: int, n_bins: int, max_radius: float, device: str) -> tuple[Tensor, Tensor]:
    rho = frequency_radius(h, w, half=True, device=device, dtype=torch.float64).flatten()
    idx = torch.floor(rho / max_radius * n_bins).long()
    idx = torch.where(rho <= max_radius, idx.clamp(max=n_bins - 1), torch.full_like(idx, n_bins))
    weights = _half_weights(w, device, torch.float64).expand(h, -1).flatten()
    return idx, weights


def radial_profile(maps: Tensor, *, q: float = 2.0, n_bins: int | None = None, max_radius: float = 1.0,
                   reduce: Literal["mean", "sum"] = "mean") -> RadialProfile:
    """Radially averaged (or summed) spectrum of each map: rotation-invariant spectral profile.

    Rings of equal width cover ``[0, max_radius]`` (fractions of Nyquist; 1 keeps the inscribed disc,
    ``sqrt(2)`` the corners too). Bins outside ``max_radius`` are ignored.

    Parameters
    ----------
    maps : (..., H, W) real tensor.
    q : spectrum exponent (2 = power, 1 = magnitude).
    n_bins : number of rings; default ``min(H, W) // 2 + 1`` (one per frequency step).
    max_radius : outer radius of the last ring, as a fraction of Nyquist.
    reduce : ``"mean"`` (average power per bin: the usual radially averaged power spectrum) or
        ``"sum"`` (energy per ring).

    Returns
    -------
    RadialProfile with ``values`` of shape ``(..., n_bins)`` in the input's dtype and device.
    """
    _check_maps(maps)
    h, w = maps.shape[-2:]
    n_bins = int(n_bins) if n_bins is not None else min(h, w) // 2 + 1
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    idx, weights = _ring_index(h, w, n_bins, float(max_radius), str(maps.device))
    spec = torch.fft.rfft2(maps).abs()
    spec = spec.square() if q == 2 else spec.pow(q)
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, h * (w // 2 + 1)) * weights.to(spec.dtype)
    sums = torch.zeros(flat.shape[0], n_bins + 1, device=maps.device, dtype=spec.dtype)
    sums.index_add_(1, idx, flat)
    sums = sums[:, :n_bins]
    if reduce == "mean":
        counts = torch.zeros(n_bins + 1, device=maps.device, dtype=torch.float64).index_add_(0, idx, weights)
        sums = sums / counts[:n_bins].clamp(min=1).to(sums.dtype)
    edges = torch.linspace(0, max_radius, n_bins + 1, device=maps.device, dtype=maps.dtype)
    return RadialProfile(values=sums.reshape(*lead, n_bins), frequencies=(edges[1:] + edges[:-1]) / 2,
                         edges=edges)


def rolloff_1d(spectrum: Tensor, frequencies: Tensor | None = None, *, kappa: float = 0.85) -> Tensor:
    """Roll-off point of 1-D spectra along the last dimension.

    The smallest frequency ``f_k`` whose cumulative spectrum ``sum_{j <= k} S_j`` reaches
    ``kappa * sum_j S_j``: librosa's ``spectral_rolloff`` definition (``roll_percent = kappa``),
    on whatever spectrum is passed in (librosa passes magnitudes; pass ``|X|**2`` for energy).

    Parameters
    ----------
    spectrum : (..., F) non-negative spectra, frequency along the last dimension.
    frequencies : (F,) increasing frequencies of the bins; default the bin indices 0..F-1.
    kappa : energy threshold in (0, 1]; 0.85 is librosa's and SROP's default.

    Returns
    -------
    (...,) tensor of roll-off frequencies; NaN where a spectrum has no energy (librosa returns the
    first bin there; we report it as missing).
    """
    _check_kappa(kappa)
    if not isinstance(spectrum, Tensor) or spectrum.ndim < 1 or spectrum.shape[-1] == 0:
        raise ValueError("spectrum must be a non-empty tensor of shape (..., F)")
    if frequencies is None:
        frequencies = torch.arange(spectrum.shape[-1], device=spectrum.device, dtype=spectrum.dtype)
    elif frequencies.shape != spectrum.shape[-1:]:
        raise ValueError(f"frequencies must have shape ({spectrum.shape[-1]},), got {tuple(frequencies.shape)}")
    cum = spectrum.cumsum(-1)
    total = cum[..., -1:]
    reached = cum >= kappa * total
    first = reached.to(torch.uint8).argmax(-1)  # index of the first True
    out = frequencies.to(spectrum.dtype)[first]
    return torch.where(total[..., 0] > 0, out, torch.full_like(out, float("nan")))


@lru_cache(maxsize=64)
def _radius_groups(h: int, w: int, disc: bool, device: str) -> tuple[Tensor, Tensor, Tensor]:
    """Unique radii of an ``rfft2`` grid, each bin's group index and its Hermitian weight."""
    rho = frequency_radius(h, w, half=True, device=device, dtype=torch.float64).flatten()
    # Group bins of equal radius exactly: integer squared radius in units of 1/(h*w)^2 cycles.
    fy = torch.fft.fftfreq(h, d=1.0 / h, device=device, dtype=torch.float64)  # integer steps
    fx = torch.fft.rfftfreq(w, d=1.0 / w, device=device, dtype=torch.float64)
    key = ((fy[:, None] * w) ** 2 + (fx[None, :] * h) ** 2).round().long().flatten()
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    radii = torch.sqrt(uniq.double()) / (h * w) / NYQUIST
    weights = _half_weights(w, device, torch.float64).expand(h, -1).flatten().clone()
    if disc:
        weights = torch.where(rho <= 1.0 + 1e-12, weights, torch.zeros_like(weights))
    return radii, inverse, weights


@lru_cache(maxsize=64)
def _interleaved_groups(h: int, w: int, disc: bool, device: str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Group index and Hermitian weight repeated for the (real, imaginary) pairs of ``view_as_real``."""
    _, inverse, weights = _radius_groups(h, w, disc, device)
    return inverse.repeat_interleave(2), weights.to(dtype).repeat_interleave(2)


_ROUNDING = 16.0
"""A map whose spectrum away from DC stays below ``_ROUNDING * eps * |DC|`` per bin is constant up to FFT
rounding (measured: at most 0.4 eps for constant maps of any size, float32 and float64)."""


def _ring_energy(maps: Tensor, q: float, disc: bool) -> tuple[Tensor, Tensor]:
    """``sum_{rho(k) = r} |DFT2(maps)_k|^q`` for every unique radius ``r``: ``(rows, R)`` and the radii.

    One ``rfft2``; the squared real and imaginary parts are summed straight into the rings (each bin
    weighted by its Hermitian multiplicity), so no complex ``abs`` and no full-size copy beyond the
    transform itself (this is the hot path of layer-wise SROP).
    """
    h, w = maps.shape[-2:]
    dev = str(maps.device)
    radii, inverse, weights = _radius_groups(h, w, bool(disc), dev)
    f = torch.fft.rfft2(maps.reshape(-1, h, w))
    rows = f.shape[0]
    ring = torch.zeros(rows, radii.numel(), device=maps.device, dtype=maps.dtype)
    if q == 2:
        inv2, w2 = _interleaved_groups(h, w, bool(disc), dev, maps.dtype)
        r = torch.view_as_real(f).reshape(rows, -1)
        ring.index_add_(1, inv2, r.square_().mul_(w2))
    else:
        r = torch.view_as_real(f).square_()
        p = (r[..., 0] + r[..., 1]).reshape(rows, -1)
        ring.index_add_(1, inverse, p.pow_(q / 2).mul_(weights.to(maps.dtype)))
    return ring, radii


def srop_2d(maps: Tensor, *, kappa: float = 0.85, q: float = 2.0, keep_dc: bool = True,
            disc: bool = False) -> Tensor:
    """Rotation-invariant spectral roll-off point (SROP) of each 2-D map.

    ``P(u, v) = |DFT2(A)|^q``; ``E(r) = sum_{rho <= r} P / sum P``; ``SROP = min {r : E(r) >= kappa}``
    with ``rho = sqrt(u^2 + v^2) / Nyquist`` (arXiv 2102.00369; our reading in ``docs/methods.md``).
    Because ``P`` enters only through the radius of each bin, SROP is exactly invariant to 90-degree
    rotations, flips and transposition, and approximately to other rotations.

    Parameters
    ----------
    maps : (..., H, W) real feature maps (channels in the leading dimensions).
    kappa : energy threshold in (0, 1]; default 0.85 (librosa's roll-off default, kept by SROP).
    q : spectrum exponent; 2 (power, "energy", our reading of the paper) or 1 (magnitude, librosa).
    keep_dc : count the DC bin (default; a constant map then has SROP 0). With ``False`` the DC bin is
        dropped, so a constant map has no energy and its SROP is missing.
    disc : accumulate only the inscribed disc ``rho <= 1`` (fully isotropic) instead of every bin.

    Returns
    -------
    (...,) tensor of SROPs as fractions of Nyquist, in ``[0, sqrt(2)]``. Maps with no energy (an
    all-zero, dead-ReLU channel) give NaN: missing, to be excluded from statistics and counted
    (``infolens.srop`` does both). A map that is constant up to floating-point rounding counts as
    constant (its rounding noise away from DC, below ``16 eps |DC|`` per bin, is not taken as signal).
    """
    _check_maps(maps)
    _check_kappa(kappa)
    if not float(q) > 0:
        raise ValueError(f"q (the spectrum exponent) must be positive, got {q}")
    lead = maps.shape[:-2]
    ring, radii = _ring_energy(maps, float(q), disc)
    ring = ring.double()
    # Ring 0 is the DC bin alone. Energy elsewhere at the level of FFT rounding is no signal.
    n_bins = maps.shape[-2] * maps.shape[-1]
    floor = n_bins * (_ROUNDING * torch.finfo(maps.dtype).eps) ** float(q)
    constant = ring[:, 1:].sum(1) <= floor * ring[:, 0]
    ring[:, 1:] = torch.where(constant[:, None], torch.zeros_like(ring[:, 1:]), ring[:, 1:])
    if not keep_dc:
        ring[:, 0] = 0.0
    out = rolloff_1d(ring, radii, kappa=kappa)
    return out.to(maps.dtype).reshape(lead)


def lowpass_mask(h: int, w: int, cutoff: float, *, unit: Literal["steps", "nyquist"] = "steps",
                 window: Literal["ideal", "gaussian"] = "ideal", device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """Low-pass transfer function on the ``rfft2`` grid of an ``h x w`` map, shape ``(h, w // 2 + 1)``.

    ``unit="steps"``: the cut-off is a radius in whole frequency steps (cycles per image along each
    axis), Xplique's FORGrad convention: an ideal mask keeps ``sqrt(ky^2 + kx^2) <= cutoff``.
    ``unit="nyquist"``: the cut-off is a fraction of Nyquist (``rho <= cutoff``), which transfers across
    map sizes; ``cutoff >= sqrt(2)`` keeps every bin. ``window="gaussian"`` gives
    ``exp(-r^2 / (2 cutoff^2))`` instead of the ideal disc.
    """
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if unit == "steps":
        ky = torch.fft.fftfreq(h, d=1.0 / h, device=device, dtype=torch.float64)
        kx = torch.fft.rfftfreq(w, d=1.0 / w, device=device, dtype=torch.float64)
        r = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    elif unit == "nyquist":
        r = frequency_radius(h, w, half=True, device=device, dtype=torch.float64)
    else:
        raise ValueError(f"unit must be 'steps' or 'nyquist', got {unit!r}")
    if window == "ideal":
        mask = (r <= cutoff + 1e-9).to(torch.float64)
    elif window == "gaussian":
        mask = torch.exp(-r.square() / (2.0 * float(cutoff) ** 2))
    else:
        raise ValueError(f"window must be 'ideal' or 'gaussian', got {window!r}")
    return mask.to(dtype)


def lowpass_filter(maps: Tensor, cutoff: float, *, unit: Literal["steps", "nyquist"] = "steps",
                   window: Literal["ideal", "gaussian"] = "ideal") -> Tensor:
    """Low-pass filter each 2-D map: ``F^{-1}(F(maps) * w_cutoff)`` (FORGrad, arXiv 2307.09591, Eq. 2).

    Works on any ``H x W`` (the inverse transform keeps the exact size, odd sizes included). Returns
    a real tensor of the input's shape, dtype and device. See :func:`lowpass_mask` for the units.
    """
    _check_maps(maps)
    if math.isinf(cutoff):
        return maps.clone()
    h, w = maps.shape[-2:]
    mask = lowpass_mask(h, w, cutoff, unit=unit, window=window, device=maps.device, dtype=maps.dtype)
    return torch.fft.irfft2(torch.fft.rfft2(maps) * mask, s=(h, w))
