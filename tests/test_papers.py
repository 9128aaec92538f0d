"""papers.py: the one registry of the papers matches the runners, the CLI and the report it drives."""

from __future__ import annotations

import importlib

from infolens.papers import CLAIM_ORDER, DEMO_ORDER, PAPERS


def test_each_entry_points_at_a_runner_with_the_whole_interface():
    for key, paper in PAPERS.items():
        assert paper.key == key
        mod = importlib.import_module(paper.runner)
        missing = [n for n in ("HELP", "add_arguments", "OPTIONS", "main", "demo", "claims") if not hasattr(mod, n)]
        assert not missing, f"{paper.runner} lacks {missing}"
        assert mod.ANALYSIS == key  # the result folders' analysis is the registry key (the report reads it)
        assert paper.arxiv in paper.title and paper.cost_minutes > 0


def test_orders_are_permutations_without_repeats():
    assert sorted(DEMO_ORDER) == sorted(PAPERS)
    assert len(CLAIM_ORDER) == len(set(CLAIM_ORDER)) == sum(len(p.claims) for p in PAPERS.values())
    # each paper's claims share one letter, the paper's own
    assert all(len({c[0] for c in p.claims}) == 1 for p in PAPERS.values())
    assert len({p.claims[0][0] for p in PAPERS.values()}) == len(PAPERS)


def test_panel_columns_resolve_to_functions_and_are_distinct():
    from infolens.report.panel import _columns, _extractor

    assert list(_columns()) == [p.panel.key for p in PAPERS.values()]
    assert len(set(_columns())) == len(PAPERS)
    assert all(callable(_extractor(p)) for p in PAPERS.values())


def test_the_cli_has_one_command_per_paper():
    from infolens.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(PAPERS) <= set(sub.choices)
