"""The SegNet-style autoencoder of arXiv 1803.08337 and its two training stages.

* stage 1 (:func:`pretrain_autoencoder`): reconstruct the images (mean squared error);
* stage 2 (:func:`finetune_through_classifier`): a copy is tuned through a *frozen* classifier on that
  classifier's cross-entropy with the true labels, with no pixel term (the "S2SNets").

Both stages run to a plateau of a held-out loss (a rule fixed before any result was seen, see
:func:`_fit`); stage 2 keeps its best held-out state. Neither writes a file: each hands its checkpoints
to an ``on_checkpoint`` callback and resumes bit-identically from a ``resume`` mapping (the runner saves
and loads them).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import _progress
from .._checks import check_images, check_positive, check_targets
from .._torch import flush_denormal, fork_rng, frozen
from .._torch import recalibrate_batchnorm

_FORMAT = "infolens.signal/3"


# --------------------------------------------------------------------------- the autoencoder


def _stage(widths: Sequence[int]) -> nn.Sequential:
    """conv3x3 (bias) - BatchNorm - ReLU for each consecutive pair of ``widths``, as SegNet's stages."""
    layers: list[nn.Module] = []
    for cin, cout in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SegNetAE(nn.Module):
    """SegNet-style encoder-decoder (Badrinarayanan et al. 2017; the autoencoder of arXiv 1803.08337 and
    of the authors' released ``models/segnet_autoencoder.py``), scaled to the data.

    Encoder: per stage ``convs_per_stage`` x (conv3x3 - BatchNorm - ReLU), then a 2x2 max-pool that keeps
    its indices. Decoder (mirrored, as the released code): unpool by those indices, ``convs_per_stage``
    x (conv3x3 - BatchNorm - ReLU) whose last one narrows to the next stage's width, and a final 1x1
    convolution to ``in_channels`` with **no activation** (the released decoder's ``conv_final``: it
    outputs pixels in whatever range the decoder likes, which is scored as it comes out).

    Default: ``widths=(16, 32)``, two convolutions per stage, two pooling stages (28 -> 14 -> 7), 28 k
    parameters. Deviation: the paper's SegNet has five stages and 13 + 13 convolutions (29 M parameters)
    for 224 x 224 photographs; on 28 x 28 digits two stages keep a 7 x 7 code. Layer names:
    ``encoder.K``, ``decoder.K``, ``head``.
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32), *, convs_per_stage: int = 2,
                 out_activation: Literal["sigmoid"] | None = None) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}")
        if not (isinstance(convs_per_stage, int) and convs_per_stage >= 1):
            raise ValueError(f"convs_per_stage must be an int >= 1, got {convs_per_stage!r}")
        if out_activation not in (None, "sigmoid"):
            raise ValueError(f"out_activation must be None (the released code) or 'sigmoid', got {out_activation!r}")
        self.config = {"in_channels": int(in_channels), "widths": list(widths),
                       "convs_per_stage": int(convs_per_stage), "out_activation": out_activation}
        cins = (int(in_channels),) + widths[:-1]
        self.encoder = nn.ModuleList(_stage([ci] + [co] * convs_per_stage) for ci, co in zip(cins, widths))
        outs = (widths[0],) + widths[:-1]
        self.decoder = nn.ModuleList(_stage([widths[k]] * convs_per_stage + [outs[k]])
                                     for k in reversed(range(len(widths))))
        self.head = nn.Conv2d(widths[0], int(in_channels), 1)
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
    with fork_rng(seed):
        return SegNetAE(in_channels, widths, **kw)


def fingerprint(*items: Any) -> str:
    """A short hash of modules' state dicts / tensors / plain values (decides whether a checkpoint fits)."""
    h = hashlib.blake2b(digest_size=12)
    for item in items:
        tensors = (list(item.state_dict().items()) if isinstance(item, nn.Module)
                   else [("", item)] if isinstance(item, Tensor) else None)
        if tensors is None:
            h.update(repr(item).encode())
            continue
        for k, v in tensors:
            h.update(f"{k}{tuple(v.shape)}{v.dtype}".encode())
            h.update(v.detach().cpu().float().contiguous().numpy().tobytes() if v.is_floating_point()
                     else v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- the shared training loop


@dataclass
class FitResult:
    """The autoencoder after a stage and its loss curve.

    ``history``: one row per held-out evaluation (``stage, step, epoch, train_loss, val_loss, val_acc,
    seconds``; ``epoch`` is fractional). ``plateau``: the stopping rule fired (False: ``max_steps`` was
    reached first, or ``stop_after`` interrupted the stage). ``resumed``: ``"final"`` (the finished
    stage was loaded), ``"partial"`` (continued from a mid-stage checkpoint) or ``None``. ``kept_step``:
    the step whose state ``model`` holds (the best held-out evaluation when the stage keeps its best,
    else the last step)."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    plateau: bool = False
    resumed: str | None = None
    finished: bool = True
    seconds: float = 0.0
    steps: int = 0
    kept_step: int | None = None

    def kept(self) -> dict[str, Any]:
        """The history row of the kept state (the last row when no evaluation has the kept step)."""
        rows = [h for h in self.history if h["step"] == self.kept_step]
        return rows[-1] if rows else (self.history[-1] if self.history else {})

    @property
    def val_loss(self) -> float:
        """The held-out loss of the kept state (NaN without evaluations)."""
        return float(self.kept().get("val_loss", math.nan))


def plateaued(val_losses: Sequence[float], *, patience: int, tol: float) -> bool:
    """The stopping rule (fixed before any result was seen): the held-out loss has not improved on its
    best by more than ``tol`` (relative) for ``patience`` consecutive evaluations."""
    best, since = math.inf, 0
    for v in val_losses:
        if v < best * (1 - tol):
            best, since = v, 0
        else:
            since += 1
            best = min(best, v)
    return since >= patience


def best_evaluation(val_losses: Sequence[float]) -> int | None:
    """Index of the best (lowest) finite held-out loss, the earliest on ties; None when none is finite.
    The state a stage that keeps its best returns (stage 2: fixed before any result was seen)."""
    best, at = math.inf, None
    for i, v in enumerate(val_losses):
        if math.isfinite(v) and v < best:
            best, at = v, i
    return at


Checkpoint = Mapping[str, Any]
"""What a stage hands to ``on_checkpoint`` and accepts as ``resume``: ``format, stage, config, step,
history, plateau, final, state`` (+ ``optimizer``, ``best`` mid-stage)."""


def _usable(resume: Checkpoint | None, config: Mapping[str, Any], stage: str, progress: bool) -> Checkpoint | None:
    if resume is None:
        return None
    if not isinstance(resume, Mapping):
        raise TypeError(f"resume must be a checkpoint mapping handed to on_checkpoint earlier, got "
                        f"{type(resume).__name__}")
    if resume.get("format") != _FORMAT or resume.get("config") != dict(config):
        _progress.say(f"[signal] the {stage} checkpoint was made with other settings; recomputing it",
                      progress=progress)
        return None
    return resume


@dataclass(frozen=True)
class Schedule:
    """How long a stage runs: at most ``max_steps`` steps of ``batch_size`` images; the held-out loss is
    measured every ``eval_every`` steps and the stage stops at a plateau (:func:`plateaued` with
    ``patience`` and ``tol``). Adam with learning rate ``lr`` (reading: 1e-3, Adam's default; the paper's
    optimiser could not be read)."""

    max_steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    eval_every: int = 100
    patience: int = 3
    tol: float = 0.01

    def __post_init__(self) -> None:
        for k in ("max_steps", "batch_size", "eval_every", "patience"):
            v = getattr(self, k)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{k} must be an int >= 1, got {v!r}")
        check_positive(self.lr, "lr")
        if not 0 <= self.tol < 1:
            raise ValueError(f"tol must lie in [0, 1), got {self.tol}")


def _fit(ae: nn.Module, step_fn: Callable[[Tensor, Tensor | None], Tensor], params: list[nn.Parameter],
         images: Tensor, labels: Tensor | None, validate: Callable[[], tuple[float, float | None]] | None, *,
         stage: str, config: dict[str, Any], set_modes: Callable[[], None], schedule: Schedule, seed: int,
         device: torch.device, resume: Checkpoint | None, on_checkpoint: Callable[[dict[str, Any]], None] | None,
         stop_after: int | None, progress: bool, calibrate: Callable[[], None], keep_best: bool = False) -> FitResult:
    """Adam on ``params`` over per-(seed, epoch) permutations of the images; ``validate()`` (held-out loss,
    held-out accuracy or None) every ``schedule.eval_every`` steps; stop at a plateau or ``max_steps``.

    ``keep_best``: at the end the state of the best held-out evaluation (:func:`best_evaluation`, the
    initial state included) is restored exactly as it was evaluated (its BatchNorm buffers too:
    ``calibrate`` is not applied); without it, the last state is kept and ``calibrate`` runs. Every step's batch is a function of (seed,
    step) only and the validation consumes no randomness, so a resumed stage follows the same path as an
    uninterrupted one. At each evaluation ``on_checkpoint`` receives a mid-stage checkpoint (``final``
    False, with the optimiser and the best state so far), and once the stage ends the final one; passed
    back as ``resume`` with the same settings, a final checkpoint is loaded instead of trained and a
    mid-stage one continued. This function never writes a file.
    """
    t0 = time.perf_counter()
    sc = schedule
    n = images.shape[0]
    steps_per_epoch = math.ceil(n / sc.batch_size)
    opt = torch.optim.Adam(params, lr=sc.lr)
    history: list[dict[str, Any]] = []
    start, resumed = 0, None
    best: dict[str, Any] | None = None  # {"step", "state"} of the best evaluation so far (keep_best)
    ck = _usable(resume, config, stage, progress)
    if ck is not None and ck.get("final"):
        ae.load_state_dict(ck["state"])
        return FitResult(ae.eval(), list(ck["history"]), plateau=bool(ck["plateau"]), resumed="final",
                         seconds=time.perf_counter() - t0, steps=int(ck["step"]), kept_step=ck.get("kept_step"))
    if ck is not None:
        ae.load_state_dict(ck["state"])
        opt.load_state_dict(ck["optimizer"])
        start, history, resumed, best = int(ck["step"]), list(ck["history"]), "partial", ck.get("best")

    def snapshot() -> dict[str, Tensor]:
        return {k: v.detach().cpu().clone() for k, v in ae.state_dict().items()}

    def save(step: int, final: bool, plateau: bool, kept: int | None = None) -> None:
        if on_checkpoint is None:
            return
        obj = {"format": _FORMAT, "stage": stage, "config": dict(config), "step": step, "history": list(history),
               "plateau": plateau, "final": final, "state": snapshot()}
        if final:
            obj["kept_step"] = kept
        else:
            obj["optimizer"] = opt.state_dict()
            obj["best"] = best
        on_checkpoint(obj)

    def evaluate(done: int, train_loss: float) -> None:
        nonlocal best
        was = [(m, m.training) for m in ae.modules()]
        ae.eval()
        try:
            val, acc = validate() if validate is not None else (math.nan, None)
        finally:
            for m, t in was:
                m.training = t
        history.append({"stage": stage, "step": done, "epoch": round(done / steps_per_epoch, 4),
                        "train_loss": train_loss, "val_loss": val, "val_acc": acc,
                        "seconds": round(time.perf_counter() - t0, 3)})
        if keep_best and best_evaluation([h["val_loss"] for h in history]) == len(history) - 1:
            best = {"step": done, "state": snapshot()}

    if start == 0 and not history:
        evaluate(0, math.nan)  # the curve starts at the stage's initial state
    loss_sum, seen, done = 0.0, 0, start
    perm: Tensor | None = None
    plateau, finished = plateaued([h["val_loss"] for h in history], patience=sc.patience, tol=sc.tol), True
    with flush_denormal() if device.type == "cpu" else contextlib.nullcontext():
        for step in _progress.track(range(start, sc.max_steps), desc=stage, total=sc.max_steps - start,
                                    progress=progress):
            if plateau:
                break
            epoch, k = divmod(step, steps_per_epoch)
            if k == 0 or perm is None:
                perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
            idx = perm[k * sc.batch_size:(k + 1) * sc.batch_size]
            x = images[idx].to(device, non_blocking=True)
            y = labels[idx].to(device, non_blocking=True) if labels is not None else None
            set_modes()
            loss = step_fn(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done = step + 1
            # accumulated on the device (float64, as Python floats would): no host sync per step
            loss_sum = loss_sum + loss.detach().double() * x.shape[0]
            seen += x.shape[0]
            if done % sc.eval_every == 0 or done == sc.max_steps:
                evaluate(done, float(loss_sum) / max(seen, 1))
                loss_sum, seen = 0.0, 0
                plateau = plateaued([h["val_loss"] for h in history], patience=sc.patience, tol=sc.tol)
                if done < sc.max_steps and not plateau:
                    save(done, final=False, plateau=False)
            if stop_after is not None and done >= stop_after and done < sc.max_steps and not plateau:
                if done % sc.eval_every:
                    save(done, final=False, plateau=False)
                finished = False
                break
        kept: int | None = done
        if finished:
            if keep_best:
                # the state returned is the state the held-out curve chose, buffers included: recalibrating its
                # BatchNorm statistics afterwards would return a model nobody evaluated (for the untuned initial
                # state, one whose statistics come from other images than the ones it was trained on)
                if best is not None and best["step"] != done:
                    ae.load_state_dict(best["state"])
                    kept = int(best["step"])
            else:
                calibrate()
            save(done, final=True, plateau=plateau, kept=kept)
    ae.eval()
    return FitResult(ae, history, plateau=plateau, resumed=resumed, finished=finished,
                     seconds=time.perf_counter() - t0, steps=done, kept_step=kept)


def _check_fit_args(ae: nn.Module, images: Tensor, held_out: Any) -> Tensor:
    if not isinstance(ae, SegNetAE):
        raise TypeError(f"ae must be a SegNetAE (encode/decode with pooling indices), got {type(ae).__name__}")
    images = check_images(images, allow_3d=False)
    if held_out is not None and not isinstance(held_out, (tuple, list, Tensor)):
        raise TypeError(f"held_out must be images (stage 1) or (images, labels) (stage 2), got {type(held_out).__name__}")
    return images


@torch.no_grad()
def _batched_mean(fn: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]], x: Tensor, y: Tensor | None,
                  device: torch.device, batch_size: int = 500) -> tuple[float, float]:
    tot, hits = 0.0, 0.0
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(device)
        yb = y[i:i + batch_size].to(device) if y is not None else None
        loss_sum, hit = fn(xb, yb)
        tot += float(loss_sum)
        hits += float(hit)
    return tot / x.shape[0], hits / x.shape[0]


# --------------------------------------------------------------------------- stage 1


def pretrain_autoencoder(ae: SegNetAE, images: Tensor, *, held_out: Tensor | None = None,
                         schedule: Schedule = Schedule(), seed: int = 0, device: str | torch.device = "cpu",
                         resume: Checkpoint | None = None,
                         on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
                         stop_after: int | None = None, keep_best: bool = False,
                         calibration_images: int = 2048, progress: bool = True) -> FitResult:
    """Stage 1: train ``ae`` (in place) to reconstruct ``images`` ``(N, C, H, W)``.

    Loss: mean squared error between reconstruction and image (reading: the paper trains SegNet to
    reconstruct; the loss is not stated). Adam (``schedule``), batches from per-epoch permutations of
    ``images``. ``held_out`` images give the curve (MSE in eval mode every ``schedule.eval_every`` steps)
    and the plateau rule; without them the stage runs ``max_steps``. ``on_checkpoint(obj)`` receives a
    checkpoint at each evaluation and at the end (the caller saves it; this function writes no file);
    ``resume``: such a checkpoint: a finished stage made with the same settings, data and initial weights
    is loaded instead of trained, a mid-stage one is continued (others are ignored). ``keep_best``
    (default False: stage 1 keeps its last state): restore the best held-out state at the end. At the end
    the BatchNorm statistics are made exact on the first ``calibration_images`` images
    (:func:`infolens._torch.recalibrate_batchnorm`; 0 keeps running averages).
    """
    images = _check_fit_args(ae, images, held_out)
    device = torch.device(device)
    ae.to(device)
    val_x = check_images(held_out, name="held_out", allow_3d=False) if held_out is not None else None
    config = {"stage": "pretrain", "schedule": vars(schedule).copy(), "seed": seed,
              "calibration_images": calibration_images, "init": fingerprint(ae), "data": fingerprint(images),
              "held_out": fingerprint(val_x) if val_x is not None else None}

    def validate() -> tuple[float, None]:
        if val_x is None:
            return math.nan, None
        mse = lambda x, _: (F.mse_loss(ae(x), x, reduction="none").flatten(1).mean(1).sum(), torch.zeros(()))
        return _batched_mean(mse, val_x, None, device)[0], None

    def calibrate() -> None:
        if calibration_images > 0:
            recalibrate_batchnorm(ae, images[:calibration_images], batch_size=256, device=device)

    return _fit(ae, lambda x, _: F.mse_loss(ae(x), x), list(ae.parameters()), images, None, validate,
                stage="pretrain", config=config, set_modes=ae.train, schedule=schedule, seed=seed, device=device,
                resume=resume, on_checkpoint=on_checkpoint, stop_after=stop_after, progress=progress,
                calibrate=calibrate, keep_best=keep_best)


# --------------------------------------------------------------------------- stage 2


def tuned_parameters(ae: SegNetAE, tune: Literal["decoder", "all"] = "decoder") -> list[nn.Parameter]:
    """What stage 2 tunes: the decoder and its 1x1 head (``"decoder"``, the paper's S2SNets: the released
    code detaches the encoder's code and pooling indices when the encoder is frozen), or everything."""
    if tune == "decoder":
        return list(ae.decoder.parameters()) + list(ae.head.parameters())
    if tune == "all":
        return list(ae.parameters())
    raise ValueError(f"tune must be 'decoder' or 'all', got {tune!r}")


def finetune_through_classifier(ae: SegNetAE, classifier: nn.Module, images: Tensor, labels: Tensor, *,
                                held_out: tuple[Tensor, Tensor] | None = None,
                                tune: Literal["decoder", "all"] = "decoder",
                                schedule: Schedule = Schedule(max_steps=1000, eval_every=50), seed: int = 0,
                                device: str | torch.device = "cpu", resume: Checkpoint | None = None,
                                on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
                                stop_after: int | None = None, keep_best: bool = True,
                                calibration_images: int = 2048, progress: bool = True) -> FitResult:
    """Stage 2: tune ``ae`` (in place) so that the frozen ``classifier`` recognises its reconstructions.

    Loss: ``cross_entropy(classifier(ae(x)), y)`` with the true labels and **no pixel term** (arXiv
    1803.08337, reading of its pipeline figure); the reconstruction goes to the classifier as it comes
    out (no clipping). The classifier is frozen (:func:`infolens._torch.frozen`: eval mode, no weight
    gradients; parameters, buffers, modes and flags are bit-identical afterwards). With ``tune="decoder"``
    (default, the paper's S2SNets) the encoder runs in eval mode and its code and pooling indices are
    computed without gradients (detached, as the released code does), so only the decoder and head move:
    what a classifier can let in rests on what the pre-trained encoder keeps (its 7x7 code and the
    max-pool switch positions). ``held_out=(images, labels)``: the held-out cross-entropy and accuracy
    every ``schedule.eval_every`` steps give the curve and the plateau. ``keep_best`` (default True, fixed
    before any result was seen, amendment 1 of the claims): the stage returns the state of its best held-out
    cross-entropy (:func:`best_evaluation`, the untuned initial state included), not its last one.
    Checkpoints and resume as :func:`pretrain_autoencoder`. With ``keep_best`` the kept state is returned as
    it was evaluated, BatchNorm statistics included (the running averages of training); without it the
    BatchNorm statistics of the tuned part are made exact on ``calibration_images`` training images at the end.
    """
    images = _check_fit_args(ae, images, held_out)
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"classifier must be an nn.Module, got {type(classifier).__name__}")
    labels = check_targets(labels, images.shape[0], name="labels")
    if labels is None or bool((labels < 0).any()):
        raise ValueError("labels must hold a class index >= 0 for every image (use the classifier's own "
                         "predictions on the originals where true labels are unknown)")
    params = tuned_parameters(ae, tune)
    if held_out is not None:
        if not (isinstance(held_out, (tuple, list)) and len(held_out) == 2):
            raise TypeError("held_out must be a pair (images, labels) in stage 2")
        vx = check_images(held_out[0], name="held_out images", allow_3d=False)
        vy = check_targets(held_out[1], vx.shape[0], name="held_out labels")
    else:
        vx = vy = None
    device = torch.device(device)
    ae.to(device)
    classifier.to(device)
    config = {"stage": "finetune", "tune": tune, "schedule": vars(schedule).copy(), "seed": seed,
              "init": fingerprint(ae), "classifier": fingerprint(classifier),
              "calibration_images": 0 if keep_best else calibration_images, "kept": "best" if keep_best else "last",
              "data": fingerprint(images, labels), "held_out": fingerprint(vx, vy) if vx is not None else None}

    def forward(x: Tensor) -> Tensor:
        if tune == "decoder":
            with torch.no_grad():
                code = ae.encode(x)
            return ae.decode(*code)
        return ae(x)

    def set_modes() -> None:
        ae.train()
        if tune == "decoder":
            ae.encoder.eval()

    def step_fn(x: Tensor, y: Tensor | None) -> Tensor:
        return F.cross_entropy(classifier(forward(x)), y)

    def validate() -> tuple[float, float | None]:
        if vx is None:
            return math.nan, None

        def one(x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
            logits = classifier(ae(x))
            return F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) == y).sum()

        return _batched_mean(one, vx, vy, device)

    def calibrate() -> None:
        if calibration_images > 0:
            recalibrate_batchnorm(ae, images[:calibration_images], batch_size=256, device=device,
                                  scope=[ae.decoder, ae.head] if tune == "decoder" else None)

    enc_flags = [(p, p.requires_grad) for p in ae.encoder.parameters()]
    try:
        if tune == "decoder":
            for p, _ in enc_flags:
                p.requires_grad_(False)
        with frozen(classifier):
            return _fit(ae, step_fn, params, images, labels, validate, stage="finetune", config=config,
                        set_modes=set_modes, schedule=schedule, seed=seed, device=device, resume=resume,
                        on_checkpoint=on_checkpoint, stop_after=stop_after, progress=progress, calibrate=calibrate,
                        keep_best=keep_best)
    finally:
        for p, f in enc_flags:
            p.requires_grad_(f)


