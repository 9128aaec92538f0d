"""The report page: sections found from ``meta.json`` files, the claims summary, the cross-method
panel and one section per analysis (see :mod:`infolens.report`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..papers import PAPERS
from ._html import (CSS, MAX_ROWS, VERDICT_CLASS, esc, figure_html, fmt, pivots, read_json_file, read_table_file,
                    table_html, verdict_html)
from .panel import panel_html

__all__ = ["build_report", "find_sections"]


def find_sections(result_dir: str | Path) -> list[Path]:
    """Folders below ``result_dir`` (itself included) that hold a ``meta.json``, in a stable order."""
    root = Path(result_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"result folder {root} does not exist; run an analysis with --out {root} first")
    found = sorted({p.parent for p in root.glob("**/meta.json")},
                   key=lambda p: (_order(p), str(p.relative_to(root))))
    if not found:
        raise ValueError(f"{root} holds no result (no meta.json below it); is it the --out folder of a run?")
    return found


def _order(p: Path) -> int:
    try:
        return int(json.loads((p / "meta.json").read_text()).get("order", 50))
    except (ValueError, OSError, TypeError, AttributeError):
        return 50


def _anchor(sec: Path, root: Path) -> str:
    return str(sec.relative_to(root)).replace("/", "-") if sec != root else "run"


def _figures(sec: Path, meta: Mapping[str, Any]) -> list[Path]:
    captions = meta.get("figures") or {}
    figs = sorted((sec / "figures").glob("*.png")) if (sec / "figures").is_dir() else []
    order = list(captions)
    key = meta.get("key_figure")
    claim_figs = [Path(v).stem for v in (meta.get("claim_figures") or {}).values()]
    figs.sort(key=lambda p: (p.stem != key, p.stem not in claim_figs,
                             order.index(p.stem) if p.stem in order else len(order), p.stem))
    return figs


def _caption(meta: Mapping[str, Any], stem: str) -> str:
    return str((meta.get("figures") or {}).get(stem, stem.replace("_", " ")))


# --------------------------------------------------------------------------- claims


def _claims(root: Path, sections: list[tuple[Path, dict]]) -> list[tuple[dict[str, Any], Path | None]]:
    """Claim rows with the section that holds their paper's figures: the top folder's ``tables/claims.csv``
    when there is one (``infolens reproduce``), else every section's own."""
    top = root / "tables" / "claims.csv"
    by_paper = {str(m.get("analysis")): s for s, m in sections}
    out: list[tuple[dict[str, Any], Path | None]] = []
    if top.is_file():
        for r in read_table_file(top):
            paper = str(r.get("paper"))
            own = root / paper  # infolens reproduce writes each paper's folder as OUT/<paper>
            out.append((r, own if any(s == own for s, _ in sections) else by_paper.get(paper)))
        return out
    for sec, _ in sections:
        path = sec / "tables" / "claims.csv"
        if path.is_file() and sec != root:
            out.extend((r, sec) for r in read_table_file(path))
    return out


def _claims_html(rows: list[tuple[dict[str, Any], Path | None]], root: Path,
                 metas: Mapping[Path, Mapping[str, Any]]) -> str:
    parts = []
    papers: dict[str, list[tuple[dict[str, Any], Path | None]]] = {}
    for r, sec in rows:
        papers.setdefault(str(r.get("paper", "")), []).append((r, sec))
    for paper, prs in papers.items():
        counts: dict[str, int] = {}
        for r, _ in prs:
            counts[str(r.get("verdict"))] = counts.get(str(r.get("verdict")), 0) + 1
        count_html = "".join(f"<span>{verdict_html(v)} × {n}</span>" for v, n in
                             sorted(counts.items(), key=lambda kv: list(VERDICT_CLASS).index(kv[0])
                                    if kv[0] in VERDICT_CLASS else 9))
        parts.append(f"<h3>{esc(PAPERS[paper].title if paper in PAPERS else paper)}</h3><p class=counts>{count_html}</p>")
        parts.append("<table class=claims><tr><th>claim</th><th class=t>model</th><th>verdict</th><th>value</th>"
                     "<th>95 % interval</th><th>threshold</th><th>n</th><th class=t>statistic</th>"
                     "<th class=t>note</th></tr>")
        for r, sec in prs:
            cid = str(r.get("claim", ""))
            meta = metas.get(sec, {}) if sec is not None else {}
            fig = (meta.get("claim_figures") or {}).get(cid)
            label = esc(cid)
            if fig and sec is not None:
                label = f"<a href='#fig-{esc(_anchor(sec, root))}-{esc(Path(fig).stem)}'>{esc(cid)}</a>"
            lo, hi = r.get("ci_low"), r.get("ci_high")
            ci = f"[{fmt(lo)}, {fmt(hi)}]" if isinstance(lo, float) and lo == lo else "–"
            cls = VERDICT_CLASS.get(str(r.get("verdict")).lower(), "")
            parts.append(f"<tr class='{cls}'><td>{label}</td><td class=t>{esc(r.get('model', ''))}</td>"
                         f"<td>{verdict_html(r.get('verdict', ''))}</td><td>{fmt(r.get('value'))}</td>"
                         f"<td>{ci}</td><td>{esc(r.get('threshold', ''))}</td><td>{fmt(r.get('n'))}</td>"
                         f"<td class=note>{esc(r.get('statistic', ''))}</td><td class=note>{fmt(r.get('note', ''))}"
                         f"</td></tr>")
        parts.append("</table>")
        devs = [d for s, m in metas.items() if str(m.get("analysis")) == paper for d in (m.get("deviations") or [])]
        if devs:
            parts.append(f"<details open><summary>Deviations from the paper ({len(devs)})</summary><ul class=dev>"
                         + "".join(f"<li>{esc(d)}</li>" for d in devs) + "</ul></details>")
    return "".join(parts)


