"""Information-discarding figures from result tables and saved maps (never from models): the depth curve
per model, pixel-wise entropy maps overlaid on the images, the curve per training stage, and the
reconstruction uncertainty per layer."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from ._base import image, subplots

#: Mean entropy of an isometric layer at the defaults (tau 1.5, sigma0 0.01), nats.
H_ISOMETRY = math.log(0.01 * math.sqrt(1.5)) + 0.5 * math.log(2 * math.pi * math.e)


def _by(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        out[str(r[key])].append(r)
    return out


def depth_curve(ax: Any, rows: Sequence[Mapping[str, Any]], *, label: str = "", cummax: bool = True,
                relative: bool = True) -> list[Any]:
    """Mean entropy (``entropy_mean``) against depth with its 95 % interval (``ci_low``/``ci_high``) for one
    model's layer summary rows; depth as a fraction of the measured layers when ``relative``."""
    rs = sorted(rows, key=lambda r: int(r["depth"]))
    n = max(len(rs) - 1, 1)
    x = [int(r["depth"]) / n if relative else int(r["depth"]) for r in rs]
    y = [float(r["entropy_mean"]) for r in rs]
    lo = [max(0.0, yy - float(r.get("ci_low", yy))) if math.isfinite(float(r.get("ci_low", yy))) else 0.0
          for yy, r in zip(y, rs)]
    hi = [max(0.0, float(r.get("ci_high", yy)) - yy) if math.isfinite(float(r.get("ci_high", yy))) else 0.0
          for yy, r in zip(y, rs)]
    arts = [ax.errorbar(x, y, yerr=[lo, hi], marker="o", ms=3, capsize=2, label=label)]
    if cummax:
        c = [float(r["entropy_cummax_mean"]) for r in rs]
        arts.extend(ax.plot(x, c, ls="--", lw=1, color=arts[0][0].get_color()))
    return arts


def depth_figure(summary: Sequence[Mapping[str, Any]]):
    """One panel per solver: every model's entropy through depth, with 95 % intervals over images."""
    solvers = _by(summary, "solver") if summary and "solver" in summary[0] else {"": list(summary)}
    fig, axes = subplots(1, len(solvers), width=4.8, height=3.6)
    for ax, (solver, rs) in zip(axes[0], solvers.items()):
        for m, mrs in sorted(_by(rs, "model").items()):
            depth_curve(ax, mrs, label=m)
        ax.axhline(H_ISOMETRY, color="grey", ls=":", lw=1)
        ax.set_xlabel("depth (first to last measured layer)")
        ax.set_ylabel("mean entropy per cell (nats)")
        ax.set_title(f"solver: {solver}" if solver else "", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
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


def gap_figure(rows: Sequence[Mapping[str, Any]]):
    """D4: deepest-layer background - stroke entropy (95 % interval) against test accuracy over the training
    stages, one panel per solver, one line per model."""
    solvers = _by(rows, "solver")
    fig, axes = subplots(1, max(len(solvers), 1), width=4.6, height=3.4)
    for ax, (solver, rs) in zip(axes[0], solvers.items()):
        for m, mrs in sorted(_by(rs, "model").items()):
            mrs = sorted(mrs, key=lambda r: float(r["test_acc"]))
            y = [float(r["gap_mean"]) for r in mrs]
            err = [[max(0.0, yy - float(r["ci_low"])) if math.isfinite(float(r["ci_low"])) else 0.0 for yy, r in zip(y, mrs)],
                   [max(0.0, float(r["ci_high"]) - yy) if math.isfinite(float(r["ci_high"])) else 0.0 for yy, r in zip(y, mrs)]]
            ax.errorbar([float(r["test_acc"]) for r in mrs], y, yerr=err, marker="o", ms=3, capsize=2, label=m)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("test accuracy at the stage")
        ax.set_ylabel("H(background) - H(stroke), nats")
        ax.set_title(f"solver: {solver}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return fig


def reconstruction_figure(summary: Sequence[Mapping[str, Any]]):
    """Per model and solver: reconstruction uncertainty and the decoder's clean error per layer."""
    groups = {(str(r["model"]), str(r.get("solver", ""))): [] for r in summary}
    for r in summary:
        groups[(str(r["model"]), str(r.get("solver", "")))].append(r)
    fig, axes = subplots(1, len(groups), width=3.6, height=3.2)
    for ax, ((m, solver), rs) in zip(axes[0], groups.items()):
        rs = sorted(rs, key=lambda r: int(r["depth"]))
        x = list(range(len(rs)))
        ax.plot(x, [float(r["uncertainty_mean"]) for r in rs], marker="o", label="under the kept noise")
        ax.plot(x, [float(r["clean_mean"]) for r in rs], marker="s", ls="--", label="decoder on clean features")
        ax.set_xticks(x)
        ax.set_xticklabels([str(r["layer"]) for r in rs], rotation=30, fontsize=6)
        ax.set_ylabel("mean log(r^2 + 1e-6)")
        ax.set_title(f"{m} [{solver}]", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return fig
