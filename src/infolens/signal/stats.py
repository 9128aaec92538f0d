"""Tests behind the order of classifiers and claim A4 (arXiv 1803.08337): McNemar's exact test per pair,
the order it implies, and Kruskal-Wallis over per-image NMI. Pure tensor functions (no scipy)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._stats import ranks_and_ties

ALPHA = 0.05
"""Level at which a pair of classifiers is decided (docs/claims.md, A2)."""


def mcnemar_exact(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """McNemar's exact test of paired binary outcomes along the last dimension (batched).

    ``x[..., i]`` and ``y[..., i]`` are two outcomes on the same image ``i``. Returns ``(n10, n01, p)``:
    the discordant counts (x right and y wrong; the converse) and the two-sided exact p-value
    ``min(1, 2 P(B <= min(n10, n01)))`` with ``B ~ Binomial(n10 + n01, 1/2)`` (1 when no pair is
    discordant), as ``statsmodels``' ``mcnemar(exact=True)``."""
    x, y = x.bool(), y.bool()
    n10 = (x & ~y).sum(-1)
    n01 = (~x & y).sum(-1)
    n = (n10 + n01).double()
    m = torch.minimum(n10, n01).double()
    kmax = int(n.max()) if n.numel() else 0
    k = torch.arange(kmax + 1, dtype=torch.float64, device=n.device)
    nn_ = n.unsqueeze(-1)
    logpmf = (torch.lgamma(nn_ + 1) - torch.lgamma(k + 1) - torch.lgamma((nn_ - k).clamp_min(0) + 1)
              - nn_ * math.log(2))
    logpmf = torch.where(k <= m.unsqueeze(-1), logpmf, torch.full_like(logpmf, -math.inf))
    p = (2 * torch.logsumexp(logpmf, -1).exp()).clamp(max=1.0)
    return n10, n01, torch.where(n > 0, p, torch.ones_like(p))


def kruskal_wallis(groups: Tensor) -> tuple[Tensor, Tensor]:
    """Kruskal-Wallis H test of ``K`` groups of ``N`` values, ``groups`` shaped ``(..., K, N)`` (batched
    over leading dimensions). Returns ``(H, p)``: H with the tie correction, p from the chi-squared
    distribution with ``K - 1`` degrees of freedom (``scipy.stats.kruskal``). NaN values are refused."""
    if groups.ndim < 2 or groups.shape[-2] < 2 or groups.shape[-1] < 1:
        raise ValueError(f"groups must have shape (..., K >= 2, N >= 1), got {tuple(groups.shape)}")
    if bool(torch.isnan(groups).any()):
        raise ValueError("groups contains NaN; drop those images first")
    k, n = groups.shape[-2:]
    mtot = k * n
    ranks, ties = ranks_and_ties(groups.double().reshape(*groups.shape[:-2], mtot))
    r = ranks.reshape(*groups.shape[:-2], k, n).sum(-1)
    h = 12.0 / (mtot * (mtot + 1)) * (r * r / n).sum(-1) - 3.0 * (mtot + 1)
    corr = 1 - ties / (mtot ** 3 - mtot)
    h = torch.where(corr > 0, h / corr.clamp_min(1e-300), torch.zeros_like(h))
    p = torch.special.gammaincc(torch.full_like(h, (k - 1) / 2), (h / 2).clamp_min(0))
    return h, p


def order_verdict(decided: Mapping[tuple[str, str], int]) -> str:
    """Claim A2's verdict from the decided comparisons of every pair of classifiers.

    Parameters
    ----------
    decided : mapping ``(a, b) -> +1 / -1 / 0``
        One entry per unordered pair: ``+1`` when ``a`` is decided to let in more signal than ``b``,
        ``-1`` when ``b`` is decided over ``a``, ``0`` when the pair is undecided (the test lacks power,
        or the seeds disagree).

    Returns
    -------
    str
        ``"not reproduced"`` only for a *decided cycle* (``a > b > c > a`` with each of the three pairs
        decided: no total order can exist); else ``"reproduced"`` when every pair is decided (a decided
        tournament without a 3-cycle is transitive, hence a total order); else ``"inconclusive"``: an
        undecided pair is a lack of power, not evidence against the order (docs/claims.md, A2).
    """
    names = sorted({n for pair in decided for n in pair})
    if len(names) < 2:
        raise ValueError(f"decided must hold at least one pair of classifiers, got {dict(decided)!r}")
    k = len(names)
    beats = torch.zeros(k, k, dtype=torch.long)
    for (a, b), d in decided.items():
        if d not in (-1, 0, 1) or a == b:
            raise ValueError(f"decided[({a!r}, {b!r})] must be +1, -1 or 0 for two different classifiers, got {d!r}")
        i, j = names.index(a), names.index(b)
        if d:
            w, l = (i, j) if d > 0 else (j, i)
            beats[w, l] = 1
    if bool((beats & beats.T).any()):
        raise ValueError("decided holds one pair in both directions with opposite signs; give each pair once")
    if bool(torch.einsum("ab,bc,ca->", beats, beats, beats) > 0):
        return "not reproduced"
    n_pairs = k * (k - 1) // 2
    n_decided = int(beats.sum())
    return "reproduced" if n_decided == n_pairs else "inconclusive"


