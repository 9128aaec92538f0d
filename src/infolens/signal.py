"""Method 3: what a classifier likes to see (Palacio et al., "What do Deep Networks Like to See?",
CVPR 2018, arXiv 1803.08337).

An image autoencoder is first trained to reconstruct images (stage 1); a copy of it is then tuned
through a *frozen* classifier (stage 2): the loss is the classifier's cross-entropy on the
reconstruction with the true labels, so the decoder learns to emit whatever signal that classifier
needs and nothing else ("S2SNets"). Feeding the reconstructions tuned for classifier A to another
classifier B (the cross-classifier accuracy matrix) shows whether A lets in the signal B relies on;
the normalised mutual information (NMI) between images and reconstructions shows how much of the
input survives (``../shared/METHODS.md``, section 3).

Readings (the full text could not be read; each is a parameter with this default):

* autoencoder: SegNet's shape scaled to 28 x 28 -- conv3x3-BatchNorm-ReLU stages with 2x2 max-pools
  that keep their indices, a mirrored decoder that unpools by those indices, and a final 1x1
  convolution with no activation (it outputs pixels, as SegNet outputs normalised pixels);
* stage 1 loss: mean squared error; optimiser (both stages): Adam, lr 1e-3;
* stage 2: encoder and classifier frozen, decoder tuned, cross-entropy only (no pixel term);
  ``tune="all"`` tunes the whole autoencoder;
* NMI: pixels clipped to [0, 1] and quantised to 256 levels, per image; arithmetic-mean
  normalisation (scikit-learn's default since 0.22) or geometric mean (likely in 2018), both offered.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import _progress
from ._checks import check_images, check_positive, check_targets
from ._torch import frozen
from ._torch import recalibrate_batchnorm as _recalibrate_bn
from .results import atomic_torch_save

__all__ = [
    "SegNetAE",
    "FitResult",
    "build_autoencoder",
    "frozen",
    "recalibrate_batchnorm",
    "pretrain_autoencoder",
    "finetune_through_classifier",
    "reconstruct",
    "classify",
    "predict",
    "quantize",
    "MutualInformation",
    "mutual_information",
    "nmi",
    "nmi_noise_bias",
    "SignalOrder",
    "signal_order",
]

Average = Literal["arithmetic", "geometric", "min", "max"]
_AVERAGES = ("arithmetic", "geometric", "min", "max")
_FORMAT = "infolens.signal/1"


# --------------------------------------------------------------------------- the autoencoder


def _conv_bn_relu(cin: int, cout: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(n):
        layers += [nn.Conv2d(cin if k == 0 else cout, cout, 3, padding=1, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SegNetAE(nn.Module):
    """SegNet-style encoder-decoder (Badrinarayanan et al. 2017, as used by arXiv 1803.08337), scaled down.

    Encoder: per stage ``convs_per_stage`` x (conv3x3 - BatchNorm - ReLU), then a 2x2 max-pool that
    keeps its indices. Decoder (mirrored): unpool by those indices, then conv3x3 - BatchNorm - ReLU
    stages back to ``widths[0]`` channels, and a final 1x1 convolution to ``in_channels`` with no
    activation (``out_activation=None``; the paper's SegNet outputs normalised pixels), or a sigmoid.

    The default ``widths=(16, 32)`` gives two pooling stages (28 -> 14 -> 7) and ~24k parameters,
    small enough to train in seconds on a CPU; three widths give three stages (7 -> 3, unpooled back
    to 7 through ``output_size``). Layer names: ``encoder.K``, ``decoder.K``, ``head``.
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32), *, convs_per_stage: int = 1,
                 out_activation: Literal["sigmoid"] | None = None) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}")
        if convs_per_stage < 1:
            raise ValueError(f"convs_per_stage must be >= 1, got {convs_per_stage}")
        if out_activation not in (None, "sigmoid"):
            raise ValueError(f"out_activation must be None or 'sigmoid', got {out_activation!r}")
        self.config = {"in_channels": int(in_channels), "widths": list(widths),
                       "convs_per_stage": int(convs_per_stage), "out_activation": out_activation}
        cins = (in_channels,) + widths[:-1]
        self.encoder = nn.ModuleList(_conv_bn_relu(ci, co, convs_per_stage) for ci, co in zip(cins, widths))
        outs = (widths[0],) + widths[:-1]
        self.decoder = nn.ModuleList(_conv_bn_relu(widths[k], outs[k], convs_per_stage)
                                     for k in reversed(range(len(widths))))
        self.head = nn.Conv2d(widths[0], in_channels, 1)
        self.out_activation = out_activation

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor], list[torch.Size]]:
        """Code, pooling indices (one per stage) and pre-pool sizes (for unpooling odd sizes)."""
        indices, sizes = [], []
        for stage in self.encoder:
            x = stage(x)
            sizes.append(x.shape)
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            indices.append(idx)
        return x, indices, sizes

    def decode(self, z: Tensor, indices: Sequence[Tensor], sizes: Sequence[torch.Size]) -> Tensor:
        for stage, idx, size in zip(self.decoder, reversed(indices), reversed(sizes)):
            z = stage(F.max_unpool2d(z, idx, 2, 2, output_size=size[-2:]))
        out = self.head(z)
        return torch.sigmoid(out) if self.out_activation == "sigmoid" else out

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(*self.encode(x))


