"""The HTML report: one self-contained page (figures embedded as data URIs, tables rendered, no
scripts, no network) built from result folders, never from models.

A result folder is a section when it holds ``meta.json`` (written by :class:`infolens.results.RunDir`);
a demo folder holds one section per analysis in sub-folders. Each section shows its title and
description, the headline numbers of ``summary.json``, every figure in ``figures/`` (captions from
``meta["figures"]``), and the tables named in ``meta["report_tables"]`` (all small tables otherwise).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from .results import atomic_write_text, read_csv

__all__ = ["build_report", "find_sections"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#1d232a;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #d7dde4;padding-bottom:.2em;margin-top:2em}
.meta{color:#5b6570;font-size:.85em}.desc{max-width:900px}
table{border-collapse:collapse;font-size:.8em;margin:.6em 0 1.2em}
td,th{border:1px solid #d7dde4;padding:2px 7px;text-align:right}th{background:#eef2f6}
td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.4em .6em .8em 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #e3e8ee}figcaption{font-size:.8em;color:#5b6570;max-width:560px}
nav a{margin-right:1em}.kv td{text-align:left}
"""

MAX_ROWS = 40


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
    except (ValueError, OSError):
        return 50


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return html.escape(json.dumps(v)[:200])
    return html.escape(str(v))


def _table_html(rows: list[dict[str, Any]], *, limit: int = MAX_ROWS) -> str:
    if not rows:
        return "<p class=meta>(empty table)</p>"
    cols = list(rows[0].keys())
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
    for r in rows[:limit]:
        out.append("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        items: list[tuple[str, Any]] = []
        for k, v in d.items():
            items.extend(_flatten(v, f"{prefix}{k}." if not isinstance(v, dict) else f"{prefix}{k}."))
        return items
    return [(prefix.rstrip("."), d)]


def _section_html(sec: Path, root: Path) -> tuple[str, str, str]:
    meta = json.loads((sec / "meta.json").read_text())
    title = meta.get("title") or meta.get("analysis") or sec.name
    anchor = html.escape(str(sec.relative_to(root)).replace("/", "-") or "run")
    parts = [f"<h2 id='{anchor}'>{html.escape(title)}</h2>"]
    env = meta.get("environment", {})
    parts.append(f"<p class=meta>folder <code>{html.escape(str(sec.relative_to(root)) or '.')}</code> · "
                 f"analysis {html.escape(str(meta.get('analysis')))} · torch {html.escape(str(env.get('torch')))} · "
                 f"device {html.escape(str(env.get('device', 'cpu')))} · started {html.escape(str(meta.get('started')))}"
                 f" · finished {html.escape(str(meta.get('finished', 'not yet')))}</p>")
    if meta.get("description"):
        parts.append(f"<div class=desc><p>{html.escape(meta['description'])}</p></div>")
    summary_path = sec / "summary.json"
    if summary_path.is_file():
        flat = _flatten(json.loads(summary_path.read_text()))
        parts.append("<table class=kv>" + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in flat[:80]) + "</table>")
    captions = meta.get("figures", {}) or {}
    figs = sorted((sec / "figures").glob("*.png")) if (sec / "figures").is_dir() else []
    order = list(captions)
    figs.sort(key=lambda p: (order.index(p.stem) if p.stem in order else len(order), p.stem))
    for fig in figs:
        data = base64.b64encode(fig.read_bytes()).decode("ascii")
        cap = captions.get(fig.stem, fig.stem.replace("_", " "))
        parts.append(f"<figure><img alt='{html.escape(fig.stem)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    tables_dir = sec / "tables"
    names = meta.get("report_tables")
    if names is None and tables_dir.is_dir():
        names = [p.stem for p in sorted(tables_dir.glob("*.csv"))]
    for name in names or []:
        path = tables_dir / f"{name}.csv"
        if not path.is_file():
            continue
        rows = read_csv(path)
        more = f" (first {MAX_ROWS} of {len(rows)} rows)" if len(rows) > MAX_ROWS else f" ({len(rows)} rows)"
        parts.append(f"<h3>{html.escape(name)}<span class=meta>{more} · <code>tables/{html.escape(name)}.csv"
                     f"</code></span></h3>")
        parts.append(_table_html(rows))
    return anchor, title, "\n".join(parts)


def build_report(result_dir: str | Path, *, out: str | Path | None = None, title: str = "infolens report") -> Path:
    """Write ``report.html`` (default inside ``result_dir``) and return its path."""
    from .distributed import is_main

    root = Path(result_dir)
    target = Path(out) if out else root / "report.html"
    if not is_main():  # under torchrun only rank 0 writes the page
        return target
    sections = [_section_html(s, root) for s in find_sections(root)]
    nav = " ".join(f"<a href='#{a}'>{html.escape(t)}</a>" for a, t, _ in sections)
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class=meta>{html.escape(str(root.resolve()))}</p><nav>{nav}</nav>"
            + "\n".join(body for _, _, body in sections) + "</body></html>")
    return atomic_write_text(target, page)
