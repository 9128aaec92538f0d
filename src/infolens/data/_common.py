"""What every loader of :mod:`infolens.data` shares: the folder of the shipped package data and the checks of
the ``limit``, ``size`` and ``channels`` arguments. Imports nothing from infolens."""

from __future__ import annotations

from pathlib import Path

DATA_DIR: Path = Path(__file__).resolve().parent.parent / "_data"
"""Folder of the shipped package data."""


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got limit={limit!r}")


def _check_size(size: int | None, *, allow_none: bool = False) -> None:
    if size is None and allow_none:
        return
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int (pixels), got size={size!r}")


def _check_channels(channels: int | None, *, allow_none: bool = False) -> None:
    if channels is None and allow_none:
        return
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got channels={channels!r}")
