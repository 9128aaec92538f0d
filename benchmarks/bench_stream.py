"""Peak memory and throughput of an analysis over an image folder, at two folder sizes.

Generates a flat folder of N JPEGs at ImageNet-like sizes (500 x 375 and 375 x 500, smooth random colour
fields with noise, about 40-60 kB each, under /tmp by default) and runs the real CLI on it as a user would:
`infolens srop` and `infolens forgrad --methods saliency` (a fixed cut-off, Deletion only, so the data path
dominates), each in a fresh process. While a run goes, the resident memory of the analysis process and of
its decoding workers is sampled from /proc every 50 ms; the report gives the main process's peak (VmHWM,
exact), the largest sampled sum over the process tree (workers share pages with the main process, so the
sum over-counts), and images/s over the whole run (start-up included, measured once with --limit 1 and
reported). Folders used to be read whole before any work (about 0.6 MB per 224-px image in float32), so
peak memory grew with N; streamed, it must not.

    .venv/bin/python benchmarks/bench_stream.py [--sizes 500 5000] [--model resnet18] [--folder /tmp/x]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import append_results  # noqa: E402

CMDS = {
    "srop": ["--check", "none"],
    "forgrad --methods saliency": ["--methods", "saliency", "--metrics", "deletion", "--steps", "2", "--forgrad", "15",
                                   "--figures", "none"],
}


def make_folder(root: Path, n: int, *, seed: int = 0) -> Path:
    """``n`` JPEGs named ``img_00000.jpg`` ... (kept if already there), alternating 500x375 and 375x500."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = root / f"img_{i:05d}.jpg"
        if path.exists():
            continue
        w, h = (500, 375) if i % 2 == 0 else (375, 500)
        coarse = rng.random((h // 25 + 1, w // 25 + 1, 3)) * 255  # a smooth field, upsampled, plus noise
        img = np.kron(coarse, np.ones((25, 25, 1)))[:h, :w] + rng.normal(0, 12, (h, w, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
    return root


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            txt = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            out.extend(int(c) for c in txt)
    except OSError:
        pass
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; return wall seconds, the main process's peak RSS (MB) and the largest tree RSS sum (MB)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"main": 0, "tree": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            main = _status_kb(p.pid, "VmHWM")
            tree = _status_kb(p.pid, "VmRSS") + sum(_status_kb(c, "VmRSS") for c in _children(p.pid))
            peak["main"], peak["tree"] = max(peak["main"], main), max(peak["tree"], tree)
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    err = p.communicate()[1]
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {err[-2000:]}")
    return {"wall": wall, "main_mb": peak["main"] / 1024, "tree_mb": peak["tree"] / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--model", default="resnet18", help="a torchvision name (random weights: the numbers are not "
                    "the point, the memory is)")
    ap.add_argument("--layers", default="conv1,layer1.0.conv1", help="srop --layers (two early convolutions of "
                    "resnet18 by default; mobilenet_v3_small: features.0.0,features.1.block.0.0)")
    ap.add_argument("--folder", default=None, help="where the JPEGs go (default: a folder under /tmp, kept)")
    ap.add_argument("--workers", type=int, default=None, help="--workers for the runs (default: infolens's)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--commands", default=",".join(CMDS), help="comma-separated keys of CMDS")
    ap.add_argument("--note", default="", help="appended to the results (e.g. 'machine shared with other jobs')")
    ap.add_argument("--no-append", action="store_true", help="print only, do not append to RESULTS.md")
    args = ap.parse_args()
    folder = Path(args.folder or Path(tempfile.gettempdir()) / "infolens-bench-stream")
    t = time.perf_counter()
    make_folder(folder, max(args.sizes))
    gen = time.perf_counter() - t
    mb = sum((folder / f"img_{i:05d}.jpg").stat().st_size for i in range(max(args.sizes))) / 1e6
    env = {**os.environ, "INFOLENS_PROGRESS": "0"}
    src = Path(__file__).resolve().parents[1] / "src"
    env["PYTHONPATH"] = f"{src}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(src)
    lines = [f"Folder: {max(args.sizes)} JPEGs of 500x375 / 375x500 ({mb:.0f} MB on disk, generated in {gen:.0f} s); "
             f"model {args.model} (random weights), srop --layers {args.layers if 'srop' in args.commands else '-'}, 224 px, batch {args.batch_size}, workers "
             f"{args.workers if args.workers is not None else 'default'}, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}. --limit N takes the first N files "
             f"(a flat folder). Peak RSS: the analysis process (VmHWM); tree: largest sampled sum with its "
             f"workers (shared pages counted twice).", "",
             "| command | images | wall s | images/s | peak RSS main MB | peak RSS tree MB |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.commands.split(","):
            base = [sys.executable, "-m", "infolens", "--no-progress", key.split()[0], args.model, "--weights", "none",
                    "--data", str(folder), "--batch-size", str(args.batch_size), "--no-report", *CMDS[key]]
            if key == "srop":
                base += ["--layers", args.layers]
            if args.workers is not None:
                base += ["--workers", str(args.workers)]
            start = run_measured([*base, "--limit", "1", "--out", f"{tmp}/{key[:5]}-start"], env)
            lines.append(f"| {key} (start-up, 1 image) | 1 | {start['wall']:.1f} | | {start['main_mb']:.0f} | "
                         f"{start['tree_mb']:.0f} |")
            for n in args.sizes:
                r = run_measured([*base, "--limit", str(n), "--out", f"{tmp}/{key[:5]}-{n}"], env)
                lines.append(f"| {key} | {n} | {r['wall']:.1f} | {n / r['wall']:.1f} | {r['main_mb']:.0f} | "
                             f"{r['tree_mb']:.0f} |")
                print(lines[-1], flush=True)
    try:
        load = f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
    except OSError:  # pragma: no cover
        load = ""
    body = "\n".join(lines) + f"\n\n{load} {args.note}".rstrip()
    if args.no_append:
        print(body)
    else:
        append_results("bench_stream (image folders streamed: peak memory against folder size)", body)


if __name__ == "__main__":
    main()
