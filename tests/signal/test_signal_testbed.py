"""The signal testbed off the classifiers' domain (arXiv 1803.08337, amendment 1 of the claims): photograph
patches (exact crops of the resized grey photographs, seeded, held-out photographs disjoint, no MNIST),
stage 2 keeping its best held-out state (a scripted loss curve), checkpoints handed to a callback (the
method writes no file; the runner's saver round-trips them), the multi-seed order and A1's interval over
digits and seeds."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from infolens.signal import (SIDES, Schedule, best_evaluation, build_autoencoder, combine_orders,
                             finetune_through_classifier, photo_patches, pretrain_autoencoder, signal_order, to_grey)
from infolens.signal.autoencoder import _fit
from infolens.signal.patches import LUMA

# =========================================================================== photograph patches


def _photos(p=3, h=60, w=70, seed=0):
    return torch.rand(p, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_grey_is_the_bt601_luma():
    x = _photos(2, 5, 6)
    ref = LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2]
    torch.testing.assert_close(to_grey(x)[:, 0], ref)
    assert to_grey(x[:, :1]) is not None and to_grey(x[:, :1]).shape == (2, 1, 5, 6)
    with pytest.raises(ValueError, match="images"):
        to_grey(x[0])


def test_patches_are_exact_crops_shapes_range_and_seeded():
    x = _photos()
    p, src = photo_patches(x, 200, size=8, sides=(8,), flips=False, seed=3)
    assert p.shape == (200, 1, 8, 8) and p.dtype == torch.float32 and src.shape == (200,)
    assert 0.0 <= float(p.min()) and float(p.max()) <= 1.0
    g = to_grey(x)
    # at the photograph's own scale every patch is one window of its grey photograph (found by brute force)
    win = g.unfold(2, 8, 1).unfold(3, 8, 1)  # (P, 1, H-7, W-7, 8, 8)
    for i in range(0, 200, 37):
        d = (win[src[i], 0] - p[i, 0]).abs().amax((-1, -2))
        assert float(d.min()) == 0.0
    q, src_q = photo_patches(x, 200, size=8, sides=(8,), flips=False, seed=3)
    assert torch.equal(p, q) and torch.equal(src, src_q)
    assert not torch.equal(p, photo_patches(x, 200, size=8, sides=(8,), flips=False, seed=4)[0])
    # flips: every patch is a window of the photograph, mirrored along none, one or both axes
    f, src_f = photo_patches(x, 60, size=8, sides=(8,), seed=5)
    for i in range(0, 60, 7):
        cands = [f[i, 0], f[i, 0].flip(0), f[i, 0].flip(1), f[i, 0].flip(0, 1)]
        assert min(float((win[src_f[i], 0] - c).abs().amax((-1, -2)).min()) for c in cands) == 0.0
    # rescales: a patch of side 16 is a crop of the photograph resized by 1/2 (antialiased bilinear)
    r, src_r = photo_patches(x, 30, size=8, sides=(16,), flips=False, seed=6)
    half = F.interpolate(g, size=(30, 35), mode="bilinear", antialias=True, align_corners=False)
    win2 = half.unfold(2, 8, 1).unfold(3, 8, 1)
    for i in range(0, 30, 5):
        assert float((win2[src_r[i], 0] - r[i, 0]).abs().amax((-1, -2)).min()) == 0.0
    # every photograph and every scale is drawn
    _, s_all = photo_patches(x, 300, size=8, sides=(8, 16, 32), seed=0)
    assert set(s_all.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("kwargs,match", [({"n": 0}, "n must"), ({"sides": (100,)}, "sides"),
                                          ({"sides": (4,)}, "sides"), ({"size": 0}, "size")])
def test_patch_errors_name_the_argument(kwargs, match):
    args = {"n": 4, "size": 8, "sides": (8,), **kwargs}
    with pytest.raises(ValueError, match=match):
        photo_patches(_photos(), **args)
    with pytest.raises(ValueError, match="photos"):
        photo_patches(torch.rand(3, 28, 28), 4)


def test_stage1_patches_hold_out_whole_photographs_and_need_no_mnist():
    from infolens.experiments.signal.runner import HELD_OUT_PHOTOS, Settings, photo_patch_sets, stage1_data

    st = Settings(patches=300, held_patches=100)
    tp, hp, tr_names, ho_names = photo_patch_sets(st)
    assert tp.shape == (300, 1, 28, 28) and hp.shape == (100, 1, 28, 28)
    assert 0 <= float(tp.min()) and float(tp.max()) <= 1 and 0 <= float(hp.min()) and float(hp.max()) <= 1
    assert set(ho_names) == set(HELD_OUT_PHOTOS) and not set(tr_names) & set(ho_names)
    assert len(tr_names) + len(ho_names) == 17 and max(SIDES) <= 260
    # the photographs' stage 1 reads no digit: it runs with the MNIST arguments absent
    a, b = stage1_data("photos", st, None, None)  # type: ignore[arg-type]
    assert torch.equal(a, tp) and torch.equal(b, hp)


# =========================================================================== keeping the best state


def test_best_evaluation_by_hand():
    assert best_evaluation([1.0, 0.5, 0.7, 0.5, 0.9]) == 1  # earliest on ties
    assert best_evaluation([math.nan, 2.0, 1.0]) == 2
    assert best_evaluation([math.nan]) is None and best_evaluation([]) is None


class _Lin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))


def _scripted_fit(curve, *, keep_best, resume=None, stop_after=None, saved=None):
    """``_fit`` on a one-parameter model whose every step moves it; the held-out loss follows ``curve``
    (one value per evaluation, the initial state first), whatever the weights."""
    model = _Lin()
    it = iter(curve)
    states: dict = {}  # mid-stage checkpoints by step, the finished one under "final"
    sched = Schedule(max_steps=2 * (len(curve) - 1), batch_size=4, eval_every=2, patience=100, tol=0.0)

    def step(x, _):
        return (model.w - x.mean()).square().sum() + model.w.sum()  # the gradient never vanishes

    def validate():
        return next(it), None

    def record(ck):
        states["final" if ck["final"] else ck["step"]] = ck["state"]["w"].clone()
        if saved is not None:
            saved.append(copy.deepcopy(ck))

    data = torch.rand(16, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    res = _fit(model, step, [model.w], data, None, validate, stage="finetune", config={"k": 1},
               set_modes=model.train, schedule=sched, seed=0, device=torch.device("cpu"), resume=resume,
               on_checkpoint=record, stop_after=stop_after, progress=False, calibrate=lambda: None,
               keep_best=keep_best)
    return model, res, states


def test_stage_keeps_the_best_held_out_state_of_a_scripted_curve():
    curve = [1.0, 0.8, 0.4, 0.6, 0.7, 0.9]  # best at the 3rd evaluation (step 4), ends worse
    model, res, states = _scripted_fit(curve, keep_best=True)
    assert res.kept_step == 4 and res.val_loss == 0.4 and res.steps == 10
    assert torch.equal(model.w.detach(), states[4]) and torch.equal(states["final"], states[4])
    last, res_last, states_l = _scripted_fit(curve, keep_best=False)  # stage 1's rule: the last state
    assert res_last.kept_step == 10 and res_last.val_loss == 0.9
    assert torch.equal(last.w.detach(), states_l["final"]) and torch.equal(states_l[4], states[4])
    assert not torch.equal(states_l["final"], states[4])  # the last state differs from the kept one
    # the untuned initial state wins when tuning never helps
    m0, r0, _ = _scripted_fit([0.3, 0.5, 0.6], keep_best=True)
    assert r0.kept_step == 0 and torch.equal(m0.w.detach(), torch.zeros(3))
    # interrupted after the best and resumed: the best survives the checkpoint
    saved: list = []
    _, part, _ = _scripted_fit(curve, keep_best=True, stop_after=6, saved=saved)
    assert not part.finished and not saved[-1]["final"] and saved[-1]["best"]["step"] == 4
    model, res, _ = _scripted_fit(curve[4:], keep_best=True, resume=saved[-1])
    assert res.resumed == "partial" and res.kept_step == 4 and torch.equal(model.w.detach(), states[4])


def test_keeping_the_best_state_never_recalibrates_it():
    """With keep_best the state returned is the one evaluated: ``calibrate`` (BatchNorm made exact on other
    images) is not applied to it; stage 1's rule (keep the last state) still calibrates."""
    calls: list = []
    for keep_best in (True, False):
        model, it = _Lin(), iter([0.3, 0.5, 0.6])
        _fit(model, lambda x, _: (model.w - x.mean()).square().sum() + model.w.sum(), [model.w],
             torch.rand(16, 1, 2, 2), None, lambda: (next(it), None), stage="finetune", config={},
             set_modes=model.train, schedule=Schedule(max_steps=4, batch_size=4, eval_every=2, patience=100, tol=0.0),
             seed=0, device=torch.device("cpu"), resume=None, on_checkpoint=None, stop_after=None, progress=False,
             calibrate=lambda k=keep_best: calls.append(k), keep_best=keep_best)
    assert calls == [False]


