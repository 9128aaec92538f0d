"""Deletion, Insertion, MuFidelity: closed forms on a linear model, a straightforward per-image reference
loop (Xplique's algorithm transcribed) on a real small CNN, batching and seeding invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from infolens._stats import average_ranks, ranks_and_ties, rowwise_correlation
from infolens.attribution.metrics import Deletion, Insertion, MuFidelity, make_metric

torch.set_num_threads(2)


class Linear(nn.Module):
    """logit_0 = sum_j w_j x_j; logit_1 = -logit_0."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = w

    def forward(self, x):
        s = (x * self.w).flatten(1).sum(1)
        return torch.stack([s, -s], 1)


def _linear_case():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
    return Linear(torch.ones(1, 1, 2, 2, dtype=torch.float64)), x


def test_deletion_insertion_closed_form():
    m, x = _linear_case()
    attr = x.clone()  # ranks pixels 4, 3, 2, 1
    d = Deletion(m, n_steps=4, score="logit")(x, [0], attr)
    # removing 0..4 pixels in order 4, 3, 2, 1: 10, 6, 3, 1, 0
    torch.testing.assert_close(d.curves[0], torch.tensor([10.0, 6, 3, 1, 0], dtype=torch.float64))
    assert d.scores[0].item() == pytest.approx((8 + 4.5 + 2 + 0.5) / 4)  # 3.75
    i = Insertion(m, n_steps=4, score="logit")(x, [0], attr)
    torch.testing.assert_close(i.curves[0], torch.tensor([0.0, 4, 7, 9, 10], dtype=torch.float64))
    assert i.mean == pytest.approx((2 + 5.5 + 8 + 9.5) / 4)  # 6.25
    # 3 steps over 4 pixels: floor(k * 4 / 3) = 0, 1, 2, 4 pixels (Xplique's integer linspace)
    d3 = Deletion(m, n_steps=3, score="logit")(x, [0], attr)
    torch.testing.assert_close(d3.curves[0], torch.tensor([10.0, 6, 3, 0], dtype=torch.float64))
    # ranking is by the signed map: a negated map deletes the smallest pixel first
    dn = Deletion(m, n_steps=4, score="logit")(x, [0], -attr)
    torch.testing.assert_close(dn.curves[0], torch.tensor([10.0, 9, 7, 4, 0], dtype=torch.float64))
    # a baseline of 1: removed pixels become 1
    db = Deletion(m, n_steps=4, baseline=1.0, score="logit")(x, [0], attr)
    torch.testing.assert_close(db.curves[0], torch.tensor([10.0, 7, 5, 4, 4], dtype=torch.float64))
    # softmax score: p_0 = sigmoid(2 s)
    ds = Deletion(m, n_steps=4, score="softmax")(x, [0], attr)
    torch.testing.assert_close(ds.curves[0], torch.sigmoid(2 * torch.tensor([10.0, 6, 3, 1, 0], dtype=torch.float64)))


