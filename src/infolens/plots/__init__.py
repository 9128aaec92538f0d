"""Figures from result tables (never from models). One module per analysis; helpers take ``ax=`` and
return the artist, librosa ``specshow``-style. matplotlib is imported lazily (the ``report`` extra).

(``../shared/DESIGN.md`` names a single ``plots.py``; it is a sub-package so that each method keeps its
figures in its own module, with the same import path ``infolens.plots``.)
"""

from ._base import image, lines, log_scale, pyplot, subplots

__all__ = ["image", "lines", "log_scale", "pyplot", "subplots"]
