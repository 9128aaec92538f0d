"""Benchmark of information discarding (infolens.discard, arXiv 1906.04109).

Measures, on a built-in MNIST network (mnist_vgg, its five ReLU outputs):
1. images per second of a fixed number of optimisation steps (early stopping off), against the floor of
   the same work done bare: per step and layer, one batched forward pass of the same noisy rows
   stopped at the layer, the feature MSE, and one backward pass to the input (goal: at most 1.3x);
   also end to end (calibration and the final offset fit included);
2. the speed-up from optimising 64 images in one batch against one image at a time.

Run: ``.venv/bin/python benchmarks/bench_discard.py [--quick]``; appends a section to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import append_results, timeit  # noqa: E402

from infolens.data import mnist_tensors  # noqa: E402
from infolens.discard import InformationDiscarding, _features, _Frozen  # noqa: E402
from infolens.models import pretrained_builtin  # noqa: E402

LAYERS = ["features.2", "features.5", "features.9", "features.12", "classifier.1"]


def floor_pass(model: torch.nn.Module, x: torch.Tensor, clean: dict[str, torch.Tensor], samples: int,
               steps: int, chunk: int) -> None:
    """The bare work of ``steps`` optimisation steps: per layer, forward the noisy rows up to it, MSE,
    backward to the (per-row) noise scale, in chunks of ``chunk`` rows (as infolens does)."""
    rows = x.repeat_interleave(samples, dim=0)
    refs = {layer: clean[layer].repeat_interleave(samples, dim=0) for layer in LAYERS}
    for _ in range(steps):
        for layer in LAYERS:
            for a in range(0, rows.shape[0], chunk):
                r = rows[a:a + chunk]
                sig = torch.full((r.shape[0], 1, 1, 1), 0.01, requires_grad=True)
                f = _features(model, r + sig * torch.randn_like(r), [layer])[layer]
                (f - refs[layer][a:a + chunk]).pow(2).flatten(1).mean(1).sum().backward()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer images and steps (a smoke run)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = a.device
    n, steps, samples = (16, 10, 8) if a.quick else (64, 30, 8)
    n_loop = 4 if a.quick else 8
    model = pretrained_builtin("mnist_vgg", quick=True, progress=False).to(dev).eval()
    x, _ = mnist_tensors("test", limit=n)
    x = x.to(dev)
    sync = dev.startswith("cuda")
    kw = dict(grid=7, steps=steps, samples=samples, early_stop=False, device=dev)

    with _Frozen(model), torch.no_grad():
        clean = _features(model, x, LAYERS)
    chunk = 256 if dev == "cpu" else 8192  # infolens's default internal_batch_size
    floor_pass(model, x[:2], clean={k: v[:2] for k, v in clean.items()}, samples=samples, steps=1, chunk=chunk)
    t_floor = min(timeit(lambda c=c: floor_pass(model, x, clean, samples, steps, c), repeat=1, warmup=0, sync=sync)
                  for c in (chunk, n * samples))  # the better of chunked and one pass per layer

    method = InformationDiscarding(model, LAYERS, **kw)
    method.attribute(x[:2])  # warm-up
    t_full = timeit(lambda: method.attribute(x), repeat=1, warmup=0, sync=sync)
    # per step cost from the difference of two step counts (calibration and offset fit cancel)
    half = InformationDiscarding(model, LAYERS, **{**kw, "steps": steps // 2})
    t_half = timeit(lambda: half.attribute(x), repeat=1, warmup=0, sync=sync)
    per_step = (t_full - t_half) / (steps - steps // 2)
    floor_step = t_floor / steps
    overhead = t_full - per_step * steps

    # batching: n_loop images one by one against the same images in one batch (per image)
    single = InformationDiscarding(model, LAYERS, **kw)
    xs = x[:n_loop]
    t_loop = timeit(lambda: [single.attribute(xs[i:i + 1], indices=[i]) for i in range(n_loop)], repeat=1,
                    warmup=0, sync=sync) / n_loop
    t_batch = t_full / n

    rows_per_step = n * len(LAYERS) * samples
    body = f"""### bench_discard: mnist_vgg (quick built-in), {n} images 1x28x28, 5 layers (ReLU outputs), grid 7x7, \
{steps} steps x {samples} samples (early stopping off), device {dev}
{"No GPU lent in this task: GPU figures not measured." if not torch.cuda.is_available() else ""}
- floor (bare batched forward to each layer + backward to the input, same {rows_per_step} rows per step, the \
better of {chunk}-row chunks and one pass per layer): \
{floor_step * 1e3:.1f} ms per step
- infolens optimisation: {per_step * 1e3:.1f} ms per step -> **{per_step / floor_step:.2f}x the floor** (goal <= 1.3x)
- per-step cost from the difference of a {steps}- and a {steps // 2}-step run (calibration and the final offset \
fit cancel); end to end ({steps} steps + calibration (64 samples) + final offset fit): {t_full:.2f} s = \
{n / t_full:.1f} images/s ({t_full / t_floor:.2f}x the floor of the steps alone; fixed overhead {overhead:.2f} s)
- batching: one image at a time {t_loop:.2f} s per image vs {n} in one batch {t_batch:.3f} s per image -> \
**{t_loop / t_batch:.1f}x speed-up**
"""
    if a.quick:
        print(body)
    else:
        append_results("bench_discard", body)


if __name__ == "__main__":
    main()
