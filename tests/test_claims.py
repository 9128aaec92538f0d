"""claims.py: verdicts by hand-computed cases, the bootstrap against the normal closed form, scipy's rho."""

from __future__ import annotations

import math

import pytest
import torch

from infolens import claims as C


@pytest.mark.parametrize("value,low,high,thr,side,expected", [
    (0.5, 0.2, 0.8, 0.0, ">", "reproduced"),
    (0.5, -0.1, 0.8, 0.0, ">", "inconclusive"),
    (-0.5, -0.8, -0.2, 0.0, ">", "not reproduced"),
    (0.0, -0.2, 0.0, 0.0, ">", "not reproduced"),   # 0 is not > 0: the whole interval on the other side
    (3.5, 3.1, 4.0, 3.0, ">=", "reproduced"),
    (2.5, 2.0, 3.2, 3.0, ">=", "inconclusive"),
    (-0.9, -0.95, -0.85, 0.8, "abs>=", "reproduced"),
    (0.9, 0.7, 0.95, 0.8, "abs>=", "inconclusive"),
    (0.1, -0.3, 0.5, 0.8, "abs>=", "not reproduced"),
    (-0.5, -0.6, -0.4, 0.0, "<", "reproduced"),
    (float("nan"), 0.1, 0.2, 0.0, ">", "inconclusive"),
    (0.7999999999999999, 0.7999999999999999, 0.9, 0.8, ">=", "reproduced"),  # rho = 0.8 in floating point
    (0.0, -1e-12, 1e-12, 0.0, ">", "not reproduced"),
])
def test_decide_hand_cases(value, low, high, thr, side, expected):
    assert C.decide(value, low, high, thr, side) == expected


def test_bootstrap_of_a_mean_matches_the_normal_interval():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, generator=g, dtype=torch.float64) + 1.0
    iv = C.bootstrap(lambda idx: x[idx].mean(-1), 400, batched=True, seed=3)
    se = float(x.std()) / math.sqrt(400)
    assert iv.value == pytest.approx(float(x.mean()))
    assert iv.low == pytest.approx(float(x.mean()) - 1.96 * se, abs=0.35 * se)
    assert iv.high == pytest.approx(float(x.mean()) + 1.96 * se, abs=0.35 * se)
    # unbatched gives the same resamples, hence the same interval
    iv2 = C.bootstrap(lambda idx: float(x[idx].mean()), 400, seed=3)
    assert (iv2.low, iv2.high) == pytest.approx((iv.low, iv.high), abs=1e-12)


def test_bootstrap_is_seeded():
    x = torch.arange(50, dtype=torch.float64)
    a = C.bootstrap(lambda idx: x[idx].mean(-1), 50, batched=True, seed=0)
    b = C.bootstrap(lambda idx: x[idx].mean(-1), 50, batched=True, seed=0)
    c = C.bootstrap(lambda idx: x[idx].mean(-1), 50, batched=True, seed=1)
    assert (a.low, a.high) == (b.low, b.high) and (a.low, a.high) != (c.low, c.high)


def test_spearman_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 12), generator=g).double()
    b = torch.randn(4, 12, generator=g, dtype=torch.float64)
    ours = C.spearman(a, b)
    for i in range(4):
        assert float(ours[i]) == pytest.approx(scipy_stats.spearmanr(a[i], b[i]).statistic, abs=1e-12)


def test_claim_row_and_most_row():
    iv = C.Interval(0.4, 0.1, 0.7, 30)
    r = C.claim_row("srop", "S1", "m1", "ratio - 1", iv, 0.0)
    assert set(r) == set(C.CLAIM_COLUMNS) and r["verdict"] == "reproduced" and r["threshold"] == "> 0"
    r2 = C.claim_row("srop", "S1", "m2", "ratio - 1", C.Interval(0.2, -0.2, 0.6, 30), 0.0)
    assert r2["verdict"] == "inconclusive" and "source images" in r2["note"]
    r3 = C.claim_row("srop", "S1", "m3", "ratio - 1", C.Interval(-0.2, -0.4, -0.1, 30), 0.0)
    rows = [r, dict(r, model="m4"), dict(r, model="m5"), r2]
    assert C.most_row(rows)["verdict"] == "reproduced"          # 3 of 4 = 75 %
    assert C.most_row([r, r2, r3, r3])["verdict"] == "not reproduced"  # at most 2 of 4 can hold
    assert C.most_row([r, r2, r2, r3])["verdict"] == "inconclusive"
    with pytest.raises(ValueError, match="verdict"):
        C.claim_row("p", "c", "m", "s", 1.0, 0.0, verdict="maybe")


def test_needed_n_is_none_at_the_threshold():
    assert C.needed_n(0.8, 0.2, 1.0, 0.8, 3, side=">=") is None
    assert C.needed_n(0.79, 0.2, 1.0, 0.8, 3, side=">=") is None      # would be millions: no estimate
    assert C.needed_n(0.5, -0.1, 1.1, 0.0, 10) == 15                    # half-width 0.6 at distance 0.5


# --------------------------------------------------------------------------- missing values


@pytest.mark.parametrize("x,y", [
    ([0.0, 1.0, 2.0, 3.0], [1.0, math.nan, 3.0, 4.0]),     # a NaN was ranked lowest: rho 0.873
    ([math.nan, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]),
    ([0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 4.0, 3.0, 2.0, math.nan]),
])
def test_spearman_propagates_nan_as_scipy(x, y):
    scipy_stats = pytest.importorskip("scipy.stats")
    ref = scipy_stats.spearmanr(x, y, nan_policy="propagate").statistic
    assert math.isnan(ref)
    assert math.isnan(float(C.spearman(torch.tensor(x), torch.tensor(y))))


