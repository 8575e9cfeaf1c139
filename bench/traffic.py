"""The calls: two sipp gateways and the sipp caller, run with the bench's scenarios
(bench/sipp/) through the sipp helper the integration tests use
(tests/integration/sippctl.py; the repo root is on the path, as for the tests)."""

from __future__ import annotations

import contextlib
import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration import sippctl

from . import loopcap
from .common import HOST, READY_TIMEOUT, SIPP_DIR, BenchError, log, wait_for
from .processes import Processes
from .procstat import udp_port_bound

RECV_TIMEOUT_MS = 10_000
"""A caller waiting this long for a response counts the call as failed (sipp -recv_timeout)."""
OVERRUN_GRACE = 15.0
"""Seconds a caller may run past its own -timeout before it is stopped."""
SERVICE = "service"
"""The user part of the caller's request URI (sipp's own default)."""


@dataclass
class UacResult:
    """What one sipp caller run reported."""

    rate: float
    calls: int
    ok: int = 0
    failed: int = 0
    retrans: int = 0
    achieved: float = 0.0
    elapsed: float = 0.0
    rtd_ms: list[float] = field(default_factory=list)
    exit_code: int = 0
    timing: loopcap.Timing | None = None
    caller_cpu_s: float = float("nan")
    """CPU time of the sipp caller itself (is the harness the limit?)."""
    errors: list[tuple[str, int]] = field(default_factory=list)
    """sipp's reasons for failed calls (from -trace_err), most frequent first."""


def failure_kinds(stats: dict[str, str]) -> list[tuple[str, int]]:
    """sipp's counters of failed calls by cause (FailedTimeoutOnRecv(C) ...), non-zero ones."""
    kinds = [
        (name[len("Failed") : -len("(C)")], sippctl.stat_int(stats, name))
        for name in stats
        if name.startswith("Failed") and name.endswith("(C)") and name != "FailedCall(C)"
    ]
    return sorted([k for k in kinds if k[1]], key=lambda kv: kv[1], reverse=True)


def error_kinds(errors_log: str) -> list[tuple[str, int]]:
    """The kinds of error in sipp's error log (-trace_err), counted, most frequent first."""
    kinds: dict[str, int] = {}
    for line in errors_log.splitlines():
        m = re.match(r"\d{4}-\d\d-\d\d\s+\S+\s+\S+:\s*(.*)", line)
        if not m:
            continue
        text = re.sub(r"'[^']*'|\d+", "N", m.group(1))[:70]
        kinds[text] = kinds.get(text, 0) + 1
    return sorted(kinds.items(), key=lambda kv: kv[1], reverse=True)


class Sipp:
    """Starts sipp gateways and callers with the bench's scenarios."""

    def __init__(
        self, binary: str, procs: Processes, caller_port: int, per_call: bool = False
    ) -> None:
        self.binary = binary
        self.procs = procs
        # The caller's own port, given explicitly: sipp's default is 5060, where a real
        # proxy may be listening.
        self.caller_port = caller_port
        self.per_call = per_call
        """Each call from a UDP socket of its own (sipp -t un): many sources, which
        the kernel spreads over the proxy's workers."""

    def gateway(self, port: int, workdir: Path) -> sippctl.SippProcess:
        """A gateway on ``port`` (its logs in ``workdir``/gateway-PORT), stopped on exit."""
        logs = workdir / f"gateway-{port}"
        proc = sippctl.start_sipp_uas(
            SIPP_DIR / "uas.xml",
            port,
            host=HOST,
            workdir=logs,
            # Answer OPTIONS probes (and INFO, NOTIFY, UPDATE) with 200.
            extra_args=["-aa"],
            binary=self.binary,
        )
        self.procs.adopt(proc.proc)
        wait_for(
            lambda: udp_port_bound(port) or proc.poll() is not None,
            READY_TIMEOUT,
            f"sipp gateway on port {port}",
        )
        if proc.poll() is not None:
            raise BenchError(f"sipp gateway on port {port} exited; see sipp's logs in {logs}")
        return proc

    def call(
        self,
        port: int,
        rate: float,
        calls: int,
        workdir: Path,
        *,
        hold_ms: int = 0,
        limit: int | None = None,
        stat_every: int = 60,
        trace_rtt: bool = True,
        while_running: Callable[[Path], None] | None = None,
    ) -> UacResult:
        """Run ``calls`` calls at ``rate`` calls/s to 127.0.0.1:``port`` and wait for them.

        ``while_running`` is called with the path of sipp's stat file (rewritten every
        ``stat_every`` seconds) while the calls run.
        """
        ramp = calls / rate
        budget = int(ramp + hold_ms / 1000 + 45)
        started = time.monotonic()
        # The caller is the only child reaped meanwhile, so this difference is its CPU.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with sippctl.start_sipp(
            SIPP_DIR / "uac.xml",
            HOST,
            port,
            calls=calls,
            rate=rate,
            timeout=budget,
            service=SERVICE,
            local_port=self.caller_port,
            trace_msg=False,
            workdir=workdir,
            extra_args=[
                "-d",
                str(hold_ms),
                "-recv_timeout",
                str(RECV_TIMEOUT_MS),
                *(["-t", "un", "-max_socket", "10000"] if self.per_call else []),
            ],
            binary=self.binary,
            limit=limit or max(100, int(rate * 4)),
            stat_interval=stat_every,
            trace_rtt=trace_rtt,
            grace=OVERRUN_GRACE,
        ) as proc:
            if while_running is not None:
                while_running(proc.stat_path)
            done = proc.wait()
        caller_cpu = float("nan")
        code = done.returncode
        if done.timed_out:
            log(f"sipp caller overran {budget + OVERRUN_GRACE:g} s; stopped it")
            code = -1
        else:
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            caller_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        elapsed = time.monotonic() - started
        stats = done.stats
        res = UacResult(rate=rate, calls=calls, exit_code=code, elapsed=elapsed)
        res.caller_cpu_s = caller_cpu
        res.ok = sippctl.stat_int(stats, "SuccessfulCall(C)")
        res.failed = sippctl.stat_int(stats, "FailedCall(C)")
        res.retrans = sippctl.stat_int(stats, "Retransmissions(C)")
        with contextlib.suppress(ValueError):
            res.achieved = float(stats.get("CallRate(C)", "0") or 0)
        # Calls that never finished (sipp stopped by -timeout) count as failed.
        res.failed += max(0, calls - res.ok - res.failed)
        res.errors = failure_kinds(stats) or error_kinds(done.errors)
        res.rtd_ms = done.response_times_ms
        return res
