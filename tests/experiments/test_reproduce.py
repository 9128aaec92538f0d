"""The reproduce harness: table format, order, resume, paper selection, refusal of malformed rows.

The four papers' own claims are exercised by their modules' tests and by the e2e ``reproduce --quick``
run; here two small real claim functions (a bootstrap over real numbers) stand in for them so the
composition can be checked in milliseconds.
"""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from infolens import claims as C
from infolens.experiments import reproduce as R
from infolens.results import RunDir, read_csv


def _paper(name: str, claim_ids: list[str], calls: list[str], shift: float) -> types.ModuleType:
    mod = types.ModuleType(f"_toy_{name}")

    def claims(out, *, quick, device="cpu", progress=True):
        calls.append(name)
        RunDir(out, analysis=name, params={"quick": quick}).write_meta(claim_figures={}, deviations=["toy"])
        x = torch.linspace(-1, 1, 40, dtype=torch.float64) + shift
        iv = C.bootstrap(lambda idx: x[idx].mean(-1), 40, batched=True)
        return [C.claim_row(name, cid, f"m{k}", "mean", iv, 0.0) for k, cid in enumerate(claim_ids)]

    mod.claims = claims
    sys.modules[mod.__name__] = mod
    return mod


@pytest.fixture
def toy_papers(monkeypatch):
    calls: list[str] = []
    a = _paper("discard", ["D2", "D1"], calls, 0.5)
    b = _paper("srop", ["S3"], calls, 0.0)
    from dataclasses import replace

    from infolens.papers import PAPERS

    monkeypatch.setattr(R, "PAPERS", {"srop": replace(PAPERS["srop"], runner=b.__name__),
                                      "discard": replace(PAPERS["discard"], runner=a.__name__)})
    yield calls
    for m in (a, b):
        sys.modules.pop(m.__name__, None)


def test_table_format_order_and_resume(tmp_path, toy_papers):
    rows = R.reproduce(tmp_path / "r", quick=True, report=False)
    assert [r["claim"] for r in rows] == ["S3", "D1", "D2"]          # paper order, then docs/claims.md order
    back = read_csv(tmp_path / "r" / "tables" / "claims.csv")
    assert list(back[0]) == list(C.CLAIM_COLUMNS)
    assert {r["verdict"] for r in back} <= set(C.VERDICTS)
    assert back[0]["verdict"] == "inconclusive" and back[1]["verdict"] == "reproduced"  # mean 0 vs mean 0.5
    assert toy_papers == ["srop", "discard"]
    R.reproduce(tmp_path / "r", quick=True, report=False)   # resumed: nothing is run again
    assert toy_papers == ["srop", "discard"]
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert set(meta["seconds_per_paper"]) == {"srop", "discard"}   # every paper's wall time, whichever rank ran it


def test_shard_partitions_and_balances():
    """Every paper goes to exactly one rank, and the busiest rank's load is the best partition's (checked by
    brute force over all assignments of the four papers to 1-3 ranks)."""
    import itertools

    papers = list(R.PAPERS)
    for world in (1, 2, 3, 5):
        ranks = R.shard(papers, world)
        assert len(ranks) == world and sorted(p for r in ranks for p in r) == sorted(papers)
        assert all(r == sorted(r, key=papers.index) for r in ranks)
        cost = {p: R.PAPERS[p].cost_minutes for p in papers}
        busiest = max(sum(cost[p] for p in r) for r in ranks)
        best = min(max(sum(cost[p] for p, k in zip(papers, a) if k == j) for j in range(world))
                   for a in itertools.product(range(world), repeat=len(papers)))
        assert busiest == pytest.approx(best)
    assert R.shard(["srop"], 2) == [["srop"], []]


def test_papers_that_shard_their_own_units_get_every_rank():
    """Under torchrun, a paper with ``all_ranks`` (information discarding) runs on every rank; the rest are
    shared out by shard(); one process runs everything alone."""
    papers = list(R.PAPERS)
    together, alone = R.split_papers(papers, 2)
    assert together == [p for p in papers if R.PAPERS[p].all_ranks] == ["discard"]
    assert alone == [p for p in papers if p != "discard"]
    assert R.split_papers(papers, 1) == ([], papers)


def test_paper_selection(tmp_path, toy_papers):
    assert R.parse_papers("discard, srop") == ["srop", "discard"]
    with pytest.raises(ValueError, match="unknown nope"):
        R.parse_papers("srop,nope")
    with pytest.raises(ValueError, match="at least one"):
        R.parse_papers(" , ")
    rows = R.reproduce(tmp_path / "r", papers="discard", report=False)
    assert {r["paper"] for r in rows} == {"discard"} and toy_papers == ["discard"]


def test_malformed_rows_are_refused():
    good = C.claim_row("srop", "S1", "m", "ratio", C.Interval(2.0, 1.5, 2.5, 10), 1.0)
    assert R.check_rows("srop", [good]) == [good]
    with pytest.raises(ValueError, match="lacks"):
        R.check_rows("srop", [{k: v for k, v in good.items() if k != "n"}])
    with pytest.raises(ValueError, match="verdict"):
        R.check_rows("srop", [dict(good, verdict="sort of")])


def test_cli_rejects_unknown_paper(capsys):
    from infolens.cli import main

    assert main(["reproduce", "--paper", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown nope" in err[0]


def test_runner_claims_stay_functions():
    """Each paper's ``claims`` is a function, also after it has run once (a submodule named ``claims`` would
    replace the package attribute on first import)."""
    import importlib

    for mod in (p.runner for p in R.PAPERS.values()):
        m = importlib.import_module(mod)
        importlib.import_module(f"{mod}.verdicts") if (hasattr(m, "__path__")) else None
        assert callable(m.claims) and not isinstance(m.claims, types.ModuleType), mod
