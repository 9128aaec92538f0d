"""Progress: no stage silent while one step runs long, the size of the work and a first-batch estimate before
it, and an interrupted bar that says where it stopped (never "done")."""

from __future__ import annotations

import io
import threading
import time

import pytest

from infolens import _progress


@pytest.fixture(autouse=True)
def _on(monkeypatch):
    monkeypatch.setenv("INFOLENS_PROGRESS", "1")


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def _wait_for(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.01)


def test_a_long_step_is_not_silent():
    """One step that takes many intervals (a decoder training, a batch of masks) still prints lines: the
    heartbeat repeats the bar's line with the elapsed time while no update comes."""
    log = _Log()
    release = threading.Event()
    with _progress.Progress(3, "decoders mnist_vgg", unit="layers", stream=log, interval=0.05) as p:
        _wait_for(lambda: log.getvalue().count("\n") >= 3)  # no update at all: the step is still running
        lines = log.getvalue().splitlines()
        release.set()
        p.update(3)
    assert len(lines) >= 3
    assert all(line.startswith("decoders mnist_vgg: 0/3 layers (0%), ") and line.endswith("elapsed")
               for line in lines), lines


def test_a_stage_of_unknown_length_beats_and_ends_with_done():
    log = _Log()
    with _progress.Progress(None, "cut-off mnist_vgg", unit="", stream=log, interval=0.05,
                            work="maps of 64 held-out images x 7 methods"):
        _wait_for(lambda: log.getvalue().count("\n") >= 3)
    lines = log.getvalue().splitlines()
    assert lines[0] == "cut-off mnist_vgg: maps of 64 held-out images x 7 methods"
    assert lines[1].startswith("cut-off mnist_vgg: working, ") and lines[1].endswith("elapsed")
    assert lines[-1].startswith("cut-off mnist_vgg: working, done in ")


def test_work_and_a_rough_time_from_the_first_batch(monkeypatch):
    """The size of the work first, then, once the first batch is measured, the time for the rest: the first
    batch's time x the batches left (here 4 s x 9 = 36 s)."""
    clock = [1000.0]
    monkeypatch.setattr(_progress.time, "monotonic", lambda: clock[0])
    log = _Log()
    with _progress.Progress(10, "attribution mnist_vgg", unit="batches", stream=log, interval=0,
                            work="640 images x 10 methods x 3 metrics") as p:
        clock[0] += 4.0
        p.update(1)
        clock[0] += 1.0
        p.update(9)
    lines = log.getvalue().splitlines()
    assert lines[0] == "attribution mnist_vgg: 640 images x 10 methods x 3 metrics"
    assert lines[1] == "attribution mnist_vgg: 1 of 10 batches took 0:04: about 0:36 more for the rest"
    assert lines[-1] == "attribution mnist_vgg: 10/10 batches (100%), done in 0:05"


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_bar_says_stopped_never_done(exc):
    log = _Log()
    with pytest.raises(exc):
        with _progress.Progress(8, "srop mnist_vgg", stream=log, interval=60) as p:
            p.update(3)
            raise exc()
    text = log.getvalue()
    assert "done" not in text
    assert text.splitlines()[-1].startswith("srop mnist_vgg: 3/8 images (38%), stopped after ")
    assert _progress._DEPTH[0] == 0


def test_an_interrupted_track_says_stopped():
    log = _Log()
    monkey_stream = _progress.sys.stderr
    try:
        _progress.sys.stderr = log
        with pytest.raises(KeyboardInterrupt):
            for i in _progress.track(range(5), desc="layers"):
                if i == 2:
                    raise KeyboardInterrupt
    finally:
        _progress.sys.stderr = monkey_stream
    assert "done" not in log.getvalue() and "layers: 2/5 steps (40%), stopped after" in log.getvalue()


def test_heartbeat_stops_with_the_bar():
    log = _Log()
    with _progress.Progress(2, "x", stream=log, interval=0.02) as p:
        p.update(2)
    n = len(log.getvalue())
    time.sleep(0.1)
    assert len(log.getvalue()) == n
    assert not [t for t in threading.enumerate() if t.name == "infolens-progress"]


def test_progress_off_prints_nothing(monkeypatch):
    monkeypatch.setenv("INFOLENS_PROGRESS", "0")
    log = _Log()
    with _progress.Progress(2, "x", stream=log, interval=0.01, work="2 images") as p:
        time.sleep(0.05)
        p.update(2)
    assert log.getvalue() == ""
