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


# --------------------------------------------------------------------------- issue 16: every row of the issue
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
def test_issue_16_cases_end_in_one_line(tmp_path, ckpt, case, args, message):
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
