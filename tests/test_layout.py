"""The package's layout rules, checked on the source with ``ast``: modules stay under 600 lines, an
``__init__.py`` only re-exports, and no two modules import each other (function-local imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "infolens"
MAX_LINES = 600


def _modules(root: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's ``__init__``)."""
    out = {}
    for path in sorted((root / "infolens").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Module -> the infolens modules it imports anywhere in its body (top level or inside functions).

    ``from PKG import NAME`` counts as importing ``PKG.NAME`` when that is a module, else ``PKG``; relative
    imports are resolved against the importing module's package."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                subs = [f"{src}.{a.name}" for a in node.names if f"{src}.{a.name}" in mods]
                found.update(subs)
                if len(subs) < len(node.names):
                    found.add(src)
        graph[name] = {m for m in found if m in mods and m != name}
    return graph


def mutual_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of modules that import each other (cycles of length 2), each pair once."""
    return sorted((a, b) for a, deps in graph.items() for b in deps if a < b and a in graph.get(b, ()))


def init_logic(path: Path) -> list[str]:
    """Statements of an ``__init__.py`` beyond its docstring, imports, ``__all__`` and ``__version__``."""
    body = ast.parse(path.read_text()).body
    out = []
    for i, node in enumerate(body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        targets = (node.targets if isinstance(node, ast.Assign) else [node.target]
                   if isinstance(node, ast.AnnAssign) else [])
        if targets and all(isinstance(t, ast.Name) and t.id in ("__all__", "__version__") for t in targets):
            continue
        out.append(f"line {node.lineno}: {ast.unparse(node).splitlines()[0][:60]}")
    return out


def test_no_module_exceeds_600_lines():
    long = {name: n for name, (path, _) in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules into sub-packages (at most {MAX_LINES} lines each): {long}"


def test_init_files_only_reexport():
    logic = {str(path.relative_to(SRC)): found for path, is_pkg in _modules().values()
             if is_pkg and (found := init_logic(path))}
    assert not logic, f"move this logic into a named module and re-export it: {logic}"


def test_no_two_modules_import_each_other():
    pairs = mutual_imports(import_graph())
    assert not pairs, f"modules that import each other (function-local imports count): {pairs}"


def test_the_checks_find_what_they_look_for(tmp_path):
    """The three checks on a small package built to break each rule once."""
    pkg = tmp_path / "infolens"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""doc"""\nfrom . import a\n__all__ = ["a"]\n__version__ = "1"\n')
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")  # function-local, relative
    (pkg / "sub" / "__init__.py").write_text('"""doc"""\nX = 1\n')
    (pkg / "sub" / "b.py").write_text("from infolens import a\nfrom .. import c\n")
    (pkg / "c.py").write_text("import infolens.sub.d\n")
    (pkg / "sub" / "d.py").write_text("from ..c import g\n")
    graph = import_graph(tmp_path)
    assert graph["infolens.a"] == {"infolens.sub.b"} and graph["infolens.sub.b"] == {"infolens.a", "infolens.c"}
    assert mutual_imports(graph) == [("infolens.a", "infolens.sub.b"), ("infolens.c", "infolens.sub.d")]
    assert init_logic(pkg / "__init__.py") == []
    assert init_logic(pkg / "sub" / "__init__.py") == ["line 2: X = 1"]


@pytest.mark.parametrize("public", ["infolens.report", "infolens.plots", "infolens.data", "infolens.models",
                                    "infolens.experiments"])
def test_reexported_names_resolve(public):
    """Every name in a package's ``__all__`` is importable from the package (moving logic out of an
    ``__init__`` keeps the public import paths)."""
    import importlib

    mod = importlib.import_module(public)
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{public}.__all__ names {missing}, which it does not define"
