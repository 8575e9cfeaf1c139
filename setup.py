"""Build sipdispatch, compiling the per-message path to C with mypyc.

The SIP core (``sipdispatch.sip``), the dispatcher (``sipdispatch.dispatcher``), the
UDP/TCP shell (``sipdispatch.transport``), the router (``sipdispatch.routing``) and the
pure health state machine and state log (``sipdispatch.health.state``, ``.statelog``)
are plain, typed Python; mypyc turns them into C extension modules when the package
is installed, which takes about 30 % off the proxy's CPU per call (BENCHMARKS.md).
The Python files stay the source: after changing one, install again (``./run.sh``
and ``./test.sh`` do it when a file of those packages is newer than the last install).
An editable install puts the built modules beside their sources in src/.

``SIPDISPATCH_PURE_PYTHON=1`` when installing skips the compiler (for a machine
without one, or to step through the core in a debugger): the same modules then run
as ordinary Python, slower, with the same behaviour. Built modules left in src/ by an
earlier install are removed first, so that none can shadow the sources.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent

# What every message passes through: the SIP core, the dispatcher and the asyncio
# shell around them. These import nothing outside the standard library and each
# other (the isolated build environment holds only mypy); within a compiled module,
# calls to these are bound when it is built.
COMPILED_PACKAGES = ("sip", "dispatcher", "transport")
COMPILED_MODULES = ("routing.py", "health/state.py", "health/statelog.py")
COMPILED = sorted(
    [
        str(path.relative_to(HERE))
        for package in COMPILED_PACKAGES
        for path in (HERE / "src" / "sipdispatch" / package).rglob("*.py")
    ]
    + [f"src/sipdispatch/{module}" for module in COMPILED_MODULES]
)


def pure_python() -> bool:
    return os.environ.get("SIPDISPATCH_PURE_PYTHON", "") not in ("", "0")


def remove_built_modules() -> None:
    """Delete extension modules an earlier editable install left in src/ (a build makes
    them anew; the shared library's name changes with the set of modules compiled)."""
    src = HERE / "src"
    for built in [*src.glob("*__mypyc*.so"), *(src / "sipdispatch").rglob("*.so")]:
        built.unlink()


def ext_modules() -> list[object]:
    remove_built_modules()
    if pure_python():
        return []
    from mypyc.build import mypycify

    return list(mypycify(COMPILED, opt_level="3", debug_level="1"))


setup(ext_modules=ext_modules())
