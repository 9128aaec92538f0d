"""A quick demo, run once per test session through the real CLI, shared by the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    r = subprocess.run([sys.executable, "-m", "infolens", "--no-progress", "demo", "--quick", "--out", str(out)],
                       env=env, capture_output=True, text=True, timeout=2400)  # a quick demo takes minutes; far longer on a loaded machine
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def quick_reproduce(tmp_path_factory) -> Path:
    """``infolens reproduce --quick`` through the real CLI, once per session (CI checks the
    table's shape and vocabulary, never the verdicts themselves)."""
    out = tmp_path_factory.mktemp("reproduce") / "reproduce"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    r = subprocess.run([sys.executable, "-m", "infolens", "--no-progress", "reproduce", "--quick", "--out", str(out)],
                       env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def quick_srop(tmp_path_factory) -> Path:
    """``infolens reproduce --paper srop --quick`` through the real CLI: the cheapest paper, so the default
    run checks the reproduce pipeline end to end (the all-paper quick run is marked slow)."""
    out = tmp_path_factory.mktemp("reproduce_srop") / "reproduce"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    r = subprocess.run([sys.executable, "-m", "infolens", "--no-progress", "reproduce", "--paper", "srop", "--quick",
                        "--out", str(out)], env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return out
