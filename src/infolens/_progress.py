"""Progress for anything that takes more than a second.

* In a terminal (stderr is a TTY): one bar per run, counting images, with the rate and an ETA (tqdm when
  installed). Loops inside a run (batches, layers, models) do not open bars of their own while a run's
  bar is showing, so the terminal never fills with nested ``0/1`` bars.
* In a log (stderr not a TTY, e.g. a batch job or ``| tee``): one plain line every few seconds
  (``INFOLENS_PROGRESS_INTERVAL``, default 5 s) and one at the end; no carriage returns.
* ``INFOLENS_PROGRESS=0`` or ``--no-progress``: silent.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

_DEPTH = [0]  # bars open in this process; inner loops stay quiet while one shows


def enabled(progress: bool | None = None) -> bool:
    """Progress is on when asked for, unless ``INFOLENS_PROGRESS=0``."""
    if os.environ.get("INFOLENS_PROGRESS", "1") == "0":
        return False
    return True if progress is None else bool(progress)


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("INFOLENS_PROGRESS_INTERVAL", "5")))
    except ValueError:
        return 5.0


def _seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """A run's progress over ``total`` items (images by default): a bar with an ETA in a terminal, a line
    every few seconds in a log. Use as a context manager; :meth:`update` after each batch."""

    def __init__(self, total: int | None, desc: str = "", *, unit: str = "images", progress: bool | None = True,
                 stream: IO[str] | None = None, interval: float | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = _interval() if interval is None else interval
        self.n = 0
        self.t0 = self.last = time.monotonic()
        self.active = enabled(progress) and _DEPTH[0] == 0
        self._bar: Any = None
        if not self.active:
            return
        _DEPTH[0] += 1
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if tty:
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total, desc=desc, unit=f" {unit}" if unit else "it", file=self.stream,
                                 dynamic_ncols=True, mininterval=0.5, leave=True)
            except ImportError:  # the core works without the cli extra: fall back to lines
                self._bar = None

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.active:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line()

    def _line(self, done: bool = False) -> None:
        el = time.monotonic() - self.t0
        what = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        if done:
            tail = f", done in {_seconds(el)}"
        elif self.total and self.n:
            tail = f", {_seconds(el)} elapsed, ETA {_seconds(el * (self.total - self.n) / self.n)}"
        else:
            tail = f", {_seconds(el)} elapsed"
        print(f"{self.desc + ': ' if self.desc else ''}{what} {self.unit}{pct}{tail}", file=self.stream, flush=True)

    def close(self) -> None:
        if not self.active:
            return
        self.active = False
        _DEPTH[0] -= 1
        if self._bar is not None:
            self._bar.close()
        elif self.n:
            self._line(done=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def bar(total: int | None, desc: str = "", *, unit: str = "images", progress: bool | None = True) -> Progress:
    """One bar for a run over ``total`` images (see :class:`Progress`)."""
    return Progress(total, desc, unit=unit, progress=progress)


def track(iterable: Iterable[T], *, desc: str = "", total: int | None = None,
          progress: bool | None = True, unit: str = "") -> Iterator[T]:
    """Yield from ``iterable`` with progress (a bar in a terminal, lines in a log); quiet inside a run's bar."""
    if not enabled(progress) or _DEPTH[0] > 0:
        yield from iterable
        return
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc, unit=unit or "steps", progress=progress) as p:
        for item in iterable:
            yield item
            p.update(1)


def say(msg: str, *, progress: bool | None = True) -> None:
    """One status line on stderr (suppressed with progress off)."""
    if enabled(progress):
        print(msg, file=sys.stderr, flush=True)
