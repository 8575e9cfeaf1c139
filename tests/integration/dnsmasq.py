"""A real DNS server for the tests: dnsmasq on a free loopback port, serving the SRV,
NAPTR and A records a test gives it (nothing else: no upstream, no /etc/hosts).

``server = Dnsmasq(port, records); server.start()``; ``server.restart(new_records)``
changes what it answers (same port); ``server.pause()`` / ``resume()`` make it stop and
start answering (SIGSTOP / SIGCONT: queries then time out); ``server.stop()``.

``authoritative=False`` makes it answer as many corporate and carrier servers do: a name
or a type it has no record for is ``REFUSED`` (the AAAA of an IPv4-only host among
them), not ``NXDOMAIN``/``NODATA``. ``DropAAAA(server)`` is a firewall in front of it
that lets every query through but AAAA ones, which nobody ever answers.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import threading
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

    def __init__(
        self,
        port: int,
        records: Sequence[str],
        workdir: Path,
        ttl: int = 5,
        authoritative: bool = True,
    ) -> None:
        self.port = port
        self.records = list(records)
        self.workdir = workdir
        self.authoritative = authoritative
        """Authoritative for ``.test`` (empty answers); else REFUSED for what it lacks."""
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
            # no data; without it REFUSED (it has no upstream server to ask).
            *(["--local=/test/"] if self.authoritative else []),
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


AAAA = 28
"""The AAAA query type (RFC 3596)."""


def query_type(packet: bytes) -> int | None:
    """The type of a DNS query's first question, None when it cannot be read."""
    at = 12
    try:
        while packet[at]:
            at += packet[at] + 1
        return int.from_bytes(packet[at + 1 : at + 3], "big")
    except IndexError:
        return None


class DropAAAA:
    """A UDP relay on a free loopback port in front of ``server``: every query goes
    through and its answer back, but AAAA queries are dropped (``dropped`` counts them),
    as a firewall that lets no AAAA through does."""

    def __init__(self, server: Dnsmasq) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drop-aaaa", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        upstream.bind(("127.0.0.1", 0))
        clients: dict[bytes, tuple[str, int]] = {}
        """Who asked, by query id."""
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self.sock, upstream], [], [], 0.2)
                if self.sock in ready:
                    packet, client = self.sock.recvfrom(4096)
                    if query_type(packet) == AAAA:
                        self.dropped += 1
                        continue
                    clients[packet[:2]] = client
                    upstream.sendto(packet, ("127.0.0.1", self.server.port))
                if upstream in ready:
                    packet, _ = upstream.recvfrom(4096)
                    client = clients.pop(packet[:2], None)
                    if client is not None:
                        self.sock.sendto(packet, client)
        finally:
            upstream.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()
