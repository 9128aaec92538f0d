"""discard.py: information discarding (arXiv 1906.04109) against closed forms and properties.

Closed form used throughout: for a layer h(x) = Q x with Q having orthonormal columns on the pixels it
reads (identity, orthogonal map, masked orthogonal map), the feature error of x' = x + sigma * eps is
E||Q (sigma * eps)||^2 / K = sum_j sigma_j^2 / K over the read pixels. Calibration with sigma0 everywhere
gives sigma_f^2 = sigma0^2 * D_read / K, so the constraint error / sigma_f^2 = tau reads
mean_{read j} sigma_j^2 = tau * sigma0^2. The entropy sum_j log sigma_j under that constraint is largest
for a uniform sigma (Jensen), so sigma* = sigma0 * sqrt(tau) on every read pixel (cells of equal size:
the grid divides the image), H* = log(sigma0 sqrt(tau)) + 1/2 log(2 pi e) = -2.9835 nats for the
defaults, and nothing beyond the tolerance can be discarded. Pixels that are not read get the clamp.

A general linear layer h(x) = A x: the error is sum_c sigma_c^2 W_c / K with W_c the sum of the squared
column norms of A over the pixels of cell c. Maximising sum_c log sigma_c at error tau * sigma_f^2 gives
(Lagrange) sigma_c^2 W_c equal for every cell: sigma_c^2 = tau sigma0^2 mean(W) / W_c, and the mean
entropy exceeds H* by 1/2 (log mean W - mean log W) (Jensen's gap), the information the layer discards.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from infolens.discard import (HALF_LOG_2PI_E, InformationDiscarding, gaussian_entropy,
                              reconstruction_uncertainty, train_decoder)

torch.set_num_threads(2)

TAU, SIGMA0 = 1.5, 0.01
SIGMA_STAR = SIGMA0 * math.sqrt(TAU)
H_STAR = math.log(SIGMA_STAR) + 0.5 * math.log(2 * math.pi * math.e)


def images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def orthogonal_net(mask: torch.Tensor | None = None) -> nn.Module:
    lin = nn.Linear(784, 784, bias=False)
    with torch.no_grad():
        torch.manual_seed(1)
        nn.init.orthogonal_(lin.weight)
        if mask is not None:
            lin.weight.mul_(mask.flatten()[None])
    return nn.Sequential(nn.Flatten(), lin).eval()


class Crop(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 8:20, 8:20]


def conv_net(scale: float = 1.0) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                         nn.ReLU(), Scale(scale)).eval()


class Scale(nn.Module):
    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x


def test_gaussian_entropy_matches_closed_form_and_torch():
    sigma = torch.tensor([1e-3, 0.01, 0.3, 1.0, 7.0], dtype=torch.float64)
    ref = torch.distributions.Normal(torch.zeros_like(sigma), sigma).entropy()
    torch.testing.assert_close(gaussian_entropy(sigma), ref)
    assert HALF_LOG_2PI_E == pytest.approx(1.4189385, abs=1e-6)
    # Monte Carlo: -E[log p(z)] for z ~ N(0, 0.3^2)
    z = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    mc = -torch.distributions.Normal(0.0, 0.3).log_prob(z).mean()
    assert float(mc) == pytest.approx(float(gaussian_entropy(torch.tensor(0.3))), abs=5e-3)


@pytest.mark.parametrize("model,layer", [(nn.Sequential(nn.Identity(), nn.Flatten()), "0"),
                                         (orthogonal_net(), "1")], ids=["identity", "orthogonal"])
def test_isometry_gives_the_closed_form_sigma(model, layer):
    x = images(2)
    r = InformationDiscarding(model, layer, grid=7, steps=40, samples=8).attribute(x)
    assert r.sigma.shape == (2, 1, 1, 7, 7) and r.entropy_map.shape == (2, 1, 7, 7)
    torch.testing.assert_close(r.feature_error, torch.full((2, 1), TAU), atol=2e-3, rtol=0)
    # uniform sigma = sigma0 sqrt(tau): nothing beyond the tolerance is discarded anywhere
    assert float((r.sigma / SIGMA_STAR - 1).abs().max()) < 0.05
    torch.testing.assert_close(r.layer_entropy, torch.full((2, 1), H_STAR), atol=0.005, rtol=0)
    # the paper's selection procedure lands on the same value up to one step of the trajectory
    s = InformationDiscarding(model, layer, grid=7, steps=30, samples=16, mode="select",
                              optimizer="adam").attribute(x)
    assert float((s.feature_error - TAU).abs().max()) < 0.1
    torch.testing.assert_close(s.layer_entropy, torch.full((2, 1), H_STAR), atol=0.04, rtol=0)
    # sigma_f^2 is the feature MSE of sigma0 noise: sigma0^2 for an isometry
    torch.testing.assert_close(r.sigma_f2, torch.full((2, 1), SIGMA0 ** 2), rtol=0.05, atol=0)


def test_linear_layer_matches_the_lagrange_solution():
    """Non-uniform column norms: each cell's sigma follows sigma_c^2 = tau sigma0^2 mean(W) / W_c."""
    d = torch.exp(torch.linspace(-1.0, 1.0, 28))[None, :].expand(28, 28)  # column gains, e^-1 .. e^1
    lin = orthogonal_net()[1]
    with torch.no_grad():
        lin.weight.mul_(d.flatten()[None])
    model = nn.Sequential(nn.Flatten(), lin).eval()
    W = d.pow(2).reshape(7, 4, 7, 4).sum((1, 3))
    sigma_ref = SIGMA0 * torch.sqrt(TAU * W.mean() / W)
    h_ref = H_STAR + 0.5 * float(W.mean().log() - W.log().mean())
    r = InformationDiscarding(model, "1", grid=7, steps=60, samples=8).attribute(images(1))
    assert float((r.sigma[0, 0, 0] / sigma_ref - 1).abs().max()) < 0.06
    assert float(r.layer_entropy[0, 0]) == pytest.approx(h_ref, abs=0.005)
    assert h_ref - H_STAR > 0.05  # the layer does discard something beyond the isometry's level
    # the implied Lagrange multiplier: sum_c dE/ds_c = 2 E = 2 tau at the optimum
    assert float(r.lam[0, 0]) == pytest.approx(2 * TAU, rel=0.15)


