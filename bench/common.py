"""What every part of the bench shares: where things are, the loopback address,
the names of what is measured, the progress log and the error the user has to fix."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIPP_DIR = HERE / "sipp"
KAMAILIO_TEMPLATE = HERE / "kamailio" / "kamailio.cfg.in"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"

HOST = "127.0.0.1"
HEP_VARIANT = "sipdispatch-hep"
"""sipdispatch with [capture] hep on, over UDP (--hep)."""
HEP_TCP_VARIANT = "sipdispatch-heptcp"
"""sipdispatch with [capture] hep on, over TCP (--hep)."""
NO_LADDER_VARIANT = "sipdispatch-noladder"
"""sipdispatch with ``[capture] ladder = 0`` (--ladder): what keeping the messages of
calls in progress for the console's ladder costs, against plain sipdispatch."""
READY_TIMEOUT = 20.0
"""Seconds a proxy or gateway may take to start listening."""

PROXIES = ("sipdispatch", "kamailio")
FLOOR = "floor"
"""bench/floor.py, the bare stateless forwarder (--floor): fixed-rate runs only."""
DIRECT = "direct"
"""The caller straight to one gateway: the latency baseline."""
WORKERS_SUFFIX = "w"
"""``sipdispatch-2w``: sipdispatch with ``server.workers = 2`` (``--workers 1,2``)."""


def workers_of(name: str) -> int:
    """The ``server.workers`` of a measured name (1 for plain ``sipdispatch``)."""
    base, _, count = name.partition("-")
    if base == "sipdispatch" and count.endswith(WORKERS_SUFFIX) and count[:-1].isdigit():
        return int(count[:-1])
    return 1


def base_of(name: str) -> str:
    """The proxy a measured name runs (``sipdispatch-2w`` -> ``sipdispatch``)."""
    return name.partition("-")[0] if name.startswith("sipdispatch-") else name


def ordered(names: Sequence[str]) -> list[str]:
    """Measured names in report order: sipdispatch (by workers), Kamailio, the floor,
    direct."""
    rank = {n: i for i, n in enumerate((*PROXIES, FLOOR, DIRECT))}
    unique = list(dict.fromkeys(names))
    return sorted(unique, key=lambda n: (rank.get(base_of(n), 99), workers_of(n)))


def log(msg: str) -> None:
    """Progress goes to stderr; the result tables go to stdout."""
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """Something the user has to fix (a missing tool, a busy port...)."""


def run_tool(argv: Sequence[str], timeout: float = 20.0) -> str:
    """Output of a short command (versions, kamcmd); '' when it fails."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def wait_for(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(interval)