# --------------------------------------------------------------------------- evaluation helpers


@torch.no_grad()
def _eval_batched(module: nn.Module, images: Tensor, batch_size: int, device: str | torch.device | None) -> Tensor:
    """``module(images)`` in eval mode, in batches, on ``device``; the module comes back as it was passed
    (every submodule's mode, flags and buffers: :func:`infolens._torch.frozen`)."""
    images = check_images(images, allow_3d=False, model=module)
    device = torch.device(device) if device is not None else images.device
    with frozen(module):
        return torch.cat([module(images[i:i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)])


def reconstruct(ae: nn.Module, images: Tensor, *, batch_size: int = 512,
                device: str | torch.device | None = None) -> Tensor:
    """``ae(images)`` in eval mode, in batches, on ``device`` (default: the images' device); not clipped."""
    return _eval_batched(ae, images, batch_size, device)


def classify(classifier: nn.Module, images: Tensor, *, batch_size: int = 512,
             device: str | torch.device | None = None) -> Tensor:
    """The classifier's logits for ``images`` (eval mode, batched, no gradients), on ``device``."""
    return _eval_batched(classifier, images, batch_size, device)


def predict(classifier: nn.Module, images: Tensor, *, batch_size: int = 512,
            device: str | torch.device | None = None) -> Tensor:
    """Top-1 class of each image (eval mode, batched), as a LongTensor on ``device``."""
    return classify(classifier, images, batch_size=batch_size, device=device).argmax(1)
