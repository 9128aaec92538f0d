"""Sobol (Fel et al. 2021) and HSIC (Novello et al. 2022) attribution, each checked against something
independent: closed-form total Sobol indices of an additive model, the estimators against direct numpy
formulas on hand-built arrays, a model that reads one cell, cv2's bicubic resize (Xplique's upsampling),
and the sampling properties of the designs (Sobol nets, Latin hypercube)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from infolens import attribution as A
from infolens.attribution.perturbation import (binary_latin_hypercube, hsic_binary, jansen_total_indices,
                                          sobol_design)


class CellModel(nn.Module):
    """Logit of class 0 = ``sum_i w_i * mean of cell i`` on a ``g x g`` grid (class 1: 0): additive and
    linear in the cell masks under inpainting."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", weights.flatten())
        self.g = int(round(weights.numel() ** 0.5))

    def forward(self, x):
        cells = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), self.g).flatten(1)  # (N, g^2) row-major
        s = cells @ self.w.to(x.dtype)
        return torch.stack([s, torch.zeros_like(s)], 1)


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(12, 3)).eval()


X = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(3))
T = torch.tensor([0, 2, 1])

# --------------------------------------------------------------------------- estimators, by hand


def test_jansen_hand_computed_and_against_numpy():
    # n = 2 designs, one cell: f(A) = [1, 3], f(C) = [2, 1]; Var f(A) (n-1) = 2; sum (a-c)^2 = 1 + 4 = 5
    st = jansen_total_indices(torch.tensor([[1.0, 3.0]]), torch.tensor([[[2.0, 1.0]]]))
    assert st.shape == (1, 1) and st.item() == pytest.approx(5 / (2 * 2 * 2))
    rng = np.random.default_rng(0)
    a, c = rng.normal(size=(2, 7)), rng.normal(size=(2, 4, 7))
    ref = np.empty((2, 4))
    for b in range(2):
        for i in range(4):
            ref[b, i] = np.mean((a[b] - c[b, i]) ** 2) / (2 * np.var(a[b], ddof=1))
    np.testing.assert_allclose(jansen_total_indices(torch.tensor(a), torch.tensor(c)).numpy(), ref, rtol=1e-12)


def _hsic_numpy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """tr(K H L H) / (n - 1)^2 with Xplique's kernels, written out: K = 1 + (0.5 - (x - x')^2), L = RBF with
    the median output as bandwidth."""
    n = len(y)
    h = np.eye(n) - np.ones((n, n)) / n
    w = np.median(y)
    l_ = np.exp(-(y[:, None] - y[None, :]) ** 2 / (2 * w ** 2))
    out = []
    for d in range(x.shape[1]):
        k = 1 + (0.5 - (x[:, d, None] - x[None, :, d]) ** 2)
        out.append(np.trace(k @ h @ l_ @ h) / (n - 1) ** 2)
    return np.array(out)


def test_hsic_hand_computed_and_against_numpy():
    masks = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)  # 4 designs, 2 cells
    y = np.array([0.9, 0.2, 0.7, 0.4])
    got = hsic_binary(torch.tensor(masks), torch.tensor(y)[None])[0].numpy()
    np.testing.assert_allclose(got, _hsic_numpy(masks, y), rtol=1e-12)
    # the output follows cell 0 (y high where cell 0 is kept): cell 0 depends more
    assert got[0] > got[1]
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 2, size=(20, 5)).astype(float)
    ys = rng.uniform(0.1, 2.0, size=(3, 20))
    got = hsic_binary(torch.tensor(masks), torch.tensor(ys)).numpy()
    np.testing.assert_allclose(got, np.stack([_hsic_numpy(masks, yy) for yy in ys]), rtol=1e-10)


# --------------------------------------------------------------------------- designs


def test_sobol_design_is_a_replicated_sobol_net():
    g, n = 2, 8
    d = sobol_design(g, n, seed=5).flatten(1)
    assert d.shape == (n * (g * g + 2), g * g)
    a, b, c = d[:n], d[n:2 * n], d[2 * n:].view(g * g, n, g * g)
    for i in range(g * g):  # C^i = A with column i from B
        expect = a.clone()
        expect[:, i] = b[:, i]
        assert torch.equal(c[i], expect)
    # the first 2^k points of a (scrambled) Sobol sequence put one point in each [j/n, (j+1)/n) per coordinate
    ab = torch.cat([a, b], 1)
    assert ((ab >= 0) & (ab < 1)).all()
    for col in ab.T:
        assert sorted((col * n).floor().long().tolist()) == list(range(n))
    assert not torch.equal(sobol_design(g, n, seed=6), sobol_design(g, n, seed=5))


def test_binary_latin_hypercube_is_balanced():
    m = binary_latin_hypercube(9, 10, seed=2)
    assert m.shape == (10, 9) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert (m.sum(0) == 5).all()  # LHS strata: exactly half of an even number of designs keep each cell
    assert not torch.equal(m, binary_latin_hypercube(9, 10, seed=3))
    assert torch.equal(m, binary_latin_hypercube(9, 10, seed=2))


# --------------------------------------------------------------------------- methods against closed forms


