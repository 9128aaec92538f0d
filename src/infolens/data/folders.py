"""Image folders read from disk with PIL (imported lazily, so the core needs only torch and numpy):
torchvision's ``ImageFolder`` layout or flat, any PIL mode, shorter side resized and centre-cropped."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ._common import _check_channels, _check_limit, _check_size

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
)
"""File extensions (lower case) that image folders are searched for, as in torchvision."""


def resize_center_crop(img, size: int):
    """Resize a PIL image so its shorter side is ``size`` (bilinear, antialiased), then centre-crop.

    The same transform as torchvision's ``Resize(size)`` + ``CenterCrop(size)``.
    """
    from PIL import Image

    w, h = img.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left = int(round((nw - size) / 2.0))
    top = int(round((nh - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


#: PIL modes of 16 bits per pixel: the value that maps to 1.0.
_DEEP_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


class _PixelRangeError(ValueError):
    """Pixel values whose scale cannot be told from the file (raised with the file's name)."""


def _deep_scale(arr: np.ndarray, mode: str) -> float:
    """The value that maps to 1.0 for a 32-bit PIL image (``"I"``: integers, as some Pillow versions open a
    16-bit PNG; ``"F"``: floats, e.g. a 32-bit float TIFF), read from the file's range where it is
    unambiguous: floats in [0, 1] are taken as they are, floats in [0, 255] with a maximum above 1 as 8-bit
    values, integers in [0, 65535] as 16-bit values. Anything else (negative values, floats above 255,
    NaN/inf, integers above 65535) is refused: clipping it would give a white or black image silently."""
    if not bool(np.isfinite(arr).all()):
        raise _PixelRangeError(f"{int((~np.isfinite(arr)).sum())} pixel values are NaN or inf")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if mode == "I":
        if lo >= 0 and hi <= 65535:
            return 65535.0
        raise _PixelRangeError(f"32-bit integer pixels span [{lo:g}, {hi:g}], outside the 16-bit range [0, 65535]")
    if lo >= 0 and hi <= 1:
        return 1.0
    if lo >= 0 and hi <= 255:
        return 255.0
    raise _PixelRangeError(f"float pixels span [{lo:g}, {hi:g}], neither [0, 1] nor [0, 255], so their scale is "
                           f"unknown")


def _to_array(img, channels: int) -> np.ndarray:
    """A PIL image of any mode as ``(H, W, channels)``: uint8 for 8-bit modes, float32 in [0, 1] for deep
    ones (16-bit gray is scaled by 1/65535, never clipped to 255; 32-bit ones by their range, see
    :func:`_deep_scale`)."""
    if img.mode in _DEEP_MODES or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64 if img.mode in ("I", "F") else np.float32)
        scale = _DEEP_MODES[img.mode] if img.mode in _DEEP_MODES else _deep_scale(arr, img.mode)
        arr = np.clip(arr / scale, 0.0, 1.0).astype(np.float32)
        return np.repeat(arr[:, :, None], channels, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # PIL warns when a palette image with transparency goes straight to RGB/L
    if img.mode not in ("L", "RGB"):
        img = img.convert("L" if channels == 1 else "RGB")  # 1, LA, P, RGBA (alpha dropped), CMYK, YCbCr
    elif img.mode != ("L" if channels == 1 else "RGB"):
        img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _read_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """One image file as float32 ``(channels, size, size)`` in [0, 1], whatever its PIL mode (1, L, P, RGB,
    RGBA, CMYK, I;16, ...); an image whose header claims more pixels than PIL's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``) is refused before it is decoded."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                arr = _to_array(img, channels)
    except _PixelRangeError as exc:
        raise ValueError(f"image file {str(path)!r}: {exc}; convert it to 8-bit or 16-bit, or scale it to [0, 1] "
                         f"or [0, 255]") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(
            f"image file {str(path)!r} claims more pixels than PIL will decode safely "
            f"({str(exc).split(' could be')[0][:100]}); remove or shrink the file"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
            f"cannot read image file {str(path)!r} ({type(exc).__name__}: {str(exc)[:160]}); "
            f"remove or replace the file"
        ) from None
    if arr.dtype != np.uint8 and not np.isfinite(arr).all():
        raise ValueError(f"image file {str(path)!r} holds {int((~np.isfinite(arr)).sum())} NaN or infinite pixel "
                         f"value(s); fix or remove the file")
    if arr.dtype == np.uint8:
        out = np.asarray(resize_center_crop(Image.fromarray(arr if arr.shape[2] == 3 else arr[:, :, 0]), size),
                         dtype=np.uint8)
        out = out[:, :, None] if out.ndim == 2 else out
        return torch.from_numpy(out.copy()).permute(2, 0, 1).float().div_(255.0)
    planes = [resize_center_crop(Image.fromarray(np.ascontiguousarray(arr[:, :, c], dtype=np.float32)), size) for c in range(arr.shape[2])]
    out = np.stack([np.asarray(p, dtype=np.float32) for p in planes], axis=2)
    return torch.from_numpy(np.clip(out, 0.0, 1.0).copy()).permute(2, 0, 1).contiguous()


def unreadable_error(paths: Sequence[Path], first: int, exc: Exception, *, show: int = 3) -> ValueError:
    """The error for a folder whose file ``paths[first]`` could not be read (``exc``): the files after it are
    checked too (header only, cheap), so one run reports how many are unreadable and the first few, not one
    file per run."""
    from PIL import Image

    bad = [paths[first]]
    for p in paths[first + 1:]:
        try:
            with Image.open(p) as img:
                img.verify()
        except Exception:  # noqa: BLE001 - whatever PIL raises, the file is unreadable
            bad.append(p)
    if len(bad) == 1:
        return exc if isinstance(exc, ValueError) else ValueError(str(exc))
    names = ", ".join(repr(str(p)) for p in bad[:show])
    return ValueError(f"{len(bad)} of {len(paths)} image files cannot be read: {names}"
                      f"{', ...' if len(bad) > show else ''}; remove or replace them")


def _is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


#: Files that mark a folder as an infolens result folder (its lock and its metadata); such folders are never
#: read as data, so a result folder written inside the data (figures, examples) is not analysed as images.
RUN_MARKERS: tuple[str, ...] = (".infolens.lock", "meta.json")


def is_run_folder(folder: Path) -> bool:
    """True when ``folder`` holds an infolens run: its lock file, or a ``meta.json`` naming an analysis."""
    if (folder / RUN_MARKERS[0]).is_file():
        return True
    meta = folder / RUN_MARKERS[1]
    if not meta.is_file():
        return False
    try:
        import json

        obj = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and "analysis" in obj and "params" in obj


def _images_under(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted by relative path), leaving out hidden files and
    folders and folders that hold an infolens run."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not is_run_folder(here / d)]
        found.extend(here / f for f in filenames if _is_image(here / f))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


@dataclass
class ImageFolderData(Dataset):
    """Images found in a folder, in torchvision's ``ImageFolder`` layout or flat.

    ``paths``/``labels`` list every image (label ``-1`` for a flat folder); ``class_names`` are
    the sub-folder names (empty for a flat folder). ``images`` is the stacked float32
    ``(N, C, size, size)`` tensor when loaded eagerly, else ``None``; indexing reads lazily.
    """

    root: Path
    paths: list[Path]
    labels: torch.Tensor
    class_names: list[str]
    size: int = 224
    channels: int = 3
    images: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.images is not None:
            return self.images[index], self.labels[index]
        return _read_image(self.paths[index], self.size, self.channels), self.labels[index]

    def load(self) -> torch.Tensor:
        """Read every image (once) and return the stacked ``(N, C, size, size)`` tensor."""
        if self.images is None:
            out = torch.empty(len(self.paths), self.channels, self.size, self.size)
            for i, p in enumerate(self.paths):
                try:
                    out[i] = _read_image(p, self.size, self.channels)
                except ValueError as exc:
                    raise unreadable_error(self.paths, i, exc) from None
            self.images = out
        return self.images

    def check_headers(self, *, show: int = 3) -> None:
        """Open every file's header (no pixels decoded: fast) and refuse, in one line, files PIL cannot
        identify and images larger than its decompression-bomb limit: the count and the first ``show``.
        Images stored as 32-bit floats or integers (the only ones whose values can be NaN, infinite or out
        of the range :func:`_read_image` accepts) are decoded and checked too. What a streamed run checks
        before any work, so a bad file does not stop it half-way."""
        import warnings

        from PIL import Image

        bad: list[str] = []
        for p in self.paths:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(p) as im:
                        wide = im.mode in ("F", "I")
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                bad.append(f"{p.relative_to(self.root).as_posix()} (more pixels than PIL will decode safely)")
                continue
            except Exception:  # noqa: BLE001 - any reason PIL cannot open it
                bad.append(p.relative_to(self.root).as_posix())
                continue
            if wide:
                _read_image(p, 8, 1)  # raises naming the file: NaN, infinite or ambiguous values
        if bad:
            raise ValueError(f"{len(bad)} of {len(self.paths)} image files in {str(self.root)!r} cannot be read: "
                             f"{', '.join(bad[:show])}{', ...' if len(bad) > show else ''}; remove or replace them")

    @property
    def names(self) -> list[str]:
        """Image paths relative to ``root`` (posix separators), one per image."""
        return [p.relative_to(self.root).as_posix() for p in self.paths]


def _round_robin(groups: Sequence[list[Path]], limit: int) -> list[tuple[Path, int]]:
    """Up to ``limit`` (path, group index) pairs, taking one from each group in turn."""
    picked: list[tuple[Path, int]] = []
    depth = 0
    while len(picked) < limit and any(depth < len(g) for g in groups):
        for label, g in enumerate(groups):
            if depth < len(g) and len(picked) < limit:
                picked.append((g[depth], label))
        depth += 1
    return sorted(picked, key=lambda t: (t[1], t[0].as_posix()))


def load_image_folder(
    path: str | os.PathLike,
    *,
    size: int = 224,
    limit: int | None = None,
    channels: int = 3,
    lazy: bool = False,
) -> ImageFolderData:
    """Read a folder of images: ``root/<class>/<img>`` (torchvision ``ImageFolder``) or flat.

    Sub-folders holding images are classes (sorted names, label = index), searched recursively;
    if there are none, the image files directly in ``path`` are loaded with label ``-1``.
    Each image is converted to RGB (``channels=3``) or grayscale (``channels=1``), its shorter
    side resized to ``size`` and centre-cropped, and scaled to [0, 1]. ``limit`` keeps at most
    that many images: from a flat folder the first ``limit`` in file-name order; from class sub-folders
    one image of each class in turn (the first of every class, then the second, ...; each class's files
    in relative-path order) until ``limit`` are taken, so every class is represented; the kept images are
    listed class by class. Folders that hold an infolens run (:func:`is_run_folder`) and hidden files and
    folders are never read.
    ``lazy=True`` defers reading to indexing / :meth:`ImageFolderData.load`.
    """
    _check_size(size)
    _check_limit(limit)
    _check_channels(channels)
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"image folder path={str(path)!r} does not exist; pass an existing folder of images "
            f"(root/<class>/<image> or a flat folder)"
        )
    if not root.is_dir():
        raise ValueError(f"image folder path={str(path)!r} is a file, not a folder; pass its parent folder")
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and not is_run_folder(d)),
        key=lambda d: d.name
    )
    groups = [(d.name, _images_under(d)) for d in class_dirs]
    groups = [(n, g) for n, g in groups if g]
    if groups:
        class_names = [n for n, _ in groups]
        lists = [g for _, g in groups]
    else:
        flat = sorted((p for p in root.iterdir() if _is_image(p)), key=lambda p: p.name)
        if not flat:
            raise ValueError(
                f"image folder path={str(path)!r} holds no image files (looked for "
                f"{', '.join(IMAGE_EXTENSIONS)}); put images in it or in class sub-folders"
            )
        class_names = []
        lists = [flat]
    total = sum(len(g) for g in lists)
    pairs = _round_robin(lists, limit if limit is not None else total)
    paths = [p for p, _ in pairs]
    labels = torch.tensor([lab if class_names else -1 for _, lab in pairs], dtype=torch.int64)
    data = ImageFolderData(
        root=root, paths=paths, labels=labels, class_names=class_names, size=size, channels=channels
    )
    if not lazy:
        data.load()
    return data
