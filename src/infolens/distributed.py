"""Sharding work over processes started by ``torchrun`` (torch.distributed), and gathering result rows.

Without torchrun everything runs as one process through the same code path.

The unit of work is a *global* batch of image indices: ``work_units(n, batch_size)`` cuts
``0..n-1`` into consecutive chunks whose keys (``"0000000-0000064"``) do not depend on the number of
processes. Each process takes ``units[rank::world]`` (no padding, unlike ``DistributedSampler``, which
duplicates images and biases evaluation), writes one part file per finished unit (atomically, keyed by
its global indices), and after one barrier rank 0 merges the parts into the table, sorted. Because a
unit holds the same images whatever the world size, and randomness is seeded per image
(:func:`infolens._torch.image_seed`), 1 and N processes, and a killed-then-resumed run, give identical rows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import _progress

__all__ = [
    "Unit",
    "rank_world",
    "is_main",
    "init_from_env",
    "barrier",
    "single_process",
    "work_units",
    "my_units",
    "run_units",
    "gather_table",
    "device_for_rank",
]


@dataclass(frozen=True)
class Unit:
    """A global batch of images: ``indices`` into the data set, ``key`` names its part file."""

    key: str
    indices: tuple[int, ...]


_LOCAL = False


@contextlib.contextmanager
def single_process() -> Iterator[None]:
    """Inside the block this process works alone: :func:`rank_world` is ``(0, 1)`` and :func:`barrier`
    returns at once. For coarse units that one process computes whole (``infolens reproduce`` hands each
    paper to one rank), so their inner sharding and barriers do not wait for the other ranks."""
    global _LOCAL
    old, _LOCAL = _LOCAL, True
    try:
        yield
    finally:
        _LOCAL = old


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)``: from an initialised process group, else torchrun's environment, else (0, 1);
    ``(0, 1)`` inside :func:`single_process`."""
    if _LOCAL:
        return 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return rank_world()[0] == 0


def init_from_env(device: str | torch.device = "cpu") -> bool:
    """Initialise the process group when started by torchrun (``WORLD_SIZE > 1``); gloo on the CPU, nccl
    on CUDA. Returns True when running distributed."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return False
    if not torch.distributed.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") and torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return True


def device_for_rank(device: str | torch.device) -> torch.device:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun (one process per GPU); others unchanged."""
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return d


def barrier() -> None:
    if _LOCAL:
        return
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def work_units(n: int, batch_size: int, *, indices: Sequence[int] | None = None) -> list[Unit]:
    """Cut ``indices`` (default ``range(n)``) into consecutive global batches of ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    idx = list(range(n)) if indices is None else list(indices)
    units = []
    for s in range(0, len(idx), batch_size):
        chunk = tuple(idx[s:s + batch_size])
        units.append(Unit(key=f"{chunk[0]:07d}-{chunk[-1] + 1:07d}", indices=chunk))
    return units


def my_units(units: Sequence[Unit]) -> list[Unit]:
    """This process's share: ``units[rank::world]``."""
    rank, world = rank_world()
    return list(units[rank::world])


def run_units(run: Any, table: str, units: Sequence[Unit], fn: Callable[[Unit], list[dict[str, Any]]], *,
              desc: str = "", progress: bool = True, work: str | None = None, data: Any = None) -> int:
    """Compute this process's units that have no part file yet and write each part atomically.

    ``run`` is a :class:`infolens.results.RunDir`; ``fn(unit)`` returns the unit's rows. Returns the
    number of units computed (0 when everything was already done: a resumed run redoes nothing).
    ``work`` (e.g. "64 images x 10 methods") is printed before the first unit, with a rough time once the
    first unit is measured. ``data``: the images ``fn`` indexes; an :class:`infolens.data.ImageStream` is told
    this process's units first, so its workers decode only their files, in order, ahead of ``fn``.
    """
    todo = [u for u in my_units(units) if not run.has_part(table, u.key)]
    if work and todo and len(todo) < len(my_units(units)):
        work = f"{work} ({len(todo)} of {len(my_units(units))} batches left)"
    prefetch = getattr(data, "prefetch", None)
    if prefetch is not None:
        prefetch([u.indices for u in todo])
    try:
        for u in _progress.track(todo, desc=desc or table, total=len(todo), progress=progress, unit="batches",
                                 work=work if todo else None):
            run.write_part(table, u.key, fn(u))
    finally:
        if prefetch is not None:
            data.close()
    return len(todo)


def gather_table(run: Any, table: str, *, sort_by: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Barrier, then rank 0 merges the parts into ``tables/TABLE.csv``; every rank returns the rows."""
    barrier()
    if is_main():
        run.merge(table, sort_by=sort_by)
    barrier()
    return run.read_table(table)
