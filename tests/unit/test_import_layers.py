"""Imports run one way: no two trackline modules import each other (directly or around a
loop), and the warehouse layer (`trackline.load`) never imports the layers that drive it.

Every import statement counts, wherever it is: at module level, inside a function (a lazy
import still ties the two modules together) or under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "trackline"

FORBIDDEN = {"load": {"sync", "marts", "quality", "sqlplan"}}
"""package → the packages above it that it must not import."""


def module_name(root: Path, path: Path) -> str:
    parts = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module → the modules of the same tree it imports (`from pkg import name` counts as
    importing ``pkg``, and ``pkg.name`` when that is a module)."""
    files = {module_name(root, f): f for f in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t not in files and "." in t:
                    t = t.rpartition(".")[0]
                if t in files and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, targets in sorted(graph.items()):
        below = mod.split(".")[1:2]
        for t in sorted(targets):
            above = t.split(".")[1:2]
            if below and above and above[0] in FORBIDDEN.get(below[0], set()):
                out.append(f"{mod} imports {t}")
    return out


def test_no_import_cycle_between_trackline_modules() -> None:
    found = cycles(import_graph(SRC))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_warehouse_layer_imports_nothing_above_it() -> None:
    assert not upward_imports(import_graph(SRC))


# ------------------------------------------------------------ the checks above can fail


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "trackline"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    "importer",
    [
        "from trackline.load.base import Warehouse\n",  # at module level
        "def f():\n    from trackline.load import base\n",  # lazy, inside a function
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trackline.load.base\n",
        "def f():\n    from ..load.base import Warehouse\n",  # relative
    ],
)
def test_a_cycle_is_found_however_the_import_is_written(tmp_path: Path, importer: str) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "load/__init__.py": "",
            "load/base.py": "from trackline.stage import Stage\n",
            "stage/__init__.py": importer,
        },
    )
    assert cycles(import_graph(root)) == [["trackline.load.base", "trackline.stage"]]


def test_a_longer_cycle_and_an_upward_import_are_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "load/__init__.py": "",
            "load/redshift.py": "def plan():\n    from trackline.load.plan import render\n",
            "load/plan.py": "from trackline.sync import Syncer\n",
            "sync/__init__.py": "from trackline.load.redshift import Redshift\n",
            "extract.py": "import trackline.load\n",
        },
    )
    graph = import_graph(root)
    assert cycles(graph) == [["trackline.load.plan", "trackline.load.redshift", "trackline.sync"]]
    assert upward_imports(graph) == ["trackline.load.plan imports trackline.sync"]
