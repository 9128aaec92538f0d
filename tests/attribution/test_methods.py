"""Attribution methods against Captum, FORGrad filtering against closed forms and Xplique's algorithm,
cut-off selection, and the invariants every method must keep (batched = per image, no hooks left)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from infolens import attribution as A
from infolens._torch import per_image_randn
from infolens.experiments.forgrad import runner as F
from infolens.attribution.metrics import Deletion, Insertion

torch.set_num_threads(2)


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 12, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(12 * 7 * 7, 10))


@pytest.fixture(scope="module")
def trained():
    """A small real CNN, briefly trained on MNIST digits (a few seconds)."""
    from infolens.data import mnist_tensors

    torch.manual_seed(0)
    x, y = mnist_tensors("train", limit=2000)
    m = _cnn()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for s in range(0, 2000, 100):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x[s:s + 100]), y[s:s + 100]).backward()
        opt.step()
    m.eval()
    xt, yt = mnist_tensors("test", limit=6)
    return m, xt, m(xt).argmax(1).detach()


# --------------------------------------------------------------------------- Captum agreement

def _captum(name, m, x, t, monkeypatch):
    captum = pytest.importorskip("captum.attr")
    if name == "saliency":
        return captum.Saliency(m).attribute(x, target=t)
    if name == "gradient_x_input":
        return captum.InputXGradient(m).attribute(x, target=t)
    if name == "integrated_gradients":
        return captum.IntegratedGradients(m).attribute(x, target=t, n_steps=20)
    if name == "guided_backprop":
        return captum.GuidedBackprop(m).attribute(x, target=t)
    if name == "gradcam":
        cam = captum.LayerGradCam(m, m[3]).attribute(x, target=t, relu_attributions=True)
        return captum.LayerAttribution.interpolate(cam, (28, 28), "bilinear")
    if name == "occlusion":
        return captum.Occlusion(m).attribute(x, target=t, sliding_window_shapes=(1, 4, 4), strides=(1, 4, 4))[:, :1]
    if name in ("smoothgrad", "squaregrad", "vargrad"):
        from captum.attr._core.noise_tunnel import NoiseTunnel

        n = 6
        noise = torch.stack([per_image_randn(x.shape[1:], 0, list(range(x.shape[0])), salt=f"{A.gradient.NOISE_SALT}:{k}")
                             for k in range(n)], 1).flatten(0, 1) * 0.2
        monkeypatch.setattr(NoiseTunnel, "_add_noise_to_input",
                            staticmethod(lambda inp, stdev, part: inp.repeat_interleave(part, 0) + noise))
        nt = {"smoothgrad": "smoothgrad", "squaregrad": "smoothgrad_sq", "vargrad": "vargrad"}[name]
        return NoiseTunnel(captum.Saliency(m)).attribute(x, target=t, nt_type=nt, nt_samples=n, stdevs=0.2,
                                                          abs=False)
    raise KeyError(name)


OURS = {
    "saliency": {}, "gradient_x_input": {}, "integrated_gradients": {"n_steps": 20, "internal_batch_size": 7},
    "guided_backprop": {}, "gradcam": {"layer": "3"}, "occlusion": {"window": 4, "internal_batch_size": 10},
    "smoothgrad": {"n_samples": 6, "internal_batch_size": 8}, "squaregrad": {"n_samples": 6},
    "vargrad": {"n_samples": 6, "internal_batch_size": 5},
}


@pytest.mark.parametrize("name", list(OURS))
def test_matches_captum(name, trained, monkeypatch):
    m, x, t = trained
    ours = A.make_method(name, m, batch_size=4, **OURS[name]).attribute(x, t).maps
    ref = _captum(name, m, x, t, monkeypatch).detach()
    assert ours.shape == ref.shape
    scale = ref.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(ours, ref, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize("captum_name", ["Saliency", "InputXGradient", "IntegratedGradients", "NoiseTunnel",
                                         "GuidedBackprop", "LayerGradCam", "Occlusion"])
def test_captum_class_names_build_what_captum_computes(captum_name, trained, monkeypatch):
    """A Captum class name given as a method name (any case, ``-``/``_``) builds the method whose maps equal
    that Captum class's (NoiseTunnel: its default, SmoothGrad)."""
    from infolens.attribution.registry import CAPTUM_ALIASES, _canonical

    m, x, t = trained
    name = CAPTUM_ALIASES[captum_name]
    assert _canonical(captum_name) == _canonical(captum_name.lower()) == _canonical(captum_name.upper()) == name
    ours = A.make_method(captum_name, m, batch_size=4, **OURS[name]).attribute(x, t).maps
    ref = _captum(name, m, x, t, monkeypatch).detach()
    torch.testing.assert_close(ours, ref, atol=1e-5 * ref.abs().max().item(), rtol=1e-4)


