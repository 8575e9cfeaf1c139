"""A once-a-second record of who falls behind during a soak.

Each second it writes one line to ``samples.log`` in the soak's work directory: the
machine's busy and steal share of its CPUs and the CPU pressure (/proc/stat,
/proc/pressure/cpu; in some sandboxed kernels /proc/stat's machine line undercounts,
so the line also gives the watched processes' sum), each watched process's CPU share
in % of one CPU (/proc/PID/task/*/stat), and for
each watched UDP port the bytes waiting in its socket and the datagrams the kernel
dropped there since the last second (/proc/net/udp's ``rx_queue`` and ``drops``). A
socket whose queue grows while its process is short of CPU is the side that fell
behind; the report prints the seconds around every drop.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .procstat import CLK_TCK, cpu_pressure_us, cpu_ticks, machine_ticks, udp_sockets


@dataclass
class Sample:
    t: float
    busy: float
    steal: float
    pressure_ms: float
    cpu: dict[str, float]
    queued: dict[str, int]
    dropped: dict[str, int]

    def line(self) -> str:
        procs = " ".join(f"{name}={pct:.0f}%" for name, pct in self.cpu.items())
        watched = sum(self.cpu.values())
        socks = " ".join(
            f"{name}:q{self.queued.get(name, 0)}/d{self.dropped.get(name, 0)}"
            for name in self.queued
        )
        return (
            f"{self.t:7.1f} s machine {self.busy:.0f}% steal {self.steal:.0f}% "
            f"waited {self.pressure_ms:.0f} ms | watched {watched:.0f}%: {procs} | {socks}"
        )


@dataclass
class Watch:
    """Samples every second from :meth:`start` to :meth:`stop`.

    ``pids`` names the processes to watch and is called each second (a killed
    gateway comes back with a new pid); ``ports`` names the UDP ports."""

    path: Path
    pids: Callable[[], dict[str, int]]
    ports: dict[str, int]
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    # The previous second's readings, which each sample is the difference from.
    _at: float = 0.0
    _machine: tuple[int, int, int] = (0, 0, 0)
    _pressure: int = 0
    _ticks: dict[str, tuple[int, int]] = field(default_factory=dict)
    _drops: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self._at, self._machine, self._pressure = self._now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    @staticmethod
    def _now() -> tuple[float, tuple[int, int, int], int]:
        return time.monotonic(), machine_ticks(), cpu_pressure_us() or 0

    def _run(self) -> None:
        with self.path.open("a") as out:
            while not self._stop.wait(1.0):
                with contextlib.suppress(OSError, ValueError):
                    sample = self._sample()
                    self.samples.append(sample)
                    out.write(sample.line() + "\n")
                    out.flush()

    def _sample(self) -> Sample:
        now, machine, pressure = self._now()
        last_at, last_machine, last_pressure = self._at, self._machine, self._pressure
        self._at, self._machine, self._pressure = now, machine, pressure
        span = max(1, machine[2] - last_machine[2])
        cpu: dict[str, float] = {}
        for name, pid in self.pids().items():
            ticks = cpu_ticks([pid])
            before = self._ticks.get(name)
            if before is not None and before[0] == pid:
                cpu[name] = (ticks - before[1]) / CLK_TCK * 100 / max(1e-3, now - last_at)
            self._ticks[name] = (pid, ticks)
        socks = udp_sockets(Path("/proc/net/udp").read_text())
        queued: dict[str, int] = {}
        dropped: dict[str, int] = {}
        for name, port in self.ports.items():
            q, d = socks.get(port, (0, 0))
            queued[name] = q
            dropped[name] = max(0, d - self._drops.get(name, d))
            self._drops[name] = d
        return Sample(
            t=now - self.started,
            busy=(machine[0] - last_machine[0]) * 100 / span,
            steal=(machine[1] - last_machine[1]) * 100 / span,
            pressure_ms=(pressure - last_pressure) / 1000,
            cpu=cpu,
            queued=queued,
            dropped=dropped,
        )

    def around_drops(self, before: int = 8, after: int = 4) -> list[str]:
        """The lines of the seconds around each second with a drop (gaps marked)."""
        keep: set[int] = set()
        for i, s in enumerate(self.samples):
            if any(s.dropped.values()):
                keep.update(range(max(0, i - before), min(len(self.samples), i + after + 1)))
        lines: list[str] = []
        previous = -2
        for i in sorted(keep):
            if i != previous + 1 and lines:
                lines.append("   ...")
            lines.append(self.samples[i].line())
            previous = i
        return lines

    def summary(self) -> str:
        """The watched processes' CPU (mean and highest second) and the drops per watched
        socket over the run."""
        if not self.samples:
            return "no samples"
        busy = sum(sum(s.cpu.values()) for s in self.samples) / len(self.samples)
        worst = max(sum(s.cpu.values()) for s in self.samples)
        drops = {name: sum(s.dropped.get(name, 0) for s in self.samples) for name in self.ports}
        return (
            f"watched processes {busy:.0f}% of a CPU on average, {worst:.0f}% at most; "
            "datagrams dropped: " + ", ".join(f"{name} {n}" for name, n in drops.items())
        )
