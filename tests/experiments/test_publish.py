"""Publishing a reproduce run and the README's table: the README equals the committed file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infolens.claims import CLAIM_COLUMNS, claim_row, most_row
from infolens.experiments import publish as P
from infolens.results import RunDir, read_csv, write_csv

REPO = Path(__file__).resolve().parents[2]


def _readme_block(text: str) -> str:
    assert P.README_START in text and P.README_END in text, "README lacks the reproduction table markers"
    return text.split(P.README_START, 1)[1].split(P.README_END, 1)[0].strip()


def test_readme_table_equals_the_committed_reproduction_file():
    """With reproduction/claims.csv committed the README shows exactly its rows; without it, it says so."""
    block = _readme_block((REPO / "README.md").read_text())
    published = REPO / "reproduction" / "claims.csv"
    if published.is_file():
        rows = read_csv(published)
        assert rows and all(r["variant"] == "primary" for r in rows)
        assert block == P.readme_table(rows)
    else:
        assert block == P.NO_RUN


def _rows():
    per = [claim_row("srop", "S1", f"m{i}@activation", "ratio", {"value": 2.0, "ci_low": 1.5, "ci_high": 2.5,
                                                                   "n": 30}, 1.0) for i in range(4)]
    sens = [dict(r, model=r["model"].replace("activation", "conv"), variant="sensitivity") for r in per]
    single = claim_row("forgrad", "F5", "a vs b", "share", {"value": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 500}, 0.0)
    return per + [most_row(per, model="MNIST set @activation")] + sens + [most_row(sens, model="MNIST set @conv"),
                                                                            single]


def _finished_run(root: Path, *, quick: bool = False) -> Path:
    sec = RunDir(root / "srop", analysis="srop", params={}, title="srop")
    (root / "srop" / "figures").mkdir(parents=True, exist_ok=True)
    (root / "srop" / "figures" / "s1.png").write_bytes(b"\x89PNG fake")
    sec.write_meta(claim_figures={"S1": "figures/s1.png"})
    sec.finish({})
    top = RunDir(root, analysis="reproduce", params={"papers": ["srop", "forgrad"], "quick": quick}, title="r")
    top.write_meta(command="infolens reproduce", commit="abc", machine="test box")
    write_csv(root / "tables" / "claims.csv", _rows(), columns=list(CLAIM_COLUMNS))
    top.finish({}, seconds_per_paper={"srop": 12.5, "forgrad": 30.0})
    return root


def test_publish_copies_the_run_with_provenance_and_writes_the_headline_rows(tmp_path):
    run = _finished_run(tmp_path / "run")
    folder = P.publish(run, tmp_path / "reproduction")
    meta = json.loads((folder / "meta.json").read_text())
    for paper in ("srop", "forgrad"):
        assert set(meta["papers"][paper]) == {"command", "commit", "date", "machine", "device", "wall_seconds", "ranks",
                                                 "ranks_used"}
    assert meta["papers"]["srop"]["wall_seconds"] == 12.5 and meta["papers"]["srop"]["commit"] == "abc"
    assert (folder / "figures" / "srop" / "s1.png").is_file() and (folder / "claims.csv").is_file()
    head = read_csv(tmp_path / "reproduction" / "claims.csv")
    # the primary aggregate of S1 and F5's single primary row; no per-model or sensitivity row
    assert [(r["claim"], r["model"]) for r in head] == [("S1", "MNIST set @activation"), ("F5", "a vs b")]
    assert {r["run"] for r in head} == {folder.name} and list(head[0]) == list(P.PUBLISHED_COLUMNS)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{P.README_START}\nold\n{P.README_END}\ntail\n")
    P.update_readme(readme, tmp_path / "reproduction")
    text = readme.read_text()
    assert _readme_block(text) == P.readme_table(head) and text.endswith("tail\n")
    assert "| S1 | MNIST set @activation | 1 | >= 0.75 | 4 | **reproduced** |" in text


def test_publish_refuses_quick_unfinished_and_missing_runs(tmp_path):
    with pytest.raises(ValueError, match="smoke test"):
        P.publish(_finished_run(tmp_path / "q", quick=True), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="run_dir"):
        P.publish(tmp_path / "nothing", tmp_path / "out")
    readme = tmp_path / "R.md"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        P.update_readme(readme, tmp_path / "out")
    assert P.readme_block(tmp_path / "out") == P.NO_RUN


def _paper_run(root: Path, paper: str, claim: str, value: float) -> Path:
    sec = RunDir(root / paper, analysis=paper, params={}, title=paper)
    (root / paper / "figures").mkdir(parents=True, exist_ok=True)
    (root / paper / "figures" / f"{claim}.png").write_bytes(b"\x89PNG fake")
    sec.write_meta(claim_figures={claim: f"figures/{claim}.png"}, wall_seconds={"model a": 100.0, "model b": 20.5})
    sec.finish({})
    top = RunDir(root, analysis="reproduce", params={"papers": [paper], "quick": False}, title="r")
    top.write_meta(command=f"infolens reproduce --paper {paper}", commit=f"c-{paper}", machine="test box")
    row = claim_row(paper, claim, "a vs b", "share", {"value": value, "ci_low": value - 0.1, "ci_high": value + 0.1,
                                                       "n": 500}, 0.0)
    write_csv(root / "tables" / "claims.csv", [row], columns=list(CLAIM_COLUMNS))
    top.finish({}, seconds_per_paper={paper: 60.0})
    return root


def test_publishing_one_paper_after_another_keeps_both_and_a_rerun_replaces_its_own_rows(tmp_path):
    """Papers are published one at a time: a later paper's run keeps the earlier paper's rows, provenance
    and figures (in paper order), and republishing a paper replaces only that paper's rows."""
    dest = tmp_path / "reproduction"
    P.publish(_paper_run(tmp_path / "a", "forgrad", "F5", 0.2), dest)
    folder = P.publish(_paper_run(tmp_path / "b", "srop", "S2", 0.5), dest)
    head = read_csv(dest / "claims.csv")
    assert [(r["paper"], r["claim"]) for r in head] == [("srop", "S2"), ("forgrad", "F5")]  # table order
    assert [(r["paper"], r["claim"]) for r in read_csv(folder / "claims.csv")] == [("srop", "S2"), ("forgrad", "F5")]
    meta = json.loads((folder / "meta.json").read_text())
    assert list(meta["papers"]) == ["srop", "forgrad"] and meta["papers"]["forgrad"]["commit"] == "c-forgrad"
    assert set(meta["figures"]) == {"figures/srop/S2.png", "figures/forgrad/F5.png"}
    assert meta["sources"] == {"forgrad": str(tmp_path / "a"), "srop": str(tmp_path / "b")}
    # a paper's per-unit wall times travel with it (a resumed run's last invocation timed only the rest)
    assert meta["papers"]["srop"]["wall_seconds"] == 60.0
    assert meta["papers"]["srop"]["wall_seconds_by_unit"] == {"model a": 100.0, "model b": 20.5}
    assert meta["papers"]["srop"]["wall_seconds_units_total"] == 120.5
    P.publish(_paper_run(tmp_path / "c", "forgrad", "F5", 0.7), dest)
    head = read_csv(dest / "claims.csv")
    assert [(r["paper"], r["value"]) for r in head] == [("srop", 0.5), ("forgrad", 0.7)]
    assert sum(meta_v for meta_v in json.loads((folder / "meta.json").read_text())["verdicts"].values()) == 2


def test_the_recorded_command_names_torchrun_when_it_started_the_run(monkeypatch):
    monkeypatch.setattr(P.sys, "argv", ["/x/.venv/bin/infolens", "reproduce", "--paper", "discard"])
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert P.command_line() == "infolens reproduce --paper discard"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert P.command_line() == "torchrun --nproc-per-node 2 infolens reproduce --paper discard"
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert P.command_line() == "torchrun --nproc-per-node 8 --nnodes 2 infolens reproduce --paper discard"
