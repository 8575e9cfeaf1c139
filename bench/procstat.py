"""What the bench reads from /proc: the processes of a proxy, their CPU time and
memory, how busy the machine is, and which UDP ports are bound (proc(5))."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from .common import BenchError

CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_fields(stat: str) -> list[str]:
    """The fields of a /proc/PID/stat (or task/TID/stat) line after the command name,
    which is in parentheses and may contain spaces and parentheses itself: the first
    is the state (field 3 of proc(5)), then the parent's pid (4), ... utime (14) and
    stime (15) at indexes 11 and 12."""
    return stat.rsplit(")", 1)[1].split()


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
        ppid = int(stat_fields(stat)[1])
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
            rest = stat_fields(stat)
            user += int(rest[11])
            system += int(rest[12])
    return user, system


def cpu_ticks(pids: Sequence[int]) -> int:
    """utime + stime, in clock ticks, of every thread of ``pids``."""
    return sum(cpu_times(pids))


def psi_total_us(pressure: str) -> int | None:
    """The ``total=`` µs of the first ("some") line of a /proc/pressure file."""
    lines = pressure.splitlines()
    if not lines:
        return None
    m = re.search(r"total=(\d+)", lines[0])
    return int(m.group(1)) if m else None


def cpu_pressure_us() -> int | None:
    """Total µs some task waited for a CPU (/proc/pressure/cpu), None without PSI."""
    try:
        return psi_total_us(Path("/proc/pressure/cpu").read_text())
    except OSError:
        return None


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


def udp_sockets(table: str) -> dict[int, tuple[int, int]]:
    """Port -> (bytes waiting to be read, datagrams dropped so far) of a /proc/net/udp
    (or udp6) table; the sums where several sockets share a port. A line cut short
    still names its port (with nothing queued or dropped)."""
    out: dict[int, tuple[int, int]] = {}
    for line in table.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 2:
            continue
        port = int(cols[1].rsplit(":", 1)[1], 16)
        rx = int(cols[4].split(":")[1], 16) if len(cols) > 4 else 0
        drops = int(cols[12]) if len(cols) > 12 else 0
        queued, dropped = out.get(port, (0, 0))
        out[port] = (queued + rx, dropped + drops)
    return out


def udp_table_has_port(table: str, port: int) -> bool:
    """Whether a /proc/net/udp (or udp6) table has a socket bound to ``port``."""
    return port in udp_sockets(table)


def machine_ticks() -> tuple[int, int, int]:
    """(busy, steal, total) clock ticks of all CPUs from /proc/stat's ``cpu`` line."""
    cols = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (cols + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy, steal, busy + steal + idle + iowait


def udp_port_bound(port: int) -> bool:
    """Whether some socket is bound to UDP ``port`` (any address)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            if udp_table_has_port(Path(table).read_text(), port):
                return True
    return False


def check_ports_free(ports: Sequence[int]) -> None:
    busy = [p for p in ports if udp_port_bound(p)]
    if busy:
        raise BenchError(
            f"UDP port(s) {', '.join(map(str, busy))} already in use on this host; "
            "choose others with --port-base"
        )
