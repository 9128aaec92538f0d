"""Claim A2's verdict: "not reproduced" only for a decided cycle; an undecided pair is a lack of power."""

from __future__ import annotations

import pytest
import torch

from infolens.signal import order_verdict, signal_order


def _chain(names: list[str], undecided: set[tuple[str, str]], n: int = 400) -> torch.Tensor:
    """Outcomes (K, K, n) where names[i] lets in more than names[j] for i < j, decided (80 discordant
    images of 400: McNemar p ~ 1e-24), except the pairs in ``undecided`` (2 discordant images: p = 0.5)."""
    k = len(names)
    c = torch.ones(k, k, n, dtype=torch.bool)
    for i in range(k):
        for j in range(i + 1, k):
            # i beats j: acc[i -> j] > acc[j -> i], so classifier i misreads some of j's reconstructions
            c[j, i, : (2 if (names[i], names[j]) in undecided else 80)] = False
    return c


def test_decided_chain_with_an_undecided_end_pair_is_inconclusive():
    names = ["a", "b", "c"]
    o = signal_order(_chain(names, {("a", "c")}), names)
    d = o.decided()
    assert d == {("a", "b"): 1, ("a", "c"): 0, ("b", "c"): 1}
    assert not o.cycles
    assert o.verdict() == "inconclusive"


def test_the_claim_row_of_a_chain_with_an_undecided_pair_is_inconclusive():
    """Through the runner's claim rows (five classifiers, every pair decided but a ~ c)."""
    from infolens.experiments.signal.runner import claim_rows
    from infolens.signal import SignalMeasurement

    names = ["a", "b", "c", "d", "e"]
    k, n = 5, 400
    tuned = _chain(names, {("a", "c")}, n)
    plain = torch.ones(k, n, dtype=torch.bool)
    correct = torch.cat([plain[None], plain[None], tuned])
    z = torch.zeros(2 + k, n, dtype=torch.float64)
    nmi = torch.rand(2 + k, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m = SignalMeasurement(["plain", "untuned"] + [f"tuned:{c}" for c in names], names, list(range(n)),
                          torch.zeros(k, n, dtype=torch.long), torch.zeros(2 + k, k, n, dtype=torch.long), correct,
                          z[:, None].expand(-1, k, -1), nmi, nmi, z, z, z)
    rows, _ = claim_rows(m, {c: i + 1 for i, c in enumerate(names)})
    a2 = next(r for r in rows if r["claim"] == "A2")
    assert a2["verdict"] == "inconclusive"


@pytest.mark.parametrize("decided,expected", [
    ({("a", "b"): 1, ("b", "c"): 1, ("a", "c"): 1}, "reproduced"),         # a > b > c, total
    ({("a", "b"): 1, ("b", "c"): 1, ("a", "c"): -1}, "not reproduced"),     # a > b > c > a, each decided
    ({("a", "b"): 1, ("b", "c"): 1, ("a", "c"): 0}, "inconclusive"),        # chain, end pair undecided
    ({("a", "b"): 0, ("b", "c"): 0, ("a", "c"): 0}, "inconclusive"),        # nothing decided
    ({("a", "b"): 1, ("b", "c"): 1}, "inconclusive"),                       # a missing pair is undecided
    # a decided cycle among b, c, d decides the claim even with an undecided pair elsewhere
    ({("a", "b"): 0, ("a", "c"): 1, ("a", "d"): 1, ("b", "c"): 1, ("c", "d"): 1, ("b", "d"): -1}, "not reproduced"),
])
def test_order_verdict_by_hand(decided, expected):
    assert order_verdict(decided) == expected


def test_order_verdict_agrees_with_signal_order_on_a_decided_cycle():
    names = ["a", "b", "c"]
    acc = torch.tensor([[1.0, 0.9, 0.5], [0.6, 1.0, 0.9], [0.9, 0.6, 1.0]])  # a > b > c > a
    c = torch.zeros(3, 3, 200, dtype=torch.bool)
    for i in range(3):
        for j in range(3):
            c[i, j, : int(round(float(acc[i, j]) * 200))] = True
    o = signal_order(c, names)
    assert o.cycles == [("a", "b", "c")] and o.verdict() == "not reproduced"


@pytest.mark.parametrize("decided", [{}, {("a", "b"): 2}, {("a", "a"): 1}, {("a", "b"): 1, ("b", "a"): 1}])
def test_order_verdict_refuses_bad_input(decided):
    with pytest.raises(ValueError, match="decided"):
        order_verdict(decided)
