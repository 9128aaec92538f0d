"""Method 3 (arXiv 1803.08337): NMI against scikit-learn and hand-computed histograms, its closed cases; the
SegNet-style autoencoder; stage checkpoints and resume; the frozen classifier; fine-tuning lowering the
classifier's loss; the order; the runner (matrix on built-in networks, resume, CLI)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from infolens.signal import (SegNetAE, build_autoencoder, classify, finetune_through_classifier, frozen,
                             mutual_information, nmi, nmi_noise_bias, predict, pretrain_autoencoder, quantize,
                             recalibrate_batchnorm, reconstruct, signal_order)

sklearn_metrics = pytest.importorskip("sklearn.metrics")


# =========================================================================== fixtures


def _correlated(n: int = 6, shape=(1, 28, 28), noise: float = 0.15, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand((n, *shape), generator=g)
    b = (a + noise * torch.randn((n, *shape), generator=g)).clamp(0, 1)
    return a, b


class _TinyNet(nn.Module):
    """A small classifier with BatchNorm (buffers that eval mode must keep) and dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x):
        return self.fc(self.drop(F.relu(self.bn(self.conv(x))).flatten(1)))


@pytest.fixture(scope="module")
def digits(mnist_test_small):
    x, y = mnist_test_small
    return x[:512], y[:512]


@pytest.fixture(scope="module")
def train_digits():
    from infolens.data import mnist_splits

    x, y = mnist_splits()["train"].tensors
    return x[:2048], y[:2048]


@pytest.fixture(scope="module")
def small_allconv():
    """A second built-in architecture, trained a few seconds (for the two-classifier runner)."""
    from infolens.models import train

    return train("mnist_allconv", epochs=1, train_limit=2000, test_limit=200, seed=0, progress=False).model.eval()


# =========================================================================== NMI


def _hand_mi(qa: np.ndarray, qb: np.ndarray) -> tuple[float, float, float]:
    """Plug-in MI and entropies (nats) from a dense joint histogram, in float64 numpy."""
    joint = np.zeros((int(qa.max()) + 1, int(qb.max()) + 1))
    np.add.at(joint, (qa, qb), 1)
    p = joint / joint.sum()
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
    ha = float(-(pa[pa > 0] * np.log(pa[pa > 0])).sum())
    hb = float(-(pb[pb > 0] * np.log(pb[pb > 0])).sum())
    return mi, ha, hb


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 20)])
@pytest.mark.parametrize("average", ["arithmetic", "geometric", "min", "max"])
def test_nmi_matches_sklearn(shape, average):
    a, b = _correlated(5, shape)
    ours = nmi(a, b, average=average)
    ref = [sklearn_metrics.normalized_mutual_info_score(quantize(a[i]).ravel().numpy(), quantize(b[i]).ravel().numpy(),
                                                       average_method=average) for i in range(a.shape[0])]
    assert ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6, atol=1e-9)


def test_mutual_information_matches_hand_histogram():
    a, b = _correlated(4, noise=0.3, seed=3)
    res = mutual_information(a, b, bins=16)
    for i in range(4):
        qa, qb = quantize(a[i], bins=16).ravel().numpy(), quantize(b[i], bins=16).ravel().numpy()
        mi, ha, hb = _hand_mi(qa, qb)
        assert res.mi[i].item() == pytest.approx(mi, abs=1e-12)
        assert res.entropy_a[i].item() == pytest.approx(ha, abs=1e-12)
        assert res.entropy_b[i].item() == pytest.approx(hb, abs=1e-12)
        assert res.mi[i].item() == pytest.approx(sklearn_metrics.mutual_info_score(qa, qb), rel=1e-6)


