"""results.py: atomic writes, tidy tables pandas reads, parameter checks and resume."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from infolens.results import RunDir, atomic_write_bytes, read_csv, write_csv


def test_csv_round_trip_keeps_precision_and_nan(tmp_path):
    rows = [{"image": 0, "layer": "conv1", "srop": 1 / 3, "dead": False},
            {"image": 1, "layer": "conv1", "srop": float("nan"), "dead": True},
            {"image": 2, "layer": "fc", "srop": torch.tensor(0.25)}]
    p = write_csv(tmp_path / "t.csv", rows)
    back = read_csv(p)
    assert back[0]["srop"] == 1 / 3 and back[0]["image"] == 0 and back[0]["dead"] is False
    assert math.isnan(back[1]["srop"])
    assert back[2]["srop"] == 0.25 and back[2]["dead"] != back[2]["dead"]  # missing cell -> NaN
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(p)
    assert list(df.columns) == ["image", "layer", "srop", "dead"] and df["srop"].isna().sum() == 1


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]  # no temp file left behind


def test_rundir_meta_and_parameter_guard(tmp_path):
    run = RunDir(tmp_path / "r", analysis="srop", params={"kappa": 0.85, "layers": ["a", "b"]}, seed=3)
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["params"] == {"kappa": 0.85, "layers": ["a", "b"]} and meta["seed"] == 3
    assert meta["environment"]["torch"] == torch.__version__
    run.write_part("rows", "0000000-0000002", [{"i": 0}, {"i": 1}])
    with pytest.raises(ValueError, match="other parameters.*kappa.*--overwrite"):
        RunDir(tmp_path / "r", analysis="srop", params={"kappa": 0.9, "layers": ["a", "b"]})
    again = RunDir(tmp_path / "r", analysis="srop", params={"kappa": 0.85, "layers": ["a", "b"]})
    assert again.has_part("rows", "0000000-0000002") and again.meta["resumed"] == 1
    fresh = RunDir(tmp_path / "r", analysis="srop", params={"kappa": 0.9, "layers": ["a", "b"]}, overwrite=True)
    assert not fresh.has_part("rows", "0000000-0000002")


def test_merge_sorts_parts_whatever_their_write_order(tmp_path):
    run = RunDir(tmp_path, analysis="x", params={})
    run.write_part("t", "0000004-0000006", [{"image": 5, "v": 0.5}, {"image": 4, "v": 0.4}])
    run.write_part("t", "0000000-0000002", [{"image": 1, "v": 0.1}, {"image": 0, "v": 0.0}])
    rows = run.merge("t", sort_by=["image"])
    assert [r["image"] for r in rows] == [0, 1, 4, 5]
    assert run.read_table("t") == rows


def test_name_columns_stay_strings(tmp_path):
    # nn.Sequential layers are called "0", "1", ...: a name, not a number
    write_csv(tmp_path / "t.csv", [{"layer": "1", "model": "007", "value": "2.5", "method": ""}])
    (row,) = read_csv(tmp_path / "t.csv")
    assert row["layer"] == "1" and row["model"] == "007" and row["value"] == 2.5
    assert row["method"] != row["method"]  # empty cell: NaN as everywhere
