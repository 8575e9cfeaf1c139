"""sipdispatch against Kamailio on this machine: CPU per call, latency, max rate, memory.

Run through ``bench/run.sh`` (``--help`` lists the options). Everything runs on
127.0.0.1: two sipp gateways, the proxy under test (sipdispatch, then Kamailio when
it is installed, each freshly started for every measurement) and a sipp caller. The
same calls go straight to one gateway as the latency baseline. Nothing is installed:
missing tools are named with the command that installs them.

What is measured and how (BENCHMARKS.md has the long form):

- CPU per call: utime+stime of every thread of every process of the proxy, from
  /proc/PID/task/TID/stat, before and after the caller's run, divided by the calls
  that succeeded. With ``--settle S`` the S seconds after the run are counted as
  well (minus the idle rate measured before the run), which catches work a proxy
  defers to timers, such as freeing finished transactions.
- Latency: INVITE -> 200 per call from sipp's response-time measure (rtd, whole
  milliseconds) and, when a packet socket can be opened (root), from kernel
  timestamps on ``lo`` in microseconds (see loopcap.py). "Added" is the proxy's
  percentile minus the direct call's.
- Max rate: the highest rate (calls/s) at which a run has no failed call, no
  retransmission and reaches 95 % of the asked rate; found by stepping up by 1.5x,
  then bisecting.
- Memory: VmRSS of the proxy with N calls in progress minus VmRSS idle, divided by
  N; for Kamailio also its shared-memory pool use (kamcmd core.shmmem) and the
  proportional set size (Pss) of all its processes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import loopcap

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIPP_DIR = HERE / "sipp"
KAMAILIO_TEMPLATE = HERE / "kamailio" / "kamailio.cfg.in"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
"""Where Debian's kamailio package puts its modules (``--kamailio-modules``)."""

CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
WARMUP_CALLS = 100
"""Calls sent before each measurement so first-use costs (imports, caches) are not counted."""
READY_TIMEOUT = 20.0
"""Seconds a proxy or gateway may take to start listening."""
RECV_TIMEOUT_MS = 10_000
"""A caller waiting this long for a response counts the call as failed (sipp -recv_timeout)."""
IDLE_WINDOW = 5.0
"""Seconds over which a proxy's idle CPU rate is measured before a run."""
TRANSACTION_LIFETIME = 35.0
"""Seconds after which every transaction of a finished call is gone, whatever the proxy's
settings: 64*T1 = 32 s (RFC 3261 Timers J and L, sipdispatch with wait_timer = 32000)
plus a margin; sipdispatch's default wait_timer and Kamailio's wt_timer are 5 s."""
MIN_ACHIEVED = 0.95
"""A max-rate trial must reach this share of the asked rate."""

PROXIES = ("sipdispatch", "kamailio")
FLOOR = "floor"
"""bench/floor.py, the bare stateless forwarder (--floor): fixed-rate runs only."""
DIRECT = "direct"


def log(msg: str) -> None:
    """Progress goes to stderr; the result tables go to stdout."""
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """Something the user has to fix (a missing tool, a busy port...)."""


# -- /proc ------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Kamailio forks its workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_times(pids: Sequence[int]) -> tuple[int, int]:
    """(utime, stime) in clock ticks, summed over every thread of ``pids``."""
    user = system = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            # Fields after the command name, which may contain spaces: state is
            # field 3, utime 14 and stime 15 (proc(5)).
            rest = stat.rsplit(")", 1)[1].split()
            user += int(rest[11])
            system += int(rest[12])
    return user, system


def cpu_ticks(pids: Sequence[int]) -> int:
    """utime + stime, in clock ticks, of every thread of ``pids``."""
    return sum(cpu_times(pids))


def cpu_pressure_us() -> int | None:
    """Total µs some task waited for a CPU (/proc/pressure/cpu), None without PSI."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    m = re.search(r"total=(\d+)", first)
    return int(m.group(1)) if m else None


def cpu_ns(pids: Sequence[int]) -> int:
    """Time on CPU in ns of every thread of ``pids`` (/proc/PID/task/TID/schedstat).

    Used for the short idle-rate window, where clock ticks (10 ms) are too coarse.
    """
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` value of /proc/PID/status, such as VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {key}")


def pss_kb(pids: Sequence[int]) -> int:
    """Proportional set size of ``pids`` together (shared pages counted once)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


def udp_port_bound(port: int) -> bool:
    """Whether some socket is bound to UDP ``port`` (any address)."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                if line.split()[1].endswith(suffix):
                    return True
    return False


def check_ports_free(ports: Sequence[int]) -> None:
    busy = [p for p in ports if udp_port_bound(p)]
    if busy:
        raise BenchError(
            f"UDP port(s) {', '.join(map(str, busy))} already in use on this host; "
            "choose others with --port-base"
        )


# -- processes ---------------------------------------------------------------------------


class Processes:
    """Every process the bench starts; each in its own process group, all killed on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], cwd: Path, log_name: str) -> subprocess.Popen[bytes]:
        # The child keeps its own copy of the descriptor.
        with open(cwd / log_name, "wb") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        """SIGTERM the process group of ``proc``, then SIGKILL it if it lingers."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Kamailio's workers share its group and may outlive the main process.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc, grace=2.0)


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


# -- statistics --------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Spread:
    """Median and range of one figure over the repeated runs."""

    values: list[float]

    @property
    def median(self) -> float:
        vals = [v for v in self.values if v == v]
        return statistics.median(vals) if vals else float("nan")

    def show(self, fmt: str = "{:.0f}") -> str:
        vals = [v for v in self.values if v == v]
        if not vals:
            return "-"
        if len(vals) == 1:
            return fmt.format(vals[0])
        lo, hi = fmt.format(min(vals)), fmt.format(max(vals))
        return f"{fmt.format(self.median)} ({lo}..{hi})"


# -- sipp --------------------------------------------------------------------------------


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


def read_sipp_stats(path: Path) -> dict[str, str]:
    """The last line of a sipp ``-trace_stat`` file, by column name."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    names = lines[0].split(";")
    return dict(zip(names, lines[-1].split(";"), strict=False))


def stat_int(stats: dict[str, str], name: str) -> int:
    try:
        return int(float(stats.get(name, "0") or 0))
    except ValueError:
        return 0


