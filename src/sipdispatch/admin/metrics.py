"""Prometheus metrics, collected at scrape time.

Nothing here runs per SIP message. The proxy already counts its events in
``core.stats`` (a :class:`collections.Counter`) and keeps its transactions in
two dicts; the dispatcher keeps state, latency and load on each destination.
A custom collector on a per-server :class:`~prometheus_client.CollectorRegistry`
turns those into metric families when ``GET /metrics`` is served, so a
message costs the hot path exactly what it cost before metrics existed.

Every metric is listed, with its source, in ``docs/admin.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from sipdispatch import __version__
from sipdispatch.admin.rpc import admin_state
from sipdispatch.dispatcher.destination import Destination

if TYPE_CHECKING:
    from sipdispatch.server import Server

PREFIX: Final = "sipdispatch"

REPLY_PREFIX: Final = "tx_reply_"
"""``core.stats`` keys ``tx_reply_<code>``: final responses sent upstream, by code
(``tx_reply_2xx`` counts relayed 2xx by class)."""
REQUEST_PREFIX: Final = "rx_request_"
"""``core.stats`` keys ``rx_request_<METHOD>``: requests received by method, when the
proxy counts them (see docs/admin.md)."""

SIMPLE_COUNTERS: Final[dict[str, tuple[str, str]]] = {
    "rx_replies": ("sip_replies_received", "SIP responses received."),
    "rx_retransmissions": (
        "sip_retransmissions_received",
        "Request retransmissions absorbed by a server transaction.",
    ),
    "tx_replies_stateless": (
        "sip_replies_forwarded_stateless",
        "Responses forwarded without a transaction (RFC 3261 section 16.7).",
    ),
    "parse_errors": ("sip_parse_errors", "Messages that did not parse."),
    "dropped": ("sip_dropped", "Messages dropped without an answer."),
    "failovers": ("failovers", "Calls retried on the next destination (ds_next_dst)."),
    "branch_timeouts": ("branch_timeouts", "Branches with no final response before the timer."),
    "internal_errors": ("internal_errors", "Bugs caught while handling a message or timer."),
    "udp_errors": ("udp_errors", "ICMP errors reported on UDP sockets."),
    "slow_messages": (
        "slow_messages",
        "Received datagrams or TCP segments whose handling took more than 50 ms of CPU.",
    ),
}
"""``core.stats`` keys with a metric of their own: key -> (name, help)."""

STATE_CHANGE_PREFIX: Final = "state_changes_to_"
"""Prober ``stats`` keys ``state_changes_to_<LETTERS>``: changes by new state."""

SENT_REQUESTS: Final = {"tx_requests": "proxied", "tx_requests_local": "local"}
"""``core.stats`` keys of requests sent, by ``origin`` label."""

STATE_NAMES: Final = {"A": "active", "I": "inactive", "D": "disabled", "T": "trying"}
"""First FLAGS letter -> state name of ``sipdispatch_destination_state``."""


def _name(suffix: str) -> str:
    return f"{PREFIX}_{suffix}"


class SipdispatchCollector:
    """Reads one server's counters and tables when Prometheus scrapes."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterable[Metric]:
        """Every family, built from the current state (runs on the event loop)."""
        yield from self._info()
        yield from self._proxy()
        yield from self._destinations()
        yield from self._prober()
        yield from self._admin()

    # -- process ----------------------------------------------------------------------------

    def _info(self) -> Iterator[Metric]:
        info = InfoMetricFamily(_name("build"), "sipdispatch version.")
        info.add_metric([], {"version": __version__})
        yield info
        started = getattr(self.server, "started", None)
        if isinstance(started, float | int):
            yield GaugeMetricFamily(
                _name("start_time_seconds"),
                "When the proxy started, seconds since the Unix epoch.",
                value=float(started),
            )
            yield GaugeMetricFamily(
                _name("uptime_seconds"),
                "Seconds since the proxy started.",
                value=max(0.0, time.time() - started),
            )

    # -- SIP core -----------------------------------------------------------------------------

    def _proxy(self) -> Iterator[Metric]:
        core = self.server.core
        stats: Counter[str] = getattr(core, "stats", None) or Counter()

        by_method: dict[str, int] = {}
        by_code: dict[str, int] = {}
        other_events: dict[str, int] = {}
        for key, value in stats.items():
            if key.startswith(REQUEST_PREFIX):
                by_method[key[len(REQUEST_PREFIX) :]] = value
            elif key.startswith(REPLY_PREFIX):
                by_code[key[len(REPLY_PREFIX) :]] = value
            elif key not in SIMPLE_COUNTERS and key not in SENT_REQUESTS and key != "rx_requests":
                other_events[key] = value

        requests = CounterMetricFamily(
            _name("sip_requests_received"),
            'SIP requests received, by method ("other": the proxy does not count that '
            "method separately).",
            labels=["method"],
        )
        for method, value in sorted(by_method.items()):
            requests.add_metric([method], value)
        rest = stats.get("rx_requests", 0) - sum(by_method.values())
        if rest > 0 or not by_method:
            requests.add_metric(["other"], max(rest, 0))
        yield requests

        replies = CounterMetricFamily(
            _name("sip_replies_sent"),
            "Final SIP responses sent upstream (local and relayed), by status code; relayed "
            '2xx are counted as code="2xx".',
            labels=["code"],
        )
        for code, value in sorted(by_code.items()):
            replies.add_metric([code], value)
        yield replies

        sent = CounterMetricFamily(
            _name("sip_requests_sent"),
            "SIP requests sent: proxied (branches, ACK, CANCEL) or local (pings).",
            labels=["origin"],
        )
        for key, origin in SENT_REQUESTS.items():
            sent.add_metric([origin], stats.get(key, 0))
        yield sent

        for key, (suffix, doc) in SIMPLE_COUNTERS.items():
            yield CounterMetricFamily(_name(suffix), doc, value=stats.get(key, 0))

        events = CounterMetricFamily(
            _name("proxy_events"),
            "Other events the proxy core counts, by its internal name.",
            labels=["event"],
        )
        for key, value in sorted(other_events.items()):
            events.add_metric([key], value)
        yield events

        in_flight = GaugeMetricFamily(
            _name("transactions_in_flight"),
            "SIP transactions in the proxy's tables.",
            labels=["kind"],
        )
        in_flight.add_metric(["server"], len(getattr(core, "server_txs", ())))
        in_flight.add_metric(["client"], len(getattr(core, "client_txs", ())))
        yield in_flight

    # -- destinations ---------------------------------------------------------------------------

    def _branches_by_destination(self) -> Counter[int]:
        """Client transactions in flight per destination (by object id)."""
        counts: Counter[int] = Counter()
        client_txs: dict[Any, Any] = getattr(self.server.core, "client_txs", None) or {}
        for tx in client_txs.values():
            target = getattr(getattr(tx, "owner", None), "target", None)
            handle = getattr(target, "handle", None)
            if isinstance(handle, Destination):
                counts[id(handle)] += 1
        return counts

    def _destinations(self) -> Iterator[Metric]:
        router = self.server.router
        expire = getattr(router, "expire_calls", None)
        if callable(expire):
            # Drop call-load entries past hash_expire first, as dispatcher.list does
            # (the router's clock is the event loop's).
            try:
                now: float | None = asyncio.get_running_loop().time()
            except RuntimeError:  # collected outside the event loop (tests, tools)
                now = None
            if now is not None:
                expire(now)
        sets = router.sets
        labels = ["set", "uri"]

        state = GaugeMetricFamily(
            _name("destination_state"),
            "1 for the destination's current state (first FLAGS letter of dispatcher.list: "
            "A active, I inactive, D disabled, T trying), 0 for the others.",
            labels=[*labels, "state"],
        )
        probing = GaugeMetricFamily(
            _name("destination_probing"),
            "1 when the destination is pinged (FLAGS xP).",
            labels=labels,
        )
        usable = GaugeMetricFamily(
            _name("destination_usable"),
            "1 when the destination gets calls (not inactive, not disabled).",
            labels=labels,
        )
        latency = {
            "average": GaugeMetricFamily(
                _name("destination_latency_average_seconds"),
                "Mean OPTIONS ping latency (dispatcher.list LATENCY AVG).", labels=labels,
            ),
            "stdev": GaugeMetricFamily(
                _name("destination_latency_stdev_seconds"),
                "Standard deviation of the ping latency (LATENCY STD).", labels=labels,
            ),
            "estimate": GaugeMetricFamily(
                _name("destination_latency_estimate_seconds"),
                "Short-term ping latency estimate, EWMA (LATENCY EST).", labels=labels,
            ),
            "max": GaugeMetricFamily(
                _name("destination_latency_max_seconds"),
                "Largest ping latency seen (LATENCY MAX).", labels=labels,
            ),
        }  # fmt: skip
        timeouts = CounterMetricFamily(
            _name("destination_ping_timeouts"),
            "Pings that got no answer (LATENCY TIMEOUT).",
            labels=labels,
        )
        load = GaugeMetricFamily(
            _name("destination_calls_active"),
            "Calls in progress counted on the destination (RUNTIME DLGLOAD, algorithm 10).",
            labels=labels,
        )
        branches = GaugeMetricFamily(
            _name("destination_branches_in_flight"),
            "Requests relayed to the destination still waiting for their transaction to end.",
            labels=labels,
        )
        dispatched = CounterMetricFamily(
            _name("destination_calls_dispatched"),
            "Requests the router sent to the destination (first choice or failover).",
            labels=labels,
        )
        set_dispatched = CounterMetricFamily(
            _name("set_calls_dispatched"),
            "Requests the router sent to a destination of the set.",
            labels=["set"],
        )
        set_size = GaugeMetricFamily(
            _name("set_destinations"), "Destinations in the set.", labels=["set"]
        )
        set_usable = GaugeMetricFamily(
            _name("set_destinations_usable"),
            "Destinations of the set that get calls.",
            labels=["set"],
        )

        in_flight = self._branches_by_destination()
        has_dispatched = False
        for dset in sets:
            setid = str(dset.setid)
            set_size.add_metric([setid], len(dset.dests))
            set_usable.add_metric([setid], sum(1 for d in dset.dests if d.is_usable()))
            seen: set[str] = set()
            set_total = 0
            for dest in dset.dests:
                count = getattr(dest, "dispatched", None)
                if isinstance(count, int):
                    has_dispatched = True
                    set_total += count
                # Prometheus refuses two series with the same labels: a URI listed
                # twice in one set is shown once (its first entry, as Kamailio finds it).
                if dest.uri in seen:
                    continue
                seen.add(dest.uri)
                key = [setid, dest.uri]
                letter = dest.flags_text()[0]
                for first, name in STATE_NAMES.items():
                    state.add_metric([*key, name], 1 if letter == first else 0)
                probing.add_metric(key, 1 if dest.flags_text()[1] == "P" else 0)
                usable.add_metric(key, 1 if dest.is_usable() else 0)
                stats = dest.latency
                latency["average"].add_metric(key, stats.average / 1000.0)
                latency["stdev"].add_metric(key, stats.stdev / 1000.0)
                latency["estimate"].add_metric(key, stats.estimate / 1000.0)
                latency["max"].add_metric(key, stats.max / 1000.0)
                timeouts.add_metric(key, stats.timeout)
                load.add_metric(key, dest.dlg_load)
                branches.add_metric(key, in_flight.get(id(dest), 0))
                if isinstance(count, int):
                    dispatched.add_metric(key, count)
            if has_dispatched:
                set_dispatched.add_metric([setid], set_total)

        yield GaugeMetricFamily(_name("sets"), "Destination sets loaded.", value=len(sets))
        yield set_size
        yield set_usable
        yield state
        yield probing
        yield usable
        yield from latency.values()
        yield timeouts
        yield load
        yield branches
        if has_dispatched:
            yield dispatched
            yield set_dispatched
        calls = getattr(router, "calls", None)
        yield GaugeMetricFamily(
            _name("calls_tracked"),
            "Calls in the call-load table (algorithm 10).",
            value=len(calls) if calls is not None else 0,
        )

    # -- prober -------------------------------------------------------------------------------

    def _prober(self) -> Iterator[Metric]:
        prober = getattr(self.server, "prober", None)
        stats = getattr(prober, "stats", None)
        if not isinstance(stats, Counter):
            return
        changes = CounterMetricFamily(
            _name("destination_state_changes"),
            "Destination state changes (pings, failed calls, admin), by the new FLAGS letters.",
            labels=["to"],
        )
        events = CounterMetricFamily(
            _name("prober_events"),
            "What the OPTIONS prober did (pings_sent, ping_timeouts, went_down, ...).",
            labels=["event"],
        )
        for key, value in sorted(stats.items()):
            if key.startswith(STATE_CHANGE_PREFIX):
                changes.add_metric([key[len(STATE_CHANGE_PREFIX) :]], value)
            else:
                events.add_metric([key], value)
        yield changes
        yield events
        active = getattr(prober, "active", None)
        if isinstance(active, bool):
            yield GaugeMetricFamily(
                _name("ping_active"),
                "1 when periodic pings are on (dispatcher.ping_active).",
                value=1 if active else 0,
            )

    # -- admin --------------------------------------------------------------------------------

    def _admin(self) -> Iterator[Metric]:
        state = admin_state(self.server)
        reloads = CounterMetricFamily(
            _name("reloads"), "dispatcher.reload calls, by result.", labels=["result"]
        )
        for result in ("ok", "failed"):
            reloads.add_metric([result], state.reloads.get(result, 0))
        yield reloads
        calls = CounterMetricFamily(
            _name("rpc_calls"), "Admin JSON-RPC calls, by method.", labels=["method"]
        )
        for method, value in sorted(state.rpc_calls.items()):
            calls.add_metric([method], value)
        yield calls


def build_registry(server: Server) -> CollectorRegistry:
    """A registry for ``server``'s ``/metrics``: our collector plus the standard
    ``process_*`` metrics (CPU, memory, open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SipdispatchCollector(server))
    ProcessCollector(registry=registry)
    return registry
