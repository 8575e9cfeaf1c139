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
