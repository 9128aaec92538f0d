"""Discarding's claim rules: the release solver is primary, a correlation needs 5 points, views of one
photograph are one unit, a missing value or a dropped photograph leaves the row undecided."""

from __future__ import annotations

import math

from torch import nn

from infolens.claims import MIN_POINTS, MIN_UNITS
from infolens.experiments.discard import verdicts as V


def _rows(model: str, n: int, depths: int, *, names=None, solvers=V.SOLVERS, drop=None):
    """Entropy rising with depth for every image (rho = 1), a positive gap."""
    out = []
    for s in solvers:
        for i in range(n):
            for d in range(depths):
                if drop == (i, d):
                    continue
                out.append({"model": model, "solver": s, "stage": "final", "index": i, "depth": d, "layer": str(d),
                            "image": names[i] if names else f"mnist-test-{i:05d}",
                            "entropy": -3.0 + d * (1 + 0.1 * i), "gap": 0.5 + 0.01 * i})
    return out


def _get(out, claim, model):
    return next(r for r in out if r["claim"] == claim and r["model"] == model)


def test_fewer_than_five_layers_are_left_out_of_the_claim():
    rows = _rows("big", 20, MIN_POINTS) + _rows("small", 20, 2)
    out, _ = V.decide_claims(rows, [], [], {}, ["big", "small"], [])
    small = _get(out, "D2", "small [release]")
    assert small["verdict"] == "inconclusive" and "left out of the claim" in small["note"]
    assert _get(out, "D2", "big [release]")["verdict"] == "reproduced"
    most = _get(out, "D2", "MNIST set [release]")
    assert most["n"] == 1 and most["verdict"] == "reproduced" and "small [release]" in most["note"]


def test_release_is_primary_and_each_solver_aggregates_apart():
    out, _ = V.decide_claims(_rows("m", 20, 5), [], [], {}, ["m"], [])
    for r in out:
        want = "primary" if r["model"].endswith("[release]") else "sensitivity"
        assert r["variant"] == want, r
    assert "sensitivity" in _get(out, "D2", "MNIST set [constrained]")["note"]


def test_a_missing_value_makes_the_correlation_inconclusive():
    out, _ = V.decide_claims(_rows("m", 20, 5, drop=(3, 2)), [], [], {}, ["m"], [])
    d2 = _get(out, "D2", "m [release]")
    assert math.isnan(d2["value"]) and d2["verdict"] == "inconclusive" and "missing" in d2["note"]


def test_views_of_one_photograph_are_one_unit_and_dropped_photographs_say_so():
    names = [f"photo{i // 2}" + ("" if i % 2 == 0 else "/flip") for i in range(40)]  # 20 sources, 2 views each
    rows = _rows("lite0", 40, 5, names=names)
    out, _ = V.decide_claims(rows, [], [], {}, [], ["lite0"])
    d2 = _get(out, "D2", "lite0 [release]")
    assert d2["n"] == 20 and d2["verdict"] == "reproduced"
    out, _ = V.decide_claims(rows, [], [], {}, [], ["lite0"], lowered={"lite0": "2 of 22 source photographs dropped"})
    d2 = _get(out, "D2", "lite0 [release]")
    assert d2["verdict"] == "inconclusive" and "2 of 22 source photographs dropped" in d2["note"]
    assert "would be: reproduced" in d2["note"]


def test_below_fifteen_digits_is_inconclusive():
    out, _ = V.decide_claims(_rows("m", MIN_UNITS - 1, 5), [], [], {}, ["m"], [])
    assert _get(out, "D1", "m [release]")["verdict"] == "inconclusive"
    assert _get(out, "D2", "m [release]")["note"].startswith(f"n below {MIN_UNITS}")


def test_d5_constrained_rows_say_they_are_not_the_official_definition():
    rec = [{"model": "m", "solver": s, "stage": "final", "index": i, "depth": d, "image": f"d{i}",
            "uncertainty": float(d + 0.01 * i)} for s in V.SOLVERS for i in range(20) for d in range(5)]
    out, _ = V.decide_claims(_rows("m", 20, 5), rec, [], {}, ["m"], [])
    assert "not the official definition" in _get(out, "D5", "m [constrained]")["note"]
    assert _get(out, "D5", "m [release]")["verdict"] == "reproduced"


def test_full_protocol_sizes_and_claim_layers():
    from infolens.experiments.testbed import MNIST_SET
    from infolens.experiments.discard.measure import DEFAULT_LAYERS
    from infolens.models import build_builtin

    f = V.FULL_CLAIMS
    assert f["n"] >= 100 and f["stage_n"] >= 30 and f["photos"] is None and f["photo_size"] is None
    for name in MNIST_SET:
        layers = V.CLAIM_LAYERS.get(name) or DEFAULT_LAYERS[name]
        mods = dict(build_builtin(name).named_modules())
        assert len(layers) >= MIN_POINTS and all(isinstance(mods[n], (nn.ReLU, nn.Linear)) for n in layers), name


def test_block_layers_give_five_points():
    blocks = nn.Module()
    blocks._blocks = nn.ModuleList([nn.Identity() for _ in range(16)])
    assert len(V.block_layers(blocks, "x")) == MIN_POINTS


def test_a_lowered_solver_setting_leaves_every_row_undecided_even_d3():
    iso = [{"kind": "identity", "width": 1, "size": 28, "index": i, "solver": s, "deviation": 0.001,
            "entropy": 0.0, "feature_error": 0.0} for s in V.SOLVERS for i in range(4)]
    out, _ = V.decide_claims(_rows("m", 20, 5), [], iso, {}, ["m"], [])
    assert _get(out, "D3", "identity width 1 size 28 [release]")["verdict"] == "reproduced"  # closed form: n exempt
    out, _ = V.decide_claims(_rows("m", 20, 5), [], iso, {}, ["m"], [], protocol_lowered="steps 15 (protocol 100)")
    per_model = [r for r in out if not r["model"].startswith(("MNIST set", "isometries"))]
    assert per_model and all(r["verdict"] == "inconclusive" and "steps 15 (protocol 100)" in r["note"]
                             for r in per_model)


def test_the_trio_is_not_lowered_on_a_cpu_its_rows_say_they_were_not_run(tmp_path, monkeypatch):
    """On a CPU the full protocol leaves the ImageNet trio out rather than lowering it: its D2 rows (both
    solvers) are inconclusive and say why; no trio model is measured."""
    small = dict(V.QUICK_CLAIMS, iso_widths=(1,), iso_sizes=(28,), iso_n=2)
    monkeypatch.setattr(V, "FULL_CLAIMS", small)  # the full protocol's code path at smoke-test sizes
    monkeypatch.setattr(V, "QUICK_CLAIMS", small)
    rows = V.claims(tmp_path / "d", quick=False, device="cpu", progress=False, models=["mnist_mlp"])
    trio = [r for r in rows if r["model"].startswith("ImageNet trio")]
    assert sorted((r["model"], r["variant"]) for r in trio) == [("ImageNet trio [constrained]", "sensitivity"),
                                                                ("ImageNet trio [release]", "primary")]
    assert all(r["verdict"] == "inconclusive" and "not run on this device" in r["note"] and math.isnan(r["value"])
               for r in trio)
    assert not any("efficientnet" in r["model"] for r in rows)
    # the trio's row is its testbed's aggregate: the claim's headline shows it undecided beside the MNIST set
    from infolens.claims import headline_rows
    assert {r["model"] for r in headline_rows(rows) if r["claim"] == "D2"} == {"MNIST set [release]",
                                                                             "ImageNet trio [release]"}
