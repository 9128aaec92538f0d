"""experiments/common.py: every option of every runner is declared with a kind, and each kind's check refuses
what it should, naming the option, before any work."""

from __future__ import annotations

import argparse
import importlib

import pytest

from infolens.experiments.common import (KINDS, common_arguments, runner_options, validate_common,
                                         validate_options)
from infolens.papers import PAPERS

#: Kinds whose value argparse converts with ``type=int`` / ``type=float``.
INT_KINDS = {"positive", "count", "int", "seed"}
FLOAT_KINDS = {"positive_float", "fraction"}
#: A value each numeric kind must refuse, and one it must accept.
REFUSED = {"positive": 0, "count": -1, "int": 1.5, "positive_float": 0.0, "fraction": 1.5}
ACCEPTED = {"positive": 1, "count": 0, "int": -3, "positive_float": 1e-3, "fraction": 1.0}


def _parser(paper: str) -> argparse.ArgumentParser:
    mod = importlib.import_module(PAPERS[paper].runner)
    p = argparse.ArgumentParser(prog=paper)
    common_arguments(p, model=getattr(mod, "TAKES_MODEL", True))
    mod.add_arguments(p)
    return p


def _actions(paper: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in _parser(paper)._actions if a.dest != "help"}


@pytest.mark.parametrize("paper", list(PAPERS))
def test_every_option_of_every_runner_is_declared_with_a_matching_kind(paper):
    actions, options = _actions(paper), runner_options(paper)
    assert set(actions) == set(options), (f"{paper}: options without a declared kind "
                                          f"{sorted(set(actions) - set(options))}; declared but not in the parser "
                                          f"{sorted(set(options) - set(actions))}")
    assert set(options.values()) <= set(KINDS)
    for dest, a in actions.items():
        kind = options[dest]
        if isinstance(a, argparse._StoreTrueAction):
            assert kind == "flag", (paper, dest)
        elif a.choices is not None:
            assert kind == "choice", (paper, dest)
        elif a.type is int:
            assert kind in INT_KINDS, (paper, dest, kind)
        elif a.type is float:
            assert kind in FLOAT_KINDS, (paper, dest, kind)
        else:
            assert kind not in INT_KINDS | FLOAT_KINDS | {"flag", "choice"}, (paper, dest, kind)


@pytest.mark.parametrize("paper", list(PAPERS))
def test_each_numeric_and_list_option_refuses_a_bad_value_by_name(paper):
    options = runner_options(paper)
    defaults = vars(_parser(paper).parse_args(["m"] if "model" in options else []))
    validate_common(argparse.Namespace(**defaults), options)  # the defaults pass
    checked = 0
    for dest, kind in options.items():
        bad = REFUSED.get(kind, "" if kind == "list" else None)
        if bad is None:
            continue
        flag = f"--{dest.replace('_', '-')}"
        with pytest.raises(ValueError, match=flag):
            validate_common(argparse.Namespace(**{**defaults, dest: bad}), options)
        if kind in ACCEPTED:
            validate_common(argparse.Namespace(**{**defaults, dest: ACCEPTED[kind]}), options)
        checked += 1
    assert checked >= 3


def test_file_folder_and_data_kinds(tmp_path):
    f = tmp_path / "f.pt"
    f.write_bytes(b"x")
    opts = {"checkpoint": "file", "out": "folder_out", "data": "data"}
    validate_options(argparse.Namespace(checkpoint=str(f), out=str(tmp_path / "new"), data="MNIST"), opts)
    validate_options(argparse.Namespace(checkpoint=None, out=None, data=str(tmp_path)), opts)
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        validate_options(argparse.Namespace(checkpoint=str(tmp_path / "no.pt")), opts)
    with pytest.raises(ValueError, match="--checkpoint .* is a folder"):
        validate_options(argparse.Namespace(checkpoint=str(tmp_path)), opts)
    with pytest.raises(ValueError, match="--out .* is an existing file"):
        validate_options(argparse.Namespace(out=str(f)), opts)
    with pytest.raises(FileNotFoundError, match="--data"):
        validate_options(argparse.Namespace(data=str(tmp_path / "nowhere")), opts)


def test_a_bool_is_not_an_integer_and_nan_is_not_a_number():
    with pytest.raises(ValueError, match="--limit"):
        validate_options(argparse.Namespace(limit=True), {"limit": "positive"})
    with pytest.raises(ValueError, match="--lr"):
        validate_options(argparse.Namespace(lr=float("nan")), {"lr": "positive_float"})
    with pytest.raises(ValueError, match="unknown option kind"):
        validate_options(argparse.Namespace(x=1), {"x": "odd"})
