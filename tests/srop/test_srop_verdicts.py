"""SROP's claim rules: S1 without a UI-keeping low-pass is inconclusive; S2 over three seeds, its
interval over images and seed pairs; the primary measurement point."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from infolens.results import RunDir


class CheckerClassifier(nn.Module):
    """Decides from the sign of the image's (pi, pi) checkerboard component (radius sqrt(2) Nyquist): every
    low-pass of the grid removes it, so no cut-off keeps accuracy. A conv + ReLU gives maps to measure."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.relu(self.conv(x))
        h, w = x.shape[-2:]
        checker = (-1.0) ** (torch.arange(h)[:, None] + torch.arange(w)[None, :]).to(x)
        s = (x * checker).mean((1, 2, 3))
        return torch.stack([s, -s], 1)


def _checker_images(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    sign = torch.where(torch.rand(n, generator=g) > 0.5, 1.0, -1.0)
    checker = (-1.0) ** (torch.arange(16)[:, None] + torch.arange(16)[None, :]).float()
    blobs = torch.nn.functional.avg_pool2d((torch.rand(n, 1, 16, 16, generator=g) > 0.8).float(), 3, 1, 1)
    return (0.3 + 0.4 * blobs + 0.1 * sign[:, None, None, None] * checker).clamp(0, 1)


def test_s1_without_a_cutoff_that_keeps_accuracy_is_inconclusive(tmp_path):
    from infolens.experiments.srop.verdicts import QUICK, choose_cutoff, s1_s2_model

    x = _checker_images(20)
    model = CheckerClassifier().eval()
    cut = choose_cutoff(model, x, None, "cpu")
    assert not cut["kept"]  # the premise is missing for this model
    tables = {"cutoffs": [], "dist": [], "stages": [], "robustness": []}
    s1, s2 = s1_s2_model(RunDir(tmp_path / "c", analysis="srop", params={}), "net", model, x, torch.arange(20), x,
                         None, QUICK, "cpu", "MNIST", tables)
    assert len(s1) == 3
    for r in s1:
        assert r["verdict"] == "inconclusive" and r["note"].startswith("premise missing: no cut-off keeps accuracy")
        assert math.isfinite(r["value"])  # measured and shown, never decided


def test_s2_ratio_over_seed_pairs_by_hand():
    from infolens.experiments.srop.verdicts import SEED_PAIRS, s2_ratio

    assert len(SEED_PAIRS) >= 3
    # W1(trained, seed s) = s; W1(seed i, seed j) = i + j  (R = 2 resamples)
    w = {("original", f"random {s}"): torch.tensor([float(s), 2.0 * s]) for s in (1, 2, 3)}
    w.update({(f"random {i}", f"random {j}"): torch.tensor([float(i + j), float(i + j)]) for i, j in
              ((1, 2), (1, 3), (2, 3))})
    point = s2_ratio(w)
    assert point.tolist() == pytest.approx([2.0 / 4.0, 4.0 / 4.0])  # mean over seeds / mean over pairs
    draws = torch.tensor([[0, 0, 0], [2, 2, 1]])  # resample 0: pair (1, 2) thrice; 1: (2, 3), (2, 3), (1, 3)
    got = s2_ratio(w, draws)
    assert got.tolist() == pytest.approx([1.5 / 3.0, (2 * 5.0 + 4.0) / 3 / ((5 + 5 + 4) / 3)])


def test_s2_interval_moves_with_the_seed_pairs():
    """With images that carry no spread, the interval comes from the seed pairs alone."""
    from infolens.claims import bootstrap
    from infolens.experiments.srop.verdicts import s2_ratio, seed_pair_draws

    w = {("original", f"random {s}"): torch.full((1000,), 3.0) for s in (1, 2, 3)}
    w.update({("random 1", "random 2"): torch.full((1000,), 0.5), ("random 1", "random 3"): torch.full((1000,), 1.0),
              ("random 2", "random 3"): torch.full((1000,), 1.5)})
    draws = seed_pair_draws(1000)

    def stat(idx):
        if idx.ndim == 1:
            return s2_ratio({k: v[:1] for k, v in w.items()})
        return s2_ratio(w, draws[:idx.shape[0]])

    iv = bootstrap(stat, 30, batched=True)
    assert iv.value == pytest.approx(3.0)
    assert iv.low < 3.0 < iv.high  # a single seed pair (0.5 or 1.5) would give 6 or 2
    assert iv.low >= 2.0 - 1e-9 and iv.high <= 6.0 + 1e-9


def test_builtin_random_inits_use_the_models_own_constructor():
    from infolens.experiments.srop.verdicts import SEEDS, random_inits
    from infolens.models import build_builtin

    trained = build_builtin("mnist_allconv", seed=0)
    inits = random_inits("mnist_allconv", trained, "cpu")
    assert list(inits) == [f"random {s}" for s in SEEDS] and len(SEEDS) >= 3
    for s, make in zip(SEEDS, inits.values()):
        want = build_builtin("mnist_allconv", seed=s).state_dict()
        assert all(torch.equal(v, want[k]) for k, v in make().state_dict().items())


def test_primary_point_is_activation():
    from infolens.experiments.srop.verdicts import POINTS, PRIMARY, variant_of

    assert PRIMARY == "activation" and PRIMARY in POINTS
    assert [variant_of(p) for p in POINTS].count("primary") == 1
