"""Running the proxy: start-up, main loop and graceful shutdown (uvicorn's shape)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sipdispatch import core_build
from sipdispatch.admin.http import AdminServer
from sipdispatch.admin.protocol import Traffic
from sipdispatch.checks import algorithm_warnings, bind_reason, probing_warnings
from sipdispatch.collector import CHECK_INTERVAL, Collector
from sipdispatch.config import Config, ConfigError
from sipdispatch.eventloop import install_uvloop
from sipdispatch.events import DestinationEvents
from sipdispatch.health.prober import Prober
from sipdispatch.health.statelog import StateLog
from sipdispatch.logs import CallLog, announce
from sipdispatch.routing import DispatchRouter
from sipdispatch.service import DispatcherService
from sipdispatch.sip.calls import CallRecord, CallSink
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.timers import Timers
from sipdispatch.systemd import notify
from sipdispatch.transport.capture import Capture, Ladder, Tap, call_ladder, call_summary
from sipdispatch.transport.guard import GuardSettings, SourceGuard
from sipdispatch.transport.handoff import Handoff, owner_of
from sipdispatch.transport.hep import HepSender, HepStreamSender
from sipdispatch.transport.shell import SipShell, TcpLimits
from sipdispatch.transport.tls import TlsContexts, TlsFileError, TlsSettings, make_contexts

if TYPE_CHECKING:
    from sipdispatch.admin.figures import OwnFigures
    from sipdispatch.cluster.link import WorkerLink
    from sipdispatch.cluster.node import ClusterNode

log = logging.getLogger("sipdispatch.server")

READY_LINE = "sipdispatch ready"
"""Written to stderr once every listener is bound (tests and scripts wait for it)."""


DRAIN_POLL = 0.1
"""Seconds between two looks at the requests still in flight while draining."""
DNS_IDLE = 5.0
"""Seconds between two looks at the DNS answers when none is cached (a reload or an add
may bring destinations located by DNS)."""
DNS_MAX_SLEEP = 30.0
"""Longest wait between two looks at the DNS answers."""
UNRESOLVED_RETRY = 10.0
"""Seconds between two tries of a host that did not resolve, when pings are off
(``ping_interval = 0``); Kamailio's ``ds_ping_interval`` example value."""


@dataclass(frozen=True, slots=True)
class WorkerSockets:
    """What one worker of several inherits from its supervisor: its share of every
    SIP listener (bound with ``SO_REUSEPORT`` to the listening address, so whatever it
    sends leaves from there), its ends of the hand-off pairs to the other workers, and
    its connection to the supervisor's hub."""

    listen: tuple[socket.socket, ...]
    """One per ``server.listen`` entry, in order."""
    peers: dict[int, socket.socket]
    """The hand-off pair to each other worker, by its index."""
    hub: socket.socket


def _ladder_only(ladder: Ladder, record: CallRecord) -> None:
    ladder.record(record, time.time())


def _log_and_ladder(calls: CallLog, ladder: Ladder, record: CallRecord) -> None:
    calls(record)
    ladder.record(record, time.time())


def timers_from(config: Config) -> Timers:
    """The core's timer values from the ``[transaction]`` section (ms -> s)."""
    t = config.transaction
    return Timers(
        t1=t.t1 / 1000,
        t2=t.t2 / 1000,
        t4=t.t4 / 1000,
        fr_timer=t.fr_timer / 1000,
        fr_inv_timer=t.fr_inv_timer / 1000,
        wait_timer=t.wait_timer / 1000,
    )


def _wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


