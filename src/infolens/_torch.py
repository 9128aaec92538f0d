"""The lowest layer: torch helpers that every method shares. Imports nothing from infolens.

* :func:`frozen`: a model in eval mode with frozen weights for the duration of a measurement, left
  exactly as it was found afterwards (every submodule's mode, every ``requires_grad`` flag, every buffer).
* :func:`model_device`: the device a model lives on.
* :func:`recalibrate_batchnorm`: exact ("precise") BatchNorm statistics on a set of images.
* :func:`fork_rng`, :func:`image_seed`, :func:`image_generators`, :func:`per_image_randn`: randomness that
  depends on the (seed, global image index) alone, never on batch composition or process count.
* :func:`flush_denormal`: denormal floats flushed to zero on the CPU inside a block.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

__all__ = [
    "frozen",
    "model_device",
    "recalibrate_batchnorm",
    "fork_rng",
    "image_seed",
    "image_generators",
    "per_image_randn",
    "flush_denormal",
]


@contextlib.contextmanager
def frozen(model: nn.Module, *, buffers: bool = True) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` on every parameter inside the block; afterwards every
    submodule's own ``training`` flag, every parameter's ``requires_grad`` and (``buffers=True``) the
    values of every buffer are restored, so a model passed in train mode, or with a submodule the user
    froze, comes back exactly as it was. Gradients still flow *through* the model to its input; backward
    skips every weight gradient.

    Methods measure in eval mode (BatchNorm uses its running statistics, dropout is off): a measurement
    must not depend on the other images of the batch.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    saved = [(b, b.detach().clone()) for b in model.buffers()] if buffers else []
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        for m, t in modes:
            m.training = t
        with torch.no_grad():
            for b, v in saved:
                if b.shape == v.shape and not torch.equal(b, v):
                    b.copy_(v)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither."""
    p = next(model.parameters(), None)
    if p is None:
        p = next(model.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, images: torch.Tensor, *, batch_size: int = 128, device: str | torch.device | None = None,
    scope: Sequence[nn.Module] | None = None,
) -> nn.Module:
    """Re-estimate the BatchNorm running mean/variance on ``images`` ("precise BN", Wu & Johnson 2021).

    The statistics become exact averages over the batches of ``images`` (cumulative moving
    average); weights are untouched. Only the BatchNorm layers inside ``scope`` (default: the whole
    model) are recalibrated; every other layer runs in eval mode (dropout off, other BatchNorms
    frozen). A model without BatchNorm is returned unchanged; every submodule's mode is restored.
    """
    bns = [m for s in (scope if scope is not None else [model]) for m in s.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or images.shape[0] == 0:
        return model
    device = model_device(model) if device is None else device
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    try:
        for i in range(0, images.shape[0], batch_size):
            model(images[i: i + batch_size].to(device))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        for m, t in modes:
            m.training = t
    return model


@contextlib.contextmanager
def fork_rng(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside the block and restore the caller's state afterwards."""
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        yield
    finally:
        torch.set_rng_state(state)


def image_seed(seed: int, index: int, salt: str = "") -> int:
    """A 63-bit seed for one image: the same for a given (seed, global index, salt) on every process."""
    h = hashlib.blake2b(f"{seed}:{index}:{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def image_generators(seed: int, indices: Sequence[int], salt: str = "") -> list[torch.Generator]:
    """One CPU generator per image, seeded by :func:`image_seed`."""
    return [torch.Generator().manual_seed(image_seed(seed, int(i), salt)) for i in indices]


def per_image_randn(shape: Sequence[int], seed: int, indices: Sequence[int], *, salt: str = "",
                    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of shape ``(len(indices), *shape)``, each image's slice drawn from its own
    seed (CPU generator, then moved), so it does not depend on batch composition or process count. The draw
    is made in float32 and then cast, so float32 and float64 runs see the same noise."""
    gens = image_generators(seed, indices, salt)
    noise = torch.stack([torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in gens])
    return noise.to(device=device, dtype=dtype)


@contextlib.contextmanager
def flush_denormal() -> Iterator[None]:
    """Flush denormal floats to zero on the CPU inside the block (then back to torch's default).

    Training the small MNIST networks on the CPU produces denormal values (in Adam's moment
    estimates and in gradients) that slow convolutions down about 5x; flushing them changes no
    result that matters (the losses agree to the printed digits).
    """
    changed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)
