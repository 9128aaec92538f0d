"""The FORGrad runner (``infolens attribution``): option parsing, the ranking table, the cut-off search
saved and reused, and the tables it writes agreeing with the core functions called directly."""

from __future__ import annotations

import json
import math

import pytest
import torch

from infolens import attribution as A
from infolens.cli import main as cli_main
from infolens.experiments import forgrad as R
from infolens.faithfulness import Deletion, MuFidelity
from infolens.models import build_builtin
from infolens.results import read_csv

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "mnist_allconv.pt"
    torch.save(build_builtin("mnist_allconv", seed=1).state_dict(), path)
    return path


def _argv(out, checkpoint, *extra):
    return ["--no-progress", "forgrad", "mnist_allconv", "--checkpoint", str(checkpoint), "--data", "mnist",
            "--limit", "4", "--batch-size", "2", "--out", str(out), "--no-report", "--methods", "saliency,occlusion",
            "--metrics", "deletion,insertion,mufidelity", "--mufidelity-masks", "12", "--occlusion-window", "7",
            "--figures", "none",
            *extra]


def test_parse_forgrad():
    assert R.parse_forgrad("auto") == "auto" and R.parse_forgrad(" OFF ") == "off"
    assert R.parse_forgrad("3") == 3.0 and R.parse_forgrad(0.25) == 0.25
    for bad in ("-1", "0", "high"):
        with pytest.raises(ValueError, match="--forgrad"):
            R.parse_forgrad(bad)


def test_summarize_ranks_each_metric_in_its_direction():
    rows = []
    means = {  # (method, forgrad, metric) -> score; deletion: lower is better
        ("saliency", "off", "deletion"): 3.0, ("saliency", "forgrad", "deletion"): 1.0,
        ("occlusion", "off", "deletion"): 2.0, ("occlusion", "forgrad", "deletion"): 2.5,
        ("saliency", "off", "insertion"): 1.0, ("saliency", "forgrad", "insertion"): 4.0,
        ("occlusion", "off", "insertion"): 2.0, ("occlusion", "forgrad", "insertion"): 3.0,
    }
    for (m, var, metric), v in means.items():
        for i, d in enumerate((-0.5, 0.5)):  # two images, mean v
            rows.append({"model": "net", "index": i, "method": m, "kind": A.method_kind(m), "forgrad": var,
                         "cutoff": 3.0 if var == "forgrad" else math.nan, "metric": metric, "score": v + d})
    summary, ranking, headline = R.summarize(rows)
    rank = {(r["metric"], r["forgrad"], r["method"]): r["rank"] for r in ranking}
    assert rank[("deletion", "off", "occlusion")] == 1 and rank[("deletion", "forgrad", "saliency")] == 1
    assert rank[("insertion", "off", "occlusion")] == 1 and rank[("insertion", "forgrad", "saliency")] == 1
    sal = next(r for r in summary if r["method"] == "saliency")
    assert sal["deletion"] == pytest.approx(3.0) and sal["deletion_forgrad"] == pytest.approx(1.0)
    assert sal["deletion_rank"] == 2 and sal["deletion_rank_forgrad"] == 1 and sal["cutoff"] == 3.0
    # only gradient methods are counted (occlusion is prediction-based)
    assert headline["net"] == {"gradient methods improved on deletion": "1/1",
                               "gradient methods improved on insertion": "1/1"}


