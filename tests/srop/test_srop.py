"""Tests of infolens.srop (layer-wise SROP statistics, input variants, cascading randomisation,
correlation) and of the ``infolens srop`` runner, against independent references: srop_2d on known
maps, NumPy/SciPy statistics, hand-made models with known feature maps, and invariants (batched equals
per-image, no hooks left behind, the caller's model untouched)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from infolens.spectral import srop_2d
from infolens.srop import (INPUT_VARIANTS, LayerSROPs, cascading_randomization, correlation, input_variant,
                           layer_srops, srop_statistics, summarize_image_rows)

torch.set_num_threads(2)


class TwoConv(nn.Module):
    """conv a: channel 0 copies the input, channel 1 is dead (zero weights, zero bias), channel 2 is a
    constant map (bias only); conv b (stride 2) copies channel 0 again, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 3, 1)
        self.b = nn.Conv2d(3, 2, 1, stride=2)
        self.head = nn.Linear(2 * 8 * 8, 3)
        with torch.no_grad():
            self.a.weight.zero_()
            self.a.bias.zero_()
            self.a.weight[0, 0] = 1.0
            self.a.bias[2] = 0.7
            self.b.weight.zero_()
            self.b.bias.zero_()
            self.b.weight[0, 0] = 2.0
            self.b.weight[1, 0] = 1.0
            self.b.weight[1, 2] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.b(self.a(x)), 1))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 16, 16, generator=g)


def test_layer_srops_known_feature_maps(images):
    model = TwoConv()
    res = layer_srops(model, images, "all conv", at="conv")
    assert res.layers == ["a", "b"] and res.shapes == {"a": (16, 16), "b": (8, 8)}
    assert res.strides == {"a": 1.0, "b": 2.0}
    va, vb = res.values["a"], res.values["b"]
    assert va.shape == (6, 3) and vb.shape == (6, 2)
    # the convolutions copy, double and shift the input exactly (weights 1 and 2, biases 0 and 0.7 on
    # float32 values), so both sides are the same float32 SROP of the same map: 1e-6 is ~8 eps32 of a value <= 1
    torch.testing.assert_close(va[:, 0], srop_2d(images[:, 0]), atol=1e-6, rtol=0)  # a copy of the input
    assert torch.isnan(va[:, 1]).all()  # dead channel: missing, never 0
    assert (va[:, 2] == 0).all()  # a constant map has SROP 0
    sub = images[:, 0, ::2, ::2]  # the stride-2 1x1 conv subsamples
    torch.testing.assert_close(vb[:, 0], srop_2d(2 * sub), atol=1e-6, rtol=0)
    torch.testing.assert_close(vb[:, 1], srop_2d(sub + 0.7), atol=1e-6, rtol=0)
    torch.testing.assert_close(res.per_input_pixel()["b"], vb / 2)
    assert res.dead()["a"][:, 1].all() and not res.dead()["b"].any()


def test_statistics_exclude_and_count_dead_channels(images):
    res = layer_srops(TwoConv(), images, ["a", "b"], at="conv")
    st = srop_statistics(res, bins=10)
    va = res.values["a"].double().numpy()
    np.testing.assert_allclose(st.per_image["mean"][:, 0].numpy(), np.nanmean(va, 1), rtol=1e-12)
    np.testing.assert_allclose(st.per_image["median"][:, 0].numpy(), np.nanmedian(va, 1), rtol=1e-12)
    np.testing.assert_allclose(st.per_image["std"][:, 0].numpy(), np.nanstd(va, 1), rtol=1e-12)
    np.testing.assert_allclose(st.per_image["q25"][:, 0].numpy(), np.nanquantile(va, 0.25, axis=1), rtol=1e-12)
    assert st.per_image["n_dead"][:, 0].tolist() == [1] * 6 and st.aggregated["n_dead"][0] == 6
    assert st.aggregated["n_channels"].tolist() == [18, 12]
    edges = st.edges.numpy()
    for i in range(6):
        live = va[i][~np.isnan(va[i])]
        np.testing.assert_array_equal(st.histogram[i, 0].numpy(), np.histogram(live, bins=edges)[0])
    assert int(st.histogram[:, 0].sum()) == 12  # dead channels are in no bin
    rows = st.layer_rows()
    assert rows[0]["n_images"] == 6 and not any(isinstance(v, float) and math.isnan(v) for v in rows[0].values())


