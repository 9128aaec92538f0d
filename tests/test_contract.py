"""The contract every method and metric keeps (issue 14), driven by one table, as Captum's
``testing/attr/helpers/test_config.py`` does. A new method joins by adding one row to :data:`ROWS`.

For every row:
* the model comes back as it was passed: every submodule's mode, every ``requires_grad`` flag, every buffer
  and weight, no hooks left, no weight gradients (the model is in train mode with a block the user froze in
  eval and one frozen parameter, and has BatchNorm and dropout);
* batched equals one-by-one (each image with its global index), and results do not depend on the batch's
  composition (a permuted batch gives the permuted results) and repeat under the same seed;
* the result's rows (``.to_rows()``) have the documented columns, one group per image;
* CPU float32 and float64 agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from infolens import attribution as A
from infolens.attribution import metrics as F
from infolens import signal as S
from infolens.discard import InformationDiscarding, ReconstructionUncertainty, train_decoder
from infolens.srop import SpectralRolloff


def _net() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, stride=2), nn.BatchNorm2d(6), nn.ReLU()),
        nn.Dropout(0.5), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 3),
    )
    with torch.no_grad():  # non-trivial running statistics
        for bn in (m[1], m[3][1]):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    m.train()
    m[3].eval()  # a block the user froze in eval
    m[0].bias.requires_grad_(False)  # and a parameter they froze
    return m


def _decoder(m: nn.Module) -> nn.Module:
    """A small decoder of layer "2" (reconstruction uncertainty needs one); trained once per model state."""
    return train_decoder(m, "2", X, X, max_epochs=1, batch_size=4, blocks=1, width=4)[0]


def _autoencoder(like: nn.Module) -> nn.Module:
    """An (untrained, seeded) SegNet-style autoencoder for the 12 x 12 test images, in the model's dtype."""
    return S.build_autoencoder(1, (4, 4), seed=0).to(next(like.parameters()).dtype)


N = 4
X = torch.rand(N, 1, 12, 12, generator=torch.Generator().manual_seed(1))
T = torch.tensor([0, 1, 2, 1])
IDX = [10, 11, 12, 13]
MAPS = torch.rand(N, 1, 12, 12, generator=torch.Generator().manual_seed(2))


@dataclass
class Row:
    """One method or metric: ``call(model, images, targets, indices, maps)`` and how to read its result."""

    name: str
    call: Callable[[nn.Module, Tensor, Tensor, list[int], Tensor], Any]
    values: Callable[[Any], Tensor] = lambda r: r  # per-image tensor (N, ...)
    columns: frozenset[str] | None = None  # documented columns of .to_rows()
    rtol: float = 1e-4  # float32 against float64
    atol: float = 1e-5
    float64: bool = True  # False where a part trained in float32 (a decoder) goes with the model


def _attr(cls: type, **kw: Any) -> Callable:
    return lambda m, x, t, i, maps: cls(m, **kw).attribute(x, t, indices=i)


def _metric(cls: type, **kw: Any) -> Callable:
    return lambda m, x, t, i, maps: cls(m, **kw)(x, t, maps, indices=i)


METRIC_COLUMNS = frozenset({"index", "metric", "score"})

