"""Shared pieces of the information-discarding method (arXiv 1906.04109): entropies, the noise grid,
the input space, and the batched forward pass of noisy copies of every (image, layer) pair.

Pairs are layer-major: pair ``p = l * N + n`` is image ``n`` at layer ``l``. Each pair has its own
noise generator (seeded by the image's global index and the layer name, :func:`infolens._torch.image_seed`),
its own ``sigma_f^2`` and its own parameters; losses are sums over pairs, so one backward pass gives every
pair's gradient and a batch gives the same numbers as each image alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._torch import image_seed
from ..probe import _Stop, capture_hooks

HALF_LOG_2PI_E: float = 0.5 * math.log(2.0 * math.pi * math.e)
"""``1/2 log(2 pi e) = 1.4189`` nats: the entropy of a unit-variance Gaussian."""


def gaussian_entropy(sigma: Tensor) -> Tensor:
    """Differential entropy (nats) of ``N(0, sigma^2)``, elementwise: ``log |sigma| + 1/2 log(2 pi e)``."""
    return torch.log(sigma.abs()) + HALF_LOG_2PI_E


def features(model: nn.Module, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """Outputs of ``layers`` for ``x`` (graph kept when grad is enabled), stopping after the last one."""
    with capture_hooks(model, list(layers), detach=False, stop_after_last=True) as cap:
        try:
            model(x)
        except _Stop:
            pass
    missing = [n for n in layers if n not in cap.outputs]
    if missing:
        raise ValueError(f"layers {missing} were not reached by the forward pass; are they used by the model?")
    return cap.outputs


def grid_shape(grid: int | tuple[int, int] | None, hw: tuple[int, int]) -> tuple[int, int]:
    """Cells per side of sigma: ``grid`` (int or pair), or the image size for ``None`` (per pixel)."""
    if grid is None:
        return hw
    gh, gw = (grid, grid) if isinstance(grid, int) else tuple(grid)
    if gh > hw[0] or gw > hw[1]:
        raise ValueError(f"grid={grid} is finer than the image {hw[0]}x{hw[1]}; use grid=None for per-pixel")
    return int(gh), int(gw)


def upsample(cells: Tensor, hw: tuple[int, int]) -> Tensor:
    """(P, c, gh, gw) cells to (P, c, H, W) pixels, nearest (the release's ``nn.Upsample(mode='nearest')``)."""
    if tuple(cells.shape[-2:]) == tuple(hw):
        return cells
    return F.interpolate(cells, size=hw, mode="nearest")


def input_std(model: nn.Module, channels: int, space: str) -> Tensor:
    """Per-channel factor from the noise space to ``[0, 1]`` pixel space, shape (C,).

    ``space="normalized"`` (the release): the noise lives after the model's own normalisation
    ``(x - mean) / std`` (:func:`infolens.models.load.with_input_normalization` records ``std``), so a
    normalised-space ``sigma`` is ``sigma * std`` in pixels. ``space="pixel"``, or a model that does not
    normalise internally (the MNIST built-ins): the factor is 1.
    """
    if space not in ("normalized", "pixel"):
        raise ValueError(f"space must be 'normalized' or 'pixel', got {space!r}")
    ms = getattr(model, "_infolens_mean_std", None)
    if space == "pixel" or not ms:
        return torch.ones(channels)
    std = torch.as_tensor(ms[1], dtype=torch.float32).flatten()
    return std.expand(channels).clone() if std.numel() == 1 else std


class PairForward:
    """The noisy forward pass of every (image, layer) pair, chunked to bound memory.

    ``x`` (N, C, H, W) in [0, 1]; ``std`` (C,) the noise-space-to-pixel factor; ``relu`` applies ReLU to
    the captured feature (the release measures after ReLU). ``feature_mse(active, sigma, eps, m)`` gives
    the feature MSE of each active pair under noise ``sigma`` (cells, in the noise space) times ``eps``
    (``m`` rows per pair), and with ``backward=True`` back-propagates ``sum(weight * mse)`` into
    ``sigma``'s graph chunk by chunk. ``joint``: a chunk's rows run to its deepest layer in one pass
    (fewest passes, best on a GPU); otherwise chunks never straddle layers (fewest FLOPs, best on a CPU).
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], x: Tensor, std: Tensor, *, relu: bool = True,
                 joint: bool = False, chunk_rows: int = 256) -> None:
        self.model, self.layers, self.x = model, list(layers), x
        self.N, self.L = x.shape[0], len(self.layers)
        self.std = std.to(x.device, x.dtype).view(1, -1, 1, 1)
        self.relu, self.joint, self.chunk_rows = relu, joint, chunk_rows
        with torch.no_grad():
            clean = features(model, x, self.layers)
        self.clean = [self._post(clean[n].detach()) for n in self.layers]
        dev = x.device
        self.pair_img = torch.arange(self.N, device=dev).repeat(self.L)
        self.pair_layer = torch.arange(self.L, device=dev).repeat_interleave(self.N)

    def _post(self, f: Tensor) -> Tensor:
        return F.relu(f) if self.relu else f

    def generators(self, indices: Sequence[int], seed: int, salt: str = "discard") -> list[torch.Generator]:
        """One generator per pair (layer-major), seeded by (seed, global image index, salt:layer)."""
        dev = self.x.device
        return [torch.Generator(device=dev).manual_seed(image_seed(seed, int(indices[n]), salt=f"{salt}:{name}"))
                for name in self.layers for n in range(self.N)]

    def draw(self, gens: Sequence[torch.Generator], active: Sequence[int], m: int) -> Tensor:
        """``m`` standard-normal images per active pair, from the pairs' own generators: (P' * m, C, H, W)."""
        C, H, W = self.x.shape[1:]
        return torch.cat([torch.randn((m, C, H, W), generator=gens[p], device=self.x.device) for p in active])

    def chunks(self, active: Tensor, m: int) -> list[tuple[int, int]]:
        """Spans of ``active`` (sorted, layer-major) with at most ``chunk_rows`` rows (at least one pair),
        not straddling layers unless ``joint``."""
        per = max(1, self.chunk_rows // m)
        lay = self.pair_layer[active].tolist()
        spans, a = [], 0
        P = len(lay)
        while a < P:
            b = min(a + per, P)
            if not self.joint:
                while b > a + 1 and lay[b - 1] != lay[a]:
                    b -= 1
            spans.append((a, b))
            a = b
        return spans

    def noisy(self, active: Tensor, sigma: Tensor, eps: Tensor, m: int) -> Tensor:
        """Noisy copies ``x + up(sigma) * std * eps`` of the active pairs' images: (P' * m, C, H, W)."""
        H, W = self.x.shape[-2:]
        sig = upsample(sigma, (H, W)) * self.std
        return (self.x[self.pair_img[active]].unsqueeze(1) + sig.unsqueeze(1) * eps.view(len(active), m, *eps.shape[1:])
                ).flatten(0, 1)

    def feature_rows(self, active: Tensor, xr: Tensor, m: int) -> list[tuple[int, Tensor, Tensor]]:
        """Per layer present in ``active``: (layer, slice of the pairs in ``active`` order, features of its
        rows (post-ReLU), (P_l * m, ...)). One forward pass to the deepest layer present."""
        lay = self.pair_layer[active]
        present = sorted(set(lay.tolist()))
        feats = features(self.model, xr, [self.layers[l] for l in present])
        out = []
        for l in present:
            sel = (lay == l).nonzero().flatten()
            rows = (sel.view(-1, 1) * m + torch.arange(m, device=xr.device)).flatten()
            out.append((l, sel, self._post(feats[self.layers[l]][rows])))
        return out

    def feature_mse(self, active: Tensor, sigma: Tensor, eps: Tensor, m: int, *, weight: Tensor | None = None,
                    backward: bool = False, transform=None) -> Tensor:
        """Feature MSE per active pair (mean over its ``m`` rows and the feature's elements), (P',).
        ``sigma`` is indexed like ``active``; ``transform`` (e.g. ``torch.exp`` for log-sigma parameters)
        is applied chunk by chunk, so each chunk's graph is freed by its own backward pass."""
        out = torch.empty(len(active), device=self.x.device, dtype=self.x.dtype)
        for a, b in self.chunks(active, m):
            act = active[a:b]
            sig = sigma[a:b] if transform is None else transform(sigma[a:b])
            xr = self.noisy(act, sig, eps[a * m:b * m], m)
            e = torch.empty(b - a, device=self.x.device, dtype=self.x.dtype)
            total = 0.0
            for l, sel, f in self.feature_rows(act, xr, m):
                ref = self.clean[l][self.pair_img[act[sel]]].repeat_interleave(m, dim=0)
                mse = (f - ref).pow(2).flatten(1).mean(1).view(-1, m).mean(1)
                e[sel] = mse.detach()
                if backward:
                    total = total + (mse * weight[a:b][sel]).sum()
            if backward and isinstance(total, Tensor) and total.requires_grad:
                total.backward()
            out[a:b] = e
        return out