def failure_kinds(stats: dict[str, str]) -> list[tuple[str, int]]:
    """sipp's counters of failed calls by cause (FailedTimeoutOnRecv(C) ...), non-zero ones."""
    kinds = [
        (name[len("Failed") : -len("(C)")], stat_int(stats, name))
        for name in stats
        if name.startswith("Failed") and name.endswith("(C)") and name != "FailedCall(C)"
    ]
    return sorted([k for k in kinds if k[1]], key=lambda kv: kv[1], reverse=True)


def sipp_errors(workdir: Path) -> list[tuple[str, int]]:
    """The kinds of error in sipp's ``*_errors.log`` files, counted, most frequent first."""
    kinds: dict[str, int] = {}
    for path in workdir.glob("*_errors.log"):
        for line in path.read_text(errors="replace").splitlines():
            m = re.match(r"\d{4}-\d\d-\d\d\s+\S+\s+\S+:\s*(.*)", line)
            if not m:
                continue
            text = re.sub(r"'[^']*'|\d+", "N", m.group(1))[:70]
            kinds[text] = kinds.get(text, 0) + 1
    return sorted(kinds.items(), key=lambda kv: kv[1], reverse=True)


class Sipp:
    """Starts sipp gateways and callers with the bench's scenarios."""

    def __init__(self, binary: str, procs: Processes, caller_port: int) -> None:
        self.binary = binary
        self.procs = procs
        # The caller's own port, given explicitly: sipp's default is 5060, where a real
        # proxy may be listening.
        self.caller_port = caller_port

    def gateway(self, port: int, workdir: Path) -> subprocess.Popen[bytes]:
        argv = [
            self.binary,
            "-sf",
            str(SIPP_DIR / "uas.xml"),
            "-aa",  # answer OPTIONS probes (and INFO, NOTIFY, UPDATE) with 200
            "-i",
            HOST,
            "-p",
            str(port),
            "-nostdin",
            "-trace_err",
        ]
        proc = self.procs.start(argv, workdir, f"gateway-{port}.log")
        wait_for(
            lambda: udp_port_bound(port) or proc.poll() is not None,
            READY_TIMEOUT,
            f"sipp gateway on port {port}",
        )
        if proc.poll() is not None:
            raise BenchError(
                f"sipp gateway on port {port} exited; see {workdir}/gateway-{port}.log"
            )
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
        """Run ``calls`` calls at ``rate`` calls/s to 127.0.0.1:``port`` and wait for them."""
        workdir.mkdir(parents=True, exist_ok=True)
        stat = workdir / "stat.csv"
        ramp = calls / rate
        budget = int(ramp + hold_ms / 1000 + 45)
        argv = [
            self.binary,
            "-sf",
            str(SIPP_DIR / "uac.xml"),
            f"{HOST}:{port}",
            "-i",
            HOST,
            "-p",
            str(self.caller_port),
            "-r",
            f"{rate:g}",
            "-m",
            str(calls),
            "-l",
            str(limit or max(100, int(rate * 4))),
            "-d",
            str(hold_ms),
            "-recv_timeout",
            str(RECV_TIMEOUT_MS),
            "-timeout",
            f"{budget}s",
            "-nostdin",
            "-trace_stat",
            "-stf",
            str(stat),
            "-fd",
            str(stat_every),
            "-trace_err",
        ]
        if trace_rtt:
            argv += ["-trace_rtt", "-rtt_freq", "1"]
        for old in workdir.glob("*_rtt.csv"):
            old.unlink()
        started = time.monotonic()
        # The caller is the only child reaped meanwhile, so this difference is its CPU.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = self.procs.start(argv, workdir, "caller.log")
        caller_cpu = float("nan")
        try:
            if while_running is not None:
                while_running(stat)
            code = proc.wait(budget + 15)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            caller_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        except subprocess.TimeoutExpired:
            log(f"sipp caller overran {budget + 15} s; stopping it")
            code = -1
        finally:
            self.procs.stop(proc)
        elapsed = time.monotonic() - started
        stats = read_sipp_stats(stat)
        res = UacResult(rate=rate, calls=calls, exit_code=code, elapsed=elapsed)
        res.caller_cpu_s = caller_cpu
        res.ok = stat_int(stats, "SuccessfulCall(C)")
        res.failed = stat_int(stats, "FailedCall(C)")
        res.retrans = stat_int(stats, "Retransmissions(C)")
        with contextlib.suppress(ValueError):
            res.achieved = float(stats.get("CallRate(C)", "0") or 0)
        # Calls that never finished (sipp stopped by -timeout) count as failed.
        res.failed += max(0, calls - res.ok - res.failed)
        res.errors = failure_kinds(stats) or sipp_errors(workdir)
        for rtt in workdir.glob("*_rtt.csv"):
            for line in rtt.read_text(errors="replace").splitlines()[1:]:
                parts = line.split(";")
                if len(parts) >= 3 and parts[2].strip() == "1":
                    with contextlib.suppress(ValueError):
                        res.rtd_ms.append(float(parts[1]))
        return res


# -- proxies -----------------------------------------------------------------------------


