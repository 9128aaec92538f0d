"""The cross-method panel, which no single paper has: one row per model with its SROP summary, its
discarding slope, its FORGrad cut-off and its position in the signal order, and the rank correlations
between these four numbers over the models that have both. Built from whatever tables exist; a column
whose analysis did not run is left empty."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .._stats import rowwise_correlation
from ..papers import PAPERS, Paper
from ._html import esc, fmt, read_summary_file, read_table_file


def _columns() -> dict[str, str]:
    """Panel column -> heading, in the papers' order (:data:`infolens.papers.PAPERS`)."""
    return {p.panel.key: p.panel.label for p in PAPERS.values()}


def _extractor(paper: Paper) -> Callable[[Path, Mapping[str, list[dict]]], dict[str, float]]:
    module, _, name = paper.panel.extract.partition(":")
    return getattr(importlib.import_module(module), name)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if v != v else float(v)


def _tables(sec: Path) -> dict[str, list[dict[str, Any]]]:
    d = sec / "tables"
    return {p.stem: read_table_file(p) for p in sorted(d.glob("*.csv"))} if d.is_dir() else {}


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def srop_summary(sec: Path, tables: Mapping[str, list[dict]]) -> dict[str, float]:
    """Mean channel SROP of the unmodified inputs per model, averaged over layers (final stage)."""
    for name in ("summary_input", "summary", "distributions", "layers", "summary_architecture"):
        rows = tables.get(name) or []
        if not rows or "model" not in rows[0]:
            continue
        col = next((c for c in ("srop_mean", "mean") if c in rows[0]), None)
        if col is None:
            continue
        keep = [r for r in rows if str(r.get("variant", "original")) in ("original", "trained", "nan")]
        if keep and "at" in keep[0]:
            first_at = keep[0]["at"]
            keep = [r for r in keep if r["at"] == first_at]
        out: dict[str, list[float]] = {}
        for r in keep:
            v = _num(r.get(col))
            if v is not None:
                out.setdefault(str(r["model"]), []).append(v)
        if out:
            return {m: _mean(v) for m, v in out.items()}
    return {}


def _slope(xs: list[float], ys: list[float]) -> float:
    mx, my = _mean(xs), _mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den > 0 else float("nan")


def discard_slope(sec: Path, tables: Mapping[str, list[dict]]) -> dict[str, float]:
    """Least-squares slope of the mean entropy over layer depth (final model, not the stage checkpoints)."""
    rows = tables.get("layers") or []
    if not rows or "model" not in rows[0] or "entropy_mean" not in rows[0]:
        return {}
    per: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        stage = r.get("stage")
        if isinstance(stage, str) and stage not in ("", "final", "last"):
            continue
        d, h = _num(r.get("depth")), _num(r.get("entropy_mean"))
        if d is not None and h is not None:
            per.setdefault(str(r["model"]), []).append((d, h))
    return {m: _slope([p[0] for p in v], [p[1] for p in v]) for m, v in per.items() if len(v) >= 2}


def forgrad_cutoff(sec: Path, tables: Mapping[str, list[dict]]) -> dict[str, float]:
    """The median chosen cut-off per model (over gradient methods)."""
    rows = tables.get("summary") or []
    per: dict[str, list[float]] = {}
    for r in rows:
        v = _num(r.get("cutoff"))
        if v is not None and "model" in r:
            per.setdefault(str(r["model"]), []).append(v)
    if not per:
        for r in tables.get("cutoff_curves") or []:
            if r.get("chosen") is True and _num(r.get("cutoff")) is not None:
                per.setdefault(str(r["model"]), []).append(float(r["cutoff"]))
    return {m: sorted(v)[len(v) // 2] for m, v in per.items()}


def signal_position(sec: Path, tables: Mapping[str, list[dict]]) -> dict[str, float]:
    """Position in the signal order (1 = the classifier that lets most signal through; ties share one)."""
    path = sec / "summary.json"
    ranking = None
    if path.is_file():
        summ = read_summary_file(path)
        ranking = next((v for k, v in summ.items() if isinstance(v, str) and k.startswith("ranking")), None)
    if not ranking:
        return {}
    out: dict[str, float] = {}
    for pos, group in enumerate(ranking.split(">"), start=1):
        for name in re.split(r"[~=,]", group):
            if name.strip():
                out[name.strip()] = float(pos)
    return out


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation of two lists (:func:`infolens._stats.rowwise_correlation`)."""
    return float(rowwise_correlation(torch.tensor([xs], dtype=torch.float64), torch.tensor([ys], dtype=torch.float64))[0])


def panel_rows(sections: list[tuple[Path, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per model with the four numbers (NaN where an analysis did not run)."""
    found: dict[str, dict[str, float]] = {}
    for sec, meta in sections:
        paper = PAPERS.get(str(meta.get("analysis")))
        if paper is None:
            continue
        tables = _tables(sec)  # an unreadable table is an error naming the file, never a silently empty column
        try:
            values = _extractor(paper)(sec, tables)
        except (ValueError, KeyError, TypeError, ZeroDivisionError):
            continue  # a table of another shape: that column stays empty (the section itself shows the table)
        for model, v in values.items():
            found.setdefault(model, {})[paper.panel.key] = v
    return [{"model": m, **{k: found[m].get(k, float("nan")) for k in _columns()}} for m in sorted(found)]


def correlations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spearman's rho between each pair of panel columns over the models that have both (at least 3)."""
    columns = _columns()
    keys = list(columns)
    out = []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            pairs = [(r[a], r[b]) for r in rows if r[a] == r[a] and r[b] == r[b]]
            if len(pairs) >= 3:
                out.append({"pair": f"{columns[a]} vs {columns[b]}", "spearman rho": spearman(
                    [p[0] for p in pairs], [p[1] for p in pairs]), "models": len(pairs)})
    return out


def panel_html(sections: list[tuple[Path, Mapping[str, Any]]]) -> str:
    columns = _columns()
    rows = panel_rows(sections)
    if not rows or sum(1 for r in rows for k in columns if r[k] == r[k]) == 0:
        return ""
    present = [k for k in columns if any(r[k] == r[k] for r in rows)]
    head = "".join(f"<th>{esc(columns[k])}</th>" for k in present)
    body = "".join("<tr><td>" + esc(r["model"]) + "</td>" + "".join(f"<td>{fmt(r[k])}</td>" for k in present)
                   + "</tr>" for r in rows)
    corr = correlations(rows)
    corr_html = ("<table><tr><th>pair</th><th>Spearman ρ</th><th>models</th></tr>" + "".join(
        f"<tr><td>{esc(c['pair'])}</td><td>{fmt(c['spearman rho'])}</td><td>{c['models']}</td></tr>" for c in corr)
        + "</table>") if corr else "<p class=meta>Rank correlations need at least 3 models with both numbers.</p>"
    return ("<h2 id='cross-method'>Across methods</h2><p class=reading>One row per model, one number per "
            "analysis; no single paper puts these side by side. The rank correlations say whether a model's "
            "place on one measure predicts its place on another.</p>"
            f"<table><tr><th>model</th>{head}</tr>{body}</table>{corr_html}")
