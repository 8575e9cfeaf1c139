"""Memory per call: VmRSS of the proxy with N calls in progress minus VmRSS idle,
divided by N; for Kamailio also its shared-memory pool use (kamcmd core.shmmem) and
the proportional set size (Pss) of all its processes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.sippctl import read_stats, stat_int

from .common import BenchError, log, wait_for
from .harness import Bench
from .traffic import UacResult

TRANSACTION_LIFETIME = 35.0
"""Seconds after which every transaction of a finished call is gone, whatever the proxy's
settings: 64*T1 = 32 s (RFC 3261 Timers J and L, sipdispatch with wait_timer = 32000)
plus a margin; sipdispatch's default wait_timer and Kamailio's wt_timer are 5 s."""


@dataclass
class MemoryRun:
    proxy: str
    calls: int
    rate: float
    idle: dict[str, int]
    peak: dict[str, int] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)
    in_progress: int = 0
    settled_in_progress: int = 0
    ramp_s: float = 0.0
    uac: UacResult | None = None

    def per_call(self, key: str, at: dict[str, int]) -> float:
        if key not in at or key not in self.idle or not self.in_progress:
            return float("nan")
        return (at[key] - self.idle[key]) / self.in_progress


def fmt_mem(m: dict[str, int]) -> str:
    return ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in m.items())


def memory(bench: Bench, name: str, calls: int, rate: float, settle_after: float) -> MemoryRun:
    """Hold ``calls`` calls in progress through ``name``; sample memory idle and loaded."""
    workdir = bench.new_dir(f"{name}-memory")
    proxy = bench.make_proxy(name, workdir)
    proxy.start()
    try:
        bench.warm_up(proxy.port, workdir)
        # Idle means no transaction left from the warm-up calls either.
        time.sleep(TRANSACTION_LIFETIME)
        idle = proxy.memory()
        log(f"  idle: {fmt_mem(idle)}")
        ramp = calls / rate
        hold_ms = int((ramp + settle_after + 10) * 1000)
        result = MemoryRun(name, calls, rate, idle=idle)

        def sample(stat: Path) -> None:
            t0 = time.monotonic()

            def current() -> int:
                return stat_int(read_stats(stat), "CurrentCall")

            def created() -> int:
                return stat_int(read_stats(stat), "TotalCallCreated")

            # sipp writes its counters every second (-fd 1).
            try:
                wait_for(lambda: created() >= calls, ramp * 3 + 30, "the calls", 0.5)
            except BenchError:
                log(f"  only {created()} of {calls} calls were placed in time")
            result.ramp_s = time.monotonic() - t0
            time.sleep(2.0)  # the last 200s and ACKs
            result.in_progress = current()
            result.peak = proxy.memory()
            log(f"  {result.in_progress} calls in progress: {fmt_mem(result.peak)}")
            if settle_after > 0:
                time.sleep(max(0.0, settle_after - 2.0))
                result.settled = proxy.memory()
                result.settled_in_progress = current()
                log(f"  {settle_after:g} s later: {fmt_mem(result.settled)}")

        uac = bench.sipp.call(
            proxy.port,
            rate,
            calls,
            workdir / "run",
            hold_ms=hold_ms,
            limit=calls + 1000,
            stat_every=1,
            trace_rtt=False,
            while_running=sample,
        )
        result.uac = uac
        if uac.failed:
            log(f"  warning: {uac.failed} of {calls} calls failed")
        return result
    finally:
        proxy.stop()
