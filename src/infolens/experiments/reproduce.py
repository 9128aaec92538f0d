"""``infolens reproduce``: every paper's claims (``docs/claims.md``) decided on the testbed, one table.

Each paper's runner (:data:`infolens.papers.PAPERS`) exposes ``claims(out, *, quick, device, progress) -> list[dict]``: it
runs its paper's protocol on the ImageNet trio and the MNIST set (:mod:`infolens.experiments.testbed`),
writes its own result folder ``OUT/<paper>`` (tables, figures, ``meta.json`` with ``claim_figures`` and
``deviations``) and returns its rows of ``claims.csv`` (:data:`infolens.claims.CLAIM_COLUMNS`). This module
only composes them:

* ``OUT/tables/claims.csv``: one row per claim x model (or model set), in paper order;
* ``OUT/report.html``: opens with that table, verdicts coloured, each row linking to its figure (primary rows
  first, sensitivity rows beside them), then the amendment log; a ``--quick`` run's report says in its first
  line that it is a smoke test whose verdicts are not evidence (its rows carry the same rules: most are
  inconclusive by n);
* ``--publish DIR``: the finished full run copied into ``DIR/<date>-<device>/`` with its provenance, and
  ``DIR/claims.csv`` (:mod:`infolens.experiments.publish`);
* resume: a paper whose rows are written (``OUT/parts/claims/<paper>.csv``) is not run again, and each
  paper's own folder resumes its finished units;
* torchrun: a paper whose runner shards its own units (:attr:`infolens.papers.Paper.all_ranks`: information
  discarding) runs on every rank at once; the others are handed out by :func:`shard` (longest first, each to
  the least-loaded rank, by :attr:`infolens.papers.Paper.cost_minutes`), and each rank computes its papers
  alone (:func:`infolens.distributed.single_process`). Rows and wall times are written atomically, and after
  one barrier rank 0 merges them. The rows do not depend on the number of processes.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import _progress
from ..claims import CLAIM_COLUMNS, VERDICTS
from ..distributed import barrier, is_main, rank_world, single_process
from ..papers import CLAIM_ORDER, PAPERS
from ..results import RunDir

HELP = "decide every paper's claims (docs/claims.md) on the testbed: tables/claims.csv and a report"
ANALYSIS = "reproduce"

def parse_papers(text: str | Sequence[str] | None) -> list[str]:
    """``"srop,forgrad"`` -> ``["srop", "forgrad"]`` in table order; ``None`` or ``"all"`` -> every paper."""
    if text is None or text == "all":
        return list(PAPERS)
    items = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    if not items:
        raise ValueError(f"--paper must name at least one of {', '.join(PAPERS)}, got {text!r}")
    bad = [p for p in items if p not in PAPERS]
    if bad:
        raise ValueError(f"--paper: unknown {', '.join(bad)}; choose from {', '.join(PAPERS)} (comma-separated)")
    return [p for p in PAPERS if p in items]


def check_rows(paper: str, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row has exactly the claims.csv columns, a known verdict, and belongs to ``paper``."""
    out = []
    for r in rows:
        missing = [c for c in CLAIM_COLUMNS if c not in r]
        if missing:
            raise ValueError(f"{paper}: a claim row lacks {', '.join(missing)}: {r}")
        if r["verdict"] not in VERDICTS:
            raise ValueError(f"{paper}: verdict {r['verdict']!r} is not one of {VERDICTS}")
        out.append({c: r[c] for c in CLAIM_COLUMNS})
    return out


def shard(papers: Sequence[str], world: int) -> list[list[str]]:
    """Papers per rank: longest (:attr:`infolens.papers.Paper.cost_minutes`) first, each to the rank with the least work so far (ties: the
    lower rank); within a rank, table order. Deterministic, and every paper goes to exactly one rank."""
    load = [0.0] * world
    out: list[list[str]] = [[] for _ in range(world)]
    for p in sorted(papers, key=lambda q: (-PAPERS[q].cost_minutes, list(PAPERS).index(q))):
        r = min(range(world), key=lambda k: (load[k], k))
        out[r].append(p)
        load[r] += PAPERS[p].cost_minutes
    return [sorted(o, key=list(PAPERS).index) for o in out]


def split_papers(papers: Sequence[str], world: int) -> tuple[list[str], list[str]]:
    """``(together, alone)``: under torchrun (``world > 1``) the papers whose runner shards its own units
    (:attr:`infolens.papers.Paper.all_ranks`) run on every rank, one after the other; the rest are handed out
    by :func:`shard`. With one process every paper is "alone"."""
    together = [p for p in papers if world > 1 and PAPERS[p].all_ranks]
    return together, [p for p in papers if p not in together]


def _run_paper(run: RunDir, out: Path, paper: str, *, quick: bool, device: str, progress: bool, rank: int,
               world: int, ranks: int) -> None:
    """One paper's claims into ``out/<paper>`` on ``ranks`` processes (1, or every rank at once); its rows and
    wall time as parts, written by one of them."""
    mod = importlib.import_module(PAPERS[paper].runner)
    if not hasattr(mod, "claims"):
        raise ValueError(f"the {paper} runner has no claims() yet")
    _progress.say(f"[reproduce] {paper}", progress=progress)
    s = time.perf_counter()
    rows = check_rows(paper, mod.claims(out / paper, quick=quick, device=device, progress=progress))
    if ranks == 1 or is_main():
        run.write_part("seconds", paper, [{"paper": paper, "seconds": round(time.perf_counter() - s, 1),
                                            "rank": rank, "world": world, "ranks_used": ranks}])
        run.write_part("claims", paper, rows)


