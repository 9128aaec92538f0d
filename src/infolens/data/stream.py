"""Folders streamed batch by batch: images are decoded when a batch is asked for, by ``torch.utils.data``
workers, so memory is bounded by the batch (and the loader's prefetch), not by the folder's size.

An :class:`ImageStream` stands in for the ``(N, C, S, S)`` tensor a runner indexes with global image
indices (``images[unit.indices]``, ``images[a:b]``, ``images.shape``): :meth:`ImageStream.prefetch` is told
the batches a process is about to ask for (its own shard's work units, in order), and a
:class:`torch.utils.data.DataLoader` with that batch sampler decodes them ahead in worker processes, with
pinned memory when the device is a GPU. Under torchrun each rank prefetches only its own units
(``units[rank::world]``, no padding), so it reads only its shard's files. A batch asked for out of plan is
decoded in this process. Pure bookkeeping around :class:`~infolens.data.folders.ImageFolderData`, whose
``__getitem__`` does the decoding.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .folders import ImageFolderData

__all__ = ["ImageStream", "default_workers"]


def default_workers() -> int:
    """Decoding workers when none are asked for: ``INFOLENS_WORKERS`` if set, else one per CPU core this
    process may use beyond the first, at most 4 (0 means: decode in the main process)."""
    env = os.environ.get("INFOLENS_WORKERS")
    if env is not None and env.strip():
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"INFOLENS_WORKERS={env!r} is not an integer; set it to 0 (no workers) or a "
                             f"positive count") from None
        if n < 0:
            raise ValueError(f"INFOLENS_WORKERS={env!r} is negative; set it to 0 (no workers) or a positive count")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    return max(0, min(4, cores - 1))


class ImageStream:
    """The images of a folder, decoded on demand; indexes like the ``(N, C, S, S)`` tensor it replaces.

    Parameters
    ----------
    folder : the (lazy) folder, from ``load_image_folder(..., lazy=True)``.
    num_workers : decoding processes (default :func:`default_workers`); 0 decodes in this process.
    device : where the batches go; a CUDA device turns on pinned memory (faster, asynchronous copies).
    prefetch_factor : batches each worker decodes ahead (torch's default, 2).

    Memory: at most ``(num_workers * prefetch_factor + 1)`` batches are held at once, whatever the
    number of images.
    """

    def __init__(self, folder: ImageFolderData, *, num_workers: int | None = None,
                 device: str | torch.device | None = None, prefetch_factor: int = 2) -> None:
        if not isinstance(folder, ImageFolderData):
            raise TypeError(f"folder must be an ImageFolderData (load_image_folder(..., lazy=True)), "
                            f"got {type(folder).__name__}")
        workers = default_workers() if num_workers is None else num_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got num_workers={num_workers!r}")
        self.folder = folder
        self.num_workers = workers
        self.pin_memory = torch.device(device).type == "cuda" if device is not None else False
        self.prefetch_factor = prefetch_factor
        self._plan: list[tuple[int, ...]] = []
        self._it: Iterator[Any] | None = None
        self.decoded = 0
        """Images decoded so far (by workers or here): what a test checks to see nothing was read twice."""

    # -- the tensor-like surface the runners use
    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.folder), self.folder.channels, self.folder.size, self.folder.size))

    @property
    def ndim(self) -> int:
        return 4

    dtype = torch.float32

    def __len__(self) -> int:
        return len(self.folder)

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    @property
    def labels(self) -> torch.Tensor:
        return self.folder.labels

    @property
    def names(self) -> list[str]:
        return self.folder.names

    def __repr__(self) -> str:
        return (f"ImageStream({str(self.folder.root)!r}, {len(self)} images of {tuple(self.shape[1:])}, "
                f"{self.num_workers} workers)")

    def _indices(self, key: Any) -> list[int]:
        n = len(self)
        if isinstance(key, slice):
            return list(range(n))[key]
        if isinstance(key, torch.Tensor):
            key = key.tolist()
        if isinstance(key, Sequence) and not isinstance(key, str):
            out = []
            for i in key:
                if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
                    raise IndexError(f"image index {i!r} out of range for {n} images")
                out.append(i % n)
            return out
        raise TypeError(f"an ImageStream is indexed by a slice or a list of image indices, got {type(key).__name__}")

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, int) and not isinstance(key, bool):
            return self[[key]][0]
        idx = self._indices(key)
        if self._plan and tuple(idx) == self._plan[0]:
            self._plan.pop(0)
            try:
                x, _ = next(self._it)  # type: ignore[arg-type]
                self.decoded += len(idx)
                return x
            except Exception:  # a worker failed (e.g. an unreadable file): read here for a one-line error
                self.close()
        else:
            self.close()  # out of plan: the prefetched batches are not what is asked for
        return self.read(idx)

    def read(self, idx: Sequence[int]) -> torch.Tensor:
        """Decode ``idx`` in this process, stacked ``(len(idx), C, S, S)``."""
        out = torch.empty(len(idx), *self.shape[1:])
        for j, i in enumerate(idx):
            out[j] = self.folder[i][0]
        self.decoded += len(idx)
        return out

    def prefetch(self, batches: Sequence[Sequence[int]]) -> None:
        """Start decoding ``batches`` (lists of global indices, in the order they will be asked for) ahead,
        in ``num_workers`` worker processes; asking for them in that order returns the decoded batches."""
        self.close()
        plan = [tuple(self._indices(list(b))) for b in batches if len(b)]
        if not plan:
            return
        from torch.utils.data import DataLoader

        kw: dict[str, Any] = {"prefetch_factor": self.prefetch_factor} if self.num_workers else {}
        loader = DataLoader(self.folder, batch_sampler=[list(b) for b in plan], num_workers=self.num_workers,
                            pin_memory=self.pin_memory, **kw)
        self._plan, self._it = plan, iter(loader)

    def close(self) -> None:
        """Stop the workers and forget the plan."""
        self._plan = []
        it, self._it = self._it, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def load(self) -> torch.Tensor:
        """Every image, stacked (what a stream avoids: for small folders and tests)."""
        return self.read(range(len(self)))

    def flip(self, dim: int) -> torch.Tensor:
        raise TypeError("an ImageStream cannot be flipped whole; flip a batch: images[a:b].flip(-1)")
