"""The registry of the four papers infolens reproduces (data only: no imports of the runners, no logic).

Every list that used to be kept by hand in several places reads this one mapping: the CLI's analysis
commands and the demo's sections (:mod:`infolens.experiments.common`), ``infolens reproduce``'s order, cost
balance and claim order (:mod:`infolens.experiments.reproduce`), the report's paper headings
(:mod:`infolens.report`) and the cross-method panel's columns (:mod:`infolens.report.panel`).

A fifth paper is one more :class:`Paper` entry in :data:`PAPERS`: the position of an entry is the order of
the CLI commands, the claims table and the report.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLAIM_ORDER", "DEMO_ORDER", "PAPERS", "Paper", "PanelColumn"]


@dataclass(frozen=True)
class PanelColumn:
    """One column of the report's cross-method panel: one number per model from a paper's result tables.

    Attributes
    ----------
    key : str
        Column name of the panel's rows.
    label : str
        Column heading shown in the report.
    extract : str
        ``"module:function"`` of the function ``(section folder, tables) -> {model: value}`` that reads the
        number from a result folder (resolved when the report is built, so this module stays data).
    """

    key: str
    label: str
    extract: str


@dataclass(frozen=True)
class Paper:
    """One reproduced paper.

    Attributes
    ----------
    key : str
        The CLI command, the ``analysis`` of its result folders and the ``paper`` column of ``claims.csv``.
    title : str
        Heading of its claims in the report.
    arxiv : str
        The paper's arXiv identifier.
    runner : str
        Module of its runner (``HELP``, ``add_arguments``, ``OPTIONS``, ``main``, ``demo``, ``claims``);
        imported lazily, so ``infolens --help`` stays fast.
    cost_minutes : float
        Minutes of its full ``reproduce`` run on one core of the 2-core reference CPU (the full runs of
        2026-12-05 in ``benchmarks/RESULTS.md``; discarding, which runs on every rank: its CPU time); used
        only to balance papers over torchrun ranks.
    claims : tuple of str
        Its claim ids in ``docs/claims.md`` order (the order of the claims table).
    demo_position : int
        Its place among the demo's sections (0 first).
    panel : PanelColumn
        Its column of the cross-method panel.
    all_ranks : bool
        Its ``claims()`` shards its own work units over every torchrun rank (all ranks call it together and
        meet at its barriers), so ``reproduce`` gives it every rank instead of one (default False: the
        paper runs alone on one rank, :func:`infolens.distributed.single_process`).
    """

    key: str
    title: str
    arxiv: str
    runner: str
    cost_minutes: float
    claims: tuple[str, ...]
    demo_position: int
    panel: PanelColumn
    all_ranks: bool = False


#: paper key -> :class:`Paper`, in table order.
PAPERS: dict[str, Paper] = {p.key: p for p in (
    Paper("srop", "SROP (arXiv 2102.00369)", "2102.00369", "infolens.experiments.srop.runner", 2.7,
          ("S1", "S2", "S3"), 0,
          PanelColumn("srop", "mean SROP (originals, fraction of Nyquist)", "infolens.report.panel:srop_summary")),
    Paper("discard", "Information discarding (arXiv 1906.04109)", "1906.04109", "infolens.experiments.discard.runner",
          70.2, ("D1", "D2", "D3", "D4", "D5"), 2,
          PanelColumn("discard_slope", "discarding slope (nats per layer)", "infolens.report.panel:discard_slope"),
          all_ranks=True),
    Paper("signal", "What deep networks like to see (arXiv 1803.08337)", "1803.08337",
          "infolens.experiments.signal.runner", 47.3, ("A1", "A2", "A3", "A4"), 3,
          PanelColumn("signal_position", "signal order position (1 = most)", "infolens.report.panel:signal_position")),
    Paper("forgrad", "FORGrad (arXiv 2307.09591)", "2307.09591", "infolens.experiments.forgrad.runner", 47.7,
          ("F1", "F2", "F3", "F4", "F5"), 1,
          PanelColumn("forgrad_cutoff", "FORGrad cut-off", "infolens.report.panel:forgrad_cutoff")),
)}


#: Every claim id: papers in table order, each paper's claims in its own order.
CLAIM_ORDER: tuple[str, ...] = tuple(c for p in PAPERS.values() for c in p.claims)

#: Paper keys in the order of the demo's sections.
DEMO_ORDER: tuple[str, ...] = tuple(sorted(PAPERS, key=lambda k: PAPERS[k].demo_position))
