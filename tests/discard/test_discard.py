"""infolens.discard: information discarding (arXiv 1906.04109) against the release's own loop, closed forms
and properties.

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

from infolens._torch import image_seed
from infolens.discard import (HALF_LOG_2PI_E, FeatureDecoder, InformationDiscarding, ReconstructionUncertainty,
                              gaussian_entropy, train_decoder)
from infolens.models import with_input_normalization

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


def constrained(model, layers, **kw):
    opts = {k: kw.pop(k) for k in list(kw) if k in ("calib_samples", "check_every", "early_stop", "tol")}
    return InformationDiscarding(model, layers, solver="constrained", options=opts, **kw)


def test_gaussian_entropy_matches_closed_form_and_torch():
    s = torch.tensor([0.01, 0.5, 1.0, 3.0])
    ref = torch.distributions.Normal(0.0, s).entropy()
    torch.testing.assert_close(gaussian_entropy(s), ref)
    assert gaussian_entropy(torch.tensor(1.0)).item() == pytest.approx(HALF_LOG_2PI_E)


# --------------------------------------------------------------------------- the release's own loop


def release_loop(model, layer, image, index, *, seed, steps, samples=8, grid=7, lr=1e-4, lam=5.0, tau=1.5,
                 sigma0=0.01):
    """One image and one layer, written line by line from step_capability_x.py + step_result.py of the
    official release (haotianSustc/deepinfo): sigma is the parameter, SGD, lambda fixed, sigma saved before
    each update, the step whose feature_loss is closest to tau kept. Noise from the pair's own generator
    (calibration draw first, then one per step), as infolens seeds it."""
    g = torch.Generator().manual_seed(image_seed(seed, index, salt=f"discard:{layer}"))
    C, H, W = image.shape[1:]
    sigma = torch.full((1, 1, grid, grid), sigma0, requires_grad=True)  # noise_layer's parameter
    optimizer = torch.optim.SGD([sigma], lr=lr)
    up = nn.Upsample(size=(H, W), mode="nearest")
    criterion = nn.MSELoss()

    def feature(x):
        out = {}
        h = dict(model.named_modules())[layer].register_forward_hook(lambda m, a, o: out.__setitem__("f", o))
        try:
            model(x)
        finally:
            h.remove()
        return torch.relu(out["f"])

    def noise_layer(unit_noise):
        noise_image = image + up(sigma) * unit_noise
        penalty = torch.mean(torch.log(2 * math.pi * math.e * sigma * sigma))
        return noise_image, penalty

    origin_feature = feature(image).detach()
    noise_image, _ = noise_layer(torch.randn(samples, C, H, W, generator=g))
    sigma_f = criterion(feature(noise_image), origin_feature.expand(samples, *origin_feature.shape[1:])).detach()
    saved, losses = [], []
    for epoch in range(steps):
        saved.append(sigma.detach().clone())  # np.save(sigma_path, sigma_data) before the update
        noise_image, penalty = noise_layer(torch.randn(samples, C, H, W, generator=g))
        feature_loss = criterion(feature(noise_image), origin_feature.expand(samples, *origin_feature.shape[1:]))
        feature_loss = feature_loss / sigma_f
        loss = feature_loss + (-penalty * lam)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(feature_loss.detach()))
    best = min(range(steps), key=lambda e: abs(losses[e] - tau))  # np.argmin: the first on ties
    return saved[best][0, 0], losses[best], best, float(sigma_f)


def test_release_solver_reproduces_the_release_loop():
    """solver="release", batched over 3 images and 2 layers, equals the per-image loop written from the
    release's code, to float tolerance, with the same seeds."""
    model, x, idx = conv_net(), images(2, seed=7), [4, 9]
    layers = ["1", "4"]
    r = InformationDiscarding(model, layers, grid=7, n_steps=12, n_samples=4, seed=3).measure(x, indices=idx)
    for j in range(2):
        for l, layer in enumerate(layers):
            sig, err, step, sf = release_loop(model, layer, x[j:j + 1], idx[j], seed=3, steps=12, samples=4)
            assert int(r.selected_step[j, l]) == step
            torch.testing.assert_close(r.sigma[j, l], sig, rtol=1e-4, atol=1e-7)
            assert float(r.feature_error[j, l]) == pytest.approx(err, rel=1e-4)
            assert float(r.sigma_f2[j, l]) == pytest.approx(sf, rel=1e-5)
    # the release's SGD does move sigma (an earlier version said otherwise): identity, 100 steps
    ident = nn.Sequential(nn.Identity(), nn.Flatten())
    h = InformationDiscarding(ident, "0", grid=7, n_steps=100).measure(images(1) * 0.6 + 0.2).entropy_history
    assert float(h[-1, 0, 0] - h[0, 0, 0]) > 0.3


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("model,layer", [(nn.Sequential(nn.Identity(), nn.Flatten()), "0"),
                                         (orthogonal_net(), "1")], ids=["identity", "orthogonal"])
