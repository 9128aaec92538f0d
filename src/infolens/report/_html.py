"""HTML pieces of the report: escaping, numbers, tables, pivots, figures, the style sheet (screen and print)."""

from __future__ import annotations

import base64
import csv
import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._io import read_csv

MAX_ROWS = 40

VERDICT_CLASS = {"reproduced": "ok", "not reproduced": "bad", "inconclusive": "unk"}

CSS = """
:root{--ok:#1a7f37;--ok-bg:#dafbe1;--bad:#b42318;--bad-bg:#fee4e2;--unk:#8a5a00;--unk-bg:#fff4d6;--line:#d7dde4}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:1.2em auto;
padding:0 1em;color:#1d232a;line-height:1.45}
h1{font-size:1.6em;margin:.1em 0}h2{border-bottom:2px solid var(--line);padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.05em;margin:1.1em 0 .3em}
.meta{color:#5b6570;font-size:.85em}.reading{font-size:1.02em;max-width:900px}
table{border-collapse:collapse;font-size:.8em;margin:.4em 0 1em}
td,th{border:1px solid var(--line);padding:2px 7px;text-align:right;vertical-align:top}th{background:#eef2f6}
td:first-child,th:first-child,td.t,th.t{text-align:left}
figure{display:inline-block;margin:.4em .6em .8em 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #e3e8ee}figcaption{font-size:.8em;color:#5b6570;max-width:620px}
figure.key img{max-width:min(100%,900px)}
nav a{margin-right:1em}
.v{display:inline-block;padding:0 .45em;border-radius:.6em;font-weight:600;font-size:.92em;white-space:nowrap}
.v.ok{color:var(--ok);background:var(--ok-bg)}.v.bad{color:var(--bad);background:var(--bad-bg)}
.v.unk{color:var(--unk);background:var(--unk-bg)}
tr.ok td:first-child{border-left:4px solid var(--ok)}tr.bad td:first-child{border-left:4px solid var(--bad)}
tr.unk td:first-child{border-left:4px solid var(--unk)}
.summary{background:#f7f9fb;border:1px solid var(--line);border-radius:6px;padding:.2em 1em .6em;margin:.8em 0}
.summary h2{margin-top:.4em;border:none}
.counts span{margin-right:1.2em}.note{font-size:.78em;color:#5b6570;text-align:left;max-width:420px}
.warn{color:var(--bad)}
details{margin:.3em 0 .8em}summary{cursor:pointer;color:#33506e;font-size:.9em}
ul.dev{font-size:.85em;margin:.2em 0 .8em;max-width:1000px}
@media print{
  body{max-width:none;margin:0;font-size:10pt}nav{display:none}
  h2{break-before:page}.summary h2{break-before:auto}.summary{break-after:page;background:none}
  figure,table,tr{break-inside:avoid}figure.key img{max-width:100%}
  a{color:inherit;text-decoration:none}
  .v,tr td:first-child{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


_ROLE = re.compile(r":(?:py:)?(?:func|mod|class|meth|attr|data|obj|exc|ref|doc|const|term):`~?\.*([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``(.+?)``|(?<![`\w])`([^`\n]+)`(?![`\w])")


def prose(text: Any) -> str:
    """Docstring text as HTML: escaped, with reStructuredText markup rendered rather than shown: ``code``
    and Sphinx roles (:func:`name`, :mod:`.verdicts`, :class:`~a.B`) become ``<code>`` (a role's leading
    dots and ``~`` dropped), never literal backquotes or colons."""
    out = esc(text)
    out = _ROLE.sub(lambda m: f"<code>{m.group(1).rsplit('.', 1)[-1] if m.group(0).count('~') else m.group(1)}"
                    f"</code>", out)
    return _LITERAL.sub(lambda m: f"<code>{m.group(1) or m.group(2)}</code>", out)


def fmt(v: Any) -> str:
    """A cell: floats to 4 significant digits, NaN as a dash, containers as short JSON."""
    if isinstance(v, bool):
        return esc(v)
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return esc(json.dumps(v)[:200])
    return esc(v)


def verdict_html(v: Any) -> str:
    cls = VERDICT_CLASS.get(str(v).strip().lower(), "")
    return f"<span class='v {cls}'>{esc(v)}</span>" if cls else esc(v)


def table_html(rows: Sequence[Mapping[str, Any]], *, limit: int = MAX_ROWS, columns: Sequence[str] | None = None
               ) -> str:
    if not rows:
        return "<p class=meta>(empty table)</p>"
    cols = list(columns) if columns else list(rows[0].keys())
    out = ["<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr>"]
    for r in rows[:limit]:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"<td>{verdict_html(v) if c == 'verdict' else fmt(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def read_json_file(path: Path) -> Any:
    """JSON from ``path``, or a one-line error naming the file."""
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); rerun the analysis that wrote it, or delete "
                         f"the file") from None
    except UnicodeDecodeError as exc:  # pragma: no cover - a subclass of ValueError in practice
        raise ValueError(f"{path} is not text ({exc}); rerun the analysis that wrote it") from None


def read_summary_file(path: Path) -> dict[str, Any]:
    """A ``summary.json``: a JSON object, or a one-line error naming the file (``null``, a list, a number)."""
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds {json.dumps(data)[:40] if data is None or isinstance(data, (int, float)) else 'a ' + type(data).__name__}, "
                         f"not a JSON object of headline numbers; rerun the analysis that wrote it, or delete the file")
    return data


def read_table_file(path: Path) -> list[dict[str, Any]]:
    """A result table, or a one-line error naming the file."""
    try:
        return read_csv(path)
    except (csv.Error, UnicodeDecodeError, ValueError) as exc:
        detail = str(exc).replace(f"{path} ", "", 1)  # read_csv's own messages name the file already
        raise ValueError(f"{path} is not a readable CSV table ({type(exc).__name__}: {detail}); rerun the analysis "
                         f"that wrote it, or delete the file") from None


def figure_html(path: Path, caption: str, anchor: str, *, key: bool = False, svg_href: str | None = None) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    svg = f" <a href='{esc(svg_href)}'>SVG</a>" if svg_href else ""
    return (f"<figure id='{esc(anchor)}'{' class=key' if key else ''}><img alt='{esc(path.stem)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{prose(caption)}{svg}</figcaption></figure>")


# --------------------------------------------------------------------------- key-value dumps -> pivots


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def pivots(summary: Mapping[str, Any]) -> tuple[list[tuple[str, Any]], list[tuple[str, list[dict[str, Any]]]]]:
    """Split a ``summary.json`` into headline scalars and small pivot tables.

    A ``{name: {row: {column: value}}}`` entry becomes a table with one row per ``row`` (models) and one
    column per ``column`` (conditions); a ``{name: {key: value}}`` entry becomes a one-column table;
    top-level scalars are the headline numbers. Deeper levels are joined into column names."""
    scalars: list[tuple[str, Any]] = []
    tables: list[tuple[str, list[dict[str, Any]]]] = []
    loose: list[dict[str, Any]] = []
    for key, val in summary.items():
        if key == "seconds":
            continue
        if _is_scalar(val):
            scalars.append((key, val))
        elif isinstance(val, Mapping) and val and all(isinstance(v, Mapping) for v in val.values()):
            rows = []
            for rk, rv in val.items():
                row: dict[str, Any] = {"": rk}
                for ck, cv in _flat(rv):
                    row[ck] = cv
                rows.append(row)
            tables.append((key, _square(rows)))
        elif isinstance(val, Mapping) and val:
            tables.append((key, [{"": k, "value": v if _is_scalar(v) else json.dumps(v)[:120]} for k, v in val.items()]))
        else:
            loose.append({"": key, "value": json.dumps(val)[:200]})
    if loose:
        tables.append(("other", loose))
    return scalars, tables


def _flat(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.extend(_flat(v, f"{name} / "))
        else:
            out.append((name, v if _is_scalar(v) else json.dumps(v)[:80]))
    return out


def _square(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cols: list[str] = []
    for r in rows:
        for c in r:
            if c not in cols:
                cols.append(c)
    return [{c: r.get(c, float("nan")) for c in cols} for r in rows]
