"""The package's shape (issue 14), checked on the source with the ast module (no import, fast):

* no import cycle inside ``edge_ee`` (a module imported lazily inside a function counts too: the cycle is in
  the design even when it does not break at import time; imports under ``if TYPE_CHECKING:`` never run and
  do not count);
* at most 10 modules at the top level of ``edge_ee/`` (the rest lives in the layer folders);
* the lower layers never import the upper ones: ``core/`` imports no other part of the package except
  ``errors`` and the manifest's typed records (``calibration.record``, ``pipeline.features``); ``core/`` and
  ``pipeline/`` never import ``commands``, ``service``, ``control`` or ``profiling``; nothing but
  ``commands`` and ``entry`` imports ``commands``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "edge_ee"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: the body of ``if TYPE_CHECKING:`` (imports for annotations only) is left out."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if _type_checking(node):
            todo.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports (``from . import x`` counts as importing ``x``)."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out |= {target} | {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    # a module's own package (imported implicitly) is not an edge of the design
    return {t for t in out if t in mods and t != name and not name.startswith(t + ".")}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_top_level_module_count() -> None:
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 10, top


def _in(module: str, *packages: str) -> bool:
    return any(module == f"edge_ee.{p}" or module.startswith(f"edge_ee.{p}.") for p in packages)


def test_layers() -> None:
    g = _graph()
    core_may = {"edge_ee.errors", "edge_ee.calibration.record", "edge_ee.pipeline.features"}
    for m, targets in g.items():
        if _in(m, "core"):
            bad = {t for t in targets if not _in(t, "core") and t not in core_may}
            assert not bad, f"{m} (core) imports {sorted(bad)}"
        if _in(m, "core", "pipeline"):
            bad = {t for t in targets if _in(t, "commands", "service", "control", "profiling")}
            assert not bad, f"{m} imports the layers above it: {sorted(bad)}"
        if not _in(m, "commands") and m not in ("edge_ee.entry",):
            bad = {t for t in targets if _in(t, "commands")}
            assert not bad, f"{m} imports the command line: {sorted(bad)}"
