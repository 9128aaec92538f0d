"""End-to-end: the CLI on a tiny subset, its result folder and report, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def infolens(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infolens", "--no-progress", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "2"})


def test_quick_demo_writes_every_section_and_a_report(quick_demo):
    report = quick_demo / "report.html"
    assert report.is_file()
    page = report.read_text()
    sections = sorted(p.parent.name for p in quick_demo.glob("*/meta.json"))
    assert "models" in sections
    for sec in sections:
        meta = json.loads((quick_demo / sec / "meta.json").read_text())
        assert meta.get("finished"), f"section {sec} did not finish"
        assert meta["title"] in page.replace("&#x27;", "'").replace("&amp;", "&")
    assert page.count("data:image/png;base64,") >= len(sections)


def test_rerun_of_finished_demo_resumes_without_recomputing(quick_demo):
    parts = {p: p.stat().st_mtime_ns for p in quick_demo.glob("*/parts/*/*.csv")}
    r = infolens("demo", "--quick", "--out", str(quick_demo))
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in quick_demo.glob("*/parts/*/*.csv")} == parts


def test_layers_lists_every_layer_with_shapes():
    r = infolens("layers", "resnet18")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "resnet18" in lines[0] and "(3, 224, 224)" in lines[0]
    row = next(line for line in lines if line.startswith("layer4.1.conv2 "))
    assert "512x7x7" in row and "Conv2d" in row
    from torchvision.models import resnet18

    modules = [n for n, _ in resnet18().named_modules() if n]  # 67: every named module, containers too
    assert len(lines) == 2 + len(modules)  # title and column header, then one row per module
    assert [line.split()[0] for line in lines[2:]] == modules


@pytest.mark.parametrize("args, message", [
    (["layers", "resnet18", "--select", "layer9.conv"], "closest names: layer4"),
    (["layers", "resnet18", "--select", "layer9*"], "matches no layer"),
    (["layers", "no_such_model_xyz"], "no_such_model_xyz"),
    (["report", "/nonexistent/folder"], "does not exist"),
    (["layers", "mnist_vgg", "--checkpoint", "/nonexistent/ckpt.pt"], "ckpt.pt"),
])
def test_bad_arguments_give_one_line_and_exit_code_2(args, message):
    r = infolens(*args)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("infolens: error:") and message in err[0], r.stderr
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- every bad argument ends in one line
# Each case ends with ONE line naming the problem and the fix, and exit code 2; none needs a trained model
# (a random-weight checkpoint stands in), so the table runs in seconds.

@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    from infolens.models import build_builtin

    path = tmp_path_factory.mktemp("ckpt") / "vgg.pt"
    torch.save(build_builtin("mnist_vgg").state_dict(), path)
    return path


def _bomb_folder(root):
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    (root / "cls").mkdir(parents=True)
    (root / "cls" / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return root


def _one_line(r, message):
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(err) == 1 and err[0].startswith("infolens: error:") and message in err[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert len(err[0]) < 400, f"a {len(err[0])}-character line"  # timm's unknown name was one 20 KB line


@pytest.mark.parametrize("case, args, message", [
    ("device cuda without a GPU", ["srop", "mnist_vgg", "--device", "cuda"], "no CUDA GPU on this machine; pass --device cpu"),
    ("device gpu", ["srop", "mnist_vgg", "--device", "gpu"], "is not a torch device; pass cpu, cuda"),
    ("layers --device cuda", ["layers", "mnist_vgg", "--device", "cuda"], "pass --device cpu"),
    ("--out names a file", ["srop", "mnist_vgg", "--out", "{file}"], "is an existing file, not a folder"),
    ("demo --out names a file", ["demo", "--quick", "--out", "{file}"], "is an existing file, not a folder"),
    ("text file as --checkpoint", ["layers", "mnist_vgg", "--checkpoint", "{file}"], "is not a file written by torch.save"),
    ("--methods ''", ["forgrad", "mnist_vgg", "--methods", ""], "--methods is empty"),
    ("--metrics ''", ["forgrad", "mnist_vgg", "--metrics", " , "], "--metrics is empty"),
    ("--batch-size 0", ["srop", "mnist_vgg", "--batch-size", "0", "--out", "{tmp}/o"], "--batch-size must be a positive"),
    ("discard --steps -1", ["discard", "mnist_vgg", "--steps", "-1", "--out", "{tmp}/o"], "--steps must be a positive"),
    ("/proc/x as --out", ["srop", "mnist_vgg", "--checkpoint", "{ckpt}", "--out", "/proc/x/y"], "cannot use /proc/x"),
    ("special file system", ["srop", "mnist_vgg", "--checkpoint", "{ckpt}", "--out", "/sys/infolens-x"],
     "choose an ordinary folder"),
    ("decompression bomb", ["srop", "mnist_vgg", "--checkpoint", "{ckpt}", "--data", "{bombs}", "--out", "{tmp}/o"],
     "more pixels than PIL will decode safely"),
    ("non-spatial layer", ["srop", "mnist_vgg", "--checkpoint", "{ckpt}", "--layers", "classifier.*", "--out",
                           "{tmp}/o"], "not spatial"),
    ("report of a corrupt summary", ["report", "{corrupt}"], "summary.json"),
    ("report --output a folder", ["report", "{corrupt}", "--output", "{tmp}"], "is a folder"),
    ("unknown timm name", ["layers", "timm:resnet_nonexistent_xyz"], "unknown timm model name"),
    ("torchvision weights, no network", ["layers", "resnet18", "--weights", "DEFAULT"],
     "weights for resnet18 are not cached and there is no network: pass --checkpoint FILE or --weights none"),
    ("timm weights, no network", ["layers", "timm:resnet18", "--weights", "DEFAULT"],
     "weights for resnet18 are not cached and there is no network: pass --checkpoint FILE or --weights none"),
    ("unknown weight set", ["layers", "resnet18", "--weights", "IMAGENET9K"], "choose DEFAULT, none or one of"),
])
def test_bad_argument_ends_in_one_line(tmp_path, ckpt, case, args, message):
    import json as _json

    file = tmp_path / "a.txt"
    file.write_text("not a folder, not a checkpoint\n")
    corrupt = tmp_path / "res"
    corrupt.mkdir()
    (corrupt / "meta.json").write_text(_json.dumps({"analysis": "srop", "title": "t", "params": {}}))
    (corrupt / "summary.json").write_text("{truncated")
    subs = {"file": str(file), "tmp": str(tmp_path), "ckpt": str(ckpt), "bombs": str(_bomb_folder(tmp_path / "b")),
            "corrupt": str(corrupt)}
    env_home = tmp_path / "torch-home"
    r = subprocess.run([sys.executable, "-m", "infolens", "--no-progress", *[a.format(**subs) for a in args]],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "TORCH_HOME": str(env_home), "HF_HUB_OFFLINE": "1",
                            "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
                            "HF_HOME": str(tmp_path / "hf")})
    _one_line(r, message)
    if "{tmp}/o" in args:
        assert not (tmp_path / "o" / "meta.json").exists(), "a refused run left a meta.json behind"


def test_refused_argument_leaves_nothing_so_the_corrected_command_runs(tmp_path, ckpt):
    out = tmp_path / "o"
    base = ["srop", "mnist_vgg", "--checkpoint", str(ckpt), "--limit", "4", "--check", "none", "--no-report",
            "--out", str(out)]
    _one_line(infolens(*base, "--batch-size", "0"), "--batch-size")
    _one_line(infolens(*base, "--layers", "classifier.*"), "not spatial")
    assert not out.exists()
    r = infolens(*base, "--batch-size", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "meta.json").read_text())["params"]["batch_size"] == 2


def test_second_run_into_a_busy_folder_names_the_holder(tmp_path, ckpt):
    import textwrap

    out = tmp_path / "o"
    code = textwrap.dedent(f"""
        import sys
        from infolens.results import RunDir
        RunDir({str(out)!r}, analysis="srop", params={{"kappa": 0.85}})
        print("ready", flush=True)
        sys.stdin.read()
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        r = infolens("srop", "mnist_vgg", "--checkpoint", str(ckpt), "--kappa", "0.5", "--limit", "4",
                     "--out", str(out))
        _one_line(r, f"in use by another infolens run (PID {holder.pid})")
        assert json.loads((out / "meta.json").read_text())["params"] == {"kappa": 0.85}
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.mark.parametrize("err, expected", [
    (OSError(30, "Read-only file system", "/mnt/ro/out"), "cannot use /mnt/ro/out: the file system is read-only; "
                                                           "choose an --out folder on a writable disk"),
    (OSError(28, "No space left on device", "/data/out/tables/x.csv"), "the disk is full; free some space"),
    (PermissionError(13, "Permission denied", "/root/x"), "cannot use /root/x: permission denied; choose a folder"),
    (OSError(1, "Operation not permitted", "/srv/immutable"), "immutable or special file system"),
    (ValueError(""), "ValueError"),  # never an empty "error:" line
])
def test_os_errors_become_problem_and_fix(err, expected):
    from infolens.cli import error_line

    line = error_line(err)
    assert expected in line and "\n" not in line and "[Errno" not in line


