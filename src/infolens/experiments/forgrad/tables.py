"""FORGrad's result tables: the chosen cut-offs on disk (``save_cutoffs`` / ``load_cutoffs``), the per-method
summary and ranking of the faithfulness scores (``summarize``), the mean spectra, and the warnings for
degenerate scores. Pure functions of rows; the runner (:mod:`.runner`) writes them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...attribution import METHODS, REFERENCES, CutoffSelection, method_kind
from ..._io import atomic_write_text

DEFAULT_METRICS = ("deletion", "insertion", "mufidelity")


def save_cutoffs(path: str | os.PathLike, model: str, selections: Mapping[str, CutoffSelection | Mapping]) -> Path:
    """Store the chosen cut-offs of ``model`` (method -> selection) in a JSON file, merged with what the
    file already holds for other models, written atomically."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault(model, {})
    for method, sel in selections.items():
        data[model][method] = sel.to_dict() if isinstance(sel, CutoffSelection) else dict(sel)
    atomic_write_text(path, json.dumps(data, indent=2))
    return path


def load_cutoffs(path: str | os.PathLike, model: str) -> dict[str, dict[str, Any]]:
    """Cut-offs saved by :func:`save_cutoffs` for ``model`` (method -> dict with ``cutoff``, ``unit``...);
    an empty dict when the file or the model is absent."""
    path = Path(path)
    if not path.is_file():
        return {}
    return json.loads(path.read_text()).get(model, {})



def summarize(scores: list[dict[str, Any]]) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Per (model, method): mean of each metric raw and filtered; the ranking table; headline numbers."""
    from collections import defaultdict

    acc: dict[tuple, list[float]] = defaultdict(list)
    meta: dict[tuple, dict] = {}
    for r in scores:
        acc[(r["model"], r["method"], r["forgrad"], r["metric"])].append(float(r["score"]))
        meta[(r["model"], r["method"])] = {"kind": r["kind"], "cutoff": r["cutoff"]} if r["forgrad"] == "forgrad" \
            else meta.get((r["model"], r["method"]), {"kind": r["kind"], "cutoff": float("nan")})
    means = {k: sum(v) / len(v) for k, v in acc.items()}
    models = sorted({k[0] for k in means}, key=lambda s: (not s.startswith("mnist"), s))
    metrics = [m for m in DEFAULT_METRICS if any(k[3] == m for k in means)] + \
        sorted({k[3] for k in means} - set(DEFAULT_METRICS))
    lower_better = {"deletion"}
    summary_rows, ranking, headline = [], [], {}
    for model in models:
        meths = [m for m in list(METHODS) + list(REFERENCES) if any(k[0] == model and k[1] == m for k in means)]
        ranks = {}
        for metric in metrics:
            for var in ("off", "forgrad"):
                # after filtering, methods that are never filtered (gray-box, prediction-based, references)
                # are ranked with their own maps (arXiv 2307.09591 filters gradient-based methods only)
                vals = [(m, means[(model, m, var, metric)] if (model, m, var, metric) in means else
                         means[(model, m, "off", metric)]) for m in meths
                        if (model, m, var, metric) in means or (model, m, "off", metric) in means]
                vals.sort(key=lambda mv: mv[1], reverse=metric not in lower_better)
                for rank, (m, v) in enumerate(vals, 1):
                    ranks[(m, var, metric)] = rank
                    ranking.append({"model": model, "metric": metric, "forgrad": var, "rank": rank, "method": m,
                                    "kind": meta[(model, m)]["kind"], "mean": v})
        improved = {"deletion": [], "insertion": []}
        for m in meths:
            row = {"model": model, "method": m, "kind": meta[(model, m)]["kind"], "cutoff": meta[(model, m)]["cutoff"]}
            for metric in metrics:
                off, on = means.get((model, m, "off", metric)), means.get((model, m, "forgrad", metric))
                row[f"{metric}"] = off
                row[f"{metric}_forgrad"] = on
                row[f"{metric}_rank"] = ranks.get((m, "off", metric))
                row[f"{metric}_rank_forgrad"] = ranks.get((m, "forgrad", metric))
                if metric in improved and on is not None and off is not None and meta[(model, m)]["kind"] == "gradient":
                    improved[metric].append((on < off) if metric == "deletion" else (on > off))
            summary_rows.append(row)
        headline[model] = {f"gradient methods improved on {k}": f"{sum(v)}/{len(v)}" for k, v in improved.items() if v}
    return summary_rows, ranking, headline


def mean_spectra(spectra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean normalised radial power per (model, kind, method, frequency bin), over images."""
    from collections import defaultdict

    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in spectra:
        acc[(r["model"], r["kind"], r["method"], int(r["bin"]), float(r["frequency"]))].append(float(r["power"]))
    return [{"model": k[0], "kind": k[1], "method": k[2], "bin": k[3], "frequency": k[4], "power": sum(v) / len(v)}
            for k, v in sorted(acc.items())]



def _family(name: str) -> str:
    return "reference" if name in REFERENCES else method_kind(name)


def degenerate_warnings(summary_rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One warning per model where the input-blind centred blob scores Insertion - Deletion at least as
    well as half of the methods (unfiltered): the metric then rewards where the object usually is, not
    what the model uses (as on MNIST with baseline 0, where deleting the black background changes
    nothing)."""
    out = []
    for model in sorted({r["model"] for r in summary_rows}):
        rows = {r["method"]: r for r in summary_rows if r["model"] == model}
        def score(r: Mapping[str, Any]) -> float:
            try:
                return float(r["insertion"]) - float(r["deletion"])
            except (KeyError, TypeError, ValueError):
                return float("nan")

        if "blob" not in rows or score(rows["blob"]) != score(rows["blob"]):
            continue
        blob = score(rows["blob"])
        meths = [m for m, r in rows.items() if r["kind"] != "reference" and score(r) == score(r)]
        beaten = [m for m in meths if score(rows[m]) <= blob]
        if meths and 2 * len(beaten) >= len(meths):
            out.append(f"warning: on {model} the input-blind centred blob scores Insertion - Deletion {blob:.3g}, as "
                       f"well as {len(beaten)} of {len(meths)} methods ({', '.join(beaten)}): the metric is degenerate "
                       f"on these data (e.g. MNIST with baseline 0); rankings here say little about the methods")
    return out
