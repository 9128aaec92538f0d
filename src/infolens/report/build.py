"""The report page: sections found from ``meta.json`` files, the claims summary, the cross-method
panel and one section per analysis (see :mod:`infolens.report`)."""


from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..papers import PAPERS
from ._html import (CSS, MAX_ROWS, VERDICT_CLASS, esc, figure_html, fmt, pivots, prose, read_json_file,
                    read_summary_file, read_table_file, table_html, verdict_html)
from .panel import panel_html

__all__ = ["build_report", "find_sections", "unit_range", "smoke_line"]



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


def unit_range(rows: list[dict[str, Any]]) -> tuple[int, int] | None:
    """Smallest and largest ``n`` (source units) over the per-model claim rows (aggregates left out)."""
    from ..claims import is_aggregate

    ns = []
    for r in rows:
        try:
            ns.append(int(float(r.get("n"))))
        except (TypeError, ValueError):
            continue
        if is_aggregate(r):
            ns.pop()
    return (min(ns), max(ns)) if ns else None


def smoke_line(rows: list[dict[str, Any]]) -> str:
    """``"smoke test (--quick): n = 3–48; verdicts are not evidence"``."""
    rng = unit_range(rows)
    n = "?" if rng is None else (str(rng[0]) if rng[0] == rng[1] else f"{rng[0]}–{rng[1]}")
    return f"smoke test (--quick): n = {n}; verdicts are not evidence"


def _claim_table(prs: list[tuple[dict[str, Any], Path | None]], root: Path,
                 metas: Mapping[Path, Mapping[str, Any]]) -> str:
    parts = ["<table class=claims><tr><th>claim</th><th class=t>model</th><th>verdict</th><th>value</th>"
             "<th>95 % interval</th><th>threshold</th><th>n</th><th class=t>statistic</th>"
             "<th class=t>note</th></tr>"]
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
                     f"<td class=note>{prose(r.get('statistic', ''))}</td><td class=note>{fmt(r.get('note', ''))}"
                     f"</td></tr>")
    parts.append("</table>")
    return "".join(parts)


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
        primary = [(r, sec) for r, sec in prs if str(r.get("variant") or "primary") == "primary"]
        sens = [(r, sec) for r, sec in prs if str(r.get("variant") or "primary") != "primary"]
        parts.append(_claim_table(primary, root, metas))
        if sens:
            parts.append(f"<details><summary>Sensitivity rows ({len(sens)}: other measurement points, solvers or "
                         f"scores; never counted in a claim's verdict)</summary>{_claim_table(sens, root, metas)}"
                         "</details>")
        devs = [d for s, m in metas.items() if str(m.get("analysis")) == paper for d in (m.get("deviations") or [])]
        if devs:
            parts.append(f"<details open><summary>Deviations from the paper ({len(devs)})</summary><ul class=dev>"
                         + "".join(f"<li>{prose(d)}</li>" for d in devs) + "</ul></details>")
    return "".join(parts)


def _headlines_html(sections: list[tuple[Path, dict]], root: Path) -> str:
    rows = []
    for sec, meta in sections:
        path = sec / "summary.json"
        if not path.is_file() or meta.get("analysis") == "demo":
            continue
        scalars, tables = pivots(read_summary_file(path))
        bits = [f"{esc(k)}: <b>{fmt(v)}</b>" for k, v in _headline_scalars(scalars)[:4]]
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


