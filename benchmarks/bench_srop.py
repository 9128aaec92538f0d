"""Layer-wise SROP of every convolution (measured at the convolution output; the activation point and all
three points from one pass are timed beside it) of torchvision's resnet18 (random weights) on a batch of images,
against (1) the bare forward pass of the same batch (the floor; goal: SROP analysis <= 1.5x of it) and
(2) a naive per-channel NumPy loop (the speed-up), plus peak memory as more layers are analysed at once
(streamed per layer, it must not grow beyond the feature maps themselves).

    .venv/bin/python benchmarks/bench_srop.py [--batch 64] [--size 224] [--naive-images 1]

The naive loop is run on ``--naive-images`` images (all 20 layers, every channel) and its per-map time
extrapolated to the batch; its values are checked against ours on those images. Appends a dated
section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import append_results, timeit  # noqa: E402

from infolens.probe import capture, resolve_layers  # noqa: E402
from infolens.spectral import srop_2d  # noqa: E402
from infolens.srop import SpectralRolloff, layer_srops  # noqa: E402

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))


def build(seed: int = 0):
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).eval()


def naive_srop(a: np.ndarray, kappa: float = 0.85) -> float:
    """One map at a time: full fft2, power, every bin's radius, sort, cumulative share, first bin >= kappa."""
    h, w = a.shape
    p = np.abs(np.fft.fft2(a)) ** 2
    u, v = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    rho = np.sqrt(u ** 2 + v ** 2).ravel()
    order = np.argsort(rho, kind="stable")
    cum = np.cumsum(p.ravel()[order])
    if cum[-1] <= 0:
        return float("nan")
    return float(rho[order][int(np.argmax(cum >= kappa * cum[-1]))] / 0.5)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_memory(fn) -> float:
    """Peak growth of the resident set (MiB) while ``fn`` runs, sampled every millisecond by a thread
    (torch releases the GIL in its kernels; its CPU allocator returns large blocks to the system, so
    the resident set falls back between passes). Linux only; NaN elsewhere."""
    import threading

    if not os.path.exists("/proc/self/statm"):
        return float("nan")
    base, peak, stop = _rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.001)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        fn()
    finally:
        stop.set()
        th.join()
    return max(peak[0], _rss_mib()) - base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--naive-images", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--dry", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = build().to(dev)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(dev)
    names = resolve_layers(model, "all conv")
    sync = dev == "cuda"

    def forward():
        with torch.no_grad():
            model(x)

    all_maps = capture(model, x, names).outputs  # for timing the SROP work alone (not streamed)

    def srop_only():
        for n in names:
            srop_2d(all_maps[n])

    # interleaved repeats, best of each: on a shared machine every contender sees the same load
    t_fwd = t_srop = t_alone = float("inf")
    layer_srops(model, x, names, at="conv", batch_size=args.batch)  # warm-up (FFT plans, ring tables)
    srop_only()
    for _ in range(args.repeat):
        t_fwd = min(t_fwd, timeit(forward, repeat=1, warmup=0, sync=sync))
        t_srop = min(t_srop, timeit(lambda: layer_srops(model, x, names, at="conv", batch_size=args.batch), repeat=1, warmup=0,
                                    sync=sync))
        t_alone = min(t_alone, timeit(srop_only, repeat=1, warmup=0, sync=sync))
    all_maps.clear()  # free the captured maps before the next timings
    t_act = timeit(lambda: layer_srops(model, x, names, at="activation", batch_size=args.batch), repeat=1, warmup=0,
                   sync=sync)
    t_all = timeit(lambda: SpectralRolloff(model, names, batch_size=args.batch).measure_at(x), repeat=1, warmup=0, sync=sync)
    res = layer_srops(model, x, names, at="conv", batch_size=args.batch)
    n_maps = sum(v.numel() for v in res.values.values())

    # naive: the captured maps of a few images, one channel at a time in NumPy
    k = args.naive_images
    cap = capture(model, x[:k], names)
    maps = {n: cap.outputs[n].cpu().double().numpy() for n in names}
    t = time.perf_counter()
    naive = {n: np.array([[naive_srop(m[i, c]) for c in range(m.shape[1])] for i in range(k)]) for n, m in maps.items()}
    t_naive_k = time.perf_counter() - t
    n_maps_k = sum(v.size for v in naive.values())
    t_naive = t_naive_k / n_maps_k * n_maps
    diff = max(float(np.nanmax(np.abs(naive[n] - res.values[n][:k].double().numpy()))) for n in names)
    agree = sum(int(np.sum(np.isclose(naive[n], res.values[n][:k].double().numpy(), atol=1e-6))) for n in names)

    lines = [
        f"resnet18 (torchvision, random weights), {len(names)} conv layers, batch {args.batch} x 3 x {args.size} x "
        f"{args.size}, {n_maps} feature maps, device {dev}"
        + ("" if dev == "cuda" else "; no GPU lent in this session: GPU figures not measured"),
        "",
        "| what | seconds | ratio |",
        "|---|---|---|",
        f"| bare forward pass (floor) | {t_fwd:.3f} | 1.00 |",
        f"| layer_srops, all {len(names)} conv layers (forward + SROP) | {t_srop:.3f} | {t_srop / t_fwd:.2f} x floor |",
        f"| layer_srops at='activation' (after each conv's ReLU) | {t_act:.3f} | {t_act / t_fwd:.2f} x floor |",
        f"| SpectralRolloff.measure_at: conv, activation and block from one pass | {t_all:.3f} | {t_all / t_fwd:.2f} x floor |",
        f"| SROP work alone (srop_2d on every captured map) | {t_alone:.3f} | {t_alone / t_fwd:.2f} x floor |",
        f"| naive per-channel NumPy loop alone (measured on {k} image(s), {n_maps_k} maps: {t_naive_k:.2f} s; "
        f"extrapolated to {n_maps}) | {t_naive:.2f} | {t_naive / t_alone:.1f} x our SROP work |",
        f"| naive total (forward + NumPy loop) | {t_fwd + t_naive:.2f} | {(t_fwd + t_naive) / t_srop:.2f} x "
        f"layer_srops |",
        "",
        f"Agreement with the naive loop on {n_maps_k} maps: {agree}/{n_maps_k} within 1e-6 (max |diff| "
        f"{diff:.2e}; float32 maps vs float64 NumPy).",
    ]
    if not args.no_memory and dev == "cpu":
        del cap, maps
        feat = {n: 4 * args.batch * res.values[n].shape[1] * res.shapes[n][0] * res.shapes[n][1] / 2 ** 20
                for n in names}
        lines += ["", f"Peak memory (growth of the resident set during one pass, MiB; the largest feature map is "
                  f"{max(feat.values()):.0f} MiB, all {len(names)} together {sum(feat.values()):.0f} MiB):", "",
                  "| pass | layers analysed | MiB |", "|---|---|---|",
                  f"| bare forward pass | - | {peak_memory(forward):.0f} |"]
        for n in (1, 5, len(names)):
            lines.append(f"| layer_srops (streamed per layer) | {n} | "
                         f"{peak_memory(lambda n=n: layer_srops(model, x, names[:n], at='conv', batch_size=args.batch)):.0f} |")
        lines.append(f"| capture every conv map (not streamed) | {len(names)} | "
                     f"{peak_memory(lambda: capture(model, x, names)):.0f} |")
    body = "\n".join(lines)
    if args.dry:
        print(body)
        return
    append_results("bench_srop", body + f"\n\n(command: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`; "
                   f"threads {torch.get_num_threads()}; best of {args.repeat} interleaved repeats; the machine was "
                   f"shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end), so absolute times "
                   f"are inflated and ratios carry that noise)")


if __name__ == "__main__":
    main()
