"""Figures from result tables (never from models). One module per analysis; helpers take ``ax=`` and
return the artist, librosa ``specshow``-style. matplotlib is imported lazily (the ``report`` extra).

(A sub-package rather than a single ``plots.py``, so that each method keeps its figures in its own
module, all under the one import path ``infolens.plots``; ``docs/design.md``.)
"""

from ._base import image, lines, log_scale, pyplot, subplots

__all__ = ["image", "lines", "log_scale", "pyplot", "subplots"]
