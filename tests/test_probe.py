"""probe.py: layer names, selection, capture of outputs and gradients, hooks always removed."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from infolens import probe


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    ).eval()


def n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_selection_by_name_glob_type_keyword():
    m = small_net()
    assert probe.resolve_layers(m, "2.0") == ["2.0"]
    assert probe.resolve_layers(m, "all conv") == ["0", "2.0"]
    assert probe.resolve_layers(m, "all Conv2d") == ["0", "2.0"]
    assert probe.resolve_layers(m, nn.ReLU) == ["1", "2.1"]
    assert probe.resolve_layers(m, "2.*") == ["2.0", "2.1"]
    assert probe.resolve_layers(m, "blocks") == ["2"]
    assert probe.resolve_layers(m, m[5]) == ["5"]
    # order follows the model, duplicates removed
    assert probe.resolve_layers(m, ["5", "0", "all conv"]) == ["0", "2.0", "5"]
    assert "2" not in probe.resolve_layers(m, "all")  # leaves only


def test_unknown_names_list_close_matches():
    m = small_net()
    with pytest.raises(ValueError, match=r"unknown layer '2\.00'.*closest names: 2\.0"):
        probe.resolve_layers(m, "2.00")
    with pytest.raises(ValueError, match="matches no layer"):
        probe.resolve_layers(m, "layer*.conv2")
    with pytest.raises(ValueError, match="no layer of type 'BatchNorm3d'.*Conv2d"):
        probe.resolve_layers(m, "all BatchNorm3d")
    with pytest.raises(ValueError, match="not a submodule"):
        probe.resolve_layers(m, nn.Conv2d(1, 1, 1))


def test_capture_outputs_equal_manual_forward():
    m = small_net()
    x = torch.rand(5, 1, 9, 9)
    cap = probe.capture(m, x, ["0", "2.1"])
    h0 = m[0](x)
    h2 = m[2](m[1](h0))
    torch.testing.assert_close(cap.outputs["0"], h0)
    torch.testing.assert_close(cap.outputs["2.1"], h2)
    torch.testing.assert_close(cap.logits, m(x))
    assert n_hooks(m) == 0


def test_capture_gradients_match_autograd():
    m = small_net()
    x = torch.rand(4, 1, 9, 9)
    target = torch.tensor([0, 1, 2, 1])
    cap = probe.capture(m, x, ["2.0"], grads=True, target=target)
    # independent: split the network at the layer and differentiate the selected logits
    h = m[2][0](m[1](m[0](x))).detach().requires_grad_(True)
    out = m[5](m[4](m[3](m[2][1](h))))
    g, = torch.autograd.grad(out.gather(1, target[:, None]).sum(), h)
    torch.testing.assert_close(cap.gradients["2.0"], g)
    assert n_hooks(m) == 0


def test_hooks_removed_when_forward_raises():
    m = small_net()

    def broken(x):
        raise RuntimeError("the forward pass fails inside the model")

    m[4].forward = broken  # Flatten fails after the hooked convolutions ran
    with pytest.raises(RuntimeError, match="inside the model"):
        probe.capture(m, torch.rand(2, 1, 9, 9), "all conv")
    assert n_hooks(m) == 0


def test_capture_with_gradients_leaves_a_train_mode_model_as_it_was():
    """No ``.grad`` on any parameter, BatchNorm's running statistics unmoved, modes and flags kept, and
    the captured gradients those of the same model in eval mode."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                      nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)).train()
    m[0].bias.requires_grad_(False)
    buffers = {k: v.clone() for k, v in m.state_dict().items()}
    flags = [p.requires_grad for p in m.parameters()]
    x = torch.rand(5, 1, 9, 9)
    cap = probe.capture(m, x, ["0", "2"], grads=True, target=1)
    assert all(p.grad is None for p in m.parameters())
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in buffers.items())
    assert [p.requires_grad for p in m.parameters()] == flags and m.training and m[1].training
    ref = copy.deepcopy(m).eval()
    acts = {}
    ref[2].register_forward_hook(lambda mod, a, out: acts.__setitem__("2", out))
    out = ref(x)
    (g2,) = torch.autograd.grad(out[:, 1].sum(), acts["2"])
    torch.testing.assert_close(cap.gradients["2"], g2)
    torch.testing.assert_close(cap.outputs["2"], acts["2"].detach())


def test_reduce_streams_and_stop_after_last():
    m = small_net()
    x = torch.rand(3, 1, 9, 9)
    seen = []

    def reduce(name, out):
        seen.append(name)
        return out.mean(dim=(2, 3))

    cap = probe.capture(m, x, ["0", "2.0"], reduce=reduce, stop_after_last=True)
    assert seen == ["0", "2.0"] and cap.logits is None
    assert cap.outputs["2.0"].shape == (3, 6)
    assert n_hooks(m) == 0


def test_bad_inputs_get_clear_errors():
    m = small_net()
    with pytest.raises(ValueError, match="non-finite"):
        probe.capture(m, torch.full((1, 1, 9, 9), float("nan")), "0")
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        probe.capture(m, torch.rand(9, 9), "0")
    with pytest.raises(TypeError, match="torch.Tensor"):
        probe.capture(m, [[1.0]], "0")


def test_list_layers_shapes_on_torchvision_resnet18():
    tv = pytest.importorskip("torchvision")
    m = tv.models.resnet18(weights=None).eval()
    rows = {r.name: r for r in probe.list_layers(m, (3, 224, 224))}
    assert rows["conv1"].output_shape == (64, 112, 112)
    assert rows["layer4.1.conv2"].output_shape == (512, 7, 7)
    assert rows["fc"].output_shape == (1000,)
    assert rows["layer1.0"].type == "BasicBlock" and not rows["layer1.0"].is_leaf
    assert sum(r.num_params for r in rows.values() if r.is_leaf) == sum(p.numel() for p in m.parameters())
    assert len(probe.resolve_layers(m, "all conv")) == 20
    assert probe.resolve_layers(m, "layer*.0.conv2") == [f"layer{i}.0.conv2" for i in range(1, 5)]
    assert len(probe.resolve_layers(m, "blocks")) == 8
    assert n_hooks(m) == 0