ROWS: list[Row] = [
    # attribution methods (gradient-based, gray-box, prediction-based) and FORGrad
    Row("saliency", _attr(A.Saliency)),
    Row("gradient_x_input", _attr(A.GradientXInput)),
    Row("integrated_gradients", _attr(A.IntegratedGradients, n_steps=4)),
    Row("smoothgrad", _attr(A.SmoothGrad, n_samples=3)),
    Row("squaregrad", _attr(A.SquareGrad, n_samples=3)),
    Row("vargrad", _attr(A.VarGrad, n_samples=3)),
    Row("guided_backprop", _attr(A.GuidedBackprop)),
    Row("gradcam", _attr(A.GradCAM, layer="3.0")),
    Row("gradcam_pp", _attr(A.GradCAMPlusPlus, layer="3.0")),
    Row("occlusion", _attr(A.Occlusion, window=4)),
    Row("rise", _attr(A.RISE, n_masks=8)),
    # Jansen's ratio of squared output differences: float32 softmax outputs carry ~1e-3 relative error into it
    Row("sobol", _attr(A.Sobol, grid_size=3, n_design=4), rtol=5e-3, atol=1e-4),
    Row("hsic", _attr(A.HSIC, grid_size=3, n_design=8)),
    Row("forgrad", lambda m, x, t, i, maps: A.FORGrad(A.Saliency(m), 3.0).attribute(x, t, indices=i)),
    # faithfulness metrics
    Row("deletion", _metric(F.Deletion, steps=3), lambda r: r.scores, METRIC_COLUMNS),
    Row("insertion", _metric(F.Insertion, steps=3), lambda r: r.scores, METRIC_COLUMNS),
    Row("mufidelity", _metric(F.MuFidelity, n_masks=8, grid=3), lambda r: r.scores, METRIC_COLUMNS),
    # SROP
    Row("srop", lambda m, x, t, i, maps: SpectralRolloff(m, "all conv").measure(x),
        lambda r: torch.cat([r.values[k] for k in r.layers], 1),
        frozenset({"image", "layer", "channel", "srop", "at"})),
    # information discarding (both solvers)
    Row("discard_release", lambda m, x, t, i, maps: InformationDiscarding(m, ["2", "3.2"], grid=3, steps=3,
                                                                          samples=2).measure(x, indices=i),
        lambda r: r.layer_entropy, frozenset({"index", "layer", "entropy", "feature_error", "steps_run"}),
        rtol=1e-3, atol=1e-4),
    Row("discard_constrained", lambda m, x, t, i, maps: InformationDiscarding(
        m, ["2", "3.2"], grid=3, steps=3, samples=2, solver="constrained",
        options={"calib_samples": 4}).measure(x, indices=i),
        lambda r: r.layer_entropy, frozenset({"index", "layer", "entropy", "feature_error", "steps_run"}),
        rtol=1e-3, atol=1e-3),
    Row("reconstruction", lambda m, x, t, i, maps: ReconstructionUncertainty(
        m, {"2": _decoder(m)}, grid=3, steps=2, samples=2).measure(x, indices=i),
        lambda r: torch.stack([r.uncertainty, r.clean], -1).flatten(1),
        frozenset({"index", "layer", "uncertainty", "clean"}), float64=False),
    # what a classifier likes to see: classifiers scored on an autoencoder's reconstructions, NMI kept
    Row("input_signal", lambda m, x, t, i, maps: S.InputSignal({"net": m}, {"ae": _autoencoder(m)}, bins=16).measure(
        x, t, indices=i),
        lambda r: torch.cat([r.loss.permute(2, 0, 1).flatten(1), r.nmi.T], 1),
        frozenset(S.ROW_COLUMNS),
        rtol=1e-3, atol=1e-4),
]
IDS = [r.name for r in ROWS]


def _state(m: nn.Module) -> dict:
    return {
        "modes": [(n, s.training) for n, s in m.named_modules()],
        "flags": [(n, p.requires_grad) for n, p in m.named_parameters()],
        "tensors": {n: t.detach().clone() for n, t in m.state_dict().items()},
        "grads": [p.grad for p in m.parameters()],
        "hooks": [(len(s._forward_hooks), len(s._forward_pre_hooks), len(s._backward_hooks))
                  for s in m.modules()],
    }


def _run(row: Row, m: nn.Module, x: Tensor = X, t: Tensor = T, idx: list[int] = IDX, maps: Tensor = MAPS) -> Any:
    return row.call(m, x, t, list(idx), maps)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_model_comes_back_as_it_was_passed(row):
    m = _net()
    before = _state(m)
    _run(row, m)
    after = _state(m)
    assert before["modes"] == after["modes"], "a submodule's train/eval mode changed"
    assert before["flags"] == after["flags"], "a requires_grad flag changed"
    for k, v in before["tensors"].items():
        assert torch.equal(v, after["tensors"][k]), f"{k} changed"
    assert all(g is None for g in after["grads"]), "weight gradients were accumulated"
    assert before["hooks"] == after["hooks"], "hooks were left on the model"


#: The longest floating-point reduction any row makes per image: a sum over the image's 144 pixels in each of at
#: most 64 passes (Sobol: 4 designs x (3^2 + 2) = 44, RISE and MuFidelity 8 masks, the discarding solvers 3
#: steps x 2 samples). Batched and one-by-one runs sum in different orders, so they may differ by
#: 8 * eps * REDUCTION * max(1, max|value|) (eps of the dtype compared in).
REDUCTION = X[0].numel() * 64