def test_nan_stays_in_its_own_row_of_a_batch():
    scipy_stats = pytest.importorskip("scipy.stats")
    a = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, math.nan, 3.0, 4.0, 2.0], [1.0, 5.0, 3.0, 4.0, 2.0]], dtype=torch.float64)
    rho = C.spearman(a, b)
    assert math.isnan(float(rho[0]))
    assert float(rho[1]) == pytest.approx(scipy_stats.spearmanr(a[1], b[1]).statistic, abs=1e-12)


def test_pearson_and_ranks_propagate_nan():
    from infolens._stats import average_ranks, rowwise_correlation

    r = average_ranks(torch.tensor([[3.0, math.nan, 1.0], [3.0, 2.0, 1.0]]))
    assert torch.isnan(r[0]).all() and r[1].tolist() == [3.0, 2.0, 1.0]
    assert math.isnan(float(rowwise_correlation(torch.tensor([1.0, 2.0, math.nan]), torch.tensor([1.0, 2.0, 3.0]),
                                                method="pearson")))


def test_a_row_with_a_missing_value_is_inconclusive_and_says_so():
    r = C.claim_row("discard", "D2", "m", "rho", C.Interval(math.nan, 0.9, 1.0, 100), 0.8, side=">=")
    assert r["verdict"] == "inconclusive" and "missing" in r["note"]
    # even a verdict passed in is not kept when the value is missing
    r2 = C.claim_row("p", "c", "m", "s", {"value": math.nan, "n": 100}, 0.0, verdict="reproduced")
    assert r2["verdict"] == "inconclusive" and "would be: reproduced" in r2["note"]
    # a row the caller already calls inconclusive (a protocol not run here) keeps only the caller's reason
    r3 = C.claim_row("p", "c", "m", "s", math.nan, 0.0, verdict="inconclusive", note="not run on this device",
                    min_units=None)
    assert r3["verdict"] == "inconclusive" and r3["note"] == "not run on this device"


# --------------------------------------------------------------------------- the amended rules


def test_a_decisive_row_below_fifteen_units_is_inconclusive_and_keeps_its_verdict():
    for n, expected in ((C.MIN_UNITS - 1, "inconclusive"), (C.MIN_UNITS, "reproduced")):
        r = C.claim_row("srop", "S1", "m", "ratio", C.Interval(2.0, 1.5, 2.5, n), 1.0)
        assert r["verdict"] == expected
    r = C.claim_row("srop", "S1", "m", "ratio", C.Interval(0.5, 0.2, 0.8, 3), 1.0)
    assert r["verdict"] == "inconclusive"
    assert r["note"].startswith(f"n below {C.MIN_UNITS} (n = 3); would be: not reproduced")
    # rows whose n is not a count of source units opt out
    assert C.claim_row("srop", "S1", "most", "share", C.Interval(2.0, 1.5, 2.5, 3), 1.0,
                       min_units=None)["verdict"] == "reproduced"


def test_a_lowered_protocol_is_inconclusive_and_names_the_setting():
    r = C.claim_row("forgrad", "F2", "m", "s", C.Interval(2.0, 1.5, 2.5, 100), 1.0, lowered="RISE 500 masks")
    assert r["verdict"] == "inconclusive"
    assert "protocol lowered: RISE 500 masks" in r["note"] and "would be: reproduced" in r["note"]


def test_most_row_refuses_mixed_variants_and_keeps_the_variant():
    p = C.claim_row("srop", "S1", "a", "s", C.Interval(2.0, 1.5, 2.5, 30), 1.0)
    s = C.claim_row("srop", "S1", "b", "s", C.Interval(2.0, 1.5, 2.5, 30), 1.0, variant="sensitivity")
    with pytest.raises(ValueError, match="one variant"):
        C.most_row([p, s])
    assert C.most_row([s, s])["variant"] == "sensitivity"
    with pytest.raises(ValueError, match="variant"):
        C.claim_row("srop", "S1", "a", "s", 1.0, 1.0, variant="main")


def test_headline_rows_are_primary_aggregates_or_a_claims_single_primary_row():
    per = [C.claim_row("srop", "S1", f"m{i}", "s", C.Interval(2.0, 1.5, 2.5, 30), 1.0) for i in range(2)]
    sens = [dict(r, variant="sensitivity") for r in per]
    agg, agg_s = C.most_row(per, model="set"), C.most_row(sens, model="set s")
    single = C.claim_row("signal", "A2", "MNIST set (5)", "share", {"value": 1.0, "n": 400}, 1.0, side=">=",
                         verdict="reproduced")
    single_s = dict(single, variant="sensitivity", model="logits")
    got = C.headline_rows(per + [agg] + sens + [agg_s, single, single_s])
    assert [(r["claim"], r["model"]) for r in got] == [("S1", "set"), ("A2", "MNIST set (5)")]
    assert C.is_aggregate(agg) and not C.is_aggregate(per[0])


def test_amendment_log_sets_this_runs_verdict_beside_the_one_before():
    a = C.AMENDMENTS[0]
    assert a.number == 1 and a.reason and a.changes
    claim, model, before = a.before[0]
    now = [{"claim": claim, "model": model, "verdict": "inconclusive", "variant": "primary"},
           {"claim": claim, "model": model, "verdict": "reproduced", "variant": "sensitivity"}]
    rows = C.amendment_rows(a, now)
    assert rows[0] == {"claim": claim, "model": model, "before": before, "after": "inconclusive"}
    assert all(r["after"] == "not in this run" for r in rows[1:] if (r["claim"], r["model"]) != (claim, model))
    assert {r["before"] for r in rows} <= set(C.VERDICTS)