class Proxy:
    """A proxy under test: started fresh for each measurement."""

    name = ""

    def __init__(self, procs: Processes, port: int, workdir: Path) -> None:
        self.procs = procs
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def wait_ready(self) -> None:
        raise NotImplementedError

    def wait_log_line(self, marker: str) -> None:
        """Wait until the proxy's log says ``marker``; fail with its last lines if it exits."""
        logfile = self.workdir / f"{self.name}.log"

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                return True
            return marker in logfile.read_text(errors="replace")

        wait_for(ready, READY_TIMEOUT, marker)
        if self.proc is not None and self.proc.poll() is not None:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-3:]
            raise BenchError(f"{self.name} did not start: " + " | ".join(tail))

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = self.procs.start(self.argv(), self.workdir, f"{self.name}.log")
        try:
            self.wait_ready()
        except BenchError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited at start; see {self.workdir}/{self.name}.log")

    def pids(self) -> list[int]:
        assert self.proc is not None
        return process_tree(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None

    def exit_reason(self) -> str:
        code = self.proc.poll() if self.proc is not None else None
        if code is None:
            return "running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def log_tail(self, lines: int) -> list[str]:
        path = self.workdir / f"{self.name}.log"
        try:
            return path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return []

    def memory(self) -> dict[str, int]:
        """Memory figures in bytes (at least ``rss``)."""
        assert self.proc is not None
        try:
            return {"rss": status_kb(self.proc.pid, "VmRSS") * 1024}
        except OSError as e:
            raise BenchError(f"{self.name} is gone ({self.exit_reason()})") from e


def dispatcher_list(gateways: Sequence[int]) -> str:
    lines = ["# setid destination flags priority attrs"]
    lines += [f"1 sip:{HOST}:{gw} 0 0 weight=50" for gw in gateways]
    return "\n".join(lines) + "\n"


class Sipdispatch(Proxy):
    name = "sipdispatch"

    def __init__(
        self,
        procs: Processes,
        port: int,
        workdir: Path,
        python: str,
        gateways: Sequence[int],
        admin_port: int,
        workers: int,
        gc_stats: bool,
    ) -> None:
        super().__init__(procs, port, workdir)
        self.python = python
        self.gateways = gateways
        self.admin_port = admin_port
        self.workers = workers
        self.gc_stats = gc_stats
        self.gc_file = workdir / "gc.json"

    def config(self) -> str:
        """The TOML config: the same job as bench/kamailio/kamailio.cfg.in."""
        return f"""\
# Generated by bench/bench.py: the same job as bench/kamailio/kamailio.cfg.in.
[server]
listen = ["udp:{HOST}:{self.port}"]
record_route = true
workers = {self.workers}
log_level = "warning"

[admin]
listen = "{HOST}:{self.admin_port}"

[transaction]
fr_timer = 3000
fr_inv_timer = 30000

[dispatcher]
list_file = "dispatcher.list"
ping_interval = 10
ping_method = "OPTIONS"
probing_threshold = 3
inactive_threshold = 3
probing_mode = 1
ping_latency_stats = true
failover = true

[[route]]
set = 1
algorithm = "round-robin"
failover_on = ["5xx", "404", "408"]
mark_failed = "ip"
"""

    def argv(self) -> list[str]:
        (self.workdir / "dispatcher.list").write_text(dispatcher_list(self.gateways))
        (self.workdir / "sipdispatch.toml").write_text(self.config())
        command = ["run", "--config", "sipdispatch.toml"]
        if self.gc_stats:
            return [self.python, str(HERE / "gcstats.py"), str(self.gc_file), *command]
        return [self.python, "-m", "sipdispatch", *command]

    def gc_collections(self) -> list[tuple[int, float, float]] | None:
        """The collections recorded by bench/gcstats.py (after the proxy stopped)."""
        try:
            data = json.loads(self.gc_file.read_text())
        except (OSError, ValueError):
            return None
        return [(int(c[0]), float(c[1]), float(c[2])) for c in data["collections"]]

    def wait_ready(self) -> None:
        self.wait_log_line("sipdispatch ready")


class Floor(Proxy):
    """bench/floor.py: what the kernel, uvloop and the interpreter alone cost per call."""

    name = FLOOR

    def __init__(
        self, procs: Processes, port: int, workdir: Path, python: str, gateways: Sequence[int]
    ) -> None:
        super().__init__(procs, port, workdir)
        self.python = python
        self.gateways = gateways

    def argv(self) -> list[str]:
        ports = ",".join(map(str, self.gateways))
        return [self.python, str(HERE / "floor.py"), "--port", str(self.port), "--gateways", ports]

    def wait_ready(self) -> None:
        self.wait_log_line("floor ready")


class Kamailio(Proxy):
    name = "kamailio"

    def __init__(
        self,
        procs: Processes,
        port: int,
        workdir: Path,
        binary: str,
        modules: str,
        gateways: Sequence[int],
    ) -> None:
        super().__init__(procs, port, workdir)
        self.binary = binary
        self.modules = modules
        self.gateways = gateways
        self.ctl = workdir / "kamailio_ctl"

    def argv(self) -> list[str]:
        dslist = self.workdir / "dispatcher.list"
        dslist.write_text(dispatcher_list(self.gateways))
        cfg = KAMAILIO_TEMPLATE.read_text()
        for key, value in {
            "@PORT@": str(self.port),
            "@MPATH@": self.modules,
            "@DSLIST@": str(dslist),
            "@CTL@": str(self.ctl),
        }.items():
            cfg = cfg.replace(key, value)
        path = self.workdir / "kamailio.cfg"
        path.write_text(cfg)
        pidfile = self.workdir / "kamailio.pid"
        # -DD: stay in the foreground (workers still fork); -E: log to stderr.
        return [
            self.binary,
            "-DD",
            "-E",
            "-f",
            str(path),
            "-m",
            "256",
            "-M",
            "16",
            "-P",
            str(pidfile),
        ]

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                return True
            return udp_port_bound(self.port) and self.ctl.exists()

        wait_for(ready, READY_TIMEOUT, "kamailio listening")
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.workdir / "kamailio.log").read_text(errors="replace").splitlines()[-5:]
            raise BenchError("kamailio did not start: " + " | ".join(tail))
        # Workers are forked after the socket is bound; give them a moment.
        time.sleep(1.0)

    def shm_used(self) -> int | None:
        """real_used of Kamailio's shared-memory pool, in bytes (kamcmd core.shmmem)."""
        out = run_tool(["kamcmd", "-s", f"unix:{self.ctl}", "core.shmmem"])
        m = re.search(r"real_used:\s*(\d+)", out)
        return int(m.group(1)) if m else None

    def memory(self) -> dict[str, int]:
        out = super().memory()
        out["pss"] = pss_kb(self.pids()) * 1024
        shm = self.shm_used()
        if shm is not None:
            out["shm"] = shm
        return out


# -- measurements ------------------------------------------------------------------------


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


