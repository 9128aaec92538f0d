"""The exact constrained optimum (ours): for each pair, the largest mean entropy ``mean_i log sigma_i``
at normalised feature error exactly ``tau``.

The release (:mod:`.release`) stops on the SGD trajectory of a penalised loss with ``lambda`` fixed and
keeps the step whose error is closest to ``tau``: its sigma is where that trajectory happens to be, not
the most noise the layer tolerates, so it depends on the learning rate, the number of steps and the
noise draws. This solver answers the question the paper asks ("how much can be discarded at this error")
exactly:

* parameter ``s = log sigma`` (scale-free, sigma stays positive, clamped to ``clamp``);
* a multiplicative step towards the KKT condition of the constrained problem (every cell's ``dE/ds_i``
  equal, ``= lambda / n``), smoothed over steps (EMA ``beta``), plus a shift that keeps the error on
  ``tau``; iterate averaging over the last ``check_every`` steps;
* a pair stops once its window-averaged mean entropy moves less than ``tol`` nats and its error is
  within 10 % of tau;
* a final safeguarded secant search on a global log-offset of sigma per pair puts the error on ``tau``
  on the calibration's own noise draw (``calib_samples`` copies, common random numbers).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._core import HALF_LOG_2PI_E, PairForward
from .release import Solution


def balance_step(s: Tensor, g: Tensor, err: Tensor, rbar: Tensor, *, tau: float, lr: float, beta: float,
                 max_step: float, damping: float, lo: float, hi: float) -> tuple[Tensor, Tensor]:
    """One step on ``s`` (P', 1, gh, gw) given ``g = dE/ds``: each cell moves by ``-lr/2 log(r_i)`` with
    ``r_i = dE/ds_i / mean(dE/ds)`` smoothed (EMA ``beta``; for a layer linear in the noise ``lr = 1`` is
    a Newton step in ``log sigma``), then every cell by ``-damping/2 log(E / tau)``. Returns the new
    ``s`` and the new ``rbar``."""
    gm = g.flatten(1).clamp_min(0).mean(1).clamp_min(torch.finfo(g.dtype).tiny).view(-1, 1, 1, 1)
    rbar = beta * rbar + (1 - beta) * (g / gm)
    step = (0.5 * lr * torch.log(rbar.clamp(0.05, 20.0))).clamp(-max_step, max_step)
    shift = 0.5 * damping * torch.log(err.clamp_min(1e-6) / tau).view(-1, 1, 1, 1)
    return (s - step - shift).clamp(lo, hi), rbar


def fit_offset(pf: PairForward, s: Tensor, sf2: Tensor, eps: Tensor, m: int, *, tau: float, lo: float, hi: float,
               iters: int = 8, tol: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Per pair the offset ``c`` with error(exp(s + c)) = tau on the draw ``eps`` (``m`` rows per pair):
    a safeguarded secant on ``log E(c)`` (slope 2 for a layer linear in the noise), at most ``iters``
    evaluations; a pair stops once ``|log(E / tau)| <= tol``. Returns the shifted ``s`` and its error."""
    P, dev, dt = s.shape[0], s.device, s.dtype
    log_tau = math.log(tau)
    rows_of = torch.arange(m, device=dev)

    def log_err(c: Tensor, act: Tensor) -> Tensor:
        sig = (s[act] + c.view(-1, 1, 1, 1)).clamp(lo, hi).exp()
        rows = (act.view(-1, 1) * m + rows_of).flatten()
        e = pf.feature_mse(act, sig, eps[rows], m) / sf2[act]
        return torch.log(e.clamp_min(1e-30))

    span = hi - lo
    a, b = torch.full((P,), -span, device=dev, dtype=dt), torch.full((P,), span, device=dev, dtype=dt)
    c = torch.zeros(P, device=dev, dtype=dt)
    f = log_err(c, torch.arange(P, device=dev)) - log_tau
    best_c, best_f = c.clone(), f.clone()
    slope = torch.full((P,), 2.0, device=dev, dtype=dt)
    for _ in range(iters - 1):
        act = (best_f.abs() > tol).nonzero().flatten()
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
    return (s + best_c.view(-1, 1, 1, 1)).clamp(lo, hi), (best_f + log_tau).exp()


def solve_constrained(pf: PairForward, gens: list[torch.Generator], cells: tuple[int, int], *, steps: int = 100,
                      samples: int = 8, calib_samples: int = 64, tau: float = 1.5, sigma0: float = 0.01,
                      clamp: tuple[float, float] = (1e-3, 1.0), lr: float = 0.5, beta: float = 0.9,
                      max_step: float = 0.25, damping: float = 0.5, check_every: int = 20, tol: float = 0.005,
                      early_stop: bool = True, bisect_iters: int = 8) -> Solution:
    """Largest mean entropy at error ``tau`` for every pair of ``pf`` (module docstring). ``clamp`` bounds
    sigma in the noise space."""
    dev, dt = pf.x.device, pf.x.dtype
    P, M = pf.N * pf.L, samples
    lo, hi = math.log(clamp[0]), math.log(clamp[1])
    everyone = torch.arange(P, device=dev)
    with torch.no_grad():
        eps_cal = pf.draw(gens, range(P), calib_samples)
        sf2 = pf.feature_mse(everyone, torch.full((P, 1, 1, 1), float(sigma0), device=dev, dtype=dt), eps_cal, calib_samples)
    sf2 = sf2.clamp_min(torch.finfo(sf2.dtype).tiny)
    s = torch.full((P, 1, *cells), math.log(sigma0), device=dev, dtype=dt)
    rbar, win_sum, win_n = torch.ones_like(s), torch.zeros_like(s), 0
    s_avg = s.clone()
    last_avg_ent = torch.full((P,), float("inf"), device=dev, dtype=dt)
    lam = torch.zeros(P, device=dev, dtype=dt)
    err_hist = torch.full((steps, P), float("nan"), device=dev, dtype=dt)
    ent_hist = torch.full((steps, P), float("nan"), device=dev, dtype=dt)
    steps_run = torch.full((P,), steps, dtype=torch.long, device=dev)
    alive = torch.ones(P, dtype=torch.bool, device=dev)
    for t in range(steps):
        act = alive.nonzero().flatten()
        if act.numel() == 0:
            break
        eps = pf.draw(gens, act.tolist(), M)
        s_act = s[act].clone().requires_grad_(True)
        e = pf.feature_mse(act, s_act, eps, M, weight=1.0 / sf2[act], backward=True, transform=torch.exp) / sf2[act]
        g = s_act.grad
        with torch.no_grad():
            err_hist[t, act] = e
            ent_hist[t, act] = (s[act] + HALF_LOG_2PI_E).flatten(1).mean(1)
            s[act], rbar[act] = balance_step(s[act], g, e, rbar[act], tau=tau, lr=lr, beta=beta, max_step=max_step,
                                             damping=damping, lo=lo, hi=hi)
            lam[act] = g.flatten(1).sum(1)  # KKT: every cell's dE/ds = lambda / n_cells
            win_sum[act] += s[act]
            win_n += 1
            if (t + 1) % check_every == 0 or t + 1 == steps:
                avg = win_sum / max(win_n, 1)
                s_avg[act] = avg[act]
                win_sum.zero_()
                win_n = 0
                avg_ent = (avg + HALF_LOG_2PI_E).flatten(1).mean(1)
                recent = torch.nanmean(err_hist[max(0, t + 1 - check_every):t + 1], 0)
                done = ((avg_ent - last_avg_ent).abs() < tol) & ((recent / tau - 1).abs() < 0.1) & alive
                last_avg_ent = torch.where(alive, avg_ent, last_avg_ent)
                if early_stop and t + 1 < steps:
                    steps_run[done] = t + 1
                    alive &= ~done
    with torch.no_grad():
        final_s, final_err = fit_offset(pf, s_avg, sf2, eps_cal, calib_samples, tau=tau, lo=lo, hi=hi,
                                        iters=bisect_iters)
    return Solution(sigma=final_s.exp(), error=final_err, step=torch.full((P,), -1, dtype=torch.long, device=dev),
                    steps_run=steps_run, sf2=sf2, lam=lam, error_history=err_hist, entropy_history=ent_hist)
