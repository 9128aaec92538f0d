"""The shared figure helpers: matplotlib loaded lazily on the Agg backend, sized grids, plain log
ticks, line and image panels (re-exported by :mod:`infolens.plots`)."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, or a one-line error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        # labels carry user text (layer names, class folders): a "$" there must stay a dollar sign, not
        # start mathtext (which fails on an unmatched "$" when the figure is drawn)
        matplotlib.rcParams["text.parse_math"] = False
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("figures need matplotlib: pip install 'infolens[report]'") from exc
    return plt


def log_scale(ax: Any, axis: str = "y", scale: str = "log", **kw: Any) -> None:
    """Set a log (or ``symlog``) scale on ``axis`` with plain tick labels ("0.01", "0.026", "6e-05"), three
    significant digits: matplotlib's default log labels are mathtext, which :func:`pyplot` turns off (they
    would print as ``$\\mathdefault{10^{-2}}$``). Which ticks get a label is matplotlib's own choice."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def __call__(self, x: float, pos: Any = None) -> str:
            return self.fix_minus(f"{x:.3g}") if super().__call__(x, pos) else ""

    getattr(ax, f"set_{axis}scale")(scale, **kw)
    a = getattr(ax, f"{axis}axis")
    a.set_major_formatter(Plain(labelOnlyBase=False))
    a.set_minor_formatter(Plain(labelOnlyBase=False))


def subplots(nrows: int = 1, ncols: int = 1, *, width: float = 4.0, height: float = 3.2, **kw: Any):
    """A figure with a grid of axes sized per panel (inches)."""
    plt = pyplot()
    kw.setdefault("squeeze", False)
    kw.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kw)


def lines(ax: Any, x: Any, ys: dict[str, Any], *, xlabel: str = "", ylabel: str = "", title: str = "",
          logx: bool = False, logy: bool = False, marker: str | None = "o") -> list[Any]:
    """One line per entry of ``ys`` (label -> values) against ``x``; returns the Line2D artists."""
    artists = []
    for label, y in ys.items():
        artists.extend(ax.plot(x, y, marker=marker, ms=3, label=str(label)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if logx:
        log_scale(ax, "x")
    if logy:
        log_scale(ax, "y")
    if len(ys) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return artists


def image(ax: Any, img: Any, *, title: str = "", cmap: str | None = None, overlay: Any = None,
          alpha: float = 0.55, vmin: float | None = None, vmax: float | None = None) -> Any:
    """Show an image (C,H,W or H,W tensor/array in [0,1]) with an optional heat-map overlay."""
    import numpy as np

    arr = np.asarray(img.detach().cpu() if hasattr(img, "detach") else img, dtype=float)
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    art = ax.imshow(np.clip(arr, 0, 1), cmap=cmap or ("gray" if arr.ndim == 2 else None))
    if overlay is not None:
        ov = np.asarray(overlay.detach().cpu() if hasattr(overlay, "detach") else overlay, dtype=float)
        art = ax.imshow(ov, cmap="inferno", alpha=alpha, vmin=vmin, vmax=vmax,
                        extent=(-0.5, arr.shape[1] - 0.5, arr.shape[0] - 0.5, -0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return art
