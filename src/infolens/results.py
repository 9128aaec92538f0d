"""Result folders: tidy tables, metadata, figures; atomic writes and resume of interrupted runs.

A run writes one folder::

    RUN/
      meta.json            versions, device, seed, every parameter, model identity, timings
      tables/NAME.csv      tidy tables (one row per image x layer x method x parameter)
      parts/NAME/KEY.csv   finished units of work (resume; one per shard, batch or model)
      figures/NAME.png     figures made from the tables
      summary.json         the headline numbers the report shows first

Every file is written atomically (:mod:`infolens._io`: a temporary name in the same folder, then a
rename), so a killed run never leaves a half-written file, with the mode the umask gives. A folder is locked (``flock`` on
``.infolens.lock``) by the process that opened it as a :class:`RunDir` until that process ends or calls
:meth:`RunDir.close`: a second run into the same folder stops at once with the holder's PID, and the
parameters are compared and ``meta.json`` written under the lock, so two runs can never mix their parts. A run started again with the same parameters skips the
units whose part files exist; :meth:`RunDir.merge` joins the parts into the final table, sorted, so
an interrupted-and-resumed run and an uninterrupted one give identical tables. Tables are CSV, read
by ``pandas.read_csv``; the core writes them with the standard library (no pandas needed).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import platform
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write_bytes, atomic_write_text, file_sha256, read_csv, write_csv

__all__ = [
    "write_csv",
    "read_csv",
    "environment",
    "RunDir",
    "FolderLocked",
    "lock_folder",
    "unlock_folder",
    "save_claim_figure",
    "file_sha256",
    "files_fingerprint",
    "input_fingerprint",
    "FINGERPRINT_KEYS",
]


def environment(device: torch.device | str | None = None) -> dict[str, Any]:
    """Versions and machine facts recorded in every ``meta.json``."""
    from ._version import __version__

    env: dict[str, Any] = {
        "infolens": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        import numpy

        env["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover
        pass
    if device is not None:
        env["device"] = str(device)
        if str(device).startswith("cuda") and torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        try:
            return obj.item()
        except (ValueError, AttributeError):
            pass
    return repr(obj)


LOCK_NAME = ".infolens.lock"
_LOCKS: dict[str, int] = {}  # resolved folder -> descriptor of its lock file, held by this process
_LOCKS_GUARD = threading.Lock()


class FolderLocked(RuntimeError):
    """Another process is writing into the result folder."""


def lock_folder(root: str | os.PathLike) -> Path:
    """Take the exclusive lock of result folder ``root`` (created if missing) for this process.

    The lock is ``flock`` on ``ROOT/.infolens.lock`` (which records the holder's PID); it is released when
    the process ends (even by ``kill -9``) or by :func:`unlock_folder`. Taking it again in the same
    process is a no-op. Raises :class:`FolderLocked` naming the holder's PID when another process has it.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    key = str(root.resolve())
    with _LOCKS_GUARD:
        if key in _LOCKS:
            return root
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks, run unguarded
            return root
        path = root / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise FolderLocked(
                f"result folder {root} is in use by another infolens run (PID {holder}); wait for it to end "
                f"or choose another --out folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _LOCKS[key] = fd
    return root


def unlock_folder(root: str | os.PathLike) -> None:
    """Release this process's lock on ``root`` (nothing happens if it holds none)."""
    key = str(Path(root).resolve())
    with _LOCKS_GUARD:
        fd = _LOCKS.pop(key, None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


class RunDir:
    """One result folder: parameters fixed at creation, parts for resume, tables, figures, metadata.

    Parameters
    ----------
    root : the folder (created if missing).
    analysis : what wrote it (``"srop"``, ``"forgrad"``, ...); the report uses it as the section key.
    params : every parameter that determines the numbers. A folder that already holds a run with other
        parameters is refused (pass ``overwrite=True`` to start it afresh), so resumed parts always
        belong to the same computation.
    title, description : shown by the report.
    writer : whether this process writes ``meta.json`` and ``summary.json`` and holds the folder's lock.
        Under torchrun the caller passes ``infolens.distributed.is_main()`` (rank 0 writes for the whole
        world); every process writes its own part files.

    The folder is locked for this process first (:func:`lock_folder`; a second process gets
    :class:`FolderLocked` naming the holder's PID), then the parameters are compared and ``meta.json``
    written, all under the lock. Only the ``writer`` (rank 0 under torchrun) takes the lock and writes the
    metadata.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     run = RunDir(tmp, analysis="demo", params={"n": 3})
    ...     path = run.write_table("squares", [{"index": i, "sq": i * i} for i in range(3)])
    ...     [r["sq"] for r in read_csv(path)]
    [0, 1, 4]
    """

    def __init__(self, root: str | os.PathLike, *, analysis: str, params: Mapping[str, Any],
                 title: str | None = None, description: str = "", seed: int | None = None,
                 device: torch.device | str | None = None, overwrite: bool = False,
                 writer: bool = True) -> None:
        self.root = Path(root)
        self.analysis = analysis
        self.params = _jsonable(dict(params))
        self.writer = bool(writer)
        if self.writer:
            lock_folder(self.root)
        meta_path = self.root / "meta.json"
        if meta_path.is_file():
            try:
                old = json.loads(meta_path.read_text())
            except ValueError as exc:
                raise ValueError(f"{meta_path} is not valid JSON ({exc}); delete it or pass --overwrite") from None
            if (old.get("params") != self.params or old.get("analysis") != analysis) and not overwrite:
                diff = sorted(k for k in set(old.get("params", {})) | set(self.params)
                              if old.get("params", {}).get(k) != self.params.get(k))
                changed = [FINGERPRINT_KEYS[k] for k in diff if k in FINGERPRINT_KEYS]
                why = f"; since it was made, {' and '.join(changed)} changed" if changed else ""
                raise ValueError(
                    f"result folder {self.root} holds a {old.get('analysis')} run with other parameters "
                    f"(differing: {', '.join(diff) or 'analysis'}){why}; choose another --out folder or pass "
                    f"--overwrite")
            if overwrite and old.get("params") != self.params:
                import shutil

                for sub in ("parts", "tables", "figures"):
                    shutil.rmtree(self.root / sub, ignore_errors=True)
            self.meta = old
            self.meta["resumed"] = int(old.get("resumed", 0)) + (0 if overwrite else 1)
        else:
            self.meta = {"resumed": 0}
        self.meta.update({
            "analysis": analysis,
            "title": title or analysis,
            "description": description,
            "params": self.params,
            "seed": seed,
            "environment": environment(device),
            "started": self.meta.get("started") or _now(),
        })
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_meta()

    def close(self) -> None:
        """Release the folder's lock (it is released anyway when the process ends)."""
        unlock_folder(self.root)

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- metadata -------------------------------------------------------------------------------
    def write_meta(self, **extra: Any) -> None:
        """Update ``meta.json`` (written by the ``writer`` only)."""
        self.meta.update(_jsonable(extra))
        if not self.writer:
            return
        atomic_write_text(self.root / "meta.json", json.dumps(self.meta, indent=2, sort_keys=True))

    def finish(self, summary: Mapping[str, Any] | None = None, **extra: Any) -> None:
        """Record the end of the run (and the headline numbers in ``summary.json``)."""
        if summary is not None and self.writer:
            self.write_json("summary", summary)
        self.write_meta(finished=_now(), **extra)

    # -- parts (resume) --------------------------------------------------------------------------
    def _part(self, table: str, key: str) -> Path:
        return self.root / "parts" / table / f"{key}.csv"

    def has_part(self, table: str, key: str) -> bool:
        return self._part(table, key).is_file()

    def write_part(self, table: str, key: str, rows: Sequence[Mapping[str, Any]]) -> Path:
        return write_csv(self._part(table, key), rows)

    def read_part(self, table: str, key: str) -> list[dict[str, Any]]:
        return read_csv(self._part(table, key))

    def part_keys(self, table: str) -> list[str]:
        d = self.root / "parts" / table
        return sorted(p.stem for p in d.glob("*.csv")) if d.is_dir() else []

    def merge(self, table: str, *, sort_by: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Join every part of ``table`` into ``tables/TABLE.csv`` (sorted by ``sort_by``) and return rows."""
        rows: list[dict[str, Any]] = []
        for key in self.part_keys(table):
            rows.extend(self.read_part(table, key))
        if sort_by:
            rows.sort(key=lambda r: tuple(_sort_key(r.get(k)) for k in sort_by))
        self.write_table(table, rows)
        return rows

    # -- tables, json, figures ---------------------------------------------------------------------
    def table_path(self, name: str) -> Path:
        return self.root / "tables" / f"{name}.csv"

    def write_table(self, name: str, rows: Sequence[Mapping[str, Any]], *,
                    columns: Sequence[str] | None = None) -> Path:
        return write_csv(self.table_path(name), rows, columns=columns)

    def read_table(self, name: str) -> list[dict[str, Any]]:
        return read_csv(self.table_path(name))

    def has_table(self, name: str) -> bool:
        return self.table_path(name).is_file()

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_text(self.root / f"{name}.json", json.dumps(_jsonable(obj), indent=2))

    def figure_path(self, name: str, *, ext: str = "png") -> Path:
        return self.root / "figures" / f"{name}.{ext}"

    def save_figure(self, fig: Any, name: str, *, dpi: int = 110, svg: bool = False) -> Path:
        """Save a matplotlib figure atomically as ``figures/NAME.png`` (and ``figures/NAME.svg`` with
        ``svg=True``: the vector copy of a claim's figure, for papers and slides) and close it."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        if svg:
            vec = io.BytesIO()
            fig.savefig(vec, format="svg", bbox_inches="tight")
            atomic_write_bytes(self.figure_path(name, ext="svg"), vec.getvalue())
        try:
            import matplotlib.pyplot as plt

            plt.close(fig)
        except ImportError:  # pragma: no cover
            pass
        return atomic_write_bytes(self.figure_path(name), buf.getvalue())


def save_claim_figure(run: "RunDir", fig: Any, name: str, claims: Sequence[str], *, dpi: int = 110) -> Path:
    """Save the figure that shows ``claims`` (claim ids, e.g. ``["S1", "S2"]``) as PNG and SVG and record
    it in ``meta.json``'s ``claim_figures`` (claim id -> figure path), which the report links to."""
    path = run.save_figure(fig, name, dpi=dpi, svg=True)
    cf = dict(run.meta.get("claim_figures") or {})
    cf.update({str(c): f"figures/{name}.png" for c in claims})
    run.write_meta(claim_figures=cf)
    return path


# --------------------------------------------------------------------------- what determines the numbers


def files_fingerprint(paths: Sequence[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
    """SHA-256 (hex) of a list of files: one line per file, in the given order, of its name (relative to
    ``root`` when given), size in bytes and modification time in nanoseconds. Adding, removing, renaming,
    rewriting or touching a file changes it; the files' contents are not read (cheap for any folder)."""
    import hashlib

    h = hashlib.sha256()
    base = Path(root) if root is not None else None
    for p in paths:
        p = Path(p)
        st = p.stat()
        name = p.relative_to(base).as_posix() if base is not None else p.as_posix()
        h.update(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


FINGERPRINT_KEYS: dict[str, str] = {
    "weights": "the model's weights (--weights)",
    "checkpoint_sha256": "the checkpoint file's contents",
    "data_files_sha256": "the data files (names, sizes or modification times)",
}
"""The parameters :func:`input_fingerprint` adds, and what a change in each means."""


def input_fingerprint(*, weights: str | None, checkpoint: str | os.PathLike | None = None,
                      data_files: Sequence[str | os.PathLike] | None = None,
                      data_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """What determines a run's numbers besides its options, for its parameters: the weights' name
    (``"DEFAULT"``, ``"none"`` or a weight set, as :func:`infolens.models.weights_choice` normalises it),
    the SHA-256 of the checkpoint file (``None`` without one) and :func:`files_fingerprint` of the data
    files (``None`` for the shipped data sets, which are checked on load). A result folder whose
    fingerprint differs is refused like any other parameter change, so a retrained checkpoint at the same
    path, other weights or an edited folder never reuse stale parts."""
    return {
        "weights": weights,
        "checkpoint_sha256": file_sha256(checkpoint) if checkpoint is not None else None,
        "data_files_sha256": files_fingerprint(data_files, data_root) if data_files is not None else None,
    }


def _sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, v)
    return (1, str(v))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
