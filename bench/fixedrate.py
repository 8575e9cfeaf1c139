"""The fixed-rate runs: CPU per call of each proxy (and the floor), and the latency it
adds over the direct call.

CPU per call: utime+stime of every thread of every process of the proxy, from
/proc/PID/task/TID/stat, before and after the caller's run, divided by the calls
that succeeded. With ``--settle S`` the S seconds after the run are counted as
well (minus the idle rate measured before the run), which catches work a proxy
defers to timers, such as freeing finished transactions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import loopcap
from .common import DIRECT, FLOOR, log
from .harness import Bench
from .procstat import CLK_TCK, cpu_ns, cpu_pressure_us, cpu_ticks, cpu_times
from .proxies import Proxy, Sipdispatch
from .spread import percentile
from .traffic import UacResult

IDLE_WINDOW = 5.0
"""Seconds over which a proxy's idle CPU rate is measured before a run."""


@dataclass
class CpuRun:
    """One fixed-rate run through a proxy (or direct)."""

    proxy: str
    uac: UacResult
    cpu_s: float = float("nan")
    settle_cpu_s: float = float("nan")
    settle_s: float = 0.0
    idle_rate: float = 0.0
    """Idle CPU seconds per second before the run."""
    sys_s: float = float("nan")
    """The part of cpu_s spent in the kernel (stime)."""
    gateways_cpu_s: float = float("nan")
    """CPU time of the two sipp gateways during the run."""
    died: str | None = None
    """Why the proxy was gone at the end of the run, if it was."""
    window: tuple[float, float] = (0.0, 0.0)
    """Start and end of the caller's run on the monotonic clock."""
    gc: list[tuple[int, float, float]] | None = None
    """sipdispatch's garbage collections (generation, start, seconds) with --gc-stats."""
    split: dict[str, float] = field(default_factory=dict)
    """With several workers: the INVITEs each worker handled, by its index (from the
    proxy's /metrics at the end of the run)."""
    pressure: float = float("nan")
    """Share of the run's wall time in which some task on the machine waited for a CPU
    (PSI "some"): how busy the machine was."""

    @property
    def us_per_call(self) -> float:
        if self.uac.ok == 0:
            return float("nan")
        return self.cpu_s * 1e6 / self.uac.ok

    @property
    def us_per_call_settled(self) -> float:
        if self.uac.ok == 0 or self.settle_s == 0:
            return float("nan")
        extra = self.settle_cpu_s - self.idle_rate * self.settle_s
        return (self.cpu_s + max(0.0, extra)) * 1e6 / self.uac.ok

    def gc_in_run(self, generation: int) -> list[float]:
        """Pauses of one generation's collections during the caller's run."""
        t0, t1 = self.window
        return [d for g, at, d in self.gc or [] if g == generation and t0 <= at <= t1]

    @property
    def utilisation(self) -> float:
        """Share of one core the proxy used during the run."""
        return self.cpu_s / self.uac.elapsed if self.uac.elapsed else float("nan")


@dataclass
class Options:
    rate: float
    calls: int
    repeat: int
    settle: float
    capture: bool