def test_pooled_and_per_image_aggregation_agree_with_numpy(images):
    res = layer_srops(TwoConv(), images, "all conv", at="conv")
    vb = res.values["b"].double().numpy()
    pooled = srop_statistics(res, aggregate="pooled").aggregated
    assert float(pooled["median"][1]) == pytest.approx(float(np.median(vb)), abs=1e-12)
    per = srop_statistics(res, aggregate="images").aggregated
    assert float(per["median"][1]) == pytest.approx(float(np.median(vb, axis=1).mean()), abs=1e-12)


def test_all_dead_layer_gives_missing_statistics_not_nan_means():
    res = LayerSROPs(layers=["x"], values={"x": torch.tensor([[float("nan")] * 3, [0.2, 0.4, float("nan")]])},
                     shapes={"x": (4, 4)}, strides={"x": 1.0}, input_shape=(4, 4))
    st = srop_statistics(res)
    assert math.isnan(float(st.per_image["mean"][0, 0]))
    assert float(st.aggregated["mean"][0]) == pytest.approx(0.3)  # the all-dead image is left out ...
    assert int(st.aggregated["n_images"][0]) == 1 and int(st.aggregated["n_dead"][0]) == 4  # ... and counted


def test_batched_equals_per_image_and_leaves_no_hooks(quick_mnist_model, mnist_test_small):
    x = mnist_test_small[0][:12]
    model = quick_mnist_model
    model.train()
    full = layer_srops(model, x, "all conv", batch_size=12)
    one = layer_srops(model, x, "all conv", batch_size=1)
    assert model.training  # mode restored
    model.eval()
    for k in full.layers:
        assert torch.equal(torch.nan_to_num(full.values[k], 9.0), torch.nan_to_num(one.values[k], 9.0))
    assert all(not m._forward_hooks for m in model.modules())
    cat = LayerSROPs.concat([layer_srops(model, x[:5]), layer_srops(model, x[5:])])
    assert all(torch.equal(torch.nan_to_num(cat.values[k], 9.0), torch.nan_to_num(full.values[k], 9.0))
               for k in full.layers)


def test_streaming_keeps_only_srops(quick_mnist_model, mnist_test_small):
    """The hook reduces each map to its SROPs at once; nothing of the size of a feature map survives."""
    res = layer_srops(quick_mnist_model, mnist_test_small[0][:4], "all conv")
    total = sum(v.numel() for v in res.values.values())
    assert total == 4 * sum(v.shape[1] for v in res.values.values()) and total < 4 * 200


def test_errors(images):
    model = TwoConv()
    with pytest.raises(ValueError, match="2-D maps"):
        layer_srops(model, images, "head", at="conv")
    with pytest.raises(ValueError, match="unknown layer"):
        layer_srops(model, images, "nope", at="conv")
    with pytest.raises(ValueError, match="non-finite"):
        layer_srops(model, images.clone().fill_(float("nan")), "a", at="conv")
    with pytest.raises(ValueError, match="kappa"):
        layer_srops(model, images, "a", kappa=0, at="conv")
    with pytest.raises(TypeError):
        layer_srops("model", images, "a")
    with pytest.raises(ValueError, match="variant"):
        input_variant(images, "blurred")


def test_first_layer_follows_the_input_spectrum(quick_mnist_model, mnist_test_small):
    """The paper's input check on the first convolution of a trained net: removing high frequencies lowers
    the SROP, shuffling the pixels (all structure gone, white-ish spectrum) raises it."""
    x = mnist_test_small[0][:64]
    means = {}
    for v in ("original", "lowpass", "shuffled"):
        res = layer_srops(quick_mnist_model, input_variant(x, v, seed=0), "features.0", at="conv")
        means[v] = float(srop_statistics(res).aggregated["mean"][0])
    assert means["lowpass"] < means["original"] < means["shuffled"]


