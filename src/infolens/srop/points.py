"""Where SROP looks: the measurement point of each selected layer (``conv``, ``activation``, ``block``).

The paper (arXiv 2102.00369) computes SROPs of "feature maps" without a public code base, and which
tensor it means changes the finding (measured: on mnist_vgg's stages the SROP-accuracy correlation is
+0.25 on convolution outputs and -0.97 after the ReLU). So the point is a parameter:

* ``conv``: the output of each selected convolution (before normalisation and non-linearity);
* ``activation``: the output of the non-linearity that follows each selected convolution: the first
  activation *module* executed after it, before any other weight layer (convolution or linear) runs.
  Normalisation, padding, pooling, dropout and residual additions in between are part of the path
  (torchvision's ``relu(bn2(conv2(x)) + identity)`` measures ``relu``'s output for ``conv2``). A shared
  activation module called several times (torchvision's ``self.relu``, EfficientNet's ``_swish``) is
  told apart by its call index. A convolution with no activation module before the next weight layer
  (a 1x1 downsample, a linear bottleneck's projection) has no activation point and is left out; if no
  selected convolution has one, the model applies its non-linearity functionally (``F.relu``), which
  hooks cannot see, and a ``ValueError`` says so (measure ``at="conv"`` or ``"block"``, or use
  ``nn.ReLU`` modules);
* ``block``: the output of each residual or stage block: the non-leaf children of ``nn.Sequential`` /
  ``nn.ModuleList`` containers (probe's ``"blocks"``: ``layer1.0``, ``_blocks.3``) with 2-D maps; for
  a plain network with fewer than two such blocks (VGG, all-convolutional, LeNet), the stage outputs:
  the last 2-D map computed at each spatial resolution of at least 2 x 2, in order (the input to each
  downsampling).

The execution order comes from one forward pass on the first image with hooks on every module (no
tracing, so data-dependent control flow is fine, as in ``docs/design.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..probe import LayerSpec, _block_names, _first_tensor, resolve_layers

__all__ = ["MEASUREMENT_POINTS", "DEFAULT_AT", "ACTIVATION_TYPES", "Point", "plan_points", "check_at"]

MEASUREMENT_POINTS: tuple[str, ...] = ("conv", "activation", "block")
DEFAULT_AT = "activation"
"""Default measurement point. What it rests on (the paper's text beyond the abstract could not be
read; no official code exists): the abstract speaks of "feature maps" whose communication bandwidth
drops after downscaling operations, and SROP statistics "across feature maps"; in CNN usage (Zeiler &
Fergus 2014, torchvision's ``feature_extraction``) a feature map is the rectified output a layer passes
on, and it is this map that pooling and strided layers downsample. The conv and block points remain one
argument away, and ``infolens reproduce`` decides every claim at all three."""

ACTIVATION_TYPES: tuple[type, ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.SiLU, nn.GELU, nn.Hardswish,
                                      nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus,
                                      nn.Hardtanh)
"""Module types that count as the non-linearity after a convolution (classes named ``*Swish*`` too)."""


def _is_activation(m: nn.Module) -> bool:
    return isinstance(m, ACTIVATION_TYPES) or "swish" in type(m).__name__.lower()


def _is_weight_layer(m: nn.Module) -> bool:
    """A layer that mixes features (convolution, linear): the end of a convolution's path."""
    if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
        return True
    own = [p for p in m.parameters(recurse=False)]
    return bool(own) and any(p.ndim > 1 for p in own) and not isinstance(m, nn.modules.batchnorm._BatchNorm)


@dataclass(frozen=True)
class Point:
    """One measured map: ``key`` names it in results (the convolution for ``conv``/``activation``, the
    block for ``block``); the map is the output of call number ``call`` (0-based) of module ``module``."""

    key: str
    module: str
    call: int = 0

    @property
    def source(self) -> str:
        return self.module if self.call == 0 else f"{self.module}#{self.call}"


def check_at(at: str) -> str:
    if at not in MEASUREMENT_POINTS:
        raise ValueError(f"at must be one of {', '.join(MEASUREMENT_POINTS)}, got {at!r}")
    return at


def _events(model: nn.Module, x: Tensor) -> list[tuple[str, int, tuple[int, ...]]]:
    """``(module name, call index, output shape)`` of every module call of one forward pass, in the
    order the calls finish (a container finishes after its children)."""
    named = {n: m for n, m in model.named_modules() if n}
    events: list[tuple[str, int, tuple[int, ...]]] = []
    calls: dict[str, int] = {}
    handles = []

    def make(name: str):
        def hook(module: nn.Module, args, out) -> None:
            k = calls.get(name, 0)
            calls[name] = k + 1
            try:
                shape = tuple(_first_tensor(out).shape)
            except TypeError:
                shape = ()
            events.append((name, k, shape))
        return hook

    try:
        for n, m in named.items():
            handles.append(m.register_forward_hook(make(n)))
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return events


def plan_points(model: nn.Module, x: Tensor, layers: LayerSpec, at: str) -> list[Point]:
    """The maps to measure at point ``at`` for the selected ``layers`` (see the module docstring).

    ``x`` is one small batch (the first image) on the model's device; the model must already be in the
    mode it will be measured in. For ``block``, ``layers`` is used as given unless it is the default
    ``"all conv"``, which stands for the model's blocks.
    """
    check_at(at)
    named = {n: m for n, m in model.named_modules() if n}
    if at == "conv":
        return [Point(n, n) for n in resolve_layers(model, layers)]
    events = _events(model, x)
    if at == "block":
        if not (isinstance(layers, str) and layers == "all conv"):
            return [Point(n, n) for n in resolve_layers(model, layers)]
        maps = {n for n, _, s in events if len(s) == 4}
        blocks = [n for n in _block_names(model) if n in maps]
        if len(blocks) >= 2:
            return [Point(n, n) for n in blocks]
        last: dict[tuple[int, int], tuple[str, int]] = {}
        for n, k, s in events:  # the last map at each resolution; leaves only (containers repeat them)
            if len(s) == 4 and min(s[-2:]) >= 2 and not list(named[n].children()):
                last.pop(s[-2:], None)
                last[s[-2:]] = (n, k)
        if not last:
            raise ValueError("the model computes no 2-D feature maps (N, C, H, W); SROP needs convolutional layers")
        return [Point(n, n, k) for n, k in last.values()]
    convs = resolve_layers(model, layers)
    first = {}
    for i, (n, k, _) in enumerate(events):
        if n in convs and n not in first:
            first[n] = i
    missing = [c for c in convs if c not in first]
    if missing:
        raise ValueError(f"layers {missing} were not run by the model's forward pass; choose layers the forward pass uses")
    points = []
    for c in convs:
        for n, k, s in events[first[c] + 1:]:
            m = named[n]
            if _is_activation(m):
                if len(s) == 4:
                    points.append(Point(c, n, k))
                break
            if _is_weight_layer(m):
                break
    if not points:
        raise ValueError(f"no activation module runs after the selected layers {convs[:4]}{'...' if len(convs) > 4 else ''} "
                         f"before the next convolution or linear layer: the model applies its non-linearity "
                         f"functionally (e.g. F.relu), which hooks cannot see; measure at='conv' or at='block', or "
                         f"use nn.ReLU modules")
    return points


def describe(points: Sequence[Point]) -> dict[str, str]:
    """``key -> measured module`` (``name#k`` for the k-th call of a shared module)."""
    return {p.key: p.source for p in points}
