"""Layer naming, listing and selection; capturing feature maps and gradients from any ``nn.Module``.

Layers are the dotted names of ``model.named_modules()`` (``layer3.1.conv2``), as in torchvision's
``feature_extraction``. Capture uses forward hooks (removed in a ``finally`` even when the forward pass
raises), not FX tracing: hooks work on models with data-dependent control flow and cost nothing over
a plain forward pass (``docs/design.md``).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._method import method_call


__all__ = [
    "LayerInfo",
    "Capture",
    "LayerSpec",
    "list_layers",
    "resolve_layers",
    "parse_layer_selection",
    "capture",
    "capture_hooks",
]

LayerSpec = str | nn.Module | type | Sequence[str | nn.Module | type]
"""What selects layers: a dotted name, a glob (``layer*.conv2``), a module type (``nn.Conv2d``) or its
name (``"all Conv2d"``, ``"all conv"``), a keyword (``"all"`` leaves, ``"blocks"``, ``"top"``), a module
object, or a list of these."""

_TYPE_ALIASES = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "linear": (nn.Linear,),
    "relu": (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU),
    "bn": (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
    "pool": (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d),
}


class _Stop(Exception):
    """Raised inside a hook to end a forward pass once every requested layer has been seen."""


@dataclass(frozen=True)
class LayerInfo:
    """One row of :func:`list_layers`.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    >>> [(i.name, i.type, i.output_shape) for i in list_layers(net, (1, 8, 8))]
    [('0', 'Conv2d', (4, 6, 6)), ('1', 'ReLU', (4, 6, 6))]
    """

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    num_params: int
    is_leaf: bool


def _named(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if n}


def _block_names(model: nn.Module) -> list[str]:
    """Every block output: the non-leaf children of ``nn.Sequential``/``nn.ModuleList`` containers,
    or, for a model without such containers, the non-leaf children of the root."""
    names = []
    for parent_name, parent in model.named_modules():
        if isinstance(parent, (nn.Sequential, nn.ModuleList)):
            for child_name, child in parent.named_children():
                if len(list(child.children())) > 0:
                    names.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    if not names:
        names = [n for n, m in model.named_children() if len(list(m.children())) > 0]
    return names


def parse_layer_selection(text: str, *, name: str = "layers") -> str | list[str]:
    """A layer selection written as text (the command line, a config): one :data:`LayerSpec` string, or
    several separated by ``;`` or ``,`` (``"conv1; layer*.conv2"``). The one parser every command uses."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a string, got {type(text).__name__}")
    sep = ";" if ";" in text else ","
    items = [v.strip() for v in text.split(sep) if v.strip()]
    if not items:
        raise ValueError(f"{name} must name at least one layer, got {text!r} (list them with `infolens layers MODEL`)")
    return items[0] if len(items) == 1 else items


def resolve_layers(model: nn.Module, layers: LayerSpec) -> list[str]:
    """Turn a layer selection into dotted names, in the model's module order, without duplicates.

    Raises ``ValueError`` for a name or pattern that matches nothing, listing the closest names.
    """
    named = _named(model)
    order = {n: i for i, n in enumerate(named)}
    by_module = {id(m): n for n, m in named.items()}
    items: Iterable = [layers] if isinstance(layers, (str, nn.Module, type)) else layers
    chosen: list[str] = []
    for item in items:
        if isinstance(item, nn.Module):
            if id(item) not in by_module:
                raise ValueError(f"layer module {type(item).__name__} is not a submodule of the model")
            found = [by_module[id(item)]]
        elif isinstance(item, type):
            found = [n for n, m in named.items() if isinstance(m, item)]
            if not found:
                raise ValueError(f"the model has no layer of type {item.__name__}")
        elif isinstance(item, str):
            found = _match_string(model, named, item.strip())
        else:
            raise TypeError(f"layers must be names, globs, module types or modules, got {type(item).__name__}")
        chosen.extend(found)
    unique = sorted(set(chosen), key=order.__getitem__)
    if not unique:
        raise ValueError(f"layers={layers!r} selects no layer")
    return unique


