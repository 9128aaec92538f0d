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
