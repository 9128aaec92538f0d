"""The one entry point to the data: :func:`load_dataset` turns a data spec (what the CLI's ``--data``
takes) into images, labels and names (re-exported by :mod:`infolens.data`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch

from ._common import _check_channels, _check_limit, _check_size
from .folders import load_image_folder
from .mnist import mnist_tensors
from .photos import _resize_tensor, load_photos

__all__ = ["LoadedData", "load_dataset"]


class LoadedData(NamedTuple):
    """What :func:`load_dataset` returns; unpacks as ``images, labels, names``."""

    images: torch.Tensor
    """float32 ``(N, C, H, W)`` in [0, 1]."""
    labels: torch.Tensor
    """int64 ``(N,)``; ``-1`` where unknown."""
    names: list[str]
    """One name per image (e.g. ``mnist-test-00042``, a photo name, a path relative to the folder)."""


def _to_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    if channels is None or images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def load_dataset(
    spec: str,
    *,
    split: str = "test",
    size: int | None = None,
    limit: int | None = None,
    channels: int | None = None,
) -> LoadedData:
    """Images, labels and per-image names from a data spec (what the CLI's ``--data`` takes).

    ``spec`` is ``"mnist"`` (the shipped MNIST, ``split`` ``"train"``/``"test"``, 28x28 gray),
    ``"photos"`` (the bundled photographs, labels ``-1``) or a folder path (see
    :func:`load_image_folder`). ``size`` resizes (shorter side + centre crop), ``channels``
    converts to 1 (luminance) or 3 (gray repeated) channels; ``None`` keeps each source's own.
    ``limit`` keeps at most ``limit`` images: the first ones of MNIST, of the photographs and of a flat
    folder (file-name order); for a folder with class sub-folders one image of each class in turn (each
    class's files in relative-path order) until ``limit`` are taken, so every class is represented.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"spec must be 'mnist', 'photos' or a folder path, got {type(spec).__name__}")
    _check_size(size, allow_none=True)
    _check_limit(limit)
    _check_channels(channels, allow_none=True)
    key = str(spec)
    if key.lower() == "mnist":
        images, labels = mnist_tensors(split, limit)
        names = [f"mnist-{split}-{i:05d}" for i in range(images.shape[0])]
        if size is not None:
            images = _resize_tensor(images, size)
    elif key.lower() == "photos":
        images, names = load_photos(size=size or 224)
        if limit is not None:
            images, names = images[:limit], names[:limit]
        labels = torch.full((images.shape[0],), -1, dtype=torch.int64)
    else:
        if not Path(key).expanduser().exists():
            raise FileNotFoundError(
                f"data spec {key!r} is neither 'mnist', 'photos' nor an existing folder; "
                f"pass one of those"
            )
        folder = load_image_folder(key, size=size or 224, limit=limit, channels=channels or 3)
        return LoadedData(folder.load(), folder.labels, folder.names)
    return LoadedData(_to_channels(images, channels), labels, names)
