"""What the admin interface needs of a running proxy.

The JSON-RPC methods, the metrics and (later) the console work against this
protocol, which :class:`sipdispatch.server.Server` implements; they never reach
into the server, the proxy core or the shell. Everything here is read on the event
loop, between two packets, so it is a consistent view without locks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sipdispatch.collector import Collector
from sipdispatch.config import Config
from sipdispatch.events import DestinationEvents
from sipdispatch.health.prober import Prober
from sipdispatch.health.statelog import StateLog
from sipdispatch.service import DispatcherService
from sipdispatch.sip.stats import ProxyStats
from sipdispatch.transport.guard import SourceGuard
from sipdispatch.transport.handoff import HandoffStats
from sipdispatch.transport.hep import HepStats
from sipdispatch.transport.shell import ShellStats


@dataclass(frozen=True, slots=True)
class Traffic:
    """The proxy's counters and tables, as they are now."""

    proxy: ProxyStats
    """The proxy core's counters."""
    shell: ShellStats
    """The transport shell's counters."""
    server_transactions: int
    """Server transactions in the core's table."""
    client_transactions: int
    """Client transactions (branches, pings, CANCELs) in the core's table."""
    branch_handles: Iterable[Any]
    """The router's handle (the destination) of each branch in flight."""
    collector: Collector
    """The garbage collector's watch."""
    pending_branch_handles: Iterable[Any] = ()
    """The handle of each branch still waiting for its final response."""
    handoff: HandoffStats | None = None
    """One worker of several: what it handed to the others and took from them."""
    hep: HepStats | None = None
    """``[capture] hep`` on: the copies sent to the collector and those dropped."""


class WorkersView(Protocol):
    """This process as one of several worker processes (``[server] workers``)."""

    @property
    def index(self) -> int:
        """This worker's index."""

    @property
    def live(self) -> tuple[int, ...]:
        """The live workers' indexes."""


class AdminTarget(Protocol):
    """A running proxy, as the admin interface sees it."""

    @property
    def config(self) -> Config:
        """The configuration it runs with."""

    @property
    def started(self) -> float | None:
        """Wall-clock time it started (None before)."""

    @property
    def dispatcher(self) -> DispatcherService:
        """The destination store, the router and the changes of the destination list."""

    @property
    def state_log(self) -> StateLog:
        """Every destination state change."""

    @property
    def prober(self) -> Prober | None:
        """The OPTIONS prober, once started."""

    @property
    def sources(self) -> SourceGuard | None:
        """The source ACL and flood limit, when configured and started."""

    @property
    def workers(self) -> WorkersView | None:
        """This process's place among several worker processes; None for the only one."""

    @property
    def draining(self) -> bool:
        """SIGTERM came: new calls are refused while those in flight finish."""

    def now(self) -> float:
        """The proxy's monotonic clock (the time of its state changes and timers)."""

    def traffic(self) -> Traffic | None:
        """The proxy's counters and tables, None before it started."""

    async def fan_out(self, method: str, params: list[Any], who: str) -> list[dict[str, Any]]:
        """With several worker processes: run an RPC method on every other worker and
        return each one's ``{"worker", "ok", "error"}``; [] for a single process."""

    async def gather(self, kind: str) -> list[dict[str, Any]]:
        """With several worker processes: every other worker's figures of ``kind``
        (``metrics``, ``console``) as ``{"worker", "ok", "data"}``; [] for a single
        process."""


class ClusterView(Protocol):
    """This node as a member of a cluster (``[cluster] redis_url`` or ``sentinels`` set),
    as the admin interface sees it: ``cluster.nodes`` and the cluster metrics."""

    @property
    def id(self) -> str:
        """This node's id."""

    @property
    def up(self) -> bool:
        """Connected to Redis and synchronised."""

    @property
    def live(self) -> tuple[str, ...]:
        """The live nodes' ids (this one alone while Redis is down)."""

    @property
    def stats(self) -> Counter[str]:
        """Events sent and received, Redis errors, call-load reservations."""

    def nodes(self) -> list[dict[str, Any]]:
        """``cluster.nodes``: each live node's ID, ADDRESS, LAST_SEEN, SELF, PROBES."""

    def redis_info(self) -> dict[str, Any]:
        """The Redis in use: MASTER (``host:port``, no password), UP, SENTINEL_MASTER
        (the Sentinel master's name, "" without Sentinel), TLS."""


def cluster_of(target: AdminTarget) -> ClusterView | None:
    """The target's cluster membership, None for a standalone node (a target with no
    ``cluster`` attribute is standalone)."""
    view: ClusterView | None = getattr(target, "cluster", None)
    return view


def events_of(target: AdminTarget) -> DestinationEvents | None:
    """The target's destination events, None when ``[events]`` tells nothing (a target
    with no ``events`` attribute has none)."""
    events: DestinationEvents | None = getattr(target, "events", None)
    return events
