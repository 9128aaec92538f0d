"""FORGrad figures from result tables (never from models): mean radial spectra of gradient- vs
prediction-based maps, example maps, faithfulness before/after filtering, cut-off selection curves with
their maximum marked, the ranking before/after filtering as a bump chart, the two effects (|.| and the
filter) apart, and the aliasing test's spectra."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from ._base import lines, log_scale, subplots


def _models(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({r["model"] for r in rows}, key=lambda s: (not str(s).startswith("mnist"), str(s)))


def spectrum_lines(ax: Any, rows: Sequence[Mapping[str, Any]], *, model: str, by: str = "kind",
                   exclude: Sequence[str] = ()) -> list[Any]:
    """Mean normalised radial power against frequency (fraction of Nyquist), one line per ``kind``
    (gradient / prediction; averaged over the methods of the kind; gray-box and reference maps left out)
    or per ``method``; log power.
    ``exclude`` leaves methods out (the figure leaves Grad-CAM, an upsampled coarse map, out of the
    gradient average, so that line shows the pixel-wise gradient methods the paper filters)."""
    acc: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["model"] == model and r["method"] not in exclude and \
                not (by == "kind" and r.get("kind") in ("gray", "reference")):
            acc[str(r[by])][float(r["frequency"])].append(float(r["power"]))
    arts = []
    for label, d in sorted(acc.items()):
        f = sorted(d)
        arts.extend(ax.plot(f, [sum(d[k]) / len(d[k]) for k in f], marker="o", ms=2, label=label,
                            lw=2 if by == "kind" else 1))
    log_scale(ax, "y")
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
    """Selection score against the cut-off, one panel per model, one line per method, each line's maximum
    marked with a star."""
    models = _models(curves)
    fig, axes = subplots(1, len(models), width=3.2, height=2.6)
    for j, model in enumerate(models):
        d: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in curves:
            if r["model"] == model:
                d[r["method"]].append((float(r["cutoff"]), float(r["score"])))
        first = next(iter(d.values()), [(0, 0)])
        xs = [c for c, _ in sorted(first)]
        arts = lines(axes[0, j], xs, {m: [s for _, s in sorted(v)] for m, v in d.items()}, logx=True,
                     xlabel="cut-off (frequency steps)", ylabel="insertion - deletion", title=model)
        for art, v in zip(arts, d.values()):
            c, best = max(sorted(v), key=lambda cs: cs[1])
            axes[0, j].plot([c], [best], marker="*", ms=9, color=art.get_color(), zorder=5)
    return fig


def bump_figure(ranking: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("deletion", "insertion",
                                                                                 "mufidelity")):
    """The ranking before and after filtering as a bump chart: one panel per (metric, model), rank 1 on
    top, one line per method (gradient solid, gray-box dash-dot, prediction dotted, references dashed)."""
    models = _models(ranking)
    styles = {"gradient": "-", "gray": "-.", "prediction": ":", "reference": "--"}
    fig, axes = subplots(len(metrics), len(models), width=3.0, height=3.0)
    for i, metric in enumerate(metrics):
        for j, model in enumerate(models):
            ax = axes[i, j]
            pos: dict[str, dict[str, int]] = defaultdict(dict)
            fam = {}
            for r in ranking:
                if r["model"] == model and r["metric"] == metric:
                    pos[r["method"]][r["stage"]] = int(r["rank"])
                    fam[r["method"]] = r["family"]
            for k, (m, p) in enumerate(sorted(pos.items())):
                if "before" in p and "after" in p:
                    ax.plot([0, 1], [p["before"], p["after"]], styles.get(fam[m], "-"), marker="o", ms=3,
                            color=f"C{k % 10}")
                    ax.text(1.04, p["after"], m.replace("_", " "), fontsize=5, va="center")
            ax.set_xlim(-0.1, 1.6)
            ax.invert_yaxis()
            ax.set_xticks([0, 1], ["standard", "filtered"], fontsize=7)
            ax.set_ylabel("rank", fontsize=7)
            ax.set_title(f"{model}: {metric}", fontsize=8)
    return fig


def effects_figure(effects: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("deletion", "insertion",
                                                                                     "mufidelity")):
    """Per (metric, model): each gradient method's mean score for its standard map, raw signed, |.| alone,
    and |.| then filtered at its own cut-off."""
    import numpy as np

    models = _models(effects)
    variants = ("standard", "signed", "abs", "forgrad")
    fig, axes = subplots(len(metrics), len(models), width=3.6, height=2.6)
    for i, metric in enumerate(metrics):
        for j, model in enumerate(models):
            ax = axes[i, j]
            rows = [r for r in effects if r["model"] == model and r["metric"] == metric]
            x = np.arange(len(rows))
            for k, v in enumerate(variants):
                ax.bar(x + (k - 1.5) * 0.2, [r.get(v) if r.get(v) is not None else np.nan for r in rows], 0.2,
                       label=v)
            ax.set_xticks(x, [r["method"].replace("_", " ") for r in rows], rotation=60, fontsize=5)
            ax.set_title(f"{model}: {metric}", fontsize=8)
            if i == 0 and j == 0:
                ax.legend(fontsize=5)
    return fig


def trio_examples_figure(examples: Sequence[Mapping[str, Any]]):
    """One row pair per model: the photograph, each method's standard map (|.|) and, below, the filtered
    map of the gradient methods, each tile scaled to its own range."""
    import numpy as np

    methods = max((list(e["standard"]) for e in examples), key=len)
    fig, axes = subplots(2 * len(examples), len(methods) + 1, width=1.0, height=1.05)
    for b, e in enumerate(examples):
        img = np.clip(np.moveaxis(np.asarray(e["image"][0], dtype=float), 0, -1), 0, 1)
        for r in range(2):
            ax = axes[2 * b + r, 0]
            ax.imshow(img)
            ax.set_ylabel(f"{e['model']}\n{'standard' if r == 0 else 'filtered'}", fontsize=5)
        for k, m in enumerate(methods):
            for r, var in enumerate(("standard", "forgrad")):
                ax = axes[2 * b + r, k + 1]
                mp = e[var].get(m)
                if mp is not None:
                    ax.imshow(_unit(np.abs(np.asarray(mp[0], dtype=float))), cmap="inferno")
                if b == 0 and r == 0:
                    ax.set_title(m.replace("_", " "), fontsize=5)
                if r == 1 and m in e.get("cutoff", {}):
                    ax.set_xlabel(f"cut {e['cutoff'][m]:g}", fontsize=5)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def aliasing_figure(info: Mapping[str, Any]):
    """Mean radial spectrum of Saliency for each model of the anti-aliasing pair; the legend gives the
    mean high-frequency share."""
    fig, axes = subplots(1, 1, width=4.0, height=3.0)
    ax = axes[0, 0]
    for name, (power, freq) in info["spectra"].items():
        ax.plot(freq, power, marker="o", ms=2, label=f"{name} (HF share {info['shares'][name]:.3f})")
    ax.axvline(0.5, color="gray", lw=0.8, ls="--")
    log_scale(ax, "y")
    ax.set_xlabel("frequency / Nyquist")
    ax.set_ylabel("share of power")
    ax.legend(fontsize=6)
    return fig


def opening(claims: Sequence[Mapping[str, Any]], ranking: Sequence[Mapping[str, Any]], sanity: Sequence[str],
            deviations: Sequence[str]) -> dict[str, Any]:
    """What the report's FORGrad section opens with, in order: the verdict of each claim row, the sanity
    references (the blob's, magnitude's and noise's Insertion - Deletion, and the methods that do not
    beat the blob), each deviation, and the ranking before and after filtering per model
    (Insertion - Deletion, best first)."""
    out: dict[str, Any] = {"verdicts": {f"{r['claim']} {r['model']}": f"{r['verdict']} (value {_num(r['value'])}, "
                                        f"95% CI {_num(r['ci_low'])} to {_num(r['ci_high'])}, n {r['n']}, "
                                        f"threshold {r['threshold']})" for r in claims}}
    refs = {f"{r['model']} {r['method']}": _num(r["mean"]) for r in ranking
            if r["metric"] == "insertion-deletion" and r["stage"] == "before" and r["family"] == "reference"}
    out["sanity references (Insertion - Deletion)"] = refs
    out["methods not beating the centred blob"] = list(sanity) or ["none"]
    out["deviations"] = {str(k + 1): d for k, d in enumerate(deviations)}
    order: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for stage in ("before", "after"):
        for model in _models(ranking):
            rows = sorted((r for r in ranking if r["model"] == model and r["stage"] == stage and
                           r["metric"] == "insertion-deletion"), key=lambda r: int(r["rank"]))
            order[model][stage] = ", ".join(r["method"] + ("*" if r["variant"] == "forgrad" else "") for r in rows)
    out["ranking by Insertion - Deletion (* filtered)"] = {f"{m} {s}": v for m, d in order.items() for s, v in d.items()}
    return out


def _num(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "nan" if f != f else f"{f:.3g}"
