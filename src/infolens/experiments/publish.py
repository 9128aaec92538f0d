"""Publishing a finished ``infolens reproduce`` run, and the README's "Does the paper hold?" table.

:func:`publish` copies a finished full run's ``tables/claims.csv``, a ``meta.json`` with each paper's
provenance (command, commit, date, machine, device, wall time; for a paper that records per-unit wall times, as
FORGrad does per model, those too, since a resumed run's last invocation times only what was left) and the
report's claim figures into
``reproduction/<date>-<device>/``, and writes ``reproduction/claims.csv``: the run's headline rows (the
primary aggregate row of each claim, or the claim's primary row where it has no aggregate;
:func:`infolens.claims.headline_rows`) with a ``run`` column naming the folder. A ``--quick`` run is a smoke
test and is never published.

Papers are run and published one at a time (each has its own budget), so publishing merges: the run's papers
replace their own rows and provenance, in the dated folder and in ``reproduction/claims.csv``; the other
papers' rows, provenance and figures stay as published (each headline row names its ``run``).

The README's table is rendered from that file (:func:`readme_table`, between :data:`README_START` and
:data:`README_END`; :func:`update_readme`), so the README and the committed file cannot disagree: a test
compares them. Without a published run the README says :data:`NO_RUN`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..claims import CLAIM_COLUMNS, headline_rows
from ..papers import PAPERS
from .._io import atomic_write_text, read_csv, write_csv

__all__ = ["publish", "readme_table", "readme_block", "update_readme", "current_commit", "machine",
           "README_START", "README_END", "NO_RUN", "PUBLISHED_COLUMNS", "MAX_FIGURE_BYTES"]

README_START = "<!-- reproduction table: generated from reproduction/claims.csv; do not edit by hand -->"
README_END = "<!-- end of reproduction table -->"
NO_RUN = ("No full run published yet: `reproduction/claims.csv` is absent. A `--quick` run is a smoke test and "
          "is never published; run the full protocol and publish it with `infolens reproduce --publish reproduction`.")
PUBLISHED_COLUMNS: tuple[str, ...] = ("run",) + CLAIM_COLUMNS
"""Columns of ``reproduction/claims.csv``: the claims columns with the run's folder name first."""
MAX_FIGURE_BYTES = 1_500_000
"""A claim figure larger than this is not copied (the published folder stays a few MB)."""