def build_autoencoder(in_channels: int = 1, widths: Sequence[int] = (16, 32), *, seed: int = 0,
                      **kw: Any) -> SegNetAE:
    """A freshly initialised :class:`SegNetAE`; the same ``seed`` gives the same weights (the caller's
    global RNG state is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SegNetAE(in_channels, widths, **kw)


# --------------------------------------------------------------------------- freezing and fingerprints


def _fingerprint(*items: Any) -> str:
    """A short hash of tensors / modules' state dicts / plain values (decides whether a checkpoint fits)."""
    h = hashlib.blake2b(digest_size=12)
    for item in items:
        if isinstance(item, nn.Module):
            for k, v in item.state_dict().items():
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes() if v.dtype != torch.bfloat16
                         else v.float().cpu().numpy().tobytes())
        elif isinstance(item, Tensor):
            h.update(str((tuple(item.shape), item.dtype)).encode())
            h.update(item.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr(item).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- training (both stages)


@torch.no_grad()
def recalibrate_batchnorm(ae: SegNetAE, images: Tensor, *, part: Literal["all", "decoder"] = "all",
                          batch_size: int = 256, device: str | torch.device | None = None) -> SegNetAE:
    """Re-estimate the running statistics of the BatchNorm layers of ``part`` as exact averages over
    ``images`` ("precise BN", Wu & Johnson 2021); weights and the other layers are untouched.

    Why: with the default momentum (0.1) the running averages lag behind the weights after short training
    (tens to hundreds of steps, as in the demo), so the eval-mode autoencoder -- the one that is measured --
    would differ from the one that was trained. ``part="decoder"`` leaves a frozen encoder's statistics
    alone (stage 2). (:func:`infolens._torch.recalibrate_batchnorm` does the work.)
    """
    if part not in ("all", "decoder"):
        raise ValueError(f"part must be 'all' or 'decoder', got {part!r}")
    images = check_images(images, allow_3d=False)
    device = torch.device(device) if device is not None else images.device
    _recalibrate_bn(ae, images, batch_size=batch_size, device=device,
                scope=[ae.decoder] if part == "decoder" else None)
    return ae



@dataclass
class FitResult:
    """The autoencoder after a stage, and one history row per epoch (``stage, epoch, step, loss,
    train_acc, seconds``). ``resumed`` is ``"final"`` (the stage's checkpoint was loaded, nothing was
    computed), ``"partial"`` (continued from a mid-stage checkpoint) or ``None``; ``finished`` is False
    when ``stop_after`` ended the stage early."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed: str | None = None
    finished: bool = True
    seconds: float = 0.0


def _partial_path(path: Path) -> Path:
    return path.with_name(path.stem + ".partial" + path.suffix)


def _load(path: Path, config: Mapping[str, Any], progress: bool) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if ck.get("format") != _FORMAT or ck.get("config") != dict(config):
        _progress.say(f"[signal] {path.name} was made with other settings; recomputing it", progress=progress)
        return None
    return ck


def _fit(ae: nn.Module, step_fn: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor | int]],
         params: list[nn.Parameter], images: Tensor, labels: Tensor | None, *, stage: str, config: dict[str, Any],
         set_modes: Callable[[], None], epochs: int, batch_size: int, lr: float, seed: int, device: torch.device,
         checkpoint: str | Path | None, checkpoint_every: int | None, stop_after: int | None,
         progress: bool, calibrate: Callable[[], None] | None = None) -> FitResult:
    """Shared loop: Adam on ``params``, epochs over a per-(seed, epoch) permutation, checkpoints and resume.

    Every step's batch is a function of (seed, epoch, step) only, so a resumed stage follows the
    same path as an uninterrupted one. ``calibrate`` runs once the last step is done, before the
    stage's final checkpoint (BatchNorm statistics, see :func:`recalibrate_batchnorm`).
    """
    t0 = time.perf_counter()
    path = Path(checkpoint) if checkpoint is not None else None
    n = images.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    opt = torch.optim.Adam(params, lr=lr)
    history: list[dict[str, Any]] = []
    start, resumed = 0, None
    if path is not None:
        ck = _load(path, config, progress)
        if ck is not None:
            ae.load_state_dict(ck["state"])
            ae.eval()
            return FitResult(ae, ck["history"], resumed="final", seconds=time.perf_counter() - t0)
        ck = _load(_partial_path(path), config, progress)
        if ck is not None:
            ae.load_state_dict(ck["state"])
            opt.load_state_dict(ck["optimizer"])
            start, history, resumed = int(ck["step"]), list(ck["history"]), "partial"

    def save(step: int, final: bool) -> None:
        if path is None:
            return
        obj = {"format": _FORMAT, "stage": stage, "config": dict(config), "step": step, "history": history,
               "state": {k: v.detach().cpu() for k, v in ae.state_dict().items()}}
        if final:
            atomic_torch_save(obj, path)
            _partial_path(path).unlink(missing_ok=True)
        else:
            obj["optimizer"] = opt.state_dict()
            atomic_torch_save(obj, _partial_path(path))

    loss_sum, correct, seen = 0.0, 0, 0
    perm: Tensor | None = None
    finished = True
    # denormal floats (Adam moments, tiny gradients) slow CPU convolutions several-fold; flushing them
    # changes no result that matters (models.flush_denormal does the same for the classifiers)
    flushed = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        for step in _progress.track(range(start, total), desc=stage, total=total - start, progress=progress):
            epoch, k = divmod(step, steps_per_epoch)
            if k == 0 or perm is None:
                perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
            idx = perm[k * batch_size:(k + 1) * batch_size]
            x = images[idx].to(device, non_blocking=True)
            y = labels[idx].to(device, non_blocking=True) if labels is not None else None
            set_modes()
            loss, hits = step_fn(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done = step + 1
            # accumulated on the device (float64, as Python floats would): no host sync per step
            loss_sum = loss_sum + loss.detach().double() * x.shape[0]
            correct = correct + hits
            seen += x.shape[0]
            if done % steps_per_epoch == 0:
                history.append({"stage": stage, "epoch": done // steps_per_epoch, "step": done,
                                "loss": float(loss_sum) / max(seen, 1),
                                "train_acc": int(correct) / max(seen, 1) if labels is not None else None,
                                "seconds": round(time.perf_counter() - t0, 3)})
                loss_sum, correct, seen = 0.0, 0, 0
            if done < total and (done % steps_per_epoch == 0 or (checkpoint_every and done % checkpoint_every == 0)
                                 or (stop_after is not None and done >= stop_after)):
                save(done, final=False)
            if stop_after is not None and done >= stop_after and done < total:
                finished = False
                break
        if finished:
            if calibrate is not None:
                calibrate()
            save(total, final=True)
    finally:
        if flushed:
            torch.set_flush_denormal(False)
    ae.eval()
    return FitResult(ae, history, resumed=resumed, finished=finished, seconds=time.perf_counter() - t0)


def _check_fit_args(ae: nn.Module, images: Tensor, epochs: int, batch_size: int, lr: float) -> Tensor:
    if not isinstance(ae, nn.Module):
        raise TypeError(f"ae must be an nn.Module (e.g. SegNetAE), got {type(ae).__name__}")
    images = check_images(images, allow_3d=False)
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    check_positive(lr, "lr")
    return images


def pretrain_autoencoder(ae: nn.Module, images: Tensor, *, epochs: int = 1, batch_size: int = 64,
                         lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
                         checkpoint: str | Path | None = None, checkpoint_every: int | None = None,
                         stop_after: int | None = None, calibration_images: int = 2048,
                         progress: bool = True) -> FitResult:
    """Stage 1: train ``ae`` (in place) to reconstruct ``images`` ``(N, C, H, W)`` in [0, 1].

    Loss: mean squared error between reconstruction and image (reading: the paper trains SegNet to
    reconstruct; MSE is our choice). Adam, ``lr`` 1e-3 (reading). ``checkpoint``: the stage's final
    state is saved there atomically, and a run that finds it (made with the same settings, data and
    initial weights) loads it instead of training; a mid-stage checkpoint (``NAME.partial.pt``) is
    written at the end of each epoch (and every ``checkpoint_every`` steps) and resumed from.
    ``stop_after`` stops after that many steps in total, leaving the mid-stage checkpoint. At the end
    the BatchNorm statistics are re-estimated on the first ``calibration_images`` images
    (:func:`recalibrate_batchnorm`; 0 keeps the running averages).
    """
    images = _check_fit_args(ae, images, epochs, batch_size, lr)
    if not isinstance(ae, SegNetAE):
        raise TypeError(f"ae must be a SegNetAE, got {type(ae).__name__}")
    device = torch.device(device)
    ae.to(device)
    config = {"stage": "pretrain", "epochs": epochs, "batch_size": batch_size, "lr": float(lr), "seed": seed,
              "calibration_images": calibration_images, "init": _fingerprint(ae), "data": _fingerprint(images)}

    def calibrate() -> None:
        if calibration_images > 0:
            recalibrate_batchnorm(ae, images[:calibration_images], device=device)

    def step_fn(x: Tensor, _: Tensor | None) -> tuple[Tensor, int]:
        return F.mse_loss(ae(x), x), 0

    return _fit(ae, step_fn, list(ae.parameters()), images, None, stage="pretrain", config=config,
                set_modes=lambda: ae.train(), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                device=device, checkpoint=checkpoint, checkpoint_every=checkpoint_every, stop_after=stop_after,
                progress=progress, calibrate=calibrate)


def finetune_through_classifier(ae: SegNetAE, classifier: nn.Module, images: Tensor, labels: Tensor, *,
                                tune: Literal["decoder", "all"] = "decoder", epochs: int = 1,
                                batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                                device: str | torch.device = "cpu", checkpoint: str | Path | None = None,
                                checkpoint_every: int | None = None, stop_after: int | None = None,
                                calibration_images: int = 2048, progress: bool = True) -> FitResult:
    """Stage 2: tune ``ae`` (in place) so that the frozen ``classifier`` recognises its reconstructions.

    Loss: ``cross_entropy(classifier(ae(x)), y)`` with the true labels ``y`` and no pixel term
    (arXiv 1803.08337, reading of its pipeline figure). The classifier is frozen (eval mode,
    ``requires_grad=False``; its parameters and buffers are bit-identical afterwards and its flags are
    restored); the optimiser sees only autoencoder parameters: the decoder's and head's with
    ``tune="decoder"`` (the paper's S2SNets; the encoder then runs in eval mode without gradients), or
    all of them with ``tune="all"``. Checkpoints and resume as :func:`pretrain_autoencoder`; the
    checkpoint also records the classifier's and the starting autoencoder's fingerprints. At the end the
    BatchNorm statistics of the tuned part are re-estimated on the first ``calibration_images`` images.
    """
    images = _check_fit_args(ae, images, epochs, batch_size, lr)
    if not isinstance(ae, SegNetAE):
        raise TypeError(f"ae must be a SegNetAE (encode/decode with pooling indices), got {type(ae).__name__}")
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"classifier must be an nn.Module, got {type(classifier).__name__}")
    labels = check_targets(labels, images.shape[0], name="labels")
    if labels is None or bool((labels < 0).any()):
        raise ValueError("labels must hold a class index >= 0 for every image (use the classifier's own "
                         "predictions on the originals where true labels are unknown)")
    if tune not in ("decoder", "all"):
        raise ValueError(f"tune must be 'decoder' or 'all', got {tune!r}")
    device = torch.device(device)
    ae.to(device)
    classifier.to(device)
    if tune == "decoder":
        params = list(ae.decoder.parameters()) + list(ae.head.parameters())
    else:
        params = list(ae.parameters())
    config = {"stage": "finetune", "tune": tune, "epochs": epochs, "batch_size": batch_size, "lr": float(lr),
              "seed": seed, "init": _fingerprint(ae), "classifier": _fingerprint(classifier),
              "calibration_images": calibration_images, "data": _fingerprint(images, labels)}

    def calibrate() -> None:
        if calibration_images > 0:
            recalibrate_batchnorm(ae, images[:calibration_images], part="decoder" if tune == "decoder" else "all",
                                  device=device)

    def set_modes() -> None:
        ae.train()
        if tune == "decoder":
            ae.encoder.eval()

    def step_fn(x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        if tune == "decoder":
            with torch.no_grad():
                code = ae.encode(x)
            recon = ae.decode(*code)
        else:
            recon = ae(x)
        logits = classifier(recon)
        return F.cross_entropy(logits, y), (logits.detach().argmax(1) == y).sum()  # a tensor: no sync per step

    enc_flags = [p.requires_grad for p in ae.encoder.parameters()]
    try:
        if tune == "decoder":
            for p in ae.encoder.parameters():
                p.requires_grad_(False)
        with frozen(classifier):
            return _fit(ae, step_fn, params, images, labels, stage="finetune", config=config, set_modes=set_modes,
                        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                        checkpoint=checkpoint, checkpoint_every=checkpoint_every, stop_after=stop_after,
                        progress=progress, calibrate=calibrate)
    finally:
        for p, f in zip(ae.encoder.parameters(), enc_flags):
            p.requires_grad_(f)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def _eval_batched(module: nn.Module, images: Tensor, batch_size: int, device: str | torch.device | None) -> Tensor:
    """``module(images)`` in eval mode, in batches, on ``device``; the module comes back as it was passed
    (every submodule's mode, flags and buffers: :func:`infolens._torch.frozen`)."""
    images = check_images(images, allow_3d=False, model=module)
    device = torch.device(device) if device is not None else images.device
    with frozen(module):
        return torch.cat([module(images[i:i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)])


@torch.no_grad()
def reconstruct(ae: nn.Module, images: Tensor, *, batch_size: int = 512,
                device: str | torch.device | None = None) -> Tensor:
    """``ae(images)`` in eval mode, in batches, on ``device`` (default: the images' device)."""
    return _eval_batched(ae, images, batch_size, device)


@torch.no_grad()
def classify(classifier: nn.Module, images: Tensor, *, batch_size: int = 512,
             device: str | torch.device | None = None) -> Tensor:
    """The classifier's logits for ``images`` (eval mode, batched, no gradients), on ``device``."""
    return _eval_batched(classifier, images, batch_size, device)


def predict(classifier: nn.Module, images: Tensor, *, batch_size: int = 512,
            device: str | torch.device | None = None) -> Tensor:
    """Top-1 class of each image (eval mode, batched), as a LongTensor on ``device``."""
    return classify(classifier, images, batch_size=batch_size, device=device).argmax(1)


# --------------------------------------------------------------------------- normalised mutual information


def quantize(x: Tensor, *, bins: int = 256) -> Tensor:
    """Pixels in [0, 1] to integer levels ``0..bins-1``: ``round(clip(x, 0, 1) * (bins - 1))``.

    With ``bins=256`` an 8-bit image stored as ``k / 255`` gets back exactly ``k``. Integer tensors are
    taken as already quantised and must lie in ``[0, bins)``.
    """
    if not x.is_floating_point():
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= bins):
            raise ValueError(f"integer pixels must lie in [0, {bins}), got range [{int(x.min())}, {int(x.max())}]")
        return x.long()
    return (x.clamp(0, 1) * (bins - 1)).round().long()


def _entropy(counts: Tensor, total: float) -> Tensor:
    """Plug-in entropy (nats) of each row of a histogram of ``total`` samples."""
    return math.log(total) - torch.special.xlogy(counts, counts).sum(-1) / total


@dataclass(frozen=True)
class MutualInformation:
    """Per-image plug-in mutual information and entropies (nats), from :func:`mutual_information`.

    ``mi``, ``entropy_a``, ``entropy_b``: ``(N,)`` float64; ``constant_a`` / ``constant_b``: the image
    has a single level (entropy 0). :meth:`normalized` turns them into NMI with any of the averages, so
    the histograms are computed once for several normalisations.
    """

    mi: Tensor
    entropy_a: Tensor
    entropy_b: Tensor
    constant_a: Tensor
    constant_b: Tensor

    def normalized(self, average: Average = "arithmetic") -> Tensor:
        """``mi / mean(entropy_a, entropy_b)`` with scikit-learn's limit cases (both constant: 1; one: 0)."""
        if average not in _AVERAGES:
            raise ValueError(f"average must be one of {', '.join(_AVERAGES)}, got {average!r}")
        ha, hb = self.entropy_a, self.entropy_b
        if average == "arithmetic":
            norm = (ha + hb) / 2
        elif average == "geometric":
            norm = torch.sqrt(ha * hb)
        elif average == "min":
            norm = torch.minimum(ha, hb)
        else:
            norm = torch.maximum(ha, hb)
        one_a, one_b = self.constant_a, self.constant_b
        out = torch.where(one_a | one_b, torch.zeros_like(self.mi), self.mi / norm.clamp_min(1e-300))
        return torch.where(one_a & one_b, torch.ones_like(out), out)


def mutual_information(a: Tensor, b: Tensor, *, bins: int = 256) -> MutualInformation:
    """Plug-in mutual information between the pixels of ``a[i]`` and ``b[i]``, per image.

    Pixels are quantised with :func:`quantize` to ``bins`` levels (256: the paper's reading), then
    ``I(A; B) = sum_xy p(x, y) log(p(x, y) / (p(x) p(y)))`` over the pixels of one image (nats), as
    ``sklearn.metrics.mutual_info_score(qa.ravel(), qb.ravel())`` computes it.

    Vectorised over the batch: the marginal histograms are one ``bincount`` over ``(image, level)``
    keys, the joint histograms one sort-based count of ``(image, level_a, level_b)`` keys (sparse: at
    most H*W cells per image, so memory stays O(N*H*W) rather than O(N*bins^2)). Float64 sums.
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"a and b must be torch.Tensors of shape (N, ...), got {type(a).__name__} and "
                        f"{type(b).__name__}")
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"a and b must have the same shape (N, ...) with at least 2 dimensions, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if not (isinstance(bins, int) and bins >= 2):
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    for name, t in (("a", a), ("b", b)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    n = a.shape[0]
    qa, qb = quantize(a, bins=bins).reshape(n, -1), quantize(b, bins=bins).reshape(n, -1)
    p = qa.shape[1]
    if p == 0:
        raise ValueError(f"a and b have no pixels per image (shape {tuple(a.shape)})")
    row = torch.arange(n, device=qa.device).unsqueeze(1) * bins
    ca = torch.bincount((row + qa).flatten(), minlength=n * bins).view(n, bins).double()
    cb = torch.bincount((row + qb).flatten(), minlength=n * bins).view(n, bins).double()
    # joint: sort each image's (level_a, level_b) keys, then run lengths = counts of the nonzero cells
    small = torch.int32 if bins * bins < 2 ** 31 else torch.int64
    keys = torch.sort((qa * bins + qb).to(small), dim=1).values.flatten()
    first = torch.ones_like(keys, dtype=torch.bool)
    first[1:] = keys[1:] != keys[:-1]
    first[::p] = True  # a new image starts a new cell
    starts = first.nonzero().squeeze(1)
    cj = torch.diff(starts, append=starts.new_tensor([keys.numel()])).double()
    cell = keys[starts].long()
    img = starts // p
    la, lb = img * bins + cell // bins, img * bins + cell % bins
    terms = cj * (torch.log(cj) + math.log(p) - torch.log(ca.flatten()[la]) - torch.log(cb.flatten()[lb]))
    mi = torch.zeros(n, dtype=torch.float64, device=qa.device).index_add_(0, img, terms / p).clamp_min(0)
    return MutualInformation(mi, _entropy(ca, p), _entropy(cb, p), (ca > 0).sum(1) == 1, (cb > 0).sum(1) == 1)


def nmi(a: Tensor, b: Tensor, *, bins: int = 256, average: Average = "arithmetic") -> Tensor:
    """Normalised mutual information between the pixels of ``a[i]`` and ``b[i]``, per image: ``(N,)``.

    ``NMI = I(A; B) / mean(H(A), H(B))`` (:func:`mutual_information`, 256 levels by default as in the
    paper's reading). ``average`` picks the mean: ``"arithmetic"`` (scikit-learn's default since 0.22),
    ``"geometric"`` (sklearn's default before; likely what a 2018 computation used), ``"min"`` or
    ``"max"``. Equal to ``sklearn.metrics.normalized_mutual_info_score(qa.ravel(), qb.ravel(),
    average_method=average)`` on the quantised pixels, including its limit cases: both images constant
    gives 1, one constant gives 0.

    Finite-sample bias: the plug-in MI of *independent* images is not 0 but about
    ``(Ka - 1)(Kb - 1) / (2 P)`` nats for Ka, Kb occupied levels and P pixels (Miller-Madow /
    Panzeri-Treves), see :func:`nmi_noise_bias`; on 28 x 28 images with many grey levels this is large
    (uniform noise gives NMI ~ 0.75), so compare against a chance level (e.g. pixel-permuted pairs).
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {', '.join(_AVERAGES)}, got {average!r}")
    return mutual_information(a, b, bins=bins).normalized(average)


def nmi_noise_bias(levels_a: Tensor | float, levels_b: Tensor | float, pixels: int,
                   entropy_a: Tensor | float, entropy_b: Tensor | float) -> Tensor:
    """First-order expected plug-in NMI of two *independent* images (arithmetic normalisation):
    ``(Ka - 1)(Kb - 1) / (2 P) / ((Ha + Hb) / 2)`` (Miller 1955; Panzeri & Treves 1996). Valid while
    ``Ka * Kb << P``; for small images with many grey levels the true bias saturates below this."""
    bias = (torch.as_tensor(levels_a, dtype=torch.float64) - 1) * (torch.as_tensor(levels_b, dtype=torch.float64) - 1)
    return bias / (2 * pixels) / ((torch.as_tensor(entropy_a, dtype=torch.float64)
                                   + torch.as_tensor(entropy_b, dtype=torch.float64)) / 2)


# --------------------------------------------------------------------------- the order


@dataclass
class SignalOrder:
    """The order of classifiers by the signal they let in (see :func:`signal_order`).

    ``matrix[a, b]``: accuracy of classifier ``b`` on reconstructions tuned for ``a``. ``pairs``: one
    dict per unordered pair (``a, b, acc_ab, acc_ba, diff, se, z, decided, more``). ``beats[a, b]``:
    ``a`` lets in more signal than ``b``, decided. ``is_total``: every pair decided and the relation
    transitive. ``ranking``: names from most to least signal (by wins, then by the mean accuracy of the
    other classifiers on the row). ``cycles``: triples ``(a, b, c)`` with a > b > c > a.
    """

    names: list[str]
    matrix: Tensor
    pairs: list[dict[str, Any]]
    beats: Tensor
    wins: Tensor
    row_mean: Tensor
    ranking: list[str]
    is_transitive: bool
    is_total: bool
    cycles: list[tuple[str, str, str]]

    def describe(self) -> str:
        """``"a > b > c"`` when total, else the decided comparisons and the cycles."""
        if self.is_total:
            return " > ".join(self.ranking)
        parts = [f"{p['more']} > {p['b'] if p['more'] == p['a'] else p['a']}" for p in self.pairs if p["decided"]]
        undecided = [f"{p['a']} ~ {p['b']}" for p in self.pairs if not p["decided"]]
        cyc = [" > ".join(c + (c[0],)) for c in self.cycles]
        return "; ".join(parts + undecided + [f"cycle {c}" for c in cyc]) or "no pair decided"


def signal_order(correct: Tensor, names: Sequence[str], *, z: float = 2.0) -> SignalOrder:
    """Order classifiers by the signal they let in, from the cross-classifier results.

    ``correct``: either per-image outcomes, shape ``(K, K, N)``, ``correct[a, b, i]`` = classifier ``b``
    is right on image ``i`` reconstructed by the autoencoder tuned for ``a``; or the accuracy matrix
    ``(K, K)`` itself (then no standard errors: any nonzero difference decides).

    Definition (ours; the paper reads the order off the off-diagonal pattern): ``a`` lets in more
    signal than ``b`` when ``acc[a -> b] > acc[b -> a]``, i.e. ``b`` reads ``a``'s reconstructions
    better than ``a`` reads ``b``'s: what ``a`` needs contains what ``b`` needs, not conversely. A pair
    is *decided* when the paired difference exceeds ``z`` standard errors (``se`` of the per-image
    differences on the same test images). The order is *total* when every pair is decided and the
    relation is transitive (a tournament with no cycle).
    """
    names = list(names)
    k = len(names)
    c = correct.double()
    if c.ndim not in (2, 3) or c.shape[0] != k or c.shape[1] != k:
        raise ValueError(f"correct must have shape (K, K) or (K, K, N) with K = {k} names, got {tuple(c.shape)}")
    matrix = c.mean(-1) if c.ndim == 3 else c
    diff = matrix - matrix.T
    if c.ndim == 3 and c.shape[-1] > 1:
        d = c - c.transpose(0, 1)
        se = d.std(-1) / math.sqrt(c.shape[-1])
    else:
        se = torch.zeros_like(matrix)
    beats = (diff > 0) & (diff.abs() > z * se)
    eye = torch.eye(k, dtype=torch.bool, device=beats.device)
    beats &= ~eye
    pairs = []
    for a in range(k):
        for b in range(a + 1, k):
            dec = bool(beats[a, b] | beats[b, a])
            pairs.append({"a": names[a], "b": names[b], "acc_ab": float(matrix[a, b]), "acc_ba": float(matrix[b, a]),
                          "diff": float(diff[a, b]), "se": float(se[a, b]),
                          "z": float(diff[a, b] / se[a, b]) if se[a, b] > 0 else (math.inf if diff[a, b] else 0.0),
                          "decided": dec, "more": (names[a] if beats[a, b] else names[b]) if dec else ""})
    bi = beats.long()
    two_step = (bi @ bi) > 0
    is_transitive = not bool((two_step & ~beats).any())
    cyc = torch.einsum("ab,bc,ca->abc", bi, bi, bi).nonzero().tolist()
    cycles = sorted({min((names[x], names[y], names[w]), (names[y], names[w], names[x]), (names[w], names[x], names[y]))
                     for x, y, w in cyc})
    n_pairs = k * (k - 1) // 2
    is_total = is_transitive and all(p["decided"] for p in pairs) and len(pairs) == n_pairs
    wins = beats.sum(1)
    off = matrix.masked_fill(eye, 0).sum(1) / max(k - 1, 1)
    ranking = sorted(names, key=lambda nm: (-int(wins[names.index(nm)]), -float(off[names.index(nm)])))
    return SignalOrder(names, matrix, pairs, beats, wins, off, ranking, is_transitive, is_total, cycles)
