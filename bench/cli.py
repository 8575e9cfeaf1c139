"""The command line of ``bench/run.sh``: its options, and one invocation from the
checks of the tools to the tables (and BENCHMARKS.md with ``--write``), every process
it started stopped at the end, Ctrl-C included."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .common import PROXIES, BenchError, log
from .fixedrate import Options, compare
from .harness import WARMUP_CALLS, Bench
from .machine import machine_info, snapshot_source
from .maxrate import MIN_ACHIEVED, max_rate
from .memory import TRANSACTION_LIFETIME, MemoryRun, memory
from .processes import Processes
from .procstat import check_ports_free
from .profiling import profile
from .proxies import KAMAILIO_MODULES
from .report import (
    cpu_table,
    emit,
    gc_table,
    latency_table,
    max_rate_table,
    memory_table,
    write_benchmarks,
)
from .tools import check_tools, default_python


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
        default=15060,
        help="UDP ports: sipdispatch BASE, Kamailio BASE+1, floor BASE+2, gateways BASE+11 "
        "and BASE+12, sipdispatch admin (TCP) BASE+20, caller BASE+30 (15060: below the "
        "kernel's ephemeral ports and the tests' ports)",
    )
    p.add_argument(
        "--gc-stats",
        action="store_true",
        help="run sipdispatch under bench/gcstats.py and report its garbage-collection pauses",
    )
    p.add_argument(
        "--workers",
        type=_worker_counts,
        default=[1],
        help="sipdispatch server.workers (1); a list such as 1,2 measures each, interleaved, "
        "as sipdispatch-1w, sipdispatch-2w (with the calls each worker handled)",
    )
    p.add_argument(
        "--hep",
        action="store_true",
        help="also measure sipdispatch-hep and sipdispatch-heptcp: sipdispatch with "
        "[capture] hep copying every message to a local UDP sink, and over TCP to a local "
        "reader, interleaved with plain sipdispatch",
    )
    p.add_argument(
        "--ladder",
        action="store_true",
        help="also measure sipdispatch-noladder: sipdispatch with [capture] ladder = 0, "
        "interleaved with plain sipdispatch (whose ladder of failed calls is on)",
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="Redis of the cluster with --cluster (redis://127.0.0.1:6379/0)",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="sipdispatch joins a cluster of the run's own even with one worker, on the "
        "same Redis as several workers use: what being clustered costs per call",
    )
    p.add_argument(
        "--algorithm",
        default="round-robin",
        help="sipdispatch's [[route]] algorithm (round-robin); e.g. call-load for algorithm "
        "10, whose reservations go to Redis with --cluster. Kamailio keeps its config's",
    )
    p.add_argument(
        "--caller-sockets",
        choices=("one", "per-call"),
        help="the sipp caller's UDP sockets: 'one' (the default: all calls from one port, as "
        "an SBC sends them) or 'per-call' (sipp -t un)",
    )
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


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number, or numbers with commas") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: each at least 1")
    return counts


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
                runs = compare(bench, opts)
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
                            max_rate(
                                bench, name, args.search_start, args.search_cap, args.search_seconds
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
                            memory(
                                bench, name, args.memory_calls, args.memory_rate, args.memory_settle
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
                table = profile(bench, args.rate, args.calls, args.profile, py_spy)
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
