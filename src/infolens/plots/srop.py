"""SROP figures from result tables (never from models): per-layer SROP profiles by variant, per-layer
distributions (box plots from the aggregated quantiles), and the training-stage view beside accuracy.

Rows are those of the ``layers`` and ``summary`` tables written by ``infolens.experiments.srop``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._base import log_scale, subplots


def _models(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(r["model"]) for r in rows))


def _short(name: str, width: int = 14) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def layer_profile(ax: Any, rows: Sequence[Mapping[str, Any]], *, stat: str = "mean", band: bool = True,
                  input_pixels: bool = False, title: str = "") -> list[Any]:
    """One line per variant (in ``step`` order): ``stat`` of the channel SROPs against layer depth.

    ``band`` shades the mean per-image interquartile range; ``input_pixels`` adds dashed lines in cycles
    per input pixel (``mean_input``). Returns the Line2D artists.
    """
    variants = sorted({(int(r["step"]), str(r["variant"])) for r in rows})
    arts: list[Any] = []
    names: dict[int, str] = {}
    for _, v in variants:
        rs = sorted((r for r in rows if str(r["variant"]) == v), key=lambda r: int(r["depth"]))
        x = [int(r["depth"]) for r in rs]
        names.update({int(r["depth"]): str(r["layer"]) for r in rs})
        (line,) = ax.plot(x, [float(r[stat]) for r in rs], marker="o", ms=3, label=v)
        arts.append(line)
        if band and rs and "q25" in rs[0]:
            ax.fill_between(x, [float(r["q25"]) for r in rs], [float(r["q75"]) for r in rs], alpha=0.12,
                            color=line.get_color())
        if input_pixels:
            arts.extend(ax.plot(x, [float(r["mean_input"]) for r in rs], ls="--", color=line.get_color(),
                                label=f"{v} (per input pixel)"))
    ax.set_xticks(sorted(names))
    ax.set_xticklabels([_short(names[d]) for d in sorted(names)], rotation=60, ha="right", fontsize=6)
    ax.set_ylabel(f"{stat} SROP / Nyquist")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    if len(arts) > 1:
        ax.legend(fontsize=6, ncol=2 if len(arts) > 6 else 1)
    return arts


def profile_figure(rows: Sequence[Mapping[str, Any]], *, check: str, band: bool = True,
                   input_pixels: bool = False):
    """One :func:`layer_profile` panel per model for the rows of ``check``."""
    rows = [r for r in rows if r["check"] == check]
    models = _models(rows)
    fig, axes = subplots(1, len(models), width=4.2, height=3.4)
    for j, m in enumerate(models):
        layer_profile(axes[0, j], [r for r in rows if r["model"] == m], band=band, input_pixels=input_pixels,
                      title=m)
    return fig


def layer_boxes(ax: Any, rows: Sequence[Mapping[str, Any]], *, positions: Sequence[float] | None = None,
                color: str | None = None, width: float = 0.35, label: str | None = None) -> dict:
    """Box plots of the channel-SROP distribution per layer from the aggregated quantiles: box q25-q75,
    median line, whiskers q10-q90, a dot at the mean (``ax.bxp``; no raw values needed)."""
    rs = sorted(rows, key=lambda r: int(r["depth"]))
    stats = [{"med": float(r["median"]), "q1": float(r["q25"]), "q3": float(r["q75"]), "whislo": float(r["q10"]),
              "whishi": float(r["q90"]), "mean": float(r["mean"]), "fliers": [], "label": ""} for r in rs]
    pos = list(positions) if positions is not None else [int(r["depth"]) for r in rs]
    props = {"facecolor": color, "alpha": 0.5} if color else {}
    art = ax.bxp(stats, positions=pos, widths=width, showmeans=True, patch_artist=True, boxprops=props,
                 meanprops={"marker": "o", "markersize": 3, "markerfacecolor": "black", "markeredgecolor": "none"},
                 medianprops={"color": "black"}, manage_ticks=False)
    if label and art["boxes"]:
        art["boxes"][0].set_label(label)
    return art


def architecture_figure(rows: Sequence[Mapping[str, Any]]):
    """Per model: trained and randomly initialised distributions side by side, layer by layer."""
    rows = [r for r in rows if r["check"] == "architecture"]
    models = _models(rows)
    fig, axes = subplots(1, len(models), width=4.2, height=3.4, sharey=True)
    colors = {"trained": "tab:blue", "random init": "tab:orange"}
    for j, m in enumerate(models):
        ax = axes[0, j]
        mine = [r for r in rows if r["model"] == m]
        depths = sorted({int(r["depth"]) for r in mine})
        names = {int(r["depth"]): str(r["layer"]) for r in mine}
        for k, (variant, color) in enumerate(colors.items()):
            rs = [r for r in mine if r["variant"] == variant]
            if rs:
                layer_boxes(ax, rs, positions=[int(r["depth"]) + (k - 0.5) * 0.38 for r in
                                               sorted(rs, key=lambda r: int(r["depth"]))], color=color, label=variant)
        ax.set_xticks(depths)
        ax.set_xticklabels([_short(names[d]) for d in depths], rotation=60, ha="right", fontsize=6)
        ax.set_title(m, fontsize=10)
        ax.set_ylabel("channel SROP / Nyquist")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def training_figure(summary: Sequence[Mapping[str, Any]], correlations: Sequence[Mapping[str, Any]] = ()):
    """Top: mean SROP (over layers) and test accuracy against the epoch; bottom: SROP against accuracy."""
    rows = [r for r in summary if r["check"] == "training"]
    models = _models(rows)
    fig, axes = subplots(2, len(models), width=3.8, height=2.9)
    for j, m in enumerate(models):
        rs = sorted((r for r in rows if r["model"] == m), key=lambda r: int(r["step"]))
        ep = [float(r["epoch"]) for r in rs]
        srop = [float(r["srop_mean"]) for r in rs]
        acc = [float(r["test_acc"]) for r in rs]
        ax = axes[0, j]
        ax.plot(ep, srop, marker="o", ms=3, color="tab:blue", label="mean SROP")
        log_scale(ax, "x", "symlog", linthresh=0.02)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean SROP / Nyquist", color="tab:blue")
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
        tw = ax.twinx()
        tw.plot(ep, acc, marker="s", ms=3, color="tab:red", label="test accuracy")
        tw.set_ylabel("test accuracy", color="tab:red")
        ax2 = axes[1, j]
        ax2.scatter(acc, srop, s=14, c=range(len(rs)), cmap="viridis")
        pick = {c.get("stages", "all"): c for c in correlations if c["model"] == m and
                c["layer"] == "mean over layers" and c["statistic"] == "mean"}
        ax2.set_title("; ".join(f"{k}: r = {float(c['pearson']):.2f}, rho = {float(c['spearman']):.2f}"
                                for k, c in pick.items()) or m, fontsize=7)
        ax2.set_xlabel("test accuracy")
        ax2.set_ylabel("mean SROP / Nyquist")
        ax2.grid(alpha=0.3)
    return fig


# --------------------------------------------------------------------------- claims S1-S3


def _grid_keys(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    return _models(rows), list(dict.fromkeys(str(r["at"]) for r in rows))


def quantile_bands(ax: Any, rows: Sequence[Mapping[str, Any]], *, variants: Sequence[str],
                   labels: Mapping[str, str] | None = None) -> list[Any]:
    """One median line with a 25-75 % band per variant against layer depth (rows of the ``distributions``
    table of the claims run: model, at, variant, layer, depth, q10..q90). Returns the Line2D artists."""
    arts = []
    names: dict[int, str] = {}
    for v in variants:
        rs = sorted((r for r in rows if str(r["variant"]) == v), key=lambda r: int(r["depth"]))
        if not rs:
            continue
        x = [int(r["depth"]) for r in rs]
        names.update({int(r["depth"]): str(r["layer"]) for r in rs})
        (line,) = ax.plot(x, [float(r["median"]) for r in rs], marker="o", ms=2.5, lw=1.2,
                          label=(labels or {}).get(v, v))
        ax.fill_between(x, [float(r["q25"]) for r in rs], [float(r["q75"]) for r in rs], alpha=0.15,
                        color=line.get_color())
        arts.append(line)
    ticks = sorted(names)
    step = max(1, len(ticks) // 12)
    ax.set_xticks(ticks[::step])
    ax.set_xticklabels([_short(names[d]) for d in ticks[::step]], rotation=60, ha="right", fontsize=5)
    ax.grid(alpha=0.3)
    return arts


def claims_distribution_figure(rows: Sequence[Mapping[str, Any]], *, variants: Sequence[str],
                               labels: Mapping[str, str] | None = None):
    """S1 / S2: per model (rows) and measurement point (columns), :func:`quantile_bands` of ``variants``."""
    models, points = _grid_keys(rows)
    fig, axes = subplots(len(models), len(points), width=3.4, height=2.4, sharey="row")
    for i, m in enumerate(models):
        for j, at in enumerate(points):
            ax = axes[i, j]
            quantile_bands(ax, [r for r in rows if r["model"] == m and r["at"] == at], variants=variants,
                           labels=labels)
            ax.set_title(f"{m} @{at}", fontsize=8)
            if j == 0:
                ax.set_ylabel("SROP / Nyquist", fontsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=6)
    return fig


def claims_stage_figure(rows: Sequence[Mapping[str, Any]]):
    """S3: per model (rows) and point (columns), mean SROP per layer (thin) and averaged (thick) against the
    stage, with test accuracy (dashed, right axis). Rows of the ``s3_stages`` table."""
    models, points = _grid_keys(rows)
    fig, axes = subplots(len(models), len(points), width=3.4, height=2.4)
    for i, m in enumerate(models):
        for j, at in enumerate(points):
            ax = axes[i, j]
            mine = [r for r in rows if r["model"] == m and r["at"] == at]
            stages = sorted({(int(r["stage"]), float(r["epoch"]), float(r["test_acc"])) for r in mine})
            x = [s for s, _, _ in stages]
            for layer in dict.fromkeys(str(r["layer"]) for r in mine):
                rs = sorted((r for r in mine if r["layer"] == layer), key=lambda r: int(r["stage"]))
                avg = layer == "mean over layers"
                ax.plot([int(r["stage"]) for r in rs], [float(r["srop_mean"]) for r in rs],
                        lw=2.2 if avg else 0.7, color="black" if avg else None, alpha=1 if avg else 0.6,
                        label="mean over layers" if avg else None)
            ax.set_xticks(x)
            ax.set_xticklabels([f"{e:g}" for _, e, _ in stages], rotation=60, fontsize=5)
            ax.set_title(f"{m} @{at}", fontsize=8)
            ax.grid(alpha=0.3)
            tw = ax.twinx()
            tw.plot(x, [a for _, _, a in stages], ls="--", marker="s", ms=2, color="tab:red")
            tw.tick_params(labelsize=6, colors="tab:red")
            if j == 0:
                ax.set_ylabel("mean SROP / Nyquist", fontsize=7)
            if i == len(models) - 1:
                ax.set_xlabel("epoch", fontsize=7)
    return fig
