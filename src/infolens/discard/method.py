"""The method class: :class:`InformationDiscarding` and its result :class:`DiscardResult`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_positive
from .._method import MethodResult, method_call
from .._torch import model_device
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
class DiscardResult(MethodResult):
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
    and layers.

    For every image ``x`` and layer ``h``: noise ``x' = x + sigma * eps`` (``eps ~ N(0, I)``, one sigma per
    cell of a grid, shared across colour channels) such that the post-ReLU feature error
    ``MSE(h(x'), h(x)) / sigma_f^2`` is ``tau`` with the entropy ``H = mean_i log sigma_i + 1/2 log(2 pi e)``
    as large as possible (the paper's Eq. 3: ``max H(X') s.t. E||h(x') - h(x)||^2 <= tau sigma_f^2``);
    ``sigma_f^2`` is the error of uniform ``sigma0`` noise. Defaults are the release's
    (haotianSustc/deepinfo ``main.py``) unless said.

    Parameters
    ----------
    model : nn.Module
        A classifier taking ``[0, 1]`` images; frozen (eval mode) during :meth:`measure`, restored after.
    layers : LayerSpec
        Dotted names, globs or types (:func:`infolens.probe.resolve_layers`).
    grid : int, (int, int) or None
        Cells per side (16: ``capability_sigma_size``), a ``(gh, gw)`` pair, or ``None`` per pixel.
    space : {"normalized", "pixel"}
        "normalized" (the release: noise after the model's own mean/std normalisation, for models
        normalising in a pre-hook, :func:`infolens.models.load.with_input_normalization`) or "pixel"
        (noise in ``[0, 1]`` pixels). Entropies come in both spaces (they differ by log std).
    relu : bool
        Apply ReLU to the layer output before comparing (the release's ``relu_method(feature)``).
    solver : {"release", "constrained"}
        "release" (default, :mod:`infolens.discard.release`): the release's procedure exactly: sigma itself
        is the parameter, SGD lr 1e-4, lambda = 5 fixed, ``n_steps`` x ``n_samples``, each step's sigma
        saved before its update, the step whose error is closest to ``tau`` kept; the paper's numbers come
        from it. "constrained" (:mod:`infolens.discard.constrained`, ours): the exact constrained optimum
        (a KKT-balancing step in log sigma and a final root search), which does not depend on the learning
        rate or the noise draws; reported beside it.
    n_steps : int >= 1
        Optimisation steps (100, ``capability_epoch``).
    n_samples : int >= 1
        Noise samples per step (8, ``capability_batch_size``).
    tau : float > 0
        The error level (1.5, ``result_distance_clip``).
    sigma0 : float > 0
        The calibration noise (0.01, ``capability_sigma_init_decay``).
    seed : int
        With the images' global indices, seeds each (image, layer)'s noise.
    options : mapping or None
        The solver's own settings, merged over :data:`RELEASE_OPTIONS` or :data:`CONSTRAINED_OPTIONS`.
    layer_batching : {"auto", "joint", "per_layer"}
        "joint" (every layer's rows in one pass up to the deepest layer; a GPU), "per_layer" (a pass per
        layer, fewer FLOPs; a CPU) or "auto" (by device).
    internal_batch_size : int or None
        Most noisy copies per forward + backward pass (default 256 on a CPU, 8192 elsewhere); bounds the
        memory and changes no number.
    device : torch.device, str or None
        Default the model's device.

    Notes
    -----
    Deviations from the release: noise from one generator per (image, layer) seeded by the image's
    global index, not from the global CUDA stream (a batch equals each image alone); a pair whose loss
    turns non-finite stops.

    References
    ----------
    .. [1] H. Ma, Y. Zhang, F. Zhou, Q. Zhang, "Quantifying layerwise information discarding of neural
       networks", arXiv 1906.04109; ICML 2022 as "Quantification and analysis of layer-wise and
       pixel-wise information discarding".

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
    >>> method = InformationDiscarding(net, "1", grid=4, n_steps=3, n_samples=2)
    >>> res = method.measure(torch.rand(2, 1, 8, 8), indices=[4, 5])
    >>> tuple(res.layer_entropy.shape), [r["index"] for r in res.to_rows()]
    ((2, 1), [4, 5])
    """

    def __init__(self, model: nn.Module, layers: Any, *, grid: int | tuple[int, int] | None = 16,
                 space: str = "normalized", relu: bool = True, solver: str = "release", n_steps: int = 100,
                 n_samples: int = 8, tau: float = 1.5, sigma0: float = 0.01, seed: int = 0,
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
        for name, v in (("n_steps", n_steps), ("n_samples", n_samples),
                        ("internal_batch_size", internal_batch_size or 1)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.grid, self.space, self.relu, self.solver = grid, space, relu, solver
        self.n_steps, self.n_samples, self.tau, self.sigma0, self.seed = n_steps, n_samples, tau, sigma0, seed
        self.options = {**defaults, **(options or {})}
        self.device = torch.device(device) if device is not None else model_device(model)
        self.layer_batching = layer_batching
        self.internal_batch_size = internal_batch_size or (256 if self.device.type == "cpu" else 8192)

    def params(self) -> dict[str, Any]:
        """Every setting that determines the numbers (for result folders)."""
        return {"layers": list(self.layers), "grid": self.grid, "space": self.space, "relu": self.relu,
                "solver": self.solver, "n_steps": self.n_steps, "n_samples": self.n_samples, "tau": self.tau,
                "sigma0": self.sigma0, "seed": self.seed, "options": dict(self.options)}

    def _pairs(self, x: Tensor) -> PairForward:
        joint = self.layer_batching == "joint" or (self.layer_batching == "auto" and self.device.type != "cpu")
        std = input_std(self.model, x.shape[1], self.space)
        return PairForward(self.model, self.layers, x, std, relu=self.relu, joint=joint,
                           chunk_rows=self.internal_batch_size)

    def measure(self, inputs: Tensor, target: Any = None, *, indices: Sequence[int] | None = None) -> DiscardResult:
        """Learn sigma for every image and layer.

        Parameters
        ----------
        inputs : torch.Tensor, shape (N, C, H, W)
            Images in ``[0, 1]``, floating, in the model's dtype (moved to ``device``).
        target : None
            Not used (the method measures features, not a class); accepted for the shared call shape.
        indices : sequence of N ints or None
            The images' global indices: they seed each (image, layer)'s noise, default ``0..N-1``.

        Returns
        -------
        DiscardResult
            ``layer_entropy`` (N, L) and the maps, sigmas, errors and convergence flags.
        """
        with method_call(self.model, inputs, None, indices, fill_target=False) as call:
            x, idx = call.inputs.to(self.device), call.indices
            N, C, H, W = x.shape
            cells = grid_shape(self.grid, (H, W))
            pf = self._pairs(x)
            gens = pf.generators(idx, self.seed)
            common = dict(steps=self.n_steps, samples=self.n_samples, tau=self.tau, sigma0=self.sigma0)
            if self.solver == "release":
                sol = solve_release(pf, gens, cells, **common, **self.options)
                at_limit = (sol.step == self.n_steps - 1) & (sol.error < self.tau)
            else:
                sol = solve_constrained(pf, gens, cells, **common, **self.options)
                at_limit = sol.steps_run >= self.n_steps
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
