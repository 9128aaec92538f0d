"""A report of one analysis opens with its result (FORGrad: the methods' ranks before and after filtering;
discarding: its key figure, entropy per layer), docstring markup is rendered, never shown, and the section's
reading and its "Tables (n)" heading count the same tables."""

from __future__ import annotations

import html
import re

import pytest

from infolens.report import build_report
from infolens.results import RunDir


def _summary_div(page: str) -> str:
    return page[page.index("<div class=summary id=summary>"):page.index("</div>", page.index("id=summary"))]


def _figure(run: RunDir, name: str, plt) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    run.save_figure(fig, name)


def test_a_forgrad_report_opens_with_the_ranking_before_and_after_filtering(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    run = RunDir(tmp_path, analysis="forgrad", params={}, title="FORGrad attribution: m")
    _figure(run, "cutoff_selection", plt)
    run.write_meta(figures={"cutoff_selection": "Cut-off selection on held-out images."},
                   key_figure="cutoff_selection")
    ranks = {  # method, kind: (deletion before, after, insertion before, after)
        ("saliency", "gradient"): (3, 1, 2, 3),
        ("occlusion", "prediction"): (1, 2, 1, 1),
        ("blob", "reference"): (2, 3, 3, 2),
    }
    run.write_table("summary", [{"model": "m", "method": m, "kind": k, "cutoff": 4.0 if k == "gradient" else None,
                                 "deletion": 0.1, "deletion_forgrad": 0.1, "deletion_rank": d0,
                                 "deletion_rank_forgrad": d1, "insertion": 0.9, "insertion_forgrad": 0.9,
                                 "insertion_rank": i0, "insertion_rank_forgrad": i1}
                                for (m, k), (d0, d1, i0, i1) in ranks.items()])
    run.finish({"held_out": "mirrored copies of the evaluated images (no separate held-out set)",
                "improved": {"m": {"gradient methods improved on deletion": "1/1"}}})
    summary = _summary_div(build_report(tmp_path).read_text())
    body = summary[summary.index("<h2>Summary</h2>") + len("<h2>Summary</h2>"):]
    assert body.startswith("<h3>m: the methods' ranks before → after FORGrad filtering (1 = best)</h3><table>")
    assert "mirrored copies" not in summary and "held-out set" not in summary  # the note stays in its section
    rows = re.findall(r"<tr><td>(\w+)</td><td class=t>\w+</td><td>[^<]*</td>(.*?)</tr>", summary)
    assert [m for m, _ in rows] == ["saliency", "occlusion", "blob"]  # methods by rank after filtering, references last
    for method, cells in rows:
        kind = next(k for (m, k) in ranks if m == method)
        d0, d1, i0, i1 = ranks[(method, kind)]
        got = [tuple(map(int, c)) for c in re.findall(r"<td>(\d+) → <b>(\d+)</b>", cells)]
        assert got == [(d0, d1), (i0, i1)]


def test_a_discarding_report_opens_with_its_entropy_per_layer_figure(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    run = RunDir(tmp_path, analysis="discard", params={}, title="Information discarding")
    _figure(run, "maps", plt)
    _figure(run, "entropy_through_depth", plt)
    run.write_meta(figures={"maps": "Pixel-wise entropy maps.",
                            "entropy_through_depth": "Discarded information through depth: entropy per layer."},
                   key_figure="entropy_through_depth")
    run.finish({"isometry level (nats)": -2.98})
    summary = _summary_div(build_report(tmp_path).read_text())
    body = summary[summary.index("<h2>Summary</h2>") + len("<h2>Summary</h2>"):]
    assert body.startswith("<figure id='fig-run-entropy_through_depth' class=key><img alt='entropy_through_depth'")
    assert "Discarded information through depth: entropy per layer." in body


def test_several_analyses_still_open_with_the_headline_table(tmp_path):
    for name in ("srop", "discard"):
        RunDir(tmp_path / name, analysis=name, params={}, title=name).finish({"x": 1.0})
    summary = _summary_div(build_report(tmp_path).read_text())
    assert "No claims were decided in this run" in summary and "<figure" not in summary


def test_docstring_markup_is_rendered_never_shown(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    run = RunDir(tmp_path, analysis="forgrad", params={}, title="t",
                 description="CLI command ``infolens forgrad``; :func:`claims`, in :mod:`.verdicts`, on "
                             ":class:`~infolens.results.RunDir` and `x < y`.")
    _figure(run, "spectra", plt)
    run.write_meta(figures={"spectra": "Spectra of the maps (``--ig-steps 4``)."})
    run.finish({})
    page = build_report(tmp_path).read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "``" not in text and ":func:" not in text and ":mod:" not in text and ":class:" not in text
    assert "`" not in text
    for code in ("infolens forgrad", "claims", "verdicts", "RunDir", "x &lt; y", "--ig-steps 4"):
        assert f"<code>{code}</code>" in page, code


def test_the_reading_and_the_tables_heading_count_the_same_tables(tmp_path):
    run = RunDir(tmp_path, analysis="srop", params={}, title="SROP")
    for name in ("a", "b", "c", "d", "e"):
        run.write_table(name, [{"v": 1}])
    run.write_meta(report_tables=["a"])  # the runner shows one of its five tables
    run.finish({"x": 1.0})
    page = build_report(tmp_path).read_text()
    assert "its headline numbers are below with 1 table." in page and "Tables (1)" in page
    assert "5 tables" not in page


def test_a_summary_that_is_not_an_object_names_the_file(tmp_path):
    run = RunDir(tmp_path, analysis="srop", params={}, title="SROP")
    run.finish({})
    (tmp_path / "summary.json").write_text("null")
    with pytest.raises(ValueError, match=r"summary\.json holds null, not a JSON object"):
        build_report(tmp_path)


def test_the_key_figure_that_opens_the_page_is_embedded_once(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    run = RunDir(tmp_path, analysis="discard", params={}, title="Information discarding")
    _figure(run, "entropy_through_depth", plt)
    run.write_meta(key_figure="entropy_through_depth")
    run.finish({})
    page = build_report(tmp_path).read_text()
    assert page.count("data:image/png;base64,") == 1 and page.count("id='fig-run-entropy_through_depth'") == 1
    assert "href='#fig-run-entropy_through_depth'" in page  # the section points up to it
