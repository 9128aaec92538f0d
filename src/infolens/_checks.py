"""Validation at the public boundary: one clear message naming the argument, what came and what is expected."""

from __future__ import annotations

import torch
from torch import Tensor


def check_images(images: object, *, name: str = "images", channels: int | None = None,
                 allow_3d: bool = True) -> Tensor:
    """Return ``images`` as an ``(N, C, H, W)`` floating tensor or raise a one-line error.

    A single ``(C, H, W)`` image is accepted and given a batch dimension when ``allow_3d``.
    Non-finite values (NaN, inf) are refused, since every measurement downstream would be NaN.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(images).__name__}; "
                        f"convert with torch.as_tensor(...)")
    if images.ndim == 3 and allow_3d:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(images.shape)}; "
                         f"add a batch dimension with images.unsqueeze(0) for one image")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (N = 0)")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be floating point in [0, 1], got dtype {images.dtype}; "
                        f"use images.float() / 255 for uint8 pixels")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"{name} has {images.shape[1]} channels but the model expects {channels}; "
                         f"shape given {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        bad = int((~torch.isfinite(images)).sum())
        raise ValueError(f"{name} contains {bad} non-finite values (NaN or inf); clean the input first")
    return images


def check_targets(targets: object, n: int, *, name: str = "target") -> Tensor | None:
    """Targets as a LongTensor of shape (n,) (an int broadcasts), or None."""
    if targets is None:
        return None
    if isinstance(targets, int):
        return torch.full((n,), targets, dtype=torch.long)
    t = torch.as_tensor(targets)
    if t.ndim == 0:
        t = t.expand(n)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{name} must be an int or have shape ({n},), got shape {tuple(t.shape)}")
    if t.is_floating_point():
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    return t.long()


def check_positive(value: float, name: str) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