def test_sobol_total_indices_of_an_additive_model():
    """For ``f = sum_i v_i m_i`` with independent ``m_i ~ U[0, 1]``, ``S_Ti = v_i^2 / sum_j v_j^2``."""
    g = 3
    w = torch.tensor([3.0, -2.0, 1.0, 0.5, 0.0, 2.5, -1.5, 0.25, 1.25], dtype=torch.float64)
    model = CellModel(w).double()
    x = 0.5 + torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cell_means = F.adaptive_avg_pool2d(x, g).flatten(1)  # inpainting scales cell i by m_i: v_i = w_i * mean_i
    v2 = (w * cell_means).square()
    expected = v2 / v2.sum(1, keepdim=True)
    sob = A.Sobol(model, grid=g, n_design=256, score="logit")
    st = sob.cell_scores(x, 0).flatten(1)
    torch.testing.assert_close(st, expected, atol=0.006, rtol=0.02)  # max error 0.002 at n = 256 (0.06 at 32)
    assert torch.equal(st.argsort(1, descending=True), expected.argsort(1, descending=True))
    assert st[:, 4].abs().max() < 1e-12  # w = 0: the output never changes with that cell
    # the map is the grid of indices resized as Xplique does: cv2.resize(..., INTER_CUBIC)
    cv2 = pytest.importorskip("cv2")
    maps = sob.attribute(x, 0).maps
    assert maps.shape == (2, 1, 12, 12)
    for i in range(2):
        ref = cv2.resize(st[i].view(g, g).numpy(), (12, 12), interpolation=cv2.INTER_CUBIC)
        # bicubic: 16 float32 products per output pixel (cv2 and torch round differently): 8 * eps32 * 16 * max|st|
        np.testing.assert_allclose(maps[i, 0].numpy(), ref, rtol=0,
                                   atol=8 * np.finfo(np.float32).eps * 16 * float(st[i].abs().max()))


def test_hsic_finds_the_one_cell_the_model_reads():
    g, k = 3, 5
    w = torch.zeros(g * g)
    w[k] = 4.0
    model = CellModel(w)
    x = 0.2 + 0.8 * torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    for score in ("logit", "softmax"):
        h = A.HSIC(model, grid=g, n_design=128, score=score).cell_scores(x, 0).flatten(1)
        assert (h.argmax(1) == k).all()
        others = torch.cat([h[:, :k], h[:, k + 1:]], 1)
        assert (h[:, k] > 10 * others.max(1).values).all()  # an unread cell: O(1/n) noise


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("cls,kw", [(A.Sobol, {"grid": 3, "n_design": 8}),
                                    (A.HSIC, {"grid": 3, "n_design": 24})], ids=["sobol", "hsic"])
def test_batching_seed_and_dtype(cls, kw):
    m = _tiny_net()
    full = cls(m, batch_size=3, internal_batch_size=1000, **kw).attribute(X, T).maps
    assert full.shape == (3, 1, 12, 12) and torch.isfinite(full).all()
    # A batch of 3 and three batches of 1 sum the model's evaluations in different orders. A Sobol index is a
    # ratio of sums over its n_evals = n_design * (grid^2 + 2) evaluations, so the two may differ by about
    # 8 * eps * n_evals * max|map|; an HSIC value is a mean of n_design^2 kernel products, each in [0, 1], so by
    # 8 * eps * n_design^2 / n_design^2 = 8 * eps (eps of the dtype). Compared in float64 (where that is
    # ~1e-13) and, with the same bound at float32's eps, in float32.
    def bound(dtype: torch.dtype, maps: torch.Tensor) -> float:
        eps = torch.finfo(dtype).eps
        if cls is A.Sobol:
            return 8 * eps * kw["n_design"] * (kw["grid"] ** 2 + 2) * maps.abs().max().item()
        return 8 * eps

    for dtype in (torch.float64, torch.float32):
        md, xd = _tiny_net().to(dtype), X.to(dtype)
        whole = cls(md, batch_size=3, internal_batch_size=1000, **kw).attribute(xd, T).maps
        one = torch.cat([cls(md, batch_size=1, internal_batch_size=5, **kw).attribute(xd[i:i + 1], T[i:i + 1]).maps
                         for i in range(3)])
        torch.testing.assert_close(one, whole, rtol=0, atol=bound(dtype, whole))
    torch.testing.assert_close(cls(m, **kw).attribute(X, T).maps, full, rtol=0, atol=0)  # same seed, same map
    assert not torch.allclose(cls(m, seed=1, **kw).attribute(X, T).maps, full)
    f64 = cls(_tiny_net().double(), **kw).attribute(X.double(), T).maps
    # float32 against float64: float32's rounding (the bound above at eps32) is what separates them
    torch.testing.assert_close(full.double(), f64, rtol=0, atol=bound(torch.float32, f64))


@pytest.mark.parametrize("cls", [A.Sobol, A.HSIC], ids=["sobol", "hsic"])
def test_bad_arguments(cls):
    m = _tiny_net()
    with pytest.raises(ValueError, match="grid"):
        cls(m, grid=0)
    with pytest.raises(ValueError, match="n_design"):
        cls(m, n_design=0)
    with pytest.raises(ValueError, match="perturbation"):
        cls(m, perturbation="blurring")
    with pytest.raises(ValueError, match="grid 16 is larger than the image 12x12"):
        cls(m, grid=16, n_design=4).attribute(X, T)
    if cls is A.Sobol:
        with pytest.raises(ValueError, match="n_design must be a power of two"):
            cls(m, n_design=12)


def test_registry_and_defaults():
    m = _tiny_net()
    for name, alias, cls in (("sobol", "sobol_attribution", A.Sobol), ("hsic", "hsic_attribution", A.HSIC)):
        assert A.METHODS[name] is cls and A.method_kind(alias) == "prediction"
        assert isinstance(A.make_method(alias, m, grid=2, n_design=4, seed=3), cls)
    s, h = A.Sobol(m), A.HSIC(m)
    assert (s.grid, s.n_design, s.score) == (8, 32, "softmax")  # Xplique's defaults, project's score
    assert (h.grid, h.n_design, h.score) == (7, 1500, "softmax")  # Xplique's recommended version
    assert s._evaluated().shape[0] == 32 * (64 + 1) and h._evaluated().shape[0] == 1500  # passes per image