def _headline_scalars(scalars: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The scalars worth a headline: numbers and short labels; a sentence (a note on where the held-out
    images came from) belongs with the section's numbers, not in the summary."""
    return [(k, v) for k, v in scalars if not (isinstance(v, str) and len(v) > 30)]


# --------------------------------------------------------------------------- a single analysis: its result first

METRIC_SENSE = {"deletion": "lower is better", "insertion": "higher is better", "mufidelity": "higher is better"}


def _forgrad_ranking_html(sec: Path) -> str:
    """FORGrad's result: each method's rank per metric before and after low-pass filtering (1 = best),
    from ``tables/summary.csv``; empty when the table is absent."""
    path = sec / "tables" / "summary.csv"
    if not path.is_file():
        return ""
    rows = read_table_file(path)
    if not rows:
        return ""
    metrics = [c[:-len("_rank")] for c in rows[0] if c.endswith("_rank") and f"{c}_forgrad" in rows[0]]
    if not metrics:
        return ""
    out = []
    for model in dict.fromkeys(str(r.get("model")) for r in rows):
        mrows = sorted((r for r in rows if str(r.get("model")) == model),
                       key=lambda r: (str(r.get("kind")) == "reference", _num(r.get(f"{metrics[0]}_rank_forgrad"))))
        head = "".join(f"<th>{esc(m)} ({esc(METRIC_SENSE.get(m, ''))})</th>" for m in metrics)
        body = []
        for r in mrows:
            cells = []
            for m in metrics:
                before, after = r.get(f"{m}_rank"), r.get(f"{m}_rank_forgrad")
                moved = _num(after) - _num(before)
                arrow = "↑" if moved < 0 else ("↓" if moved > 0 else "")
                cells.append(f"<td>{fmt(_int(before))} → <b>{fmt(_int(after))}</b> {arrow}</td>")
            kind = str(r.get("kind", ""))
            body.append(f"<tr><td>{esc(r.get('method'))}</td><td class=t>{esc(kind)}</td>"
                        f"<td>{fmt(r.get('cutoff'))}</td>{''.join(cells)}</tr>")
        out.append(f"<h3>{esc(model)}: the methods' ranks before → after FORGrad filtering (1 = best)</h3>"
                   f"<table><tr><th>method</th><th class=t>kind</th><th>cut-off</th>{head}</tr>{''.join(body)}"
                   f"</table>")
    return ("".join(out) + "<p class=meta>Only gradient-based methods are filtered; the others (and the "
            "input-blind references) keep their scores and move only as the filtered methods pass them.</p>")


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("inf")


def _int(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v == v and v == int(v) else v


def _lead_html(sec: Path, root: Path, meta: Mapping[str, Any]) -> tuple[str, bool]:
    """What a report of one analysis opens with: its result. FORGrad: the ranking of the methods before
    and after filtering; every other analysis: its key figure (discarding: entropy per layer), then shown
    there only (the second value: whether the key figure moved to the summary)."""
    if str(meta.get("analysis")) == "forgrad":
        ranking = _forgrad_ranking_html(sec)
        if ranking:
            return ranking, False
    figs = _figures(sec, meta)
    if not figs:
        return "", False
    return figure_html(figs[0], _caption(meta, figs[0].stem), f"fig-{_anchor(sec, root)}-{figs[0].stem}",
                       key=True), True


# --------------------------------------------------------------------------- sections


def _reading(meta: Mapping[str, Any], sec: Path, claims: list[dict[str, Any]], figs: list[Path],
             n_tables: int | None = None) -> str:
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
        if n_tables is None:
            n_tables = len(_table_names(sec, meta)[0])
        first = (f"{meta.get('title') or sec.name}: its headline numbers are below"
                 f"{' with ' + str(n_tables) + (' table' if n_tables == 1 else ' tables') if n_tables else ''}." if summ.is_file() or n_tables
                 else f"{meta.get('title') or sec.name}.")
    if figs:
        cap = _caption(meta, figs[0].stem).split(". ")[0].rstrip(".")
        if cap[:1].isupper() and not cap[1:2].isupper():  # "Per-layer ..." -> "per-layer ...", "SROP" stays
            cap = cap[:1].lower() + cap[1:]
        second = f"The key figure shows {cap}."
    else:
        second = "This analysis wrote no figure."
    return f"{first} {second}"


def _table_names(sec: Path, meta: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The tables a section shows (``meta["report_tables"]``, else every CSV in ``tables/``) that exist, and
    those listed but missing: the one count the reading and the "Tables (n)" heading both use."""
    tables_dir = sec / "tables"
    names = meta.get("report_tables")
    if names is None:
        names = [p.stem for p in sorted(tables_dir.glob("*.csv"))] if tables_dir.is_dir() else []
    present = [str(n) for n in names if (tables_dir / f"{n}.csv").is_file()]
    return present, [str(n) for n in names if str(n) not in present]


def _section_html(sec: Path, root: Path, meta: Mapping[str, Any], claims: list[dict[str, Any]], *,
                  key_shown: bool = False) -> tuple[str, str, str]:
    """One analysis's section; ``key_shown``: its key figure already opens the page (a single analysis),
    so the section starts with its other figures."""
    title = str(meta.get("title") or meta.get("analysis") or sec.name)
    anchor = _anchor(sec, root)
    figs = _figures(sec, meta)
    present, missing = _table_names(sec, meta)
    parts = [f"<section><h2 id='{esc(anchor)}'>{esc(title)}</h2>",
             f"<p class=reading>{prose(_reading(meta, sec, claims, figs, len(present)))}</p>"]
    svg_of = {Path(v).stem for v in (meta.get("claim_figures") or {}).values()}
    for i, fig in enumerate(figs):
        if key_shown and i == 0:
            parts.append(f"<p class=meta>Its key figure opens the page (<a href='#fig-{esc(anchor)}-"
                         f"{esc(fig.stem)}'>above</a>).</p>")
            continue
        svg = fig.with_suffix(".svg")
        href = str(svg.relative_to(root)) if fig.stem in svg_of and svg.is_file() else None
        parts.append(figure_html(fig, _caption(meta, fig.stem), f"fig-{anchor}-{fig.stem}", key=i == 0,
                                 svg_href=href))
    if meta.get("description"):
        parts.append(f"<p class=meta>{prose(meta['description'])}</p>")
    summary_path = sec / "summary.json"
    if summary_path.is_file():
        scalars, tables = pivots(read_summary_file(summary_path))
        inner = ""
        if scalars:
            inner += table_html([{"": k, "value": v} for k, v in scalars])
        for name, rows in tables:
            inner += f"<h3>{esc(name)}</h3>" + table_html(rows)
        if inner:
            parts.append(f"<details><summary>Numbers ({len(scalars) + len(tables)} entries)</summary>{inner}"
                         f"</details>")
    tables_dir = sec / "tables"
    inner = ""
    for name in present:
        path = tables_dir / f"{name}.csv"
        rows = read_table_file(path)
        more = f" (first {MAX_ROWS} of {len(rows)} rows)" if len(rows) > MAX_ROWS else f" ({len(rows)} rows)"
        inner += (f"<h3>{esc(name)}<span class=meta>{more} · <code>tables/{esc(name)}.csv</code></span></h3>"
                  + table_html(rows))
    if inner:
        parts.append(f"<details><summary>Tables ({len(present)})</summary>{inner}</details>")
    if missing:
        parts.append(f"<p class='meta warn'>Missing table(s) {esc(', '.join(missing))}: listed in meta.json but "
                     f"not in tables/ (the run did not finish?); run the same command again to complete it.</p>")
    env = meta.get("environment", {}) or {}
    parts.append(f"<p class=meta>folder <code>{esc(sec.relative_to(root) if sec != root else '.')}</code> · analysis "
                 f"{esc(meta.get('analysis'))} · torch {esc(env.get('torch'))} · device {esc(env.get('device', 'cpu'))}"
                 f" · started {esc(meta.get('started'))} · finished {esc(meta.get('finished', 'not yet'))}</p>")
    parts.append("</section>")
    return anchor, title, "\n".join(parts)


def _amendments_html(rows: list[dict[str, Any]]) -> str:
    """The amendment log: each change made after a result was seen, its reason, and each headline verdict
    before it beside this run's."""
    from ..claims import AMENDMENTS, amendment_rows

    parts = ["<div class=amendments id=amendments><h2>Amendment log</h2>"]
    for a in AMENDMENTS:
        parts.append(f"<h3>Amendment {a.number} ({esc(a.when)})</h3><p>Reason: {esc(a.reason)}.</p><ul class=dev>"
                     + "".join(f"<li>{esc(c)}</li>" for c in a.changes) + "</ul>")
        trs = "".join(f"<tr><td>{esc(r['claim'])}</td><td class=t>{esc(r['model'])}</td>"
                      f"<td>{verdict_html(r['before'])}</td><td>{verdict_html(r['after']) if r['after'] in VERDICT_CLASS else esc(r['after'])}</td></tr>"
                      for r in amendment_rows(a, rows))
        parts.append("<table class=claims><tr><th>claim</th><th class=t>model</th><th>before</th><th>this run</th></tr>"
                     f"{trs}</table>")
    parts.append("</div>")
    return "".join(parts)


def _first_screen_html(shown: list[tuple[Path, dict]], root: Path, claim_by_sec: Mapping[Any, list]) -> str:
    """The demo's first screen: each analysis's key figure and reading."""
    parts = []
    for sec, meta in shown:
        figs = _figures(sec, meta)
        if not figs or sec == root:
            continue
        title = str(meta.get("title") or meta.get("analysis") or sec.name)
        parts.append(f"<h3><a href='#{esc(_anchor(sec, root))}'>{esc(title)}</a></h3>"
                     f"<p class=reading>{esc(_reading(meta, sec, claim_by_sec.get(sec, []), figs))}</p>"
                     + figure_html(figs[0], _caption(meta, figs[0].stem), f"first-{_anchor(sec, root)}", key=True))
    return "".join(parts)


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
    single = not claims and len(shown) == 1 and shown[0][1].get("analysis") not in ("demo", "reproduce")
    lead_html, key_shown = _lead_html(shown[0][0], root, shown[0][1]) if single else ("", False)
    sections = [_section_html(s, root, m, claim_by_sec.get(s, []), key_shown=key_shown) for s, m in shown]
    top = metas.get(root, {})
    kind = top.get("analysis")
    quick = bool((top.get("params") or {}).get("quick"))
    claim_rows = [r for r, _ in claims]
    first_line = ""
    amend = ""
    if claims and kind == "demo":
        screen = _first_screen_html(shown, root, claim_by_sec)
        summary = (screen + f"<h2>Claims: a smoke test ({esc(smoke_line(claim_rows).split(': ', 1)[1])})</h2>"
                   + _claims_html(claims, root, metas))
        lead = "Each analysis's key figure and reading; the claims below come from the demo's small samples."
    elif claims:
        summary = _claims_html(claims, root, metas)
        lead = "What each paper's claims came to on this run (colour per verdict; a claim links to its figure)."
        if quick:
            first_line = f"<p class='meta warn smoke'>{esc(smoke_line(claim_rows))}</p>"
        if kind == "reproduce":
            amend = _amendments_html(claim_rows)
    elif single:  # one analysis: the page opens with its result, then its headline numbers, then the note
        summary = (lead_html + _headlines_html(pairs, root) + "<p class=meta>No claims were decided in this run (run "
                   "<code>infolens reproduce</code> for verdicts).</p>")
        lead = ""
    else:
        summary = _headlines_html(pairs, root)
        lead = "No claims were decided in this run (run <code>infolens reproduce</code> for verdicts); the " \
               "headline numbers of each analysis:"
    nav = " ".join(f"<a href='#{esc(a)}'>{esc(t)}</a>" for a, t, _ in sections)
    panel = panel_html(pairs)
    if panel:
        nav = "<a href='#cross-method'>Across methods</a> " + nav
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>{first_line}"
            f"<p class=meta>{esc(root.resolve())}</p>"
            f"<div class=summary id=summary><h2>Summary</h2>{f'<p class=meta>{lead}</p>' if lead else ''}{summary}</div>{amend}"
            f"<nav>{nav}</nav>{panel}"
            + "\n".join(body for _, _, body in sections) + "</body></html>")
    return atomic_write_text(target, page)