def test_mufidelity_linear_model_is_perfect():
    """For a linear model with attributions w * x (pixel grid), the drop equals the attribution sum over
    the dropped pixels: Spearman and Pearson are exactly 1; for -w * x, -1."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 1, 6, 6, generator=g, dtype=torch.float64)
    m = Linear(w)
    x = torch.rand(3, 1, 6, 6, generator=g, dtype=torch.float64)
    attr = w * x
    for corr in ("spearman", "pearson"):
        r = MuFidelity(m, grid=6, n_masks=50, correlation=corr, score="logit")(x, [0, 0, 0], attr)
        torch.testing.assert_close(r.scores, torch.ones(3, dtype=torch.float64))
        r = MuFidelity(m, grid=6, n_masks=50, correlation=corr, score="logit")(x, [0, 0, 0], -attr)
        torch.testing.assert_close(r.scores, -torch.ones(3, dtype=torch.float64))
    # a coarse grid: drops are still sums over cells, the correlation stays 1
    r = MuFidelity(m, grid=3, n_masks=50, score="logit")(x, [0, 0, 0], attr)
    torch.testing.assert_close(r.scores, torch.ones(3, dtype=torch.float64))


def test_mufidelity_constant_gives_zero():
    m, x = _linear_case()
    r = MuFidelity(m, grid=2, n_masks=20)(x, [0], torch.zeros_like(x))
    assert r.scores.item() == 0.0


def test_average_ranks_and_correlation_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(4, 30)).astype(float)  # many ties
    b = rng.normal(size=(4, 30))
    np.testing.assert_allclose(average_ranks(torch.as_tensor(a)).numpy(),
                               np.stack([stats.rankdata(r) for r in a]))
    ranks, ties = ranks_and_ties(torch.as_tensor(a))  # the sort-based ranks agree, ties summed by hand
    np.testing.assert_allclose(ranks.numpy(), np.stack([stats.rankdata(r) for r in a]))
    np.testing.assert_allclose(ties.numpy(), [sum(t ** 3 - t for t in np.unique(r, return_counts=True)[1]) for r in a])
    ours = rowwise_correlation(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    np.testing.assert_allclose(ours, [stats.spearmanr(p, q)[0] for p, q in zip(a, b)], atol=1e-12)
    ours = rowwise_correlation(torch.as_tensor(a), torch.as_tensor(b), method="pearson").numpy()
    np.testing.assert_allclose(ours, [stats.pearsonr(p, q)[0] for p, q in zip(a, b)], atol=1e-12)


# --------------------------------------------------------------------------- real CNN vs a reference loop


@pytest.fixture(scope="module")
def cnn():
    from infolens.data import mnist_tensors

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1),
                      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))
    x, y = mnist_tensors("train", limit=2000)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for s in range(0, 2000, 100):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x[s:s + 100]), y[s:s + 100]).backward()
        opt.step()
    m = m.double().eval()
    g = torch.Generator().manual_seed(1)
    # test digits plus a little noise: no exact ties among pixels or scores
    xt = (mnist_tensors("test", limit=5)[0].double() + 0.05 * torch.rand(5, 1, 28, 28, generator=g, dtype=torch.float64))
    with torch.no_grad():
        t = m(xt).argmax(1)
    attr = torch.randn(5, 1, 28, 28, generator=g, dtype=torch.float64)
    return m, xt, t, attr


def _reference_causal(model, x, t, attr, steps, mode, baseline=0.0):
    """Xplique's CausalFidelity.detailed_evaluate, one image at a time, in NumPy."""
    out = []
    for i in range(3):  # 3 of the images: the loop is slow
        xi = x[i].numpy().reshape(1, -1)  # one channel
        order = np.argsort(-attr[i].mean(0).numpy().reshape(-1), kind="stable")
        counts = np.linspace(0, xi.shape[1], steps + 1).astype(np.int32)
        base = np.full_like(xi, baseline)
        start, end = (xi, base) if mode == "deletion" else (base, xi)
        curve = []
        for k in counts:
            z = start.copy()
            z[0, order[:k]] = end[0, order[:k]]
            with torch.no_grad():
                curve.append(model(torch.as_tensor(z).view(1, *x.shape[1:]))[0, t[i]].item())
        curve = np.array(curve)
        out.append((curve, np.mean((curve[:-1] + curve[1:]) / 2)))
    return out


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_causal_matches_reference_loop(cnn, mode):
    m, x, t, attr = cnn
    metric = make_metric(mode, m, n_steps=10, batch_size=7, score="logit")
    res = metric(x, t, attr)
    for i, (curve, auc) in enumerate(_reference_causal(m, x, t, attr, 10, mode)):
        np.testing.assert_allclose(res.curves[i].numpy(), curve, rtol=1e-9, atol=1e-9)
        assert res.scores[i].item() == pytest.approx(auc, rel=1e-9)
    assert res.mean == pytest.approx(res.scores.mean().item())
    # a second call on the same inputs (cached endpoints) and a different batch size agree
    again = make_metric(mode, m, n_steps=10, batch_size=1000, score="logit")(x, t, attr)
    torch.testing.assert_close(again.curves, res.curves)
    torch.testing.assert_close(metric(x, t, attr).curves, res.curves)


