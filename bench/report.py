"""The report: the result tables, printed as text and written as Markdown to
BENCHMARKS.md, in the format earlier results there have."""

from __future__ import annotations

import datetime as dt
import statistics
from typing import IO

from .common import BENCHMARKS_MD, DIRECT, log, ordered
from .fixedrate import CpuRun, Options
from .maxrate import MaxRate
from .memory import MemoryRun
from .spread import Spread, percentile

Table = tuple[list[str], list[list[str]]]
"""A table: its head and its rows, each a list of cells."""


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
    split = any(r.split for r in runs)
    if split:
        head.append("calls per worker")
    rows: list[list[str]] = []
    for name in ordered([n for n in by if n != DIRECT]):
        rs = by[name]
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
        if split:
            row.append(_split(rs))
        rows.append(row)
    return head, rows


def _split(rs: list[CpuRun]) -> str:
    """Each worker's share of the INVITEs, over the runs: ``48 / 52 %``."""
    totals: dict[str, float] = {}
    for r in rs:
        for worker, n in r.split.items():
            totals[worker] = totals.get(worker, 0.0) + n
    whole = sum(totals.values())
    if not whole:
        return "-"
    return " / ".join(f"{100 * totals[w] / whole:.0f}" for w in sorted(totals)) + " %"


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
    for name in ordered(list(by)):
        rs = by[name]
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
    names = ordered([r.proxy for r in results])
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
    for name in ordered([r.proxy for r in results]):
        rs = [r for r in results if r.proxy == name]
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


def emit(out: IO[str], title: str, table: Table, notes: list[str]) -> str:
    """Print a table; return its Markdown for BENCHMARKS.md."""
    print(f"\n{title}\n", file=out)
    print(render_text(table), file=out)
    for n in notes:
        print(f"  {n}", file=out)
    md = [f"#### {title}", "", render_md(table), ""]
    md += [f"- {n}" for n in notes]
    return "\n".join(md) + "\n"


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