class _WithFeatures(nn.Module):
    """A classifier whose forward returns (logits, features), as many research models do."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x), x.flatten(1)


@pytest.mark.parametrize("name", ["saliency", "integrated_gradients", "occlusion"])
def test_a_forward_returning_a_tuple_is_explained_through_its_first_tensor(name, trained):
    """No target given: the predicted class comes from the first tensor too; maps equal the bare network's."""
    m, x, _ = trained
    kw = {k: v for k, v in OURS[name].items() if k != "layer"}
    ref = A.make_method(name, m, batch_size=4, **kw).attribute(x).maps
    ours = A.make_method(name, _WithFeatures(m), batch_size=4, **kw).attribute(x).maps
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    d_ref = Deletion(m, n_steps=4)(x, None, ref).scores  # targets None: the predicted class
    d_ours = Deletion(_WithFeatures(m), n_steps=4)(x, None, ours).scores
    torch.testing.assert_close(d_ours, d_ref, rtol=0, atol=0)


def test_unknown_method_name_lists_the_known_ones_and_captum_names():
    with pytest.raises(ValueError, match=r"unknown attribution method 'Lime'.*integrated_gradients.*Captum"):
        A.make_method("Lime", _cnn())


def test_ig_riemann_and_completeness(trained):
    m, x, t = trained
    captum = pytest.importorskip("captum.attr")
    ours = A.IntegratedGradients(m, n_steps=16, method="riemann_trapezoid").attribute(x, t).maps
    ref = captum.IntegratedGradients(m).attribute(x, target=t, n_steps=16, method="riemann_trapezoid")
    # Captum's trapezoid weights are 1/n (halved at the ends), summing to (n-1)/n; ours are the exact
    # trapezoid rule 1/(n-1): the two differ by that constant factor only
    torch.testing.assert_close(ours * 15 / 16, ref.detach(), atol=1e-5, rtol=1e-4)
    # completeness axiom (Sundararajan et al. Prop. 1): sum of IG = f(x) - f(0), to quadrature error
    ig = A.IntegratedGradients(m, n_steps=200).attribute(x, t).maps
    with torch.no_grad():
        gap = m(x).gather(1, t[:, None])[:, 0] - m(torch.zeros_like(x)).gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(ig.sum((1, 2, 3)), gap, atol=0.02 * gap.abs().max().item(), rtol=0.02)


# --------------------------------------------------------------------------- invariants, every method

ALL = {
    "saliency": {}, "gradient_x_input": {}, "integrated_gradients": {"n_steps": 5},
    "smoothgrad": {"n_samples": 4}, "squaregrad": {"n_samples": 4}, "vargrad": {"n_samples": 4},
    "guided_backprop": {}, "gradcam": {}, "gradcam_pp": {}, "occlusion": {"window": 7}, "rise": {"n_masks": 40},
    "sobol": {"grid": 4, "n_design": 4}, "hsic": {"grid": 4, "n_design": 16},
    "blob": {}, "magnitude": {}, "noise": {},
}