class Bench:
    """Owns the gateways, the work directory and the proxies."""

    def __init__(self, args: argparse.Namespace, procs: Processes, workdir: Path) -> None:
        self.args = args
        self.procs = procs
        self.workdir = workdir
        base: int = args.port_base
        self.sd_port = base
        self.kam_port = base + 1
        self.floor_port = base + 2
        self.gateways = [base + 11, base + 12]
        self.admin_port = base + 20
        self.caller_port = base + 30
        self.sipp = Sipp(args.sipp, procs, self.caller_port)
        self.kamailio: str | None = args.kamailio_bin
        self.python: str = args.python
        self.capture_why: str | None = None if args.capture else "disabled (--no-capture)"
        if args.capture:
            self.capture_why = loopcap.available()
        self._seq = 0
        self.gateway_pids: list[int] = []

    def proxies(self) -> list[str]:
        names = [self.args.only] if self.args.only else list(PROXIES)
        if "kamailio" in names and self.kamailio is None:
            names.remove("kamailio")
        return names

    def start_gateways(self) -> None:
        self.gateway_pids = [self.sipp.gateway(gw, self.workdir).pid for gw in self.gateways]

    def _dir(self, what: str) -> Path:
        self._seq += 1
        d = self.workdir / f"{self._seq:03d}-{what}"
        d.mkdir(parents=True)
        return d

    def make_proxy(self, name: str, workdir: Path) -> Proxy:
        if name == FLOOR:
            return Floor(self.procs, self.floor_port, workdir, self.python, self.gateways)
        if name == "sipdispatch":
            return Sipdispatch(
                self.procs,
                self.sd_port,
                workdir,
                self.python,
                self.gateways,
                self.admin_port,
                self.args.workers,
                self.args.gc_stats,
            )
        assert self.kamailio is not None
        return Kamailio(
            self.procs,
            self.kam_port,
            workdir,
            self.kamailio,
            self.args.kamailio_modules,
            self.gateways,
        )

    def warm_up(self, port: int, workdir: Path) -> None:
        res = self.sipp.call(port, 100, WARMUP_CALLS, workdir / "warmup", trace_rtt=False)
        if res.ok < WARMUP_CALLS:
            raise BenchError(
                f"warm-up through port {port}: {res.ok}/{WARMUP_CALLS} calls succeeded; "
                f"see {workdir}/warmup/caller.log"
            )

    # -- fixed rate ------------------------------------------------------------------

    def cpu_run(self, name: str, rate: float, calls: int, settle: float, capture: bool) -> CpuRun:
        """One measured run through ``name`` (a proxy or ``direct``)."""
        workdir = self._dir(f"{name}-{rate:g}cps")
        proxy: Proxy | None = None
        port = self.gateways[0]
        if name != DIRECT:
            proxy = self.make_proxy(name, workdir)
            proxy.start()
            port = proxy.port
        cap: loopcap.LoopCapture | None = None
        try:
            self.warm_up(port, workdir)
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
            gw_before = cpu_ticks(self.gateway_pids)
            psi_before, t_before = cpu_pressure_us(), time.monotonic()
            uac = self.sipp.call(port, rate, calls, workdir / "run")
            psi_after, t_after = cpu_pressure_us(), time.monotonic()
            gw_cpu = (cpu_ticks(self.gateway_pids) - gw_before) / CLK_TCK
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

    def compare(self, opts: Options) -> list[CpuRun]:
        runs: list[CpuRun] = []
        order = [*self.proxies(), *([FLOOR] if self.args.floor else []), DIRECT]
        for rep in range(1, opts.repeat + 1):
            for name in order:
                log(f"fixed rate {opts.rate:g} calls/s x {opts.calls}: {name}, run {rep}")
                run = self.cpu_run(name, opts.rate, opts.calls, opts.settle, opts.capture)
                runs.append(run)
                log("  " + describe_run(run))
                time.sleep(2.0)
        return runs

    # -- profile ---------------------------------------------------------------------

    def profile(self, rate: float, calls: int, outdir: Path, py_spy: str) -> Table:
        """One fixed-rate run of sipdispatch under py-spy; the functions by own time."""
        outdir.mkdir(parents=True, exist_ok=True)
        workdir = self._dir("sipdispatch-profile")
        proxy = self.make_proxy("sipdispatch", workdir)
        proxy.start()
        try:
            self.warm_up(proxy.port, workdir)
            assert proxy.proc is not None
            pid = str(proxy.proc.pid)
            seconds = str(int(calls / rate) + 3)
            # --nonblocking: do not stop the proxy to sample it (keeps its timing real);
            # 250 samples/s; --function: one entry per function rather than per line.
            common = [
                "record",
                "--pid",
                pid,
                "--duration",
                seconds,
                "--nonblocking",
                "--rate",
                "250",
            ]
            recorders = [
                self.procs.start(
                    [
                        py_spy,
                        *common,
                        "--function",
                        "--format",
                        "raw",
                        "-o",
                        str(outdir / "profile.txt"),
                    ],
                    workdir,
                    "py-spy-raw.log",
                ),
                self.procs.start(
                    [py_spy, *common, "--format", "flamegraph", "-o", str(outdir / "profile.svg")],
                    workdir,
                    "py-spy-svg.log",
                ),
            ]
            time.sleep(1.0)  # py-spy attaches
            uac = self.sipp.call(proxy.port, rate, calls, workdir / "run", trace_rtt=False)
            log(f"  profiled run: ok={uac.ok} failed={uac.failed}")
            for rec in recorders:
                try:
                    rec.wait(int(seconds) + 30)
                except subprocess.TimeoutExpired:
                    log("  py-spy overran; stopping it")
                self.procs.stop(rec)
        finally:
            proxy.stop()
        raw = outdir / "profile.txt"
        if not raw.exists():
            raise BenchError(f"py-spy wrote no profile; see {workdir}/py-spy-raw.log")
        table = own_time_table(raw.read_text(), 15)
        (outdir / "top.txt").write_text(render_text(table) + "\n")
        return table

    # -- max rate --------------------------------------------------------------------

    def trial(self, name: str, rate: int, seconds: float) -> tuple[bool, CpuRun]:
        calls = max(50, int(rate * seconds))
        run = self.cpu_run(name, rate, calls, 0.0, False)
        u = run.uac
        good = (
            u.failed == 0 and u.retrans == 0 and u.ok == calls and u.achieved >= MIN_ACHIEVED * rate
        )
        log(f"  {name} {rate} calls/s: {'ok' if good else 'FAIL'}: {describe_run(run)}")
        # Let the gateways' calls in timewait finish before the next trial.
        time.sleep(3.0)
        return good, run

    def max_rate(self, name: str, start: int, cap: int, seconds: float) -> MaxRate:
        """Step up by 1.5x until a trial fails, then bisect to within 5 %."""
        good: int | None = None
        bad: int | None = None
        good_run: CpuRun | None = None
        rate = start
        while rate <= cap:
            ok, run = self.trial(name, rate, seconds)
            if ok:
                good, good_run = rate, run
                rate = int(round(rate * 1.5, -1))
            else:
                bad = rate
                break
        if good is None:
            # Even the start rate fails: halve until one passes.
            rate = start // 2
            while rate >= 10:
                ok, run = self.trial(name, rate, seconds)
                if ok:
                    good, good_run = rate, run
                    break
                bad = rate
                rate //= 2
        if good is not None and bad is not None:
            while bad - good > max(10, good // 20):
                mid = int(round((good + bad) / 2, -1 if bad - good > 40 else 0))
                if mid in (good, bad):
                    break
                ok, run = self.trial(name, mid, seconds)
                if ok:
                    good, good_run = mid, run
                else:
                    bad = mid
        return MaxRate(name, good, bad, good_run, capped=bad is None)

    # -- memory ----------------------------------------------------------------------

    def memory(self, name: str, calls: int, rate: float, settle_after: float) -> MemoryRun:
        """Hold ``calls`` calls in progress through ``name``; sample memory idle and loaded."""
        workdir = self._dir(f"{name}-memory")
        proxy = self.make_proxy(name, workdir)
        proxy.start()
        try:
            self.warm_up(proxy.port, workdir)
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
                    return stat_int(read_sipp_stats(stat), "CurrentCall")

                def created() -> int:
                    return stat_int(read_sipp_stats(stat), "TotalCallCreated")

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

            uac = self.sipp.call(
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


@dataclass
class MaxRate:
    proxy: str
    good: int | None
    bad: int | None
    run: CpuRun | None
    capped: bool


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


# -- report ------------------------------------------------------------------------------


Table = tuple[list[str], list[list[str]]]


def render_text(table: Table) -> str:
    head, rows = table
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def render_md(table: Table) -> str:
    head, rows = table
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _by_proxy(runs: list[CpuRun]) -> dict[str, list[CpuRun]]:
    by: dict[str, list[CpuRun]] = {}
    for r in runs:
        by.setdefault(r.proxy, []).append(r)
    return by


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if a == a and b == b and b else "-"


def cpu_table(runs: list[CpuRun], opts: Options) -> Table:
    """CPU per call of each proxy, its ratio to Kamailio's, and the failures."""
    by = _by_proxy(runs)
    kam = Spread([r.us_per_call for r in by.get("kamailio", [])]).median
    kam_settled = Spread([r.us_per_call_settled for r in by.get("kamailio", [])]).median
    head = ["proxy", "CPU µs/call", "ratio to Kamailio"]
    if opts.settle:
        head += [f"CPU µs/call incl. {opts.settle:g} s after", "ratio"]
    head += ["kernel share", "failed/calls", "machine CPU pressure"]
    rows: list[list[str]] = []
    for name in (*PROXIES, FLOOR):
        rs = by.get(name)
        if not rs:
            continue
        cpu = Spread([r.us_per_call for r in rs])
        row = [name, cpu.show(), _ratio(cpu.median, kam)]
        if opts.settle:
            settled = Spread([r.us_per_call_settled for r in rs])
            row += [settled.show(), _ratio(settled.median, kam_settled)]
        failed = sum(r.uac.failed for r in rs)
        retrans = sum(r.uac.retrans for r in rs)
        fail_txt = f"{failed}/{sum(r.uac.calls for r in rs)}"
        if retrans:
            fail_txt += f" ({retrans} retrans)"
        died = sum(1 for r in rs if r.died)
        if died:
            fail_txt += f", proxy gone after {died} run(s)"
        row += [
            Spread([100 * r.sys_s / r.cpu_s for r in rs if r.cpu_s]).show() + " %",
            fail_txt,
            Spread([100 * r.pressure for r in rs]).show() + " %",
        ]
        rows.append(row)
    return head, rows


def latency_table(runs: list[CpuRun]) -> Table:
    """INVITE -> 200 through each proxy and direct; added = proxy minus direct."""
    by = _by_proxy(runs)
    use_cap = any(r.uac.timing is not None and r.uac.timing.e2e_us for r in runs)

    def pct(rs: list[CpuRun], p: float, what: str) -> list[float]:
        out = []
        for r in rs:
            if what == "rtd":
                out.append(percentile(r.uac.rtd_ms, p))
            elif r.uac.timing is not None:
                vals = r.uac.timing.e2e_us if what == "e2e" else r.uac.timing.transit_us
                out.append(percentile(vals, p))
        return out

    def added(rs: list[CpuRun], p: float, what: str) -> Spread:
        base = pct(by.get(DIRECT, []), p, what)
        if not base:
            return Spread([])
        b = statistics.median(base)
        return Spread([v - b for v in pct(rs, p, what)])

    what, unit = ("e2e", "µs") if use_cap else ("rtd", "ms")
    head = [
        "proxy",
        f"INVITE→200 p50 {unit}",
        f"p99 {unit}",
        f"added p50 {unit}",
        f"added p99 {unit}",
    ]
    if use_cap:
        head += ["proxy transit p50 µs", "p99 µs", "sipp rtd p50/p99 ms"]
    rows: list[list[str]] = []
    for name in [*PROXIES, FLOOR, DIRECT]:
        rs = by.get(name)
        if not rs:
            continue
        is_direct = name == DIRECT
        row = [
            "direct (baseline)" if is_direct else name,
            Spread(pct(rs, 50, what)).show(),
            Spread(pct(rs, 99, what)).show(),
            "-" if is_direct else added(rs, 50, what).show(),
            "-" if is_direct else added(rs, 99, what).show(),
        ]
        if use_cap:
            row += [
                "-" if is_direct else Spread(pct(rs, 50, "transit")).show(),
                "-" if is_direct else Spread(pct(rs, 99, "transit")).show(),
                Spread(pct(rs, 50, "rtd")).show() + " / " + Spread(pct(rs, 99, "rtd")).show(),
            ]
        rows.append(row)
    return head, rows


def gc_table(runs: list[CpuRun]) -> Table:
    """sipdispatch's garbage-collection pauses during the fixed-rate runs (--gc-stats)."""
    rs = [r for r in runs if r.gc is not None]
    head = [
        "proxy",
        "full collections",
        "longest pause ms",
        "young collections / of them gen 1",
        "longest gen 1 pause ms",
        "all pauses s",
        "GC µs/call",
        "share of CPU",
    ]
    if not rs:
        return head, []

    def all_pauses(r: CpuRun) -> float:
        return sum(sum(r.gc_in_run(g)) for g in (0, 1, 2))

    row = [
        "sipdispatch",
        Spread([float(len(r.gc_in_run(2))) for r in rs]).show(),
        Spread([1000 * max(r.gc_in_run(2), default=0.0) for r in rs]).show(),
        Spread([float(len(r.gc_in_run(0)) + len(r.gc_in_run(1))) for r in rs]).show()
        + " / "
        + Spread([float(len(r.gc_in_run(1))) for r in rs]).show(),
        Spread([1000 * max(r.gc_in_run(1), default=0.0) for r in rs]).show(),
        Spread([all_pauses(r) for r in rs]).show("{:.2f}"),
        Spread([1e6 * all_pauses(r) / r.uac.ok for r in rs if r.uac.ok]).show(),
        Spread([100 * all_pauses(r) / r.cpu_s for r in rs if r.cpu_s]).show() + " %",
    ]
    return head, [row]


def max_rate_table(results: list[MaxRate]) -> Table:
    head = [
        "proxy",
        "max rate calls/s (zero failed)",
        "first failing rate",
        "proxy CPU at max",
        "caller / gateways CPU at max",
    ]
    rows = []
    names = [n for n in PROXIES if any(r.proxy == n for r in results)]
    for name in names:
        rs = [r for r in results if r.proxy == name]
        goods = Spread([float(r.good) if r.good is not None else float("nan") for r in rs])
        bads = [str(r.bad) if r.bad is not None else "none (cap)" for r in rs]
        utils = Spread([r.run.utilisation * 100 if r.run else float("nan") for r in rs])
        caller = Spread(
            [
                100 * r.run.uac.caller_cpu_s / r.run.uac.elapsed
                for r in rs
                if r.run and r.run.uac.elapsed
            ]
        )
        gws = Spread(
            [
                100 * r.run.gateways_cpu_s / r.run.uac.elapsed
                for r in rs
                if r.run and r.run.uac.elapsed
            ]
        )
        capped = any(r.capped for r in rs)
        rows.append(
            [
                name,
                goods.show() + (" (search cap)" if capped else ""),
                ", ".join(bads),
                utils.show() + " % of a core",
                f"{caller.show()} % / {gws.show()} %",
            ]
        )
    return head, rows


def memory_table(results: list[MemoryRun], settle: float) -> Table:
    head = ["proxy", "calls held", "idle", "with calls", "bytes/call"]
    if settle:
        head.append(f"bytes/call {settle:g} s later")
    rows = []
    for name in PROXIES:
        rs = [r for r in results if r.proxy == name]
        if not rs:
            continue
        # A Kamailio process's VmRSS says little: its calls live in the shared pool.
        keys = ["shm", "pss"] if name == "kamailio" else ["rss"]
        for key in keys:
            if not all(key in r.idle for r in rs):
                continue
            label = {"rss": "VmRSS", "shm": "shm pool real_used", "pss": "Pss, all processes"}[key]
            row = [
                f"{name} ({label})",
                Spread([float(r.in_progress) for r in rs]).show(),
                Spread([r.idle[key] / 2**20 for r in rs]).show("{:.1f}") + " MiB",
                Spread([r.peak.get(key, float("nan")) / 2**20 for r in rs]).show("{:.1f}") + " MiB",
                Spread([r.per_call(key, r.peak) for r in rs]).show(),
            ]
            if settle:
                row.append(Spread([r.per_call(key, r.settled) for r in rs]).show())
            rows.append(row)
    return head, rows


def own_time_table(collapsed: str, top: int) -> Table:
    """Functions by own ("self") samples from py-spy's raw (collapsed stack) output."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # The first frames are "process ..." and "thread ..." labels.
        frames = [
            f for f in stack.split(";") if " (" in f and not f.startswith(("process", "thread"))
        ]
        if not frames:
            continue
        samples += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            total[f] = total.get(f, 0) + count
    head = ["#", "own %", "total %", "function (file:line)"]
    rows = []
    ranked = sorted(own.items(), key=lambda kv: kv[1], reverse=True)[:top]
    for i, (frame, n) in enumerate(ranked, 1):
        rows.append(
            [str(i), f"{100 * n / samples:.1f}", f"{100 * total[frame] / samples:.1f}", frame]
        )
    return head, rows


def machine_info(bench: Bench) -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    py = run_tool([bench.python, "-c", "import platform; print(platform.python_version())"])
    uv = run_tool([bench.python, "-c", "import uvloop; print(uvloop.__version__)"])
    sipp_v = run_tool([bench.args.sipp, "-v"])
    m = re.search(r"SIPp v?(\S+?)\.?(\s|$)", sipp_v)
    kam = "Kamailio not installed"
    if bench.kamailio:
        km = re.search(r"kamailio (\S+)", run_tool([bench.kamailio, "-v"]))
        kam = f"Kamailio {km.group(1) if km else '?'}"
    load = Path("/proc/loadavg").read_text().split()[:3]
    uv_text = uv if re.fullmatch(r"[0-9.]+", uv) else "not installed"
    return [
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: `{run_tool(['uname', '-a']) or ' '.join(platform.uname())}`",
        f"- CPU: {cpu}; nproc {os.cpu_count()}; load average at start {' '.join(load)}",
        f"- python {py or '?'} (`{bench.python}`), uvloop {uv_text}",
        f"- sipp {m.group(1) if m else '?'}; {kam}",
        f"- sipdispatch source: {source_version()}",
    ]


# -- main --------------------------------------------------------------------------------


def default_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def check_tools(args: argparse.Namespace) -> None:
    """Find sipp, kamailio and a Python that can import sipdispatch; install nothing."""
    sipp = shutil.which(args.sipp)
    if sipp is None:
        raise BenchError(
            "sipp is not installed; install it with: apt-get install sip-tester "
            "(or pass its path with --sipp)"
        )
    args.sipp = sipp
    kam = shutil.which(args.kamailio) if args.kamailio else None
    args.kamailio_bin = kam
    if kam is None:
        msg = "kamailio is not installed; install it with: apt-get install kamailio"
        if args.only == "kamailio":
            raise BenchError(msg)
        log(msg + " (skipping Kamailio)")
    elif not Path(args.kamailio_modules, "dispatcher.so").exists():
        raise BenchError(
            f"no dispatcher.so in {args.kamailio_modules}; pass the module directory "
            "with --kamailio-modules"
        )
    if args.only == "kamailio":
        return
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def imports(module: str) -> str | None:
        """None if ``module`` imports with --python, else the last line of the error."""
        try:
            done = subprocess.run(
                [args.python, "-c", f"import {module}"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        if done.returncode == 0:
            return None
        return (done.stderr.strip().splitlines() or ["failed"])[-1]

    why = imports("sipdispatch.server")
    if why is not None:
        raise BenchError(
            f"{args.python} cannot import sipdispatch ({why}); run ./run.sh --help once "
            "(it creates .venv), or pip install -e ., or pass --python"
        )
    if imports("uvloop") is not None:
        log(f"warning: no uvloop for {args.python}; sipdispatch runs on the default asyncio loop")


def snapshot_source(workdir: Path) -> Path:
    """Copy src/ so every run of this invocation measures the same code (others edit it)."""
    dest = workdir / "src"
    shutil.copytree(REPO / "src", dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    os.environ["PYTHONPATH"] = str(dest)
    return dest


def source_version() -> str:
    """Commit of the measured tree (read-only git), marked dirty if src/ has changes."""
    head = run_tool(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if not re.fullmatch(r"[0-9a-f]{4,40}", head):
        return "unknown"
    dirty = run_tool(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
    return head + (" + uncommitted changes in src/" if dirty else "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run.sh",
        description="CPU per call, added latency, max rate and memory of sipdispatch "
        "against Kamailio's dispatcher, on loopback with sipp.",
    )
    p.add_argument("--rate", type=float, default=500, help="calls/s of the fixed-rate runs (500)")
    p.add_argument("--calls", type=int, default=5000, help="calls per fixed-rate run (5000)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement (3)")
    p.add_argument("--only", choices=PROXIES, help="measure one proxy only")
    p.add_argument(
        "--floor",
        action="store_true",
        help="also run the fixed-rate calls through bench/floor.py, a bare stateless "
        "Python forwarder on uvloop: the part of the cost no proxy code can remove",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=40.0,
        help="also count the proxy's CPU for this many seconds after each fixed-rate run, "
        "idle rate subtracted, so that the expiry of finished transactions (5 s) is "
        "counted (40; 0 = only the run itself)",
    )
    p.add_argument(
        "--max-rate", action="store_true", help="search the highest rate with no failure"
    )
    p.add_argument("--memory", action="store_true", help="measure bytes per call held")
    p.add_argument(
        "--all", action="store_true", help="fixed-rate comparison, --max-rate and --memory"
    )
    p.add_argument(
        "--compare", action="store_true", help="with --max-rate/--memory, also the fixed-rate runs"
    )
    p.add_argument("--search-start", type=int, default=250, help="first rate of the search (250)")
    p.add_argument("--search-cap", type=int, default=8000, help="highest rate tried (8000)")
    p.add_argument("--search-seconds", type=float, default=10, help="length of a trial (10 s)")
    p.add_argument("--memory-calls", type=int, default=10_000, help="calls held (10000)")
    p.add_argument("--memory-rate", type=float, default=500, help="rate to reach them (500)")
    p.add_argument(
        "--memory-settle",
        type=float,
        default=40,
        help="second sample this many seconds after the first (40; 0 = none)",
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="also one sipdispatch run at --rate under py-spy (pip install py-spy); writes "
        "DIR/profile.svg (flame graph), DIR/profile.txt (collapsed stacks), DIR/top.txt",
    )
    p.add_argument("--write", action="store_true", help="append the results to BENCHMARKS.md")
    p.add_argument(
        "--port-base",
        type=int,
        default=35060,
        help="UDP ports: sipdispatch BASE, Kamailio BASE+1, floor BASE+2, gateways BASE+11 "
        "and BASE+12, sipdispatch admin (TCP) BASE+20, caller BASE+30 (35060)",
    )
    p.add_argument(
        "--gc-stats",
        action="store_true",
        help="run sipdispatch under bench/gcstats.py and report its garbage-collection pauses",
    )
    p.add_argument("--workers", type=int, default=1, help="sipdispatch server.workers (1)")
    p.add_argument(
        "--no-capture",
        dest="capture",
        action="store_false",
        help="no microsecond latency from a packet socket on lo",
    )
    p.add_argument(
        "--python",
        default=default_python(),
        help="Python that runs sipdispatch (default: .venv/bin/python if present)",
    )
    p.add_argument("--sipp", default="sipp", help="sipp binary")
    p.add_argument("--kamailio", default="kamailio", help="kamailio binary ('' = skip Kamailio)")
    p.add_argument("--kamailio-modules", default=KAMAILIO_MODULES, help="Kamailio module directory")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    return p


@contextlib.contextmanager
def terminating_signals() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP unwind the stack, so the finally blocks clean up.

    SIGINT is set explicitly: a shell starts background jobs with it ignored, and
    Python then leaves it ignored.
    """

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def emit(out: IO[str], title: str, table: Table, notes: list[str]) -> str:
    """Print a table; return its Markdown for BENCHMARKS.md."""
    print(f"\n{title}\n", file=out)
    print(render_text(table), file=out)
    for n in notes:
        print(f"  {n}", file=out)
    md = [f"#### {title}", "", render_md(table), ""]
    md += [f"- {n}" for n in notes]
    return "\n".join(md) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.all:
        args.max_rate = args.memory = args.compare = True
    do_compare = args.compare or not (args.max_rate or args.memory or args.profile)
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="sipdispatch-bench-"))
    sections: list[str] = []
    try:
        with terminating_signals():
            check_tools(args)
            snapshot_source(workdir)
            bench = Bench(args, procs, workdir)
            check_ports_free(
                [
                    bench.sd_port,
                    bench.kam_port,
                    bench.floor_port,
                    *bench.gateways,
                    bench.caller_port,
                ]
            )
            info = machine_info(bench)
            log(f"work directory {workdir}")
            if args.capture and bench.capture_why:
                log(f"microsecond latency off: {bench.capture_why}; using sipp's ms figures")
            bench.start_gateways()
            opts = Options(
                args.rate,
                args.calls,
                args.repeat,
                args.settle,
                args.capture and bench.capture_why is None,
            )
            if do_compare:
                runs = bench.compare(opts)
                notes = [
                    f"{args.calls} calls at {args.rate:g} calls/s per run, {args.repeat} runs "
                    "of each, interleaved, each on a freshly started proxy; median (min..max)",
                    "CPU µs/call: utime+stime of all the proxy's processes and threads "
                    "(/proc/PID/task/*/stat) over the caller's run, per successful call",
                    "kernel share: stime / (utime+stime); machine CPU pressure: share of the "
                    "run in which some task waited for a CPU (/proc/pressure/cpu), i.e. how busy "
                    "the machine was",
                ]
                if opts.settle:
                    notes.append(
                        f"incl. {opts.settle:g} s after: plus the proxy's CPU in the "
                        f"{opts.settle:g} s after the run, minus its idle rate, which counts "
                        "work deferred to timers (ending transactions)"
                    )
                sections.append(
                    emit(sys.stdout, "Fixed rate: CPU per call", cpu_table(runs, opts), notes)
                )
                notes = [
                    "INVITE→200 per call; added = the proxy's percentile minus the direct "
                    "call's (caller straight to one gateway at the same rate)",
                ]
                if opts.capture:
                    notes.append(
                        "µs figures from kernel timestamps of the packets on lo "
                        "(bench/loopcap.py); proxy transit = time the proxy held the INVITE "
                        "plus the 200; sipp's own rtd only has a 4 ms step here"
                    )
                sections.append(emit(sys.stdout, "Fixed rate: latency", latency_table(runs), notes))
                if args.gc_stats:
                    notes = [
                        "collections timed with gc.callbacks (bench/gcstats.py) during the "
                        "caller's run; pauses are wall time, so on a busy machine they include "
                        "time the process waited for a CPU",
                    ]
                    sections.append(
                        emit(sys.stdout, "sipdispatch garbage collection", gc_table(runs), notes)
                    )
            if args.max_rate:
                results = []
                for rep in range(1, args.repeat + 1):
                    for name in bench.proxies():
                        log(f"max-rate search: {name}, run {rep}")
                        results.append(
                            bench.max_rate(
                                name, args.search_start, args.search_cap, args.search_seconds
                            )
                        )
                notes = [
                    f"trials of {args.search_seconds:g} s; a rate passes with no failed call, no "
                    f"retransmission and >= {MIN_ACHIEVED:.0%} of the asked rate reached; "
                    "x1.5 steps from "
                    f"{args.search_start}, then bisection to 5 %; {args.repeat} searches",
                    "CPU at max: CPU time of the proxy (all its processes), of the sipp caller and "
                    "of the two sipp gateways over the trial's wall time; 100 % = one core. When "
                    "the harness is near a core, the limit may be the harness, not the proxy",
                ]
                sections.append(emit(sys.stdout, "Max rate", max_rate_table(results), notes))
            if args.memory:
                mem: list[MemoryRun] = []
                for rep in range(1, args.repeat + 1):
                    for name in bench.proxies():
                        log(f"memory: {name}, run {rep}")
                        mem.append(
                            bench.memory(
                                name, args.memory_calls, args.memory_rate, args.memory_settle
                            )
                        )
                notes = [
                    f"{args.memory_calls} calls set up at {args.memory_rate:g} calls/s and held "
                    "(sipp pause between ACK and BYE); bytes/call = (with calls - idle) / calls "
                    "in progress",
                    f"idle: {TRANSACTION_LIFETIME:g} s after {WARMUP_CALLS} warm-up calls (no "
                    "transaction left); 'with calls': 2 s after the last call was answered",
                    "Kamailio: shm = real_used of its shared-memory pool (kamcmd core.shmmem), "
                    "where transactions live; Pss = proportional set size of all its processes "
                    "(/proc/PID/smaps_rollup)",
                ]
                if args.memory_settle:
                    notes.append(
                        f"'{args.memory_settle:g} s later': same calls still up, but the "
                        "transactions that set them up have ended (wait_timer, 5 s); what is left "
                        "is per-dialog state plus memory not given back"
                    )
                sections.append(
                    emit(sys.stdout, "Memory", memory_table(mem, args.memory_settle), notes)
                )
            if args.profile is not None:
                py_spy = shutil.which("py-spy")
                if py_spy is None:
                    raise BenchError("py-spy is not installed; install it with: pip install py-spy")
                log(f"profile: sipdispatch at {args.rate:g} calls/s x {args.calls} under py-spy")
                table = bench.profile(args.rate, args.calls, args.profile, py_spy)
                notes = [
                    f"py-spy, {args.calls} calls at {args.rate:g} calls/s; own = samples in the "
                    "function itself (C code it calls included), total = with its callees; "
                    f"flame graph in {args.profile}/profile.svg",
                ]
                sections.append(
                    emit(sys.stdout, "sipdispatch profile: top functions by own time", table, notes)
                )
            if args.write and sections:
                write_benchmarks(info, sys.argv[1:] if argv is None else list(argv), sections)
        return 0
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        args.keep = True  # the logs tell what went wrong
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def write_benchmarks(info: list[str], argv: list[str], sections: list[str]) -> None:
    stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    command = " ".join(["bench/run.sh", *argv])
    block = [f"### {stamp}", "", f"`{command}`", ""]
    block += [*info, "", *sections]
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    if not text.endswith("\n"):
        text += "\n"
    BENCHMARKS_MD.write_text(text + "\n" + "\n".join(block))
    log(f"appended the results to {BENCHMARKS_MD}")


if __name__ == "__main__":
    sys.exit(main())
