"""Runs that would give silently wrong numbers are refused in one line: a result folder made from other
weights, a retrained checkpoint or an edited data folder; --out inside --data; non-finite float options; a
cut table in the report. Runs in-process (the CLI's main) on four MNIST images: seconds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from infolens import cli
from infolens.models import build_builtin

SROP = ["--no-progress", "srop", "mnist_vgg", "--limit", "4", "--batch-size", "4", "--layers", "features.0",
        "--no-report"]


def _cli(capsys, *args: str) -> tuple[int, list[str]]:
    rc = cli.main([str(a) for a in args])
    return rc, capsys.readouterr().err.strip().splitlines()


def _refused(rc: int, err: list[str], *words: str) -> None:
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("infolens: error:"), err
    for w in words:
        assert w in err[0], err


def _mean_srop(out: Path) -> float:
    return json.loads((out / "summary.json").read_text())["mean SROP (none)"]["mnist_vgg"]["original"]


def test_other_weights_into_the_same_folder_are_refused(tmp_path, capsys):
    out = tmp_path / "r"
    rc, err = _cli(capsys, *SROP, "--weights", "none", "--out", out)
    assert rc == 0, err
    rc, err = _cli(capsys, *SROP, "--weights", "DEFAULT", "--out", out)  # used to return the random-weight numbers
    _refused(rc, err, "differing: weights", "the model's weights")
    rc, err = _cli(capsys, *SROP, "--weights", "None", "--out", out)  # the same choice, spelled otherwise: resumes
    assert rc == 0, err


def test_a_checkpoint_retrained_at_the_same_path_is_refused(tmp_path, capsys):
    ckpt, out = tmp_path / "model.pt", tmp_path / "r"
    torch.save(build_builtin("mnist_vgg", seed=0).state_dict(), ckpt)
    rc, err = _cli(capsys, *SROP, "--checkpoint", ckpt, "--out", out)
    assert rc == 0, err
    torch.save(build_builtin("mnist_vgg", seed=1).state_dict(), ckpt)  # "retrained": same path, other weights
    rc, err = _cli(capsys, *SROP, "--checkpoint", ckpt, "--out", out)
    _refused(rc, err, "checkpoint_sha256", "the checkpoint file's contents")
    # --overwrite starts afresh and gives what a fresh folder gives
    rc, err = _cli(capsys, *SROP, "--checkpoint", ckpt, "--out", out, "--overwrite")
    assert rc == 0, err
    rc, err = _cli(capsys, *SROP, "--checkpoint", ckpt, "--out", tmp_path / "fresh")
    assert rc == 0, err
    assert _mean_srop(out) == _mean_srop(tmp_path / "fresh")


def _digits(root: Path, n: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        (root / str(i % 2)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(root / str(i % 2) / f"{i}.png")
    return root


def test_an_edited_data_folder_is_refused(tmp_path, capsys):
    d, out = _digits(tmp_path / "digits"), tmp_path / "r"
    args = [*SROP, "--weights", "none", "--data", d, "--out", out]
    rc, err = _cli(capsys, *args)
    assert rc == 0, err
    rc, err = _cli(capsys, *args)  # unchanged: resumes
    assert rc == 0, err
    shutil.copy(d / "0" / "0.png", d / "0" / "0-copy.png")
    rc, err = _cli(capsys, *args)
    _refused(rc, err, "data_files_sha256", "the data files")


def test_out_inside_data_is_refused_and_writes_nothing(tmp_path, capsys):
    d = _digits(tmp_path / "digits")
    before = sorted(p.relative_to(d) for p in d.rglob("*"))
    rc, err = _cli(capsys, *SROP, "--weights", "none", "--data", d, "--out", d / "results")
    _refused(rc, err, "lies inside --data", "outside the data folder")
    assert sorted(p.relative_to(d) for p in d.rglob("*")) == before


@pytest.mark.parametrize("args, option", [
    (["discard", "mnist_vgg", "--sigma0", "inf"], "--sigma0"),
    (["discard", "mnist_vgg", "--tau", "inf"], "--tau"),
    (["discard", "mnist_vgg", "--tau", "nan"], "--tau"),
    (["srop", "mnist_vgg", "--q", "inf"], "--q"),
    (["srop", "mnist_vgg", "--kappa", "nan"], "--kappa"),
    (["signal", "--lr=-inf"], "--lr"),
    (["forgrad", "mnist_vgg", "--forgrad", "inf"], "--forgrad"),
])
def test_non_finite_float_options_are_refused(tmp_path, capsys, args, option):
    rc, err = _cli(capsys, "--no-progress", *args, "--out", tmp_path / "r")
    _refused(rc, err, option, "finite")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("damage", ["cut", "empty"])
def test_report_on_a_cut_table_names_the_file(tmp_path, capsys, damage):
    from infolens.results import RunDir

    run = RunDir(tmp_path / "r", analysis="srop", params={})
    run.write_table("layers", [{"model": "m", "layer": "l", "check": "none", "variant": "original",
                                "srop_mean": 0.25} for _ in range(3)])
    run.finish({"m": 1})
    run.close()
    path = tmp_path / "r" / "tables" / "layers.csv"
    path.write_bytes(path.read_bytes()[:40] if damage == "cut" else b"")  # the section used to vanish, exit 0
    rc, err = _cli(capsys, "report", tmp_path / "r")
    _refused(rc, err, "layers.csv", "rerun the analysis")