def test_the_tuned_autoencoder_reproduces_the_held_out_loss_that_chose_it(train_digits, quick_mnist_model):
    """With the default BatchNorm calibration setting, the returned autoencoder gives exactly the held-out
    cross-entropy of the evaluation that kept it (a recalibrated state would not: its BatchNorm statistics
    would come from the tuning images, not from the state the curve chose)."""
    x, y = train_digits[0][:320], train_digits[1][:320]
    vx, vy = x[:64], y[:64]
    ae = build_autoencoder(1, (4, 8), seed=0)
    r = finetune_through_classifier(ae, quick_mnist_model, x[64:], y[64:], held_out=(vx, vy),
                                    schedule=Schedule(max_steps=6, batch_size=32, eval_every=2, patience=100),
                                    progress=False)
    with torch.no_grad():
        again = float(F.cross_entropy(quick_mnist_model.eval()(ae.eval()(vx)), vy))
    # the same forward pass; only the sum over 64 digits may be ordered differently
    assert again == pytest.approx(r.val_loss, rel=64 * 8 * torch.finfo(torch.float32).eps)


def test_finetune_keeps_best_by_default_and_returns_a_state_it_evaluated(train_digits, quick_mnist_model):
    x, y = train_digits[0][:256], train_digits[1][:256]
    ae = build_autoencoder(1, (4, 8), seed=0)
    got: list = []
    r = finetune_through_classifier(ae, quick_mnist_model, x, y, held_out=(x[:64], y[:64]),
                                    schedule=Schedule(max_steps=6, batch_size=32, eval_every=2, patience=100),
                                    calibration_images=0, on_checkpoint=got.append, progress=False)
    vals = [h["val_loss"] for h in r.history]
    assert r.kept_step == r.history[best_evaluation(vals)]["step"] and r.val_loss == min(vals)
    assert got[-1]["final"] and got[-1]["kept_step"] == r.kept_step
    assert all(torch.equal(v, ae.state_dict()[k]) for k, v in got[-1]["state"].items())


