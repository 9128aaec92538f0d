"""The API leaves models as it found them (issue 16): every method evaluates in eval mode and gives the
model back with every submodule's mode, every ``requires_grad`` flag, every buffer and every weight
exactly as passed. The model is in train mode with one submodule the user froze in eval and one
parameter frozen, and has BatchNorm (running statistics, batch counter) and dropout, so a method that
ran in train mode, or restored only the top-level mode, is caught.

(To be folded into tests/test_contract.py.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from infolens import attribution as A
from infolens import faithfulness as F
from infolens import signal as S
from infolens.discard import InformationDiscarding, ReconstructionUncertainty, train_decoder
from infolens.srop import layer_srops


def _net() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),  # "1"... index 3
        nn.Dropout(0.5), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3),
    )
    with torch.no_grad():  # non-trivial running statistics
        m[1].running_mean.uniform_(-0.2, 0.2)
        m[1].running_var.uniform_(0.5, 2.0)
    m.train()
    m[3].eval()  # a block the user froze in eval
    m[0].bias.requires_grad_(False)  # and a parameter they froze
    return m


def _state(m: nn.Module) -> dict:
    return {
        "modes": [(n, s.training) for n, s in m.named_modules()],
        "flags": [(n, p.requires_grad) for n, p in m.named_parameters()],
        "tensors": {n: t.detach().clone() for n, t in list(m.state_dict().items())},
        "grads": [(n, p.grad) for n, p in m.named_parameters()],
    }


def _same(a: dict, b: dict) -> None:
    assert a["modes"] == b["modes"], "a submodule's mode changed"
    assert a["flags"] == b["flags"], "a requires_grad flag changed"
    assert a["tensors"].keys() == b["tensors"].keys()
    for k in a["tensors"]:
        assert torch.equal(a["tensors"][k], b["tensors"][k]), f"{k} changed"
    assert all(g is None for _, g in b["grads"]), "weight gradients were accumulated"


X = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(1))
T = torch.tensor([0, 1, 2])
MAPS = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(2))

CASES: dict[str, Callable[[nn.Module], object]] = {
    "saliency": lambda m: A.Saliency(m).attribute(X, T),
    "gradient_x_input": lambda m: A.GradientXInput(m).attribute(X, T),
    "integrated_gradients": lambda m: A.IntegratedGradients(m, n_steps=4).attribute(X, T),
    "smoothgrad": lambda m: A.SmoothGrad(m, n_samples=3).attribute(X, T),
    "squaregrad": lambda m: A.SquareGrad(m, n_samples=3).attribute(X, T),
    "vargrad": lambda m: A.VarGrad(m, n_samples=3).attribute(X, T),
    "guided_backprop": lambda m: A.GuidedBackprop(m).attribute(X, T),
    "gradcam": lambda m: A.GradCAM(m, "3.0").attribute(X, T),
    "occlusion": lambda m: A.Occlusion(m, window=4).attribute(X, T),
    "rise": lambda m: A.RISE(m, n_masks=8).attribute(X, T),
    "forgrad": lambda m: A.FORGrad(A.Saliency(m), 3.0).attribute(X, T),
    "predicted_target": lambda m: A.Saliency(m).attribute(X),
    "deletion": lambda m: F.Deletion(m, steps=3)(X, T, MAPS),
    "insertion": lambda m: F.Insertion(m, steps=3)(X, T, MAPS),
    "mufidelity": lambda m: F.MuFidelity(m, n_masks=8, grid=3)(X, T, MAPS),
    "srop": lambda m: layer_srops(m, X, "all conv"),
    "discard": lambda m: InformationDiscarding(m, ["2"], grid=3, steps=2, samples=2).measure(X),
    "discard_constrained": lambda m: InformationDiscarding(m, ["2"], grid=3, steps=2, samples=2, solver="constrained",
                                                           options={"calib_samples": 4}).measure(X),
    "reconstruction": lambda m: ReconstructionUncertainty(
        m, {"2": train_decoder(m, "2", X, X, max_epochs=1, batch_size=3, blocks=1, width=4)[0]}, grid=3, steps=2,
        samples=2).measure(X),
    "signal_classify": lambda m: S.classify(m, X),
    "signal_predict": lambda m: S.predict(m, X),
    "signal_finetune": lambda m: S.finetune_through_classifier(S.build_autoencoder(1, (4, 4)), m, X, T,
                                                               schedule=S.Schedule(max_steps=2, batch_size=3,
                                                                                   eval_every=1), progress=False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_method_gives_the_model_back_as_it_was_passed(name):
    m = _net()
    before = _state(m)
    CASES[name](m)
    _same(before, _state(m))


@pytest.mark.parametrize("name", ["saliency", "smoothgrad", "deletion"])
def test_results_are_those_of_eval_mode(name):
    """A model passed in train mode gives the maps of the same model in eval mode (issue 16: they
    differed by up to 0.82 when BatchNorm used batch statistics)."""
    m = _net()
    ref = _net().eval()
    a, b = CASES[name](m), CASES[name](ref)
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b)
    else:
        torch.testing.assert_close(a.scores, b.scores)
