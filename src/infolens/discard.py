"""Method 2: layer-wise and pixel-wise information discarding (Ma et al., arXiv 1906.04109, ICML 2022).

For an image ``x`` and a layer ``h``, learn noise scales ``sigma`` (one per cell of a coarse grid, or
per pixel) such that the perturbed input ``x' = x + sigma * eps``, ``eps ~ N(0, I)``, keeps the layer's
features within a tolerance of the clean ones, while the perturbation's entropy is as large as
possible. Where ``sigma`` can be large, the layer has discarded the pixel's information.

Definitions (``../shared/METHODS.md`` section 2; the paper's equation numbers could not be read):

* entropy of a cell, a Gaussian: ``H_i = log sigma_i + 1/2 log(2 pi e)`` (:func:`gaussian_entropy`);
* loss per (image, layer) pair: ``L(s) = E_eps[||h(x') - h(x)||^2 / K] / sigma_f^2 - lambda * mean_i H_i``
  with ``sigma = exp(s)``, ``K`` the number of feature elements and ``sigma_f^2`` the same feature MSE
  when every pixel carries noise of scale ``sigma0`` (calibrated per image and per layer);
* constraint level: ``tau = 1.5``. In ``mode="select"`` (the release's procedure) ``lambda`` stays fixed
  and the sigma of the step whose normalised feature error is closest to ``tau`` is kept; in
  ``mode="constrained"`` ``lambda`` follows a dual ascent towards the error ``tau`` and a final
  per-pair bisection on a global log-offset of ``sigma`` hits ``tau`` exactly (on fixed noise).

**Input space.** infolens models take images in ``[0, 1]`` pixel space and normalise inside (a
forward pre-hook), so the noise, ``sigma``, ``sigma0`` and every entropy here live in ``[0, 1]`` pixel
space, identically for every layer and network. For a model normalising by ``std`` the release's
normalised-space values are ``sigma / std`` and ``H - log std`` (ImageNet: ``log std ~ -1.49``).

**Deviation from the release (optimiser).** The release uses SGD with lr ``1e-4`` on ``s``. With the
entropy term a *mean* over cells its gradient on one cell is ``lambda / n_cells`` (5 / 256 for a 16 x 16
grid), so 100 SGD steps move ``log sigma`` by ``100 * 1e-4 * 5 / 256 = 2e-4`` nats: nothing moves
(``tests/test_discard.py::test_release_sgd_does_not_move`` measures it). Adam (lr 0.05) moves it, but
with lambda fixed the error overshoots and with a dual ascent on lambda it oscillates (tens of
hundredths of a nat between runs on deep layers). Our default optimiser, "balance", works on the
constrained problem itself (largest mean entropy at error ``tau``): a scale-free multiplicative step
towards the KKT condition (equal ``dE/d log sigma`` in every cell), a shift that keeps the error on
``tau``, iterate averaging over the last window, and a final bisection. On the trained ``mnist_vgg``
its result agrees to a few thousandths of a nat between seeds and with 3x as many steps. Adam and the
release's SGD stay available (``optimizer=``, ``mode="select"``).

Batching: every (image, layer) pair has its own ``s``, ``sigma_f^2`` and noise; the loss is a sum over
pairs, so one backward pass gives every pair's gradient. Pairs x noise samples form the batch
(``internal_batch_size`` rows per forward pass bound the memory) and the forward pass stops after the
deepest requested layer. Noise is drawn per pair from a generator seeded by the image's global index
(:func:`infolens._torch.image_seed`), and a pair that has converged is frozen (its ``s`` no longer
changes), so a batch gives the same numbers as each image alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_images, check_positive
from ._torch import frozen, image_seed
from .probe import _Stop, capture_hooks, resolve_layers

__all__ = [
    "HALF_LOG_2PI_E",
    "gaussian_entropy",
    "InformationDiscarding",
    "DiscardResult",
    "FeatureDecoder",
    "train_decoder",
    "reconstruction_uncertainty",
    "ReconstructionResult",
]

HALF_LOG_2PI_E: float = 0.5 * math.log(2.0 * math.pi * math.e)
"""``1/2 log(2 pi e) = 1.4189`` nats: the entropy of a unit-variance Gaussian."""


def gaussian_entropy(sigma: Tensor) -> Tensor:
    """Differential entropy (nats) of ``N(0, sigma^2)``, elementwise: ``log sigma + 1/2 log(2 pi e)``."""
    return torch.log(sigma) + HALF_LOG_2PI_E


# --------------------------------------------------------------------------------------- helpers

def _features(model: nn.Module, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """Outputs of ``layers`` for ``x`` (graph kept when grad is enabled), stopping after the last one."""
    with capture_hooks(model, list(layers), detach=False, stop_after_last=True) as cap:
        try:
            model(x)
        except _Stop:
            pass
    missing = [n for n in layers if n not in cap.outputs]
    if missing:
        raise ValueError(f"layers {missing} were not reached by the forward pass; are they used by the model?")
    return cap.outputs


def _grid_shape(grid: int | tuple[int, int] | None, hw: tuple[int, int]) -> tuple[int, int]:
    if grid is None:
        return hw
    gh, gw = (grid, grid) if isinstance(grid, int) else tuple(grid)
    if gh > hw[0] or gw > hw[1]:
        raise ValueError(f"grid={grid} is finer than the image {hw[0]}x{hw[1]}; use grid=None for per-pixel")
    return int(gh), int(gw)


def _upsample(cells: Tensor, hw: tuple[int, int]) -> Tensor:
    """(P, c, gh, gw) cells to (P, c, H, W) pixels, nearest (each cell a block; uneven blocks when the
    grid does not divide the image)."""
    if tuple(cells.shape[-2:]) == tuple(hw):
        return cells
    return F.interpolate(cells, size=hw, mode="nearest")


# --------------------------------------------------------------------------------------- result

@dataclass
class DiscardResult:
    """What :meth:`InformationDiscarding.attribute` returns. Shapes: N images, L layers, cells
    ``(c, gh, gw)`` with ``c = 1`` when sigma is shared across colour channels.

    ``entropy_map`` (N, L, gh, gw): ``H_i`` per cell (channel mean when per channel), nats.
    ``layer_entropy`` (N, L): mean ``H_i`` over cells, the layer's discarded information.
    ``sigma`` (N, L, c, gh, gw): the selected noise scales ([0, 1] pixel space).
    ``feature_error`` (N, L): normalised feature error ``MSE / sigma_f^2`` at the selected sigma.
    ``sigma_f2`` (N, L): the calibration ``sigma_f^2``.
    ``selected_step`` (N, L): optimisation step of the kept sigma (-1: after the exact bisection).
    ``steps_run`` (N, L): steps each pair ran before converging (or ``steps``).
    ``lam`` (N, L): the final lambda (fixed in "select" mode).
    ``error_history``, ``entropy_history`` (T, N, L): per step (NaN after a pair stopped).
    """

    layers: list[str]
    image_size: tuple[int, int]
    entropy_map: Tensor
    layer_entropy: Tensor
    sigma: Tensor
    feature_error: Tensor
    sigma_f2: Tensor
    selected_step: Tensor
    steps_run: Tensor
    lam: Tensor
    error_history: Tensor
    entropy_history: Tensor
    params: dict[str, Any] = field(default_factory=dict)

    def upsampled(self, size: tuple[int, int] | None = None) -> Tensor:
        """Entropy maps nearest-upsampled to the image size (or ``size``): (N, L, H, W), for display."""
        return _upsample(self.entropy_map, tuple(size or self.image_size))

    def cumulative(self) -> Tensor:
        """``layer_entropy`` made non-decreasing over depth (cumulative max over the layer axis), as the
        data-processing inequality says the discarded information should be."""
        return torch.cummax(self.layer_entropy, dim=1).values

    def release_value(self) -> Tensor:
        """The release's layer value, mean ``log(sigma^2 + 1e-6)`` over cells, (N, L)."""
        return torch.log(self.sigma.pow(2) + 1e-6).flatten(2).mean(2)


