"""The hot path runs as built by setup.py: compiled, and from current sources.

An install compiles ``sipdispatch.sip``, ``sipdispatch.dispatcher``,
``sipdispatch.transport``, ``sipdispatch.routing`` and the pure part of
``sipdispatch.health`` with mypyc and,
being editable, puts each built module beside its source, where it is imported in the
source's place. These tests fail when that build is missing (the suite would silently
test slower code than the product runs) or older than a source (the suite would test
code that is no longer the source). ``SIPDISPATCH_PURE_PYTHON=1`` in the environment
says the install was deliberately made without the compiler.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import sipdispatch.dispatcher
import sipdispatch.health.state
import sipdispatch.health.statelog
import sipdispatch.routing
import sipdispatch.sip
import sipdispatch.transport

PURE = os.environ.get("SIPDISPATCH_PURE_PYTHON", "") not in ("", "0")


COMPILED_PACKAGES = (sipdispatch.sip, sipdispatch.dispatcher, sipdispatch.transport)
COMPILED_MODULES = (sipdispatch.routing, sipdispatch.health.state, sipdispatch.health.statelog)


def compiled_packages_modules() -> list[ModuleType]:
    """Every module setup.py compiles."""
    modules: list[ModuleType] = [*COMPILED_PACKAGES, *COMPILED_MODULES]
    for package in COMPILED_PACKAGES:
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            modules.append(importlib.import_module(info.name))
    return modules


def source_of(module: ModuleType) -> Path:
    """The .py file beside a module's file (e.g. message.cpython-311-x86_64-linux-gnu.so)."""
    built = Path(str(module.__file__))
    return built.with_name(built.name.split(".", 1)[0] + ".py")


def is_built(module: ModuleType) -> bool:
    return str(module.__file__).endswith(".so")


def test_sip_core_dispatcher_and_shell_modules_are_all_compiled_or_all_pure() -> None:
    modules = compiled_packages_modules()
    assert len(modules) >= 25  # every module of the three packages, subpackages included
    built = {m.__name__ for m in modules if is_built(m)}
    if PURE:
        assert built == set(), "SIPDISPATCH_PURE_PYTHON is set but these are compiled"
    else:
        missing = sorted({m.__name__ for m in modules} - built)
        assert missing == [], (
            f"not compiled: {missing}; install again (./test.sh does it), or set "
            "SIPDISPATCH_PURE_PYTHON=1 for an install made without the compiler"
        )


@pytest.mark.skipif(PURE, reason="installed without the compiler")
def test_every_compiled_module_is_newer_than_its_source() -> None:
    stale = []
    for module in compiled_packages_modules():
        built = Path(str(module.__file__))
        if source_of(module).stat().st_mtime > built.stat().st_mtime:
            stale.append(module.__name__)
    assert stale == [], f"built before their sources last changed: {stale}; install again"


def test_compiled_packages_import_only_the_standard_library_and_each_other() -> None:
    # setup.py's build environment has mypy and nothing else: a third-party import in a
    # compiled module fails the install on a clean machine (a stale build/ cache can
    # hide it on a developer's).
    import ast
    import sys

    allowed = tuple(m.__name__ for m in (*COMPILED_PACKAGES, *COMPILED_MODULES))
    outside = []
    for module in compiled_packages_modules():
        for node in ast.walk(ast.parse(source_of(module).read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".", 1)[0]
                if top in sys.stdlib_module_names or name.startswith(allowed):
                    continue
                outside.append(f"{module.__name__}: {name}")
    assert outside == []
