"""results.py: atomic writes, tidy tables pandas reads, parameter checks and resume."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from infolens._io import atomic_write_bytes, file_mode
from infolens.results import RunDir, read_csv, write_csv


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


# --------------------------------------------------------------------------- locks and file modes
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

from infolens.results import FolderLocked, save_claim_figure, unlock_folder  # noqa: E402


def _holder(folder) -> subprocess.Popen:
    """Another process that opens ``folder`` as a RunDir and keeps it until its stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        from infolens.results import RunDir
        RunDir({str(folder)!r}, analysis="srop", params={{"kappa": 0.85}})
        print("ready", flush=True)
        sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_second_process_is_refused_with_the_holders_pid_and_meta_untouched(tmp_path):
    p = _holder(tmp_path / "r")
    try:
        before = (tmp_path / "r" / "meta.json").read_bytes()
        with pytest.raises(FolderLocked, match=rf"in use by another infolens run \(PID {p.pid}\).*--out"):
            RunDir(tmp_path / "r", analysis="srop", params={"kappa": 0.5})
        assert (tmp_path / "r" / "meta.json").read_bytes() == before  # the params were not overwritten
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    # the holder ended (even a kill -9 releases flock): the folder is free again, same params resume
    again = RunDir(tmp_path / "r", analysis="srop", params={"kappa": 0.85})
    assert again.meta["resumed"] == 1
    again.close()


def test_same_process_may_reopen_its_folder_and_close_releases_it(tmp_path):
    a = RunDir(tmp_path / "r", analysis="x", params={})
    RunDir(tmp_path / "r", analysis="x", params={})  # re-entrant within one process
    a.close()
    p = _holder(tmp_path / "r2")
    p.stdin.close()
    p.wait(timeout=30)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        run = RunDir(tmp_path / "r", analysis="x", params={})
        run.write_table("t", [{"a": 1}])
        run.finish({"m": 1})
        paths = [tmp_path / "r" / "meta.json", tmp_path / "r" / "tables" / "t.csv", tmp_path / "r" / "summary.json",
                 atomic_write_bytes(tmp_path / "r" / "report.html", b"<html>")]
        for path in paths:
            assert path.stat().st_mode & 0o777 == expected, path
        run.close()
    finally:
        os.umask(old)


def test_rewriting_a_file_keeps_the_mode_the_user_gave_it(tmp_path):
    target = atomic_write_bytes(tmp_path / "report.html", b"one")
    os.chmod(target, 0o640)
    atomic_write_bytes(target, b"two")
    assert target.stat().st_mode & 0o777 == 0o640 and file_mode(target) == 0o640


def test_claim_figure_is_saved_as_png_and_svg_and_linked_in_meta(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    run = RunDir(tmp_path, analysis="srop", params={})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="layer $1")  # a lone "$" in a user's layer name
    ax.legend()
    save_claim_figure(run, fig, "cascade", ["S1", "S2"])
    assert (tmp_path / "figures" / "cascade.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (tmp_path / "figures" / "cascade.svg").read_bytes()[:400]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["claim_figures"] == {"S1": "figures/cascade.png", "S2": "figures/cascade.png"}
    unlock_folder(tmp_path)


def test_dollar_in_a_label_draws(tmp_path):
    from infolens.plots import subplots

    run = RunDir(tmp_path, analysis="x", params={})
    fig, axes = subplots()
    axes[0, 0].set_title("features.$x")  # mathtext would fail on the unmatched "$" when drawing
    assert run.save_figure(fig, "f").stat().st_size > 0


def test_corrupt_meta_json_names_the_file(tmp_path):
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="meta.json is not valid JSON.*--overwrite"):
        RunDir(tmp_path, analysis="x", params={})


# --------------------------------------------------------------------------- progress in a log
import io  # noqa: E402


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_in_a_log_is_a_plain_line_every_few_seconds(monkeypatch):
    from infolens import _progress

    monkeypatch.setenv("INFOLENS_PROGRESS", "1")
    clock = _Clock()
    monkeypatch.setattr(_progress.time, "monotonic", clock)
    log = _Log()
    with _progress.Progress(100, "srop mnist_vgg", stream=log, interval=5.0) as p:
        for _ in range(10):  # 10 batches of 10 images, 2 s apart: lines at 6, 12, 18 s (every >= 5 s)
            clock.t += 2.0
            p.update(10)
            # loops inside the run open no bars of their own
            assert list(_progress.track(range(3), desc="layers")) == [0, 1, 2]
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines == ["srop mnist_vgg: 10 of 100 images took 0:02: about 0:18 more for the rest",  # the first batch
                     "srop mnist_vgg: 30/100 images (30%), 0:06 elapsed, ETA 0:14",
                     "srop mnist_vgg: 60/100 images (60%), 0:12 elapsed, ETA 0:08",
                     "srop mnist_vgg: 90/100 images (90%), 0:18 elapsed, ETA 0:02",
                     "srop mnist_vgg: 100/100 images (100%), done in 0:20"]


def test_progress_in_a_terminal_is_one_bar_with_an_eta(monkeypatch):
    pytest.importorskip("tqdm")
    from infolens import _progress

    monkeypatch.setenv("INFOLENS_PROGRESS", "1")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    with _progress.Progress(8, "run", stream=out) as p:
        for _ in range(8):
            p.update(1)
            assert list(_progress.track(range(2))) == [0, 1]
    text = out.getvalue()
    assert "8/8" in text and "images" in text and "<" in text  # tqdm's "elapsed<remaining" (the ETA)
    assert text.count("run:") >= 1 and "steps" not in text  # the inner loops drew nothing
    assert _progress._DEPTH[0] == 0


def test_fingerprints_change_with_what_determines_the_numbers(tmp_path):
    import hashlib
    import os

    from infolens.results import file_sha256, files_fingerprint, input_fingerprint

    ck = tmp_path / "ck.pt"
    ck.write_bytes(b"abc")
    assert file_sha256(ck) == hashlib.sha256(b"abc").hexdigest()  # independent: hashlib on the bytes
    files = []
    for n in ("a.png", "b.png"):
        (tmp_path / n).write_bytes(b"x" * 10)
        os.utime(tmp_path / n, ns=(1_000_000_000, 1_000_000_000))
        files.append(tmp_path / n)
    base = files_fingerprint(files, tmp_path)
    line = "".join(f"{n}\t10\t1000000000\n" for n in ("a.png", "b.png"))
    assert base == hashlib.sha256(line.encode()).hexdigest()  # the documented lines, hashed
    os.utime(files[1], ns=(2_000_000_000, 2_000_000_000))  # touched
    assert files_fingerprint(files, tmp_path) != base
    assert files_fingerprint(files[:1], tmp_path) != base  # one file fewer
    fp = input_fingerprint(weights="DEFAULT", checkpoint=ck, data_files=files, data_root=tmp_path)
    assert fp == {"weights": "DEFAULT", "checkpoint_sha256": hashlib.sha256(b"abc").hexdigest(),
                  "data_files_sha256": files_fingerprint(files, tmp_path)}
    assert input_fingerprint(weights="none") == {"weights": "none", "checkpoint_sha256": None,
                                                 "data_files_sha256": None}
