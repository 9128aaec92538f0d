"""Loading a saved state dict into a model, strictly and without unpickling arbitrary objects.

The ground floor of :mod:`infolens.models`: both the model loader (:mod:`.load`) and the training of the
built-in networks (:mod:`.training`) read checkpoints through :func:`load_checkpoint`.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["load_checkpoint"]


def _state_dict_from(obj: Any, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if isinstance(obj, nn.Module):  # pragma: no cover - weights_only refuses modules
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict; "
            f"save it with torch.save(model.state_dict(), path)"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(
            f"checkpoint {str(path)!r} holds a dict whose entries {bad[:5]} are not tensors, not a "
            f"state dict (keys: {list(obj)[:8]}); save it with torch.save(model.state_dict(), path)"
        )
    return obj


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> None:
    """Load the state dict saved at ``path`` into ``model`` (in place, strictly).

    The file is read with ``torch.load(map_location="cpu", weights_only=True)``: it may hold a
    state dict, or a dict with a ``"state_dict"``/``"model"`` entry holding one. A ``module.``
    prefix (DataParallel / DDP) is stripped when the model's keys lack it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist; pass the path of a saved state dict")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save: a zip archive, or a legacy pickle
        raise ValueError(f"checkpoint {str(path)!r} is not a file written by torch.save (it starts with {head!r}); "
                         f"pass a state-dict file saved with torch.save(model.state_dict(), path)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message suggests weights_only=False, which infolens never does: keep only its reason
        text = str(exc)
        reason = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        first = reason.strip().splitlines()[0].strip() if reason.strip() else type(exc).__name__
        first = first.split(" Please")[0].split(" by default")[0].rstrip(". ")
        raise ValueError(
            f"checkpoint {str(path)!r} holds arbitrary Python objects that infolens will not unpickle "
            f"({first[:160]}); re-save only the weights with torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:  # a text file, a truncated or foreign file: torch raises many kinds
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise ValueError(
            f"checkpoint {str(path)!r} is not a file written by torch.save ({type(exc).__name__}"
            f"{': ' + detail if detail else ''}); pass a state-dict file saved with "
            f"torch.save(model.state_dict(), path)"
        ) from None
    state = dict(_state_dict_from(obj, path))
    expected = model.state_dict()
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in expected):
        state = {k[len("module."):]: v for k, v in state.items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:5]})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (first: {mismatched[:5]})")
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit {type(model).__name__}: {'; '.join(parts)}; "
            f"pass a checkpoint saved from the same architecture"
        )
    model.load_state_dict(state, strict=True)
