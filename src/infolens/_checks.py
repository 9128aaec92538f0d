"""Validation at the public boundary: one clear message naming the argument, what came and what is expected."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn


def frozen_model(model: Any) -> contextlib.AbstractContextManager:
    """:func:`infolens._torch.frozen` for an ``nn.Module`` (eval mode inside, every submodule's mode,
    ``requires_grad`` flag and buffer restored after), nothing for a plain callable."""
    from ._torch import frozen

    return frozen(model) if isinstance(model, nn.Module) else contextlib.nullcontext(model)


def _model_input(model: Any) -> tuple[torch.dtype | None, int | None]:
    """The floating dtype of the model's weights and the input channels of its first convolution."""
    if not isinstance(model, nn.Module):
        return None, None
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return dtype, (conv.in_channels if conv is not None else None)


def check_images(images: object, *, name: str = "images", channels: int | None = None,
                 allow_3d: bool = False, model: Any = None) -> Tensor:
    """Return ``images`` as an ``(N, C, H, W)`` floating tensor or raise a one-line error.

    A 3-D tensor is refused: ``(3, H, W)`` is as likely three grey images as one RGB image, and taking a
    batch of grey images for one colour image gives wrong numbers silently. Pass ``images.unsqueeze(0)``
    for one image or ``images.unsqueeze(1)`` for a batch of grey ones. ``allow_3d=True`` (for callers that
    know their input is one image) gives a ``(C, H, W)`` tensor a batch dimension instead.
    Non-finite values (NaN, inf) are refused, since every measurement downstream would be NaN.
    With ``model``, images whose dtype differs from the model's weights (float64 pixels into a float32
    network) are refused with the fix.
    """
    m_dtype, m_channels = _model_input(model)
    if channels is None:
        channels = m_channels
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(images).__name__}; "
                        f"convert with torch.as_tensor(...)")
    if images.ndim == 3 and allow_3d:
        images = images.unsqueeze(0)
    if images.ndim == 3:
        expect = f"; the model expects {channels} channel(s)" if channels is not None else ""
        raise ValueError(f"{name} has shape {tuple(images.shape)}, which is ambiguous (one image (C, H, W) or a batch "
                         f"of {images.shape[0]} (H, W) images?){expect}; pass (N, C, H, W): {name}.unsqueeze(0) for "
                         f"one image, {name}.unsqueeze(1) for a batch of grey images")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(images.shape)}; "
                         f"pass a batch of images with a channel axis")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (N = 0)")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be floating point in [0, 1], got dtype {images.dtype}; "
                        f"use images.float() / 255 for uint8 pixels")
    if m_dtype is not None and images.dtype != m_dtype:
        raise TypeError(f"{name} are {str(images.dtype).replace('torch.', '')} but the model's weights are "
                        f"{str(m_dtype).replace('torch.', '')}; pass {name}.to({m_dtype}) "
                        f"(or convert the model)")
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