def test_nmi_closed_cases():
    a, b = _correlated(4)
    np.testing.assert_allclose(nmi(a, a).numpy(), 1.0, atol=1e-12)  # identical images
    np.testing.assert_allclose(nmi(a, 1 - a).numpy(), 1.0, atol=1e-12)  # a bijection of the levels
    np.testing.assert_allclose(nmi(a, b).numpy(), nmi(b, a).numpy(), atol=1e-12)  # symmetry
    for avg in ("geometric", "min", "max"):
        np.testing.assert_allclose(nmi(a, b, average=avg).numpy(), nmi(b, a, average=avg).numpy(), atol=1e-12)
    assert ((nmi(a, b) > 0) & (nmi(a, b) < 1)).all()
    # scikit-learn's limit cases: both constant -> 1, one constant -> 0
    zero, half = torch.zeros(2, 1, 8, 8), torch.full((2, 1, 8, 8), 0.5)
    assert nmi(zero, half).tolist() == [1.0, 1.0]
    assert nmi(zero, a[:2, :, :8, :8]).tolist() == [0.0, 0.0]
    assert sklearn_metrics.normalized_mutual_info_score(np.zeros(64), np.ones(64)) == 1.0


def test_nmi_independent_noise_is_near_zero_and_matches_the_bias():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(8, 1, 64, 64, generator=g), torch.rand(8, 1, 64, 64, generator=g)
    res = mutual_information(a, b, bins=8)
    v = res.normalized()
    assert float(v.max()) < 0.01  # 4096 pixels, 8 levels: the plug-in bias is ~0.003
    expected = nmi_noise_bias(8, 8, 64 * 64, res.entropy_a, res.entropy_b)
    assert float(v.mean()) == pytest.approx(float(expected.mean()), rel=0.35)
    # with 256 levels on 28 x 28 the bias dominates (documented): far from 0, yet far below identical images
    big = nmi(torch.rand(4, 1, 28, 28, generator=g), torch.rand(4, 1, 28, 28, generator=g))
    assert 0.5 < float(big.mean()) < 0.9


def test_nmi_batched_equals_per_image_and_accepts_integer_levels():
    a, b = _correlated(7, (1, 12, 12))
    batched = nmi(a, b)
    single = torch.cat([nmi(a[i:i + 1], b[i:i + 1]) for i in range(7)])
    assert torch.equal(batched, single)
    assert torch.equal(nmi(quantize(a), quantize(b)), batched)  # integer levels are taken as quantised
    # 8-bit images stored as k / 255 come back as k
    k = torch.arange(256).view(1, 1, 16, 16)
    assert torch.equal(quantize(k.float() / 255), k)


@pytest.mark.parametrize("kwargs,err", [
    (dict(a=torch.rand(2, 1, 4, 4), b=torch.rand(2, 1, 4, 5)), ValueError),
    (dict(a=torch.rand(2, 1, 4, 4), b=torch.full((2, 1, 4, 4), float("nan"))), ValueError),
    (dict(a=torch.rand(2, 1, 4, 4), b=torch.rand(2, 1, 4, 4), average="harmonic"), ValueError),
    (dict(a=torch.rand(2, 1, 4, 4), b=torch.rand(2, 1, 4, 4), bins=1), ValueError),
    (dict(a=np.zeros((2, 4)), b=torch.rand(2, 4)), TypeError),
    (dict(a=torch.full((1, 4), 300), b=torch.zeros(1, 4, dtype=torch.long)), ValueError),
])
def test_nmi_errors(kwargs, err):
    with pytest.raises(err):
        nmi(**kwargs)


# =========================================================================== the autoencoder


@pytest.mark.parametrize("widths,shape", [((8, 16), (1, 28, 28)), ((4, 8, 8), (1, 28, 28)), ((4, 8), (3, 15, 17))])
def test_autoencoder_shapes_and_seed(widths, shape):
    ae, again = build_autoencoder(shape[0], widths, seed=3), build_autoencoder(shape[0], widths, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(ae.state_dict().values(), again.state_dict().values()))
    x = torch.rand(2, *shape)
    assert ae(x).shape == x.shape  # odd sizes (7 -> 3 -> 7, 15 -> 7 -> 15) unpool back via output_size
    assert [n for n, _ in ae.named_children()] == ["encoder", "decoder", "head"]
    assert isinstance(ae.decoder[0][0], nn.Conv2d)
    with pytest.raises(ValueError):
        SegNetAE(1, ())
    with pytest.raises(ValueError):
        SegNetAE(1, (4,), out_activation="tanh")
    with torch.no_grad():
        assert float(build_autoencoder(1, (4,), out_activation="sigmoid")(x[:, :1, :8, :8]).min()) >= 0


def test_recalibrate_batchnorm_is_the_exact_average():
    ae = build_autoencoder(1, (4, 8), seed=0)
    x = torch.rand(96, 1, 28, 28)
    recalibrate_batchnorm(ae, x, batch_size=32)
    bn = ae.encoder[0][1]
    with torch.no_grad():
        pre = ae.encoder[0][0](x)  # the first BatchNorm's input, all images at once
    torch.testing.assert_close(bn.running_mean, pre.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert bn.momentum == 0.1 and ae.training  # momentum and the caller's mode are restored
    # decoder only: the encoder's statistics are left alone
    enc = copy.deepcopy(ae.encoder.state_dict())
    recalibrate_batchnorm(ae, torch.rand(32, 1, 28, 28), part="decoder")
    assert all(torch.equal(v, enc[k]) for k, v in ae.encoder.state_dict().items())


# =========================================================================== training, freezing, resume


def test_pretraining_lowers_reconstruction_error(train_digits):
    x = train_digits[0][:512]
    ae = build_autoencoder(1, (8, 16), seed=0)
    before = float((reconstruct(ae, x) - x).square().mean())
    res = pretrain_autoencoder(ae, x, epochs=1, batch_size=32, lr=1e-2, progress=False)
    after = float((reconstruct(ae, x) - x).square().mean())
    assert after < 0.5 * before
    assert [h["epoch"] for h in res.history] == [1] and res.finished and res.resumed is None


def test_frozen_classifier_is_bit_identical_and_autoencoder_changes(train_digits):
    x, y = train_digits[0][:256], train_digits[1][:256]
    torch.manual_seed(0)
    clf = _TinyNet()
    clf.train()  # the caller's mode and flags must come back as they were
    clf.fc.weight.requires_grad_(True)
    clf.fc.bias.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in clf.named_parameters()}
    before = {k: v.clone() for k, v in clf.state_dict().items()}  # parameters and BatchNorm buffers
    ae = build_autoencoder(1, (4, 8), seed=0)
    enc0, dec0 = copy.deepcopy(ae.encoder.state_dict()), copy.deepcopy(ae.decoder.state_dict())
    finetune_through_classifier(ae, clf, x, y, epochs=1, batch_size=64, progress=False)
    after = clf.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in clf.parameters())
    assert {n: p.requires_grad for n, p in clf.named_parameters()} == flags and clf.training
    # tune="decoder": encoder untouched (weights and statistics), decoder changed
    assert all(torch.equal(v, enc0[k]) for k, v in ae.encoder.state_dict().items())
    assert any(not torch.equal(v, dec0[k]) for k, v in ae.decoder.state_dict().items() if v.is_floating_point())
    assert all(p.requires_grad for p in ae.parameters())  # the encoder's flags are restored too
    # tune="all": the encoder moves as well, the classifier still does not
    ae2 = build_autoencoder(1, (4, 8), seed=0)
    finetune_through_classifier(ae2, clf, x, y, tune="all", epochs=1, batch_size=64, progress=False)
    assert any(not torch.equal(v, enc0[k]) for k, v in ae2.encoder.state_dict().items() if v.is_floating_point())
    assert all(torch.equal(before[k], v) for k, v in clf.state_dict().items())


def test_frozen_context_restores_mode_and_flags():
    net = _TinyNet().train()
    net.bn.weight.requires_grad_(False)
    with frozen(net) as m:
        assert not m.training and not any(p.requires_grad for p in m.parameters())
        x = torch.rand(2, 1, 28, 28, requires_grad=True)
        m(x).sum().backward()
        assert x.grad is not None  # gradients still flow through to the input
    assert net.training and not net.bn.weight.requires_grad and net.fc.weight.requires_grad


def test_finetuning_lowers_the_classifier_loss_on_a_builtin(quick_mnist_model, train_digits, digits):
    """The un-tuned autoencoder is deliberately weak (20 steps), so the gain is well above the noise."""
    x, y = train_digits
    tx, ty = digits
    clf = quick_mnist_model
    ae = build_autoencoder(1, (8, 16), seed=0)
    pretrain_autoencoder(ae, x[:640], epochs=1, batch_size=32, lr=3e-3, progress=False)

    def scores(model):
        logits = classify(clf, reconstruct(model, tx))
        return float(F.cross_entropy(logits, ty)), float((logits.argmax(1) == ty).float().mean())

    loss0, acc0 = scores(ae)
    tuned = copy.deepcopy(ae)
    res = finetune_through_classifier(tuned, clf, x[:1024], y[:1024], epochs=1, batch_size=32, lr=5e-3,
                                      progress=False)
    loss1, acc1 = scores(tuned)
    plain = float((predict(clf, tx) == ty).float().mean())
    print(f"\nquick mnist_vgg on 512 test digits: plain {plain:.3f}; un-tuned AE loss {loss0:.3f} acc {acc0:.3f}; "
          f"tuned AE loss {loss1:.3f} acc {acc1:.3f}")
    assert loss1 < 0.8 * loss0
    assert acc1 > acc0 + 0.02  # 512 images: a standard error of the difference is < 0.01
    assert res.history[0]["train_acc"] > 0


def test_stage_checkpoints_resume_bit_identically(tmp_path, train_digits, quick_mnist_model):
    x, y = train_digits[0][:256], train_digits[1][:256]
    kw = dict(epochs=2, batch_size=64, lr=3e-3, progress=False)
    full = build_autoencoder(1, (4, 8), seed=1)
    pretrain_autoencoder(full, x, **kw)

    ck = tmp_path / "pre.pt"
    part = build_autoencoder(1, (4, 8), seed=1)
    r = pretrain_autoencoder(part, x, checkpoint=ck, stop_after=5, **kw)  # "killed" mid-way through epoch 2
    assert not r.finished and not ck.exists() and (tmp_path / "pre.partial.pt").exists()
    resumed = build_autoencoder(1, (4, 8), seed=1)
    r = pretrain_autoencoder(resumed, x, checkpoint=ck, **kw)
    assert r.resumed == "partial" and r.finished and ck.exists() and not (tmp_path / "pre.partial.pt").exists()
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values()))
    again = build_autoencoder(1, (4, 8), seed=1)
    r = pretrain_autoencoder(again, x, checkpoint=ck, **kw)  # finished stage: loaded, nothing computed
    assert r.resumed == "final" and [h["epoch"] for h in r.history] == [1, 2]
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), again.state_dict().values()))
    other = build_autoencoder(1, (4, 8), seed=1)
    r = pretrain_autoencoder(other, x, checkpoint=ck, **{**kw, "lr": 1e-3})  # other settings: recomputed
    assert r.resumed is None

    # stage 2 too, and its checkpoint is tied to the classifier
    ft = tmp_path / "ft.pt"
    a1 = finetune_through_classifier(copy.deepcopy(full), quick_mnist_model, x, y, checkpoint=ft, epochs=1,
                                     batch_size=64, progress=False).model
    r = finetune_through_classifier(copy.deepcopy(full), quick_mnist_model, x, y, checkpoint=ft, epochs=1,
                                    batch_size=64, progress=False)
    assert r.resumed == "final"
    assert all(torch.equal(a, b) for a, b in zip(a1.state_dict().values(), r.model.state_dict().values()))
    r = finetune_through_classifier(copy.deepcopy(full), _TinyNet(), x, y, checkpoint=ft, epochs=1,
                                    batch_size=64, progress=False)
    assert r.resumed is None


