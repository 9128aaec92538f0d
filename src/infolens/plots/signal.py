"""Figures for method 3 (arXiv 1803.08337): reconstructions with their difference from the original, the
cross-classifier accuracy matrix with the order beside it, mean radial power spectra, NMI distributions,
loss curves. Helpers take ``ax`` and return the artist; they draw arrays the runner computed, never run a
model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._base import lines, log_scale

__all__ = ["reconstruction_mosaic", "difference_mosaic", "accuracy_matrix", "order_panel", "spectra",
           "nmi_distributions", "loss_curves"]


def _np(x: Any):
    import numpy as np

    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)


def _canvas(rows: Mapping[str, Any], gap: int, fill: float):
    import numpy as np

    blocks = [_np(v) for v in rows.values()]
    if not blocks:
        raise ValueError("rows is empty; pass at least one label -> images entry")
    k, c, h, w = blocks[0].shape
    if any(b.shape != (k, c, h, w) for b in blocks):
        raise ValueError(f"every row must have shape {(k, c, h, w)}, got {[b.shape for b in blocks]}")
    canvas = np.full((len(blocks) * (h + gap) - gap, k * (w + gap) - gap, c), fill)
    for r, b in enumerate(blocks):
        for j in range(k):
            canvas[r * (h + gap):r * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = np.moveaxis(b[j], 0, -1)
    return canvas, (k, c, h, w)


def _label_rows(ax: Any, labels: Sequence[str], h: int, gap: int, title: str) -> None:
    ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(labels))])
    ax.set_yticklabels(list(labels), fontsize=7)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)


def reconstruction_mosaic(ax: Any, rows: Mapping[str, Any], *, gap: int = 2, title: str = "") -> Any:
    """Tile images into one mosaic: one row per entry of ``rows`` (label -> ``(K, C, H, W)``), the same K
    inputs in every row. Shown on [0, 1] (values outside saturate; the measurements never clip).
    Returns the AxesImage."""
    import numpy as np

    canvas, (k, c, h, w) = _canvas(rows, gap, 1.0)
    canvas = np.clip(canvas, 0, 1)
    art = ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
                    interpolation="nearest")
    _label_rows(ax, list(rows), h, gap, title)
    return art


def difference_mosaic(ax: Any, original: Any, rows: Mapping[str, Any], *, gap: int = 2, title: str = "") -> Any:
    """Reconstruction minus original (label -> ``(K, C, H, W)``; channels averaged), on a diverging scale
    symmetric about 0 (red: brighter than the original, blue: darker). Returns the AxesImage."""
    import numpy as np

    orig = _np(original)
    diffs = {k: (_np(v) - orig).mean(1, keepdims=True) for k, v in rows.items()}
    canvas, (k, c, h, w) = _canvas(diffs, gap, np.nan)
    lim = float(np.nanmax(np.abs(canvas))) or 1.0
    art = ax.imshow(canvas[..., 0], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    _label_rows(ax, [f"{k} - original" for k in rows], h, gap, title)
    ax.figure.colorbar(art, ax=ax, fraction=0.03, pad=0.01).ax.tick_params(labelsize=7)
    return art


def accuracy_matrix(ax: Any, matrix: Any, row_labels: Sequence[str], col_labels: Sequence[str], *,
                    low: Any = None, high: Any = None, title: str = "", vmin: float | None = None,
                    vmax: float = 1.0) -> Any:
    """Heat map of ``matrix[r, c]`` (accuracy of classifier ``c`` on the images of row ``r``), annotated with
    the value and, given ``low``/``high``, its 95 % interval. The colour scale runs from ``vmin`` (default:
    the smallest entry rounded down to 0.05) to ``vmax``."""
    import numpy as np

    m = _np(matrix)
    if m.ndim != 2 or m.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix must have shape ({len(row_labels)}, {len(col_labels)}) to match the labels, "
                         f"got {m.shape}")
    if vmin is None:
        finite = m[np.isfinite(m)]
        vmin = float(np.floor(finite.min() / 0.05) * 0.05) if finite.size else 0.0
        vmin = min(vmin, vmax - 0.05)
    art = ax.imshow(m, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    lo, hi = (_np(low), _np(high)) if low is not None and high is not None else (None, None)
    mid = (vmin + vmax) / 2
    for r in range(m.shape[0]):
        for c in range(m.shape[1]):
            txt = f"{m[r, c]:.3f}" + (f"\n[{lo[r, c]:.3f}, {hi[r, c]:.3f}]" if lo is not None else "")
            ax.text(c, r, txt, ha="center", va="center", fontsize=6, color="black" if m[r, c] > mid else "white")
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels, fontsize=7, rotation=20)
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=7)
    ax.set_xlabel("evaluated by classifier B", fontsize=8)
    ax.set_ylabel("images: plain / AE / AE tuned for A", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    ax.figure.colorbar(art, ax=ax, fraction=0.05, pad=0.02).ax.tick_params(labelsize=7)
    return art


def order_panel(ax: Any, ranking: Sequence[str], wins: Mapping[str, int], *, total: bool, extra: Mapping[str, str]
                | None = None, title: str = "order (more signal at the top)") -> list[Any]:
    """The order drawn as a column: most signal at the top, each name with its wins (pairs decided in its
    favour) and an optional extra note (e.g. accuracy, parameters); '>' between neighbours when the order
    is total, '?' otherwise. Returns the Text artists."""
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, len(ranking) - 0.5)
    ax.invert_yaxis()
    ax.axis("off")
    arts = []
    for i, nm in enumerate(ranking):
        note = f"  ({extra[nm]})" if extra and nm in extra else ""
        arts.append(ax.text(0.02, i, f"{i + 1}. {nm}: {wins.get(nm, 0)} wins{note}", fontsize=7, va="center"))
        if i + 1 < len(ranking):
            arts.append(ax.text(0.02, i + 0.5, "   >" if total else "   ?", fontsize=7, va="center", color="gray"))
    ax.set_title(title + ("" if total else " - not total"), fontsize=8)
    return arts


def spectra(ax: Any, frequencies: Any, profiles: Mapping[str, Any], *, title: str = "") -> list[Any]:
    """Mean radial power spectra (label -> values per ring) against frequency (fraction of Nyquist), log y."""
    return lines(ax, _np(frequencies), {k: _np(v) for k, v in profiles.items()}, xlabel="frequency / Nyquist",
                 ylabel="mean power", title=title, logy=True, marker=None)


def nmi_distributions(ax: Any, values: Mapping[str, Any], *, chance: Mapping[str, Any] | None = None,
                      title: str = "", ylabel: str = "NMI (original, reconstruction)") -> Any:
    """Per-image NMI of each autoencoder (label -> ``(N,)``) as box plots, with the pixel-permuted chance
    level of each as a grey marker. Returns the boxplot dict."""
    import numpy as np

    labels = list(values)
    data = [_np(v)[np.isfinite(_np(v))] for v in values.values()]
    art = ax.boxplot(data, showfliers=False, whis=(5, 95))
    if chance:
        ax.plot(range(1, len(labels) + 1), [float(np.nanmean(_np(chance[k]))) for k in labels], "x", color="gray",
                label="chance (pixels permuted)")
        ax.legend(fontsize=7)
    ax.set_xticks(range(1, len(labels) + 1))
    ax.set_xticklabels(labels, fontsize=7, rotation=20)
    ax.set_ylabel(ylabel, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return art


def loss_curves(ax: Any, curves: Mapping[str, tuple[Any, Any]], *, xlabel: str = "step", ylabel: str = "held-out loss",
                title: str = "", logy: bool = True) -> list[Any]:
    """Loss curves (label -> (steps, values)), one line each, log y by default. Returns the Line2D artists."""
    arts = []
    for label, (x, y) in curves.items():
        arts.extend(ax.plot(_np(x), _np(y), marker="o", ms=2, label=str(label)))
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if logy:
        log_scale(ax, "y")
    if title:
        ax.set_title(title, fontsize=9)
    if curves:
        ax.legend(fontsize=6)
    return arts
