"""Where FORGrad's protocol spends its passes: one EfficientNet-Lite0 photograph at 224 px, the paper's
settings (Xplique's counts), stage by stage, with the forward passes (model input rows) each stage runs.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_forgrad_protocol.py [--photos 1] [--fraction 0.05] [--append]

Stages (the per-photograph work of ``infolens.experiments.forgrad.protocol.run_model``):

* ``gradient``: the 7 gradient methods (IG 50 steps; SmoothGrad/SquareGrad/VarGrad 50 samples) and the 2
  gray-box ones, every pass with its backward;
* ``deletion+insertion``: the 7-point cut-off grid plus the identity of every gradient map, the standard
  maps, the gray-box maps and the 3 sanity references, both metrics at 10 steps;
* ``mufidelity``: 200 masks, the final maps (standard, |.|, filtered);
* ``occlusion``/``rise``/``sobol``/``hsic``: the prediction methods. Their full counts (Occlusion 3-px patch
  and stride = 5,625 windows, RISE 4,000, Sobol 32 x 65, HSIC 1,500) take minutes per photograph on a CPU,
  so by default they run ``--fraction`` of their passes and the seconds are extrapolated linearly in the
  number of passes (stated in the output; ``--fraction 1`` runs them whole).

Runs against whatever ``infolens`` is on ``PYTHONPATH`` (only public APIs), so the same script measures the
code before and after a change. Threads: ``BENCH_THREADS`` (default 1, one rank's share of the 2 cores).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))

from infolens.attribution import REFERENCES, attribute_many, forgrad, make_method, make_reference, max_cutoff  # noqa: E402
from infolens.attribution.metrics import Deletion, Insertion, MuFidelity  # noqa: E402

GRADIENT = ("saliency", "gradient_x_input", "integrated_gradients", "smoothgrad", "squaregrad", "vargrad",
            "guided_backprop")
GRAY = ("gradcam", "gradcam_pp")
CUTOFFS = (1, 2, 4, 8, 15, 30, 60)


class Counter:
    """Counts the model's input rows (forward passes) through a forward pre-hook."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.n = 0
        model.register_forward_pre_hook(self._hook)

    def _hook(self, mod, args):  # noqa: ANN001
        self.n += int(args[0].shape[0])