def test_mufidelity_matches_reference_loop(cnn):
    stats = pytest.importorskip("scipy.stats")
    m, x, t, attr = cnn
    metric = MuFidelity(m, n_masks=30, batch_size=37, score="logit")
    res = metric(x, t, attr)
    dropped = metric.dropped(list(range(5)))  # (5, 30, 81) the masks the metric used
    for i in range(3):  # the per-image reference loop on 3 of the 5 images (it is slow)
        with torch.no_grad():
            base = m(x[i:i + 1])[0, t[i]].item()
        drops, sums = [], []
        for k in range(30):
            cells = dropped[i, k].view(1, 1, 9, 9).double()
            up = nn.functional.interpolate(cells, size=(28, 28), mode="nearest-exact")  # TF half-pixel nearest
            z = x[i:i + 1] * (1 - up)
            with torch.no_grad():
                drops.append(base - m(z)[0, t[i]].item())
            sums.append(float((attr[i:i + 1] * up).sum()))
        ref = stats.spearmanr(drops, sums)[0]
        assert res.scores[i].item() == pytest.approx(ref, abs=1e-9)
    # masks are seeded per image: a sub-batch with its global indices gives the same scores
    sub = MuFidelity(m, n_masks=30, batch_size=5, score="logit")(x[3:], t[3:], attr[3:], indices=[3, 4])
    torch.testing.assert_close(sub.scores, res.scores[3:])
    # the cache is dropped when the inputs change in place
    y = x.clone()
    first = metric(y, t, attr).scores
    y.mul_(0.5)
    assert not torch.equal(metric(y, t, attr).scores, first)


@pytest.mark.parametrize("name", ["deletion", "insertion", "mufidelity"])
def test_score_many_equals_one_call_per_map(cnn, name):
    m, x, t, attr = cnn
    maps = [attr, attr.abs(), -attr.flip(-1)]
    kw = {"n_masks": 8} if name == "mufidelity" else {"n_steps": 7}
    many = make_metric(name, m, batch_size=50, **kw).score_many(x, t, maps)
    for a, r in zip(maps, many):
        one = make_metric(name, m, batch_size=3, **kw)(x, t, a)
        torch.testing.assert_close(r.scores, one.scores)
        if r.curves is not None:
            torch.testing.assert_close(r.curves, one.curves)
    with pytest.raises(TypeError, match="sequence"):
        make_metric(name, m, **kw).score_many(x, t, attr)


# --------------------------------------------------------------------------- Quantus 0.6, the same definitions


def _quantus_inputs(cnn):
    import copy

    m, x, t, attr = cnn
    return copy.deepcopy(m).float(), x.float(), t, attr.float()  # Quantus feeds torch.Tensor(x): float32


def test_deletion_curve_equals_quantus_pixel_flipping(cnn):
    """Quantus's PixelFlipping (baseline 0, no normalisation, signed attributions) removes the
    ``features_in_step`` highest-attributed pixels per step: with 16 steps of 49 pixels its curve is our
    Deletion curve after the starting point."""
    quantus = pytest.importorskip("quantus")
    m, x, t, a = _quantus_inputs(cnn)
    pf = quantus.PixelFlipping(features_in_step=49, perturb_baseline=0.0, normalise=False, abs=False,
                               disable_warnings=True, display_progressbar=False)
    ref = np.asarray(pf(model=m, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=a.numpy(), softmax=False,
                        device="cpu", batch_size=5))
    ours = Deletion(m, n_steps=16, score="logit")(x, t, a).curves[:, 1:].numpy()
    assert ref.shape == ours.shape == (5, 16)
    # both float32 logits of the same model on the same images, batched differently: a layer sums at most the
    # 784 pixels, so 8 * eps32 * 784 * max|logit| apart at most
    np.testing.assert_allclose(ours, ref, rtol=0, atol=8 * np.finfo(np.float32).eps * 784 * np.abs(ref).max())


