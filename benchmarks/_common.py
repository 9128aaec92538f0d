"""Shared helpers for the benchmarks: machine description, timing, appending to RESULTS.md."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from collections.abc import Callable, Mapping
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


def sync(device: str | torch.device | None = None) -> None:
    """Wait for the device's queued work (a no-op on the CPU): time only finished work."""
    dev = torch.device(device) if device is not None else None
    if (dev is None or dev.type == "cuda") and torch.cuda.is_available():
        torch.cuda.synchronize(dev if dev is not None and dev.index is not None else None)


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


def interleaved(fns: Mapping[str, Callable[[], object]], *, repeat: int = 3, warmup: int = 1,
                device: str | torch.device | None = None) -> dict[str, float]:
    """Best wall time (seconds) of each named function over ``repeat`` rounds, the functions run one after
    the other in each round and the order reversed every other round, so a change of load (a shared
    machine, GPU clocks) hits every contender alike; the device is synchronised around every call."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    best = {n: float("inf") for n in names}
    for r in range(repeat):
        for n in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            t = time.perf_counter()
            fns[n]()
            sync(device)
            best[n] = min(best[n], time.perf_counter() - t)
    return best


def append_results(title: str, body: str, path: str | Path | None = None) -> None:
    """Append one dated section (written in a single call) to benchmarks/RESULTS.md (or ``path``)."""
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = f"\n## {title} — {stamp}\n\nMachine: {machine()}\n\n{body.strip()}\n"
    with open(RESULTS if path is None else path, "a") as f:
        f.write(text)
    print(text)