@dataclass
class SignalOrder:
    """The order of classifiers by the signal they let in (see :func:`signal_order`).

    ``matrix[a, b]``: accuracy of classifier ``b`` on reconstructions tuned for ``a``. ``pairs``: one dict
    per unordered pair (``a, b, acc_ab, acc_ba, diff, n10, n01, p, decided, more``). ``beats[a, b]``: ``a``
    lets in more signal than ``b``, decided. ``is_total``: every pair decided and the relation transitive.
    ``ranking``: names from most to least signal (by wins, then by the mean accuracy of the others on the
    row). ``cycles``: triples ``(a, b, c)`` with a > b > c > a."""

    names: list[str]
    matrix: Tensor
    pairs: list[dict[str, Any]]
    beats: Tensor
    wins: Tensor
    row_mean: Tensor
    ranking: list[str]
    is_transitive: bool
    is_total: bool
    cycles: list[tuple[str, str, str]]
    alpha: float = ALPHA
    test: str = field(default="McNemar exact (two-sided), paired over the same test images")

    def describe(self) -> str:
        """``"a > b > c"`` when total, else the decided comparisons, the undecided ones and the cycles."""
        if self.is_total:
            return " > ".join(self.ranking)
        parts = [f"{p['more']} > {p['b'] if p['more'] == p['a'] else p['a']}" for p in self.pairs if p["decided"]]
        undecided = [f"{p['a']} ~ {p['b']}" for p in self.pairs if not p["decided"]]
        cyc = [" > ".join(c + (c[0],)) for c in self.cycles]
        return "; ".join(parts + undecided + [f"cycle {c}" for c in cyc]) or "no pair decided"

    def decided(self) -> dict[tuple[str, str], int]:
        """Per unordered pair ``(a, b)``: ``+1`` (a > b decided), ``-1`` (b > a decided) or ``0`` (undecided),
        the input of :func:`order_verdict`."""
        return {(p["a"], p["b"]): (0 if not p["decided"] else 1 if p["more"] == p["a"] else -1) for p in self.pairs}

    def verdict(self) -> str:
        """A2's verdict from this order (:func:`order_verdict`): a decided cycle is "not reproduced", an
        undecided pair "inconclusive"."""
        return order_verdict(self.decided())

    def position(self) -> Tensor:
        """Per classifier (in ``names`` order), its place in ``ranking``: K for the most signal, 1 the least."""
        k = len(self.names)
        return torch.tensor([float(k - self.ranking.index(nm)) for nm in self.names], dtype=torch.float64)


