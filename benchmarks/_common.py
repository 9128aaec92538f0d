"""Shared helpers for the benchmarks: machine description, timing, appending to RESULTS.md."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}"


def timeit(fn: Callable[[], object], *, repeat: int = 3, warmup: int = 1, sync: bool = False) -> float:
    """Best wall time of ``repeat`` calls after ``warmup`` calls (seconds)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def append_results(title: str, body: str) -> None:
    """Append one dated section (written in a single call) to benchmarks/RESULTS.md."""
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = f"\n## {title} — {stamp}\n\nMachine: {machine()}\n\n{body.strip()}\n"
    with open(RESULTS, "a") as f:
        f.write(text)
    print(text)