def _match_string(model: nn.Module, named: dict[str, nn.Module], spec: str) -> list[str]:
    low = spec.lower()
    if low == "all":
        return [n for n, m in named.items() if not list(m.children())]
    if low in ("blocks", "every block output"):
        return _block_names(model)
    if low == "top":
        return [n for n, _ in model.named_children()]
    if low.startswith("all "):
        tname = spec[4:].strip()
        types = _TYPE_ALIASES.get(tname.lower())
        if types is not None:
            found = [n for n, m in named.items() if isinstance(m, types)]
        else:
            found = [n for n, m in named.items() if type(m).__name__.lower() == tname.lower()]
        if not found:
            present = sorted({type(m).__name__ for m in named.values()})
            raise ValueError(f"no layer of type {tname!r} in the model; its layer types are: {', '.join(present)}")
        return found
    if any(c in spec for c in "*?["):
        found = [n for n in named if fnmatch.fnmatchcase(n, spec)]
        if not found:
            raise ValueError(f"layer pattern {spec!r} matches no layer; {_suggest(spec, named)}")
        return found
    if spec in named:
        return [spec]
    raise ValueError(f"unknown layer {spec!r}; {_suggest(spec, named)}")


def _suggest(spec: str, named: dict[str, nn.Module]) -> str:
    close = difflib.get_close_matches(spec, list(named), n=5, cutoff=0.5)
    if close:
        return "closest names: " + ", ".join(close)
    some = list(named)[:8]
    return "list them with `infolens layers MODEL`; first names: " + ", ".join(some)


@dataclass
class Capture:
    """Outputs (and gradients) of the selected layers for one batch, keyed by layer name.

    ``outputs[name]`` holds either the layer output or, when a ``reduce`` function was given, what it
    returned for that output. ``logits`` is the model output (None when the pass was cut short).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> cap = capture(net, torch.rand(2, 1, 8, 8), "all conv")
    >>> list(cap.outputs), tuple(cap.logits.shape)
    (['0'], (2, 10))
    """

    outputs: dict[str, Any] = field(default_factory=dict)
    gradients: dict[str, Tensor] = field(default_factory=dict)
    logits: Tensor | None = None


