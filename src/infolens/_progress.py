"""Progress for anything that takes more than a second.

* In a terminal (stderr is a TTY): one bar per run, counting images, with the rate and an ETA (tqdm when
  installed). Loops inside a run (batches, layers, models) do not open bars of their own while a run's
  bar is showing, so the terminal never fills with nested ``0/1`` bars.
* In a log (stderr not a TTY, e.g. a batch job or ``| tee``): one plain line every few seconds
  (``INFOLENS_PROGRESS_INTERVAL``, default 5 s) and one at the end; no carriage returns.
* No stage is silent: while a bar is open, a heartbeat prints its line (or refreshes the bar's clock) every
  interval even when one step takes minutes (a decoder's training, a batch of Sobol masks); opaque steps
  outside any bar open a :func:`stage`.
* Before long work, the size of the work (``work=``, e.g. "64 images x 10 methods x 3 metrics") and, once the
  first step is measured, a rough time for the rest.
* An interrupted bar says where it stopped, never "done".
* ``INFOLENS_PROGRESS=0`` or ``--no-progress``: silent.
"""

from __future__ import annotations

import os
import sys
import threading
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
                 stream: IO[str] | None = None, interval: float | None = None, work: str | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = _interval() if interval is None else interval
        self.n = 0
        self.t0 = self.last = time.monotonic()
        self.active = enabled(progress) and _DEPTH[0] == 0
        self._bar: Any = None
        self._lock = threading.RLock()  # re-entrant: an interrupt inside a write still closes the bar
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._printed = False
        self._estimated = False
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
        if work:
            self._write(f"{self.desc + ': ' if self.desc else ''}{work}")
        if self.interval > 0:
            self._beat = threading.Thread(target=self._heartbeat, name="infolens-progress", daemon=True)
            self._beat.start()

    def _write(self, msg: str) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.write(msg, file=self.stream)
            else:
                print(msg, file=self.stream, flush=True)
            self._printed = True

    def _heartbeat(self) -> None:
        """Every interval without an update: the line again (log) or the bar's clock refreshed (terminal)."""
        while not self._stop.wait(self.interval):
            if not self.active:
                return
            if time.monotonic() - self.last < self.interval:
                continue
            try:
                with self._lock:
                    if not self.active:
                        return
                    self.last = time.monotonic()
                    if self._bar is not None:
                        self._bar.refresh()
                    else:
                        self._line()
            except (OSError, ValueError):  # the stream went away (closed pipe): stop beating
                return

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.active:
            return
        if not self._estimated and self.total and 0 < self.n < self.total:
            self._estimated = True
            el = time.monotonic() - self.t0
            if el >= 1.0:  # a rough time for the rest, from the first measured step
                self._write(f"{self.desc + ': ' if self.desc else ''}{self.n} of {self.total} {self.unit} took "
                            f"{_seconds(el)}: about {_seconds(el * (self.total - self.n) / self.n)} more for the rest")
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.interval:
            with self._lock:
                self.last = now
                self._line()

    def _line(self, done: bool = False, stopped: bool = False) -> None:
        el = time.monotonic() - self.t0
        what = f"{self.n}/{self.total} " if self.total else (f"{self.n} " if self.n else "")
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        if stopped:
            tail = f", stopped after {_seconds(el)} (not finished)"
        elif done:
            tail = f", done in {_seconds(el)}"
        elif self.total and self.n:
            tail = f", {_seconds(el)} elapsed, ETA {_seconds(el * (self.total - self.n) / self.n)}"
        else:
            tail = f", {_seconds(el)} elapsed"
        unit = self.unit if (self.total or self.n) else "working"
        print(f"{self.desc + ': ' if self.desc else ''}{what}{unit}{pct}{tail}", file=self.stream, flush=True)
        self._printed = True

    def close(self, *, stopped: bool = False) -> None:
        """End the bar: a last line "done in ..." (or, ``stopped``, where it stopped; never "done")."""
        if not self.active:
            return
        self._stop.set()
        with self._lock:
            self.active = False
            _DEPTH[0] -= 1
            if self._bar is not None:
                self._bar.close()
            elif self.n or self._printed or stopped:
                try:
                    self._line(done=not stopped, stopped=stopped)
                except (OSError, ValueError):
                    pass

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(stopped=exc_type is not None)


def bar(total: int | None, desc: str = "", *, unit: str = "images", progress: bool | None = True) -> Progress:
    """One bar for a run over ``total`` images (see :class:`Progress`)."""
    return Progress(total, desc, unit=unit, progress=progress)


def stage(desc: str, *, progress: bool | None = True, work: str | None = None) -> Progress:
    """An opaque step of unknown length (``with stage("cut-off mnist_vgg: maps of 64 held-out images"): ...``):
    a line every few seconds while it runs and "done in" at its end; quiet inside a run's bar (whose own
    heartbeat keeps going)."""
    return Progress(None, desc, unit="", progress=progress, work=work)


def track(iterable: Iterable[T], *, desc: str = "", total: int | None = None,
          progress: bool | None = True, unit: str = "", work: str | None = None) -> Iterator[T]:
    """Yield from ``iterable`` with progress (a bar in a terminal, lines in a log); quiet inside a run's bar.
    ``work`` (e.g. "4 images x 5 layers") is printed first."""
    if not enabled(progress) or _DEPTH[0] > 0:
        yield from iterable
        return
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc, unit=unit or "steps", progress=progress, work=work) as p:
        for item in iterable:
            yield item
            p.update(1)


def say(msg: str, *, progress: bool | None = True) -> None:
    """One status line on stderr (suppressed with progress off)."""
    if enabled(progress):
        print(msg, file=sys.stderr, flush=True)
