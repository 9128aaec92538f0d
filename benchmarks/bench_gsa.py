"""Benchmark of the two global-sensitivity attributions (Sobol, HSIC; FORGrad's prediction-based family) at
Xplique's counts on the shipped ``mnist_resnet`` (28 x 28 digits):

1. infolens (``Sobol(...).attribute`` / ``HSIC(...).attribute``, the design shared by the batch, the masked
   copies of several images in one pass) against its floor: the bare batched forward passes over the same
   number of pre-built masked inputs, the work the method cannot avoid.
2. the naive loop: one masked image per forward pass, as a per-image, per-design Python loop would do,
   the estimator applied afterwards; its maps are checked equal to infolens's.

Run: ``.venv/bin/python benchmarks/bench_gsa.py [--images N] [--naive-images N]``; appends a section to
RESULTS.md. Run it on a quiet machine: the contenders are timed interleaved in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import append_results, interleaved  # noqa: E402

from infolens.attribution import HSIC, Sobol  # noqa: E402
from infolens.attribution import model_scores  # noqa: E402

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))


def _masked_inputs(method, x: torch.Tensor) -> torch.Tensor:
    cells = method._evaluated().to(x.dtype)
    m = F.interpolate(cells[:, None], size=x.shape[-2:], mode="nearest-exact")
    return (x[:, None] * m[None]).flatten(0, 1)


def naive(method, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """One masked image per forward pass; the method's own estimator and upsampling afterwards."""
    cells = method._evaluated().to(x.dtype)
    out = torch.empty(x.shape[0], cells.shape[0], dtype=x.dtype)
    with torch.no_grad():
        for i in range(x.shape[0]):
            for j in range(cells.shape[0]):
                m = F.interpolate(cells[j][None, None], size=x.shape[-2:], mode="nearest-exact")
                out[i, j] = model_scores(method.model(x[i:i + 1] * m), t[i:i + 1], method.score)[0]
    g = method.grid
    est = method._estimate(out).view(x.shape[0], 1, g, g)
    return F.interpolate(est, size=x.shape[-2:], mode="bicubic", align_corners=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--naive-images", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from infolens.experiments import testbed as tb

    model = tb.mnist_model("mnist_resnet")
    x, _ = tb.mnist_data("test", args.images)
    with torch.no_grad():
        t = model(x).argmax(1)
    lines = [f"mnist_resnet (shipped), {args.images} test digits 1x28x28, softmax score, internal batch 256, "
             f"{torch.get_num_threads()} threads; best of {args.repeat}, interleaved"]
    for method in (Sobol(model, internal_batch_size=256), HSIC(model, internal_batch_size=256)):
        pert = _masked_inputs(method, x)
        per_image = pert.shape[0] // x.shape[0]

        def floor() -> None:
            with torch.no_grad():
                for s in range(0, pert.shape[0], 256):
                    model(pert[s:s + 256])

        best = interleaved({"infolens": lambda: method.attribute(x, t).maps, "floor": floor}, repeat=args.repeat)
        k = args.naive_images
        t0 = time.perf_counter()
        ref = naive(method, x[:k], t[:k])
        t_naive = (time.perf_counter() - t0) / k
        got = method.attribute(x[:k], t[:k]).maps
        err = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
        ours = best["infolens"] / x.shape[0]
        lines.append(
            f"- {type(method).__name__} (grid {method.grid}, {method.n_design} designs, {per_image} passes per "
            f"image): infolens {ours * 1e3:.1f} ms/image, floor {best['floor'] / x.shape[0] * 1e3:.1f} ms/image "
            f"(**{best['infolens'] / best['floor']:.2f}x the floor**); naive loop {t_naive * 1e3:.0f} ms/image "
            f"(**{t_naive / ours:.1f}x slower** than infolens; maps equal to {err:.1e} relative)")
        print(lines[-1], flush=True)
    load = os.getloadavg()[0]
    lines.append(f"Load average at the end: {load:.1f} on {os.cpu_count()} cores. No GPU lent to this task.")
    append_results("bench_gsa (Sobol, HSIC at Xplique's counts)", "\n".join(lines))


if __name__ == "__main__":
    main()