def _headlines_html(sections: list[tuple[Path, dict]], root: Path) -> str:
    rows = []
    for sec, meta in sections:
        path = sec / "summary.json"
        if not path.is_file() or meta.get("analysis") == "demo":
            continue
        scalars, tables = pivots(read_json_file(path))
        bits = [f"{esc(k)}: <b>{fmt(v)}</b>" for k, v in scalars[:4]]
        if not bits and tables:
            name, trows = tables[0]
            cols = [c for c in trows[0] if c][:3]
            bits = [f"{esc(name)}: " + "; ".join(
                f"{esc(r[''])} " + ", ".join(f"{esc(c)} {fmt(r.get(c))}" for c in cols) for r in trows[:4])]
        if bits:
            rows.append(f"<tr><td><a href='#{esc(_anchor(sec, root))}'>{esc(meta.get('title') or sec.name)}</a>"
                        f"</td><td class=t>{' · '.join(bits)}</td></tr>")
    return ("<table><tr><th>analysis</th><th class=t>headline numbers</th></tr>" + "".join(rows) + "</table>"
            if rows else "")


# --------------------------------------------------------------------------- sections


def _reading(meta: Mapping[str, Any], sec: Path, claims: list[dict[str, Any]], figs: list[Path]) -> str:
    """Two sentences: what was found, and what the key figure shows (``meta["reading"]`` wins)."""
    if meta.get("reading"):
        return str(meta["reading"])
    if claims:
        counts: dict[str, int] = {}
        for r in claims:
            counts[str(r.get("verdict"))] = counts.get(str(r.get("verdict")), 0) + 1
        first = (f"Of its {len(claims)} claim rows, " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".")
    else:
        summ = sec / "summary.json"
        n_tables = len(list((sec / "tables").glob("*.csv"))) if (sec / "tables").is_dir() else 0
        first = (f"{meta.get('title') or sec.name}: its headline numbers are below"
                 f"{' with ' + str(n_tables) + ' tables' if n_tables else ''}." if summ.is_file() or n_tables
                 else f"{meta.get('title') or sec.name}.")
    if figs:
        cap = _caption(meta, figs[0].stem).split(". ")[0].rstrip(".")
        if cap[:1].isupper() and not cap[1:2].isupper():  # "Per-layer ..." -> "per-layer ...", "SROP" stays
            cap = cap[:1].lower() + cap[1:]
        second = f"The key figure shows {cap}."
    else:
        second = "This analysis wrote no figure."
    return f"{first} {second}"


