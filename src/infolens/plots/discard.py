"""Information-discarding figures from result tables and saved maps (never from models): the depth curve
per model, pixel-wise entropy maps overlaid on the images, the curve per training stage, and the
reconstruction uncertainty per layer."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from . import image, subplots

#: Mean entropy of an isometric layer at the defaults (tau 1.5, sigma0 0.01), nats.
H_ISOMETRY = math.log(0.01 * math.sqrt(1.5)) + 0.5 * math.log(2 * math.pi * math.e)


def _by(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        out[str(r[key])].append(r)
    return out


def depth_curve(ax: Any, rows: Sequence[Mapping[str, Any]], *, label: str = "", cummax: bool = True,
                relative: bool = True) -> list[Any]:
    """Mean entropy (``entropy_mean``, with ``entropy_std`` bars) against depth for one model's layer
    summary rows; depth as a fraction of the measured layers (0 shallowest, 1 deepest) when
    ``relative``, so models with different numbers of layers share the axis. Returns the artists."""
    rs = sorted(rows, key=lambda r: int(r["depth"]))
    n = max(len(rs) - 1, 1)
    x = [int(r["depth"]) / n if relative else int(r["depth"]) for r in rs]
    y = [float(r["entropy_mean"]) for r in rs]
    err = [float(r.get("entropy_std") or 0.0) for r in rs]
    arts = [ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, label=label)]
    if cummax:
        c = [float(r["entropy_cummax_mean"]) for r in rs]
        arts.extend(ax.plot(x, c, ls="--", lw=1, color=arts[0][0].get_color()))
    return arts


def depth_figure(summary: Sequence[Mapping[str, Any]]):
    """One panel per image domain (MNIST built-ins together, others apart): entropy through depth."""
    final = [r for r in summary if str(r["stage"]) == "final"]
    models = _by(final, "model")
    groups = [[m for m in models if m.startswith("mnist")], [m for m in models if not m.startswith("mnist")]]
    groups = [g for g in groups if g]
    fig, axes = subplots(1, len(groups), width=4.6, height=3.4)
    for ax, group in zip(axes[0], groups):
        for m in group:
            depth_curve(ax, models[m], label=m)
        ax.axhline(H_ISOMETRY, color="grey", ls=":", lw=1)
        ax.set_xlabel("depth (first to last measured layer)")
        ax.set_ylabel("mean entropy per cell (nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        names = " / ".join(f"{m}: {', '.join(str(r['layer']) for r in sorted(models[m], key=lambda r: int(r['depth'])))}"
                           for m in group[:1])
        ax.set_title(names, fontsize=6)
    return fig


def maps_figure(maps: Mapping[str, Mapping[str, Any]], *, per_model: int = 1):
    """Rows: images (``per_model`` per saved map file); columns: the image, then its entropy map at each
    layer overlaid (one colour scale per row, so the rows' layers compare)."""
    rows = []
    for key, m in maps.items():
        for j in range(min(per_model, m["images"].shape[0])):
            rows.append((key, m, j))
    ncol = 1 + max(len(m["layers"]) for _, m, _ in rows)
    fig, axes = subplots(len(rows), ncol, width=1.6, height=1.7)
    for i, (key, m, j) in enumerate(rows):
        img = m["images"][j]
        hw = tuple(img.shape[-2:])
        image(axes[i, 0], img, title=f"{key.rsplit('-', 2)[0]}\n{m['names'][j]}")
        ent = m["maps"][j]  # (L, gh, gw)
        lo, hi = float(ent.min()), float(ent.max())
        import torch.nn.functional as F

        up = F.interpolate(ent[:, None].float(), size=hw, mode="nearest")[:, 0]
        art = None
        for l, layer in enumerate(m["layers"]):
            art = image(axes[i, l + 1], img, overlay=up[l], vmin=lo, vmax=hi, alpha=0.6,
                        title=f"{layer}\nH {float(ent[l].mean()):.2f}")
        for k in range(len(m["layers"]) + 1, ncol):
            axes[i, k].axis("off")
        if art is not None:
            fig.colorbar(art, ax=axes[i, -1], fraction=0.046, label="nats")
    return fig


def stages_figure(summary: Sequence[Mapping[str, Any]]):
    """One panel per model with stages: the depth curve at each training stage (epochs)."""
    models = {m: rs for m, rs in _by(summary, "model").items() if len({str(r["stage"]) for r in rs}) > 1}
    fig, axes = subplots(1, max(len(models), 1), width=4.6, height=3.4)
    for ax, (m, rs) in zip(axes[0], models.items()):
        stages = _by(rs, "stage")
        order = sorted(stages, key=lambda s: float(stages[s][0].get("epoch") or 99) if s != "final" else 98)
        for s in order:
            depth_curve(ax, stages[s], label=s, cummax=False)
        ax.axhline(H_ISOMETRY, color="grey", ls=":", lw=1)
        ax.set_title(f"{m}: training stages", fontsize=9)
        ax.set_xlabel("depth (first to last measured layer)")
        ax.set_ylabel("mean entropy per cell (nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def reconstruction_figure(summary: Sequence[Mapping[str, Any]]):
    """Per model: reconstruction uncertainty (noisy features) and the decoder's clean error, per layer."""
    models = _by(summary, "model")
    fig, axes = subplots(1, len(models), width=4.6, height=3.4)
    for ax, (m, rs) in zip(axes[0], models.items()):
        rs = sorted(rs, key=lambda r: int(r["depth"]))
        x = list(range(len(rs)))
        ax.plot(x, [float(r["uncertainty_mean"]) for r in rs], marker="o", label="under the learnt noise")
        ax.plot(x, [float(r["clean_mean"]) for r in rs], marker="s", ls="--", label="clean features")
        if all("induced_mean" in r for r in rs):
            ax.plot(x, [float(r["induced_mean"]) for r in rs], marker="^", ls=":",
                    label="noise-induced spread")
        ax.set_xticks(x)
        ax.set_xticklabels([str(r["layer"]) for r in rs], rotation=30, fontsize=7)
        ax.set_ylabel("residual entropy (nats / pixel)")
        ax.set_title(m, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig
