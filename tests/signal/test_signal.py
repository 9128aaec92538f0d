"""Method 3 (arXiv 1803.08337): NMI against scikit-learn and a hand-computed joint-range binning; McNemar and
Kruskal-Wallis against scipy; the SegNet-style autoencoder (as the released code); the plateau rule; stage
checkpoints and resume; the frozen classifier bit-identical after tuning (BatchNorm buffers included); the
order; InputSignal's one verb; the claims and the runner. (Photograph patches, keeping the best state, the
checkpoint callback and the multi-seed rules: test_signal_testbed.py.)"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from infolens._stats import ranks_and_ties
from infolens._torch import recalibrate_batchnorm
from infolens.signal import (InputSignal, ROW_COLUMNS, Schedule, SegNetAE, build_autoencoder,
                             classify, finetune_through_classifier, frozen, joint_range, kruskal_wallis, mcnemar_exact,
                             mutual_information, nmi, nmi_noise_bias, out_of_range, plateaued, pretrain_autoencoder,
                             predict, quantize, reconstruct, signal_order, tuned_parameters)

sklearn_metrics = pytest.importorskip("sklearn.metrics")


# =========================================================================== fixtures


def _correlated(n: int = 6, shape=(1, 28, 28), noise: float = 0.15, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand((n, *shape), generator=g)
    b = a + noise * torch.randn((n, *shape), generator=g)  # leaves [0, 1]: not clipped
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


# =========================================================================== NMI


def _levels_joint(a: np.ndarray, b: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy's histogram binning over the pair's joint range (independent of infolens.quantize)."""
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    edges = np.linspace(lo, hi, bins + 1)
    qa = np.clip(np.searchsorted(edges, a.ravel(), side="right") - 1, 0, bins - 1)
    qb = np.clip(np.searchsorted(edges, b.ravel(), side="right") - 1, 0, bins - 1)
    return qa, qb


@pytest.mark.parametrize("average", ["arithmetic", "geometric", "min", "max"])
@pytest.mark.parametrize("bins", [256, 16])
def test_nmi_matches_sklearn_on_joint_range_levels(average, bins):
    a, b = _correlated()
    got = nmi(a, b, bins=bins, average=average)
    for i in range(a.shape[0]):
        qa, qb = _levels_joint(a[i].double().numpy(), b[i].double().numpy(), bins)
        ref = sklearn_metrics.normalized_mutual_info_score(qa, qb, average_method=average)
        assert float(got[i]) == pytest.approx(ref, abs=1e-9)


def test_joint_range_binning_by_hand_and_no_clipping():
    a = torch.tensor([[0.0, 0.5, 1.0, 1.0]])
    b = torch.tensor([[-1.0, 0.0, 1.0, 2.0]])
    lo, hi = joint_range(a, b)
    assert float(lo) == -1 and float(hi) == 2
    # 3 bins of width 1 over [-1, 2]; the top edge goes to the last bin
    assert quantize(a, bins=3, low=lo, high=hi).tolist() == [[1, 1, 2, 2]]
    assert quantize(b, bins=3, low=lo, high=hi).tolist() == [[0, 1, 2, 2]]
    # by hand: A = (1,1,2,2), B = (0,1,2,2); H(A) = log 2, H(B) = 1.5 log 2, I = H(A) (A is a function of B)
    mi = mutual_information(a, b, bins=3)
    assert float(mi.mi) == pytest.approx(math.log(2)) and float(mi.entropy_b) == pytest.approx(1.5 * math.log(2))
    assert float(mi.normalized()) == pytest.approx(math.log(2) / (1.25 * math.log(2)))
    assert out_of_range(b).tolist() == [0.5]
    # an 8-bit image spanning [0, 1] gets its own level k from k / 255
    k = torch.arange(256.0).view(1, 1, 16, 16)
    assert torch.equal(quantize(k / 255, bins=256, low=0.0, high=1.0), k.long())
    # a reconstruction shifted out of [0, 1] keeps its information under the joint range, not under clipping
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = x + 0.6
    assert float(nmi(x, y).min()) > 0.85
    assert float(nmi(x, y, binning="unit").max()) < 0.65


def test_nmi_closed_cases_and_integer_levels():
    a, _ = _correlated(n=3)
    torch.testing.assert_close(nmi(a, a), torch.ones(3, dtype=torch.float64))
    const = torch.full_like(a, 0.3)
    torch.testing.assert_close(nmi(const, const), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(nmi(a, const), torch.zeros(3, dtype=torch.float64))
    lv = torch.randint(0, 8, (2, 1, 10, 10), generator=torch.Generator().manual_seed(0))
    lw = (lv + torch.randint(0, 2, lv.shape, generator=torch.Generator().manual_seed(1))) % 8
    got = nmi(lv, lw, bins=8)
    for i in range(2):
        ref = sklearn_metrics.normalized_mutual_info_score(lv[i].ravel().numpy(), lw[i].ravel().numpy())
        assert float(got[i]) == pytest.approx(ref, abs=1e-9)


def test_nmi_independent_noise_matches_the_bias_and_batching():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (64, 1, 32, 32), generator=g)
    b = torch.randint(0, 4, (64, 1, 32, 32), generator=g)
    mi = mutual_information(a, b, bins=4)
    expected = nmi_noise_bias(4, 4, 1024, mi.entropy_a.mean(), mi.entropy_b.mean())
    assert float(mi.normalized().mean()) == pytest.approx(float(expected), rel=0.2)
    x, y = _correlated(n=5)
    whole = nmi(x, y)
    one = torch.cat([nmi(x[i:i + 1], y[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(whole, one, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kwargs,err", [({"bins": 1}, ValueError), ({"average": "median"}, ValueError),
                                        ({"binning": "clip"}, ValueError)])
def test_nmi_errors(kwargs, err):
    a, b = _correlated(n=2)
    with pytest.raises(err):
        nmi(a, b, **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        nmi(a, b[:1])
    with pytest.raises(ValueError, match="non-finite"):
        nmi(a, b.clone().fill_(float("nan")))


# =========================================================================== the tests behind the claims


def test_mcnemar_exact_matches_scipy_binomtest():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 60, generator=g) > 0.3
    y = torch.rand(6, 60, generator=g) > 0.5
    y[0] = x[0]  # no discordant pair: p = 1
    n10, n01, p = mcnemar_exact(x, y)
    assert float(p[0]) == 1.0
    for i in range(1, 6):
        ref = stats.binomtest(int(min(n10[i], n01[i])), int(n10[i] + n01[i]), 0.5).pvalue
        assert float(p[i]) == pytest.approx(ref, rel=1e-9)
        assert int(n10[i]) == int((x[i] & ~y[i]).sum())


def test_kruskal_wallis_and_ranks_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    groups = (torch.rand(4, 30, generator=g, dtype=torch.float64) * 5).round()  # many ties
    groups[2] += 0.7
    h, p = kruskal_wallis(groups)
    ref = stats.kruskal(*groups.numpy())
    assert float(h) == pytest.approx(ref.statistic, rel=1e-10) and float(p) == pytest.approx(ref.pvalue, rel=1e-8)
    batch = torch.stack([groups, groups.flip(-1) * 2])  # batched over a leading dimension
    hb, _ = kruskal_wallis(batch)
    assert float(hb[0]) == pytest.approx(float(h)) and float(hb[1]) == pytest.approx(float(h))
    r, _ = ranks_and_ties(groups.flatten())
    np.testing.assert_allclose(r.numpy(), stats.rankdata(groups.flatten().numpy()))
    with pytest.raises(ValueError):
        kruskal_wallis(torch.rand(1, 5))


def _outcomes(acc: torch.Tensor, n: int) -> torch.Tensor:
    """(K, K, n) outcomes with exactly round(acc * n) correct images in each cell (the first ones)."""
    k = acc.shape[0]
    c = torch.zeros(k, k, n, dtype=torch.bool)
    for a in range(k):
        for b in range(k):
            c[a, b, : int(round(float(acc[a, b]) * n))] = True
    return c


def test_signal_order_total_cycle_and_undecided():
    names = ["a", "b", "c"]
    total = torch.tensor([[1.0, 0.9, 0.9], [0.6, 1.0, 0.8], [0.5, 0.7, 1.0]])  # a > b > c
    o = signal_order(_outcomes(total, 200), names)
    assert o.is_total and o.ranking == ["a", "b", "c"] and o.describe() == "a > b > c" and not o.cycles
    assert o.position().tolist() == [3.0, 2.0, 1.0]
    cyc = torch.tensor([[1.0, 0.9, 0.5], [0.6, 1.0, 0.9], [0.9, 0.6, 1.0]])  # a > b > c > a
    o = signal_order(_outcomes(cyc, 200), names)
    assert not o.is_transitive and not o.is_total and o.cycles == [("a", "b", "c")]
    # 2 discordant images of 400 are not decided (p = 0.5); 80 are
    c = torch.ones(3, 3, 400, dtype=torch.bool)
    c[0, 1, :2] = False
    c[1, 2, :80] = False  # acc[b->c] = 0.8 < acc[c->b] = 1: c > b
    o = signal_order(c, names)
    pairs = {(p["a"], p["b"]): p for p in o.pairs}
    assert pairs[("a", "b")]["p"] == pytest.approx(0.5) and not pairs[("a", "b")]["decided"]
    assert pairs[("b", "c")]["decided"] and pairs[("b", "c")]["more"] == "c"
    assert not o.is_total and o.is_transitive
    with pytest.raises(ValueError):
        signal_order(torch.ones(2, 3, 5), names)


# =========================================================================== the autoencoder


@pytest.mark.parametrize("widths,shape", [((8, 16), (1, 28, 28)), ((4, 8, 8), (1, 28, 28)), ((4, 8), (3, 15, 17))])
def test_autoencoder_as_the_released_code(widths, shape):
    ae, again = build_autoencoder(shape[0], widths, seed=3), build_autoencoder(shape[0], widths, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(ae.state_dict().values(), again.state_dict().values()))
    x = torch.rand(2, *shape)
    assert ae(x).shape == x.shape  # odd sizes unpool back via output_size
    assert [n for n, _ in ae.named_children()] == ["encoder", "decoder", "head"]
    convs = [m for m in ae.encoder[0] if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2  # >= 2 convolutions per stage by default
    assert ae.head.kernel_size == (1, 1) and ae.out_activation is None  # conv_final: 1x1, no activation
    # the decoder's last convolution of a stage narrows to the next stage's width (SegNet's conv21d)
    dec = [m for m in ae.decoder[0] if isinstance(m, nn.Conv2d)]
    assert dec[0].in_channels == dec[0].out_channels == widths[-1] and dec[-1].out_channels == (widths[-2] if
                                                                                               len(widths) > 1 else widths[0])
    with torch.no_grad():
        ae.head.bias.fill_(-5.0)
        assert float(ae.eval()(x).max()) < 0  # nothing squashes the output into [0, 1]
        # the pooling indices reach the decoder: other switch positions give another reconstruction
        code, idx, sizes = ae.encode(x)
        moved = [i.roll(1, -1) for i in idx]
        assert not torch.equal(ae.decode(code, idx, sizes), ae.decode(code, moved, sizes))
    with pytest.raises(ValueError):
        SegNetAE(1, ())
    with pytest.raises(ValueError):
        SegNetAE(1, (4,), out_activation="tanh")


def test_recalibrate_batchnorm_is_the_exact_average():
    # float32 (the recalibration runs in float32): three batch means combined against one mean over the
    # 96 x 28 x 28 values of a channel; torch sums in pairwise blocks, so each side is within
    # eps32 * log2(75264) * max|value| of the exact mean (8x that as the margin)
    ae = build_autoencoder(1, (4, 8), seed=0)
    x = torch.rand(96, 1, 28, 28)
    recalibrate_batchnorm(ae, x, batch_size=32)
    bn = ae.encoder[0][1]
    with torch.no_grad():
        pre = ae.encoder[0][0](x)
    tol = 8 * torch.finfo(torch.float32).eps * math.log2(pre[:, 0].numel()) * pre.abs().max().item()
    torch.testing.assert_close(bn.running_mean, pre.mean((0, 2, 3)), rtol=0, atol=tol)
    assert bn.momentum == 0.1 and ae.training
    enc = copy.deepcopy(ae.encoder.state_dict())
    recalibrate_batchnorm(ae, torch.rand(32, 1, 28, 28), scope=[ae.decoder, ae.head])  # the decoder only
    assert all(torch.equal(v, enc[k]) for k, v in ae.encoder.state_dict().items())


def test_plateau_rule_by_hand():
    assert not plateaued([1.0, 0.5, 0.4, 0.3], patience=3, tol=0.01)
    assert plateaued([1.0, 0.5, 0.499, 0.4985, 0.498], patience=3, tol=0.01)  # < 1 % better three times
    assert not plateaued([1.0, 0.5, 0.499, 0.4985, 0.49], patience=3, tol=0.01)  # 0.49 is 2 % better: reset
    assert plateaued([1.0, 1.2, 1.1, 1.05], patience=3, tol=0.0)


# =========================================================================== training, freezing, resume


def test_pretraining_reaches_a_plateau_of_the_held_out_mse(train_digits, digits):
    x, vx = train_digits[0][:1024], digits[0][:256]
    ae = build_autoencoder(1, (8, 16), seed=0)
    res = pretrain_autoencoder(ae, x, held_out=vx, schedule=Schedule(max_steps=150, batch_size=32, eval_every=15,
                                                                       patience=2, tol=0.05), progress=False)
    curve = [h["val_loss"] for h in res.history]
    assert res.history[0]["step"] == 0 and curve[-1] < 0.3 * curve[0]
    assert res.plateau == plateaued(curve, patience=2, tol=0.05)
    assert res.plateau or res.steps == 150
    after = float((reconstruct(ae, vx) - vx).square().mean())
    assert after == pytest.approx(res.history[-1]["val_loss"], rel=0.2)  # calibrated BN: close to the last check


def test_frozen_classifier_is_bit_identical_after_tuning(train_digits):
    x, y = train_digits[0][:256], train_digits[1][:256]
    torch.manual_seed(0)
    clf = _TinyNet()
    with torch.no_grad():  # non-trivial BatchNorm buffers: a train-mode forward would change them
        clf.bn.running_mean.uniform_(-0.5, 0.5)
        clf.bn.running_var.uniform_(0.5, 2.0)
    clf.train()  # the caller's mode and flags must come back as they were
    clf.fc.bias.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in clf.named_parameters()}
    before = {k: v.clone() for k, v in clf.state_dict().items()}  # parameters and BatchNorm buffers
    ae = build_autoencoder(1, (4, 8), seed=0)
    enc0, dec0 = copy.deepcopy(ae.encoder.state_dict()), copy.deepcopy(ae.decoder.state_dict())
    sched = Schedule(max_steps=12, batch_size=64, eval_every=4)
    # keep_best=False: the last state, so the decoder has moved (the best held-out state may be the untuned one)
    finetune_through_classifier(ae, clf, x, y, held_out=(x[:64], y[:64]), schedule=sched, keep_best=False,
                                progress=False)
    after = clf.state_dict()
    assert set(before) == set(after) and "bn.num_batches_tracked" in before
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical, buffers included
    assert all(p.grad is None for p in clf.parameters())
    assert {n: p.requires_grad for n, p in clf.named_parameters()} == flags and clf.training and clf.drop.training
    # tune="decoder": encoder untouched (weights and statistics), decoder changed, encoder flags restored
    assert all(torch.equal(v, enc0[k]) for k, v in ae.encoder.state_dict().items())
    assert any(not torch.equal(v, dec0[k]) for k, v in ae.decoder.state_dict().items() if v.is_floating_point())
    assert all(p.requires_grad for p in ae.parameters())
    assert set(map(id, tuned_parameters(ae))) == {id(p) for p in [*ae.decoder.parameters(), *ae.head.parameters()]}
    ae2 = build_autoencoder(1, (4, 8), seed=0)
    finetune_through_classifier(ae2, clf, x, y, tune="all", schedule=sched, progress=False)
    assert any(not torch.equal(v, enc0[k]) for k, v in ae2.encoder.state_dict().items() if v.is_floating_point())
    assert all(torch.equal(before[k], v) for k, v in clf.state_dict().items())


def test_frozen_context_restores_mode_and_flags():
    net = _TinyNet().train()
    net.bn.weight.requires_grad_(False)
    with frozen(net) as m:
        assert not m.training and not any(p.requires_grad for p in m.parameters())
        x = torch.rand(2, 1, 28, 28, requires_grad=True)
        m(x).sum().backward()
        assert x.grad is not None
    assert net.training and not net.bn.weight.requires_grad and net.fc.weight.requires_grad


def test_finetuning_lowers_the_held_out_loss_on_a_builtin(quick_mnist_model, train_digits, digits):
    """A deliberately weak untuned autoencoder (30 steps), so the gain is well above the noise."""
    x, y = train_digits
    tx, ty = digits
    clf = quick_mnist_model
    ae = build_autoencoder(1, (8, 16), seed=0)
    pretrain_autoencoder(ae, x[:960], schedule=Schedule(max_steps=30, batch_size=32, eval_every=30), progress=False)

    def scores(model):
        logits = classify(clf, reconstruct(model, tx))
        return float(F.cross_entropy(logits, ty)), float((logits.argmax(1) == ty).float().mean())

    loss0, acc0 = scores(ae)
    tuned = copy.deepcopy(ae)
    res = finetune_through_classifier(tuned, clf, x, y, held_out=(tx[:256], ty[:256]),
                                      schedule=Schedule(max_steps=60, batch_size=32, eval_every=20), progress=False)
    loss1, acc1 = scores(tuned)
    assert loss1 < 0.8 * loss0 and acc1 > acc0 + 0.02
    assert res.history[-1]["val_loss"] < res.history[0]["val_loss"]
    assert 0 <= res.history[-1]["val_acc"] <= 1


def test_finetune_checkpoint_resumes_only_with_the_same_classifier(train_digits, quick_mnist_model):
    x, y = train_digits[0][:256], train_digits[1][:256]
    full = build_autoencoder(1, (4, 8), seed=1)
    got: list = []
    fkw = dict(schedule=Schedule(max_steps=4, batch_size=64, eval_every=2), progress=False)
    a1 = finetune_through_classifier(copy.deepcopy(full), quick_mnist_model, x, y, on_checkpoint=got.append, **fkw).model
    r = finetune_through_classifier(copy.deepcopy(full), quick_mnist_model, x, y, resume=got[-1], **fkw)
    assert r.resumed == "final"
    assert all(torch.equal(a, b) for a, b in zip(a1.state_dict().values(), r.model.state_dict().values()))
    assert finetune_through_classifier(copy.deepcopy(full), _TinyNet(), x, y, resume=got[-1], **fkw).resumed is None


def test_training_argument_errors(train_digits):
    x, y = train_digits[0][:8], train_digits[1][:8]
    ae = build_autoencoder(1, (4,))
    with pytest.raises(ValueError, match="labels"):
        finetune_through_classifier(ae, _TinyNet(), x, torch.full((8,), -1), progress=False)
    with pytest.raises(ValueError, match="tune"):
        finetune_through_classifier(ae, _TinyNet(), x, y, tune="encoder", progress=False)
    with pytest.raises(TypeError, match="classifier"):
        finetune_through_classifier(ae, "mnist_vgg", x, y, progress=False)
    with pytest.raises(ValueError, match="max_steps"):
        Schedule(max_steps=0)
    with pytest.raises(ValueError, match="shape"):
        pretrain_autoencoder(ae, x[0], progress=False)
    with pytest.raises(TypeError, match="SegNetAE"):
        pretrain_autoencoder(nn.Identity(), x, progress=False)


# =========================================================================== the method's one verb


def test_input_signal_measure_rows_batching_and_state(digits):
    x, y = digits[0][:40], digits[1][:40]
    torch.manual_seed(0)
    clfs = {"t1": _TinyNet().eval(), "t2": _TinyNet().train()}
    aes = {"untuned": build_autoencoder(1, (4, 8), seed=0), "tuned:t1": build_autoencoder(1, (4, 8), seed=1),
           "tuned:t2": build_autoencoder(1, (4, 8), seed=2)}
    states = {k: copy.deepcopy(m.state_dict()) for k, m in {**clfs, **aes}.items()}
    method = InputSignal(clfs, aes, batch_size=16)
    m = method.measure(x, y)
    assert m.sources == ["plain", "untuned", "tuned:t1", "tuned:t2"] and m.correct.shape == (4, 2, 40)
    assert clfs["t2"].training and not clfs["t1"].training  # modes restored
    assert all(torch.equal(v, states[k][n]) for k, mod in {**clfs, **aes}.items() for n, v in mod.state_dict().items())
    torch.testing.assert_close(m.nmi[0], torch.ones(40, dtype=torch.float64))  # plain: the image itself
    with torch.no_grad():
        logits = clfs["t1"].eval()(aes["tuned:t2"].eval()(x))
    assert torch.equal(m.correct[3, 0], logits.argmax(1) == y)
    assert torch.equal(m.out_of_range[2], out_of_range(reconstruct(aes["tuned:t1"], x)))
    # batched equals in pieces (the chance level is seeded by global index)
    a, b = method.measure(x[:25], y[:25]), method.measure(x[25:], y[25:], indices=range(25, 40))
    torch.testing.assert_close(torch.cat([a.nmi_chance, b.nmi_chance], 1), m.nmi_chance)
    assert torch.equal(torch.cat([a.correct, b.correct], 2), m.correct)
    rows = m.to_rows()
    assert len(rows) == 4 * 2 * 40 and tuple(rows[0]) == ROW_COLUMNS
    assert m.tuned_correct().shape == (2, 2, 40) and set(m.order().ranking) == {"t1", "t2"}
    with pytest.raises(ValueError, match="reserved"):
        InputSignal(clfs, {"plain": aes["untuned"]})
    with pytest.raises(ValueError, match="tuned:"):
        InputSignal(clfs, {"untuned": aes["untuned"]}).measure(x, y).order()


def test_claim_rows_follow_claims_md():
    from infolens.experiments.signal.runner import claim_rows
    from infolens.signal import SignalMeasurement

    names = ["a", "b", "c", "d", "e"]
    k, n = 5, 400
    # tuned for a lets in the most: every other classifier reads a's reconstructions best; a strict order
    acc = torch.tensor([[0.98 if i == j else 0.95 - 0.08 * i for j in range(k)] for i in range(k)])
    tuned = _outcomes(acc, n)
    plain = _outcomes(torch.tensor([0.99, 0.97, 0.995, 0.96, 0.98]).expand(k, k), n)[0]
    untuned = _outcomes(torch.full((k, k), 0.90), n)[0]
    correct = torch.cat([plain[None], untuned[None], tuned])  # (S, K, N)
    g = torch.Generator().manual_seed(0)
    nmi_v = torch.cat([torch.ones(2, n), torch.rand(k, n, generator=g, dtype=torch.float64) * 0.1
                       + torch.arange(k, dtype=torch.float64)[:, None] * 0.05], 0)
    z = torch.zeros(2 + k, n, dtype=torch.float64)
    m = SignalMeasurement(["plain", "untuned"] + [f"tuned:{c}" for c in names], names, list(range(n)),
                          torch.zeros(k, n, dtype=torch.long), torch.zeros(2 + k, k, n, dtype=torch.long), correct,
                          z[:, None].expand(-1, k, -1), nmi_v, nmi_v, z, z, z)
    sizes = {"a": 5, "b": 1, "c": 4, "d": 2, "e": 3}
    rows, info = claim_rows(m, sizes)
    by = {(r["claim"], r["model"]): r for r in rows}
    assert all(by[("A1", c)]["verdict"] == "reproduced" for c in names)  # 0.98 vs 0.90 on 400 digits
    assert by[("A1", "every classifier")]["verdict"] == "reproduced"
    a2 = by[("A2", "MNIST set (5)")]
    assert a2["verdict"] == "reproduced" and a2["value"] == 1.0 and info["order"].ranking == names
    a3 = by[("A3", "MNIST set (5)")]  # the order a > b > c > d > e is neither the accuracy nor the size order
    assert info["rho_size"] == pytest.approx(float(np.corrcoef([5, 4, 3, 2, 1], [5, 1, 4, 2, 3])[0, 1]))
    assert info["rho_accuracy"] == pytest.approx(float(np.corrcoef([5, 4, 3, 2, 1], [4, 2, 5, 1, 3])[0, 1]))
    assert a3["verdict"] == "reproduced"
    rows, _ = claim_rows(m, {"a": 50, "b": 40, "c": 30, "d": 20, "e": 10})  # the order follows size exactly
    assert next(r for r in rows if r["claim"] == "A3")["verdict"] == "not reproduced"
    a4 = by[("A4", "MNIST set (5)")]
    assert a4["value"] < 1e-10 and a4["verdict"] == "reproduced"
    assert info["rho_nmi"] == pytest.approx(-1.0)  # NMI rises down the order


# =========================================================================== the runner


@pytest.mark.slow
def test_runner_protocol_tables_figures_and_resume(tmp_path, quick_mnist_model, train_digits, digits):
    from infolens.experiments.signal.runner import Settings, run_protocol
    from infolens.models import train
    from infolens.results import RunDir
    from infolens.signal import photo_patches

    other = train("mnist_allconv", epochs=1, train_limit=1500, test_limit=200, seed=0, progress=False).model.eval()
    clfs = {"mnist_vgg": quick_mnist_model, "mnist_allconv": other}
    st = Settings(widths=(4, 8), pretrain=Schedule(max_steps=20, eval_every=10),
                  finetune=Schedule(max_steps=10, eval_every=5), val_images=64, calibration_images=128, show=3,
                  eval_batch_size=50, seeds=(0, 1))
    tr = (train_digits[0][:512], train_digits[1][:512])
    val = (digits[0][:64], digits[1][:64])
    test = (digits[0][100:220], digits[1][100:220])
    photos = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    stage1 = {"photos": (photo_patches(photos[:3], 256, sides=(28, 56))[0],
                         photo_patches(photos[3:], 64, sides=(28, 56))[0]), "mnist": (tr[0], val[0])}

    def go():
        run = RunDir(tmp_path / "run", analysis="signal", params=st.params())
        return run, run_protocol(run, clfs, tr, val, test, st, progress=False, cache=False, stage1=stage1)

    run, (rows, summary) = go()
    prim = [r for r in rows if r["variant"] == "primary"]
    sens = [r for r in rows if r["variant"] == "sensitivity"]
    assert [r["claim"] for r in prim] == [r["claim"] for r in sens] == ["A1", "A1", "A1", "A2", "A3", "A4"]
    assert all("MNIST digits-pretrained AE" in r["model"] for r in sens)
    assert {r["verdict"] for r in rows} <= {"reproduced", "not reproduced", "inconclusive"}
    a2 = next(r for r in prim if r["claim"] == "A2")
    assert a2["verdict"] != "reproduced" and "only 2 classifiers" in a2["note"] and "all 2 seeds" in a2["note"]
    matrix = run.read_table("matrix")
    assert [r["images"] for r in matrix] == ["plain", "untuned", "tuned for mnist_vgg", "tuned for mnist_allconv"]
    plain = float((predict(quick_mnist_model, test[0]) == test[1]).double().mean())
    assert matrix[0]["mnist_vgg"] == pytest.approx(plain, abs=1e-4)
    acc = run.read_table("signal_accuracy")
    assert [(r["autoencoder"], r["classifier"]) for r in acc] == [(d, c) for d in ("photos", "mnist") for c in clfs]
    for r in acc:
        assert r["original"] == pytest.approx(r["untuned"] + r["untuned_drop"], abs=1e-9)
        assert r["untuned_low"] <= r["untuned"] <= r["untuned_high"] and 0 <= r["out_of_range_tuned"] <= 1
    assert acc[0]["original"] == pytest.approx(plain, abs=1e-9)
    seeds = run.read_table("seeds")
    assert {(r["autoencoder"], r["seed"]) for r in seeds} == {(d, s) for d in ("photos", "mnist") for s in (0, 1)}
    meta = json.loads((run.root / "meta.json").read_text())
    assert set(meta["figures"]) == {"matrix", "reconstructions", "spectra", "nmi", "pretraining", "training"}
    assert all((run.root / "figures" / f"{f}.png").is_file() for f in meta["figures"])
    assert set(meta["claim_figures"]) == {"A1", "A2", "A3", "A4"} and meta["deviations"]
    curve = run.read_table("training")
    assert {(r["stage"], r["autoencoder"]) for r in curve} == {(s, d) for s in ("pretrain", "finetune")
                                                               for d in ("photos", "mnist")}
    assert list(summary)[0].startswith("verdict A1")
    run2, (rows2, _) = go()  # resumed: every stage loaded from its checkpoint, the same numbers
    assert [r["value"] for r in rows2] == [r["value"] for r in rows]
    assert {r["stage2_resumed"] for r in run2.read_table("classifiers")} == {"final"}
