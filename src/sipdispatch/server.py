"""Running the proxy: start-up, main loop and graceful shutdown (uvicorn's shape)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING

from sipdispatch import core_build
from sipdispatch.admin.http import AdminServer
from sipdispatch.admin.protocol import Traffic
from sipdispatch.collector import CHECK_INTERVAL, Collector
from sipdispatch.config import Config
from sipdispatch.eventloop import install_uvloop
from sipdispatch.health.prober import Prober
from sipdispatch.health.statelog import StateLog
from sipdispatch.routing import DispatchRouter
from sipdispatch.service import DispatcherService
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.timers import Timers
from sipdispatch.transport.guard import GuardSettings, SourceGuard
from sipdispatch.transport.shell import SipShell, TcpLimits

if TYPE_CHECKING:
    from sipdispatch.cluster.node import ClusterNode

log = logging.getLogger("sipdispatch.server")

READY_LINE = "sipdispatch ready"
"""Written to stderr once every listener is bound (tests and scripts wait for it)."""


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

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stopping = asyncio.Event()
        self.state_log = StateLog()
        """Every destination state change (pings, failed calls, the admin API)."""
        self.dispatcher = DispatcherService.from_config(config, self.state_log)
        """The destination store and the router over its destinations."""
        self.core: ProxyCore | None = None
        self.shell: SipShell | None = None
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
        self.cluster: ClusterNode | None = None
        """This node's cluster membership, when ``[cluster] redis_url`` is set."""

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
        return Traffic(
            core.stats, shell.stats, servers, clients, core.branch_handles(), self.collector
        )

    def _settings(self, bound: list[tuple[str, str, int]]) -> ProxySettings:
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
        shell = SipShell(core, loop, limits, self.sources)
        if shell.max_accepted < limits.max_connections:
            log.warning(
                "server.tcp_max_connections = %d lowered to %d by the file limit "
                "(ulimit -n), which keeps descriptors for the admin listener and the rest",
                limits.max_connections, shell.max_accepted,
            )  # fmt: skip
        self.core, self.shell = core, shell
        bound: list[tuple[str, str, int]] = []
        for addr in self.config.server.listen:
            try:
                if addr.proto == "udp":
                    host, port = await shell.listen_udp(addr.host, addr.port)
                else:
                    host, port = await shell.listen_tcp(addr.host, addr.port)
            except OSError as e:
                await shell.close()
                raise OSError(e.errno, f"cannot listen on {addr}: {e.strerror or e}") from e
            bound.append((addr.proto, host, port))
        # The real addresses are known only now (a port may have been 0).
        core.settings = self._settings(bound)
        self.started = time.time()
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
        self.prober.start(loop.time())
        if self.config.cluster.redis_url:
            await self._join_cluster(bound)
        shown = ", ".join(f"{p}:{h}:{port}" for p, h, port in bound)
        print(f"{READY_LINE}: SIP on {shown}", file=sys.stderr, flush=True)
        if core_build() != "compiled":
            log.warning("SIP core runs as pure Python (installed without mypyc): slower")

    async def _join_cluster(self, bound: list[tuple[str, str, int]]) -> None:
        # Imported here: a standalone node does not load the cluster code nor redis.
        from sipdispatch.cluster.node import ClusterNode

        assert self.core is not None
        proto = bound[0][0]
        host, port = self.core.settings.local[proto]
        settings = self.config.cluster
        node_id = settings.node_id or f"{socket.gethostname()}:{bound[0][2]}"
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
        if self.admin is not None:
            await self.admin.stop()
        if self.prober is not None:
            self.prober.stop()
        if self.shell is not None:
            await self.shell.close()

    async def _watch_collector(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            self.collector.check()

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.start()
        self.collector.start()
        self._watch = asyncio.create_task(self._watch_collector())
        try:
            await self.stopping.wait()
        finally:
            self._watch.cancel()
            self.collector.stop()
        log.info("stopping")
        await self.stop()


def run(config: Config) -> int:
    """Run the proxy in the foreground; return the exit status."""
    factory = install_uvloop()

    async def main() -> None:
        await Server(config).serve()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    return 0
