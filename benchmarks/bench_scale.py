"""Throughput of one analysis over 1 and 2 processes started by torchrun (gloo on the CPU).

Runs the real CLI (`infolens srop` and `infolens attribution`) on the same MNIST test images with a
fixed built-in checkpoint, once as a plain process and once under `torchrun --nproc-per-node 2`, and
reports images/s and the speed-up; the tables of both runs are compared for equality. On a machine
with a GPU it also times one process on the GPU. Start-up (interpreter, torch import, model load) is
included, as a user sees it; it is measured separately with --limit 1 and reported.

    .venv/bin/python benchmarks/bench_scale.py [--images 2048]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import append_results  # noqa: E402

CMDS = {
    "srop": ["--layers", "all conv", "--check", "none"],
    "forgrad": ["--methods", "saliency,smoothgrad", "--metrics", "deletion,insertion", "--forgrad", "3"],
}


def run(command: str, out: Path, ckpt: Path, n: int, procs: int, device: str = "cpu") -> float:
    args = [command, "mnist_allconv", "--checkpoint", str(ckpt), "--data", "mnist", "--limit", str(n),
            "--batch-size", "64", "--out", str(out), "--no-report", "--device", device, *CMDS[command]]
    threads = max(1, (os.cpu_count() or 2) // procs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "INFOLENS_PROGRESS": "0"}
    if procs == 1:
        argv = [sys.executable, "-m", "infolens", *args]
    else:
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
                "-m", "infolens", *args]
    t = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return time.perf_counter() - t


def same_tables(a: Path, b: Path) -> bool:
    ta, tb = sorted((a / "tables").glob("*.csv")), sorted((b / "tables").glob("*.csv"))
    return [p.name for p in ta] == [p.name for p in tb] and all(filecmp.cmp(x, y, shallow=False)
                                                                for x, y in zip(ta, tb))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--commands", default=",".join(CMDS), help="comma list of analyses to time")
    a = ap.parse_args()
    from infolens.models import pretrained_builtin

    tmp = Path(tempfile.mkdtemp())
    ckpt = tmp / "allconv.pt"
    torch.save(pretrained_builtin("mnist_allconv", progress=False).state_dict(), ckpt)
    rows = ["| analysis | images | processes | device | wall s | start-up s | images/s (excl. start-up) | speed-up | tables equal |",
            "|---|---|---|---|---|---|---|---|---|"]
    for command in a.commands.split(","):
        startup = run(command, tmp / f"{command}-s", ckpt, 1, 1)
        base = None
        outs = {}
        configs = [(1, "cpu"), (2, "cpu")] + ([(1, "cuda")] if torch.cuda.is_available() else [])
        for procs, device in configs:
            out = tmp / f"{command}-{procs}-{device}"
            wall = run(command, out, ckpt, a.images, procs, device)
            ips = a.images / max(wall - startup, 1e-9)
            base = base or ips
            outs[(procs, device)] = out
            eq = same_tables(outs[(1, "cpu")], out) if (procs, device) != (1, "cpu") else "—"
            rows.append(f"| {command} | {a.images} | {procs} | {device} | {wall:.1f} | {startup:.1f} | {ips:.0f} | "
                        f"{ips / base:.2f}x | {eq} |")
            print(rows[-1], flush=True)
    note = ("Each configuration runs the real CLI; 2 processes on the 2-core machine each get 1 thread, so "
            "the speed-up measures sharding overhead more than added hardware; the second process also pays the "
            "torchrun launcher and process-group start-up (about 3 s), which dominates runs of a few seconds. No GPU was lent to this task: "
            "GPU throughput not measured.") if not torch.cuda.is_available() else ""
    append_results("bench_scale: torchrun sharding", "\n".join(rows) + "\n\n" + note)


if __name__ == "__main__":
    main()