def test_cli_auto_cutoff_tables_and_reuse(tmp_path, checkpoint):
    out = tmp_path / "run"
    assert cli_main(_argv(out, checkpoint, "--forgrad", "auto", "--select-images", "4")) == 0
    saved = json.loads((out / "cutoffs.json").read_text())["mnist_allconv"]
    assert set(saved) == {"saliency"}  # only gradient-based methods are filtered (occlusion is not)
    curves = read_csv(out / "tables" / "cutoff_curves.csv")
    for m, sel in saved.items():
        # the chosen cut-off is the best of its curve, and the grid ends with the identity
        mine = [r for r in curves if r["method"] == m]
        assert sel["cutoff"] == max(mine, key=lambda r: r["score"])["cutoff"]
        assert sel["cutoffs"] == A.default_cutoffs(28, 28) and sel["cutoffs"][-1] == pytest.approx(A.max_cutoff(28, 28))
        assert all(r["score"] == pytest.approx(r["insertion"] - r["deletion"]) for r in mine)
    scores = read_csv(out / "tables" / "scores.csv")
    # 4 images x 3 metrics x (saliency raw and filtered, occlusion raw, 3 sanity references)
    assert len(scores) == 4 * 3 * (2 + 1 + 3)
    assert {r["method"] for r in scores if r["forgrad"] == "forgrad"} == {"saliency"}
    assert {r["cutoff"] for r in scores if r["forgrad"] == "forgrad" and r["method"] == "saliency"} == \
        {saved["saliency"]["cutoff"]}
    for name in ("summary", "ranking", "mean_spectra", "spectra"):
        assert (out / "tables" / f"{name}.csv").is_file()

    # the rows are the core functions' numbers: recompute Saliency + FORGrad + Deletion and MuFidelity
    from infolens.data import load_dataset
    from infolens.models import load_model

    model = load_model("mnist_allconv", checkpoint=str(checkpoint)).model.eval()
    x = load_dataset("mnist", split="test", limit=4)[0]
    with torch.no_grad():
        t = model(x).argmax(1)
    sal = A.Saliency(model).attribute(x, t)
    filt = A.forgrad(sal, saved["saliency"]["cutoff"])
    want = {("off", "deletion"): Deletion(model)(x, t, sal).scores,
            ("forgrad", "deletion"): Deletion(model)(x, t, filt).scores,
            ("forgrad", "mufidelity"): MuFidelity(model, n_masks=12)(x, t, filt).scores}
    for (var, metric), vals in want.items():
        got = sorted((r["index"], r["score"]) for r in scores
                     if r["method"] == "saliency" and r["forgrad"] == var and r["metric"] == metric)
        assert [g[1] for g in got] == pytest.approx(vals.tolist(), rel=1e-5, abs=1e-6)

    # a run started again redoes nothing; another folder reuses the saved cut-offs without a new search
    parts = {p: p.stat().st_mtime_ns for p in out.glob("parts/*/*.csv")}
    assert cli_main(_argv(out, checkpoint, "--forgrad", "auto", "--select-images", "4")) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("parts/*/*.csv")} == parts
    other = tmp_path / "reuse"
    assert cli_main(_argv(other, checkpoint, "--forgrad", "auto", "--select-images", "4", "--cutoffs-file",
                          str(out / "cutoffs.json"))) == 0
    assert not (other / "tables" / "cutoff_curves.csv").exists()
    assert json.loads((other / "cutoffs.json").read_text())["mnist_allconv"] == saved


def test_cli_fixed_cutoff_in_nyquist_units_and_off(tmp_path, checkpoint):
    out = tmp_path / "nyq"
    assert cli_main(_argv(out, checkpoint, "--forgrad", "0.25", "--cutoff-unit", "nyquist", "--metrics",
                          "deletion")) == 0
    rows = read_csv(out / "tables" / "scores.csv")
    assert {r["cutoff"] for r in rows if r["forgrad"] == "forgrad"} == {0.25}
    off = tmp_path / "off"
    assert cli_main(_argv(off, checkpoint, "--forgrad", "off", "--metrics", "insertion")) == 0
    rows = read_csv(off / "tables" / "scores.csv")
    assert {r["forgrad"] for r in rows} == {"off"} and len(rows) == 4 * (2 + 3)


def test_cli_errors(tmp_path, checkpoint, capsys):
    assert cli_main(_argv(tmp_path / "a", checkpoint, "--methods", "salincy")) == 2
    assert "unknown attribution method" in capsys.readouterr().err
    assert cli_main(_argv(tmp_path / "b", checkpoint, "--metrics", "delete")) == 2
    assert "unknown faithfulness metric" in capsys.readouterr().err
    assert cli_main(_argv(tmp_path / "c", checkpoint, "--forgrad", "-2")) == 2
    assert "--forgrad" in capsys.readouterr().err