def stage(name: str, fn, counter: Counter, rows: list, scale: float = 1.0) -> object:
    n0 = counter.n
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    passes = counter.n - n0
    rows.append((name, dt / scale, int(round(passes / scale)), scale))
    note = f" (ran {scale:.3g} of the passes; extrapolated)" if scale != 1.0 else ""
    print(f"{name:22s} {dt / scale:9.1f} s {int(round(passes / scale)):8d} passes "
          f"{1000 * dt / max(passes, 1):7.1f} ms/pass{note}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=1)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--fraction", type=float, default=0.05, help="share of the prediction methods' passes run")
    ap.add_argument("--skip-prediction", action="store_true")
    ap.add_argument("--label", default="", help="a label for the printed table (before/after)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--floor", action="store_true", help="also time a bare forward (and forward+backward) "
                    "batch, contiguous vs channels-last, interleaved (robust to a changing load)")
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()

    from infolens.experiments.forgrad.verdicts import load_photos, load_trio_model
    from infolens.experiments.forgrad.protocol import input_scale, input_zero

    lm = load_trio_model(args.model, "cpu")
    model = lm.model.eval()
    s = lm.input_shape[-1]
    x, _, _ = load_photos(s, quick=False)
    x = x[:args.photos]
    counter = Counter(model)
    zero, scale = input_zero(model), input_scale(model)
    with torch.no_grad():
        t = model(x).argmax(1)
    counter.n = 0
    bs = args.batch_size
    common = {"batch_size": bs, "internal_batch_size": bs}
    kw = {"saliency": {"abs": False}, "integrated_gradients": {"n_steps": 50, "baseline": zero},
          **{m: {"n_samples": 50, "stdev": 0.2 * scale} for m in ("smoothgrad", "squaregrad", "vargrad")}}
    rows: list = []
    print(f"{args.label} {args.model} {s} px, {args.photos} photograph(s), {torch.get_num_threads()} thread(s)")
    methods = {m: make_method(m, model, **common, **kw.get(m, {})) for m in GRADIENT + GRAY}
    maps = stage("gradient (9 methods)", lambda: attribute_many(model, methods, x, t), counter, rows)
    refs = {r: make_reference(r, model, **({"baseline": zero} if r == "magnitude" else {})) for r in REFERENCES}
    # an AttributionResult's .maps (older code, measured as "before", returned the tensor itself)
    maps.update({r: getattr(res, "maps", res) for r, res in ((r, m.attribute(x, t)) for r, m in refs.items())})
    grid = [c * s / 224 for c in CUTOFFS] + [max_cutoff(s, s)]
    variants = []
    for m in GRADIENT:
        variants += [forgrad(maps[m], c) for c in grid[:-1]] + [forgrad(maps[m], math.inf)]  # last: unfiltered
        variants.append(maps[m].abs().amax(1, keepdim=True) if m == "saliency" else maps[m])
        if m == "saliency":
            variants.append(maps[m])
    variants += [maps[m] for m in GRAY + tuple(REFERENCES)]
    final = []
    for m in GRADIENT:
        final += [maps[m], forgrad(maps[m], math.inf), forgrad(maps[m], 15 * s / 224)]
    final += [maps[m] for m in GRAY + tuple(REFERENCES)]
    import inspect  # older code, measured as "before", spelled the step count `steps`
    steps_kw = "n_steps" if "n_steps" in inspect.signature(Deletion.__init__).parameters else "steps"
    dele = Deletion(model, **{steps_kw: 10}, baseline=zero, batch_size=bs)
    ins = Insertion(model, **{steps_kw: 10}, baseline=zero, batch_size=bs)
    stage(f"deletion+insertion ({len(variants)} maps)",
          lambda: [mt.score_many(x, t, variants) for mt in (dele, ins)], counter, rows)
    muf = MuFidelity(model, n_masks=200, baseline=zero, batch_size=bs)
    stage(f"mufidelity ({len(final)} maps)", lambda: muf.score_many(x, t, final), counter, rows)
    if not args.skip_prediction:
        f = args.fraction
        full = {"occlusion": 75 * 75, "rise": 4000, "sobol": 32 * 65, "hsic": 1500}
        pred = {"occlusion": make_method("occlusion", model, window=max(1, round(s / 75 / math.sqrt(f))),
                                         baseline=zero, **common),
                "rise": make_method("rise", model, n_masks=max(8, round(4000 * f)), **common),
                "sobol": make_method("sobol", model, n_design=2, grid=8, **common),
                "hsic": make_method("hsic", model, n_design=max(8, round(1500 * f)), grid=7, **common)}
        for name, meth in pred.items():
            n0 = counter.n
            t0 = time.perf_counter()
            meth.attribute(x, t)
            dt, passes = time.perf_counter() - t0, counter.n - n0
            frac = passes / (full[name] * args.photos)
            rows.append((name, dt / frac, full[name] * args.photos, frac))
            print(f"{name:22s} {dt / frac:9.1f} s {full[name] * args.photos:8d} passes "
                  f"{1000 * dt / max(passes, 1):7.1f} ms/pass (ran {passes} passes, {frac:.3g}; extrapolated)",
                  flush=True)
    if args.floor:
        from _common import interleaved

        xb = x[:1].expand(bs, -1, -1, -1).contiguous()
        xc = xb.contiguous(memory_format=torch.channels_last)

        def fwd(inp, ctx):
            def run():
                with ctx():
                    model(inp)
            return run

        def fb(inp):
            def run():
                z = inp.detach().requires_grad_(True)
                torch.autograd.grad(model(z)[:, 0].sum(), z)
            return run
        best = interleaved({"forward, no_grad, contiguous": fwd(xb, torch.no_grad),
                            "forward, inference_mode, channels-last": fwd(xc, torch.inference_mode),
                            "forward+backward, contiguous": fb(xb[:8]),
                            "forward+backward, channels-last": fb(xc[:8])}, repeat=3, warmup=1)
        for k, v in best.items():
            n = 8 if "backward" in k else bs
            print(f"floor {k:42s} {1000 * v / n:7.1f} ms/image (batch {n}, interleaved best of 3)")
            rows.append((f"floor: {k} (ms/image)", 1000 * v / n, 0, 1.0))
    tot = sum(r[1] for r in rows if not r[0].startswith("floor"))
    print(f"{'total':22s} {tot:9.1f} s {sum(r[2] for r in rows):8d} passes")
    print(f"load average during the run: {os.getloadavg()}")
    if args.append:
        from _common import append_results

        body = "| stage | seconds | passes | measured share |\n|---|---|---|---|\n" + "\n".join(
            f"| {n} | {sec:.1f} | {p} | {sh:.3g} |" for n, sec, p, sh in rows) + f"\n| total | {tot:.1f} | | |\n"
        append_results(f"bench_forgrad_protocol {args.label} ({args.model}, {args.photos} photograph(s))", body)


if __name__ == "__main__":
    main()
