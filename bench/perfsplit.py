"""Where a proxy's CPU goes, from a `perf report` of its process: the share of each
library and of the kernel, and the groups that matter for Python code -- allocating and
freeing objects, lookups by name -- plus the kernel's send, receive and sleep paths.

    perf report -i perf.data --no-children --sort dso,sym -g none | bench/perfsplit.py
    perf report -i perf.data --children --sort sym -g none | bench/perfsplit.py --paths

bench/perf.sh records and runs both. Shares are of the samples taken while the process
ran (perf record -p), so they add up to its CPU time, user and system.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable

SELF_ROW = re.compile(r"^\s*([\d.]+)%\s+(\S+[^%\s])\s+\[([.k])\]\s+(\S+)")
"""``  4.28%  libpython3.11.so.1.0  [.] _PyObject_Malloc`` (--no-children --sort dso,sym)."""
CHILDREN_ROW = re.compile(r"^\s*([\d.]+)%\s+[\d.]+%\s+\[([.k])\]\s+(\S+)")
"""``  24.48%  0.32%  [.] __libc_sendmsg`` (--children --sort sym): inclusive, self."""

ALLOCATION = re.compile(
    r"Malloc|_Free$|Realloc|Calloc|tuple_alloc|tupledealloc|list_dealloc|GenericAlloc"
    r"|GC_UnTrack|GC_New|GC_Del|GC_Link|GC_Track|PyList_New|PyTuple_New|unicode_dealloc"
    r"|PyUnicode_New|_Py_NewReference|PyLong_FromLong|PyFloat_FromDouble|_Py_Dealloc"
    r"|^malloc$|^free$|^cfree|_int_malloc|_int_free|_PyTrash|float_dealloc|dict_dealloc"
    r"|new_keys|dictresize|PyBytes_FromStringAndSize|bytes_dealloc|PyUnicode_Substring"
    r"|_PyUnicode_FromASCII|PyDict_New|subtype_dealloc|object_dealloc|PyCMethod_New"
    r"|meth_dealloc|method_dealloc"
)
"""Making and freeing Python objects (CPython's allocator, the glibc one, deallocators)."""

LOOKUP = re.compile(
    r"dict_lookup|lookup_unicode|GetMethod|_PyType_Lookup|GetAttr|GetItemWithError"
    r"|CPyDict_Get|set_lookkey|siphash|PyObject_Hash|type_getattro|SetAttr|insertdict"
    r"|PyDict_SetItem|PySet_Contains|VectorcallMethod"
)
"""Looking things up by name or key: attributes, methods, dictionaries, sets."""

PATHS = (
    ("sendmsg (all of it)", "__libc_sendmsg"),
    ("  delivery to the receiving socket (loopback)", "__udp_enqueue_schedule_skb"),
    ("  preempted on the way out of a system call (sendmsg mostly)", "exit_to_user_mode_loop"),
    ("epoll_pwait (sleeping and waking)", "epoll_pwait"),
    ("recvmsg", "__libc_recvmsg"),
)
"""Kernel paths read from the --children report: (what, symbol)."""


def label(dso: str) -> str:
    """A library's name as the report prints it (mypyc's module has a hash for a name)."""
    if "__mypyc" in dso:
        return "sipdispatch, compiled (mypyc)"
    if dso.startswith("loop.cpython"):
        return "uvloop"
    return dso


def split(lines: Iterable[str]) -> tuple[dict[str, float], float, float]:
    """(share per library, ``kernel`` for the kernel's symbols; allocation share;
    lookup share) of a ``--no-children --sort dso,sym`` report, in percent."""
    by_dso: dict[str, float] = {}
    allocation = 0.0
    lookup = 0.0
    for line in lines:
        m = SELF_ROW.match(line)
        if m is None:
            continue
        share, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        kernel = kind == "k"
        key = "kernel" if kernel else label(dso)
        by_dso[key] = by_dso.get(key, 0.0) + share
        if not kernel:
            if ALLOCATION.search(sym):
                allocation += share
            elif LOOKUP.search(sym):
                lookup += share
    return by_dso, allocation, lookup


def paths(lines: Iterable[str]) -> dict[str, float]:
    """The inclusive share of each of :data:`PATHS` in a ``--children --sort sym``
    report (0 when absent)."""
    inclusive: dict[str, float] = {}
    for line in lines:
        m = CHILDREN_ROW.match(line)
        if m is not None:
            inclusive.setdefault(m.group(3), float(m.group(1)))
    return {what: inclusive.get(sym, 0.0) for what, sym in PATHS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", action="store_true", help="read a --children report")
    args = parser.parse_args(argv)
    lines = sys.stdin.read().splitlines()
    if args.paths:
        for what, share in paths(lines).items():
            print(f"{share:6.1f} %  {what}")
        return 0
    by_dso, allocation, lookup = split(lines)
    for dso, share in sorted(by_dso.items(), key=lambda item: -item[1]):
        if share >= 0.1:
            print(f"{share:6.1f} %  {dso}")
    print(f"{allocation:6.1f} %  of it making and freeing Python objects (user space)")
    print(f"{lookup:6.1f} %  of it lookups by name or key (user space)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