def _order(row: dict[str, Any]) -> tuple:
    claim = str(row["claim"])
    k = CLAIM_ORDER.index(claim) if claim in CLAIM_ORDER else len(CLAIM_ORDER)
    return list(PAPERS).index(row["paper"]) if row["paper"] in PAPERS else len(PAPERS), k, claim


def reproduce(out: str | Path, *, papers: Sequence[str] | str | None = None, quick: bool = False,
              device: str = "cpu", progress: bool = True, overwrite: bool = False,
              report: bool = True) -> list[dict[str, Any]]:
    """Run the chosen papers' claims into ``out`` and return the rows of ``tables/claims.csv``."""
    wanted = parse_papers(papers)
    out = Path(out)
    run = RunDir(out, writer=is_main(), analysis=ANALYSIS, params={"papers": wanted, "quick": quick}, device=device,
                 overwrite=overwrite, title="Does the paper hold? infolens reproduce",
                 description="Each paper's claims, as docs/claims.md fixes them before any result is seen, "
                 "decided on the ImageNet trio (EfficientNet-Lite0/1/2 on the offline photographs) and the MNIST "
                 "set (the built-in classifiers trained to a plateau, with their stage checkpoints). Verdicts: "
                 "reproduced, not reproduced, inconclusive (95 % bootstrap intervals over source images).")
    from .publish import command_line, current_commit, machine

    run.write_meta(order=0, report_tables=["claims"], command=command_line(), commit=current_commit(),
                   machine=machine(), world=rank_world()[1])
    t0 = time.perf_counter()
    rank, world = rank_world()
    together, alone = split_papers(wanted, world)
    for paper in together:  # every rank, at once: the paper shards its own units
        barrier()
        if run.has_part("claims", paper):
            continue
        _run_paper(run, out, paper, quick=quick, device=device, progress=progress, rank=rank, world=world,
                   ranks=world)
    for paper in shard(alone, world)[rank]:
        if run.has_part("claims", paper):
            continue
        with single_process():
            _run_paper(run, out, paper, quick=quick, device=device, progress=progress, rank=rank, world=world,
                       ranks=1)
    barrier()
    rows: list[dict[str, Any]] = []
    if is_main():
        for paper in wanted:
            rows.extend(run.read_part("claims", paper))
        rows.sort(key=_order)
        run.write_table("claims", rows)
        counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
        secs = {p: run.read_part("seconds", p)[0] for p in wanted if run.has_part("seconds", p)}
        timings = {p: float(r["seconds"]) for p, r in secs.items()}
        ranks = {p: int(r.get("ranks_used") or 1) for p, r in secs.items()}  # parts written before the column: 1
        run.finish({"verdicts": counts, "seconds": round(time.perf_counter() - t0, 1),
                    "seconds_per_paper": timings, "ranks_per_paper": ranks}, seconds_per_paper=timings,
                   ranks_per_paper=ranks)
        if report:
            from ..report import build_report

            build_report(out, title="Does the paper hold? infolens reproduce")
    barrier()
    return rows if is_main() else run.read_table("claims")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--paper", default="all", help=f"comma-separated papers ({','.join(PAPERS)}; default all)")
    p.add_argument("--quick", action="store_true", help="small samples (minutes): every claim row is still filled, "
                   "many become inconclusive")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps")
    p.add_argument("--out", default=None, help="result folder (default results/reproduce, or results/reproduce-quick)")
    p.add_argument("--overwrite", action="store_true", help="start the result folder afresh")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument("--publish", default=None, metavar="DIR",
                   help="after the run, copy it into DIR/<date>-<device>/ and write DIR/claims.csv (a full run "
                        "only; the README's table is regenerated when ./README.md has its markers)")


def main(args: argparse.Namespace) -> Path:
    papers = parse_papers(args.paper)
    if getattr(args, "publish", None) and args.quick:
        raise ValueError("--publish with --quick: a quick run is a smoke test and is never published; drop --quick")
    out = Path(args.out or ("results/reproduce-quick" if args.quick else "results/reproduce"))
    rows = reproduce(out, papers=papers, quick=args.quick, device=args.device,
                     progress=_progress.enabled(not getattr(args, "no_progress", False)), overwrite=args.overwrite,
                     report=not args.no_report)
    if is_main():
        width = max([len(str(r["model"])) for r in rows] + [5])
        for r in rows:
            print(f"{r['claim']:<3} {str(r['model']):<{width}} {r['verdict']:<15} {r['statistic']} = "
                  f"{_fmt(r['value'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] ({r['threshold']})")
        print(f"claims: {out / 'tables' / 'claims.csv'}")
        if getattr(args, "publish", None):
            from .publish import README_START, publish, update_readme

            folder = publish(out, args.publish)
            print(f"published: {folder} and {Path(args.publish) / 'claims.csv'}")
            readme = Path("README.md")
            if readme.is_file() and README_START in readme.read_text():
                print(f"README table: {update_readme(readme, args.publish)}")
    return out


def _fmt(v: Any) -> str:
    try:
        return f"{float(v):.3g}"
    except (TypeError, ValueError):
        return str(v)