# --------------------------------------------------------------------------------------- method

class InformationDiscarding:
    """Pixel-wise information discarding of one or several layers (arXiv 1906.04109), batched.

    Parameters (defaults from the release as read in ``../shared/METHODS.md`` unless said otherwise)
    ----------
    model : a classifier taking ``[0, 1]`` images; put in eval mode with frozen weights during the call.
    layers : a :data:`infolens.probe.LayerSpec` (dotted names, globs, types). ``h`` is the layer output;
        choose the ReLU module to measure "after ReLU" as the release does.
    grid : cells of sigma per side (16: 16 x 16 cells, the release's choice for 224 px), a ``(gh, gw)``
        pair, or ``None`` for one sigma per pixel.
    per_channel : one sigma per colour channel instead of one shared across RGB (release: shared).
    steps : most optimisation steps (release: 100). samples : noise samples per step (release: 8).
    optimizer : "balance" (default, ours; see :meth:`_balance_step`): a scale-free step in ``log sigma``
        towards equal ``dE/ds`` in every cell plus a shift that puts the error on ``tau``, averaged
        over the last ``check_every`` steps; "adam" or "sgd" minimise the release's loss
        ``E - lam * mean H`` (the release: SGD lr 1e-4, which does not move sigma, see the module
        docstring). lr : step size (default: 0.5 for balance, 0.05 for Adam, 1e-4 for SGD).
    beta, max_step, damping : balance only: EMA of the gradient ratios (0.9), the largest move of a
        cell per step (0.25 nats), the share of the error offset corrected per step (0.5); ours.
    lam : the entropy weight lambda (release: 5); adam/sgd only (balance reports the implied one).
    tau : the tolerated normalised feature error (1.5). sigma0 : calibration noise scale and the start
        of sigma (0.01). clamp : sigma's range (release: [0.001, 1]), in [0, 1] pixel space.
    mode : "constrained" (default: a final root search on a global log-offset of sigma per pair puts
        the error on ``tau`` on the calibration's noise draw, ``bisect_iters`` evaluations;
        with adam/sgd, lambda also follows a dual ascent with rate ``dual_lr``) or "select" (the
        release's procedure, adam/sgd only: lambda fixed, keep the step whose error is closest to tau).
    calib_samples : noise samples for sigma_f^2 and for the final offset (ours: 64; the two share the
        draw, so their sampling errors largely cancel in the normalised error).
    early_stop : stop a pair once converged, checked every ``check_every`` steps: (balance) its
        window-averaged mean entropy moved less than ``tol`` nats and its error is within 10% of tau;
        (adam/sgd) its mean entropy moved less than ``tol`` and (select) its error has passed tau with
        no better step since the last check, or (constrained) its error is within 5% of tau.
    layer_batching : "joint" (all layers' rows in one forward pass up to the deepest layer; best on a
        GPU) or "per_layer" (one pass per layer, each stopping at its layer: fewer FLOPs; best on a
        CPU); "auto" picks by device.
    internal_batch_size : most rows (pairs x samples) per forward + backward pass; bounds the memory
        (default: 256 on a CPU, where larger batches fall out of the caches and get slower per row;
        8192 on other devices).
    seed : the same seed (and global image indices) gives the same numbers.
    device : where to compute (default: the model's device).
    """

    def __init__(self, model: nn.Module, layers: Any, *, grid: int | tuple[int, int] | None = 16,
                 per_channel: bool = False, steps: int = 100, samples: int = 8, optimizer: str = "balance",
                 lr: float | None = None, beta: float = 0.9, max_step: float = 0.25, damping: float = 0.5,
                 lam: float = 5.0, tau: float = 1.5, sigma0: float = 0.01,
                 clamp: tuple[float, float] = (1e-3, 1.0), mode: str = "constrained", calib_samples: int = 64,
                 early_stop: bool = True, check_every: int = 20, tol: float = 0.005,
                 layer_batching: str = "auto", internal_batch_size: int | None = None,
                 bisect_iters: int = 8, dual_lr: float = 0.1, seed: int = 0,
                 device: str | torch.device | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if mode not in ("select", "constrained"):
            raise ValueError(f"mode must be 'select' or 'constrained', got {mode!r}")
        if optimizer not in ("balance", "adam", "sgd"):
            raise ValueError(f"optimizer must be 'balance', 'adam' or 'sgd', got {optimizer!r}")
        if optimizer == "balance" and mode == "select":
            raise ValueError("mode='select' (the release's lambda-fixed procedure) needs optimizer='adam' or 'sgd'")
        lr = {"balance": 0.5, "adam": 0.05, "sgd": 1e-4}[optimizer] if lr is None else lr
        if not (0 < beta < 1):
            raise ValueError(f"beta must be in (0, 1), got {beta!r}")
        if layer_batching not in ("auto", "joint", "per_layer"):
            raise ValueError(f"layer_batching must be 'auto', 'joint' or 'per_layer', got {layer_batching!r}")
        for name, v in (("lr", lr), ("tau", tau), ("sigma0", sigma0), ("lam", lam), ("max_step", max_step),
                        ("damping", damping)):
            check_positive(v, name)
        for name, v in (("steps", steps), ("samples", samples), ("calib_samples", calib_samples),
                        ("check_every", check_every), ("internal_batch_size", internal_batch_size or 1),
                        ("bisect_iters", bisect_iters)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not (0 < clamp[0] < clamp[1]):
            raise ValueError(f"clamp must be (low, high) with 0 < low < high, got {clamp}")
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.grid, self.per_channel = grid, per_channel
        self.steps, self.samples, self.lr, self.optimizer = steps, samples, lr, optimizer
        self.lam, self.tau, self.sigma0, self.clamp, self.mode = lam, tau, sigma0, clamp, mode
        self.calib_samples, self.early_stop, self.check_every, self.tol = calib_samples, early_stop, check_every, tol
        self.layer_batching, self.internal_batch_size = layer_batching, internal_batch_size
        self.bisect_iters, self.dual_lr, self.seed = bisect_iters, dual_lr, seed
        self.offset_tol = 1e-3
        self.beta, self.max_step, self.damping = beta, max_step, damping
        if device is None:
            p = next(model.parameters(), None)
            device = p.device if p is not None else "cpu"
        self.device = torch.device(device)
        if internal_batch_size is None:
            self.internal_batch_size = 256 if self.device.type == "cpu" else 8192

    def params(self) -> dict[str, Any]:
        """Every setting that determines the numbers (for result folders)."""
        return {k: getattr(self, k) for k in (
            "layers", "grid", "per_channel", "steps", "samples", "optimizer", "lr", "beta", "max_step", "damping",
            "lam", "tau", "sigma0", "clamp", "mode", "calib_samples", "early_stop", "check_every", "tol",
            "bisect_iters", "dual_lr", "seed")}

    # -- the forward pass over rows ---------------------------------------------------------------
    def _row_errors(self, xr: Tensor, row_layer: Tensor, bounds: list[tuple[int, int]],
                    clean_rows: list[Tensor]) -> tuple[list[Tensor], list[tuple[int, int]]]:
        """Per-row feature MSE of ``xr`` (rows sorted by layer; layer ``l`` owns rows ``bounds[l]``),
        in chunks of at most ``internal_batch_size`` rows. Returns the errors chunk by chunk."""
        joint = self.layer_batching == "joint" or (self.layer_batching == "auto" and self.device.type != "cpu")
        n_rows = xr.shape[0]
        if joint:
            edges = list(range(0, n_rows, self.internal_batch_size)) + [n_rows]
            spans = list(zip(edges[:-1], edges[1:]))
        else:
            spans = []
            for a, b in bounds:
                spans.extend((s, min(s + self.internal_batch_size, b)) for s in range(a, b, self.internal_batch_size))
        out, kept = [], []
        for a, b in spans:
            touched = [l for l, (la, lb) in enumerate(bounds) if la < b and lb > a]
            feats = _features(self.model, xr[a:b], [self.layers[l] for l in touched])
            errs = []
            for l in touched:
                la, lb = max(bounds[l][0], a), min(bounds[l][1], b)
                f = feats[self.layers[l]][la - a:lb - a]
                ref = clean_rows[l][la - bounds[l][0]:lb - bounds[l][0]]
                errs.append((f - ref).pow(2).flatten(1).mean(1))
            out.append(torch.cat(errs))
            kept.append((a, b))
        return out, kept

    # -- the verb ----------------------------------------------------------------------------------
    def attribute(self, images: Tensor, *, indices: Sequence[int] | None = None) -> DiscardResult:
        """Learn sigma for every image and layer; ``indices`` are the images' global indices (seeds),
        default ``0..N-1``."""
        x = check_images(images).to(self.device)
        N, C, H, W = x.shape
        idx = list(range(N)) if indices is None else [int(i) for i in indices]
        if len(idx) != N:
            raise ValueError(f"indices must have one entry per image ({N}), got {len(idx)}")
        L, M, dev = len(self.layers), self.samples, self.device
        gh, gw = _grid_shape(self.grid, (H, W))
        cs = C if self.per_channel else 1
        P = L * N  # pairs, layer-major: p = l * N + n
        pair_img = torch.arange(N, device=dev).repeat(L)
        pair_layer = torch.arange(L, device=dev).repeat_interleave(N)
        gens = []
        for l, name in enumerate(self.layers):
            for n in range(N):
                g = torch.Generator(device=dev)
                g.manual_seed(image_seed(self.seed, idx[n], salt=f"discard:{name}"))
                gens.append(g)
        lo, hi = math.log(self.clamp[0]), math.log(self.clamp[1])

        with frozen(self.model):
            with torch.no_grad():
                clean = _features(self.model, x, self.layers)
                clean = {k: v.detach() for k, v in clean.items()}

                def draw(active: list[int], m: int) -> Tensor:
                    return torch.cat([torch.randn((m, C, H, W), generator=gens[p], device=dev) for p in active])

                def rows_for(active: list[int], m: int):
                    act = torch.as_tensor(active, device=dev)
                    row_pair = act.repeat_interleave(m)
                    lay = pair_layer[act]
                    bounds, clean_rows, start = [], [], 0
                    for l in range(L):
                        cnt = int((lay == l).sum()) * m
                        bounds.append((start, start + cnt))
                        clean_rows.append(clean[self.layers[l]][pair_img[row_pair[start:start + cnt]]])
                        start += cnt
                    return act, row_pair, bounds, clean_rows

                def pair_errors(active: list[int], sig_pix_rows: Tensor, eps: Tensor, m: int) -> Tensor:
                    act, row_pair, bounds, clean_rows = rows_for(active, m)
                    xr = x[pair_img[row_pair]] + sig_pix_rows * eps
                    chunks, spans = self._row_errors(xr, pair_layer[row_pair], bounds, clean_rows)
                    return torch.cat(chunks).view(len(active), m).mean(1)

                # calibration: sigma_f^2 = feature MSE under noise of scale sigma0 everywhere
                everyone = list(range(P))
                eps_cal = draw(everyone, self.calib_samples)
                sf2 = pair_errors(everyone, self.sigma0, eps_cal, self.calib_samples)
                sf2 = sf2.clamp_min(torch.finfo(sf2.dtype).tiny)

            lam = torch.full((P,), float(self.lam), device=dev)
            err_hist = torch.full((self.steps, P), float("nan"), device=dev)
            ent_hist = torch.full((self.steps, P), float("nan"), device=dev)
            steps_run = torch.full((P,), self.steps, dtype=torch.long, device=dev)
            active_mask = torch.ones(P, dtype=torch.bool, device=dev)
            s = torch.full((P, cs, gh, gw), math.log(self.sigma0), device=dev)
            balance = self.optimizer == "balance"
            if balance:
                rbar = torch.ones_like(s)
                win_sum, win_n = torch.zeros_like(s), 0
                s_avg = s.clone()  # the tail average: mean of s over the last completed window
                last_avg_ent = torch.full((P,), float("inf"), device=dev)
            else:
                s.requires_grad_(True)
                opt = (torch.optim.Adam([s], lr=self.lr) if self.optimizer == "adam"
                       else torch.optim.SGD([s], lr=self.lr))
                best_s, best_d = s.detach().clone(), torch.full((P,), float("inf"), device=dev)
                best_err = torch.full((P,), float("nan"), device=dev)
                best_step = torch.zeros(P, dtype=torch.long, device=dev)
                last_ent = (s.detach() + HALF_LOG_2PI_E).flatten(1).mean(1)
                last_best = best_step.clone()
            active = list(range(P))

            for t in range(self.steps):
                act = torch.as_tensor(active, device=dev)
                with torch.no_grad():
                    eps = draw(active, M)
                s_act = s[act].detach().requires_grad_(True)
                err = self._errors_and_grads(active, s_act, eps, M, pair_errors, sf2[act], (H, W))
                g = s_act.grad
                ent = (s_act.detach() + HALF_LOG_2PI_E).flatten(1).mean(1)
                if not balance:  # the release's loss E - lam * mean H: d(-lam H)/ds = -lam / n_cells
                    opt.zero_grad(set_to_none=True)
                    s.grad = torch.zeros_like(s)
                    s.grad[act] = g - (lam[act] / g[0].numel()).view(-1, 1, 1, 1)
                with torch.no_grad():
                    e = err
                    err_hist[t, act] = e
                    ent_hist[t, act] = ent
                    if balance:
                        s[act] = self._balance_step(s[act], g, e, rbar, act, lo, hi)
                        lam[act] = g.flatten(1).sum(1)  # KKT: every cell's dE/ds = lambda / n_cells
                        win_sum[act] += s[act]
                        win_n += 1
                    else:
                        d = (e - self.tau).abs()
                        better = d < best_d[act]
                        upd = act[better]
                        best_d[upd], best_err[upd], best_step[upd] = d[better], e[better], t
                        best_s[upd] = s.detach()[upd]
                        if self.mode == "constrained":
                            lam[act] = (lam[act] * torch.exp(self.dual_lr * (self.tau - e) / self.tau)).clamp(1e-3, 1e4)
                        keep = s.detach().clone()
                        opt.step()
                        s.clamp_(lo, hi)
                        s.copy_(torch.where(active_mask.view(-1, 1, 1, 1), s, keep))
                last = t + 1 == self.steps
                if (t + 1) % self.check_every == 0 or last:
                    with torch.no_grad():
                        w = err_hist[max(0, t + 1 - self.check_every):t + 1]
                        err_recent = torch.nanmean(w, 0)
                        if balance:
                            avg = win_sum / max(win_n, 1)
                            s_avg[act] = avg[act]
                            win_sum.zero_()
                            win_n = 0
                            avg_ent = (avg + HALF_LOG_2PI_E).flatten(1).mean(1)
                            done = ((avg_ent - last_avg_ent).abs() < self.tol) & \
                                ((err_recent / self.tau - 1).abs() < 0.1)
                            last_avg_ent = torch.where(active_mask, avg_ent, last_avg_ent)
                        else:
                            ent_now = (s.detach() + HALF_LOG_2PI_E).flatten(1).mean(1)
                            calm = (ent_now - last_ent).abs() < self.tol
                            if self.mode == "select":
                                done = calm | ((err_recent > self.tau) & (best_step == last_best)
                                               & (best_step < t + 1 - self.check_every))
                            else:
                                done = calm & ((err_recent / self.tau - 1).abs() < 0.05)
                            last_ent, last_best = ent_now, best_step.clone()
                        if self.early_stop and not last:
                            done = done & active_mask
                            steps_run[done] = t + 1
                            active_mask &= ~done
                            active = active_mask.nonzero().flatten().tolist()
                    if not active:
                        break

            with torch.no_grad():
                if self.mode == "constrained":
                    start = s_avg if balance else s.detach()
                    final_s, final_err, final_step = self._fit_offset(start, x, sf2, eps_cal, pair_errors, lo, hi)
                else:
                    final_s, final_err, final_step = best_s, best_err, best_step

        sigma = final_s.exp()
        hmap = (final_s + HALF_LOG_2PI_E)

        def nl(t: Tensor) -> Tensor:  # layer-major (L*N, ...) -> (N, L, ...)
            return t.reshape(L, N, *t.shape[1:]).transpose(0, 1).contiguous()

        def hist(t: Tensor) -> Tensor:
            return t.reshape(t.shape[0], L, N).transpose(1, 2).contiguous()

        return DiscardResult(
            layers=list(self.layers), image_size=(H, W),
            entropy_map=nl(hmap.mean(1)), layer_entropy=nl(hmap.flatten(1).mean(1)), sigma=nl(sigma),
            feature_error=nl(final_err), sigma_f2=nl(sf2), selected_step=nl(final_step), steps_run=nl(steps_run),
            lam=nl(lam), error_history=hist(err_hist), entropy_history=hist(ent_hist), params=self.params())

    def _errors_and_grads(self, active: list[int], s_act: Tensor, eps: Tensor, m: int, pair_errors: Any,
                          sf2: Tensor, hw: tuple[int, int]) -> Tensor:
        """Normalised feature errors of the ``active`` pairs (noise ``eps``: ``m`` rows per pair) and
        their gradients, accumulated in ``s_act.grad``: forward and backward run in chunks of at most
        ``internal_batch_size`` rows, so memory is bounded and activations stay cache-sized; the loss is
        a sum over pairs, so chunking changes no number."""
        per = max(1, self.internal_batch_size // m)
        out = []
        for a in range(0, len(active), per):
            b = min(a + per, len(active))
            sig = _upsample(s_act[a:b].exp(), hw).repeat_interleave(m, dim=0)
            e = pair_errors(active[a:b], sig, eps[a * m:b * m], m) / sf2[a:b]
            e.sum().backward()
            out.append(e.detach())
        return torch.cat(out)

    def _balance_step(self, s: Tensor, g: Tensor, err: Tensor, rbar: Tensor, act: Tensor, lo: float,
                      hi: float) -> Tensor:
        """One step of the default optimiser (ours) on the active pairs' ``s`` (P', c, gh, gw).

        At the optimum of "largest mean entropy at error tau" every cell's ``dE/ds_i`` is the same
        (KKT: ``dE/ds_i = lambda / n``). The step moves each cell by ``-eta/2 log(r_i)``, with
        ``r_i = dE/ds_i / mean(dE/ds)`` smoothed over steps (EMA ``beta``): for a layer that is linear
        in the noise, ``dE/ds_i = 2 sigma_i^2 w_i`` and ``eta = 1`` jumps to the optimum (a Newton step
        in ``log sigma``); then it shifts every cell by ``-damping/2 log(E/tau)``, which puts the error
        on ``tau`` (``E`` grows as ``exp(2 shift)`` for a linear layer). Both are scale-free: rescaling
        the features changes nothing."""
        gm = g.flatten(1).clamp_min(0).mean(1).clamp_min(torch.finfo(g.dtype).tiny).view(-1, 1, 1, 1)
        rbar[act] = self.beta * rbar[act] + (1 - self.beta) * (g / gm)
        step = (0.5 * self.lr * torch.log(rbar[act].clamp(0.05, 20.0))).clamp(-self.max_step, self.max_step)
        shift = 0.5 * self.damping * torch.log(err.clamp_min(1e-6) / self.tau).view(-1, 1, 1, 1)
        return (s - step - shift).clamp(lo, hi)

    def _fit_offset(self, s: Tensor, x: Tensor, sf2: Tensor, eps: Tensor, pair_errors: Any, lo: float,
                    hi: float) -> tuple[Tensor, Tensor, Tensor]:
        """Per pair, the offset ``c`` with normalised error(exp(s + c)) = tau, on the calibration's own
        noise draw ``eps`` (common random numbers: the sampling errors of the error and of ``sigma_f^2``
        largely cancel in their ratio). A safeguarded secant on ``log E(c)`` (slope 2 for a layer linear
        in the noise), at most ``bisect_iters`` evaluations, bracket halving when a step leaves the
        bracket; a pair stops once ``|log(E / tau)| <= offset_tol`` (1e-3: 0.0005 nats of entropy)."""
        P = s.shape[0]
        M = eps.shape[0] // P
        _, _, H, W = x.shape
        log_tau = math.log(self.tau)

        def log_err(c: Tensor, act: Tensor) -> Tensor:
            sig = _upsample((s[act] + c.view(-1, 1, 1, 1)).clamp(lo, hi).exp(), (H, W)).repeat_interleave(M, dim=0)
            rows = (act.view(-1, 1) * M + torch.arange(M, device=x.device)).flatten()
            e = pair_errors(act.tolist(), sig, eps[rows], M) / sf2[act]
            return torch.log(e.clamp_min(1e-30))

        span = hi - lo
        a = torch.full((P,), -span, device=x.device)
        b = torch.full((P,), span, device=x.device)
        c = torch.zeros(P, device=x.device)
        f = log_err(c, torch.arange(P, device=x.device)) - log_tau
        best_c, best_f = c.clone(), f.clone()
        slope = torch.full((P,), 2.0, device=x.device)
        for _ in range(self.bisect_iters - 1):
            act = (best_f.abs() > self.offset_tol).nonzero().flatten()  # a pair on target stops (batch-free)
            if act.numel() == 0:
                break
            ca, fa = c[act], f[act]
            a[act] = torch.where(fa <= 0, torch.maximum(a[act], ca), a[act])
            b[act] = torch.where(fa > 0, torch.minimum(b[act], ca), b[act])
            c_new = ca - fa / slope[act]
            c_new = torch.where((c_new > a[act]) & (c_new < b[act]), c_new, (a[act] + b[act]) / 2)
            f_new = log_err(c_new, act) - log_tau
            dc = c_new - ca
            est = (f_new - fa) / torch.where(dc.abs() > 1e-6, dc, torch.ones_like(dc))
            slope[act] = torch.where(dc.abs() > 1e-6, est.clamp(0.25, 8.0), slope[act])
            c[act], f[act] = c_new, f_new
            closer = f_new.abs() < best_f[act].abs()
            best_c[act] = torch.where(closer, c_new, best_c[act])
            best_f[act] = torch.where(closer, f_new, best_f[act])
        final = (s + best_c.view(-1, 1, 1, 1)).clamp(lo, hi)
        return final, (best_f + log_tau).exp(), torch.full((P,), -1, dtype=torch.long, device=x.device)


# --------------------------------------------------------------------------------------- reconstruction

class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class FeatureDecoder(nn.Module):
    """Decoder from a layer's feature to the ``[0, 1]`` image: a ResNet-style stack with
    ``round(log2(image size / feature size))`` nearest-upsampling stages (METHODS.md section 2), a
    residual block per stage and a sigmoid output. A vector feature (linear layer) is first mapped to
    a ``width x ceil(H/4) x ceil(W/4)`` map by a linear layer."""

    def __init__(self, feature_shape: Sequence[int], image_shape: Sequence[int], *, width: int = 32) -> None:
        super().__init__()
        #: constructor arguments, saved beside the state dict so a decoder reloads with weights_only=True
        self.config = {"feature_shape": [int(v) for v in feature_shape],
                       "image_shape": [int(v) for v in image_shape], "width": int(width)}
        C, H, W = image_shape
        self.image_hw = (int(H), int(W))
        fs = tuple(int(v) for v in feature_shape)
        if len(fs) == 3 and fs[1] * fs[2] == 1:
            fs = (fs[0],)
        self.vector = len(fs) == 1
        if self.vector:
            h0, w0 = math.ceil(H / 4), math.ceil(W / 4)
            self.stem: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(fs[0], width * h0 * w0), nn.ReLU(),
                                                 nn.Unflatten(1, (width, h0, w0)))
        else:
            h0 = fs[1]
            self.stem = nn.Sequential(nn.Conv2d(fs[0], width, 3, padding=1), nn.ReLU())
        ups = max(0, round(math.log2(H / h0)))
        blocks: list[nn.Module] = [_ResBlock(width)]
        for _ in range(ups):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1),
                       nn.ReLU(), _ResBlock(width)]
        self.body = nn.Sequential(*blocks)
        self.head = nn.Conv2d(width, C, 3, padding=1)

    def forward(self, feature: Tensor) -> Tensor:
        z = self.body(self.stem(feature))
        if tuple(z.shape[-2:]) != self.image_hw:
            z = F.interpolate(z, size=self.image_hw, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.head(z))


