"""Measuring SROPs: :class:`SpectralRolloff` (the method: :meth:`~SpectralRolloff.measure` for one
measurement point, :meth:`~SpectralRolloff.measure_at` for several points and spectrum settings from one
forward pass, for runners that compare them) and :func:`layer_srops` (its functional form).

Streaming: the SROPs of a map are computed inside its forward hook and the map is dropped at once, so
memory holds one layer's maps at a time and the forward pass stops after the last measured map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import _progress
from .._method import MethodResult, check_indices, method_call
from .._torch import model_device
from ..probe import LayerSpec, _first_tensor, _Stop
from ..spectral import srop_2d
from .points import DEFAULT_AT, MEASUREMENT_POINTS, check_at, describe, plan_points

__all__ = ["LayerSROPs", "SpectralRolloff", "layer_srops", "Setting"]

Setting = Mapping[str, Any]
"""Spectrum settings of one SROP: ``kappa``, ``q``, ``keep_dc``, ``disc`` (:func:`infolens.spectral.srop_2d`)."""


@dataclass
class LayerSROPs(MethodResult):
    """Per-channel SROPs of chosen layers for a batch (or data set) of images: what
    :meth:`SpectralRolloff.measure` returns.

    ``values[layer]`` is an ``(N, C_l)`` float32 CPU tensor of SROPs as fractions of the layer's
    Nyquist frequency (NaN: dead channel). They are kept on the CPU because they are small and are
    gathered over batches; the analysis itself ran on ``device``. ``indices`` are the images' global
    indices (``index`` in :meth:`to_rows`; ``None``: ``0..N-1``).

    Examples
    --------
    >>> import torch
    >>> from infolens import SpectralRolloff
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> res = SpectralRolloff(net).measure(torch.rand(2, 1, 16, 16), indices=[5, 6])
    >>> res.layers, tuple(res.values["0"].shape)
    (['0'], (2, 4))
    >>> sorted({r["index"] for r in res.to_rows()})
    [5, 6]
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
    at: str = "conv"
    """Measurement point (:mod:`infolens.srop.points`): ``conv``, ``activation`` or ``block``."""
    sources: dict[str, str] = field(default_factory=dict)
    """``layer -> measured module`` (for ``activation``: the non-linearity after the convolution)."""
    indices: list[int] | None = None
    """The images' global indices (``None``: ``0..N-1``)."""

    @property
    def n_images(self) -> int:
        return int(next(iter(self.values.values())).shape[0]) if self.values else 0

    def per_input_pixel(self) -> dict[str, Tensor]:
        """SROPs in cycles per input pixel, as fractions of the input's Nyquist (``srop / stride``)."""
        return {k: v / self.strides[k] for k, v in self.values.items()}

    def dead(self) -> dict[str, Tensor]:
        """``(N, C_l)`` booleans: channels with an all-zero map (no SROP)."""
        return {k: torch.isnan(v) for k, v in self.values.items()}

    @classmethod
    def concat(cls, parts: Sequence[LayerSROPs]) -> LayerSROPs:
        """Join results for consecutive batches of images (same model, layers and parameters)."""
        if not parts:
            raise ValueError("parts must hold at least one LayerSROPs")
        first = parts[0]
        for p in parts[1:]:
            if p.layers != first.layers or p.params != first.params or p.at != first.at:
                raise ValueError("parts differ in layers, measurement point or SROP parameters; cannot concatenate them")
        indices = [i for p in parts for i in check_indices(p.indices, p.n_images)]
        return cls(layers=list(first.layers),
                   values={k: torch.cat([p.values[k] for p in parts]) for k in first.layers},
                   shapes=dict(first.shapes), strides=dict(first.strides), input_shape=first.input_shape,
                   params=dict(first.params), at=first.at, sources=dict(first.sources), indices=indices)

    def to_rows(self, **kwargs: Any) -> list[dict[str, Any]]:
        """:meth:`rows`, one row per image x layer x channel keyed on ``index``, with the measurement
        point in column ``at``."""
        extra = {"at": self.at, **(kwargs.pop("extra", None) or {})}
        return self.rows(extra=extra, **kwargs)

    def rows(self, *, indices: Sequence[int] | None = None, decimals: int | None = 6,
             extra: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The full tidy table: one row per image x layer x channel (``srop`` empty for a dead channel),
        with columns ``index`` (``indices``, default the result's own), ``layer``, ``depth``, ``channel``,
        ``srop`` and ``srop_input`` (cycles per input pixel, as a fraction of its Nyquist).

        It grows with images x channels (a ResNet-50 has ~26,000 conv channels per image): keep it for
        small models or a few images; :class:`SROPStatistics` rows are the compact summary.
        ``decimals`` rounds the values (6 decimals is well below the SROP's own resolution).
        """
        ids = check_indices(self.indices if indices is None else indices, self.n_images)
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
                out.append({**fixed, "index": ids[k // c], "layer": name, "depth": depth, "channel": k % c,
                            "srop": flat_v[k], "srop_input": flat_i[k]})
        return out


def _setting(kappa: float = 0.85, q: float = 2.0, keep_dc: bool = True, disc: bool = False) -> dict[str, Any]:
    if not (0.0 < float(kappa) <= 1.0):
        raise ValueError(f"kappa (the energy threshold) must lie in (0, 1], got {kappa}")
    if not float(q) > 0:
        raise ValueError(f"q (the spectrum exponent) must be positive, got {q}")
    return {"kappa": float(kappa), "q": float(q), "keep_dc": bool(keep_dc), "disc": bool(disc)}


def _srops_at(model: nn.Module, images: Tensor, layers: LayerSpec = "all conv", *,
              at: Sequence[str] = MEASUREMENT_POINTS, settings: Sequence[Setting] = ({},),
              batch_size: int = 64, device: torch.device | str | None = None, progress: bool = False,
              indices: Sequence[int] | None = None, name: str = "images") -> dict[tuple[str, int], LayerSROPs]:
    """SROPs of ``layers`` at every point of ``at`` under every spectrum setting of ``settings``, from
    one forward pass per batch: ``result[(point, i)]`` is the :class:`LayerSROPs` of point ``point``
    with ``settings[i]`` (missing keys take the paper's defaults: kappa 0.85, q 2, DC kept, every bin).
    The call goes through :func:`infolens._method.method_call`: the model is frozen (eval mode) for the
    call and left exactly as it was.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    points_at = [check_at(a) for a in dict.fromkeys(at)]
    specs = [_setting(**dict(s)) for s in settings]
    if not specs:
        raise ValueError("settings must hold at least one spectrum setting")
    dev = torch.device(device) if device is not None else model_device(model)
    with method_call(model, images, None, indices, name=name, fill_target=False) as call:
        images, idx = call.inputs, call.indices
        plans = {a: plan_points(model, images[:1].to(dev), layers, a) for a in points_at}
        wanted: dict[tuple[str, int], list[tuple[str, str]]] = {}
        for a, pts in plans.items():
            for p in pts:
                wanted.setdefault((p.module, p.call), []).append((a, p.key))
        modules = {n: m for n, m in model.named_modules() if n}
        shapes: dict[tuple[str, str], tuple[int, int]] = {}
        chunks: dict[tuple[str, str, int], list[Tensor]] = {}
        starts = range(0, images.shape[0], int(batch_size))
        for s in _progress.track(starts, desc="SROP", total=len(starts), progress=progress):
            xb = images[s:s + int(batch_size)].to(dev, non_blocking=True)  # asynchronous from pinned memory
            calls: dict[str, int] = {}
            left = set(wanted)
            handles = []

            def make(name: str):
                def hook(module: nn.Module, args: Any, out: Any) -> None:
                    k = calls.get(name, 0)
                    calls[name] = k + 1
                    if (name, k) not in wanted:
                        return
                    t = _first_tensor(out).detach()
                    if t.ndim != 4:
                        raise ValueError(f"layer {name!r} outputs shape {tuple(t.shape)}; SROP needs 2-D maps "
                                         f"(N, C, H, W): choose convolutional layers (e.g. layers='all conv')")
                    # half-precision maps (bf16/fp16 autocast) go to float32 first: the FFTs need it, and the
                    # cumulative spectrum would lose the roll-off's resolution in 8 mantissa bits
                    t = t if t.dtype in (torch.float32, torch.float64) else t.float()
                    for a, key in wanted[(name, k)]:
                        shapes[(a, key)] = (int(t.shape[-2]), int(t.shape[-1]))
                    with torch.autocast(t.device.type, enabled=False):  # autocast speeds the model, not the spectra
                        # kept on the device until the end: no host-device synchronisation per batch
                        vals = [srop_2d(t, **sp).float() for sp in specs]
                    for a, key in wanted[(name, k)]:
                        for i, v in enumerate(vals):
                            chunks.setdefault((a, key, i), []).append(v)
                    left.discard((name, k))
                    if not left:
                        raise _Stop
                return hook

            try:
                for name in {n for n, _ in wanted}:
                    handles.append(modules[name].register_forward_hook(make(name)))
                with torch.no_grad():
                    try:
                        model(xb)
                    except _Stop:
                        pass
            finally:
                for h in handles:
                    h.remove()
            if left:
                raise ValueError(f"layers {sorted(n for n, _ in left)} were not run by the model's forward pass; "
                                 f"choose layers the forward pass uses")
    h_in, w_in = int(images.shape[-2]), int(images.shape[-1])
    out = {}
    for a, pts in plans.items():
        keys = list(dict.fromkeys(p.key for p in pts))
        for i, sp in enumerate(specs):
            out[(a, i)] = LayerSROPs(layers=keys, values={k: torch.cat(chunks[(a, k, i)]).cpu() for k in keys},
                                     shapes={k: shapes[(a, k)] for k in keys},
                                     strides={k: h_in / shapes[(a, k)][0] for k in keys}, input_shape=(h_in, w_in),
                                     params=dict(sp), at=a, sources=describe(pts), indices=list(idx))
    return out


def layer_srops(model: nn.Module, images: Tensor, layers: LayerSpec = "all conv", *, at: str = DEFAULT_AT,
                kappa: float = 0.85, q: float = 2.0, keep_dc: bool = True, disc: bool = False, batch_size: int = 64,
                device: torch.device | str | None = None, progress: bool = False,
                indices: Sequence[int] | None = None) -> LayerSROPs:
    """Per-channel SROPs of ``layers`` of ``model`` for every image, streamed layer by layer (the
    functional form of :class:`SpectralRolloff`).

    Parameters
    ----------
    model : any ``nn.Module`` taking ``images``; it is evaluated in eval mode and comes back exactly as it
        was passed (every submodule's mode, ``requires_grad`` flag and buffer: :func:`infolens._torch.frozen`).
    images : (N, C, H, W) batch (any device; moved to ``device`` one batch at a time).
    layers : a :data:`infolens.probe.LayerSpec`; default every convolution (``"all conv"``).
    at : measurement point (:mod:`infolens.srop.points`): ``"activation"`` (default: the output of the
        non-linearity after each convolution; see :data:`infolens.srop.points.DEFAULT_AT` for what the
        choice rests on), ``"conv"`` (the convolution output) or ``"block"`` (block/stage outputs).
    kappa : energy threshold of the roll-off (0.85, librosa's default, which SROP keeps).
    q : spectrum exponent, 2 (power, our reading of the paper's "energy") or 1 (magnitude).
    keep_dc, disc : see :func:`infolens.spectral.srop_2d` (DC kept, every bin, by default).
    batch_size : images per forward pass; memory is bounded by one layer's maps for one batch.
    device : where the forward pass and the FFTs run; default the model's device.
    progress : show a progress bar over batches.
    indices : the images' global indices (``index`` of the rows), default ``0..N-1``.

    Returns
    -------
    :class:`LayerSROPs` with ``(N, C_l)`` SROPs per layer (keyed by the convolution's name for ``conv``
    and ``activation``, by the block's name for ``block``).
    """
    res = _srops_at(model, images, layers, at=[check_at(at)], settings=[_setting(kappa, q, keep_dc, disc)],
                    batch_size=batch_size, device=device, progress=progress, indices=indices)
    return res[(at, 0)]


class SpectralRolloff:
    """Layer-wise spectral roll-off points of a model's feature maps (arXiv 2102.00369), the method.

    For every selected layer and image, the SROP of each channel's map ``A``: the smallest radius ``r``
    of the rotation-invariant spectrum such that ``sum_{rho <= r} |F(A)(rho)|^q >= kappa sum_rho
    |F(A)(rho)|^q`` (:func:`infolens.spectral.srop_2d`), as a fraction of the layer's Nyquist frequency.

    Parameters
    ----------
    model : nn.Module
        Any module; frozen (eval mode) during :meth:`measure` and restored exactly afterwards.
    layers : LayerSpec
        The layers (:data:`infolens.probe.LayerSpec`); default every convolution (``"all conv"``).
    at : {"activation", "conv", "block"}
        Measurement point (:mod:`infolens.srop.points`): after each convolution's non-linearity (default),
        the convolution output, or block outputs.
    kappa : float in (0, 1]
        Energy threshold of the roll-off (0.85, librosa's default, which SROP keeps).
    q : float > 0
        Spectrum exponent: 2 (power, our reading of the paper's "energy", default) or 1 (magnitude).
    keep_dc : bool
        Count the DC term (default True).
    disc : bool
        Only the bins inside the Nyquist disc (default False: every bin).
    batch_size : int >= 1
        Images per forward pass (memory holds one layer's maps for one batch).
    device : torch.device, str or None
        Where the pass and the FFTs run; default the model's device.

    References
    ----------
    .. [1] "Spectral roll-off points: estimating useful information under the basis of low-frequency
       data representations", arXiv 2102.00369, 2021.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
    ...                           torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    >>> res = SpectralRolloff(net, at="conv").measure(torch.rand(3, 1, 16, 16))
    >>> res.layers, tuple(res.values["2"].shape)
    (['0', '2'], (3, 4))
    >>> bool(((res.values["0"] >= 0) & (res.values["0"] <= 1.5)).all())
    True
    """

    def __init__(self, model: nn.Module, layers: LayerSpec = "all conv", *, at: str = DEFAULT_AT,
                 kappa: float = 0.85, q: float = 2.0, keep_dc: bool = True, disc: bool = False,
                 batch_size: int = 64, device: torch.device | str | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.layers = layers
        self.at = check_at(at)
        self.setting = _setting(kappa, q, keep_dc, disc)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = device

    def measure(self, inputs: Tensor, target: Any = None, *, indices: Sequence[int] | None = None,
                progress: bool = False) -> LayerSROPs:
        """SROPs of every channel of every measured map for each image.

        Parameters
        ----------
        inputs : torch.Tensor, shape (N, C, H, W)
            Floating images in the model's dtype (any device; moved one batch at a time).
        target : None
            Not used (the SROP describes feature maps, not a class); accepted for the shared call shape.
        indices : sequence of N ints or None
            The images' global indices (``index`` of the rows), default ``0..N-1``.
        progress : bool
            Show a progress bar over batches.

        Returns
        -------
        LayerSROPs
            ``values[layer]`` (N, C_l) SROPs as fractions of the layer's Nyquist.
        """
        return self.measure_at(inputs, target, indices=indices, at=(self.at,), settings=(self.setting,),
                               progress=progress)[(self.at, 0)]

    def measure_at(self, inputs: Tensor, target: Any = None, *, indices: Sequence[int] | None = None,
                   at: Sequence[str] = MEASUREMENT_POINTS, settings: Sequence[Setting] | None = None,
                   progress: bool = False) -> dict[tuple[str, int], LayerSROPs]:
        """SROPs at several measurement points and spectrum settings from one forward pass per batch.

        Parameters
        ----------
        inputs, target, indices, progress
            As :meth:`measure`.
        at : sequence of {"activation", "conv", "block"}
            The measurement points (default all three).
        settings : sequence of mappings or None
            Spectrum settings (``kappa``, ``q``, ``keep_dc``, ``disc``); missing keys take this method's
            values. Default: this method's setting alone.

        Returns
        -------
        dict of (str, int) to LayerSROPs
            ``result[(point, i)]``: point ``point`` under ``settings[i]``.
        """
        specs = [{**self.setting, **dict(s)} for s in (settings if settings is not None else ({},))]
        return _srops_at(self.model, inputs, self.layers, at=at, settings=specs, batch_size=self.batch_size,
                         device=self.device, progress=progress, indices=indices, name="inputs")

    def __repr__(self) -> str:
        return (f"SpectralRolloff({type(self.model).__name__}, layers={self.layers!r}, at={self.at!r}, "
                + ", ".join(f"{k}={v!r}" for k, v in self.setting.items()) + ")")