def _section_html(sec: Path, root: Path, meta: Mapping[str, Any], claims: list[dict[str, Any]]) -> tuple[str, str, str]:
    title = str(meta.get("title") or meta.get("analysis") or sec.name)
    anchor = _anchor(sec, root)
    figs = _figures(sec, meta)
    parts = [f"<section><h2 id='{esc(anchor)}'>{esc(title)}</h2>",
             f"<p class=reading>{esc(_reading(meta, sec, claims, figs))}</p>"]
    svg_of = {Path(v).stem for v in (meta.get("claim_figures") or {}).values()}
    for i, fig in enumerate(figs):
        svg = fig.with_suffix(".svg")
        href = str(svg.relative_to(root)) if fig.stem in svg_of and svg.is_file() else None
        parts.append(figure_html(fig, _caption(meta, fig.stem), f"fig-{anchor}-{fig.stem}", key=i == 0,
                                 svg_href=href))
    if meta.get("description"):
        parts.append(f"<p class=meta>{esc(meta['description'])}</p>")
    summary_path = sec / "summary.json"
    if summary_path.is_file():
        scalars, tables = pivots(read_json_file(summary_path))
        inner = ""
        if scalars:
            inner += table_html([{"": k, "value": v} for k, v in scalars])
        for name, rows in tables:
            inner += f"<h3>{esc(name)}</h3>" + table_html(rows)
        if inner:
            parts.append(f"<details><summary>Numbers ({len(scalars) + len(tables)} entries)</summary>{inner}"
                         f"</details>")
    tables_dir = sec / "tables"
    names = meta.get("report_tables")
    if names is None and tables_dir.is_dir():
        names = [p.stem for p in sorted(tables_dir.glob("*.csv"))]
    inner = ""
    missing = []
    for name in names or []:
        path = tables_dir / f"{name}.csv"
        if not path.is_file():
            missing.append(str(name))
            continue
        rows = read_table_file(path)
        more = f" (first {MAX_ROWS} of {len(rows)} rows)" if len(rows) > MAX_ROWS else f" ({len(rows)} rows)"
        inner += (f"<h3>{esc(name)}<span class=meta>{more} · <code>tables/{esc(name)}.csv</code></span></h3>"
                  + table_html(rows))
    if inner:
        parts.append(f"<details><summary>Tables ({len(names or []) - len(missing)})</summary>{inner}</details>")
    if missing:
        parts.append(f"<p class='meta warn'>Missing table(s) {esc(', '.join(missing))}: listed in meta.json but "
                     f"not in tables/ (the run did not finish?); run the same command again to complete it.</p>")
    env = meta.get("environment", {}) or {}
    parts.append(f"<p class=meta>folder <code>{esc(sec.relative_to(root) if sec != root else '.')}</code> · analysis "
                 f"{esc(meta.get('analysis'))} · torch {esc(env.get('torch'))} · device {esc(env.get('device', 'cpu'))}"
                 f" · started {esc(meta.get('started'))} · finished {esc(meta.get('finished', 'not yet'))}</p>")
    parts.append("</section>")
    return anchor, title, "\n".join(parts)


def build_report(result_dir: str | Path, *, out: str | Path | None = None, title: str = "infolens report") -> Path:
    """Write ``report.html`` (default inside ``result_dir``) and return its path. Under torchrun only one
    process should call it (the runners call it on rank 0)."""
    root = Path(result_dir)
    target = Path(out) if out else root / "report.html"
    secs = find_sections(root)
    metas: dict[Path, dict[str, Any]] = {}
    for s in secs:
        m = read_json_file(s / "meta.json")
        if not isinstance(m, dict):
            raise ValueError(f"{s / 'meta.json'} holds a {type(m).__name__}, not an object; rerun the analysis")
        metas[s] = m
    pairs = [(s, metas[s]) for s in secs]
    claims = _claims(root, pairs)
    claim_by_sec: dict[Path | None, list[dict[str, Any]]] = {}
    for r, s in claims:
        claim_by_sec.setdefault(s, []).append(r)
    shown = [(s, m) for s, m in pairs  # the top folder of a demo / reproduce only gathers the others
             if not (s == root and len(pairs) > 1 and m.get("analysis") in ("demo", "reproduce"))]
    sections = [_section_html(s, root, m, claim_by_sec.get(s, [])) for s, m in shown]
    if claims:
        summary = _claims_html(claims, root, metas)
        lead = "What each paper's claims came to on this run (colour per verdict; a claim links to its figure)."
    else:
        summary = _headlines_html(pairs, root)
        lead = "No claims were decided in this run (run <code>infolens reproduce</code> for verdicts); the " \
               "headline numbers of each analysis:"
    nav = " ".join(f"<a href='#{esc(a)}'>{esc(t)}</a>" for a, t, _ in sections)
    panel = panel_html(pairs)
    if panel:
        nav = "<a href='#cross-method'>Across methods</a> " + nav
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>"
            f"<p class=meta>{esc(root.resolve())}</p>"
            f"<div class=summary id=summary><h2>Summary</h2><p class=meta>{lead}</p>{summary}</div>"
            f"<nav>{nav}</nav>{panel}"
            + "\n".join(body for _, _, body in sections) + "</body></html>")
    return atomic_write_text(target, page)
