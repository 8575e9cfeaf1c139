"""One fixed-rate run of sipdispatch under py-spy (``--profile DIR``): a flame graph,
the collapsed stacks, and the functions by own time."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .common import BenchError, log
from .harness import Bench
from .report import Table, render_text


def profile(bench: Bench, rate: float, calls: int, outdir: Path, py_spy: str) -> Table:
    """One fixed-rate run of sipdispatch under py-spy; the functions by own time."""
    outdir.mkdir(parents=True, exist_ok=True)
    workdir = bench.new_dir("sipdispatch-profile")
    proxy = bench.make_proxy("sipdispatch", workdir)
    proxy.start()
    try:
        bench.warm_up(proxy.port, workdir)
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
            bench.procs.start(
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
            bench.procs.start(
                [py_spy, *common, "--format", "flamegraph", "-o", str(outdir / "profile.svg")],
                workdir,
                "py-spy-svg.log",
            ),
        ]
        time.sleep(1.0)  # py-spy attaches
        uac = bench.sipp.call(proxy.port, rate, calls, workdir / "run", trace_rtt=False)
        log(f"  profiled run: ok={uac.ok} failed={uac.failed}")
        for rec in recorders:
            try:
                rec.wait(int(seconds) + 30)
            except subprocess.TimeoutExpired:
                log("  py-spy overran; stopping it")
            bench.procs.stop(rec)
    finally:
        proxy.stop()
    raw = outdir / "profile.txt"
    if not raw.exists():
        raise BenchError(f"py-spy wrote no profile; see {workdir}/py-spy-raw.log")
    table = own_time_table(raw.read_text(), 15)
    (outdir / "top.txt").write_text(render_text(table) + "\n")
    return table


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
