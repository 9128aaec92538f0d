"""The method class: :class:`InformationDiscarding` and its result :class:`DiscardResult`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_images, check_positive
from .._torch import frozen, model_device
from ..probe import resolve_layers
from ._core import HALF_LOG_2PI_E, PairForward, grid_shape, input_std, upsample
from .constrained import solve_constrained
from .release import solve_release

#: The release's own settings (``main.py`` of haotianSustc/deepinfo): SGD on sigma, lambda fixed.
RELEASE_OPTIONS: dict[str, Any] = {"lr": 1e-4, "lam": 5.0}
#: The constrained solver's settings (ours; :mod:`infolens.discard.constrained`).
CONSTRAINED_OPTIONS: dict[str, Any] = {"calib_samples": 64, "clamp": (1e-3, 1.0), "lr": 0.5, "beta": 0.9,
                                       "max_step": 0.25, "damping": 0.5, "check_every": 20, "tol": 0.005,
                                       "early_stop": True, "bisect_iters": 8}
CONVERGED_WITHIN: float = 0.1
"""A pair has converged when its kept error is within 10 % of ``tau``."""


@dataclass
class DiscardResult:
    """What :meth:`InformationDiscarding.measure` returns. N images, L layers, ``(gh, gw)`` cells.

    ``entropy_map`` (N, L, gh, gw): ``H_i = log sigma_i + 1/2 log(2 pi e)`` per cell, nats, in the noise
    space (``space``); ``layer_entropy`` (N, L) its mean over cells, the layer's discarded information;
    ``layer_entropy_pixel`` (N, L) the same in ``[0, 1]`` pixel space (``+ log_std``, the mean over
    channels of log std; 0 for a model that does not normalise). ``sigma`` (N, L, gh, gw) the kept noise
    scales (noise space). ``feature_error`` (N, L) the normalised feature error at the kept sigma,
    ``sigma_f2`` the calibration. ``selected_step`` the kept step (-1: set by the constrained solver's
    final root search), ``steps_run`` the steps run, ``converged`` the kept error within 10 % of ``tau``,
    ``at_step_limit`` a run that stopped at the step limit while still moving (release: the kept step is
    the last one; constrained: no early stop). ``lam`` the multiplier (release: fixed; constrained: implied
    by the KKT condition). ``error_history``/``entropy_history`` (T, N, L), NaN after a pair stopped.
    """

    layers: list[str]
    indices: list[int]
    image_size: tuple[int, int]
    solver: str
    space: str
    log_std: float
    entropy_map: Tensor
    layer_entropy: Tensor
    layer_entropy_pixel: Tensor
    sigma: Tensor
    feature_error: Tensor
    sigma_f2: Tensor
    selected_step: Tensor
    steps_run: Tensor
    converged: Tensor
    at_step_limit: Tensor
    lam: Tensor
    error_history: Tensor
    entropy_history: Tensor
    params: dict[str, Any] = field(default_factory=dict)

    def upsampled(self, size: tuple[int, int] | None = None) -> Tensor:
        """Entropy maps nearest-upsampled to the image size (or ``size``): (N, L, H, W), for display."""
        return upsample(self.entropy_map, tuple(size or self.image_size))

    def cumulative(self) -> Tensor:
        """``layer_entropy`` made non-decreasing over depth (cumulative max), as ``step_result.py`` does."""
        return torch.cummax(self.layer_entropy, dim=1).values

    def release_value(self) -> Tensor:
        """The release's layer value, mean ``log(sigma^2 + 1e-6)`` over cells (``step_result.py``), (N, L)."""
        return torch.log(self.sigma.pow(2) + 1e-6).flatten(2).mean(2)

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per (image, layer): index, layer, depth, entropy (noise space), entropy_pixel,
        entropy_cummax, release_log_sigma2, sigma_mean, feature_error, sigma_f2, selected_step, steps_run,
        converged, at_step_limit, lam, solver, space."""
        cum, rel = self.cumulative(), self.release_value()
        cols = {"entropy": self.layer_entropy, "entropy_pixel": self.layer_entropy_pixel, "entropy_cummax": cum,
                "release_log_sigma2": rel, "sigma_mean": self.sigma.flatten(2).mean(2),
                "feature_error": self.feature_error, "sigma_f2": self.sigma_f2, "lam": self.lam}
        vals = {k: v.detach().cpu().tolist() for k, v in cols.items()}
        ints = {k: v.cpu().tolist() for k, v in (("selected_step", self.selected_step), ("steps_run", self.steps_run))}
        flags = {k: v.cpu().tolist() for k, v in (("converged", self.converged), ("at_step_limit", self.at_step_limit))}
        rows = []
        for j, i in enumerate(self.indices):
            for l, layer in enumerate(self.layers):
                rows.append({"index": i, "layer": layer, "depth": l, **{k: float(v[j][l]) for k, v in vals.items()},
                             **{k: int(v[j][l]) for k, v in ints.items()}, **{k: bool(v[j][l]) for k, v in flags.items()},
                             "solver": self.solver, "space": self.space})
        return rows


class InformationDiscarding:
    """Pixel-wise and layer-wise information discarding (Ma et al., arXiv 1906.04109), batched over images
    and layers. For every image ``x`` and layer ``h``: noise ``x' = x + sigma * eps`` (``eps ~ N(0, I)``,
    one sigma per cell of a grid, shared across colour channels) such that the post-ReLU feature error
    ``MSE(h(x'), h(x)) / sigma_f^2`` is ``tau`` (1.5) with the entropy ``mean_i log sigma_i + 1/2 log(2 pi e)``
    as large as possible; ``sigma_f^2`` is the error of uniform ``sigma0`` (0.01) noise.

    Parameters, grouped (defaults: the release, haotianSustc/deepinfo ``main.py``, unless said)
    ----------
    What is measured:
        model : a classifier taking ``[0, 1]`` images (frozen and in eval mode during the call, restored after).
        layers : dotted names, globs or types (:func:`infolens.probe.resolve_layers`).
        grid : cells per side (16: ``capability_sigma_size``), a ``(gh, gw)`` pair, or ``None`` per pixel.
        space : "normalized" (the release: noise added after the model's own mean/std normalisation, for
            models normalising in a pre-hook, :func:`infolens.models.load.with_input_normalization`) or
            "pixel" (noise in ``[0, 1]`` pixels). Entropies come in both spaces (differ by log std).
        relu : apply ReLU to the layer output before comparing (the release: ``relu_method(feature)``).
    The protocol:
        solver : "release" (default) or "constrained".
            "release" (:mod:`infolens.discard.release`): the release's procedure exactly: sigma itself is
            the parameter, SGD lr 1e-4, lambda = 5 fixed, ``steps`` x ``samples``, each step's sigma saved
            before its update, keep the step whose error is closest to ``tau``.
            "constrained" (:mod:`infolens.discard.constrained`, ours): the exact constrained optimum,
            largest mean entropy at error exactly ``tau`` (a KKT-balancing step in log sigma and a final
            root search); it differs from the release in that its sigma is the optimum, not a point on
            the release's SGD trajectory, so it does not depend on the learning rate or the noise draws.
            Default "release": infolens checks the paper's claims, and the paper's numbers come from this
            procedure; "constrained" is reported beside it.
        steps (100, ``capability_epoch``), samples (8, ``capability_batch_size``), tau (1.5,
        ``result_distance_clip``), sigma0 (0.01, ``capability_sigma_init_decay``), seed.
        options : the solver's own settings, merged over :data:`RELEASE_OPTIONS` or :data:`CONSTRAINED_OPTIONS`.
    Compute:
        layer_batching : "joint" (every layer's rows in one pass up to the deepest layer; a GPU), "per_layer"
            (a pass per layer, fewer FLOPs; a CPU) or "auto" (by device).
        internal_batch_size : most noisy copies per forward + backward pass (default 256 on a CPU, 8192
            elsewhere); bounds the memory and changes no number.
        device : default the model's device.

    Deviations from the release, each named: noise from one generator per (image, layer) seeded by the
    image's global index, not from the global CUDA stream (a batch equals each image alone); a pair whose
    loss turns non-finite stops.
    """

    def __init__(self, model: nn.Module, layers: Any, *, grid: int | tuple[int, int] | None = 16,
                 space: str = "normalized", relu: bool = True, solver: str = "release", steps: int = 100,
                 samples: int = 8, tau: float = 1.5, sigma0: float = 0.01, seed: int = 0,
                 options: Mapping[str, Any] | None = None, layer_batching: str = "auto",
                 internal_batch_size: int | None = None, device: str | torch.device | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if solver not in ("release", "constrained"):
            raise ValueError(f"solver must be 'release' or 'constrained', got {solver!r}")
        if space not in ("normalized", "pixel"):
            raise ValueError(f"space must be 'normalized' or 'pixel', got {space!r}")
        if layer_batching not in ("auto", "joint", "per_layer"):
            raise ValueError(f"layer_batching must be 'auto', 'joint' or 'per_layer', got {layer_batching!r}")
        defaults = RELEASE_OPTIONS if solver == "release" else CONSTRAINED_OPTIONS
        unknown = sorted(set(options or {}) - set(defaults))
        if unknown:
            raise ValueError(f"options {unknown} are not settings of solver {solver!r}; known: {sorted(defaults)}")
        for name, v in (("tau", tau), ("sigma0", sigma0)):
            check_positive(v, name)
        for name, v in (("steps", steps), ("samples", samples), ("internal_batch_size", internal_batch_size or 1)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.grid, self.space, self.relu, self.solver = grid, space, relu, solver
        self.steps, self.samples, self.tau, self.sigma0, self.seed = steps, samples, tau, sigma0, seed
        self.options = {**defaults, **(options or {})}
        self.device = torch.device(device) if device is not None else model_device(model)
        self.layer_batching = layer_batching
        self.internal_batch_size = internal_batch_size or (256 if self.device.type == "cpu" else 8192)

    def params(self) -> dict[str, Any]:
        """Every setting that determines the numbers (for result folders)."""
        return {"layers": list(self.layers), "grid": self.grid, "space": self.space, "relu": self.relu,
                "solver": self.solver, "steps": self.steps, "samples": self.samples, "tau": self.tau,
                "sigma0": self.sigma0, "seed": self.seed, "options": dict(self.options)}

    def _pairs(self, x: Tensor) -> PairForward:
        joint = self.layer_batching == "joint" or (self.layer_batching == "auto" and self.device.type != "cpu")
        std = input_std(self.model, x.shape[1], self.space)
        return PairForward(self.model, self.layers, x, std, relu=self.relu, joint=joint,
                           chunk_rows=self.internal_batch_size)

    def measure(self, images: Tensor, *, indices: Sequence[int] | None = None) -> DiscardResult:
        """Learn sigma for every image and layer; ``indices`` are the images' global indices (seeds),
        default ``0..N-1``."""
        x = check_images(images).to(self.device)
        N, C, H, W = x.shape
        idx = list(range(N)) if indices is None else [int(i) for i in indices]
        if len(idx) != N:
            raise ValueError(f"indices must have one entry per image ({N}), got {len(idx)}")
        cells = grid_shape(self.grid, (H, W))
        with frozen(self.model):
            pf = self._pairs(x)
            gens = pf.generators(idx, self.seed)
            common = dict(steps=self.steps, samples=self.samples, tau=self.tau, sigma0=self.sigma0)
            if self.solver == "release":
                sol = solve_release(pf, gens, cells, **common, **self.options)
                at_limit = (sol.step == self.steps - 1) & (sol.error < self.tau)
            else:
                sol = solve_constrained(pf, gens, cells, **common, **self.options)
                at_limit = sol.steps_run >= self.steps
        return self._result(sol, idx, (H, W), pf.std.flatten(), at_limit)

    def _result(self, sol: Any, idx: list[int], hw: tuple[int, int], std: Tensor, at_limit: Tensor) -> DiscardResult:
        N, L = len(idx), len(self.layers)

        def nl(t: Tensor) -> Tensor:  # layer-major (L*N, ...) -> (N, L, ...)
            return t.reshape(L, N, *t.shape[1:]).transpose(0, 1).contiguous()

        def hist(t: Tensor) -> Tensor:
            return t.reshape(t.shape[0], L, N).transpose(1, 2).contiguous()

        hmap = torch.log(sol.sigma.abs()) + HALF_LOG_2PI_E  # (P, 1, gh, gw)
        log_std = float(torch.log(std).mean())
        ent = nl(hmap.flatten(1).mean(1))
        err = nl(sol.error)
        return DiscardResult(
            layers=list(self.layers), indices=idx, image_size=hw, solver=self.solver, space=self.space,
            log_std=log_std, entropy_map=nl(hmap[:, 0]), layer_entropy=ent, layer_entropy_pixel=ent + log_std,
            sigma=nl(sol.sigma[:, 0]), feature_error=err, sigma_f2=nl(sol.sf2), selected_step=nl(sol.step),
            steps_run=nl(sol.steps_run), converged=(err / self.tau - 1).abs() <= CONVERGED_WITHIN,
            at_step_limit=nl(at_limit), lam=nl(sol.lam), error_history=hist(sol.error_history),
            entropy_history=hist(sol.entropy_history), params=self.params())