def test_full_disk_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    """A full disk while writing results (simulated at os.write's level: ENOSPC) ends in one line, code 2."""
    import errno

    from infolens import _io, cli, results

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r" / "meta.json"))

    monkeypatch.setattr(_io, "atomic_write_bytes", full)
    monkeypatch.setattr(cli, "_cmd_report", lambda args: results.RunDir(tmp_path / "r", analysis="x", params={}))
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"infolens: error: cannot use {tmp_path / 'r' / 'meta.json'}: the disk is full; free some space "
                   f"or choose an --out folder on another disk"]


def test_pickled_module_checkpoint_does_not_advise_weights_only_false(tmp_path):
    import torch

    from infolens.models import build_builtin

    torch.save(build_builtin("mnist_vgg"), tmp_path / "module.pt")
    r = infolens("layers", "mnist_vgg", "--checkpoint", str(tmp_path / "module.pt"))
    _one_line(r, "arbitrary Python objects")
    assert "weights_only=False" not in r.stderr and "add_safe_globals" not in r.stderr and len(r.stderr) < 400


# --------------------------------------------------------------------------- errors that were not one line
# Each row was an internal error, a traceback or a line that did not name its cause; each now ends in ONE
# line that names the option, file or path, with exit code 2. A random-weight checkpoint stands in for a
# trained model, so the table runs in seconds.