def current_commit(where: str | Path | None = None) -> str:
    """The git commit of the source tree holding ``where`` (default: this package), with ``+dirty`` when it
    has uncommitted changes; ``"unknown"`` outside a git checkout."""
    cwd = Path(where) if where else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True,
                               text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    """The machine in words: architecture, processor, logical CPUs, OS (no host name)."""
    proc = platform.processor() or platform.machine()
    return f"{platform.machine()} ({proc}), {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def command_line() -> str:
    """This process's command line as a user would type it (``infolens ...`` for the CLI), behind
    ``torchrun --nproc-per-node K`` when torchrun started it (``K`` processes on this machine)."""
    argv = list(sys.argv)
    if argv and (Path(argv[0]).name in ("infolens", "__main__.py")):
        argv = ["infolens"] + argv[1:]
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        per_node = os.environ.get("LOCAL_WORLD_SIZE") or str(world)
        argv = ["torchrun", "--nproc-per-node", per_node] + (["--nnodes", str(world // int(per_node))]
                                                              if world != int(per_node) else []) + argv
    return " ".join(argv)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        out = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rerun the analysis that wrote it") from e
    return out if isinstance(out, dict) else {}


def publish(run_dir: str | Path, dest: str | Path = "reproduction") -> Path:
    """Copy the finished full run ``run_dir`` into ``dest/<date>-<device>/`` and write ``dest/claims.csv``
    (module docstring). Returns the new folder.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` holds no ``tables/claims.csv`` or ``meta.json`` (not an ``infolens reproduce`` folder,
        or the run did not finish).
    ValueError
        The run is a ``--quick`` smoke test, or it has not finished.
    """
    root = Path(run_dir)
    table, meta_path = root / "tables" / "claims.csv", root / "meta.json"
    for p in (table, meta_path):
        if not p.is_file():
            raise FileNotFoundError(f"run_dir {str(root)!r} has no {p.relative_to(root)}: give the folder of a finished "
                                    f"`infolens reproduce` run (its --out)")
    meta = _read_json(meta_path)
    params = meta.get("params") or {}
    if meta.get("analysis") != "reproduce":
        raise ValueError(f"run_dir {str(root)!r} holds a {meta.get('analysis')!r} run, not `infolens reproduce`")
    if params.get("quick"):
        raise ValueError(f"run_dir {str(root)!r} is a --quick run: a smoke test, never published; run the full "
                         "protocol (without --quick) and publish that")
    if not meta.get("finished"):
        raise ValueError(f"run_dir {str(root)!r} has not finished; run the same command again to complete it")
    rows = read_csv(table)
    env = meta.get("environment") or {}
    device = str(env.get("device") or "cpu").replace(":", "")
    date = str(meta["finished"])[:10]
    name = f"{date}-{device}"
    out = Path(dest) / name
    out.mkdir(parents=True, exist_ok=True)
    ran = list(params.get("papers") or sorted({str(r["paper"]) for r in rows}))
    old_info = _read_json(out / "meta.json")
    all_rows = _merge(out / "claims.csv", [dict(r) for r in rows], ran, CLAIM_COLUMNS)
    seconds = meta.get("seconds_per_paper") or {}
    papers: dict[str, Any] = {k: v for k, v in (old_info.get("papers") or {}).items() if k not in ran}
    # figures/<paper>/<file>: another paper's figures stay
    figures: list[str] = [f for f in old_info.get("figures") or [] if Path(f).parent.name not in ran]
    for paper in ran:
        pm = _read_json(root / paper / "meta.json")
        penv = pm.get("environment") or env
        papers[paper] = {
            "command": meta.get("command") or f"infolens reproduce --paper {paper} --device {env.get('device', 'cpu')}",
            "commit": meta.get("commit", "unknown"),
            "date": pm.get("finished") or meta.get("finished"),
            "machine": meta.get("machine", "unknown"),
            "device": penv.get("device", env.get("device", "cpu")),
            "wall_seconds": seconds.get(paper),
            "ranks": meta.get("world"),
            "ranks_used": (meta.get("ranks_per_paper") or {}).get(paper, 1),
        }
        units = pm.get("wall_seconds")
        if isinstance(units, Mapping) and units and all(isinstance(v, (int, float)) for v in units.values()):
            # a resumed run's last invocation timed only what was left: keep each unit's own wall time too
            papers[paper]["wall_seconds_by_unit"] = dict(units)
            papers[paper]["wall_seconds_units_total"] = round(float(sum(units.values())), 1)
        for cid, rel in sorted((pm.get("claim_figures") or {}).items()):
            src = root / paper / rel
            if src.is_file() and src.stat().st_size <= MAX_FIGURE_BYTES:
                target = out / "figures" / paper / Path(rel).name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
                figures.append(f"figures/{paper}/{Path(rel).name}")
    before = old_info.get("sources") or {k: old_info["source"] for k in old_info.get("papers") or {}
                                         if "source" in old_info}
    sources = {k: v for k, v in before.items() if k not in ran}
    sources.update({p: str(root) for p in ran})
    info = {"run": name, "sources": dict(sorted(sources.items())), "published_commit": current_commit(),
            "papers": {p: papers[p] for p in sorted(papers, key=_paper_key)}, "figures": sorted(set(figures)),
            "verdicts": {v: sum(r["verdict"] == v for r in all_rows)
                         for v in ("reproduced", "not reproduced", "inconclusive")}}
    atomic_write_text(out / "meta.json", json.dumps(info, indent=2, default=str) + "\n")
    _merge(Path(dest) / "claims.csv", [{"run": name, **{c: r.get(c) for c in CLAIM_COLUMNS}}
                                         for r in headline_rows(rows)], ran, PUBLISHED_COLUMNS)
    return out


def _paper_key(paper: Any) -> tuple[int, str]:
    """Table order of the papers (unknown names last, alphabetically)."""
    order = list(PAPERS)
    return (order.index(paper) if paper in order else len(order), str(paper))


def _merge(path: Path, new: Sequence[Mapping[str, Any]], ran: Sequence[str],
           columns: Sequence[str]) -> list[dict[str, Any]]:
    """Write ``path`` with ``new`` in place of the rows of the papers in ``ran``; other papers' rows stay.
    Rows in paper order, each paper's rows in their own order. Returns the rows written."""
    kept = [r for r in (read_csv(path) if path.is_file() else []) if r.get("paper") not in ran]
    rows = [dict(r) for r in sorted([*kept, *new], key=lambda r: _paper_key(r.get("paper")))]
    write_csv(path, rows, columns=list(columns))
    return rows


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.3g}"
    return str(v if v is not None else "").replace("|", "/").replace("\n", " ")


def readme_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The README's markdown table of the published headline rows (one line per row, in file order)."""
    lines = ["| claim | model(s) | value [95 % CI] | threshold | n | verdict | run |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r.get("ci_low"), r.get("ci_high")
        ci = f" [{_cell(lo)}, {_cell(hi)}]" if isinstance(lo, float) and not math.isnan(lo) else ""
        lines.append(f"| {_cell(r.get('claim'))} | {_cell(r.get('model'))} | {_cell(r.get('value'))}{ci} | "
                     f"{_cell(r.get('threshold'))} | {_cell(r.get('n'))} | **{_cell(r.get('verdict'))}** | "
                     f"{_cell(r.get('run'))} |")
    return "\n".join(lines)


def readme_block(dest: str | Path = "reproduction") -> str:
    """What the README shows between its markers: the table of ``dest/claims.csv``, or :data:`NO_RUN`."""
    path = Path(dest) / "claims.csv"
    return readme_table(read_csv(path)) if path.is_file() else NO_RUN


def update_readme(readme: str | Path = "README.md", dest: str | Path = "reproduction") -> Path:
    """Rewrite the README's block between :data:`README_START` and :data:`README_END` from ``dest``."""
    readme = Path(readme)
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"readme {str(readme)!r} lacks the markers {README_START!r} ... {README_END!r}; put them "
                         "where the table goes")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return atomic_write_text(readme, f"{head}{README_START}\n{readme_block(dest)}\n{README_END}{tail}")
