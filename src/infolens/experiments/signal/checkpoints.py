"""The signal runner's files: checkpoints saved atomically from what the training functions hand over
(the methods never write a file), read back to resume, and the cache key of a pre-trained autoencoder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..._io import atomic_torch_save


def _partial(path: Path) -> Path:
    return path.with_name(path.stem + ".partial" + path.suffix)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The finished checkpoint at ``path``, else its mid-stage one (``NAME.partial.pt``), else None."""
    for p in (path, _partial(path)):
        if p.is_file():
            try:
                return torch.load(p, map_location="cpu", weights_only=True)
            except Exception:  # a damaged file is recomputed  # noqa: BLE001
                continue
    return None


def saver(path: Path) -> Callable[[dict[str, Any]], None]:
    """``on_checkpoint`` for a stage: a finished checkpoint goes to ``path`` (and its partial file is
    removed), a mid-stage one to ``NAME.partial.pt``; both written atomically."""

    def save(obj: dict[str, Any]) -> None:
        if obj.get("final"):
            atomic_torch_save(obj, path)
            _partial(path).unlink(missing_ok=True)
        else:
            atomic_torch_save(obj, _partial(path))

    return save


def _cache_path(name: str) -> Path:
    from ...models import cache_dir

    return cache_dir() / "signal" / name