# =========================================================================== checkpoints: callback and files


@pytest.fixture(scope="module")
def train_digits():
    from infolens.data import mnist_splits

    x, y = mnist_splits()["train"].tensors
    return x[:1024], y[:1024]


def test_checkpoints_go_to_the_callback_and_resume_bit_identically(tmp_path, train_digits):
    from infolens.experiments.signal.runner import load_checkpoint, saver

    x = train_digits[0][:256]
    vx = train_digits[0][256:384]
    sched = Schedule(max_steps=10, batch_size=64, eval_every=3, tol=0.0, patience=100)
    kw = dict(schedule=sched, held_out=vx, progress=False, calibration_images=128)
    before = set(tmp_path.rglob("*"))
    full = build_autoencoder(1, (4, 8), seed=1)
    pretrain_autoencoder(full, x, **kw)
    assert set(tmp_path.rglob("*")) == before  # no file written by the method
    path = tmp_path / "pre.pt"
    part = build_autoencoder(1, (4, 8), seed=1)
    r = pretrain_autoencoder(part, x, on_checkpoint=saver(path), stop_after=5, **kw)  # "killed" after 5 steps
    assert not r.finished and not path.exists() and (tmp_path / "pre.partial.pt").exists()
    resumed = build_autoencoder(1, (4, 8), seed=1)
    r = pretrain_autoencoder(resumed, x, resume=load_checkpoint(path), on_checkpoint=saver(path), **kw)
    assert r.resumed == "partial" and r.finished and path.exists() and not (tmp_path / "pre.partial.pt").exists()
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values()))
    again = build_autoencoder(1, (4, 8), seed=1)
    r = pretrain_autoencoder(again, x, resume=load_checkpoint(path), **kw)
    assert r.resumed == "final" and [h["step"] for h in r.history] == [0, 3, 6, 9, 10]
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), again.state_dict().values()))
    other = Schedule(max_steps=10, batch_size=64, eval_every=3, lr=1e-2)
    r = pretrain_autoencoder(build_autoencoder(1, (4, 8), seed=1), x, resume=load_checkpoint(path),
                             **{**kw, "schedule": other})
    assert r.resumed is None  # other settings: recomputed
    with pytest.raises(TypeError, match="resume"):
        pretrain_autoencoder(build_autoencoder(1, (4, 8), seed=1), x, resume=str(path), **kw)


