"""The contract every method keeps, driven by one table of data, as Captum's
``testing/attr/helpers/test_config.py`` holds its cases: each row is a method (a factory of the model),
its arguments, how it is called and the columns its ``.to_rows()`` declares. The table covers every path
the runners take: the classes, :func:`~infolens.attribution.attribute_many`, the metrics' ``score_many``,
SROP's ``measure_at`` and :func:`~infolens.probe.capture`. A new method joins by adding one row.

For every row:
* the model comes back as it was passed: every submodule's mode, every ``requires_grad`` flag, every buffer
  and weight, no hooks left, no weight gradients (the model is in train mode with a block the user froze in
  eval and one frozen parameter, and has BatchNorm and dropout);
* the numbers are those of the same model in eval mode;
* batched equals one-by-one (each image with its global index), results do not depend on the batch's
  composition (a permuted batch gives the permuted results) and repeat under the same seed;
* ``.to_rows()`` has ``index`` (the global indices given) and the declared columns, one group per image;
* bad input (a 3-D tensor, a NaN) raises a ValueError naming the argument;
* CPU float32 and float64 agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from infolens import attribution as A
from infolens import signal as S
from infolens.attribution import metrics as F
from infolens.discard import InformationDiscarding, ReconstructionUncertainty, train_decoder
from infolens.probe import capture
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
MAPS2 = torch.rand(N, 12, 12, generator=torch.Generator().manual_seed(3))

ATTRIBUTION_COLUMNS = frozenset({"index", "target", "method", "map_mean", "map_abs_mean", "map_max",
                                 "high_frequency_share"})
METRIC_COLUMNS = frozenset({"index", "metric", "score"})
SROP_COLUMNS = frozenset({"index", "layer", "channel", "srop", "at"})
DISCARD_COLUMNS = frozenset({"index", "layer", "entropy", "feature_error", "steps_run"})

# --------------------------------------------------------------------------- how each kind is called
# ``call(method, inputs, target, indices, maps)`` -> result; ``values(result)`` -> a per-image tensor (N, ...);
# ``rows(result)`` -> the rows (None: the path returns no result object).


def _attribute(m: Any, x: Tensor, t: Tensor, i: list[int], maps: Tensor) -> Any:
    return m.attribute(x, target=t, indices=i)


def _metric(m: Any, x: Tensor, t: Tensor, i: list[int], maps: Tensor) -> Any:
    return m(x, t, maps, indices=i)


def _score_many(m: Any, x: Tensor, t: Tensor, i: list[int], maps: Tensor) -> Any:
    return m.score_many(x, t, [maps, MAPS2[_positions(i)]], indices=i)


def _measure(m: Any, x: Tensor, t: Tensor, i: list[int], maps: Tensor) -> Any:
    return m.measure(x, t, indices=i)


def _positions(indices: list[int]) -> list[int]:
    return [IDX.index(k) for k in indices]


@dataclass(frozen=True)
class Kind:
    call: Callable[..., Any]
    values: Callable[[Any], Tensor]
    rows: Callable[[Any], list[dict[str, Any]] | None] = lambda r: r.to_rows()


ATTRIBUTION = Kind(_attribute, lambda r: r.maps)
METRIC = Kind(_metric, lambda r: r.scores)
SCORE_MANY = Kind(_score_many, lambda rs: torch.stack([r.scores for r in rs], 1),
                  lambda rs: [row for r in rs for row in r.to_rows()])
SROP = Kind(_measure, lambda r: torch.cat([r.values[k] for k in r.layers], 1))
SROP_AT = Kind(lambda m, x, t, i, maps: m.measure_at(x, t, indices=i, settings=[{}, {"q": 1.0}]),
               lambda r: torch.cat([v.values[k] for key, v in sorted(r.items()) for k in v.layers], 1),
               lambda r: [row for key, v in sorted(r.items()) for row in v.to_rows()])
DISCARD = Kind(_measure, lambda r: r.layer_entropy)
RECONSTRUCTION = Kind(_measure, lambda r: torch.stack([r.uncertainty, r.clean], -1).flatten(1))
SIGNAL = Kind(_measure, lambda r: torch.cat([r.loss.permute(2, 0, 1).flatten(1), r.nmi.T], 1))
MANY = Kind(lambda built, x, t, i, maps: A.attribute_many(built[0], built[1], x, t, indices=i),
            lambda r: torch.cat([v.flatten(1) for v in r.values()], 1), lambda r: None)
CAPTURE = Kind(lambda m, x, t, i, maps: capture(m, x, ["2", "3.0"], grads=True, target=t),
               lambda r: torch.cat([r.outputs["2"].flatten(1), *(g.flatten(1) for g in r.gradients.values())], 1),
               lambda r: None)


@dataclass(frozen=True)
class Row:
    """One path: ``method(model)`` builds it (with its arguments), ``kind`` says how it is called and read."""

    name: str
    method: Callable[[nn.Module], Any]
    kind: Kind
    columns: frozenset[str] | None = None  # declared columns of .to_rows() (None: no result object)
    rtol: float = 1e-4  # float32 against float64
    atol: float = 1e-5
    float64: bool = True  # False where a part trained in float32 (a decoder) goes with the model
    arg: str = "inputs"  # the images' argument name in error messages
    kwargs: dict[str, Any] = field(default_factory=dict)


def _many(m: nn.Module) -> tuple[nn.Module, dict[str, A.Attribution]]:
    built = {"saliency": A.Saliency(m), "gradient_x_input": A.GradientXInput(m),
             "smoothgrad": A.SmoothGrad(m, n_samples=3), "vargrad": A.VarGrad(m, n_samples=3),
             "occlusion": A.Occlusion(m, window=4)}
    return m, built


CONFIG: list[Row] = [
    # attribution methods (gradient-based, gray-box, prediction-based), FORGrad and the references
    Row("saliency", A.Saliency, ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("gradient_x_input", A.GradientXInput, ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("integrated_gradients", lambda m: A.IntegratedGradients(m, n_steps=4), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("smoothgrad", lambda m: A.SmoothGrad(m, n_samples=3), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("squaregrad", lambda m: A.SquareGrad(m, n_samples=3), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("vargrad", lambda m: A.VarGrad(m, n_samples=3), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("guided_backprop", A.GuidedBackprop, ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("gradcam", lambda m: A.GradCAM(m, layer="3.0"), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("gradcam_pp", lambda m: A.GradCAMPlusPlus(m, layer="3.0"), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("occlusion", lambda m: A.Occlusion(m, window=4), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("rise", lambda m: A.RISE(m, n_masks=8), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    # Jansen's ratio of squared output differences: float32 softmax outputs carry ~1e-3 relative error into it
    Row("sobol", lambda m: A.Sobol(m, grid=3, n_design=4), ATTRIBUTION, ATTRIBUTION_COLUMNS, rtol=5e-3, atol=1e-4),
    Row("hsic", lambda m: A.HSIC(m, grid=3, n_design=8), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("forgrad", lambda m: A.FORGrad(A.Saliency(m), 3.0), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("reference_noise", lambda m: A.UniformNoise(m, seed=1), ATTRIBUTION, ATTRIBUTION_COLUMNS),
    Row("reference_magnitude", A.InputMagnitude, ATTRIBUTION, ATTRIBUTION_COLUMNS),
    # the runners' shared pass over several methods
    Row("attribute_many", _many, MANY),
    # faithfulness metrics, one map and several maps of the same images (the runners' path)
    Row("deletion", lambda m: F.Deletion(m, n_steps=3), METRIC, METRIC_COLUMNS),
    Row("insertion", lambda m: F.Insertion(m, n_steps=3), METRIC, METRIC_COLUMNS),
    Row("mufidelity", lambda m: F.MuFidelity(m, n_masks=8, grid=3), METRIC, METRIC_COLUMNS),
    Row("deletion_score_many", lambda m: F.Deletion(m, n_steps=3), SCORE_MANY, METRIC_COLUMNS),
    Row("insertion_score_many", lambda m: F.Insertion(m, n_steps=3), SCORE_MANY, METRIC_COLUMNS),
    Row("mufidelity_score_many", lambda m: F.MuFidelity(m, n_masks=8, grid=3), SCORE_MANY, METRIC_COLUMNS),
    # SROP: one point (the runner) and every point and setting from one pass (the verdicts)
    Row("srop", lambda m: SpectralRolloff(m, "all conv"), SROP, SROP_COLUMNS),
    Row("srop_measure_at", lambda m: SpectralRolloff(m, "all conv"), SROP_AT, SROP_COLUMNS),
    # information discarding (both solvers) and the reconstruction uncertainty
    Row("discard_release", lambda m: InformationDiscarding(m, ["2", "3.2"], grid=3, n_steps=3, n_samples=2),
        DISCARD, DISCARD_COLUMNS, rtol=1e-3, atol=1e-4),
    Row("discard_constrained", lambda m: InformationDiscarding(m, ["2", "3.2"], grid=3, n_steps=3, n_samples=2,
                                                               solver="constrained", options={"calib_samples": 4}),
        DISCARD, DISCARD_COLUMNS, rtol=1e-3, atol=1e-3),
    Row("reconstruction", lambda m: ReconstructionUncertainty(m, {"2": _decoder(m)}, grid=3, n_steps=2, n_samples=2),
        RECONSTRUCTION, frozenset({"index", "layer", "uncertainty", "clean"}), float64=False),
    # what a classifier likes to see: classifiers scored on an autoencoder's reconstructions, NMI kept
    Row("input_signal", lambda m: S.InputSignal({"net": m}, {"ae": _autoencoder(m)}, bins=16), SIGNAL,
        frozenset(S.ROW_COLUMNS), rtol=1e-3, atol=1e-4),
    # feature maps and their gradients (the runners' probe)
    Row("capture_grads", lambda m: m, CAPTURE, arg="images"),
]
IDS = [r.name for r in CONFIG]


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
    return row.kind.call(row.method(m), x, t, list(idx), maps)


#: The longest floating-point reduction any row makes per image: a sum over the image's pixels in each of at
#: most 64 passes (Sobol: 4 designs x (3^2 + 2) = 44, RISE and MuFidelity 8 masks, the discarding solvers 3
#: steps x 2 samples). Batched, one-by-one and shuffled runs sum in different orders, so they may differ by
#: 8 * eps * REDUCTION * max(1, max|value|) (eps of the dtype compared in).
REDUCTION = X[0].numel() * 64


def _bound(dtype: torch.dtype, values: Tensor) -> float:
    finite = values[torch.isfinite(values)]
    scale = max(1.0, finite.abs().max().item()) if finite.numel() else 1.0
    return 8 * torch.finfo(dtype).eps * REDUCTION * scale


def _values(row: Row, m: nn.Module, **kw: Any) -> Tensor:
    return row.kind.values(_run(row, m, **kw))


@pytest.mark.parametrize("row", CONFIG, ids=IDS)
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


@pytest.mark.parametrize("row", CONFIG, ids=IDS)
def test_results_are_those_of_eval_mode(row):
    """A model passed in train mode (BatchNorm on batch statistics, dropout on) gives the numbers of the
    same model in eval mode."""
    torch.testing.assert_close(_values(row, _net()), _values(row, _net().eval()), equal_nan=True)


@pytest.mark.parametrize("row", CONFIG, ids=IDS)
def test_batched_equals_one_by_one_and_composition_does_not_matter(row):
    m = _net()
    full = _values(row, m)
    assert full.shape[0] == N
    again = _values(row, m)
    torch.testing.assert_close(full, again, rtol=0, atol=0, equal_nan=True)  # the same seed, the same numbers
    single = torch.cat([_values(row, m, x=X[i:i + 1], t=T[i:i + 1], idx=[IDX[i]], maps=MAPS[i:i + 1])
                        for i in range(N)])
    tol = _bound(torch.float32, full)  # every row computes in the models' float32, whatever dtype it returns
    torch.testing.assert_close(single, full, rtol=0, atol=tol, equal_nan=True)
    perm = [2, 0, 3, 1]
    shuffled = _values(row, m, x=X[perm], t=T[perm], idx=[IDX[p] for p in perm], maps=MAPS[perm])
    torch.testing.assert_close(shuffled, full[perm], rtol=0, atol=tol, equal_nan=True)


ROWS_WITH_TABLES = [r for r in CONFIG if r.columns]


@pytest.mark.parametrize("row", ROWS_WITH_TABLES, ids=[r.name for r in ROWS_WITH_TABLES])
def test_rows_are_keyed_on_index_and_have_the_declared_columns(row):
    rows = row.kind.rows(_run(row, _net()))
    assert rows, "no rows"
    assert "index" in row.columns
    missing = row.columns - set(rows[0])
    assert not missing, f"rows lack {sorted(missing)}"
    assert all(set(r) == set(rows[0]) for r in rows), "rows differ in their columns"
    assert {r["index"] for r in rows} == set(IDX), "index must be the global indices passed"
    import pandas as pd

    frame = pd.DataFrame(rows)  # tidy: pandas reads it as it is
    assert len(frame) == len(rows)


@pytest.mark.parametrize("row", CONFIG, ids=IDS)
def test_bad_input_names_the_argument(row):
    m = _net()
    with pytest.raises(ValueError, match=rf"^{row.arg} has shape \(4, 12, 12\).*unsqueeze\(1\)"):
        _run(row, m, x=X[:, 0])  # a batch of (H, W) images: the channel axis is missing
    bad = X.clone()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=rf"^{row.arg} contains 1 non-finite"):
        _run(row, m, x=bad)


F64 = [r for r in CONFIG if r.float64]


@pytest.mark.parametrize("row", F64, ids=[r.name for r in F64])
def test_float32_and_float64_agree(row):
    a = _values(row, _net()).double()
    b = _values(row, _net().double(), x=X.double(), maps=MAPS.double()).double()
    torch.testing.assert_close(a, b, rtol=row.rtol, atol=row.atol, equal_nan=True)


# --------------------------------------------------------------------------- calls outside the table
# Helpers that are not methods of one batch still give the model back as passed.

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


def test_predicted_target_is_the_eval_prediction():
    m = _net()
    res = A.Saliency(m).attribute(X)
    assert torch.equal(res.target, _net().eval()(X).argmax(1))