class Server:
    """One sipdispatch process: the SIP listeners and the dispatcher behind them.

    It wires the parts together (state log, dispatcher service and router, proxy
    core and shell, prober, admin listener) and is what the admin interface talks
    to (:class:`~sipdispatch.admin.protocol.AdminTarget`).
    """

    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        worker: int | None = None,
        sockets: WorkerSockets | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        """This process's index among ``server.workers`` worker processes (None: the
        only process). Workers share the SIP listeners (``SO_REUSEPORT``, bound by the
        supervisor), hand each message to the worker of its Call-ID, and only worker 0
        serves the admin listener."""
        self.sockets = sockets
        """A worker's inherited sockets (None: the process binds its own)."""
        self.link: WorkerLink | None = None
        """A worker's connection to the other workers, through the supervisor's hub."""
        self._figures: OwnFigures | None = None
        self.stopping = asyncio.Event()
        self.state_log = StateLog()
        """Every destination state change (pings, failed calls, the admin API)."""
        # Python hook modules may sit next to the configuration file.
        search = [os.path.dirname(os.path.abspath(config_path))] if config_path else []
        self.dispatcher = DispatcherService.from_config(config, self.state_log, search)
        """The destination store and the router over its destinations."""
        self.events: DestinationEvents | None = None
        """``[events]``: the destination events and what they are told to (None when
        nothing is configured)."""
        if config.events.active:
            self.events = self._events(config)
        for line in probing_warnings(
            config.dispatcher.probing_mode,
            config.dispatcher.ping_interval,
            [r.mark_failed for r in config.routes],
        ):
            log.warning("%s", line)
        for line in algorithm_warnings((r.set_id, r.algorithm_written) for r in config.routes):
            log.warning("%s", line)
        self.core: ProxyCore | None = None
        self.shell: SipShell | None = None
        self.capture: Capture | None = None
        """``[capture]``: pcap captures, the ladder of failed calls, HEP copies."""
        self.hep: HepSender | HepStreamSender | None = None
        self.admin: AdminServer | None = None
        """The admin HTTP listener (JSON-RPC and metrics), once started."""
        self.started: float | None = None
        """Wall-clock time the proxy started (``core.uptime``, metrics)."""
        self.prober: Prober | None = None
        self.sources: SourceGuard | None = None
        """The source ACL and flood limit, when ``[security]`` sets any."""
        self._clock = time.monotonic
        """The core's clock: the event loop's once running."""
        self.collector = Collector()
        """The garbage collector, held off once started."""
        self._watch: asyncio.Task[None] | None = None
        self._dns: asyncio.Task[None] | None = None
        self._dns_refresh: asyncio.Task[None] | None = None
        self._drain: asyncio.Task[None] | None = None
        self._hup_tasks: set[asyncio.Task[None]] = set()
        self.cluster: ClusterNode | None = None
        """This node's cluster membership, when ``[cluster] redis_url`` or ``sentinels`` is set."""

    def _events(self, config: Config) -> DestinationEvents:
        """The destination events of ``[events]`` (the command must be there now)."""
        events = config.events
        if events.command and shutil.which(events.command[0]) is None:
            program = events.command[0]
            why = "not found" if not os.path.exists(program) else "not an executable file"
            raise ConfigError(
                f"config: events.command: {program}: {why} (a name is looked up on PATH, "
                "a relative path from the working directory)",
                key="events.command",
            )
        cluster = config.cluster
        # Workers that are cluster nodes pinging with probing = "all" each ping every
        # destination and keep their own view: the admin worker raises the pings' events.
        probes = not (self.worker and cluster.redis_url and cluster.probing == "all")
        return DestinationEvents(
            events,
            self.dispatcher.hooks,
            find=lambda setid, uri: self.router.sets.find(setid, uri),
            node=cluster.node_id or socket.gethostname(),
            probes=probes,
        )

    @property
    def draining(self) -> bool:
        """SIGTERM came: new calls get 503 while those in flight finish."""
        return self.core is not None and self.core.draining

    def drain(self) -> None:
        """SIGTERM: refuse new INVITEs (503), let the requests in flight get their final
        response (at most ``fr_inv_timer``), then stop. A second SIGTERM stops at once."""
        core = self.core
        if core is None or core.draining:
            self.stopping.set()
            return
        core.draining = True
        notify("STOPPING=1")
        limit = self.config.transaction.fr_inv_timer / 1000
        log.info("SIGTERM: new calls get 503; waiting up to %g s for %d in flight",
                 limit, core.awaiting_final())  # fmt: skip
        self._drain = asyncio.get_running_loop().create_task(self._wait_drained(core, limit))

    async def _wait_drained(self, core: ProxyCore, limit: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while core.awaiting_final() and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        left = core.awaiting_final()
        if left:
            log.warning("drain: %d requests still without a final response after %g s", left,
                        limit)  # fmt: skip
        elif self.link is not None:
            # The other workers may still wait for answers that arrive on our sockets.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.link.drained(), max(deadline - loop.time(), 0.1))
        self.stopping.set()

    @property
    def router(self) -> DispatchRouter:
        """The router (the dispatcher service's)."""
        return self.dispatcher.router

    def now(self) -> float:
        """The core's monotonic clock."""
        return self._clock()

    def traffic(self) -> Traffic | None:
        """The proxy's counters and tables (None before it started)."""
        core, shell = self.core, self.shell
        if core is None or shell is None:
            return None
        servers, clients = core.transactions_in_flight()
        handoff = shell.handoff.stats if shell.handoff is not None else None
        hep = self.hep.stats if self.hep is not None else None
        return Traffic(
            core.stats, shell.stats, servers, clients, core.branch_handles(), self.collector,
            core.pending_branch_handles(), handoff, hep,
        )  # fmt: skip

    @property
    def workers(self) -> WorkerLink | None:
        """This worker's link to the others (None for the only process)."""
        return self.link

    async def fan_out(self, method: str, params: list[Any], who: str) -> list[dict[str, Any]]:
        """Run an RPC method on every other worker (one of several workers), each
        one's ``{"worker", "ok", "error"}``; [] for the only process."""
        link = self.link
        if link is None:
            return []
        return await link.fan_out(method, params, who)

    async def gather(self, kind: str) -> list[dict[str, Any]]:
        """Every other worker's figures of ``kind`` (``{"worker", "ok", "data"}``); []
        for the only process."""
        link = self.link
        if link is None:
            return []
        return await link.gather(kind)

    def _settings(self, bound: list[tuple[str, str, int]]) -> ProxySettings:
        """Who the core is, from the bound listeners."""
        server = self.config.server
        local: dict[str, tuple[str, int]] = {}
        aliases: set[tuple[str, int]] = set()
        for proto, host, port in bound:
            shown = host
            if _wildcard(host):
                shown = socket.gethostbyname(socket.gethostname())
                log.warning(
                    "listening on %s: Via and Record-Route will say %s; set server.advertise",
                    host,
                    shown,
                )
                aliases.add(("127.0.0.1", port))
            if server.advertise_host:
                shown = server.advertise_host
            shown_port = server.advertise_port or port
            local.setdefault(proto, (shown, shown_port))
            aliases.add((host.lower(), port))
            aliases.add((shown.lower(), shown_port))
        return ProxySettings(
            local=local,
            aliases=aliases,
            record_route=server.record_route,
            max_message_size=server.max_message_size,
            instance=os.urandom(3).hex(),
        )

    async def start(self) -> None:
        """Bind every listener and start the proxy."""
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        core = ProxyCore(ProxySettings(local={}), self.router, timers_from(self.config))
        router = self.router

        def overload_control(on: bool) -> None:  # algorithm 64 in the rules (RFC 7339)
            core.overload_control(router.overload if on else None)

        router.on_overload = overload_control
        overload_control(router.overload_control)
        server = self.config.server
        limits = TcpLimits(
            max_connections=server.tcp_max_connections,
            max_per_source=server.tcp_max_connections_per_source,
            message_timeout=server.tcp_message_timeout,
            idle_timeout=server.tcp_idle_timeout,
            dialog_idle_timeout=server.tcp_dialog_idle_timeout,
        )
        security = self.config.security
        guard_settings = GuardSettings(
            allow=security.allow,
            deny=security.deny,
            reject=security.acl_action == "reject",
            flood_limit=security.flood_limit,
            flood_window=security.flood_window,
        )
        if guard_settings.active:
            self.sources = SourceGuard(guard_settings, self.router.is_destination_ip)
        shell = SipShell(
            core, loop, limits, self.sources, self._tls(), reuse_port=self.worker is not None,
            icmp_failover=self.config.transaction.icmp_failover,
        )  # fmt: skip
        if shell.max_accepted < limits.max_connections:
            log.warning(
                "server.tcp_max_connections = %d lowered to %d by the file limit "
                "(ulimit -n), which keeps descriptors for the admin listener and the rest",
                limits.max_connections, shell.max_accepted,
            )  # fmt: skip
        self.core, self.shell = core, shell
        self._start_capture(shell)
        self._start_call_log(core)
        sockets = self.sockets
        if sockets is not None and self.worker is not None:
            peers = [sockets.peers.get(k) for k in range(len(sockets.peers) + 1)]
            shell.handoff = Handoff(self.worker, peers, loop, shell.take)
        if sockets is None:
            bound = await self._listen(shell, None)
        else:
            # A worker's sockets are bound already (and may hold what came for it while
            # it was down): who the core is comes first, their reading last.
            listen = zip(self.config.server.listen, sockets.listen, strict=True)
            bound = [(a.proto, *sock.getsockname()[:2]) for a, sock in listen]
        # The real addresses are known only now (a port may have been 0).
        core.settings = self._settings(bound)
        self.started = time.time()
        if not self.worker:  # the only process, or worker 0
            admin = AdminServer(self)
            try:
                await admin.start()
            except OSError:
                await shell.close()
                raise
            self.admin = admin
        self.prober = Prober(
            self.router,
            core,
            self.config.dispatcher,
            self.state_log,
            flush=shell.flush,
            clock=loop.time,
        )
        handoff = shell.handoff
        if handoff is not None:
            index, workers = handoff.index, handoff.workers
            self.prober.keeps_call_id = lambda cid: owner_of(cid.encode(), workers) == index
        if sockets is not None and self.worker is not None:
            await self._join_workers(sockets.hub)
            await self._listen(shell, sockets)
        if self.events is not None:
            self.events.attach(self.state_log)
        self.prober.start(loop.time())
        if self.config.cluster.enabled:
            await self._join_cluster(bound)
        if handoff is not None:
            handoff.start()
        shown = ", ".join(f"{p}:{h}:{port}" for p, h, port in bound)
        if self.worker is None:
            announce(log, f"{READY_LINE}: SIP on {shown}")
        else:
            admin_part = ", admin" if self.admin is not None else ""
            announce(log, f"worker {self.worker} up: SIP on {shown}{admin_part}")
        notify("READY=1")
        if core_build() != "compiled":
            log.warning("SIP core runs as pure Python (installed without mypyc): slower")

    async def _listen(
        self, shell: SipShell, sockets: WorkerSockets | None
    ) -> list[tuple[str, str, int]]:
        """Bind every listener (or take a worker's sockets); the bound addresses."""
        bound: list[tuple[str, str, int]] = []
        for i, addr in enumerate(self.config.server.listen):
            given = sockets.listen[i] if sockets is not None else None
            try:
                if addr.proto == "udp":
                    host, port = await shell.listen_udp(addr.host, addr.port, given)
                elif addr.proto == "tls":
                    host, port = await shell.listen_tls(addr.host, addr.port, given)
                else:
                    host, port = await shell.listen_tcp(addr.host, addr.port, given)
            except OSError as e:
                await shell.close()
                raise OSError(e.errno, f"cannot listen on {addr}: {bind_reason(e)}") from e
            if not addr.port_given and sockets is None:
                log.info("listening on %s: no port given in server.listen, took %d",
                         f"{addr.proto}:{addr.host}", port)  # fmt: skip
            bound.append((addr.proto, host, port))
        return bound

    def _tls(self) -> TlsContexts | None:
        """The TLS contexts of ``[tls]`` (None without the table)."""
        tls = self.config.tls
        if tls is None:
            return None
        settings = TlsSettings(
            certificate=tls.certificate,
            private_key=tls.private_key,
            ca_file=tls.ca_file,
            verify_peer=tls.verify_peer,
            verify_client=tls.verify_client,
            min_version=tls.min_version,
        )
        try:
            return make_contexts(settings)
        except TlsFileError as exc:
            raise ConfigError(str(exc), key=exc.key) from None

    def _start_capture(self, shell: SipShell) -> None:
        """``[capture]``: HEP copies, the pcap captures an operator starts and the
        ladder of the last failed calls; the shell copies to them."""
        capture = self.config.capture
        collector = capture.collector
        hep: HepSender | HepStreamSender | None = None
        if collector is not None and capture.hep_transport == "tcp":
            hep = HepStreamSender(collector, capture.hep_id, capture.hep_password,
                                  capture.capture_pings)  # fmt: skip
        elif collector is not None:
            try:
                hep = HepSender(collector, capture.hep_id, capture.hep_password,
                                capture.capture_pings)  # fmt: skip
            except OSError as exc:
                raise OSError(
                    exc.errno, f"capture.hep: cannot send to {capture.hep}: {exc}"
                ) from exc
        if hep is not None:
            pings = ", pings included" if capture.capture_pings else ""
            log.info("HEPv3 copies of every SIP message go to %s (agent id %d%s)",
                     capture.hep, capture.hep_id, pings)  # fmt: skip
        self.hep = hep
        ladder = Ladder(capture.ladder) if capture.ladder > 0 else None
        suffix = f".w{self.worker}" if self.worker is not None else ""

        def on_change(tap: Tap | None) -> None:
            shell.tap = tap

        self.capture = Capture(
            Path(capture.dir), capture.max_bytes, capture.max_seconds, hep, ladder, suffix,
            on_change,
        )  # fmt: skip
        self._capture_timer()

    def _capture_timer(self) -> None:
        """End the captures whose time is up, once a second."""
        capture = self.capture
        if capture is None:
            return
        capture.expire(time.time())
        asyncio.get_running_loop().call_later(1.0, self._capture_timer)

    def _start_call_log(self, core: ProxyCore) -> None:
        """``[log] calls``: the core and the router hand their call records to the call
        log (and to the ladder of failed calls); with ``"none"`` no record is made at
        all."""
        calls = self.config.log.calls
        ladder = self.capture.ladder if self.capture is not None else None
        if calls == "none" and ladder is None:
            return
        sink: CallSink
        if calls == "none":
            assert ladder is not None
            sink = functools.partial(_ladder_only, ladder)
        elif ladder is not None:
            sink = functools.partial(_log_and_ladder, CallLog(), ladder)
        else:
            sink = CallLog()
        core.call_log = sink
        self.router.call_log = sink
        self.router.log_all = calls == "all"

    async def _join_workers(self, hub: socket.socket) -> None:
        """Connect to the supervisor's hub: the shared state of the workers (unless the
        cluster's Redis shares it), and the admin worker's requests."""
        from sipdispatch.cluster.link import WorkerLink

        assert self.worker is not None
        link = WorkerLink(
            self.worker,
            hub,
            self.dispatcher,
            self.state_log,
            self.prober,
            self.now,
            shares_state=not self.config.cluster.enabled,
        )
        rpc = self.admin.rpc if self.admin is not None else None
        if rpc is None:
            from sipdispatch.admin.rpc import Rpc

            rpc = Rpc(self)

        async def run(method: str, params: list[Any], who: str) -> object:
            return await rpc.call(method, params, who=who, local=True)

        link.run = run
        link.collect = self._collect
        await link.start()
        self.link = link

    async def _collect(self, kind: str) -> object:
        """This worker's figures of ``kind``, for the admin worker."""
        from sipdispatch.admin.figures import OwnFigures

        if kind.startswith("ladder"):
            return self._ladder(kind.partition(":")[2])

        if self._figures is None:
            self._figures = OwnFigures(self)
        return self._figures.collect(kind)

    def _ladder(self, call_id: str) -> object:
        """The failed calls this worker keeps (``call_id`` empty), or one of them with
        its messages (None when it is not here)."""
        ladder = self.capture.ladder if self.capture is not None else None
        if ladder is None:
            return [] if not call_id else None
        if not call_id:
            return [call_summary(k) for k in ladder.calls()]
        kept = ladder.find(call_id)
        return call_ladder(kept) if kept is not None else None

    async def _join_cluster(self, bound: list[tuple[str, str, int]]) -> None:
        # Imported here: a standalone node does not load the cluster code nor redis.
        from sipdispatch.cluster.node import ClusterNode

        assert self.core is not None
        proto = bound[0][0]
        host, port = self.core.settings.local[proto]
        settings = self.config.cluster
        node_id = settings.node_id or f"{socket.gethostname()}:{bound[0][2]}"
        if self.worker is not None:
            node_id = f"{node_id}/w{self.worker}"
        self.cluster = ClusterNode(
            settings,
            node_id,
            f"{proto}:{host}:{port}",
            self.dispatcher,
            self.state_log,
            self.prober,
            self.now,
        )
        await self.cluster.start()

    async def stop(self) -> None:
        """Close listeners and connections."""
        if self.cluster is not None:
            await self.cluster.stop()
        if self.link is not None:
            await self.link.stop()
        if self.admin is not None:
            await self.admin.stop()
        if self.prober is not None:
            self.prober.stop()
        if self.events is not None:
            await self.events.close()
        if self.shell is not None:
            await self.shell.close()
        if self.capture is not None:
            self.capture.close()
            self.capture = None

    def _reload_on_hup(self) -> None:
        """SIGHUP: ``dispatcher.reload`` (in a cluster, every node follows)."""
        task = asyncio.get_running_loop().create_task(self._reload("SIGHUP"))
        self._hup_tasks.add(task)
        task.add_done_callback(self._hup_tasks.discard)

    async def _reload(self, why: str) -> None:
        try:
            kept = await self.dispatcher.reload()
        except Exception as exc:  # a bad store or hook: the running list stays; say why
            log.error("%s: reload refused, the running list is unchanged: %s", why, exc)
            return
        log.info("%s: dispatcher.reload: %d destinations kept their state", why, kept)

    async def _retry_unresolved(self) -> None:
        """Resolve again, every ping interval, the hosts that did not resolve at start."""
        interval = self.config.dispatcher.ping_interval or UNRESOLVED_RETRY
        while self.dispatcher.unresolved():
            await asyncio.sleep(interval)
            prober = self.prober
            probing = prober is not None and prober.interval > 0 and prober.active
            try:
                await self.dispatcher.retry_unresolved(probing)
            except Exception:  # never let a bug stop the retries silently
                log.exception("retrying unresolved destinations")

    async def _refresh_dns(self) -> None:
        """Refresh the DNS answers of the destinations located by DNS before their TTL
        runs out, for as long as the proxy runs."""
        dns = self.dispatcher.dns
        if dns is None:
            return
        while True:
            try:
                due = dns.next_refresh()
                wait = DNS_IDLE if due is None else min(max(due - dns.clock(), 0.5), DNS_MAX_SLEEP)
                await asyncio.sleep(wait)
                await self.dispatcher.refresh_dns()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a bug stop the refreshes silently
                log.exception("refreshing DNS answers")
                await asyncio.sleep(DNS_IDLE)

    async def _watch_collector(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            self.collector.check()
            self.collector.trim()

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.drain)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_hup)
        await self.start()
        self.collector.start()
        self._watch = asyncio.create_task(self._watch_collector())
        if self.dispatcher.unresolved():
            self._dns = asyncio.create_task(self._retry_unresolved())
        self._dns_refresh = asyncio.create_task(self._refresh_dns())
        try:
            await self.stopping.wait()
        finally:
            self._watch.cancel()
            if self._dns is not None:
                self._dns.cancel()
            self._dns_refresh.cancel()
            if self._drain is not None:
                self._drain.cancel()
            self.collector.stop()
        log.info("stopping")
        await self.stop()


def run(
    config: Config,
    config_path: str | None = None,
    worker: int | None = None,
    sockets: WorkerSockets | None = None,
) -> int:
    """Run the proxy in the foreground; return the exit status. ``config_path``: the
    file ``config`` was read from (hook modules are looked for next to it too);
    ``worker``: this process's index when it is one of ``server.workers``, with the
    ``sockets`` its supervisor handed it."""
    factory = install_uvloop()

    async def main() -> None:
        await Server(config, config_path, worker, sockets).serve()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    return 0
