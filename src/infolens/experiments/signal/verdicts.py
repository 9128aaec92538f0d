"""Claims A1-A4 of arXiv 1803.08337 (``docs/claims.md``) from one measurement per training seed, and the
tables behind them (accuracy with intervals, seed-to-seed spread).

One training run is one sample (amendment 1 of the claims): every autoencoder is trained with several
seeds. A1's interval resamples test digits and seeds together; an A2 pair counts as decided only when
every seed decides it the same way (:func:`infolens.signal.combine_orders`); A3 reads the combined order;
A4's Kruskal-Wallis runs over each image's NMI averaged over the seeds. Pure functions of measurements:
nothing here trains a model or writes a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ...claims import N_RESAMPLES, Interval, bootstrap, claim_row, most_row, spearman
from ...signal import SignalMeasurement, SignalOrder, combine_orders, kruskal_wallis

PAPER = "signal"
MIN_CLASSIFIERS = 5
"""A2/A3 need the testbed's five MNIST classifiers (docs/claims.md: at least 5 classifiers)."""


# --------------------------------------------------------------------------- intervals over digits and seeds


def seeds_and_digits(values: Tensor, *, seed: int = 0) -> Interval:
    """Mean of ``values`` ``(S, N)`` (one row per training seed, one column per test digit) with a 95 %
    percentile interval that resamples digits and seeds together: each resample draws ``N`` digits and
    ``S`` seeds with replacement (independently, fixed generators) and averages the drawn seeds' means over
    the drawn digits. ``n`` is the number of digits (the source units)."""
    v = values.double()
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        raise ValueError(f"values must be (seeds, digits), got {tuple(v.shape)}")
    s = v.shape[0]
    g = torch.Generator().manual_seed(int(seed) + 7919)
    sidx = torch.randint(0, s, (N_RESAMPLES, s), generator=g)

    def stat(idx: Tensor) -> Tensor:
        if idx.ndim == 1:
            return v[:, idx].mean()
        per_seed = v[:, idx].mean(-1)  # (S, R)
        return per_seed.T.gather(1, sidx).mean(1)

    return bootstrap(stat, v.shape[1], batched=True, seed=seed)


def digits_interval(values: Tensor, *, seed: int = 0) -> Interval:
    """Mean of ``values`` ``(N,)`` with its percentile interval over digits."""
    v = values.double()
    return bootstrap(lambda idx: v[idx].mean(-1), v.shape[0], batched=True, seed=seed)


# --------------------------------------------------------------------------- A2's rule


def order_verdict(order: SignalOrder, *, few: bool) -> str:
    """A2 from an order (combined over seeds): "not reproduced" only for a decided cycle (a > b > c > a,
    every pair of it decided); an undecided pair (lack of power) gives "inconclusive"; "reproduced" when
    every pair is decided, transitively, on at least :data:`MIN_CLASSIFIERS` classifiers."""
    v = order.verdict()  # infolens.signal.order_verdict, the one home of the rule
    return "inconclusive" if few and v == "reproduced" else v


# --------------------------------------------------------------------------- the claims


def _tuned_rows(m: SignalMeasurement) -> list[int]:
    return [m.sources.index(f"tuned:{nm}") for nm in m.classifiers]


