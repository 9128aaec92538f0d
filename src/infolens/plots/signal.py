"""Figures for method 3 (arXiv 1803.08337): reconstructions side by side, the cross-classifier accuracy
matrix, mean radial power spectra. Helpers take ``ax`` and return the artist; they draw arrays that the
runner computed, never run a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import lines

__all__ = ["reconstruction_mosaic", "accuracy_matrix", "spectra"]


def _np(x: Any):
    import numpy as np

    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)


def reconstruction_mosaic(ax: Any, rows: Mapping[str, Any], *, gap: int = 2, title: str = "") -> Any:
    """Tile images into one mosaic: one row per entry of ``rows`` (label -> ``(K, C, H, W)`` in [0, 1]),
    the same K inputs in every row, so a column shows one input through every autoencoder. Values are
    clipped to [0, 1] for display (reconstructions may leave that range). Returns the AxesImage."""
    import numpy as np

    blocks = [_np(v) for v in rows.values()]
    if not blocks:
        raise ValueError("rows is empty; pass at least one label -> images entry")
    k, c, h, w = blocks[0].shape
    if any(b.shape != (k, c, h, w) for b in blocks):
        raise ValueError(f"every row must have shape {(k, c, h, w)}, got {[b.shape for b in blocks]}")
    canvas = np.ones((len(blocks) * (h + gap) - gap, k * (w + gap) - gap, c))
    for r, b in enumerate(blocks):
        for j in range(k):
            canvas[r * (h + gap):r * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = np.moveaxis(b[j], 0, -1)
    canvas = np.clip(canvas, 0, 1)
    art = ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
                    interpolation="nearest")
    ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(blocks))])
    ax.set_yticklabels(list(rows), fontsize=7)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return art


def accuracy_matrix(ax: Any, matrix: Any, row_labels: Sequence[str], col_labels: Sequence[str], *,
                    title: str = "", fmt: str = "{:.3f}", vmin: float | None = None, vmax: float = 1.0) -> Any:
    """Heat map of ``matrix[r, c]`` (accuracy of classifier ``c`` on the images of row ``r``), annotated.

    The colour scale runs from ``vmin`` (default: the smallest entry rounded down to 0.05, so that
    differences of a few points among accuracies near 1 stay visible) to ``vmax``."""
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
    mid = (vmin + vmax) / 2
    for r in range(m.shape[0]):
        for c in range(m.shape[1]):
            ax.text(c, r, fmt.format(m[r, c]), ha="center", va="center", fontsize=7,
                    color="black" if m[r, c] > mid else "white")
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


def spectra(ax: Any, frequencies: Any, profiles: Mapping[str, Any], *, title: str = "") -> list[Any]:
    """Mean radial power spectra (label -> values per ring) against frequency (fraction of Nyquist), log y."""
    arts = lines(ax, _np(frequencies), {k: _np(v) for k, v in profiles.items()}, xlabel="frequency / Nyquist",
                 ylabel="mean power", title=title, logy=True, marker=None)
    return arts
