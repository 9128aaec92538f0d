"""The report's claims: primary rows first with sensitivity rows collapsed beside them, the smoke-test line
of a quick run, the amendment log of ``infolens reproduce``, and the demo's first screen."""

from __future__ import annotations


import pytest

from infolens.claims import AMENDMENTS, CLAIM_COLUMNS, claim_row, most_row
from infolens.report import build_report, smoke_line
from infolens.results import RunDir, write_csv


def _rows():
    p = [claim_row("srop", "S1", f"m{i}@activation", "ratio", {"value": 2.0, "ci_low": 1.5, "ci_high": 2.5, "n": n},
                   1.0) for i, n in enumerate((3, 48))]
    s = [claim_row("srop", "S1", f"m{i}@conv", "ratio", {"value": 2.0, "ci_low": 1.5, "ci_high": 2.5, "n": 48}, 1.0,
                   variant="sensitivity") for i in range(2)]
    return p + [most_row(p, model="MNIST set @activation")] + s + [most_row(s, model="MNIST set @conv")]


def _top(root, analysis, quick, plt):
    sec = RunDir(root / "srop", analysis="srop", params={}, title="SROP claims")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    sec.save_figure(fig, "key")
    sec.write_meta(figures={"key": "The key view. More."}, reading="SROP reading, two sentences. Here.")
    sec.finish({"x": 1.0})
    top = RunDir(root, analysis=analysis, params={"quick": quick}, title=analysis)
    top.write_meta(order=0)
    write_csv(root / "tables" / "claims.csv", _rows(), columns=list(CLAIM_COLUMNS))
    top.finish()


def test_quick_reproduce_opens_with_the_smoke_test_line(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    _top(tmp_path, "reproduce", True, plt)
    page = build_report(tmp_path).read_text()
    body = page[page.index("</h1>") + 5:]
    line = "smoke test (--quick): n = 3–48; verdicts are not evidence"
    assert body.startswith(f"<p class='meta warn smoke'>{line}</p>")
    assert smoke_line(_rows()) == line  # aggregates (n = models) do not count as units


def test_full_reproduce_has_no_smoke_line_and_lists_the_amendments(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    _top(tmp_path, "reproduce", False, plt)
    page = build_report(tmp_path).read_text()
    assert "smoke test" not in page
    log = page[page.index("id=amendments"):]
    a = AMENDMENTS[0]
    assert f"Amendment {a.number}" in log and a.changes[0] in log
    # the headline row present in this run sits beside its verdict before the amendment
    row = log[log.index("<td class=t>MNIST set @activation</td>"):]
    before = dict(((c, m), v) for c, m, v in a.before)[("S1", "MNIST set @activation")]
    assert row.index(before) < row.index("</tr>")
    assert "not in this run" in log  # claims this run did not decide


def test_sensitivity_rows_sit_collapsed_after_the_primary_ones(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    _top(tmp_path, "reproduce", False, plt)
    page = build_report(tmp_path).read_text()
    summary = page[page.index("id=summary"):page.index("id=amendments")]
    sens = summary.index("Sensitivity rows (3")
    assert summary.index("m0@activation") < sens < summary.index("m0@conv")
    assert summary.index("MNIST set @activation") < sens


def test_demo_opens_with_key_figures_then_the_claims_as_a_smoke_test(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    _top(tmp_path, "demo", True, plt)
    page = build_report(tmp_path).read_text()
    summary = page[page.index("id=summary"):page.index("<section>")]
    fig, reading = summary.index("id='first-srop'"), summary.index("SROP reading")
    claims = summary.index("<h2>Claims: a smoke test (n = 3–48; verdicts are not evidence)</h2>")
    assert reading < fig < claims < summary.index("m0@activation")


def test_smoke_line_without_units():
    assert smoke_line([]) == "smoke test (--quick): n = ?; verdicts are not evidence"
