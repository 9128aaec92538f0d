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
