"""Ground floor: files written atomically (text, JSON, CSV, ``torch.save``), CSV tables read back, and
file fingerprints.

Every file is written to a temporary name in the same folder, flushed to disk and renamed
(``os.replace``), so a killed process never leaves a half-written file. It gets the mode ``open()`` would
give it (``0o666`` less the umask, so 0644 under umask 022), or the mode of the file it replaces.
Nothing here knows about runs, ranks or models: :mod:`infolens.results`, the model loaders and the runners
build on it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["TEXT_COLUMNS", "atomic_torch_save", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "file_mode", "file_sha256", "read_csv", "write_csv"]


def _umask() -> int:
    """The process umask, read without changing it where the system allows (Linux), else set-and-restore."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode(path: str | os.PathLike) -> int:
    """The permission bits a rewritten ``path`` gets: those of the file it replaces, else ``0o666 & ~umask``."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600 whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (``json.dumps``, ``indent`` spaces, a final newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file and a rename."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def _cell(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.item() if v.numel() == 1 else v.tolist()
    if hasattr(v, "item") and not isinstance(v, (list, tuple, str)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return v


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], *,
              columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` (dicts) as CSV atomically. Floats keep full precision (``repr``); NaN is empty."""
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(r.get(k, "")) for k in columns})
    return atomic_write_text(path, buf.getvalue())


def _parse(v: str) -> Any:
    if v == "":
        return float("nan")
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    if v in ("True", "False"):
        return v == "True"
    return v


#: Columns that hold names, never numbers (a layer called ``"1"`` in an ``nn.Sequential`` stays a string).
TEXT_COLUMNS = frozenset({"layer", "model", "method", "metric", "variant"})


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a table written by :func:`write_csv` (numbers parsed, empty cells as NaN; non-empty
    cells of the :data:`TEXT_COLUMNS` are kept as strings). A row with more or fewer cells than the header
    (a truncated or mangled file) and a 0-byte file raise a ValueError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no table at {path}")
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            if None in row or None in row.values():  # more or fewer cells than the header (a cut or mangled file)
                n = len(row) - (None in row) + len(row.get(None) or ()) - sum(v is None for v in row.values())
                raise ValueError(f"{path} line {reader.line_num} has {n} cells but the header names "
                                 f"{len(reader.fieldnames or [])} columns")
            rows.append({k: (v if k in TEXT_COLUMNS and v else _parse(v)) for k, v in row.items()})
        if reader.fieldnames is None and path.stat().st_size == 0:
            raise ValueError(f"{path} is empty (not even a header line)")
    return rows


def file_sha256(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file's bytes, read in ``chunk``-byte pieces (a fingerprint of an input:
    a checkpoint, a data file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file_sha256: {path} is not a file; pass the path of an existing file")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