def _bound(dtype: torch.dtype, values: Tensor) -> float:
    finite = values[torch.isfinite(values)]
    scale = max(1.0, finite.abs().max().item()) if finite.numel() else 1.0
    return 8 * torch.finfo(dtype).eps * REDUCTION * scale


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_batched_equals_one_by_one_and_composition_does_not_matter(row):
    m = _net()
    full = row.values(_run(row, m))
    assert full.shape[0] == N
    again = row.values(_run(row, m))
    torch.testing.assert_close(full, again, rtol=0, atol=0, equal_nan=True)  # the same seed, the same numbers
    # the order-of-summation comparisons in float64, where the rounding bound is ~1e-11 (rows with a part
    # trained in float32 stay in float32, with float32's bound)
    if row.float64:
        m, x, maps = m.double(), X.double(), MAPS.double()
        full = row.values(_run(row, m, x, T, IDX, maps))
    else:
        x, maps = X, MAPS
    single = torch.cat([row.values(_run(row, m, x[i:i + 1], T[i:i + 1], [IDX[i]], maps[i:i + 1]))
                        for i in range(N)])
    tol = _bound(full.dtype, full)
    torch.testing.assert_close(single, full, rtol=0, atol=tol, equal_nan=True)
    perm = [2, 0, 3, 1]
    shuffled = row.values(_run(row, m, x[perm], T[perm], [IDX[p] for p in perm], maps[perm]))
    torch.testing.assert_close(shuffled, full[perm], rtol=0, atol=tol, equal_nan=True)


@pytest.mark.parametrize("row", [r for r in ROWS if r.columns], ids=[r.name for r in ROWS if r.columns])
def test_rows_have_the_documented_columns(row):
    rows = _run(row, _net()).to_rows()
    assert rows, "no rows"
    missing = row.columns - set(rows[0])
    assert not missing, f"rows lack {sorted(missing)}"
    assert all(set(r) == set(rows[0]) for r in rows), "rows differ in their columns"
    import pandas as pd

    frame = pd.DataFrame(rows)  # tidy: pandas reads it as it is
    assert len(frame) == len(rows)


F64 = [r for r in ROWS if r.float64]


@pytest.mark.parametrize("row", F64, ids=[r.name for r in F64])
def test_float32_and_float64_agree(row):
    m32 = _net()
    m64 = _net().double()
    a = row.values(_run(row, m32)).double()
    b = row.values(_run(row, m64, X.double(), T, IDX, MAPS.double())).double()
    torch.testing.assert_close(a, b, rtol=row.rtol, atol=row.atol, equal_nan=True)


# --------------------------------------------------------------------------- calls outside the table
# Helpers that are not methods of one batch still give the model back as passed (issue 16).

OTHER_CALLS: dict[str, Callable[[nn.Module], Any]] = {
    "predicted_target": lambda m: A.Saliency(m).attribute(X),
    "signal_classify": lambda m: S.classify(m, X),
    "signal_predict": lambda m: S.predict(m, X),
    "signal_finetune": lambda m: S.finetune_through_classifier(
        S.build_autoencoder(1, (4, 4)), m, X, T, schedule=S.Schedule(max_steps=2, batch_size=3, eval_every=1),
        progress=False),
}


@pytest.mark.parametrize("name", list(OTHER_CALLS))
def test_helpers_give_the_model_back_as_it_was_passed(name):
    m = _net()
    before = _state(m)
    OTHER_CALLS[name](m)
    after = _state(m)
    assert before["modes"] == after["modes"] and before["flags"] == after["flags"]
    assert all(torch.equal(v, after["tensors"][k]) for k, v in before["tensors"].items())
    assert before["hooks"] == after["hooks"]


@pytest.mark.parametrize("name", ["saliency", "smoothgrad", "deletion", "srop"])
def test_results_are_those_of_eval_mode(name):
    """A model passed in train mode gives the numbers of the same model in eval mode (issue 16: maps
    differed by up to 0.82 when BatchNorm used batch statistics)."""
    row = next(r for r in ROWS if r.name == name)
    a = row.values(_run(row, _net()))
    b = row.values(_run(row, _net().eval()))
    torch.testing.assert_close(a, b, equal_nan=True)
