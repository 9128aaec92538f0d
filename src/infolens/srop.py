"""Method 1: layer-wise spectral roll-off points (SROP) of feature maps (arXiv 2102.00369).

For every selected layer ``l`` and image ``x`` we take the set ``{SROP(A_{l,c}(x)) : channels c}`` of
rotation-invariant 2-D roll-off points (:func:`infolens.spectral.srop_2d`, fractions of the layer's
Nyquist frequency) and summarise its distribution: mean, median, quantiles, spread, histogram, per
image and aggregated over images (``../shared/METHODS.md``, section 1, "Layer statistic").

Streaming: the SROPs of a layer are computed inside its forward hook (``probe.capture(reduce=...)``)
and the feature map is dropped at once, so memory holds one layer's maps at a time, however many
layers are analysed, and the forward pass stops after the last selected layer.

Dead channels: an all-zero map (a dead ReLU channel) has no spectrum; its SROP is NaN, it is left out
of every statistic and counted (``n_dead``). A layer whose channels are all dead for an image gives
NaN statistics for that image, and those images are left out of the average over images.

Readings (the paper's text beyond its abstract could not be read; ``../shared/METHODS.md``): the
feature maps are the outputs of the convolutions (default ``layers="all conv"``, before normalisation
and activation; any layer with 4-D output can be chosen, e.g. ``"all relu"`` or ``"blocks"``); the
spectrum is the power (q = 2) with DC kept and kappa = 0.85 (librosa's default); the layer statistic is
the distribution of the channel SROPs of one image, averaged over images.

The paper measures radii on each layer's own frequency axis; because downsampling lowers a layer's
Nyquist frequency, we also offer the radius in cycles per *input* pixel: ``srop / stride`` with
``stride = input H / layer H`` (as a fraction of the input's Nyquist frequency).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from . import _progress
from ._checks import check_images, frozen_model
from ._stats import rowwise_correlation
from ._torch import image_generators, model_device
from .probe import LayerSpec, capture, resolve_layers
from .spectral import lowpass_filter, srop_2d

__all__ = [
    "DEFAULT_QUANTILES",
    "SROP_MAX",
    "INPUT_VARIANTS",
    "LayerSROPs",
    "SROPStatistics",
    "layer_srops",
    "srop_statistics",
    "quantile_name",
    "input_variant",
    "cascading_randomization",
    "summarize_image_rows",
    "correlation",
]

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.75, 0.9)
"""Quantiles reported beside the median (the box and whiskers of the distribution figures)."""

SROP_MAX = math.sqrt(2.0)
"""Largest possible SROP (the corner of the 2-D spectrum) as a fraction of Nyquist; histogram range."""


def quantile_name(q: float) -> str:
    """Column name of a quantile: 0.1 -> ``q10``, 0.025 -> ``q2.5``."""
    v = round(float(q) * 100, 6)
    return f"q{int(v)}" if v == int(v) else f"q{v:g}"


@dataclass
class LayerSROPs:
    """Per-channel SROPs of chosen layers for a batch (or data set) of images.

    ``values[layer]`` is an ``(N, C_l)`` float32 CPU tensor of SROPs as fractions of the layer's
    Nyquist frequency (NaN: dead channel). They are kept on the CPU because they are small and are
    gathered over batches; the analysis itself ran on ``device``.
    """

    layers: list[str]
    values: dict[str, Tensor]
    shapes: dict[str, tuple[int, int]]
    """``(H_l, W_l)`` of each layer's maps."""
    strides: dict[str, float]
    """``input H / layer H`` of each layer (2 after one 2x downsampling)."""
    input_shape: tuple[int, int]
    params: dict[str, Any] = field(default_factory=dict)
    """``kappa``, ``q``, ``keep_dc``, ``disc`` of :func:`infolens.spectral.srop_2d`."""

    @property
    def n_images(self) -> int:
        return int(next(iter(self.values.values())).shape[0]) if self.values else 0

    def per_input_pixel(self) -> dict[str, Tensor]:
        """SROPs in cycles per input pixel, as fractions of the input's Nyquist (``srop / stride``)."""
        return {k: v / self.strides[k] for k, v in self.values.items()}

    def dead(self) -> dict[str, Tensor]:
        """``(N, C_l)`` booleans: channels with an all-zero map (no SROP)."""
        return {k: torch.isnan(v) for k, v in self.values.items()}

    def statistics(self, **kwargs: Any) -> SROPStatistics:
        """Shortcut for :func:`srop_statistics` on this result."""
        return srop_statistics(self, **kwargs)

    @classmethod
    def concat(cls, parts: Sequence[LayerSROPs]) -> LayerSROPs:
        """Join results for consecutive batches of images (same model, layers and parameters)."""
        if not parts:
            raise ValueError("parts must hold at least one LayerSROPs")
        first = parts[0]
        for p in parts[1:]:
            if p.layers != first.layers or p.params != first.params:
                raise ValueError("parts differ in layers or SROP parameters; cannot concatenate them")
        return cls(layers=list(first.layers),
                   values={k: torch.cat([p.values[k] for p in parts]) for k in first.layers},
                   shapes=dict(first.shapes), strides=dict(first.strides), input_shape=first.input_shape,
                   params=dict(first.params))

    def rows(self, *, image_ids: Sequence[Any] | None = None, decimals: int | None = 6,
             extra: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The full tidy table: one row per image x layer x channel (``srop`` empty for a dead channel).

        It grows with images x channels (a ResNet-50 has ~26,000 conv channels per image): keep it for
        small models or a few images; :class:`SROPStatistics` rows are the compact summary.
        ``decimals`` rounds the values (6 decimals is well below the SROP's own resolution).
        """
        ids = _image_ids(image_ids, self.n_images)
        out: list[dict[str, Any]] = []
        fixed = dict(extra or {})
        for depth, name in enumerate(self.layers):
            v = self.values[name]
            n, c = v.shape
            vals = v.double()
            if decimals is not None:
                vals = vals.mul(10 ** decimals).round().div(10 ** decimals)
            inp = vals / self.strides[name]
            if decimals is not None:
                inp = inp.mul(10 ** decimals).round().div(10 ** decimals)
            flat_v, flat_i = vals.flatten().tolist(), inp.flatten().tolist()
            for k in range(n * c):
                out.append({**fixed, "image": ids[k // c], "layer": name, "depth": depth, "channel": k % c,
                            "srop": flat_v[k], "srop_input": flat_i[k]})
        return out


def _image_ids(image_ids: Sequence[Any] | None, n: int) -> list[Any]:
    if image_ids is None:
        return list(range(n))
    ids = list(image_ids.tolist() if isinstance(image_ids, Tensor) else image_ids)
    if len(ids) != n:
        raise ValueError(f"image_ids must have one id per image ({n}), got {len(ids)}")
    return ids


def layer_srops(model: nn.Module, images: Tensor, layers: LayerSpec = "all conv", *, kappa: float = 0.85,
                q: float = 2.0, keep_dc: bool = True, disc: bool = False, batch_size: int = 64,
                device: torch.device | str | None = None, progress: bool = False) -> LayerSROPs:
    """Per-channel SROPs of ``layers`` of ``model`` for every image, streamed layer by layer.

    Parameters
    ----------
    model : any ``nn.Module`` taking ``images``; it is evaluated in eval mode and comes back exactly as it
        was passed (every submodule's mode, ``requires_grad`` flag and buffer: :func:`infolens._torch.frozen`).
    images : (N, C, H, W) batch (any device; moved to ``device`` one batch at a time).
    layers : a :data:`infolens.probe.LayerSpec`; default every convolution (``"all conv"``). Every
        selected layer must output 2-D maps ``(N, C, H, W)``.
    kappa : energy threshold of the roll-off (0.85, librosa's default, which SROP keeps).
    q : spectrum exponent, 2 (power, our reading of the paper's "energy") or 1 (magnitude).
    keep_dc, disc : see :func:`infolens.spectral.srop_2d` (DC kept, every bin, by default).
    batch_size : images per forward pass; memory is bounded by one layer's maps for one batch.
    device : where the forward pass and the FFTs run; default the model's device.
    progress : show a progress bar over batches.

    Returns
    -------
    :class:`LayerSROPs` with ``(N, C_l)`` SROPs per layer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    images = check_images(images, model=model)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not (0.0 < float(kappa) <= 1.0):
        raise ValueError(f"kappa (the energy threshold) must lie in (0, 1], got {kappa}")
    if not float(q) > 0:
        raise ValueError(f"q (the spectrum exponent) must be positive, got {q}")
    dev = torch.device(device) if device is not None else model_device(model)
    names = resolve_layers(model, layers)
    shapes: dict[str, tuple[int, int]] = {}
    chunks: dict[str, list[Tensor]] = {n: [] for n in names}

    def reduce(name: str, out: Tensor) -> Tensor:
        if out.ndim != 4:
            raise ValueError(f"layer {name!r} outputs shape {tuple(out.shape)}; SROP needs 2-D maps (N, C, H, W): "
                             f"choose convolutional layers (e.g. layers='all conv')")
        shapes[name] = (int(out.shape[-2]), int(out.shape[-1]))
        # half-precision maps (bf16/fp16 autocast) go to float32 first: the FFTs need it, and the
        # cumulative spectrum would lose the roll-off's resolution in 8 mantissa bits
        maps = out if out.dtype in (torch.float32, torch.float64) else out.float()
        with torch.autocast(maps.device.type, enabled=False):  # autocast speeds up the model, not the spectra
            return srop_2d(maps, kappa=kappa, q=q, keep_dc=keep_dc, disc=disc).float()

    with frozen_model(model):
        starts = range(0, images.shape[0], int(batch_size))
        for s in _progress.track(starts, desc="SROP", total=len(starts), progress=progress):
            xb = images[s:s + int(batch_size)].to(dev, non_blocking=True)  # asynchronous from pinned memory
            cap = capture(model, xb, names, reduce=reduce, stop_after_last=True)
            missing = [n for n in names if n not in cap.outputs]
            if missing:
                raise ValueError(f"layers {missing} were not run by the model's forward pass; "
                                 f"choose layers the forward pass uses")
            for n in names:  # kept on the device until the end: no host-device synchronisation per batch
                chunks[n].append(cap.outputs[n])
    h_in = images.shape[-2]
    return LayerSROPs(layers=names, values={n: torch.cat(chunks[n]).cpu() for n in names}, shapes=shapes,
                      strides={n: h_in / shapes[n][0] for n in names},
                      input_shape=(int(images.shape[-2]), int(images.shape[-1])),
                      params={"kappa": float(kappa), "q": float(q), "keep_dc": bool(keep_dc), "disc": bool(disc)})


# --------------------------------------------------------------------------- statistics


def _stats_rows(v: Tensor, quantiles: Sequence[float], edges: Tensor) -> dict[str, Tensor]:
    """NaN-aware statistics of each row of ``v`` (R, C): NaN entries are missing (dead channels)."""
    alive = ~torch.isnan(v)
    n_alive = alive.sum(1)
    vd = v.double()
    mean = torch.nanmean(vd, dim=1)
    std = torch.sqrt(torch.nanmean((vd - mean[:, None]).square(), dim=1))  # population std (ddof=0)
    qs = torch.tensor([0.5, *quantiles], dtype=torch.float64)
    if v.shape[1] > 0:
        qv = torch.nanquantile(vd, qs, dim=1)  # (Q, R), linear interpolation as numpy
    else:
        qv = torch.full((len(qs), v.shape[0]), float("nan"), dtype=torch.float64)
    out = {"n_channels": torch.full_like(n_alive, v.shape[1]), "n_dead": v.shape[1] - n_alive,
           "mean": mean, "median": qv[0], "std": std}
    for i, q in enumerate(quantiles):
        out[quantile_name(q)] = qv[i + 1]
    nb = edges.numel() - 1
    idx = torch.bucketize(vd.nan_to_num(0.0), edges.double(), right=True).sub(1).clamp(0, nb - 1)
    out["histogram"] = torch.zeros(v.shape[0], nb, dtype=torch.float64).scatter_add_(1, idx, alive.double())
    return out


@dataclass
class SROPStatistics:
    """Distribution of the per-channel SROPs of each layer, per image and aggregated.

    ``per_image[stat]`` is ``(N, L)`` and ``aggregated[stat]`` is ``(L,)`` for ``stat`` in
    ``mean, median, std, q10, q25, q75, q90, n_channels, n_dead`` (float64; ``n_*`` are counts).
    ``histogram`` is ``(N, L, B)`` channel counts per bin (``edges``, fractions of Nyquist); the
    aggregated histogram is its sum over images. All statistics are of SROPs as fractions of the
    layer's Nyquist; divide by ``strides`` for cycles per input pixel (every statistic here scales).
    """

    layers: list[str]
    strides: list[float]
    quantiles: tuple[float, ...]
    per_image: dict[str, Tensor]
    aggregated: dict[str, Tensor]
    histogram: Tensor
    edges: Tensor
    aggregate: str

    STATS = ("mean", "median", "std")

    def _stat_names(self) -> list[str]:
        return [*self.STATS, *(quantile_name(q) for q in self.quantiles)]

    def image_rows(self, *, image_ids: Sequence[Any] | None = None, extra: Mapping[str, Any] | None = None,
                   decimals: int | None = 6) -> list[dict[str, Any]]:
        """One row per image x layer: counts, statistics, and ``mean_input``/``median_input``."""
        n = int(self.per_image["mean"].shape[0])
        ids = _image_ids(image_ids, n)
        cols = {k: _rounded(self.per_image[k], decimals) for k in self._stat_names()}
        counts = {k: self.per_image[k].long().tolist() for k in ("n_channels", "n_dead")}
        rows = []
        for i in range(n):
            for j, name in enumerate(self.layers):
                r = {**(extra or {}), "image": ids[i], "layer": name, "depth": j, "stride": self.strides[j],
                     "n_channels": counts["n_channels"][i][j], "n_dead": counts["n_dead"][i][j]}
                r.update({k: cols[k][i][j] for k in cols})
                r["mean_input"] = _round1(cols["mean"][i][j] / self.strides[j], decimals)
                r["median_input"] = _round1(cols["median"][i][j] / self.strides[j], decimals)
                rows.append(r)
        return rows

    def layer_rows(self, *, extra: Mapping[str, Any] | None = None, decimals: int | None = 6) -> list[dict[str, Any]]:
        """One row per layer: the aggregated statistics (``aggregate`` says how)."""
        cols = {k: _rounded(self.aggregated[k], decimals) for k in self._stat_names()}
        rows = []
        for j, name in enumerate(self.layers):
            r = {**(extra or {}), "layer": name, "depth": j, "stride": self.strides[j],
                 "n_images": int(self.aggregated["n_images"][j]),
                 "n_channels": int(self.aggregated["n_channels"][j]), "n_dead": int(self.aggregated["n_dead"][j])}
            r.update({k: cols[k][j] for k in cols})
            r["mean_input"] = _round1(cols["mean"][j] / self.strides[j], decimals)
            r["median_input"] = _round1(cols["median"][j] / self.strides[j], decimals)
            rows.append(r)
        return rows

    def histogram_rows(self, *, extra: Mapping[str, Any] | None = None,
                       skip_empty: bool = False) -> list[dict[str, Any]]:
        """One row per layer x bin: the channel counts summed over images (additive over batches);
        ``skip_empty`` leaves out bins with no channel (a sparse table)."""
        h = self.histogram.sum(0).long().tolist()
        e = self.edges.tolist()
        return [{**(extra or {}), "layer": name, "depth": j, "bin_lo": round(e[b], 6), "bin_hi": round(e[b + 1], 6),
                 "count": h[j][b]}
                for j, name in enumerate(self.layers) for b in range(len(e) - 1) if h[j][b] or not skip_empty]


def _rounded(t: Tensor, decimals: int | None) -> list:
    t = t.double()
    if decimals is not None:
        t = t.mul(10 ** decimals).round().div(10 ** decimals)
    return t.tolist()


def _round1(v: float, decimals: int | None) -> float:
    return v if decimals is None or v != v else round(v, decimals)


def srop_statistics(result: LayerSROPs, *, quantiles: Sequence[float] = DEFAULT_QUANTILES, bins: int = 28,
                    aggregate: Literal["images", "pooled"] = "images") -> SROPStatistics:
    """Per-layer distribution of channel SROPs: per image, and aggregated over images.

    Parameters
    ----------
    result : the output of :func:`layer_srops`.
    quantiles : reported beside the median (default 0.1, 0.25, 0.75, 0.9); linear interpolation.
    bins : histogram bins of equal width over ``[0, sqrt(2)]`` (default 28: about 0.05 of Nyquist).
    aggregate : ``"images"`` (default; METHODS.md "averaged over inputs"): each statistic is computed per
        image over its channels, then averaged over the images that have a live channel; ``"pooled"``:
        the statistics of all image x channel values of a layer taken together. Counts (``n_channels``,
        ``n_dead``) are totals over images either way; ``n_images`` counts the images used.

    Dead channels (NaN) are excluded and counted in ``n_dead``; the standard deviation is the
    population one (ddof = 0).
    """
    if not isinstance(result, LayerSROPs):
        raise TypeError(f"result must be a LayerSROPs (from layer_srops), got {type(result).__name__}")
    if aggregate not in ("images", "pooled"):
        raise ValueError(f"aggregate must be 'images' or 'pooled', got {aggregate!r}")
    quantiles = tuple(float(q) for q in quantiles)
    if any(not 0.0 <= q <= 1.0 for q in quantiles):
        raise ValueError(f"quantiles must lie in [0, 1], got {quantiles}")
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = torch.linspace(0.0, SROP_MAX, int(bins) + 1, dtype=torch.float64)
    edges[-1] = SROP_MAX + 1e-9  # the corner value itself falls in the last bin
    per_layer = [_stats_rows(result.values[n], quantiles, edges) for n in result.layers]
    keys = [k for k in per_layer[0] if k != "histogram"] if per_layer else []
    per_image = {k: torch.stack([p[k].double() for p in per_layer], dim=1) for k in keys}
    hist = torch.stack([p["histogram"] for p in per_layer], dim=1)
    if aggregate == "images":
        agg = {k: torch.nanmean(per_image[k], dim=0) for k in keys}
        agg["n_images"] = (~torch.isnan(per_image["mean"])).sum(0).double()
    else:
        pooled = [_stats_rows(result.values[n].reshape(1, -1), quantiles, edges) for n in result.layers]
        agg = {k: torch.stack([p[k].double()[0] for p in pooled]) for k in keys}
        agg["n_images"] = torch.full((len(result.layers),), float(result.n_images), dtype=torch.float64)
    for k in ("n_channels", "n_dead"):
        agg[k] = per_image[k].sum(0)
    return SROPStatistics(layers=list(result.layers), strides=[result.strides[n] for n in result.layers],
                          quantiles=quantiles, per_image=per_image, aggregated=agg, histogram=hist,
                          edges=edges, aggregate=aggregate)


# --------------------------------------------------------------------------- sanity check (a): the input

INPUT_VARIANTS: tuple[str, ...] = ("original", "lowpass", "highpass", "noise", "shuffled", "center_removed")
"""Input variants of sanity check (a) (``../shared/METHODS.md``: "a natural image against its low-pass
and high-pass versions, noise, and the image with the object removed or pixels shuffled")."""


def input_variant(images: Tensor, variant: str, *, indices: Sequence[int] | None = None, seed: int = 0,
                  cutoff: float = 0.25, center: float = 0.5) -> Tensor:
    """One input variant of sanity check (a), in ``[0, 1]``, same shape, dtype and device as ``images``.

    * ``original``: unchanged.
    * ``lowpass``: ideal circular low-pass at ``cutoff`` of Nyquist (default 0.25: the coarse shape;
      :func:`infolens.spectral.lowpass_filter`), clipped to ``[0, 1]``.
    * ``highpass``: the detail the low-pass removed, on the image's mean:
      ``x - lowpass(x) + mean(x)``, clipped.
    * ``noise``: uniform noise in ``[0, 1)``: no content at all (randomised input).
    * ``shuffled``: the pixels in a random order (one permutation for all colour channels): the same
      histogram without any spatial structure.
    * ``center_removed``: the central box (``center`` of each side; default half) filled with the mean
      colour of the image's border. Reading: the paper removes the object; without segmentations we
      rely on MNIST digits and the bundled photographs being centred on their object.

    Randomness is drawn per image from ``(seed, global index)`` (:func:`infolens._torch.image_seed`),
    so the variant of an image does not depend on the batch it is in or on the process count;
    ``indices`` default to ``0..N-1``.
    """
    images = check_images(images)
    n, c, h, w = images.shape
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    if len(idx) != n:
        raise ValueError(f"indices must hold one global index per image ({n}), got {len(idx)}")
    if variant == "original":
        return images
    if variant in ("lowpass", "highpass"):
        low = lowpass_filter(images, cutoff, unit="nyquist")
        if variant == "lowpass":
            return low.clamp(0, 1)
        return (images - low + images.mean((-2, -1), keepdim=True)).clamp(0, 1)
    if variant == "noise":
        gens = image_generators(seed, idx, "srop-noise")
        return torch.stack([torch.rand((c, h, w), generator=g, dtype=images.dtype) for g in gens]).to(images.device)
    if variant == "shuffled":
        gens = image_generators(seed, idx, "srop-shuffle")
        perm = torch.stack([torch.randperm(h * w, generator=g) for g in gens]).to(images.device)
        flat = images.reshape(n, c, h * w)
        return flat.gather(2, perm[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)
    if variant == "center_removed":
        if not 0.0 < float(center) <= 1.0:
            raise ValueError(f"center (the side fraction of the removed box) must lie in (0, 1], got {center}")
        border = torch.ones(h, w, dtype=torch.bool, device=images.device)
        border[1:-1, 1:-1] = False
        fill = images[..., border].mean(-1)  # (N, C) mean colour of the border
        bh, bw = max(1, round(h * center)), max(1, round(w * center))
        y0, x0 = (h - bh) // 2, (w - bw) // 2
        out = images.clone()
        out[..., y0:y0 + bh, x0:x0 + bw] = fill[..., None, None]
        return out
    raise ValueError(f"unknown input variant {variant!r}; choose from {', '.join(INPUT_VARIANTS)}")


# --------------------------------------------------------------------------- sanity check (b): randomisation


def _reinit(module: nn.Module, seed: int) -> None:
    """Re-initialise one module's own parameters (and buffers, e.g. BatchNorm statistics) from ``seed``."""
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()  # BatchNorm: also resets the running statistics
        else:
            for p in module.parameters(recurse=False):
                nn.init.normal_(p, std=0.02) if p.ndim > 1 else nn.init.zeros_(p)
    finally:
        torch.set_rng_state(state)


def cascading_randomization(model: nn.Module, *, seed: int = 0):
    """Cascading layer randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", Sec. 3).

    Yields ``(layer_name, randomised_model)``: first ``("none", copy of model)``, then, from the output
    down, the copy with one more layer re-initialised (its framework default initialisation, seeded by
    ``seed`` and the step). A layer is a module with a weight matrix or kernel (convolution, linear)
    together with the parameterised modules without one that follow it (its BatchNorm, which gets
    fresh statistics too). The model passed in is never modified; the same copy is updated step by
    step, so use each model before asking for the next.
    """
    import copy

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    work = copy.deepcopy(model).eval()
    groups: list[tuple[str, list[nn.Module]]] = []
    for n, m in work.named_modules():
        own = list(m.parameters(recurse=False))
        if not n or list(m.children()) or not own:
            continue
        if any(p.ndim > 1 for p in own) or not groups:
            groups.append((n, [m]))
        else:
            groups[-1][1].append(m)
    yield "none", work
    for step, (name, modules) in enumerate(reversed(groups), 1):
        for k, module in enumerate(modules):
            _reinit(module, seed * 1_000_003 + step * 101 + k)
        yield name, work


# --------------------------------------------------------------------------- tables and correlation


_SUMMARY_STATS = ("mean", "median", "std", *(quantile_name(q) for q in DEFAULT_QUANTILES), "mean_input",
                  "median_input")


def summarize_image_rows(rows: Sequence[Mapping[str, Any]], *, by: Sequence[str] = ("layer",),
                         stats: Sequence[str] | None = None, carry: Sequence[str] = ("depth", "stride"),
                         decimals: int | None = 6) -> list[dict[str, Any]]:
    """Average per-image rows (:meth:`SROPStatistics.image_rows`) over images, per group of ``by``.

    The table form of ``srop_statistics(aggregate="images")``: each statistic is averaged over the
    images where it is defined (an image whose channels are all dead has none); ``n_images`` counts
    those images; ``n_channels`` and ``n_dead`` are summed. Groups keep their first-seen order; the
    ``carry`` columns (constant within a group) are copied from the group's first row when present.
    """
    stats = [s for s in (stats or _SUMMARY_STATS) if rows and s in rows[0]]
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    out = []
    for key, rs in groups.items():
        row: dict[str, Any] = dict(zip(by, key))
        for k in carry:
            if k in rs[0] and k not in row:
                row[k] = rs[0][k]
        means = torch.tensor([[float(r[s]) for s in stats] for r in rs], dtype=torch.float64)
        row["n_images"] = int((~torch.isnan(means[:, 0])).sum()) if stats else len(rs)
        row["n_channels"] = int(sum(int(r.get("n_channels", 0)) for r in rs))
        row["n_dead"] = int(sum(int(r.get("n_dead", 0)) for r in rs))
        avg = _rounded(torch.nanmean(means, dim=0), decimals) if stats else []
        row.update(dict(zip(stats, avg)))
        out.append(row)
    return out


def correlation(x: Sequence[float] | Tensor, y: Sequence[float] | Tensor) -> dict[str, float]:
    """Pearson and Spearman correlation of two equally long series (NaN pairs dropped).

    Returns ``{"pearson", "spearman", "n"}``; a correlation is NaN with fewer than 3 pairs or a
    constant series.
    """
    xt = torch.as_tensor(x, dtype=torch.float64).flatten()
    yt = torch.as_tensor(y, dtype=torch.float64).flatten()
    if xt.numel() != yt.numel():
        raise ValueError(f"x and y must have the same length, got {xt.numel()} and {yt.numel()}")
    ok = ~(torch.isnan(xt) | torch.isnan(yt))
    xt, yt = xt[ok], yt[ok]
    n = int(xt.numel())
    if n < 3:
        return {"pearson": float("nan"), "spearman": float("nan"), "n": n}
    return {"pearson": float(rowwise_correlation(xt[None], yt[None], method="pearson")[0]),
            "spearman": float(rowwise_correlation(xt[None], yt[None], method="spearman")[0]), "n": n}
