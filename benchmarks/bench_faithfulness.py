"""Deletion, Insertion, MuFidelity: infolens vs (1) the bare batched forward passes each metric needs (the
floor) and (2) Quantus 0.6's nearest metrics (PixelFlipping, FaithfulnessCorrelation) on the same inputs,
values side by side; plus FORGrad filtering time against the gradient computation it follows.

    .venv/bin/python benchmarks/bench_faithfulness.py [--quick]

Appends a dated section to benchmarks/RESULTS.md. On the CPU the 224 x 224 part is cut down (few
Quantus images, few MuFidelity masks, see the printed settings): EfficientNet-Lite0 runs at a few images
per second on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from infolens.attribution import Saliency, forgrad
from infolens.attribution.metrics import Deletion, Insertion, MuFidelity

warnings.filterwarnings("ignore")
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
LINES: list[str] = []


def say(s: str = "") -> None:
    print(s, flush=True)
    LINES.append(s)


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def floor_fn(model, shape, n_inputs: int, batch_size: int, device: str):
    """The floor: ``n_inputs`` bare forward passes (no_grad) in batches of ``batch_size``, on inputs built
    beforehand: what the metric cannot avoid."""
    x = torch.rand(min(batch_size, n_inputs), *shape, device=device)

    def run() -> None:
        with torch.no_grad():
            for s in range(0, n_inputs, batch_size):
                model(x[:min(batch_size, n_inputs - s)])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return run


def interleaved(ours, floor, repeat: int):
    """Best of ``repeat`` alternating runs of the metric and of its floor (the machine is shared: alternating
    exposes both to the same load)."""
    best_o, best_f, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = ours()
        best_o = min(best_o, time.perf_counter() - t)
        t = time.perf_counter()
        floor()
        best_f = min(best_f, time.perf_counter() - t)
    return best_o, best_f, out


def quantus_metrics(steps_features: int, nr_runs: int, subset: int):
    import quantus

    pf = quantus.PixelFlipping(features_in_step=steps_features, perturb_baseline=0.0, normalise=False, abs=False,
                               disable_warnings=True, display_progressbar=False)
    fc = quantus.FaithfulnessCorrelation(nr_runs=nr_runs, subset_size=subset, perturb_baseline=0.0, normalise=False,
                                         abs=False, similarity_func=quantus.similarity_func.correlation_spearman,
                                         return_aggregate=False, disable_warnings=True, display_progressbar=False)
    return pf, fc


def section(name: str, model, x: torch.Tensor, *, steps: int, n_masks: int, grid: int, batch_size: int,
            n_quantus: int, device: str, repeat: int = 3) -> None:
    n, c, h, w = x.shape
    model = model.eval().to(device)
    x = x.to(device)
    with torch.no_grad():
        t = torch.cat([model(x[s:s + batch_size]).argmax(1) for s in range(0, n, batch_size)])
    tg, sal = timed(lambda: Saliency(model, batch_size=batch_size).attribute(x, t).maps, repeat=2)
    cut = 15.0 if h >= 200 else 7.0
    tf, _ = timed(lambda: forgrad(sal, cut), repeat=3)
    say(f"\n### {name}: {n} images {c}x{h}x{w}, batch {batch_size}, device {device}")
    say(f"- FORGrad filtering (cut-off {cut:g} steps) {tf * 1e3:.1f} ms vs the Saliency gradients it follows "
        f"{tg * 1e3:.0f} ms: +{100 * tf / tg:.2f}%")
    say(f"- floor: the same number of bare batched forward passes, run alternately with the metric, best of "
        f"{repeat}")
    say("| metric | model inputs | infolens s | floor s | infolens / floor | Quantus s per image "
        f"({n_quantus} img) | infolens s per image | Quantus / infolens | infolens value | Quantus value |")
    say("|---|---|---|---|---|---|---|---|---|---|")
    # Quantus flips channel-features; attributions are repeated over the channels, and features_in_step must
    # divide H*W: it takes c * steps steps of H*W/steps features, and its point c*j-1 is our step j
    pf, fc = quantus_metrics(h * w // steps, n_masks, int(round(0.2 * h * w)) * c)
    xq = x[:n_quantus].cpu().numpy()
    yq = t[:n_quantus].cpu().numpy()
    aq = np.repeat(sal[:n_quantus].mean(1, keepdim=True).cpu().numpy(), c, axis=1)
    for metric_name, metric in (("deletion", Deletion(model, n_steps=steps, batch_size=batch_size, score="logit")),
                                ("insertion", Insertion(model, n_steps=steps, batch_size=batch_size, score="logit")),
                                ("mufidelity", MuFidelity(model, n_masks=n_masks, grid=grid, batch_size=batch_size,
                                                              score="logit"))):
        def ours():
            metric._cache = None  # a fresh call: nothing reused from the previous repetition
            metric.forward_passes = 0
            return metric(x, t, sal)
        res = ours()
        inputs = metric.forward_passes
        ours_t, floor_t, res = interleaved(ours, floor_fn(model, (c, h, w), inputs, batch_size, device), repeat)
        qv, qt = "-", float("nan")
        if metric_name == "deletion":
            qt, curves = timed(lambda: pf(model=model.cpu(), x_batch=xq, y_batch=yq, a_batch=aq, softmax=False,
                                          device="cpu", batch_size=batch_size))
            curves = np.asarray(curves)[:, c - 1::c]
            ours_c = res.curves[:n_quantus, 1:].cpu().numpy()
            qv = (f"curve mean {curves.mean():.4f} (ours {ours_c.mean():.4f}; max abs diff "
                  f"{np.abs(curves - ours_c).max():.2e})")
            model.to(device)
        elif metric_name == "mufidelity":
            qt, vals = timed(lambda: fc(model=model.cpu(), x_batch=xq, y_batch=yq, a_batch=aq, softmax=False,
                                        device="cpu", batch_size=batch_size))
            model.to(device)
            qv = (f"{np.mean(vals):.4f} (random pixel subsets, not grid cells; ours on the same {n_quantus}: "
                  f"{res.scores[:n_quantus].mean():.4f})")
        ours_img = ours_t / n
        # per image; on RGB Quantus needs c times our passes for the same curve: we divide its time by c
        q_img = qt / n_quantus / (c if metric_name == "deletion" else 1)
        ratio = q_img / ours_img if qt == qt else float("nan")
        say(f"| {metric_name} | {inputs} | {ours_t:.2f} | {floor_t:.2f} | {ours_t / floor_t:.2f} | "
            f"{'-' if qt != qt else f'{q_img:.3f}'} | {ours_img:.3f} | "
            f"{'-' if ratio != ratio else f'{ratio:.2f}'} | {res.mean:.4f} | {qv} |")


def mnist_model(device: str):
    from infolens import models

    if hasattr(models, "pretrained_builtin"):
        try:
            return "mnist_vgg (pretrained_builtin)", models.pretrained_builtin("mnist_vgg", device=device, progress=False)
        except Exception as exc:  # noqa: BLE001 - fall back to a quick training
            print(f"pretrained_builtin failed ({exc}); training a quick model", file=sys.stderr)
    r = models.train("mnist_vgg", epochs=1, train_limit=6000, test_limit=1000, progress=False, device=device)
    return f"mnist_vgg (quick: 1 epoch on 6,000 digits, test acc {r.history[-1]['test_acc']:.3f})", r.model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-photos", action="store_true")
    ap.add_argument("--photos", type=int, default=16, help="photographs at 224 (bundled ones and mirror images)")
    args = ap.parse_args()
    from infolens import data

    say(f"\n## bench_faithfulness ({dt.datetime.now().isoformat(timespec='minutes')})")
    say(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}, device {args.device}; no GPU lent: GPU figures "
        f"not measured" if args.device == "cpu" else f"device {args.device}")
    name, model = mnist_model(args.device)
    n = 16 if args.quick else 64
    x, _ = data.mnist_tensors("test", limit=n)
    # Deletion/Insertion: 16 steps of 49 pixels (Quantus's features_in_step must divide 784); MuFidelity at the
    # pixel level (grid 28), 200 masks, so FaithfulnessCorrelation (random pixel subsets of 20%) is its neighbour
    section(name, model, x, steps=16, n_masks=200 if not args.quick else 50, grid=28, batch_size=256,
            n_quantus=n, device=args.device)
    if not args.skip_photos:
        from infolens.models import load_model

        lm = load_model("efficientnet_lite0", device=args.device)
        px, _ = data.load_photos(size=224)
        px = torch.cat([px, px.flip(-1)])[:args.photos] if px.shape[0] < args.photos else px[:args.photos]
        if args.quick:
            px = px[:4]
        masks = 200 if args.device != "cpu" else 8
        nq = px.shape[0] if args.device != "cpu" else min(8, px.shape[0])
        say(f"(224 on {args.device}: MuFidelity/FaithfulnessCorrelation with {masks} masks; Quantus on {nq} photos, "
            f"per-image time compared; photos = the bundled ones and their mirror images)")
        section("efficientnet_lite0", lm.model, px, steps=8, n_masks=masks, grid=9, batch_size=32, n_quantus=nq,
                device=args.device, repeat=2)
    with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
        f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
