"""Progress bars for anything that takes more than a second: tqdm when installed, else silent."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled(progress: bool | None = None) -> bool:
    """Progress is on when asked for, unless ``INFOLENS_PROGRESS=0``."""
    if os.environ.get("INFOLENS_PROGRESS", "1") == "0":
        return False
    return True if progress is None else bool(progress)


def track(iterable: Iterable[T], *, desc: str = "", total: int | None = None,
          progress: bool | None = True) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar on stderr (tqdm), or return it unchanged."""
    if not enabled(progress):
        yield from iterable
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the core works without the cli extra
        yield from iterable
        return
    yield from tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False,
                    dynamic_ncols=True, mininterval=0.5)


def say(msg: str, *, progress: bool | None = True) -> None:
    """One status line on stderr (suppressed with progress off)."""
    if enabled(progress):
        print(msg, file=sys.stderr, flush=True)