def train_decoder(model: nn.Module, layer: str, images: Tensor, *, epochs: int = 3, lr: float = 0.01,
                  batch_size: int = 128, width: int = 32, seed: int = 0,
                  device: str | torch.device | None = None) -> FeatureDecoder:
    """Train a :class:`FeatureDecoder` from ``layer``'s clean feature back to ``images`` (MSE, Adam
    lr 0.01 as METHODS.md says; epochs and width are ours, sized for the demo budget). The model is
    frozen; features are computed batch by batch (memory bounded by ``batch_size``)."""
    images = check_images(images)
    name = resolve_layers(model, layer)
    if len(name) != 1:
        raise ValueError(f"layer must select exactly one layer, got {name}")
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else "cpu"
    gen = torch.Generator().manual_seed(seed)
    with frozen(model), torch.no_grad():
        f0 = _features(model, images[:2].to(device), name)[name[0]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dec = FeatureDecoder(f0.shape[1:], images.shape[1:], width=width).to(device)
    opt = torch.optim.Adam(dec.parameters(), lr=lr)
    n = images.shape[0]
    with frozen(model):
        dec.train()
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, batch_size):
                xb = images[perm[i:i + batch_size]].to(device)
                with torch.no_grad():
                    fb = _features(model, xb, name)[name[0]]
                loss = F.mse_loss(dec(fb), xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return dec.eval()


@dataclass
class ReconstructionResult:
    """``uncertainty`` (N, L): mean over pixels of the Gaussian entropy ``1/2 log(2 pi e v + 1e-6)`` of
    the reconstruction residual, ``v = E_eps[(g(h(x')) - x)^2]`` at the selected sigma (nats per pixel);
    ``clean`` (N, L): the same with ``v = (g(h(x)) - x)^2`` (no noise: the decoder's own error);
    ``induced`` (N, L): the same with ``v = E_eps[(g(h(x')) - g(h(x)))^2]``, the spread of the
    reconstruction caused by the discarded noise alone (the decoder's own bias removed: on MNIST a deep
    decoder reproduces the black background exactly, so ``uncertainty`` is dominated by the floor there
    while ``induced`` still grows with what the layer discards);
    ``uncertainty_map`` (N, L, H, W): the per-pixel entropy (channel mean). NaN where no decoder."""

    layers: list[str]
    uncertainty: Tensor
    clean: Tensor
    uncertainty_map: Tensor
    induced: Tensor


def reconstruction_uncertainty(model: nn.Module, decoders: Mapping[str, nn.Module], images: Tensor,
                               result: DiscardResult, *, samples: int = 8, seed: int = 0,
                               indices: Sequence[int] | None = None, floor: float = 1e-6) -> ReconstructionResult:
    """Reconstruction uncertainty under the selected noise (our reading of the paper, METHODS.md §2: its
    formal definition could not be confirmed). We take the 1/2 of a Gaussian entropy, so the value is
    in nats per pixel like ``H``; the release-style ``mean log(2 pi e e^2 + 1e-6)`` is twice it."""
    x = check_images(images)
    p = next(model.parameters(), None)
    dev = p.device if p is not None else x.device
    x = x.to(dev)
    N, C, H, W = x.shape
    if result.sigma.shape[0] != N:
        raise ValueError(f"result holds {result.sigma.shape[0]} images but images has {N}")
    idx = list(range(N)) if indices is None else [int(i) for i in indices]
    L = len(result.layers)
    unc = torch.full((N, L), float("nan"), device=dev)
    cln = torch.full((N, L), float("nan"), device=dev)
    ind = torch.full((N, L), float("nan"), device=dev)
    umap = torch.full((N, L, H, W), float("nan"), device=dev)
    with frozen(model), torch.no_grad():
        for l, name in enumerate(result.layers):
            dec = decoders.get(name)
            if dec is None:
                continue
            dec.eval()
            gens = [torch.Generator(device=dev).manual_seed(image_seed(seed, i, salt=f"recon:{name}")) for i in idx]
            eps = torch.stack([torch.randn((samples, C, H, W), generator=g, device=dev) for g in gens])
            sig = _upsample(result.sigma[:, l].to(dev), (H, W)).unsqueeze(1)
            xp = (x.unsqueeze(1) + sig * eps).flatten(0, 1)
            rec = dec(_features(model, xp, [name])[name]).view(N, samples, C, H, W)
            v = (rec - x.unsqueeze(1)).pow(2).mean(1)
            ent = 0.5 * torch.log(2 * math.pi * math.e * v + floor)
            unc[:, l] = ent.flatten(1).mean(1)
            umap[:, l] = ent.mean(1)
            r0 = dec(_features(model, x, [name])[name])
            cln[:, l] = (0.5 * torch.log(2 * math.pi * math.e * (r0 - x).pow(2) + floor)).flatten(1).mean(1)
            vi = (rec - r0.unsqueeze(1)).pow(2).mean(1)
            ind[:, l] = (0.5 * torch.log(2 * math.pi * math.e * vi + floor)).flatten(1).mean(1)
    return ReconstructionResult(layers=list(result.layers), uncertainty=unc, clean=cln, uncertainty_map=umap,
                                induced=ind)