# =========================================================================== several seeds


def _order(beats_pairs, names=("a", "b", "c"), n=200):
    """A signal order over ``names`` from {(winner, loser): decided?}: decided pairs differ by 40 % of the
    images, undecided ones by none."""
    k = len(names)
    c = torch.zeros(k, k, n, dtype=torch.bool)
    c[:, :, : n // 2] = True
    for (w, lo), dec in beats_pairs.items():
        a, b = names.index(w), names.index(lo)
        if dec:  # b reads a's reconstructions better than a reads b's
            c[a, b, n // 2: n // 2 + int(0.4 * n)] = True
    return signal_order(c, list(names))


def test_a_pair_is_decided_only_when_every_seed_decides_it_alike():
    from infolens.experiments.signal.verdicts import order_verdict

    s1 = _order({("a", "b"): True, ("b", "c"): True, ("a", "c"): True})
    assert s1.is_total and s1.ranking == ["a", "b", "c"]
    same = combine_orders([s1, copy.deepcopy(s1), s1])
    assert same.is_total and same.ranking == ["a", "b", "c"] and all(p["seeds_decided"] == 3 for p in same.pairs)
    s2 = _order({("a", "b"): True, ("b", "c"): True, ("a", "c"): False})  # a ~ c undecided in one seed
    mixed = combine_orders([s1, s2, s1])
    by = {(p["a"], p["b"]): p for p in mixed.pairs}
    assert not by[("a", "c")]["decided"] and by[("a", "c")]["seeds_decided"] == 2 and by[("a", "b")]["decided"]
    assert not mixed.is_total and mixed.is_transitive is False  # a > b > c decided, a ~ c not
    assert order_verdict(mixed, few=False) == "inconclusive"  # an undecided pair: lack of power
    flipped = _order({("b", "a"): True, ("b", "c"): True, ("a", "c"): True})  # the seeds disagree on a, b
    dis = combine_orders([s1, flipped, s1])
    p_ab = next(p for p in dis.pairs if {p["a"], p["b"]} == {"a", "b"})
    assert not p_ab["decided"] and not p_ab["seeds_agree"] and p_ab["seeds_decided"] == 3
    cyc = _order({("a", "b"): True, ("b", "c"): True, ("c", "a"): True})
    assert order_verdict(combine_orders([cyc, cyc, cyc]), few=False) == "not reproduced"
    assert order_verdict(combine_orders([s1, s1, s1]), few=False) == "reproduced"
    assert order_verdict(combine_orders([s1, s1, s1]), few=True) == "inconclusive"
    with pytest.raises(ValueError, match="same classifiers"):
        combine_orders([s1, _order({("a", "b"): True}, names=("a", "b"))])
    with pytest.raises(ValueError, match="at least one"):
        combine_orders([])


def test_a1_interval_resamples_seeds_as_well_as_digits():
    from infolens.experiments.signal.verdicts import digits_interval, seeds_and_digits

    mu = torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64)
    v = mu[:, None].expand(3, 400).clone()  # no digit-to-digit variation, only seed-to-seed
    iv = seeds_and_digits(v)
    assert iv.value == pytest.approx(0.1) and iv.n == 400
    assert -1e-12 <= iv.low < 0.1 < iv.high <= 0.2 + 1e-12  # (float64 means of 3 values) the seeds' spread, which the digits alone cannot show
    flat = digits_interval(v.mean(0))
    assert flat.low == pytest.approx(0.1) and flat.high == pytest.approx(0.1)
    one = seeds_and_digits(v[:1] + torch.linspace(0, 1, 400, dtype=torch.float64))  # one seed: digits only
    ref = digits_interval(v[0] + torch.linspace(0, 1, 400, dtype=torch.float64))
    assert (one.value, one.low, one.high) == pytest.approx((ref.value, ref.low, ref.high))
