"""Benchmark of information discarding (infolens.discard, arXiv 1906.04109), solver="release".

On a built-in MNIST network (mnist_vgg, its five ReLU outputs), N images, the release's steps:
1. the floor per step = one forward pass of ALL noisy copies (images x layers x samples) to the deepest
   measured layer + one backward pass of the summed per-layer losses (the least work one step can do);
   infolens's time per step (layer_batching "joint" and "per_layer") against it;
2. the per-image loop (one image at a time through the same class) against the batched run on the same images.

Run: ``python benchmarks/bench_discard.py [--quick]``; appends a section to RESULTS.md (not with --quick).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import append_results, timeit  # noqa: E402

from infolens._torch import frozen  # noqa: E402
from infolens.data import mnist_tensors  # noqa: E402
from infolens.discard import InformationDiscarding  # noqa: E402
from infolens.discard._core import features  # noqa: E402
from infolens.models import pretrained_builtin  # noqa: E402

LAYERS = ["features.2", "features.5", "features.9", "features.12", "classifier.1"]


def floor_step(model: torch.nn.Module, x: torch.Tensor, clean: dict[str, torch.Tensor], samples: int) -> None:
    """One step's least work: every (image, layer) pair's noisy copies in ONE forward pass to the deepest
    layer, each layer's MSE on its own rows, one backward of the sum into per-pair sigma."""
    L = len(LAYERS)
    rows = x.repeat(L, 1, 1, 1).repeat_interleave(samples, dim=0)  # pairs layer-major, samples inner
    sig = torch.full((L * x.shape[0], 1, 14, 14), 0.01, requires_grad=True)
    up = torch.nn.functional.interpolate(sig, size=x.shape[-2:], mode="nearest").repeat_interleave(samples, dim=0)
    feats = features(model, rows + up * torch.randn_like(rows), LAYERS)
    n = x.shape[0] * samples
    loss = sum((torch.relu(feats[l][k * n:(k + 1) * n]) - torch.relu(clean[l]).repeat_interleave(samples, dim=0))
               .pow(2).mean() for k, l in enumerate(LAYERS))
    loss.backward()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer images and steps (a smoke run, not recorded)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    n, steps, samples, n_loop = (4, 6, 8, 2) if a.quick else (8, 10, 8, 4)
    model = pretrained_builtin("mnist_vgg", quick=True, progress=False).eval()
    x, _ = mnist_tensors("test", limit=n)
    with frozen(model), torch.no_grad():
        clean = features(model, x, LAYERS)
    with frozen(model):
        t_floor = timeit(lambda: floor_step(model, x, clean, samples), repeat=3, warmup=1)
    kw = dict(grid=14, n_steps=steps, n_samples=samples)
    per_step = {}
    for lb in ("joint", "per_layer"):
        full = InformationDiscarding(model, LAYERS, layer_batching=lb, internal_batch_size=100_000, **kw)
        half = InformationDiscarding(model, LAYERS, layer_batching=lb, internal_batch_size=100_000,
                                     **{**kw, "n_steps": steps // 2})
        t_full = timeit(lambda m=full: m.measure(x), repeat=1, warmup=1)
        t_half = timeit(lambda m=half: m.measure(x), repeat=1, warmup=0)
        per_step[lb] = ((t_full - t_half) / (steps - steps // 2), t_full)
    best = min(per_step, key=lambda k: per_step[k][0])
    single = InformationDiscarding(model, LAYERS, layer_batching=best, **kw)
    batched = InformationDiscarding(model, LAYERS, layer_batching=best, **kw)
    xs = x[:n_loop]
    t_loop = timeit(lambda: [single.measure(xs[i:i + 1], indices=[i]) for i in range(n_loop)], repeat=1, warmup=0)
    t_batch = timeit(lambda: batched.measure(xs), repeat=1, warmup=0)
    load = os.getloadavg()[0]
    body = f"""### bench_discard (solver="release"): mnist_vgg (quick built-in), {n} images 1x28x28, 5 layers, \
grid 14x14, {steps} steps x {samples} samples, cpu
Load average at the end: {load:.1f} on {os.cpu_count()} cores (the machine is shared by several engineers: \
{"busy" if load > 1.5 else "fairly idle"}). No GPU lent to this task.
- floor per step (one forward of all {n * len(LAYERS) * samples} noisy copies to the deepest layer + one backward \
of the summed per-layer losses): {t_floor * 1e3:.1f} ms
- infolens per step (difference of a {steps}- and a {steps // 2}-step run): joint {per_step['joint'][0] * 1e3:.1f} ms \
(**{per_step['joint'][0] / t_floor:.2f}x the floor**), per_layer {per_step['per_layer'][0] * 1e3:.1f} ms \
(**{per_step['per_layer'][0] / t_floor:.2f}x**; fewer FLOPs: each layer's rows stop at their layer)
- end to end {steps} steps: joint {per_step['joint'][1]:.2f} s, per_layer {per_step['per_layer'][1]:.2f} s
- per-image loop vs batched ({n_loop} images, {best}): {t_loop:.2f} s vs {t_batch:.2f} s -> \
**{t_loop / t_batch:.2f}x** from batching
"""
    print(body)
    if not a.quick:
        append_results("bench_discard", body)


if __name__ == "__main__":
    main()
