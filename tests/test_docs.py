"""The repository stands alone: no tracked file outside ``docs/`` points at texts kept outside the
repository, and every relative link of the README and of ``docs/*.md`` reaches a file (and a heading)
inside it."""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Built from pieces so that this file does not mention what it looks for.
OUTSIDE = ("../" + "shared", "/work/" + "shared")
# The claims, methods and design texts named as if they sat in the repository under their old names; the
# repository's own are docs/claims.md, docs/methods.md and docs/design.md.
OLD_NAMES = re.compile(r"\b(?:" + "|".join(("CLAIMS", "METHODS", "DESIGN")) + r")\.md\b")

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


# --------------------------------------------------------------------------- helpers (tested below)

def tracked_files(root: Path) -> list[str]:
    """Paths of the files git tracks under ``root`` (relative, POSIX)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.decode(errors="replace"))
    return [p for p in out.stdout.decode().split("\0") if p]


def read_text(path: Path) -> str | None:
    """The file's text, or ``None`` for a binary file (a NUL byte, or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def outside_mentions(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of every line that points outside the repository or names the old texts."""
    hits = []
    for no, line in enumerate(text.splitlines(), 1):
        if any(s in line for s in OUTSIDE) or OLD_NAMES.search(line):
            hits.append((no, line.strip()))
    return hits


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: inline markup dropped, lower case, punctuation removed, spaces to
    hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown text (repeated headings get ``-1``, ``-2``, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for h in HEADING.findall(FENCE.sub("", text)):
        s = slug(h)
        k = seen.get(s, 0)
        out.add(s if k == 0 else f"{s}-{k}")
        seen[s] = k + 1
    return out


def links(text: str) -> list[str]:
    """Targets of the inline and reference links of a Markdown text, code blocks left out."""
    body = FENCE.sub("", text)
    return LINK.findall(body) + REFERENCE.findall(body)


def broken_links(md: Path, root: Path) -> list[str]:
    """The relative links of ``md`` that leave ``root``, miss their file, or miss their heading."""
    text = md.read_text(encoding="utf-8")
    bad = []
    for target in links(text):
        if SCHEME.match(target) or target.startswith("//"):
            continue  # a URL (the papers, the registries): not a file of the repository
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md.resolve()
        if dest != root and root not in dest.parents:
            bad.append(f"{target} (outside the repository)")
        elif not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            bad.append(f"{target} (no heading '{anchor}' in {dest.name})")
    return bad


# --------------------------------------------------------------------------- the repository


def _tracked() -> list[str]:
    try:
        return tracked_files(ROOT)
    except (RuntimeError, FileNotFoundError) as exc:  # not a git checkout (an unpacked sdist)
        pytest.skip(f"needs a git checkout: {exc}")


def test_docs_no_tracked_file_outside_docs_points_outside_the_repository():
    files = _tracked()
    assert "README.md" in files and "src/infolens/__init__.py" in files  # the listing is the repository's
    found = []
    for rel in files:
        if rel.startswith("docs/"):
            continue
        path = ROOT / rel
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        text = read_text(path)
        if text is None:
            continue
        found += [f"{rel}:{no}: {line}" for no, line in outside_mentions(text)]
    assert not found, ("these lines point outside the repository; link docs/claims.md, docs/methods.md or "
                       "docs/design.md instead:\n" + "\n".join(found))


def test_docs_exist_and_are_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("claims.md", "methods.md", "design.md"):
        assert (ROOT / "docs" / name).is_file(), f"docs/{name} is missing"
        assert f"docs/{name}" in links(readme), f"the README does not link docs/{name}"


@pytest.mark.parametrize("md", ["README.md"] + sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
def test_docs_relative_links_reach_a_file_in_the_repository(md):
    assert not broken_links(ROOT / md, ROOT), f"{md}: " + "; ".join(broken_links(ROOT / md, ROOT))


def test_docs_claims_name_every_claim():
    text = (ROOT / "docs" / "claims.md").read_text(encoding="utf-8")
    ids = [f"S{i}" for i in range(1, 4)] + [f"D{i}" for i in range(1, 6)] + [f"A{i}" for i in range(1, 5)] \
        + [f"F{i}" for i in range(1, 6)]
    for cid in ids:
        # a row of its paper's table, and a row of amendment 1's before/after table (later amendments add
        # rows for the claims they touched)
        assert len(re.findall(rf"^\| {cid} \|", text, re.MULTILINE)) >= 2, cid


# --------------------------------------------------------------------------- the checks themselves


def test_docs_checker_finds_mentions_and_skips_binary_files(tmp_path):
    up = "../" + "shared"
    text = f"ok line\nsee ``{up}/notes.md`` here\nthe {'CLAIMS'}.md rules\nlower-case claims.md is fine\n"
    assert [no for no, _ in outside_mentions(text)] == [2, 3]
    assert outside_mentions("the shared set-up; shared batches; docs/claims.md") == []
    binary = tmp_path / "w.pt"
    binary.write_bytes(b"\x80\x02" + f"{up}".encode() + b"\0\0")
    assert read_text(binary) is None
    latin = tmp_path / "l.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    assert read_text(latin) is None


def test_docs_checker_finds_broken_links(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.md").write_text("# Title\n\n## The amendment log (1)\n\ntext\n", encoding="utf-8")
    (root / "README.md").write_text(
        "[a](docs/a.md) [b](docs/b.md) [up](../outside.md) [web](https://arxiv.org/abs/2102.00369)\n"
        "[h](docs/a.md#the-amendment-log-1) [miss](docs/a.md#nothing) [self](#intro) "
        "![img](docs/a.md \"title\")\n\n# Intro\n\n```\nx = m[0](y)  [c](not/a/link.md)\n```\n"
        "[ref]: docs/gone.md\n",
        encoding="utf-8")
    bad = broken_links(root / "README.md", root)
    assert bad == ["docs/b.md (no such file)", "../outside.md (outside the repository)",
                   "docs/a.md#nothing (no heading 'nothing' in a.md)", "docs/gone.md (no such file)"]


def test_docs_slug_matches_github():
    assert slug("Amendment log") == "amendment-log"
    assert slug("1. SROP: spectral roll-off points (arXiv 2102.00369)") == "1-srop-spectral-roll-off-points-arxiv-210200369"
    assert slug("The registry of papers (`papers.py`)") == "the-registry-of-papers-paperspy"
    assert anchors("# A\n## A\n") == {"a", "a-1"}
