"""FORGrad figures from result tables (never from models): mean radial spectra of gradient- vs
prediction-based maps, example maps, faithfulness before/after filtering, cut-off selection curves."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from . import lines, subplots


def _models(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({r["model"] for r in rows}, key=lambda s: (not str(s).startswith("mnist"), str(s)))


def spectrum_lines(ax: Any, rows: Sequence[Mapping[str, Any]], *, model: str, by: str = "kind",
                   exclude: Sequence[str] = ()) -> list[Any]:
    """Mean normalised radial power against frequency (fraction of Nyquist), one line per ``kind``
    (gradient / prediction; averaged over the methods of the kind) or per ``method``; log power.
    ``exclude`` leaves methods out (the figure leaves Grad-CAM, an upsampled coarse map, out of the
    gradient average, so that line shows the pixel-wise gradient methods the paper filters)."""
    acc: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["model"] == model and r["method"] not in exclude:
            acc[str(r[by])][float(r["frequency"])].append(float(r["power"]))
    arts = []
    for label, d in sorted(acc.items()):
        f = sorted(d)
        arts.extend(ax.plot(f, [sum(d[k]) / len(d[k]) for k in f], marker="o", ms=2, label=label,
                            lw=2 if by == "kind" else 1))
    ax.set_yscale("log")
    from matplotlib.ticker import NullLocator

    ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks double the drawing time
    ax.set_xlabel("frequency / Nyquist")
    ax.set_ylabel("share of power")
    ax.set_title(model, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7 if by == "kind" else 5, ncol=1 if by == "kind" else 2)
    return arts


def spectra_figure(rows: Sequence[Mapping[str, Any]], *, per_method: bool = True):
    """Per model: mean spectrum of gradient- vs prediction-based maps (top) and of each method (bottom,
    with ``per_method``)."""
    models = _models(rows)
    fig, axes = subplots(2 if per_method else 1, len(models), width=3.4, height=2.8)
    for j, m in enumerate(models):
        spectrum_lines(axes[0, j], rows, model=m, by="kind", exclude=("gradcam",))
        if per_method:
            spectrum_lines(axes[1, j], rows, model=m, by="method")
            axes[1, j].set_title(f"{m}: per method", fontsize=9)
    return fig


def _unit(a: Any) -> Any:
    """A map scaled to [0, 1] (constant maps give 0)."""
    import numpy as np

    a = np.asarray(a, dtype=float)
    lo, hi = np.nanmin(a), np.nanmax(a)
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def examples_figure(examples: Mapping[str, Mapping[str, Any]], *, image_index: int = 0):
    """One panel per model: a mosaic of the input, each method's raw map (|channel mean|, top row) and
    its FORGrad-filtered map (bottom row), each tile scaled to its own range (inferno). Drawn as one
    image per model: dozens of separate axes would cost seconds of layout."""
    import numpy as np
    from matplotlib import colormaps

    cmap = colormaps["inferno"]
    models = list(examples)
    methods = max((list(e["maps"]) for e in examples.values()), key=len)
    fig, axes = subplots(len(models), 1, width=1.1 * (len(methods) + 1), height=2.5, constrained_layout=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.02, hspace=0.35)
    for b, m in enumerate(models):
        e, ax = examples[m], axes[b, 0]
        img = np.asarray(e["images"][image_index], dtype=float)
        img = np.repeat(img, 3, 0) if img.shape[0] == 1 else img[:3]
        img = np.clip(np.moveaxis(img, 0, -1), 0, 1)
        h, w = img.shape[:2]
        pad = max(1, h // 14)
        tiles = np.ones((2 * h + pad, (len(methods) + 1) * (w + pad) - pad, 3))
        tiles[:h, :w] = img
        tiles[h + pad:, :w] = img
        for k, meth in enumerate(methods):
            if meth not in e["maps"]:
                continue
            x0 = (k + 1) * (w + pad)
            for r, var in enumerate(("raw", "forgrad")):
                mp = np.abs(np.asarray(e["maps"][meth][var][image_index], dtype=float))
                tiles[r * (h + pad):r * (h + pad) + h, x0:x0 + w] = cmap(_unit(mp))[..., :3]
            cut = e["maps"][meth].get("cutoff")
            ax.text(x0 + w / 2, -pad, meth.replace("_", " ") + (f"\n(cut {cut:g})" if cut is not None else ""),
                    ha="center", va="bottom", fontsize=6)
        ax.imshow(tiles, interpolation="nearest")
        ax.set_ylabel(m, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([h / 2, h + pad + h / 2], ["raw", "FORGrad"], fontsize=6)
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_visible(False)
    return fig


def ranking_figure(summary: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("deletion", "insertion")):
    """Raw (open markers) vs filtered (filled) mean score of every method, per model and metric."""
    models = _models(summary)
    fig, axes = subplots(len(metrics), len(models), width=3.4, height=2.6)
    for j, model in enumerate(models):
        rows = [r for r in summary if r["model"] == model]
        names = [r["method"] for r in rows]
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            ys = list(range(len(rows)))
            ax.scatter([r.get(metric) for r in rows], ys, facecolors="none", edgecolors="C0", label="raw")
            ax.scatter([r.get(f"{metric}_forgrad") for r in rows], ys, color="C3", s=14, label="FORGrad")
            ax.set_yticks(ys)
            ax.set_yticklabels(names, fontsize=6)
            ax.set_title(f"{model}: {metric}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=6)
    return fig


def cutoff_figure(curves: Sequence[Mapping[str, Any]]):
    """Selection score against the cut-off, one panel per model, one line per method."""
    models = _models(curves)
    fig, axes = subplots(1, len(models), width=3.2, height=2.6)
    for j, model in enumerate(models):
        d: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in curves:
            if r["model"] == model:
                d[r["method"]].append((float(r["cutoff"]), float(r["score"])))
        first = next(iter(d.values()), [(0, 0)])
        xs = [c for c, _ in sorted(first)]
        lines(axes[0, j], xs, {m: [s for _, s in sorted(v)] for m, v in d.items()}, logx=True,
              xlabel="cut-off (frequency steps)", ylabel="insertion - deletion", title=model)
    return fig