def test_release_sgd_does_not_move_sigma():
    """Why the default optimiser is Adam: the release's SGD lr 1e-4 leaves log sigma where it started."""
    model = nn.Sequential(nn.Identity(), nn.Flatten())
    r = InformationDiscarding(model, "0", grid=7, steps=100, samples=4, optimizer="sgd", lr=1e-4,
                              mode="select", early_stop=False).attribute(images(1))
    start = math.log(SIGMA0) + HALF_LOG_2PI_E
    moved = float((r.entropy_history[-1] - start).abs().max())
    assert moved < 1e-3
    a = InformationDiscarding(model, "0", grid=7, steps=100, samples=4, mode="select", optimizer="adam",
                              early_stop=False).attribute(images(1))
    assert float((a.entropy_history[-1] - start).min()) > 0.3


@pytest.mark.parametrize("kind", ["masked_linear", "crop"])
def test_ignored_pixels_get_high_entropy(kind):
    x = images(2)
    keep = torch.zeros(28, 28, dtype=torch.bool)
    if kind == "masked_linear":
        keep[:, :16] = True
        model, layer = orthogonal_net(keep.float()), "1"
    else:
        keep[8:20, 8:20] = True
        model, layer = nn.Sequential(Crop(), nn.Flatten()).eval(), "0"
    r = InformationDiscarding(model, layer, grid=7, steps=60, samples=8).attribute(x)
    em = r.upsampled()[:, 0]
    kept, ignored = em[:, keep].mean(), em[:, ~keep].mean()
    assert float(ignored) > float(kept) + 3.0, (float(kept), float(ignored))
    # kept pixels obey the closed form (mean sigma^2 over read pixels = tau sigma0^2)
    assert float(kept) == pytest.approx(H_STAR, abs=0.05)
    # ignored pixels climb to the clamp sigma = 1 (H = 1.4189)
    assert float(ignored) > 0.5