def test_isometry_gives_the_closed_form_sigma(model, layer):
    x = images(2)
    r = constrained(model, layer, grid=7, n_steps=40, relu=False).measure(x)
    assert r.sigma.shape == (2, 1, 7, 7) and r.entropy_map.shape == (2, 1, 7, 7)
    torch.testing.assert_close(r.feature_error, torch.full((2, 1), TAU), atol=2e-3, rtol=0)
    assert float((r.sigma / SIGMA_STAR - 1).abs().max()) < 0.05
    torch.testing.assert_close(r.layer_entropy, torch.full((2, 1), H_STAR), atol=0.005, rtol=0)
    torch.testing.assert_close(r.sigma_f2, torch.full((2, 1), SIGMA0 ** 2), rtol=0.05, atol=0)
    assert bool(r.converged.all())
    # the release's procedure lands within one SGD step of it (its error is sampled, its steps coarse)
    s = InformationDiscarding(model, layer, grid=7, relu=False).measure(x)
    assert float((s.feature_error - TAU).abs().max()) < 0.25
    torch.testing.assert_close(s.layer_entropy, torch.full((2, 1), H_STAR), atol=0.08, rtol=0)


def test_normalized_space_and_pixel_entropies():
    """The release adds noise after the model's normalisation: for an identity behind a (x - 0.5) / 0.25
    pre-hook the closed form holds in the normalised space, and the pixel-space entropy is log(0.25) lower."""
    model = with_input_normalization(nn.Sequential(nn.Identity(), nn.Flatten()), 0.5, 0.25)
    x = images(1)
    r = constrained(model, "0", grid=7, n_steps=40, relu=False).measure(x)
    assert r.space == "normalized" and r.log_std == pytest.approx(math.log(0.25))
    assert float(r.layer_entropy[0, 0]) == pytest.approx(H_STAR, abs=0.005)
    assert float(r.layer_entropy_pixel[0, 0]) == pytest.approx(H_STAR + math.log(0.25), abs=0.005)
    p = constrained(model, "0", grid=7, n_steps=40, relu=False, space="pixel").measure(x)
    assert p.log_std == 0.0 and float(p.layer_entropy[0, 0]) == pytest.approx(H_STAR, abs=0.005)


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
    r = constrained(model, "1", grid=7, n_steps=60, relu=False).measure(images(1))
    assert float((r.sigma[0, 0] / sigma_ref - 1).abs().max()) < 0.06
    assert float(r.layer_entropy[0, 0]) == pytest.approx(h_ref, abs=0.005)
    assert h_ref - H_STAR > 0.05
    assert float(r.lam[0, 0]) == pytest.approx(2 * TAU, rel=0.15)  # implied multiplier: 2 E at the optimum


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
    r = constrained(model, layer, grid=7, n_steps=60, relu=False).measure(x)
    em = r.upsampled()[:, 0]
    kept, ignored = em[:, keep].mean(), em[:, ~keep].mean()
    assert float(ignored) > float(kept) + 3.0, (float(kept), float(ignored))
    assert float(kept) == pytest.approx(H_STAR, abs=0.05)
    assert float(ignored) > 0.5
    # the release's penalty pushes unread cells up at every step, but it keeps an early step (its error
    # crosses tau within a few steps), so they have moved less far
    s = InformationDiscarding(model, layer, grid=7, relu=False).measure(x)
    su = s.upsampled()[:, 0]
    assert float(su[:, ~keep].mean()) > float(su[:, keep].mean()) + 0.05


@pytest.mark.parametrize("solver", ["release", "constrained"])
def test_feature_rescaling_does_not_change_results(solver):
    x = images(2)
    kw = dict(grid=7, n_steps=20, n_samples=4, seed=5, solver=solver,
              options={"calib_samples": 16} if solver == "constrained" else None)
    a = InformationDiscarding(conv_net(1.0), ["1", "4"], **kw).measure(x)
    b = InformationDiscarding(conv_net(1000.0), ["1", "4"], **kw).measure(x)
    torch.testing.assert_close(b.sigma_f2[:, 1] / a.sigma_f2[:, 1], torch.full((2,), 1e6), rtol=1e-3, atol=0)
    torch.testing.assert_close(a.layer_entropy, b.layer_entropy, atol=2e-3, rtol=0)
    torch.testing.assert_close(a.feature_error, b.feature_error, atol=2e-3, rtol=0)