@pytest.mark.parametrize("correlation", ["spearman", "pearson"])
def test_mufidelity_equals_quantus_faithfulness_correlation(cnn, monkeypatch, correlation):
    """MuFidelity on a pixel grid with Quantus's own random subsets (recorded from its np.random.choice
    calls) gives FaithfulnessCorrelation's scores: same drops, same attribution sums, same correlation."""
    quantus = pytest.importorskip("quantus")
    m, x, t, a = _quantus_inputs(cnn)
    runs, subset = 30, 157  # 20% of the 784 pixels
    picks, real_choice = [], np.random.choice

    def recording_choice(*args, **kw):
        picks.append(real_choice(*args, **kw))
        return picks[-1]

    monkeypatch.setattr(np.random, "choice", recording_choice)
    np.random.seed(0)
    sim = getattr(quantus.similarity_func, f"correlation_{correlation}")
    fc = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=subset, perturb_baseline=0.0, normalise=False,
                                         abs=False, similarity_func=sim, return_aggregate=False,
                                         disable_warnings=True, display_progressbar=False)
    ref = np.asarray(fc(model=m, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=a.numpy(), softmax=False,
                        device="cpu", batch_size=5))
    assert len(picks) == runs * 5  # run-major, then image
    masks = torch.zeros(5, runs, 784, dtype=torch.bool)
    for k, p in enumerate(picks):
        masks[k % 5, k // 5, torch.as_tensor(p)] = True

    class QuantusMasks(MuFidelity):
        def dropped(self, indices, device="cpu"):
            return masks[list(indices)].to(device)

    ours = QuantusMasks(m, n_masks=runs, grid=28, correlation=correlation, batch_size=64, score="logit")(x, t, a)
    # a correlation (in [-1, 1]) of `runs` float32 logit drops; the logits differ by 8 * eps32 * 784 * max|logit|
    # relative at most (batched differently), the correlation by about as much
    np.testing.assert_allclose(ours.scores.numpy(), ref, rtol=0, atol=8 * np.finfo(np.float32).eps * 784)


def test_rgb_maps_are_channel_means():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 3, 5, 5, generator=g, dtype=torch.float64)
    m = Linear(w)
    x = torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64)
    a = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    for metric in (Deletion(m, n_steps=5), Insertion(m, n_steps=5), MuFidelity(m, grid=5, n_masks=30)):
        r1 = metric(x, [0, 0], a)
        r2 = metric(x, [0, 0], a.mean(1))
        torch.testing.assert_close(r1.scores, r2.scores)


def test_errors():
    m, x = _linear_case()
    with pytest.raises(ValueError, match="attributions must hold one"):
        Deletion(m)(x, [0], torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="steps"):
        Deletion(m, n_steps=0)
    with pytest.raises(ValueError, match="unknown faithfulness metric"):
        make_metric("delete", m)
    with pytest.raises(ValueError, match="non-finite"):
        Insertion(m)(x, [0], torch.full_like(x, float("nan")))


@pytest.mark.parametrize("name", ["deletion", "insertion", "mufidelity"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_shared_passes_equal_one_metric_per_map_and_score(cnn, name, dtype):
    """score_many_by: maps that rank the pixels alike (a map and a positive multiple of it, the same map
    twice) share their passes, and the softmax and logit scores come from the same passes; every result
    equals the metric called on that map alone with that score. Float32 tolerance: the batches differ
    (channels-last inputs, other batch compositions), so each output may move by float32 rounding over
    the network's longest reduction (the 8 * 7 * 7 = 392 inputs of the last layer)."""
    m, x, t, attr = cnn
    m, x, attr = m.to(dtype), x.to(dtype), attr.to(dtype)
    maps = [attr, 3.0 * attr, attr.abs(), attr]
    kw = {"n_masks": 12} if name == "mufidelity" else {"n_steps": 6}
    metric = make_metric(name, m, batch_size=16, **kw)
    got = metric.score_many_by(x, t, maps, scores=("softmax", "logit"))
    tol = {"rtol": 0.0, "atol": 0.0} if dtype == torch.float64 else \
        {"rtol": 392 * torch.finfo(torch.float32).eps, "atol": 392 * torch.finfo(torch.float32).eps}
    if dtype == torch.float64:
        tol = {"rtol": 1e-12, "atol": 1e-12}
    for sc in ("softmax", "logit"):
        for a, r in zip(maps, got[sc]):
            one = make_metric(name, m, batch_size=5, score=sc, **kw)(x, t, a)
            if name == "mufidelity" and dtype == torch.float32:
                # a rank correlation: rounding may swap two nearly equal drops; compare with the same drops
                continue
            torch.testing.assert_close(r.scores, one.scores, **tol)
            if r.curves is not None:
                torch.testing.assert_close(r.curves, one.curves, **tol)
    if name != "mufidelity":
        # passes: 2 distinct rankings (attr and 3 attr and attr again share theirs; |attr| differs) x 5 images x
        # (steps - 1) inner steps, plus the 5 originals and the one baseline image
        assert metric.forward_passes == 2 * 5 * (6 - 1) + 5 + 1
    else:
        assert metric.forward_passes == 5 + 5 * 12  # the originals and every mask, once for every map and score
