"""The bench's harness: the ports, the work directory, the two sipp gateways and the
sipp caller, and the proxies it starts; each measurement (fixedrate, maxrate, memory,
profiling) runs on it."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from . import loopcap
from .common import (
    FLOOR,
    HEP_TCP_VARIANT,
    HEP_VARIANT,
    HOST,
    NO_LADDER_VARIANT,
    PROXIES,
    WORKERS_SUFFIX,
    BenchError,
    base_of,
    workers_of,
)
from .processes import Processes
from .proxies import Floor, Kamailio, Proxy, Sipdispatch
from .traffic import Sipp

WARMUP_CALLS = 100
"""Calls sent before each measurement so first-use costs (imports, caches) are not counted."""


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
        sockets = args.caller_sockets or "one"
        self.sipp = Sipp(args.sipp, procs, self.caller_port, per_call=sockets == "per-call")
        self.kamailio: str | None = args.kamailio_bin
        self.python: str = args.python
        self.capture_why: str | None = None if args.capture else "disabled (--no-capture)"
        if args.capture:
            self.capture_why = loopcap.available()
        self._seq = 0
        self.gateway_pids: list[int] = []
        self._hep_sink: socket.socket | None = None
        self._hep_tcp: socket.socket | None = None

    def proxies(self) -> list[str]:
        names = [self.args.only] if self.args.only else list(PROXIES)
        if "kamailio" in names and self.kamailio is None:
            names.remove("kamailio")
        counts: list[int] = self.args.workers
        if "sipdispatch" in names and counts != [1]:
            at = names.index("sipdispatch")
            names[at : at + 1] = [f"sipdispatch-{n}{WORKERS_SUFFIX}" for n in counts]
        if getattr(self.args, "hep", False) and "sipdispatch" in names:
            at = names.index("sipdispatch") + 1
            names[at:at] = [HEP_VARIANT, HEP_TCP_VARIANT]
        if getattr(self.args, "ladder", False) and "sipdispatch" in names:
            names.insert(names.index("sipdispatch") + 1, NO_LADDER_VARIANT)
        return names

    def hep_sink(self) -> int:
        """The port of a UDP socket that takes the HEP copies and never reads them (the
        kernel drops what its buffer cannot hold): the proxy's side of the cost only."""
        if self._hep_sink is None:
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind((HOST, 0))
            self._hep_sink = sink
        return int(self._hep_sink.getsockname()[1])

    def hep_tcp_sink(self) -> int:
        """The port of a TCP listener that reads the HEP copies and throws them away (in
        a thread of the bench: its CPU is not the proxy's)."""
        if self._hep_tcp is None:
            import threading

            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind((HOST, 0))
            listener.listen(8)

            def drain(conn: socket.socket) -> None:
                with conn:
                    while conn.recv(1 << 20):
                        pass

            def accept() -> None:
                while True:
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        return
                    threading.Thread(target=drain, args=(conn,), daemon=True).start()

            threading.Thread(target=accept, daemon=True).start()
            self._hep_tcp = listener
        return int(self._hep_tcp.getsockname()[1])

    def start_gateways(self) -> None:
        self.gateway_pids = [self.sipp.gateway(gw, self.workdir).proc.pid for gw in self.gateways]

    def new_dir(self, what: str) -> Path:
        """A fresh directory for one measurement, numbered in the order they ran."""
        self._seq += 1
        d = self.workdir / f"{self._seq:03d}-{what}"
        d.mkdir(parents=True)
        return d

    def make_proxy(self, name: str, workdir: Path) -> Proxy:
        if name == FLOOR:
            return Floor(self.procs, self.floor_port, workdir, self.python, self.gateways)
        if base_of(name) == "sipdispatch":
            return Sipdispatch(
                self.procs,
                self.sd_port,
                workdir,
                self.python,
                self.gateways,
                self.admin_port,
                workers_of(name),
                self.args.redis_url,
                self.args.gc_stats,
                cluster=self.args.cluster,
                algorithm=self.args.algorithm,
                hep=self.hep_sink() if name == HEP_VARIANT else None,
                hep_tcp=self.hep_tcp_sink() if name == HEP_TCP_VARIANT else None,
                ladder=name != NO_LADDER_VARIANT,
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
                f"see sipp's logs in {workdir}/warmup"
            )
