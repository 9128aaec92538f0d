"""The HTML report: one self-contained page (figures embedded as data URIs, no scripts, no network) built
from result folders, never from models. It leads with what was found:

1. **Summary** — per paper, its claims and verdicts (``tables/claims.csv``: colour per verdict, each row
   linking to the figure that shows it via ``meta.json``'s ``claim_figures``; the primary rows first, the
   sensitivity rows beside them, collapsed) and the deviations from the paper (``meta["deviations"]``); for
   an analysis without claims, its headline numbers. A ``--quick`` run's first line says it is a smoke test
   and its verdicts are not evidence; ``infolens reproduce`` adds the amendment log
   (:data:`infolens.claims.AMENDMENTS`: each change made after a result was seen, with the verdicts before
   and on this run). The demo opens with each analysis's key figure and reading; its claims follow under a
   heading that calls them a smoke test.
2. **Across methods** — one row per model: SROP summary, discarding slope, FORGrad cut-off, signal-order
   position, and the rank correlations between them (:mod:`.panel`).
3. **One section per analysis** — its key figure and a two-sentence reading first, the other figures,
   then its numbers as small pivot tables (rows models, columns conditions) and its tables, collapsed.

A result folder is a section when it holds ``meta.json`` (written by :class:`infolens.results.RunDir`).
Runners may set in ``meta.json``: ``figures`` (name -> caption, in order), ``key_figure``, ``reading``
(two sentences), ``report_tables``, ``claim_figures``, ``deviations``. The page prints to PDF (print
style sheet: the summary on its own page, one section per page, figures never split).
"""

from .build import build_report, find_sections, smoke_line, unit_range

__all__ = ["build_report", "find_sections", "unit_range", "smoke_line"]