# --------------------------------------------------------------------------- input variants


def test_input_variants_properties():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 20, 24, generator=g)
    assert input_variant(x, "original") is x
    for v in INPUT_VARIANTS:
        out = input_variant(x, v, indices=range(10, 15), seed=3)
        assert out.shape == x.shape and out.dtype == x.dtype and float(out.min()) >= 0 and float(out.max()) <= 1
    sh = input_variant(x, "shuffled", seed=3)
    torch.testing.assert_close(sh.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)  # same pixels
    # per-image seeds: the variant of an image does not depend on its batch
    for v in ("shuffled", "noise"):
        alone = input_variant(x[3:4], v, indices=[13], seed=3)
        assert torch.equal(input_variant(x, v, indices=range(10, 15), seed=3)[3:4], alone)
        assert not torch.equal(input_variant(x[3:4], v, indices=[14], seed=3), alone)
    low = input_variant(x, "lowpass", cutoff=0.25)
    assert float(srop_2d(low[:, 0].double()).max()) <= 0.25 + 1e-9
    const = torch.full((1, 1, 8, 8), 0.3)
    torch.testing.assert_close(input_variant(const, "lowpass"), const)
    cr = input_variant(x, "center_removed")
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], -1).mean(-1)
    torch.testing.assert_close(cr[..., 10, 12], border)
    assert torch.equal(cr[..., 0, :], x[..., 0, :])


# --------------------------------------------------------------------------- cascading randomisation