@pytest.mark.parametrize("solver", ["release", "constrained"])
def test_batched_equals_per_image(solver):
    x = images(3, seed=2)
    model = conv_net()
    opts = {"check_every": 5, "calib_samples": 8} if solver == "constrained" else None
    kw = dict(grid=7, n_steps=15, n_samples=2, seed=1, solver=solver, options=opts)
    idx = [10, 11, 12]
    full = InformationDiscarding(model, ["1", "3"], **kw).measure(x, indices=idx)
    for i in range(3):
        one = InformationDiscarding(model, ["1", "3"], **kw).measure(x[i:i + 1], indices=[idx[i]])
        torch.testing.assert_close(one.sigma[0], full.sigma[i], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(one.layer_entropy[0], full.layer_entropy[i], atol=1e-4, rtol=0)
    small = InformationDiscarding(model, ["1", "3"], internal_batch_size=5, **kw).measure(x, indices=idx)
    torch.testing.assert_close(small.layer_entropy, full.layer_entropy, atol=1e-4, rtol=0)
    joint = InformationDiscarding(model, ["1", "3"], layer_batching="joint", **kw).measure(x, indices=idx)
    torch.testing.assert_close(joint.layer_entropy, full.layer_entropy, atol=1e-4, rtol=0)
    rows = full.to_rows()
    assert len(rows) == 6 and rows[0]["index"] == 10 and rows[1]["layer"] == "3"
    assert {"entropy", "entropy_pixel", "feature_error", "steps_run", "converged", "at_step_limit"} <= set(rows[0])


def test_model_state_restored_and_no_hooks_left():
    model = conv_net().train()
    InformationDiscarding(model, "3", grid=7, n_steps=3, n_samples=2).measure(images(1))
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0


def test_errors_name_the_argument():
    model = conv_net()
    with pytest.raises(ValueError, match="solver"):
        InformationDiscarding(model, "1", solver="exact")
    with pytest.raises(ValueError, match="options"):
        InformationDiscarding(model, "1", options={"calib_samples": 3})
    with pytest.raises(ValueError, match="space"):
        InformationDiscarding(model, "1", space="rgb")
    with pytest.raises(ValueError, match="unknown layer"):
        InformationDiscarding(model, "nope")
    with pytest.raises(ValueError, match="non-finite"):
        x = images(1)
        x[0, 0, 0, 0] = float("nan")
        InformationDiscarding(model, "1", n_steps=2).measure(x)
    with pytest.raises(ValueError, match="grid"):
        InformationDiscarding(model, "1", grid=64, n_steps=2).measure(images(1))


# --------------------------------------------------------------------------- reconstruction uncertainty


def test_reconstruction_uncertainty_closed_form():
    """Identity layer, identity "decoder": r = sigma * eps, so mean log(r^2 + 1e-6) at the kept step is
    E log(sigma^2 eps^2 + 1e-6) with sigma^2 = sigma0^2 * error (uniform sigma), computed by Monte Carlo."""
    model = nn.Sequential(nn.Identity(), nn.Flatten())
    x = images(2) * 0.6 + 0.2
    rec = ReconstructionUncertainty(model, {"0": nn.Identity()}, grid=7, n_steps=30, relu=False, lam0=1.0,
                                    lam_ratio=0.0).measure(x)
    eps2 = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0)).pow(2)
    for j in range(2):
        s2 = SIGMA0 ** 2 * float(rec.feature_error[j, 0])
        ref = float(torch.log(s2 * eps2 + 1e-6).mean())
        assert float(rec.uncertainty[j, 0]) == pytest.approx(ref, abs=0.1)  # sampled error and sigma_f^2
    torch.testing.assert_close(rec.clean, torch.full((2, 1), math.log(1e-6)))  # perfect decoder
    assert len(rec.to_rows()) == 2


def test_decoder_trains_to_a_plateau_and_batches():
    net = conv_net()
    g = torch.Generator().manual_seed(9)
    train_x, val_x = torch.rand(48, 1, 28, 28, generator=g), torch.rand(16, 1, 28, 28, generator=g)
    dec, hist = train_decoder(net, "3", train_x, val_x, width=8, blocks=2, max_epochs=4, batch_size=16)
    assert isinstance(dec, FeatureDecoder) and len(dec.body) > 2
    assert hist["epochs"] == len(hist["val_loss"]) <= 4
    assert min(hist["val_loss"]) <= hist["plateau_loss"] <= min(hist["val_loss"]) * 1.01  # kept: last 1 % gain
    assert hist["plateau_loss"] < hist["val_loss"][0]
    x = images(2, seed=3)
    kw = dict(grid=7, n_steps=6, n_samples=2, seed=2)
    both = ReconstructionUncertainty(net, {"3": dec}, **kw).measure(x, indices=[7, 8])
    one = ReconstructionUncertainty(net, {"3": dec}, **kw).measure(x[1:], indices=[8])
    torch.testing.assert_close(one.uncertainty[0], both.uncertainty[1], atol=1e-4, rtol=0)
    assert torch.isfinite(both.uncertainty).all() and torch.isfinite(both.clean).all()