def cpu_run(
    bench: Bench, name: str, rate: float, calls: int, settle: float, capture: bool
) -> CpuRun:
    """One measured run through ``name`` (a proxy or ``direct``)."""
    workdir = bench.new_dir(f"{name}-{rate:g}cps")
    proxy: Proxy | None = None
    port = bench.gateways[0]
    if name != DIRECT:
        proxy = bench.make_proxy(name, workdir)
        proxy.start()
        port = proxy.port
    cap: loopcap.LoopCapture | None = None
    try:
        bench.warm_up(port, workdir)
        pids: list[int] = proxy.pids() if proxy is not None else []
        idle_rate = 0.0
        if proxy is not None and settle > 0:
            t0, c0 = time.monotonic(), cpu_ns(pids)
            time.sleep(IDLE_WINDOW)
            idle_rate = (cpu_ns(pids) - c0) / 1e9 / (time.monotonic() - t0)
        if capture:
            cap = loopcap.LoopCapture(port)
            cap.start()
        before = cpu_times(pids)
        gw_before = cpu_ticks(bench.gateway_pids)
        psi_before, t_before = cpu_pressure_us(), time.monotonic()
        uac = bench.sipp.call(port, rate, calls, workdir / "run")
        psi_after, t_after = cpu_pressure_us(), time.monotonic()
        gw_cpu = (cpu_ticks(bench.gateway_pids) - gw_before) / CLK_TCK
        after_split = cpu_times(pids)
        after = sum(after_split)
        if cap is not None:
            drops = cap.stop()
            uac.timing = cap.timing(via_proxy=proxy is not None, drops=drops)
            cap = None
        run = CpuRun(name, uac, idle_rate=idle_rate, window=(t_before, t_after))
        run.gateways_cpu_s = gw_cpu
        if psi_before is not None and psi_after is not None:
            run.pressure = (psi_after - psi_before) / 1e6 / (t_after - t_before)
        if proxy is not None:
            run.cpu_s = (after - sum(before)) / CLK_TCK
            run.sys_s = (after_split[1] - before[1]) / CLK_TCK
            if settle > 0:
                time.sleep(settle)
                run.settle_s = settle
                run.settle_cpu_s = (cpu_ticks(pids) - after) / CLK_TCK
            if isinstance(proxy, Sipdispatch) and proxy.workers > 1:
                run.split = proxy.invites_by_worker()
            if not proxy.alive():
                run.died = proxy.exit_reason()
                log(f"  {name} was gone after the run ({run.died}); last lines of its log:")
                for line in proxy.log_tail(8):
                    log(f"    {line}")
    finally:
        if cap is not None:
            cap.stop()
        if proxy is not None:
            proxy.stop()
    if isinstance(proxy, Sipdispatch):
        run.gc = proxy.gc_collections()
    return run


def compare(bench: Bench, opts: Options) -> list[CpuRun]:
    runs: list[CpuRun] = []
    order = [*bench.proxies(), *([FLOOR] if bench.args.floor else []), DIRECT]
    for rep in range(1, opts.repeat + 1):
        for name in order:
            log(f"fixed rate {opts.rate:g} calls/s x {opts.calls}: {name}, run {rep}")
            run = cpu_run(bench, name, opts.rate, opts.calls, opts.settle, opts.capture)
            runs.append(run)
            log("  " + describe_run(run))
            time.sleep(2.0)
    return runs


def describe_run(run: CpuRun) -> str:
    u = run.uac
    parts = [f"ok={u.ok} failed={u.failed} retrans={u.retrans} achieved={u.achieved:.0f}/s"]
    if run.died:
        parts.append(f"PROXY GONE ({run.died})")
    if u.failed and u.errors:
        parts.append("failures: " + ", ".join(f"{text} {n}" for text, n in u.errors[:3]))
    if run.cpu_s == run.cpu_s:
        parts.append(
            f"cpu={run.cpu_s:.2f}s ({run.us_per_call:.0f} us/call, {run.utilisation:.0%} of a "
            f"core, sys {run.sys_s / run.cpu_s if run.cpu_s else 0:.0%})"
        )
    if u.elapsed and u.caller_cpu_s == u.caller_cpu_s:
        parts.append(
            f"caller {u.caller_cpu_s / u.elapsed:.0%}, gateways "
            f"{run.gateways_cpu_s / u.elapsed:.0%} of a core"
        )
    if run.pressure == run.pressure:
        parts.append(f"cpu pressure {run.pressure:.0%}")
    if run.gc is not None:
        full = run.gc_in_run(2)
        young = run.gc_in_run(0) + run.gc_in_run(1)
        gen1 = run.gc_in_run(1)
        parts.append(
            f"gc: {len(full)} full collections {sum(full):.2f}s (max {max(full, default=0):.3f}s), "
            f"{len(young)} young {sum(young):.2f}s (gen 1 max {max(gen1, default=0):.3f}s)"
        )
    if run.settle_s:
        parts.append(f"settled {run.us_per_call_settled:.0f} us/call")
    if u.rtd_ms:
        parts.append(
            f"rtd p50/p99={percentile(u.rtd_ms, 50):.0f}/{percentile(u.rtd_ms, 99):.0f} ms"
        )
    t = u.timing
    if t is not None and t.e2e_us:
        parts.append(
            f"e2e p50/p99={percentile(t.e2e_us, 50):.0f}/{percentile(t.e2e_us, 99):.0f} us"
        )
        if t.transit_us:
            parts.append(
                f"transit p50/p99={percentile(t.transit_us, 50):.0f}/"
                f"{percentile(t.transit_us, 99):.0f} us"
            )
        if t.drops:
            parts.append(f"capture drops={t.drops}")
    return " ".join(parts)
