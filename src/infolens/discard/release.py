"""The official release's pixel-wise procedure (``step_capability_x.py`` + ``step_result.py`` of
haotianSustc/deepinfo), batched over images and layers.

Per (image, layer) pair, exactly as the release's loop over single images does it:

1. the parameter is ``sigma`` itself, one value per cell of a ``16 x 16`` grid shared across colour
   channels, initialised to ``sigma0 = 0.01`` (``capability_sigma_init_decay``), in the noise space
   (the release: the normalised input);
2. ``sigma_f^2`` = the post-ReLU feature MSE of ``samples`` (8) noisy copies at the initial sigma, one
   noise draw, before the first step;
3. ``steps`` (100) steps of plain SGD (lr ``1e-4``, ``capability_lr_x``) on
   ``L = MSE(relu h(x'), relu h(x)) / sigma_f^2 - lambda * mean_cells log(2 pi e sigma^2)`` with
   ``lambda = 5`` fixed (``capability_lambda_init_x``), each step with a fresh draw of ``samples`` copies;
4. each step's sigma is saved *before* its update, with that step's normalised error; the step kept is
   the one whose error is closest to ``tau = 1.5`` (``result_distance_clip``).

**Penalty form.** The noise layer's file is missing from the release. We use
``penalty = mean_cells log(2 pi e sigma^2)`` (twice the Gaussian entropy per cell): the release prints
``-penalty_loss / lambda - log(2 pi e)`` as "penalty_loss", which is ``mean log sigma^2`` (the quantity
``step_result.py`` reports) only for this form, and ``step_capability_y.py`` writes its own penalty the
same way, ``mean log(2 pi e r^2 + 1e-6)``. With ``mean log sigma`` the printed number would be
``mean log sigma - log(2 pi e)``, a quantity reported nowhere.

**Deviations (named).** A pair whose loss or sigma turns non-finite stops (keeps its best step so far);
the release would carry NaNs. Noise comes from one generator per pair (seeded by the image's global index
and the layer), not from the global CUDA stream, so a batch equals each image alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._core import PairForward

LOG_2PI_E = math.log(2.0 * math.pi * math.e)


@dataclass
class Solution:
    """Per pair (P = layers x images, layer-major): the kept ``sigma`` (P, 1, gh, gw) in the noise space,
    its normalised error, the kept step (-1: set by the final root search), steps run, ``sigma_f^2``, the
    multiplier (fixed for the release; implied for the constrained solver) and per-step histories (T, P)
    of the error and of the mean entropy (NaN after a pair stopped)."""

    sigma: Tensor
    error: Tensor
    step: Tensor
    steps_run: Tensor
    sf2: Tensor
    lam: Tensor
    error_history: Tensor
    entropy_history: Tensor


def release_penalty(sigma: Tensor) -> Tensor:
    """``mean_cells log(2 pi e sigma^2)`` per pair, (P,)."""
    return torch.log(2 * math.pi * math.e * sigma.pow(2)).flatten(1).mean(1)


def solve_release(pf: PairForward, gens: list[torch.Generator], cells: tuple[int, int], *, steps: int = 100,
                  samples: int = 8, lr: float = 1e-4, lam: float = 5.0, tau: float = 1.5,
                  sigma0: float = 0.01) -> Solution:
    """Run the release's procedure on every pair of ``pf`` at once (see the module docstring)."""
    dev, dt = pf.x.device, pf.x.dtype
    P = pf.N * pf.L
    M = samples
    everyone = torch.arange(P, device=dev)
    sigma = torch.full((P, 1, *cells), float(sigma0), device=dev, dtype=dt)
    with torch.no_grad():
        sf2 = pf.feature_mse(everyone, sigma, pf.draw(gens, range(P), M), M)
    sf2 = sf2.clamp_min(torch.finfo(sf2.dtype).tiny)
    err_hist = torch.full((steps, P), float("nan"), device=dev, dtype=dt)
    ent_hist = torch.full((steps, P), float("nan"), device=dev, dtype=dt)
    best_d = torch.full((P,), float("inf"), device=dev, dtype=dt)
    best_sigma, best_err = sigma.clone(), torch.full((P,), float("nan"), device=dev, dtype=dt)
    best_step = torch.zeros(P, dtype=torch.long, device=dev)
    steps_run = torch.full((P,), steps, dtype=torch.long, device=dev)
    alive = torch.ones(P, dtype=torch.bool, device=dev)
    for t in range(steps):
        act = alive.nonzero().flatten()
        if act.numel() == 0:
            break
        eps = pf.draw(gens, act.tolist(), M)
        s = sigma[act].clone().requires_grad_(True)
        e = pf.feature_mse(act, s, eps, M, weight=1.0 / sf2[act], backward=True)
        (-lam * release_penalty(s)).sum().backward()
        with torch.no_grad():
            err = e / sf2[act]
            err_hist[t, act] = err
            ent_hist[t, act] = 0.5 * release_penalty(s)
            d = (err - tau).abs()
            better = d < best_d[act]  # strictly closer: ties keep the earlier step (numpy argmin)
            upd = act[better]
            best_d[upd], best_err[upd], best_step[upd] = d[better], err[better], t
            best_sigma[upd] = sigma[upd]
            new = sigma[act] - lr * s.grad
            ok = torch.isfinite(err) & torch.isfinite(new.flatten(1)).all(1)
            sigma[act[ok]] = new[ok]
            steps_run[act[~ok]] = t
            alive[act[~ok]] = False
    return Solution(sigma=best_sigma, error=best_err, step=best_step, steps_run=steps_run, sf2=sf2,
                    lam=torch.full((P,), float(lam), device=dev, dtype=dt), error_history=err_hist,
                    entropy_history=ent_hist)