# --------------------------------------------------------------------------- the runner


def test_runner_resumes_and_shards_like_one_process(tmp_path, monkeypatch):
    """Units of global image indices: a resumed run computes nothing, and two torchrun ranks writing
    into one folder give exactly the rows of one process (seeds per image, not per rank)."""
    from infolens.experiments.discard import runner as ex
    from infolens.results import RunDir

    model, x = conv_net(), images(3, seed=4)
    names = [f"img{i}" for i in range(3)]
    settings = dict(grid=7, n_steps=4, n_samples=2)

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
    key = ("model", "solver", "stage", "index", "depth")
    a, b = run1.merge("entropy", sort_by=key), run2.merge("entropy", sort_by=key)
    same = lambda u, v: u == v or (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v))  # noqa: E731
    assert len(a) == 6 and all(r.keys() == q.keys() and all(same(r[k], q[k]) for k in r) for r, q in zip(a, b))
    summ = ex.finish_run(run1, t0=0.0, order=30)
    assert {str(k) for k in summ["mean entropy per layer (nats, noise space), shallow to deep"]["net [release]"]} == {"1", "3"}
    assert (run1.root / "figures" / "depth.png").is_file() and (run1.root / "figures" / "maps.png").is_file()
    assert run1.read_table("layers")[0]["images"] == 3


def test_runner_helpers():
    from infolens.experiments.discard import runner as ex
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


def test_ink_gap_cells_and_claim_rows():
    """D1's cells: background = no ink, stroke = mean ink above 0.2; the gap is background minus stroke."""
    from infolens.experiments.discard import runner as ex

    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :2, :2] = 1.0  # one stroke cell (top left, 2 x 2 grid)
    x[0, 0, 2, 2] = 0.1   # bottom-right cell: ink share 0.025, neither stroke nor background
    hmap = torch.tensor([[[[0.0, 2.0], [4.0, 9.0]]]])
    assert float(ex.ink_gap(x, hmap)[0, 0]) == pytest.approx((2.0 + 4.0) / 2 - 0.0)
    # 20 digits (>= 15 units) at 5 layers (>= 5 points): decisive
    rows = [{"model": "m", "solver": s, "stage": "final", "index": i, "depth": d, "layer": str(d),
             "entropy": -3.0 + d * (1 + 0.1 * i), "gap": 0.5 + 0.01 * i} for s in ex.SOLVERS for i in range(20)
            for d in range(5)]
    out, gaps = ex.decide_claims(rows, [], [], {}, ["m"], [])
    d2 = [r for r in out if r["claim"] == "D2" and r["model"] == "m [release]"][0]
    assert d2["value"] == pytest.approx(1.0) and d2["verdict"] == "reproduced" and d2["variant"] == "primary"
    d1 = [r for r in out if r["claim"] == "D1" and r["model"] == "m [constrained]"][0]
    assert d1["value"] == pytest.approx(0.595) and d1["verdict"] == "reproduced" and d1["variant"] == "sensitivity"


def test_d5_note_says_when_the_decoders_own_error_sets_the_order():
    """Hand-computed: the noise adds 0.01 and 0 nats on layers 1.0 nats apart, so the decoders' clean errors
    order the layers; where the noise adds 4 nats against a spread of 3, the note says only the numbers."""
    from infolens.experiments.discard.verdicts import decoder_share

    rows = [{"depth": 0, "uncertainty": -9.0, "clean": -9.01}, {"depth": 0, "uncertainty": -9.0, "clean": -9.01},
            {"depth": 1, "uncertainty": -8.0, "clean": -8.0}]
    note = decoder_share(rows)
    assert "+0.000 to +0.010" in note and "spread of 1.000" in note and note.endswith("set the order")
    rows = [{"depth": 0, "uncertainty": -5.0, "clean": -9.0}, {"depth": 1, "uncertainty": -8.0, "clean": -8.1}]
    note = decoder_share(rows)
    assert "+0.100 to +4.000" in note and "spread of 3.000" in note and not note.endswith("set the order")
    assert decoder_share(rows[:1]) == ""  # one layer: nothing to set against