@pytest.mark.parametrize("name", list(ALL))
def test_batched_equals_per_image_and_no_hooks(name, trained):
    m, x, t = trained
    before = sum(len(mod._forward_hooks) + len(mod._backward_hooks) for mod in m.modules())
    make = A.make_reference if name in A.REFERENCES else A.make_method
    # Compared in float64: batches of 6 and of 1 sum in different orders. The longest reduction per image is a
    # sum over its 784 pixels in each of at most 72 passes (Sobol: 4 designs x (4^2 + 2)), so the two may
    # differ by 8 * eps64 * 784 * 72 * max|map| (~1e-10 relative), far below any real difference.
    import copy

    m, x = copy.deepcopy(m).double(), x.double()
    big = make(name, m, batch_size=6, internal_batch_size=64, **ALL[name]).attribute(x, t).maps
    small = make(name, m, batch_size=1, internal_batch_size=3, **ALL[name]).attribute(x, t).maps
    tol = 8 * torch.finfo(torch.float64).eps * x[0].numel() * 72 * max(big.abs().max().item(), 1e-30)
    torch.testing.assert_close(big, small, atol=tol, rtol=0)
    # a sub-batch with its global indices gives the same rows (per-image seeds)
    part = make(name, m, batch_size=2, **ALL[name]).attribute(x[2:5], t[2:5], indices=[2, 3, 4]).maps
    torch.testing.assert_close(part, big[2:5], atol=tol, rtol=0)
    after = sum(len(mod._forward_hooks) + len(mod._backward_hooks) for mod in m.modules())
    assert before == after
    assert (A.REFERENCES[name].kind if name in A.REFERENCES else A.method_kind(name)) in \
        ("gradient", "gray", "prediction", "reference")
    assert torch.isfinite(big).all()


def test_attribute_many_equals_each(trained):
    m, x, t = trained
    names = ["saliency", "gradient_x_input", "smoothgrad", "vargrad", "squaregrad", "occlusion"]
    kw = {n: {"n_samples": 3} if n in ("smoothgrad", "vargrad", "squaregrad") else {} for n in names}
    many = A.attribute_many(m, {n: A.make_method(n, m, **kw[n]) for n in names}, x, t)
    for n in names:
        torch.testing.assert_close(many[n], A.make_method(n, m, **kw[n]).attribute(x, t).maps)


def _bn_net() -> nn.Module:
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3),
                      nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(36, 5))
    with torch.no_grad():
        m[1].running_mean.uniform_(-0.3, 0.3)
        m[1].running_var.uniform_(0.5, 2.0)
    return m.train()


def test_attribute_many_on_a_train_mode_model_gives_the_eval_maps_and_leaves_it_as_it_was():
    """BatchNorm with batch statistics and dropout would change the maps and the running statistics:
    attribute_many must measure the model in eval mode, as ``attribute`` does, and give it back untouched."""
    m = _bn_net()
    x = torch.rand(6, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    state = {k: v.clone() for k, v in m.state_dict().items()}
    names = ["saliency", "gradient_x_input", "smoothgrad", "occlusion"]
    kw = {"smoothgrad": {"n_samples": 3}}
    many = A.attribute_many(m, {n: A.make_method(n, m, **kw.get(n, {})) for n in names}, x, 2)
    assert m.training and all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in m.parameters())
    ref = _bn_net().eval()
    for n in names:
        torch.testing.assert_close(many[n], A.make_method(n, ref, **kw.get(n, {})).attribute(x, 2).maps)
    with pytest.raises(ValueError, match=r"inputs has shape \(6, 10, 10\).*unsqueeze\(1\)"):
        A.attribute_many(m, ["saliency"], x[:, 0], 2)


def test_errors(trained):
    m, x, t = trained
    with pytest.raises(ValueError, match="unknown attribution method"):
        A.make_method("salincy", m)
    with pytest.raises(TypeError, match="takes no argument"):
        A.make_method("saliency", m, n_steps=3)
    with pytest.raises(ValueError, match="unknown layer"):
        A.GradCAM(m, "classifier.9")
    with pytest.raises(ValueError, match="shape"):
        A.Saliency(m).attribute(x, t[:2])
    with pytest.raises(ValueError, match="non-finite"):
        A.Saliency(m).attribute(x * float("nan"), t)


# --------------------------------------------------------------------------- FORGrad


def test_lowpass_map_is_unchanged():
    h, w = 32, 24
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    # positive map whose spectrum lies within 3 frequency steps of DC
    m = 3 + torch.cos(2 * math.pi * 2 * yy / h) + 0.5 * torch.sin(2 * math.pi * (xx / w + yy / h)) \
        + 0.3 * torch.cos(2 * math.pi * 3 * xx / w)
    out = A.forgrad(m[None, None], 3.0)
    torch.testing.assert_close(out[0, 0], m, atol=1e-10, rtol=0)
    # a cut-off below the map's content changes it
    assert (A.forgrad(m[None, None], 1.0)[0, 0] - m).abs().max() > 0.1