USER_MODULE = '''
import torch, torch.nn as nn


class TupleNet(nn.Module):
    """A classifier whose forward returns (logits, features), as many research models do."""

    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        h = self.relu(self.conv(x))
        return self.fc(h.flatten(1)), h


def tuple_net():
    torch.manual_seed(0)
    return TupleNet()


def broken():
    raise RuntimeError("cannot find weights.bin")
'''


def _user_env(tmp_path):
    (tmp_path / "usermods.py").write_text(USER_MODULE)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _nan_folder(root):
    import numpy as np
    from PIL import Image

    (root / "c").mkdir(parents=True)
    a = np.full((28, 28), 0.5, np.float32)
    a[3, 3] = np.nan
    Image.fromarray(a, mode="F").save(root / "c" / "x.tif")
    return root


def _unreadable_folder(root, n_bad=300):
    import numpy as np
    from PIL import Image

    (root / "c").mkdir(parents=True)
    Image.fromarray(np.full((28, 28), 100, np.uint8)).save(root / "c" / "ok.png")
    for i in range(n_bad):
        (root / "c" / f"b{i:04d}.png").write_text("not an image")
    return root


@pytest.mark.parametrize("case, args, message", [
    ("summary.json holding null", ["report", "{nullsummary}"], "summary.json holds null, not a JSON object"),
    ("a user factory that raises", ["layers", "usermods:broken"],
     "the factory raised RuntimeError: cannot find weights.bin; fix the factory"),
    ("--input-shape 3,0,0", ["layers", "mnist_vgg", "--input-shape", "3,0,0"],
     "--input-shape must be three positive integers C,H,W"),
    ("--input-shape abc", ["layers", "mnist_vgg", "--input-shape", "abc"], "--input-shape must be three positive"),
    ("--input-shape the model cannot take", ["layers", "mnist_vgg", "--input-shape", "3,28,28"],
     "--input-shape 3,28,28: mnist_vgg cannot run on a (3, 28, 28) input"),
    ("--seed 2**70", ["forgrad", "mnist_vgg", "--seed", str(2**70), "--out", "{tmp}/o"],
     "--seed must be an integer in 0..2**63-1"),
    ("--seed -1", ["srop", "mnist_vgg", "--seed", "-1", "--out", "{tmp}/o"], "--seed must be an integer in 0..2**63-1"),
    ("a NaN image", ["srop", "mnist_vgg", "--checkpoint", "{ckpt}", "--data", "{nan}", "--out", "{tmp}/o"],
     "x.tif': 1 pixel values are NaN or inf"),
    ("a --stages CSV that does not parse", ["srop", "mnist_vgg", "--checkpoint", "{ckpt}", "--check", "training",
                                            "--stages", "{bigcsv}", "--out", "{tmp}/o"],
     "big.csv cannot be parsed as CSV"),
    ("unreadable files: count and first few", ["srop", "mnist_vgg", "--checkpoint", "{ckpt}", "--data", "{bad}",
                                               "--out", "{tmp}/o"],
     "300 of 301 image files in "),
    ("discard --layers unknown", ["discard", "mnist_vgg", "--checkpoint", "{ckpt}", "--layers", "nope", "--out",
                                  "{tmp}/o"], "--layers nope: unknown layer 'nope'"),
    ("discard --grid finer than the image", ["discard", "mnist_vgg", "--checkpoint", "{ckpt}", "--grid", "100",
                                             "--out", "{tmp}/o"], "--grid 100 is finer than the model's 28x28"),
    ("discard --grid 0", ["discard", "mnist_vgg", "--checkpoint", "{ckpt}", "--grid", "0", "--out", "{tmp}/o"],
     "pass --grid pixel for one sigma per pixel"),
    ("forgrad --gradcam-layer unknown", ["forgrad", "mnist_vgg", "--checkpoint", "{ckpt}", "--gradcam-layer", "nope",
                                         "--out", "{tmp}/o"], "--gradcam-layer nope: unknown layer"),
    ("forgrad --gradcam-layer not spatial", ["forgrad", "mnist_vgg", "--checkpoint", "{ckpt}", "--gradcam-layer",
                                             "classifier.0", "--out", "{tmp}/o"], "--gradcam-layer: classifier.0"),
    ("forgrad --target not a class", ["forgrad", "mnist_vgg", "--checkpoint", "{ckpt}", "--target", "10", "--out",
                                      "{tmp}/o"], "--target 10 is not a class of mnist_vgg, which has 10 classes"),
    ("forgrad --target text", ["forgrad", "mnist_vgg", "--target", "cat", "--out", "{tmp}/o"],
     "--target must be a class index"),
    ("srop --check training, no --stages", ["srop", "mnist_vgg", "--checkpoint", "{ckpt}", "--check", "training",
                                            "--out", "{tmp}/o"], "--check training needs --stages FILE"),
    ("srop --check all, no --stages", ["srop", "mnist_vgg", "--checkpoint", "{ckpt}", "--check", "all",
                                       "--out", "{tmp}/o"], "--check training needs --stages FILE"),
])
def test_user_mistakes_end_in_one_line_naming_their_cause(tmp_path, ckpt, case, args, message):
    nullsummary = tmp_path / "res"
    nullsummary.mkdir()
    (nullsummary / "meta.json").write_text(json.dumps({"analysis": "srop", "title": "t", "params": {}}))
    (nullsummary / "summary.json").write_text("null")
    bigcsv = tmp_path / "big.csv"
    bigcsv.write_text('checkpoint,epoch\n"' + "a" * 200_000 + '",1\n')  # beyond csv's field limit
    subs = {"tmp": str(tmp_path), "ckpt": str(ckpt), "nullsummary": str(nullsummary), "bigcsv": str(bigcsv),
            "nan": str(_nan_folder(tmp_path / "nan")) if "{nan}" in args else "",
            "bad": str(_unreadable_folder(tmp_path / "bad")) if "{bad}" in args else ""}
    r = subprocess.run([sys.executable, "-m", "infolens", "--no-progress", *[a.format(**subs) for a in args]],
                       capture_output=True, text=True, timeout=600, env=_user_env(tmp_path))
    _one_line(r, message)
    if "{tmp}/o" in args:  # refused before the folder was claimed: the corrected command starts clean
        assert not (tmp_path / "o").exists(), f"a refused run left {sorted((tmp_path / 'o').rglob('*'))}"


