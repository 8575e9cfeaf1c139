"""The pure core imports no I/O and no clock.

The SIP core, the dispatcher, the router and the health state machine take time as
``now`` and do no I/O, so that tests drive them on a virtual clock and the shell is
the only place that touches sockets, event loops, databases or the wall clock. This
reads their sources (every import, TYPE_CHECKING ones included); the import-linter
contracts in pyproject.toml (run by ./test.sh) say the same and also keep the layers
one way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sipdispatch

PACKAGE = Path(sipdispatch.__file__).parent
PURE = [
    *sorted((PACKAGE / "sip").rglob("*.py")),
    *sorted((PACKAGE / "dispatcher").rglob("*.py")),
    PACKAGE / "routing.py",
    PACKAGE / "health" / "state.py",
    PACKAGE / "health" / "statelog.py",
]
FORBIDDEN = {"asyncio", "socket", "time", "sqlalchemy", "redis", "aiohttp", "uvloop", "selectors"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".", 1)[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".", 1)[0])
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_module_imports_no_io_and_no_clock(path: Path) -> None:
    assert imported(path) & FORBIDDEN == set()


def test_the_check_sees_an_import_of_time(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import logging\nfrom time import monotonic\n")
    assert imported(module) & FORBIDDEN == {"time"}


def import_graph() -> dict[str, set[str]]:
    """Module -> the sipdispatch modules it imports (TYPE_CHECKING imports included)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.startswith("sipdispatch."):
                    targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("sipdispatch."))
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (each as the path that closes it)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_two_modules_import_each_other_even_for_types() -> None:
    # A package importing its own modules in __init__ is the package's index, not a
    # cycle: a module of the package importing the package name is what would close one.
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
