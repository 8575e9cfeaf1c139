"""A real DNS server for the tests: dnsmasq on a free loopback port, serving the SRV,
NAPTR and A records a test gives it (nothing else: no upstream, no /etc/hosts).

``server = Dnsmasq(port, records); server.start()``; ``server.restart(new_records)``
changes what it answers (same port); ``server.pause()`` / ``resume()`` make it stop and
start answering (SIGSTOP / SIGCONT: queries then time out); ``server.stop()``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

DNSMASQ = "/usr/sbin/dnsmasq"
START_TIMEOUT = 20.0


def dnsmasq_path() -> str | None:
    """dnsmasq's binary, or None when it is not installed."""
    if os.access(DNSMASQ, os.X_OK):
        return DNSMASQ
    return shutil.which("dnsmasq")


def srv(name: str, target: str, port: int, priority: int = 0, weight: int = 0) -> str:
    """An SRV record: ``name`` is ``_sip._udp.carrier.test``."""
    return f"--srv-host={name},{target},{port},{priority},{weight}"


def host(name: str, ip: str = "127.0.0.1") -> str:
    """An A record."""
    return f"--host-record={name},{ip}"


def naptr(name: str, order: int, preference: int, service: str, replacement: str) -> str:
    """A NAPTR record with flag ``s`` (the replacement has SRV records)."""
    return f"--naptr-record={name},{order},{preference},s,{service},,{replacement}"


def _answers(port: int) -> bool:
    """Whether a DNS server answers on 127.0.0.1:``port`` (a query for the root NS)."""
    query = bytes.fromhex("abcd01000001000000000000") + b"\x00\x00\x02\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        try:
            s.sendto(query, ("127.0.0.1", port))
            data, _ = s.recvfrom(512)
        except OSError:
            return False
    return data[:2] == b"\xab\xcd"


class Dnsmasq:
    """One dnsmasq process answering ``records`` (dnsmasq options) on ``port``."""

    def __init__(self, port: int, records: Sequence[str], workdir: Path, ttl: int = 5) -> None:
        self.port = port
        self.records = list(records)
        self.workdir = workdir
        self.ttl = ttl
        """TTL of every answer (``--local-ttl``)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def command(self) -> list[str]:
        binary = dnsmasq_path()
        assert binary is not None
        return [
            binary,
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            # Authoritative for .test: a name or type it has no record for is NXDOMAIN or
            # no data, not REFUSED (it has no upstream server).
            "--local=/test/",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}",
            f"--local-ttl={self.ttl}",
            "--log-queries",
            "--log-facility=-",
            *self.records,
        ]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = open(self.workdir / f"dnsmasq-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dnsmasq does not answer on {self.port}: {self.log_text()}")
            time.sleep(0.05)

    def log_text(self) -> str:
        path = self.workdir / f"dnsmasq-{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def queries(self, name: str) -> int:
        """How many queries for ``name`` the running dnsmasq logged."""
        return sum(1 for line in self.log_text().splitlines() if "query[" in line and name in line)

    def restart(self, records: Sequence[str]) -> None:
        """Answer ``records`` from now on (same port)."""
        self.stop()
        self.records = list(records)
        self.start()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