@pytest.mark.parametrize("refused, corrected", [
    (["discard", "--layers", "nope"], ["discard", "--layers", "features.1", "--steps", "1", "--samples", "1",
                                        "--decoders", "0"]),
    (["discard", "--grid", "100"], ["discard", "--grid", "pixel", "--layers", "features.1", "--steps", "1",
                                    "--samples", "1", "--decoders", "0"]),
    (["forgrad", "--gradcam-layer", "nope"], ["forgrad", "--methods", "saliency", "--metrics", "deletion",
                                              "--forgrad", "off", "--figures", "none"]),
    (["srop", "--check", "training"], ["srop", "--check", "none"]),
])
def test_a_corrected_command_runs_after_a_refused_one(tmp_path, ckpt, refused, corrected):
    out = tmp_path / "o"
    common = ["--checkpoint", str(ckpt), "--limit", "2", "--no-report", "--out", str(out)]
    r = infolens(refused[0], "mnist_vgg", *refused[1:], *common)
    assert r.returncode == 2, r.stderr[-2000:]
    r = infolens(corrected[0], "mnist_vgg", *corrected[1:], *common)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "meta.json").read_text())["finished"]


def test_forgrad_explains_a_model_whose_forward_returns_a_tuple_and_honours_target(tmp_path):
    """A forward returning (logits, features) is explained through its first tensor, as ``srop`` measures
    it; ``--target 3`` explains class 3 for every image (the default explains each image's prediction)."""
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "infolens", "--no-progress", "forgrad", "usermods:tuple_net",
                        "--limit", "3", "--methods", "saliency,gradcam", "--metrics", "deletion", "--forgrad", "off",
                        "--figures", "none", "--no-report", "--target", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, env=_user_env(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    from infolens.results import read_csv

    rows = read_csv(out / "tables" / "scores.csv")
    assert rows and {int(r["target"]) for r in rows} == {3}
    assert {r["method"] for r in rows} >= {"saliency", "gradcam"}


def test_output_into_a_closed_pipe_is_quiet():
    """``infolens layers resnet18 | head -1``: the reader closes the pipe; no traceback, no error line,
    exit code 141 (128 + SIGPIPE, what a shell reports for any writer whose reader went away)."""
    p = subprocess.Popen([sys.executable, "-m", "infolens", "layers", "resnet18"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    p.stdout.close()  # the reader is gone before the first line is written
    err = p.stderr.read().decode()
    assert p.wait(timeout=600) == 141
    assert err == ""


def test_a_full_disk_without_a_path_names_the_result_folder(tmp_path, ckpt, monkeypatch, capsys):
    """ENOSPC raised by a write that carries no file name: the line names the --out folder."""
    import errno

    from infolens import cli, results

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "atomic_write_bytes", full)
    out = tmp_path / "o"
    assert cli.main(["--no-progress", "srop", "mnist_vgg", "--checkpoint", str(ckpt), "--limit", "2",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"infolens: error: cannot use the folder {out} (or a file in it): the disk is full; free some "
                   f"space or choose an --out folder on another disk"]


def test_version():
    from infolens import __version__

    r = infolens("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"infolens {__version__}"


def test_every_option_of_every_command_has_help():
    import argparse

    from infolens.cli import build_parser

    missing = []

    def walk(p, path):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, [*path, name])
            elif not (a.help or "").strip():
                missing.append(f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest}")

    walk(build_parser(), ["infolens"])
    assert not missing, missing


def test_target_help_says_predicted_is_the_default():
    r = infolens("forgrad", "--help")
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and "--target" in text and "'predicted' (the default" in text