def _first_tensor(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    if isinstance(out, dict):
        for v in out.values():
            if isinstance(v, Tensor):
                return v
    raise TypeError(f"layer output of type {type(out).__name__} holds no tensor to capture")


@contextmanager
def capture_hooks(model: nn.Module, layers: Sequence[str], *,
                  reduce: Callable[[str, Tensor], Any] | None = None, detach: bool = True,
                  grads: bool = False, stop_after_last: bool = False) -> Iterator[Capture]:
    """Register forward hooks on ``layers`` for the duration of the ``with`` block.

    ``reduce(name, output)`` is applied inside the hook, so only its result is kept: the feature map
    itself is freed as the forward pass moves on (streaming, memory bounded by one layer). With
    ``grads=True`` a tensor hook stores the gradient of each output during ``backward``. With
    ``stop_after_last`` the forward pass is cut once every layer has been seen (use with
    :func:`capture`, which catches it). Hooks are removed in a ``finally``, even when the pass raises.
    """
    named = _named(model)
    result = Capture()
    remaining = set(layers)
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            t = _first_tensor(out)
            if grads:
                if t.requires_grad:
                    t.register_hook(lambda g, n=name: result.gradients.__setitem__(n, g))
            kept = t.detach() if (detach and not grads) else t
            result.outputs[name] = reduce(name, kept) if reduce is not None else kept
            remaining.discard(name)
            if stop_after_last and not remaining:
                raise _Stop
        return hook

    try:
        for name in layers:
            if name not in named:
                raise ValueError(f"unknown layer {name!r}; {_suggest(name, named)}")
            handles.append(named[name].register_forward_hook(make_hook(name)))
        yield result
    finally:
        for h in handles:
            h.remove()


def capture(model: nn.Module, images: Tensor, layers: LayerSpec, *, target: Tensor | int | None = None,
            grads: bool = False, reduce: Callable[[str, Tensor], Any] | None = None, detach: bool = True,
            stop_after_last: bool = False) -> Capture:
    """Run ``model`` on ``images`` once and return the selected layers' outputs (and gradients).

    The call goes through the methods' entry (:func:`infolens._method.method_call`): the images are
    checked, and the model is frozen for the pass (eval mode, no weight gradients) and comes back exactly
    as it was passed: every submodule's mode, ``requires_grad`` flag and buffer (a train-mode BatchNorm's
    running statistics do not move), and no ``.grad`` on any parameter, even with ``grads=True``.

    Parameters
    ----------
    model : nn.Module
        Any module taking ``images``.
    images : torch.Tensor, shape (N, C, H, W)
        Floating images on the model's device, in its dtype.
    layers : LayerSpec
        The layers (:data:`LayerSpec`: names, globs, types, keywords).
    target : int, sequence of N ints, LongTensor (N,) or None
        Class whose logit is back-propagated when ``grads=True``; default the predicted class.
    grads : bool
        Also capture ``d logit[target] / d output`` of each layer (summed over the batch, so each image's
        gradient is its own).
    reduce : callable or None
        ``reduce(name, output) -> anything`` applied inside the hook (see :func:`capture_hooks`).
    detach : bool
        Detach outputs (default). ``False`` keeps the autograd graph to the input (not to the weights,
        which are frozen), e.g. to optimise a perturbation of the input through them.
    stop_after_last : bool
        Stop the forward pass after the last selected layer (no logits then).

    Returns
    -------
    Capture
        ``outputs`` (name -> tensor or reduced value), ``gradients`` (name -> tensor, with ``grads``),
        ``logits`` (N, classes) unless the pass was stopped.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
    ...                           torch.nn.Flatten(), torch.nn.LazyLinear(10)).train()
    >>> cap = capture(net, torch.rand(2, 1, 8, 8), ["0", "2"], grads=True)
    >>> tuple(cap.outputs["2"].shape), tuple(cap.gradients["0"].shape)
    ((2, 4, 6, 6), (2, 4, 6, 6))
    >>> net.training, all(p.grad is None for p in net.parameters())
    (True, True)
    """
    names = resolve_layers(model, layers)
    if grads and stop_after_last:
        raise ValueError("grads=True needs the full forward pass; drop stop_after_last")
    grad_ctx = torch.enable_grad() if (grads or not detach) else torch.no_grad()
    with method_call(model, images, target, None, name="images", fill_target=False) as call, grad_ctx, \
            capture_hooks(model, names, reduce=reduce, detach=detach, grads=grads,
                          stop_after_last=stop_after_last) as cap:
        x = call.inputs
        if grads and not x.requires_grad:
            x = x.detach().requires_grad_(True)  # the weights are frozen: the graph starts at the input
        try:
            logits = model(x)
        except _Stop:
            logits = None
        if grads:
            logits_t = _first_tensor(logits)
            t = call.target if call.target is not None else logits_t.argmax(1)
            sel = logits_t.gather(1, t.to(logits_t.device)[:, None]).sum()
            torch.autograd.grad(sel, x)  # fires the layers' tensor hooks; nothing accumulates in .grad
            cap.outputs = {k: v.detach() if isinstance(v, Tensor) else v for k, v in cap.outputs.items()}
        if logits is not None:
            cap.logits = _first_tensor(logits).detach()
    return cap


def list_layers(model: nn.Module, input_shape: Sequence[int] | None = None, *,
                device: torch.device | str | None = None) -> list[LayerInfo]:
    """Every named layer with its type, parameter count and (given ``input_shape = (C, H, W)``) the
    output shape for one image, from one forward pass on zeros."""
    named = _named(model)
    shapes: dict[str, tuple[int, ...]] = {}
    if input_shape is not None:
        if device is None:
            p = next(model.parameters(), None)
            device = p.device if p is not None else "cpu"
        x = torch.zeros(1, *input_shape, device=device)
        handles = []
        try:
            for name, m in named.items():
                def hook(mod, args, out, n=name):
                    try:
                        shapes[n] = tuple(_first_tensor(out).shape[1:])
                    except TypeError:
                        pass
                handles.append(m.register_forward_hook(hook))
            with torch.no_grad():
                model(x)
        finally:
            for h in handles:
                h.remove()
    return [LayerInfo(name=n, type=type(m).__name__, output_shape=shapes.get(n),
                      num_params=sum(p.numel() for p in m.parameters(recurse=True)),
                      is_leaf=not list(m.children()))
            for n, m in named.items()]