def test_training_argument_errors(train_digits):
    x, y = train_digits[0][:8], train_digits[1][:8]
    ae = build_autoencoder(1, (4,))
    with pytest.raises(ValueError, match="labels"):
        finetune_through_classifier(ae, _TinyNet(), x, torch.full((8,), -1), progress=False)
    with pytest.raises(ValueError, match="tune"):
        finetune_through_classifier(ae, _TinyNet(), x, y, tune="encoder", progress=False)
    with pytest.raises(TypeError, match="classifier"):
        finetune_through_classifier(ae, "mnist_vgg", x, y, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        pretrain_autoencoder(ae, x, epochs=0, progress=False)
    with pytest.raises(ValueError, match="shape"):
        pretrain_autoencoder(ae, x[0], progress=False)


# =========================================================================== the order


def test_signal_order_total_cycle_and_undecided():
    names = ["a", "b", "c"]
    total = torch.tensor([[1.0, 0.9, 0.9], [0.6, 1.0, 0.8], [0.5, 0.7, 1.0]])  # a > b > c
    o = signal_order(total, names)
    assert o.is_total and o.ranking == ["a", "b", "c"] and o.describe() == "a > b > c" and not o.cycles
    cyc = torch.tensor([[1.0, 0.9, 0.5], [0.6, 1.0, 0.9], [0.9, 0.6, 1.0]])  # a > b > c > a
    o = signal_order(cyc, names)
    assert not o.is_transitive and not o.is_total and o.cycles == [("a", "b", "c")]
    # per-image outcomes: a difference of 2 images in 400 is not decided, one of 80 is
    n = 400
    c = torch.ones(3, 3, n)
    c[0, 1, :2] = 0  # acc[a->b] = 0.995, acc[b->a] = 1
    c[1, 2, :80] = 0  # acc[b->c] = 0.8 < acc[c->b] = 1: c > b
    o = signal_order(c, names)
    pairs = {(p["a"], p["b"]): p for p in o.pairs}
    assert not pairs[("a", "b")]["decided"] and pairs[("b", "c")]["decided"] and pairs[("b", "c")]["more"] == "c"
    assert not o.is_total and o.is_transitive
    with pytest.raises(ValueError):
        signal_order(torch.ones(2, 3), names)


# =========================================================================== the runner


def test_runner_matrix_on_builtins_resume_and_tables(tmp_path, quick_mnist_model, small_allconv, train_digits,
                                                     digits):
    from infolens.experiments.signal import Settings, run_signal
    from infolens.results import RunDir

    st = Settings(widths=(4, 8), train_limit=512, finetune_limit=256, batch_size=64, calibration_images=256,
                  eval_batch_size=32, show=4, checkpoint_every=None)
    clfs = {"mnist_vgg": quick_mnist_model, "mnist_allconv": small_allconv}
    test = (digits[0][:80], digits[1][:80])
    params = {"test": 80, **st.params()}

    def go():
        run = RunDir(tmp_path / "run", analysis="signal", params=params)
        return run, run_signal(run, clfs, (train_digits[0][:512], train_digits[1][:512]), test, st, progress=False)

    run, summary = go()
    acc = run.read_table("accuracy")
    assert len(acc) == 4 * 2 and {r["source"] for r in acc} == {"plain", "untuned", "tuned:mnist_vgg",
                                                                 "tuned:mnist_allconv"}
    preds = run.read_table("predictions")
    assert len(preds) == 80 * 4 * 2
    plain = {r["classifier"]: r["accuracy"] for r in acc if r["source"] == "plain"}
    for name, clf in clfs.items():  # the plain row is the classifier's own test accuracy
        assert plain[name] == pytest.approx(float((predict(clf, test[0]) == test[1]).float().mean()))
    nmi_rows = run.read_table("nmi")
    assert len(nmi_rows) == 80 * 4 * 2
    assert all(r["intra"] == pytest.approx(1.0) for r in nmi_rows if r["source"] == "plain")
    # the inter partner of image i is image i-1 of its unit (cyclic): check one against a direct computation
    r = next(r for r in nmi_rows if r["image"] == 33 and r["source"] == "plain" and r["average"] == "geometric")
    assert r["inter"] == pytest.approx(float(nmi(test[0][33:34], test[0][32:33], average="geometric")), abs=1e-12)
    matrix = run.read_table("matrix")
    assert [r["images"] for r in matrix] == ["plain", "untuned", "tuned for mnist_vgg", "tuned for mnist_allconv"]
    assert matrix[2]["mnist_vgg"] == pytest.approx(next(r["accuracy"] for r in acc if r["source"] == "tuned:mnist_vgg"
                                                        and r["classifier"] == "mnist_vgg"), abs=1e-4)
    assert isinstance(summary["order_is_total"], bool)
    assert set(summary["ranking (most signal first)"].split(" > ")) == set(clfs)
    assert "mnist_vgg: accuracy plain / untuned AE / tuned AE" in summary
    meta = json.loads((run.root / "meta.json").read_text())
    assert meta["order"] == 40 and set(meta["figures"]) == {"reconstructions", "matrix", "spectra"}
    assert all((run.root / "figures" / f"{f}.png").is_file() for f in meta["figures"])
    spectra = run.read_table("spectra")
    assert {s["images"] for s in spectra} >= {"plain", "untuned"} and all(s["mean_power"] > 0 for s in spectra)

    # resumed: checkpoints loaded, finished units skipped, identical tables
    parts = sorted((run.root / "parts" / "predictions").glob("*.csv"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    run2, summary2 = go()
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    assert {r["resumed"] for r in run2.read_table("training")} == {"final"}
    assert run2.read_table("accuracy") == acc and summary2["order_is_total"] == summary["order_is_total"]


def test_cli_signal_with_checkpoints(tmp_path, quick_mnist_model, small_allconv):
    from infolens.cli import main
    from infolens.results import read_csv

    a, b = tmp_path / "vgg.pt", tmp_path / "allconv.pt"
    torch.save(quick_mnist_model.state_dict(), a)
    torch.save(small_allconv.state_dict(), b)
    out = tmp_path / "out"
    rc = main(["--no-progress", "signal", "--models", "mnist_vgg,mnist_allconv", "--checkpoints", f"{a},{b}",
               "--limit", "32", "--train-limit", "256", "--finetune-limit", "128", "--widths", "4,8",
               "--calibration-images", "128", "--eval-batch-size", "16", "--show", "3", "--out", str(out),
               "--no-report"])
    assert rc == 0
    rows = read_csv(out / "tables" / "matrix.csv")
    assert [r["images"] for r in rows] == ["plain", "untuned", "tuned for mnist_vgg", "tuned for mnist_allconv"]
    assert main(["signal", "--models", "mnist_vgg", "--out", str(tmp_path / "x")]) == 2  # one line, no traceback
    assert main(["signal", "--models", "mnist_vgg,mnist_allconv", "--widths", "4,x",
                 "--out", str(tmp_path / "y")]) == 2


@pytest.mark.slow
def test_demo_quick_section(tmp_path):
    """The quick demo section on the quick built-ins (trained into the test cache first: slow)."""
    from infolens.experiments import signal as runner

    out = runner.demo(tmp_path / "signal", quick=True, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    for name in ("mnist_vgg", "mnist_resnet", "mnist_allconv"):
        before, after = (float(v) for v in summary[f"{name}: loss untuned AE -> tuned AE"].split(" -> "))
        assert math.isfinite(before) and math.isfinite(after)
    assert json.loads((out / "meta.json").read_text())["order"] == 40