@pytest.mark.parametrize("shape", [(28, 28), (27, 31), (7, 224)])
def test_full_cutoff_is_identity(shape):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, *shape, generator=g, dtype=torch.float64)
    ref = a.mean(1, keepdim=True).abs()
    for unit in ("steps", "nyquist"):
        out = A.forgrad(a, A.max_cutoff(*shape, unit), unit=unit)
        assert out.shape == (3, 1, *shape)
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(A.forgrad(a, math.inf), ref)


def _xplique_forgrad(expl: np.ndarray, sigma: int) -> np.ndarray:
    """Xplique's ``commons.forgrad`` transcribed to NumPy (square, even maps), as an independent check."""
    size = expl.shape[1]
    e = np.abs(expl)
    spec = np.fft.rfft2(e)
    c = size // 2
    yg, xg = np.ogrid[:size, :size]
    mask = np.sqrt((xg - c) ** 2 + (yg - c) ** 2) <= sigma
    mask = np.fft.fftshift(mask).astype(np.float32)[:, : size // 2 + 1]
    return np.abs(np.fft.irfft2(spec * mask))


@pytest.mark.parametrize("sigma", [1, 3, 6, 15])
def test_forgrad_matches_xplique(sigma):
    rng = np.random.default_rng(1)
    expl = rng.normal(size=(4, 32, 32))
    ref = _xplique_forgrad(expl, sigma)
    ours = A.forgrad(torch.as_tensor(expl)[:, None], sigma)[:, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_gaussian_window_and_nyquist_unit():
    a = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    # half a Nyquist at 28 px is 7 steps
    torch.testing.assert_close(A.forgrad(a, 0.5, unit="nyquist"), A.forgrad(a, 7.0))
    smooth = A.forgrad(a, 3.0, window="gaussian")
    assert smooth.shape == a.shape and (smooth >= 0).all()
    # the Gaussian window lowers the high-frequency share
    hi = lambda m: A.attribution_spectrum(m).values[:, 7:].sum()  # noqa: E731
    assert hi(smooth) < 0.1 * hi(a - a.mean())


def test_attribution_spectrum_normalised():
    a = torch.rand(5, 3, 20, 20)
    p = A.attribution_spectrum(a)
    assert p.values.shape == (5, 11)
    # normalised by a float32 sum over the 3 x 20 x 20 power values: 8 * eps32 * 1200 (the 11 bins' own sum adds
    # less)
    torch.testing.assert_close(p.values.sum(-1), torch.ones(5), atol=8 * torch.finfo(torch.float32).eps * 1200, rtol=0)


def test_default_cutoffs_grid():
    g = A.default_cutoffs(28, 28)
    assert g[0] == 1.0 and g[-1] == pytest.approx(A.max_cutoff(28, 28)) and g == sorted(g)
    assert A.default_cutoffs(224, 224)[-1] == pytest.approx(math.hypot(112, 112), abs=1e-3)


def test_select_cutoff_curve_and_saved(trained, tmp_path):
    m, x, t = trained
    sal = A.Saliency(m).attribute(x, t).maps
    metrics = [Insertion(m), Deletion(m)]
    sel = A.select_cutoff(sal, x, t, metrics, cutoffs=[2.0, 5.0, A.max_cutoff(28, 28)])
    assert len(sel.scores) == 3 and sel.best in sel.cutoffs
    # the score is Insertion - Deletion of the filtered maps, recomputed independently
    for c, s in zip(sel.cutoffs, sel.scores):
        f = A.forgrad(sal, c)
        assert s == pytest.approx(Insertion(m)(x, t, f).mean - Deletion(m)(x, t, f).mean, rel=1e-5, abs=1e-6)
    assert sel.scores[sel.cutoffs.index(sel.best)] == max(sel.scores)
    path = F.save_cutoffs(tmp_path / "cutoffs.json", "cnn", {"saliency": sel})
    F.save_cutoffs(path, "other", {"saliency": {"cutoff": 3.0}})
    back = F.load_cutoffs(path, "cnn")
    assert back["saliency"]["cutoff"] == sel.best and back["saliency"]["scores"] == sel.scores
    assert F.load_cutoffs(path, "missing") == {}