def claim_rows(ms: Sequence[SignalMeasurement], params: Mapping[str, int], *, variant: str = "primary",
               label: str = "", min_classifiers: int = MIN_CLASSIFIERS) -> tuple[list[dict], dict]:
    """A1-A4 as ``docs/claims.md`` defines them, from one :class:`~infolens.signal.SignalMeasurement` per
    training seed (same classifiers, same test digits). ``variant``: ``"primary"`` (the off-domain
    autoencoder) or ``"sensitivity"``; ``label`` is appended to each row's model (e.g. ``"MNIST-pretrained
    AE"``) so the two variants' rows stay distinct. Returns the rows and the numbers behind them."""
    ms = list(ms)
    if not ms:
        raise ValueError("claim_rows needs at least one measurement (one per training seed)")
    names = ms[0].classifiers
    if any(m.classifiers != names or m.indices != ms[0].indices for m in ms):
        raise ValueError("every seed's measurement must cover the same classifiers and test digits")
    k, n, s_n = len(names), len(ms[0].indices), len(ms)
    suffix = f", {label}" if label else ""
    c = torch.stack([m.correct.double() for m in ms])  # (seeds, S, K, N)
    untuned = ms[0].sources.index("untuned")
    tuned = _tuned_rows(ms[0])
    rows: list[dict[str, Any]] = []
    seeds_note = f"{s_n} training seed{'s' if s_n > 1 else ''}"
    # A1: own tuned minus untuned, paired over digits; interval over digits and seeds
    a1 = []
    for j, nm in enumerate(names):
        d = c[:, tuned[j], j] - c[:, untuned, j]  # (seeds, N)
        iv = seeds_and_digits(d)
        per = ", ".join(f"{float(x):+.4f}" for x in d.mean(1))
        a1.append(claim_row(PAPER, "A1", f"{nm}{suffix}", "accuracy on own tuned reconstructions minus on the untuned "
                            "AE's", iv, 0.0, variant=variant, note=f"{seeds_note}; per seed {per}"))
    rows += a1 + [most_row(a1, share=1.0, model=f"every classifier{suffix}",
                           note="A1 must hold for every classifier")]
    # A2: a pair decided only when every seed decides it alike
    orders = [m.order() for m in ms]
    order = combine_orders(orders)
    n_dec = sum(p["decided"] for p in order.pairs)
    few = k < min_classifiers
    v2 = order_verdict(order, few=few)
    per_seed = ", ".join(str(sum(p["decided"] for p in o.pairs)) for o in orders)
    note2 = (f"{n_dec} of {len(order.pairs)} pairs decided alike by all {s_n} seeds (per seed: {per_seed}; McNemar "
             f"exact, alpha {order.alpha}); {'transitive' if order.is_transitive else 'cycles: ' + str(order.cycles)}"
             f"; order: {order.describe()}" + (f"; only {k} classifiers (needs >= {min_classifiers})" if few else ""))
    model_set = f"MNIST set ({k}){suffix}"
    rows.append(claim_row(PAPER, "A2", model_set, "share of classifier pairs decided (every seed alike), relation "
                          "transitive", {"value": n_dec / max(len(order.pairs), 1), "n": n}, 1.0, side=">=",
                          verdict=v2, note=note2, variant=variant))
    # A3: the order against accuracy and size
    pos = order.position()
    acc = c[0, ms[0].sources.index("plain")].mean(-1)
    size = torch.tensor([float(params[nm]) for nm in names], dtype=torch.float64)
    rho_acc, rho_size = float(spearman(pos, acc)), float(spearman(pos, size))
    same = [w for w, r in (("accuracy", rho_acc), ("parameter count", rho_size)) if abs(r) >= 1 - 1e-12]
    if few or not order.is_total or not (math.isfinite(rho_acc) and math.isfinite(rho_size)):
        v3 = "inconclusive"
        why = "fewer than 5 classifiers" if few else ("no total order over the seeds" if not order.is_total
                                                       else "tied accuracies or sizes leave rho undefined")
    else:
        v3, why = ("not reproduced" if same else "reproduced"), ""
    note3 = (f"rho(order, parameter count) = {rho_size:.3f}; order {'total' if order.is_total else 'not total'}"
             + (f"; the order equals the {' and '.join(same)} order" if same else "") + (f"; {why}" if why else ""))
    rows.append(claim_row(PAPER, "A3", model_set, "Spearman rho(order, test accuracy)", {"value": rho_acc, "n": k},
                          1.0, side="<", verdict=v3, note=note3, variant=variant, min_units=None))
    # A4: Kruskal-Wallis over the tuned autoencoders' per-image NMI (mean over seeds), digits resampled
    g = torch.stack([m.nmi[tuned] for m in ms]).mean(0)  # (K, N)
    h, p = kruskal_wallis(g)

    def kw_p(idx: Tensor) -> Tensor:
        if idx.ndim == 1:
            return kruskal_wallis(g[:, idx])[1]
        return torch.cat([kruskal_wallis(g[:, idx[b:b + 50]].transpose(0, 1))[1] for b in range(0, idx.shape[0], 50)])

    iv4 = bootstrap(kw_p, n, batched=True)
    rho4 = float(spearman(pos, g.mean(1)))
    h_seeds = [float(kruskal_wallis(m.nmi[tuned])[0]) for m in ms]
    rows.append(claim_row(PAPER, "A4", model_set, "Kruskal-Wallis p over the tuned AEs' per-image NMI",
                          {"value": float(p), "ci_low": iv4.low, "ci_high": iv4.high, "n": n}, 0.01, side="<",
                          variant=variant,
                          note=(f"H = {float(h):.1f} on the seed-mean NMI (per seed: "
                                f"{', '.join(f'{x:.0f}' for x in h_seeds)}); rho(mean NMI, order) = {rho4:.3f}; the "
                                "groups share their images (Kruskal-Wallis treats them as independent)")))
    info = {"order": order, "orders": orders, "rho_accuracy": rho_acc, "rho_size": rho_size, "kw_h": float(h),
            "kw_p": float(p), "kw_h_seeds": h_seeds, "rho_nmi": rho4, "position": pos.tolist(),
            "accuracy": acc.tolist()}
    return rows, info


