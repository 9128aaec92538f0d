"""report.py: one self-contained page with every figure embedded and the tables rendered."""

from __future__ import annotations

import base64
import re

import pytest

from infolens.report import build_report
from infolens.results import RunDir


def test_report_embeds_figures_and_tables(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    run = RunDir(tmp_path / "sec", analysis="srop", params={"k": 1}, title="Section <A>")
    run.write_table("stats", [{"layer": "conv1", "mean": 0.5}, {"layer": "conv2", "mean": 0.25}])
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    run.save_figure(fig, "curve")
    run.write_meta(figures={"curve": "A falling line."})
    run.finish({"mean_srop": 0.375})
    page = build_report(tmp_path).read_text()
    assert "Section &lt;A&gt;" in page and "A falling line." in page and "mean_srop" in page
    imgs = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(imgs) == 1 and base64.b64decode(imgs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<td>conv2</td><td>0.25</td>" in page
    # self-contained: no scripts, no external resources
    assert "<script" not in page and "<link" not in page and not re.search(r"src=['\"]https?:", page)


def test_report_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no result"):
        build_report(tmp_path)


# --------------------------------------------------------------------------- the report leads with what was found
import json  # noqa: E402

from infolens.results import save_claim_figure, write_csv  # noqa: E402

CLAIM_COLUMNS = ["paper", "claim", "model", "statistic", "value", "ci_low", "ci_high", "threshold", "n", "verdict",
                 "note"]


def _paper_run(root, plt):
    """A SROP section with a claim figure, deviations, a nested summary and a long table; a top claims.csv."""
    run = RunDir(root / "srop", analysis="srop", params={}, title="SROP claims")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    save_claim_figure(run, fig, "s1_distributions", ["S1"])
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    run.save_figure(fig, "other")
    run.write_meta(figures={"other": "Another view.", "s1_distributions": "SROP distributions per variant. More."},
                   deviations=["W1 on a 512-bin grid."], report_tables=["layers", "gone"])
    run.write_table("layers", [{"model": "m", "layer": f"l{i}", "mean": i / 10} for i in range(3)])
    run.finish({"mean SROP (input)": {"mnist_vgg": {"original": 0.5, "noise": 0.6},
                                      "mnist_resnet": {"original": 0.7, "noise": 0.8}}, "seconds": 3.0})
    rows = [
        {"paper": "srop", "claim": "S1", "model": "mnist_vgg", "statistic": "ratio", "value": 5.2, "ci_low": 4.6,
         "ci_high": 6.0, "threshold": "> 1", "n": 48, "verdict": "reproduced", "note": "shuffle 5.9"},
        {"paper": "srop", "claim": "S2", "model": "mnist_vgg", "statistic": "ratio", "value": 1.2, "ci_low": 1.0,
         "ci_high": 1.4, "threshold": ">= 3", "n": 48, "verdict": "not reproduced", "note": ""},
        {"paper": "srop", "claim": "S3", "model": "MNIST set", "statistic": "rho", "value": 0.5, "ci_low": float("nan"),
         "ci_high": float("nan"), "threshold": "abs >= 0.8", "n": 3, "verdict": "inconclusive", "note": "<b>x</b>"},
    ]
    top = RunDir(root, analysis="reproduce", params={}, title="Reproduction")
    write_csv(root / "tables" / "claims.csv", rows, columns=CLAIM_COLUMNS)
    top.finish()
    return run


def test_report_opens_with_the_claims_coloured_and_linked_to_their_figures(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    _paper_run(tmp_path, plt)
    page = build_report(tmp_path).read_text()
    summary, first_section = page.index("id=summary"), page.index("<section>")
    assert summary < first_section
    head = page[summary:first_section]
    # one row per claim with its verdict's colour, in the order of claims.csv
    assert [m for m in re.findall(r"<tr class='(ok|bad|unk)'>", head)] == ["ok", "bad", "unk"]
    assert "<span class='v ok'>reproduced</span>" in head and "<span class='v bad'>not reproduced</span>" in head
    # S1 links to the figure that shows it, and that figure exists in the page under that anchor
    assert "<a href='#fig-srop-s1_distributions'>S1</a>" in head
    assert "id='fig-srop-s1_distributions'" in page
    assert "W1 on a 512-bin grid." in head  # deviations shown in the summary
    assert "&lt;b&gt;x&lt;/b&gt;" in head  # notes escaped
    assert "[4.6, 6]" in head and "SROP (arXiv 2102.00369)" in head


def test_section_opens_with_key_figure_and_reading_then_collapsed_pivots(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    _paper_run(tmp_path, plt)
    page = build_report(tmp_path).read_text()
    sec = page[page.index("<h2 id='srop'>"):]
    sec = sec[:sec.index("</section>")]
    reading = re.search(r"<p class=reading>(.*?)</p>", sec).group(1)
    assert reading.count(". ") + reading.endswith(".") == 2  # two sentences
    assert "3 claim rows" in reading and "shows SROP distributions per variant." in reading
    # the claim figure is the key figure, first, before any table; its SVG is linked
    assert sec.index("class=key") < sec.index("<details>") and "id='fig-srop-s1_distributions' class=key" in sec
    assert "href='srop/figures/s1_distributions.svg'" in sec
    # the nested dict became a pivot: rows models, columns conditions
    assert re.search(r"<tr><th></th><th>original</th><th>noise</th></tr><tr><td>mnist_vgg</td><td>0.5</td>"
                     r"<td>0.6</td></tr>", sec)
    assert "mnist_vgg.original" not in page  # no dotted key-value rows any more
    assert "Missing table(s) gone" in sec  # not skipped silently


def test_report_prints_well(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    _paper_run(tmp_path, plt)
    page = build_report(tmp_path).read_text()
    css = page[page.index("@media print"):]
    assert "break-inside:avoid" in css and "nav{display:none}" in css and "print-color-adjust:exact" in css


def test_headline_numbers_lead_when_there_are_no_claims(tmp_path):
    run = RunDir(tmp_path / "a", analysis="models", params={}, title="Models")
    run.finish({"mnist_vgg": 0.95, "mnist_resnet": 0.89})
    page = build_report(tmp_path).read_text()
    head = page[page.index("id=summary"):page.index("<section>")]
    assert "mnist_vgg: <b>0.95</b>" in head and "No claims were decided" in head


def test_cross_method_panel_one_row_per_model_with_rank_correlations(tmp_path):
    from infolens.report.panel import panel_rows, spearman

    models = ["a", "b", "c", "d"]
    s = RunDir(tmp_path / "srop", analysis="srop", params={})
    s.write_table("summary_input", [{"model": m, "variant": v, "srop_mean": 0.1 * i + (0.5 if v == "noise" else 0)}
                                    for i, m in enumerate(models) for v in ("original", "noise")])
    d = RunDir(tmp_path / "discard", analysis="discard", params={})
    # entropy grows with depth by slope 0.1 * (4 - i): a has the steepest
    d.write_table("layers", [{"model": m, "stage": "", "depth": k, "entropy_mean": 0.1 * (4 - i) * k}
                             for i, m in enumerate(models) for k in range(3)])
    f = RunDir(tmp_path / "forgrad", analysis="forgrad", params={})
    f.write_table("summary", [{"model": m, "method": "saliency", "cutoff": c} for m, c in zip(models, [3, 5, 4, 9])])
    g = RunDir(tmp_path / "signal", analysis="signal", params={})
    g.finish({"ranking (most signal first)": "c > a ~ b > d"})
    rows = {r["model"]: r for r in panel_rows([(p, json.loads((p / "meta.json").read_text()))
                                               for p in (s.root, d.root, f.root, g.root)])}
    assert rows["b"]["srop"] == pytest.approx(0.1)  # the original inputs only
    assert rows["a"]["discard_slope"] == pytest.approx(0.4) and rows["d"]["discard_slope"] == pytest.approx(0.1)
    assert [rows[m]["forgrad_cutoff"] for m in models] == [3, 5, 4, 9]
    assert [rows[m]["signal_position"] for m in models] == [2, 2, 1, 3]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    page = build_report(tmp_path).read_text()
    assert page.index("id='cross-method'") < page.index("<section>")
    # srop rises a->d while the slope falls: rho = -1 over 4 models
    assert re.search(r"mean SROP \(originals, fraction of Nyquist\) vs discarding slope \(nats per layer\)</td>"
                     r"<td>-1</td><td>4</td>", page)


@pytest.mark.parametrize("bad, name", [("summary.json", "summary.json"), ("meta.json", "meta.json"),
                                       ("tables/t.csv", "t.csv")])
def test_corrupt_files_are_named(tmp_path, bad, name):
    run = RunDir(tmp_path, analysis="x", params={})
    run.write_table("t", [{"a": 1}])
    run.finish({"m": 1})
    run.close()
    path = tmp_path / bad
    path.write_bytes(b"{\x00\xff not json" if bad.endswith(".json") else b"a,b\n\xff\xfe\x00,1\n")
    with pytest.raises(ValueError, match=rf"{name} is not (valid JSON|a readable CSV table).*rerun"):
        build_report(tmp_path)


@pytest.mark.parametrize("scale,kw", [("log", {}), ("symlog", {"linthresh": 0.02})])
def test_log_axes_have_plain_tick_labels(scale, kw):
    """Mathtext is off (user labels keep their "$"), so log-axis tick labels must be plain numbers, not the
    literal ``$\\mathdefault{10^{-2}}$`` matplotlib's default formatter writes, also within one decade."""
    pytest.importorskip("matplotlib")
    from infolens.plots import log_scale, subplots

    for lo, hi in ((1e-4, 1e-1), (0.02, 0.09), (0.018, 0.029)):
        fig, axes = subplots()
        ax = axes[0, 0]
        ax.plot([0, 1, 2], [lo, (lo * hi) ** 0.5, hi])
        log_scale(ax, "y", scale, **kw)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
        assert labels and not [t for t in labels if "$" in t or "mathdefault" in t], labels
        values = [float(t.replace("\u2212", "-")) for t in labels]
        assert all(v >= 0 for v in values) and len(set(labels)) == len(labels), labels  # distinct, readable
        fig.clf()