def signal_order(correct: Tensor, names: Sequence[str], *, alpha: float = ALPHA) -> SignalOrder:
    """Order classifiers by the signal they let in, from per-image outcomes of the cross matrix.

    ``correct[a, b, i]`` (``(K, K, N)``, bool or 0/1): classifier ``b`` is right on test image ``i``
    reconstructed by the autoencoder tuned for ``a``. Definition (ours; the paper reads the order off the
    off-diagonal pattern): ``a`` lets in more signal than ``b`` when ``acc[a -> b] > acc[b -> a]`` (``b``
    reads ``a``'s reconstructions better than ``a`` reads ``b``'s: what ``a`` lets in contains what ``b``
    needs, not conversely). Each pair is tested with McNemar's exact test on the same images
    (:func:`mcnemar_exact`) and *decided* when ``p < alpha`` (0.05, docs/claims.md, no multiplicity
    correction). The order is *total* when every pair is decided and the relation is transitive."""
    names = list(names)
    k = len(names)
    if not isinstance(correct, Tensor) or correct.ndim != 3 or correct.shape[:2] != (k, k) or correct.shape[2] < 1:
        raise ValueError(f"correct must be a tensor of shape (K, K, N) with K = {k} names, got "
                         f"{tuple(correct.shape) if isinstance(correct, Tensor) else type(correct).__name__}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    c = correct.bool()
    matrix = c.double().mean(-1)
    n10, n01, p = mcnemar_exact(c, c.transpose(0, 1))
    diff = matrix - matrix.T
    eye = torch.eye(k, dtype=torch.bool)
    beats = (diff > 0) & (p < alpha) & ~eye
    pairs = []
    for a in range(k):
        for b in range(a + 1, k):
            dec = bool(beats[a, b] | beats[b, a])
            pairs.append({"a": names[a], "b": names[b], "acc_ab": float(matrix[a, b]), "acc_ba": float(matrix[b, a]),
                          "diff": float(diff[a, b]), "n10": int(n10[a, b]), "n01": int(n01[a, b]), "p": float(p[a, b]),
                          "decided": dec, "more": (names[a] if beats[a, b] else names[b]) if dec else ""})
    return _assemble(names, matrix, pairs, beats, alpha)


def _assemble(names: list[str], matrix: Tensor, pairs: list[dict[str, Any]], beats: Tensor, alpha: float,
              test: str | None = None) -> SignalOrder:
    k = len(names)
    eye = torch.eye(k, dtype=torch.bool)
    bi = beats.long()
    is_transitive = not bool((((bi @ bi) > 0) & ~beats).any())
    cyc = torch.einsum("ab,bc,ca->abc", bi, bi, bi).nonzero().tolist()
    cycles = sorted({min((names[x], names[y], names[w]), (names[y], names[w], names[x]), (names[w], names[x], names[y]))
                     for x, y, w in cyc})
    is_total = is_transitive and all(q["decided"] for q in pairs)
    wins = beats.sum(1)
    off = matrix.masked_fill(eye, 0).sum(1) / max(k - 1, 1)
    ranking = sorted(names, key=lambda nm: (-int(wins[names.index(nm)]), -float(off[names.index(nm)])))
    order = SignalOrder(names, matrix, pairs, beats, wins, off, ranking, is_transitive, is_total, cycles, alpha)
    if test is not None:
        order.test = test
    return order


def combine_orders(orders: Sequence[SignalOrder]) -> SignalOrder:
    """The order over several training seeds: a pair is decided only when every seed decides it, the same
    way (the claims' amendment 1: one training run is one sample).

    ``orders``: one :func:`signal_order` per seed, over the same classifiers in the same order. The result's
    ``matrix`` is the seeds' mean; each pair keeps ``diff`` (mean), ``p`` (the largest over seeds), the
    summed discordant counts, ``seeds_decided`` (how many seeds decided it) and ``seeds_agree`` (all
    decided seeds chose the same side); ``decided`` is ``seeds_decided == len(orders)`` and ``seeds_agree``.
    Beats, wins, ranking, transitivity and cycles follow from the combined decisions as in
    :func:`signal_order`. One order passes through unchanged in its decisions."""
    orders = list(orders)
    if not orders:
        raise ValueError("combine_orders needs at least one SignalOrder (one per training seed)")
    names = orders[0].names
    if any(o.names != names for o in orders):
        raise ValueError(f"every order must rank the same classifiers in the same order, got "
                         f"{[o.names for o in orders]}")
    alpha = orders[0].alpha
    beats_all = torch.stack([o.beats for o in orders])  # (S, K, K)
    beats = beats_all.all(0)
    matrix = torch.stack([o.matrix for o in orders]).mean(0)
    pairs = []
    for i, p in enumerate(orders[0].pairs):
        a, b = names.index(p["a"]), names.index(p["b"])
        per = [q.pairs[i] for q in orders]
        n_dec = sum(q["decided"] for q in per)
        sides = {q["more"] for q in per if q["decided"]}
        dec = bool(beats[a, b] | beats[b, a])
        pairs.append({"a": p["a"], "b": p["b"], "acc_ab": float(matrix[a, b]), "acc_ba": float(matrix[b, a]),
                      "diff": float(matrix[a, b] - matrix[b, a]), "n10": sum(q["n10"] for q in per),
                      "n01": sum(q["n01"] for q in per), "p": max(q["p"] for q in per), "decided": dec,
                      "more": (p["a"] if beats[a, b] else p["b"]) if dec else "", "seeds_decided": n_dec,
                      "seeds_agree": len(sides) <= 1})
    return _assemble(names, matrix, pairs, beats, alpha,
                     test=f"{orders[0].test}; decided only when all {len(orders)} training seeds decide it alike")