def test_feature_rescaling_does_not_change_results():
    x = images(2)
    kw = dict(grid=7, steps=20, samples=4, seed=5, calib_samples=16)
    a = InformationDiscarding(conv_net(1.0), ["1", "4"], **kw).attribute(x)
    b = InformationDiscarding(conv_net(1000.0), ["1", "4"], **kw).attribute(x)
    torch.testing.assert_close(b.sigma_f2[:, 1] / a.sigma_f2[:, 1], torch.full((2,), 1e6), rtol=1e-3, atol=0)
    torch.testing.assert_close(a.layer_entropy, b.layer_entropy, atol=2e-3, rtol=0)
    torch.testing.assert_close(a.feature_error, b.feature_error, atol=2e-3, rtol=0)


@pytest.mark.parametrize("optimizer,mode", [("adam", "select"), ("balance", "constrained")])
def test_batched_equals_per_image(optimizer, mode):
    x = images(3, seed=2)
    model = conv_net()
    kw = dict(grid=7, steps=15, samples=2, seed=1, mode=mode, optimizer=optimizer, check_every=5, calib_samples=8)
    idx = [10, 11, 12]
    full = InformationDiscarding(model, ["1", "3"], **kw).attribute(x, indices=idx)
    for i in range(3):
        one = InformationDiscarding(model, ["1", "3"], **kw).attribute(x[i:i + 1], indices=[idx[i]])
        torch.testing.assert_close(one.sigma[0], full.sigma[i], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(one.layer_entropy[0], full.layer_entropy[i], atol=1e-4, rtol=0)
    # memory chunking does not change the numbers either
    small = InformationDiscarding(model, ["1", "3"], internal_batch_size=5, **kw).attribute(x, indices=idx)
    torch.testing.assert_close(small.layer_entropy, full.layer_entropy, atol=1e-4, rtol=0)


def test_model_state_restored_and_no_hooks_left():
    model = conv_net().train()
    InformationDiscarding(model, "3", grid=7, steps=3, samples=2).attribute(images(1))
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0


def test_errors_name_the_argument():
    model = conv_net()
    with pytest.raises(ValueError, match="mode"):
        InformationDiscarding(model, "1", mode="exact")
    with pytest.raises(ValueError, match="optimizer"):
        InformationDiscarding(model, "1", optimizer="lbfgs")
    with pytest.raises(ValueError, match="select"):
        InformationDiscarding(model, "1", mode="select")
    with pytest.raises(ValueError, match="unknown layer"):
        InformationDiscarding(model, "nope")
    with pytest.raises(ValueError, match="non-finite"):
        x = images(1)
        x[0, 0, 0, 0] = float("nan")
        InformationDiscarding(model, "1", steps=2).attribute(x)
    with pytest.raises(ValueError, match="grid"):
        InformationDiscarding(model, "1", grid=64, steps=2).attribute(images(1))


def test_reconstruction_uncertainty_closed_form_and_decoder():
    # with the identity as "decoder" of an identity layer the residual is sigma * eps, so its Gaussian
    # entropy per pixel is the perturbation's own entropy H = log sigma + 1/2 log(2 pi e)
    model = nn.Sequential(nn.Identity(), nn.Flatten())
    x = images(2)
    r = InformationDiscarding(model, "0", grid=7, steps=20, samples=4).attribute(x)
    rec = reconstruction_uncertainty(model, {"0": nn.Identity()}, x, r, samples=256)
    torch.testing.assert_close(rec.uncertainty, r.layer_entropy, atol=0.02, rtol=0)
    torch.testing.assert_close(rec.induced, r.layer_entropy, atol=0.02, rtol=0)  # identity: spread = noise
    # a trained decoder: more noise at the input gives a less certain reconstruction
    net = conv_net()
    train_x = torch.rand(128, 1, 28, 28, generator=torch.Generator().manual_seed(9))
    dec = train_decoder(net, "3", train_x, epochs=1, batch_size=64, width=8)
    r2 = InformationDiscarding(net, "3", grid=7, steps=10, samples=2).attribute(x)
    rec2 = reconstruction_uncertainty(net, {"3": dec}, x, r2, samples=8)
    assert torch.isfinite(rec2.uncertainty).all()
    assert (rec2.uncertainty >= rec2.clean - 1e-3).all()


DEPTH_LAYERS = ["features.2", "features.9", "classifier.1"]


def test_deeper_layers_discard_at_least_as_much(quick_mnist_model):
    """Data-processing inequality on a built-in CNN (mnist_vgg, ReLU outputs shallow to deep): the mean
    discarded entropy per layer, over 2 test digits; prints the measured curve."""
    from infolens import data

    x, _ = data.mnist_tensors("test", limit=2)
    r = InformationDiscarding(quick_mnist_model, DEPTH_LAYERS, grid=7, steps=40, samples=4,
                              calib_samples=32).attribute(x)
    curve = r.layer_entropy.mean(0)
    print("measured depth curve (mean H, nats):", dict(zip(DEPTH_LAYERS, [round(v, 3) for v in curve.tolist()])))
    assert float(curve[-1]) > float(curve[0]) + 0.03
    assert all(float(curve[i]) >= float(curve[0]) - 0.01 for i in range(1, len(DEPTH_LAYERS)))
    assert float(curve[0]) == pytest.approx(H_STAR, abs=0.05)  # first ReLU: close to an isometry on digits
    assert (r.cumulative().diff(dim=1) >= 0).all()


# --------------------------------------------------------------------------- the runner


def test_runner_resumes_and_shards_like_one_process(tmp_path, monkeypatch):
    """Units of global image indices: a resumed run computes nothing, and two torchrun ranks writing
    into one folder give exactly the rows of one process (seeds per image, not per rank)."""
    from infolens.experiments import discard as ex
    from infolens.results import RunDir

    model, x = conv_net(), images(3, seed=4)
    names = [f"img{i}" for i in range(3)]
    settings = dict(grid=7, steps=4, samples=2, calib_samples=4, check_every=2)

    def go(root):
        run = RunDir(root, analysis="discard", params={"t": 1})
        return run, ex.analyse(run, model, "net", x, names, layers=["1", "3"], settings=settings, batch_size=2,
                               progress=False, n_maps=1)

    run1, done = go(tmp_path / "one")
    assert done == 2
    assert go(tmp_path / "one")[1] == 0  # resumed: nothing redone
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert go(tmp_path / "two")[1] == 1
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    run2 = RunDir(tmp_path / "two", analysis="discard", params={"t": 1})
    key = ("model", "stage", "index", "depth")
    a, b = run1.merge("entropy", sort_by=key), run2.merge("entropy", sort_by=key)
    same = lambda u, v: u == v or (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v))  # noqa: E731
    assert len(a) == 6 and all(r.keys() == q.keys() and all(same(r[k], q[k]) for k in r) for r, q in zip(a, b))
    summ = ex.finish_run(run1, t0=0.0, order=30)
    assert {str(k) for k in summ["mean entropy per layer (nats), shallow to deep"]["net"]} == {"1", "3"}
    assert (run1.root / "figures" / "depth.png").is_file() and (run1.root / "figures" / "maps.png").is_file()
    assert run1.read_table("layers")[0]["images"] == 3


def test_runner_helpers():
    from infolens.experiments import discard as ex
    from infolens.models import build_builtin

    assert ex.parse_grid("pixel") is None and ex.parse_grid("16") == 16
    with pytest.raises(ValueError, match="--grid"):
        ex.parse_grid("fine")
    for name, layers in ex.DEFAULT_LAYERS.items():
        if name.startswith("mnist"):
            model = build_builtin(name)
            assert ex.default_layers(model, name) == layers
            assert all(isinstance(dict(model.named_modules())[n], nn.ReLU) for n in layers)
    assert ex.default_layers(conv_net(), "other") == ["1", "3"]
