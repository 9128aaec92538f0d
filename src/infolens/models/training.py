"""Training the built-in networks with stage checkpoints, and the cache of trained ones."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .._torch import flush_denormal, recalibrate_batchnorm
from .._io import atomic_torch_save, atomic_write_text
from .builtin import _TRAIN_DEFAULTS, BUILTIN_MODELS, DEFAULT_CHECKPOINTS, QUICK_TRAIN, _unknown, build_builtin
from .checkpoint import load_checkpoint

SHIPPED_DIR: Path = Path(__file__).resolve().parents[1] / "_data" / "testbed"
"""Trained built-ins shipped in the package (float16 stage checkpoints + ``history.json`` per model),
made by ``tools/train_testbed.py``; used instead of the cache when their settings match."""






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
    from .. import data as _data

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


def _read_shipped_history(name: str) -> dict[str, Any] | None:
    """The shipped ``history.json`` of ``name`` if its settings match the current defaults and all
    its files exist (else None: then the cache is used)."""
    folder = SHIPPED_DIR / name
    try:
        meta = json.loads((folder / "history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("settings") != _builtin_settings(name):
        return None
    # the initialisation stage is not shipped (file None): it is rebuilt from its seed
    files = [meta.get("final")] + [row.get("file") for row in meta.get("history", []) if row.get("file") is not None]
    if not all(isinstance(f, str) and (folder / f).is_file() for f in files):
        return None
    return meta


def _init_stage_path(name: str, seed: int) -> Path:
    """The state dict of ``build_builtin(name, seed=seed)`` (the epoch-0 stage), written into the
    cache on first use: it is exactly the initialisation training started from, so it is not shipped."""
    path = cache_dir() / "models" / name / f"init-seed{seed}.pt"
    if not path.is_file():
        model = build_builtin(name, seed=seed)
        atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return path


def _ensure_builtin(name: str, device: str | torch.device, progress: bool,
                    quick: bool = False, retrain: bool = False) -> tuple[Path, dict[str, Any]]:
    """(folder, history meta) of the trained built-in: the shipped one (full settings), else the cache,
    training into it if needed; ``retrain`` always trains into the cache."""
    if name not in BUILTIN_MODELS:
        raise ValueError(_unknown("built-in model name", name, BUILTIN_MODELS))
    if not quick and not retrain:
        shipped = _read_shipped_history(name)
        if shipped is not None:
            return SHIPPED_DIR / name, shipped
    return _builtin_dir(name, quick), _ensure_builtin_cache(name, device, progress, quick, retrain)


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

    The trained state dict ships in the package (``_data/testbed/<name>``, float16, with its stage
    checkpoints; :data:`SHIPPED_DIR`) and is used while the default settings match it. Otherwise
    it is trained on the first call (minutes per model on 2 CPU cores) and cached under
    ``cache_dir()/models/<name>/`` with its stage checkpoints (``DEFAULT_CHECKPOINTS``) and
    ``history.json``; later calls (and other processes) reuse it. Writes are atomic and
    concurrent callers wait on a file lock instead of training twice. ``quick`` gives the
    seconds-to-train variant (:data:`QUICK_TRAIN`, always cached); ``retrain`` trains into the
    cache even if shipped or cached.
    """
    folder, meta = _ensure_builtin(name, device, progress, quick, retrain)
    model = build_builtin(name)
    load_checkpoint(folder / meta["final"], model)
    return model.to(device).eval()


def builtin_history(name: str, *, device: str | torch.device = "cpu", progress: bool = True,
                    quick: bool = False) -> list[dict[str, Any]]:
    """The training history of the cached built-in ``name`` (training it first if needed).

    One row per stage checkpoint: ``{"epoch", "step", "test_acc", "train_loss", "path"}`` with
    ``path`` the absolute path of the saved state dict (load it with :func:`load_checkpoint` into
    ``build_builtin(name)``, or pass it as ``checkpoint`` to :func:`load_model`).
    """
    folder, meta = _ensure_builtin(name, device, progress, quick)
    return [
        {k: v for k, v in row.items() if k not in ("file", "init_seed")}
        | {"path": str(folder / row["file"]) if row.get("file") is not None
           else str(_init_stage_path(name, int(row.get("init_seed", meta["settings"]["seed"]))))}
        for row in meta["history"]
    ]