def test_cascading_randomization_from_the_top():
    model = TwoConv()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = [(name, {k: v.clone() for k, v in m.state_dict().items()}) for name, m in cascading_randomization(model)]
    assert [s[0] for s in steps] == ["none", "head", "b", "a"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model untouched
    assert all(torch.equal(before[k], v) for k, v in steps[0][1].items())
    changed = [{k.split(".")[0] for k in before if not torch.equal(before[k], s[k])} for _, s in steps]
    assert changed == [set(), {"head"}, {"head", "b"}, {"head", "b", "a"}]
    again = [{k: v.clone() for k, v in m.state_dict().items()} for _, m in cascading_randomization(model)]
    assert all(torch.equal(a[k], s[1][k]) for a, s in zip(again, steps) for k in a)  # seeded


def test_cascading_randomization_takes_batchnorm_with_its_conv():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.running_mean.fill_(0.5)
            bn.weight.fill_(2.0)
    names, bn_means = [], []
    for name, m in cascading_randomization(net, seed=1):
        names.append(name)
        bn_means.append((float(m[1].running_mean[0]), float(m[4].running_mean[0])))
    assert names == ["none", "3", "0"]
    assert bn_means == [(0.5, 0.5), (0.5, 0.0), (0.0, 0.0)]  # each BatchNorm goes with the conv before it


# --------------------------------------------------------------------------- tables and correlation


def test_correlation_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.normal(size=9)
    y = 0.5 * x + rng.normal(size=9)
    y[2] = y[5]  # a tie
    c = correlation(x.tolist(), y.tolist())
    assert c["pearson"] == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert c["spearman"] == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    c = correlation([1, 2, float("nan"), 4], [2, 4, 5, 8])
    assert c["n"] == 3 and c["pearson"] == pytest.approx(1.0)
    assert math.isnan(correlation([1, 1, 1], [1, 2, 3])["pearson"])


def test_summarize_image_rows_equals_statistics_aggregate(images):
    res = layer_srops(TwoConv(), images, "all conv", at="conv")
    st = srop_statistics(res)
    table = summarize_image_rows(st.image_rows(decimals=None), decimals=None)
    for row, ref in zip(table, st.layer_rows(decimals=None)):
        for k in ("mean", "median", "std", "q10", "q90", "n_images", "n_channels", "n_dead", "mean_input"):
            assert row[k] == pytest.approx(ref[k], abs=1e-12)


# --------------------------------------------------------------------------- the runner


@pytest.fixture(scope="module")
def allconv_ckpt(tmp_path_factory):
    from infolens.models import build_builtin

    path = tmp_path_factory.mktemp("srop-ckpt") / "allconv.pt"
    torch.save(build_builtin("mnist_allconv", seed=1).state_dict(), path)
    return path


def test_cli_writes_tables_figures_and_report(tmp_path, allconv_ckpt):
    from infolens.cli import main
    from infolens.results import read_csv

    out = tmp_path / "run"
    rc = main(["--no-progress", "srop", "mnist_allconv", "--checkpoint", str(allconv_ckpt), "--data", "mnist",
               "--limit", "6", "--batch-size", "4", "--out", str(out), "--check", "input,architecture,randomization",
               "--variants", "original,noise", "--layers", "features.0;features.3"])
    assert rc == 0
    for t in ("images", "histogram", "layers", "summary"):
        assert (out / "tables" / f"{t}.csv").is_file()
    for f in ("srop_input", "srop_architecture", "srop_randomization"):
        assert (out / "figures" / f"{f}.png").is_file()
    assert (out / "report.html").is_file()
    rows = read_csv(out / "tables" / "images.csv")
    assert {r["layer"] for r in rows} == {"features.0", "features.3"}
    assert len([r for r in rows if r["check"] == "input"]) == 6 * 2 * 2
    hist = read_csv(out / "tables" / "histogram.csv")
    layers = read_csv(out / "tables" / "layers.csv")
    for lr in layers:  # the summed histogram holds every live channel of every image
        n = sum(h["count"] for h in hist if (h["check"], h["variant"], h["layer"]) ==
                (lr["check"], lr["variant"], lr["layer"]))
        assert n == lr["n_channels"] - lr["n_dead"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["mean SROP (input)"]["mnist_allconv"]) == {"original", "noise"}


@pytest.mark.parametrize("at,layers", [("block", {"features.2", "features.8", "features.15"}),
                                       ("conv", {"features.0", "features.3", "features.6", "features.9", "features.12",
                                                 "features.15"})])
def test_cli_measurement_point(tmp_path, allconv_ckpt, at, layers):
    from infolens.cli import main
    from infolens.results import read_csv

    out = tmp_path / at
    rc = main(["--no-progress", "srop", "mnist_allconv", "--checkpoint", str(allconv_ckpt), "--limit", "3",
               "--out", str(out), "--no-report", "--at", at])
    assert rc == 0
    rows = read_csv(out / "tables" / "images.csv")
    assert {r["at"] for r in rows} == {at} and {r["layer"] for r in rows} == layers
    assert json.loads((out / "meta.json").read_text())["params"]["at"] == at


@pytest.mark.parametrize("argv,message", [
    (["--check", "bogus"], "--check"),
    (["--layers", "features.99"], "unknown layer"),
    (["--variants", "blur"], "--variants"),
    (["--check", "training"], "--stages"),
])
def test_cli_bad_arguments_exit_2(tmp_path, allconv_ckpt, capsys, argv, message):
    from infolens.cli import main

    rc = main(["--no-progress", "srop", "mnist_allconv", "--checkpoint", str(allconv_ckpt), "--limit", "2",
               "--out", str(tmp_path / "x"), "--no-report", *argv])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_training_check_from_a_stages_file(tmp_path, allconv_ckpt):
    from infolens.cli import main
    from infolens.models import build_builtin
    from infolens.results import read_csv, write_csv

    ck0 = tmp_path / "s0.pt"
    torch.save(build_builtin("mnist_allconv", seed=5).state_dict(), ck0)
    write_csv(tmp_path / "stages.csv", [{"checkpoint": str(ck0), "epoch": 0.0, "test_acc": 0.1},
                                        {"checkpoint": str(allconv_ckpt), "epoch": 0.5, "test_acc": 0.5},
                                        {"checkpoint": str(ck0), "epoch": 1.0, "test_acc": 0.9}])
    out = tmp_path / "train"
    rc = main(["--no-progress", "srop", "mnist_allconv", "--checkpoint", str(allconv_ckpt), "--limit", "4",
               "--out", str(out), "--no-report", "--check", "training", "--stages", str(tmp_path / "stages.csv")])
    assert rc == 0
    summary = read_csv(out / "tables" / "summary.csv")
    assert [r["epoch"] for r in summary] == [0.0, 0.5, 1.0] and summary[0]["srop_mean"] == summary[2]["srop_mean"]
    corr = read_csv(out / "tables" / "correlation.csv")
    row = next(r for r in corr if r["layer"] == "mean over layers" and r["statistic"] == "mean"
               and r["stages"] == "all")
    ref = correlation([r["srop_mean"] for r in summary], [0.1, 0.5, 0.9])
    assert row["pearson"] == pytest.approx(ref["pearson"], abs=1e-4) and row["n_stages"] == 3


@pytest.mark.slow
def test_quick_demo_section(tmp_path):
    from infolens.experiments.srop.runner import demo

    out = demo(tmp_path / "srop", quick=True, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert "training: correlation of SROP with test accuracy" in summary
    meta = json.loads((out / "meta.json").read_text())
    assert meta["order"] == 10 and set(meta["figures"]) == {"srop_input", "srop_training"}


# --------------------------------------------------------------------------- measurement points


class ConvBnRelu(nn.Module):
    """A block with known maps: conv -> BN -> ReLU (a module), then a residual block whose one ReLU
    module is called twice (as torchvision's BasicBlock), then a head."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.block = nn.Sequential(Residual(4), Residual(4))
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.bn.running_mean.copy_(torch.randn(4, generator=g))
            self.bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
            self.bn.weight.copy_(torch.randn(4, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.relu(self.bn(self.conv(x))))
        return self.head(x.mean((-2, -1)))


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)
        self.act = nn.ReLU()  # shared: called after c1 and after the addition

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.c2(self.act(self.c1(x))) + x)


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean((1, 2, 3))[:, None]


def test_activation_point_is_relu_of_the_conv_computed_directly(images):
    model = ConvBnRelu().eval()
    with torch.no_grad():
        conv = model.conv(images)
        act = torch.relu(model.bn(conv))
        b0 = model.block[0]
        a1 = torch.relu(b0.c1(act))
        a2 = torch.relu(b0.c2(a1) + act)
        b1 = model.block[1](a2)
    res = layer_srops(model, images, at="activation")
    assert res.at == "activation" and res.layers == ["conv", "block.0.c1", "block.0.c2", "block.1.c1", "block.1.c2"]
    assert res.sources["conv"] == "relu" and res.sources["block.0.c2"] == "block.0.act#1"
    torch.testing.assert_close(res.values["conv"], srop_2d(act).float(), equal_nan=True)
    torch.testing.assert_close(res.values["block.0.c1"], srop_2d(a1).float(), equal_nan=True)
    torch.testing.assert_close(res.values["block.0.c2"], srop_2d(a2).float(), equal_nan=True)
    conv_res = layer_srops(model, images, at="conv")
    torch.testing.assert_close(conv_res.values["conv"], srop_2d(conv).float())
    blocks = layer_srops(model, images, at="block")
    assert blocks.layers == ["block.0", "block.1"]
    torch.testing.assert_close(blocks.values["block.1"], srop_2d(b1).float(), equal_nan=True)
    assert all(not m._forward_hooks for m in model.modules())


def test_every_point_from_one_pass_equals_one_point_at_a_time(images):
    from infolens.srop import SpectralRolloff

    model = ConvBnRelu().eval()
    both = SpectralRolloff(model, batch_size=4).measure_at(images, settings=[{}, {"q": 1.0, "keep_dc": False}])
    for at in ("conv", "activation", "block"):
        for i, kw in enumerate([{}, {"q": 1.0, "keep_dc": False}]):
            one = layer_srops(model, images, at=at, batch_size=6, **kw)
            assert both[(at, i)].layers == one.layers and both[(at, i)].params == one.params
            for k in one.layers:
                assert torch.equal(both[(at, i)].values[k].nan_to_num(9), one.values[k].nan_to_num(9))


def test_functional_activation_and_bad_point_raise_clearly(images):
    with pytest.raises(ValueError, match="functionally"):
        layer_srops(Functional(), images, at="activation")
    with pytest.raises(ValueError, match="at must be one of"):
        layer_srops(Functional(), images, at="relu")
    assert layer_srops(Functional(), images, at="conv").layers == ["conv"]


def test_spectral_rolloff_method_shape(images):
    from infolens.srop import SpectralRolloff

    model = ConvBnRelu().train()
    method = SpectralRolloff(model, at="activation", q=1.0)
    res = method.measure(images)
    ref = layer_srops(model, images, at="activation", q=1.0)
    assert model.training and all(m.training for m in model.modules())  # restored recursively
    assert all(torch.equal(res.values[k].nan_to_num(9), ref.values[k].nan_to_num(9)) for k in ref.layers)
    rows = res.to_rows()
    assert set(rows[0]) == {"at", "index", "layer", "depth", "channel", "srop", "srop_input"}
    assert len(rows) == images.shape[0] * sum(v.shape[1] for v in res.values.values())


def test_wasserstein1_matches_scipy():
    from scipy.stats import wasserstein_distance

    from infolens.srop import resample_counts, resample_histograms, srop_histograms, wasserstein1

    g = torch.Generator().manual_seed(1)
    a = torch.rand(20, 16, generator=g) * 0.8
    b = (torch.rand(20, 16, generator=g) * 0.5 + 0.4)
    a[0, :3] = float("nan")  # dead channels are left out
    ha, hb = srop_histograms(a), srop_histograms(b)
    got = float(wasserstein1(ha.sum(0), hb.sum(0)))
    ref = wasserstein_distance(a[~torch.isnan(a)].numpy(), b.flatten().numpy())
    assert got == pytest.approx(ref, abs=2 * math.sqrt(2) / 512)
    idx = torch.tensor([[0, 0, 5, 7], [1, 2, 3, 3]])
    counts = resample_counts(idx, 20)
    w = wasserstein1(resample_histograms(ha, counts), resample_histograms(hb, counts))
    for r in range(2):
        sa, sb = a[idx[r]], b[idx[r]]
        ref = wasserstein_distance(sa[~torch.isnan(sa)].numpy(), sb.flatten().numpy())
        assert float(w[r]) == pytest.approx(ref, abs=2 * math.sqrt(2) / 512)


# --------------------------------------------------------------------------- claims S1-S3


class MeanClassifier(nn.Module):
    """Predicts from the image mean alone, through a conv + ReLU: a low-pass (DC kept) never changes it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.head.bias.copy_(torch.tensor([-0.5, 0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.relu(self.conv(x))  # maps to measure; the decision uses the mean only
        return self.head(x.mean((1, 2, 3))[:, None])


def _run(tmp_path):
    from infolens.results import RunDir

    return RunDir(tmp_path / "claims", analysis="srop", params={"test": True})


def test_cutoff_rule_takes_the_lowest_cutoff_that_keeps_accuracy(images):
    from infolens.experiments.srop.verdicts import CUTOFFS, choose_cutoff

    x = torch.cat([images * 0.4, images * 0.4 + 0.6])  # means below and above 0.5: two classes
    y = torch.tensor([1] * 6 + [0] * 6)
    cut = choose_cutoff(MeanClassifier(), x, y, "cpu")
    assert cut["acc0"] == 1.0 and cut["kept"] and cut["cutoff"] == CUTOFFS[-1]  # the mean survives every low-pass
    flipped = choose_cutoff(MeanClassifier(), x, 1 - y, "cpu")  # accuracy 0 unfiltered, 0 filtered: kept too
    assert flipped["cutoff"] == CUTOFFS[-1]


def test_s1_s2_point_estimates_equal_scipy_wasserstein(tmp_path):
    from scipy.stats import wasserstein_distance

    from infolens.experiments.srop.verdicts import QUICK, _variants, s1_s2_model
    from infolens.srop import random_init

    g = torch.Generator().manual_seed(4)
    x = (torch.rand(10, 1, 16, 16, generator=g) > 0.8).float()
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # sparse blobs (like digits), so variants differ
    model = ConvBnRelu().eval()
    tables = {"cutoffs": [], "dist": [], "stages": [], "robustness": []}
    s1, s2 = s1_s2_model(_run(tmp_path), "net", model, x, torch.arange(10), x, None, QUICK, "cpu", "MNIST", tables)
    cutoff = tables["cutoffs"][0]["cutoff"]
    var = _variants(x, cutoff, QUICK.seed)
    for at, r1, r2 in zip(("conv", "activation", "block"), s1, s2):
        def pooled(m, xv):
            res = layer_srops(m, xv, at=at)
            return [res.values[k].flatten()[~torch.isnan(res.values[k].flatten())].numpy() for k in res.layers]

        p = {v: pooled(model, xv) for v, xv in var.items()}
        w = {v: np.mean([wasserstein_distance(a, b) for a, b in zip(p["original"], p[v])]) for v in p}
        ref = min(w["shuffled"], w["noise"]) / w["lowpass"]
        assert r1["model"] == f"net@{at}" and r1["value"] == pytest.approx(ref, rel=0.05)
        rnd = [pooled(random_init(model, seed=s), x) for s in (1, 2, 3)]  # not a built-in: framework default
        tr = np.mean([np.mean([wasserstein_distance(a, b) for a, b in zip(p["original"], rr)]) for rr in rnd])
        between = np.mean([np.mean([wasserstein_distance(a, b) for a, b in zip(rnd[i], rnd[j])])
                           for i, j in ((0, 1), (0, 2), (1, 2))])  # every seed pair
        assert r2["value"] == pytest.approx(tr / between, rel=0.05)
        assert r1["ci_low"] <= r1["value"] <= r1["ci_high"] and r1["n"] == 10
        assert r1["variant"] == ("primary" if at == "activation" else "sensitivity") == r2["variant"]


def test_s3_rho_equals_spearman_of_direct_layer_means(tmp_path, monkeypatch):
    from scipy.stats import spearmanr

    import infolens.experiments.srop.verdicts as C

    from infolens._torch import fork_rng

    def stage(seed: int):
        def load():
            with fork_rng(seed):
                return ConvBnRelu().eval()  # other kernels: other SROPs
        return load

    scales = [11, 12, 13, 14, 15]  # stage seeds
    accs = [0.1, 0.5, 0.9, 0.3, 0.7]
    monkeypatch.setattr(C, "mnist_stages", lambda name, **kw: [(float(k), a, stage(s))
                                                               for k, (s, a) in enumerate(zip(scales, accs))])
    g = torch.Generator().manual_seed(5)
    x = torch.nn.functional.avg_pool2d((torch.rand(8, 1, 16, 16, generator=g) > 0.8).float(), 3, 1, 1)
    tables = {"cutoffs": [], "dist": [], "stages": [], "robustness": []}
    rows = C.s3_model(_run(tmp_path), "net", x, C.QUICK, True, "cpu", False, tables)
    for at, row in zip(("conv", "activation", "block"), rows):
        means = []
        for s in scales:
            res = layer_srops(stage(s)(), x, at=at)
            per = torch.stack([torch.nanmean(res.values[k].double(), 1) for k in res.layers], 1)  # (N, L)
            means.append(float(torch.nanmean(per, 1).mean()))
        assert row["value"] == pytest.approx(spearmanr(means, accs)[0], abs=1e-9)
    assert {r["setting"] for r in tables["robustness"]} == {s for s, _ in C.S3_SETTINGS}


def test_random_init_is_seeded_and_leaves_the_model_alone():
    from infolens.srop import random_init

    model = ConvBnRelu().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a, b, a2 = random_init(model, seed=1), random_init(model, seed=2), random_init(model, seed=1)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(a.state_dict()[k], a2.state_dict()[k]) for k in before)
    assert not torch.equal(a.conv.weight, b.conv.weight) and not torch.equal(a.conv.weight, model.conv.weight)
    assert torch.equal(a.bn.running_mean, torch.zeros(4)) and torch.equal(a.bn.running_var, torch.ones(4))