# --------------------------------------------------------------------------- tables


def accuracy_rows(ms: Sequence[SignalMeasurement], *, autoencoder: str) -> list[dict[str, Any]]:
    """``tables/signal_accuracy.csv``: per classifier, accuracy on the original digits, on the untuned
    autoencoder's reconstructions and on its own tuned ones (intervals over digits, and seeds for the
    reconstructions), the untuned drop (original minus untuned, what A1 can let back in) and the share of
    reconstruction pixels outside [0, 1] (untuned, own tuned; reconstructions reach the classifiers
    unclipped)."""
    names = ms[0].classifiers
    c = torch.stack([m.correct.double() for m in ms])  # (seeds, S, K, N)
    oor = torch.stack([m.out_of_range.double() for m in ms])  # (seeds, S, N)
    plain, untuned = ms[0].sources.index("plain"), ms[0].sources.index("untuned")
    tuned = _tuned_rows(ms[0])
    out = []
    for j, nm in enumerate(names):
        orig = digits_interval(c[0, plain, j])
        unt = seeds_and_digits(c[:, untuned, j])
        own = seeds_and_digits(c[:, tuned[j], j])
        drop = seeds_and_digits(c[:, plain, j] - c[:, untuned, j])
        per_seed_drop = (c[:, plain, j] - c[:, untuned, j]).mean(1)
        out.append({"autoencoder": autoencoder, "classifier": nm, "seeds": len(ms), "n": orig.n,
                    "original": orig.value, "original_low": orig.low, "original_high": orig.high,
                    "untuned": unt.value, "untuned_low": unt.low, "untuned_high": unt.high,
                    "tuned": own.value, "tuned_low": own.low, "tuned_high": own.high,
                    "untuned_drop": drop.value, "untuned_drop_low": drop.low, "untuned_drop_high": drop.high,
                    "untuned_drop_seed_min": float(per_seed_drop.min()),
                    "untuned_drop_seed_max": float(per_seed_drop.max()),
                    "out_of_range_untuned": float(oor[:, untuned].mean()),
                    "out_of_range_tuned": float(oor[:, tuned[j]].mean())})
    return out


def seed_rows(ms: Sequence[SignalMeasurement], seeds: Sequence[int], info: Mapping[str, Any], *,
              autoencoder: str) -> list[dict[str, Any]]:
    """The seed-to-seed spread: per (seed, classifier) the accuracies behind A1, A1's difference and the
    out-of-range share; per seed the pairs it decides and its Kruskal-Wallis H."""
    out = []
    for s, (m, o) in enumerate(zip(ms, info["orders"])):
        c = m.correct.double().mean(-1)
        untuned = m.sources.index("untuned")
        for j, (nm, t) in enumerate(zip(m.classifiers, _tuned_rows(m))):
            out.append({"autoencoder": autoencoder, "seed": seeds[s], "classifier": nm,
                        "untuned_accuracy": float(c[untuned, j]), "tuned_accuracy": float(c[t, j]),
                        "a1_difference": float(c[t, j] - c[untuned, j]),
                        "out_of_range_tuned": float(m.out_of_range[t].mean()),
                        "pairs_decided": sum(p["decided"] for p in o.pairs), "kw_h": info["kw_h_seeds"][s],
                        "ranking": " > ".join(o.ranking)})
    return out


def spread_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Per classifier, the A1 difference's range over seeds (``min .. max``), for the summary."""
    out: dict[str, str] = {}
    for nm in dict.fromkeys(r["classifier"] for r in rows):
        v = [float(r["a1_difference"]) for r in rows if r["classifier"] == nm]
        out[nm] = f"{min(v):+.4f} .. {max(v):+.4f}"
    return out


__all__ = ["PAPER", "MIN_CLASSIFIERS", "seeds_and_digits", "digits_interval", "order_verdict", "claim_rows",
           "accuracy_rows", "seed_rows", "spread_summary"]
