"""Prometheus metrics, collected at scrape time.

Nothing here runs per SIP message. The proxy already counts its events (typed
counters: :class:`~sipdispatch.sip.stats.ProxyStats`, the shell's
:class:`~sipdispatch.transport.shell.ShellStats`); the dispatcher keeps state,
latency and load on each destination; the state log counts state changes. A
custom collector on a per-server :class:`~prometheus_client.CollectorRegistry`
reads them through the admin protocol when ``GET /metrics`` is served, so a
message costs the hot path exactly what it cost before metrics existed.

Every metric is listed, with its source, in ``docs/admin.md``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Final

from prometheus_client import ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from sipdispatch import __version__
from sipdispatch.admin.protocol import AdminTarget, Traffic, cluster_of, events_of
from sipdispatch.admin.rpc import Rpc
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.events import OUTCOMES as EVENT_OUTCOMES
from sipdispatch.hooks import BUCKETS, OUTCOMES
from sipdispatch.routing import SETUP_TIME_BUCKETS
from sipdispatch.sip.stats import OTHER_METHOD

PREFIX: Final = "sipdispatch"

PROXY_COUNTERS: Final[dict[str, tuple[str, str]]] = {
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
    "branch_unreachable": (
        "branch_unreachable",
        "Branches failed at once: their UDP destination answered with ICMP unreachable.",
    ),
    "internal_errors": ("internal_errors", "Bugs caught while handling a message or timer."),
}
"""``ProxyStats`` fields with a metric of their own: field -> (name, help)."""

SHELL_COUNTERS: Final[dict[str, tuple[str, str]]] = {
    "udp_errors": ("udp_errors", "ICMP errors reported on UDP sockets."),
    "refused_destinations": (
        "sip_refused_destinations",
        "Messages not sent: their destination was a broadcast, multicast or unspecified address.",
    ),
    "slow_messages": (
        "slow_messages",
        "Received datagrams or TCP segments whose handling took more than 50 ms of CPU.",
    ),
}
"""``ShellStats`` fields with a metric of their own: field -> (name, help)."""

STATE_NAMES: Final = {"A": "active", "I": "inactive", "D": "disabled", "T": "trying"}
"""First FLAGS letter -> state name of ``sipdispatch_destination_state``."""


def _name(suffix: str) -> str:
    return f"{PREFIX}_{suffix}"


class SipdispatchCollector:
    """Reads one proxy's counters and tables when Prometheus scrapes."""

    def __init__(self, target: AdminTarget, rpc: Rpc, logins: Counter[str] | None = None) -> None:
        self.target = target
        self.rpc = rpc
        self.logins = logins

    def collect(self) -> Iterable[Metric]:
        """Every family, built from the current state (runs on the event loop)."""
        traffic = self.target.traffic()
        yield from self._info()
        if traffic is not None:
            yield from self._proxy(traffic)
        yield from self._destinations(traffic)
        yield from self._calls()
        yield from self._state_changes()
        yield from self._prober()
        yield from self._security()
        yield from self._admin()
        yield from self._hooks()
        yield from self._events()
        yield from self._cluster()

    # -- process ----------------------------------------------------------------------------

    def _info(self) -> Iterator[Metric]:
        info = InfoMetricFamily(_name("build"), "sipdispatch version.")
        info.add_metric([], {"version": __version__})
        yield info
        workers = self.target.config.server.worker_count
        if workers > 1:
            yield from self._workers(workers)
        started = self.target.started
        if started is not None:
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

    def _workers(self, workers: int) -> Iterator[Metric]:
        """This worker's share, labelled with its index (``/metrics`` of several workers
        shows every worker's, and sums the rest)."""
        link = self.target.workers
        live = len(link.live) if link is not None else 1
        gauge = GaugeMetricFamily(
            _name("workers"),
            "Worker processes of this proxy (server.workers): configured, and live now.",
            labels=["state"],
        )
        gauge.add_metric(["configured"], workers)
        gauge.add_metric(["live"], live)
        yield gauge
        traffic = self.target.traffic()
        if link is None or traffic is None:
            return
        worker = str(link.index)
        requests = CounterMetricFamily(
            _name("worker_requests_received"),
            "SIP requests each worker handled (its own Call-IDs), by method.",
            labels=["worker", "method"],
        )
        for method, value in sorted(traffic.proxy.requests_by_method.items()):
            requests.add_metric([worker, method], value)
        yield requests
        handoff = traffic.handoff
        if handoff is not None:
            handed = CounterMetricFamily(
                _name("worker_handoffs"),
                "Messages a worker handed to the worker of their Call-ID (out) and took "
                "from the others (in).",
                labels=["worker", "direction"],
            )
            handed.add_metric([worker, "out"], handoff.handed)
            handed.add_metric([worker, "in"], handoff.taken)
            yield handed
            drops = CounterMetricFamily(
                _name("worker_handoff_drops"),
                "Messages not handed over: the other worker's queue was full.",
                labels=["worker"],
            )
            drops.add_metric([worker], handoff.dropped)
            yield drops

    # -- SIP core -----------------------------------------------------------------------------

    def _proxy(self, traffic: Traffic) -> Iterator[Metric]:
        stats = traffic.proxy
        requests = CounterMetricFamily(
            _name("sip_requests_received"),
            'SIP requests received, by method ("other": the proxy does not count that '
            "method separately).",
            labels=["method"],
        )
        by_method = stats.requests_by_method
        for method, value in sorted(by_method.items()):
            requests.add_metric([method], value)
        if not by_method:
            requests.add_metric([OTHER_METHOD], 0)
        yield requests

        replies = CounterMetricFamily(
            _name("sip_replies_sent"),
            "Final SIP responses sent upstream (local and relayed), by status code; relayed "
            '2xx are counted as code="2xx".',
            labels=["code"],
        )
        by_code = {str(code): value for code, value in stats.replies_sent.items()}
        if stats.relayed_2xx:
            by_code["2xx"] = stats.relayed_2xx
        for code, value in sorted(by_code.items()):
            replies.add_metric([code], value)
        yield replies

        sent = CounterMetricFamily(
            _name("sip_requests_sent"),
            "SIP requests sent: proxied (branches, ACK, CANCEL) or local (pings).",
            labels=["origin"],
        )
        sent.add_metric(["proxied"], stats.tx_requests)
        sent.add_metric(["local"], stats.tx_requests_local)
        yield sent

        for field, (suffix, doc) in PROXY_COUNTERS.items():
            yield CounterMetricFamily(_name(suffix), doc, value=getattr(stats, field))
        for field, (suffix, doc) in SHELL_COUNTERS.items():
            yield CounterMetricFamily(_name(suffix), doc, value=getattr(traffic.shell, field))
        hep = traffic.hep
        yield CounterMetricFamily(
            _name("hep_sent"), "HEPv3 copies sent to the capture server ([capture] hep).",
            value=hep.sent if hep is not None else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            _name("hep_dropped"),
            "HEPv3 copies not sent: the socket was full or the capture server unreachable.",
            value=hep.dropped if hep is not None else 0,
        )

        in_flight = GaugeMetricFamily(
            _name("transactions_in_flight"),
            "SIP transactions in the proxy's tables.",
            labels=["kind"],
        )
        in_flight.add_metric(["server"], traffic.server_transactions)
        in_flight.add_metric(["client"], traffic.client_transactions)
        yield in_flight

        shell = traffic.shell
        yield GaugeMetricFamily(
            _name("tcp_connections"),
            "TCP connections open (accepted and opened to destinations).",
            value=shell.tcp_connections,
        )
        refused = CounterMetricFamily(
            _name("tcp_connections_refused"),
            "Accepted TCP connections closed at once: over server.tcp_max_connections "
            "(total) or server.tcp_max_connections_per_source (per_source).",
            labels=["reason"],
        )
        refused.add_metric(["total"], shell.tcp_refused_total)
        refused.add_metric(["per_source"], shell.tcp_refused_per_source)
        yield refused
        closed = CounterMetricFamily(
            _name("tcp_connections_closed"),
            "TCP connections the proxy closed: idle past server.tcp_idle_timeout (idle), or "
            "no complete message within server.tcp_message_timeout (incomplete).",
            labels=["reason"],
        )
        closed.add_metric(["idle"], shell.tcp_closed_idle)
        closed.add_metric(["incomplete"], shell.tcp_closed_incomplete)
        yield closed
        yield CounterMetricFamily(
            _name("tls_connect_failures"),
            "TLS connections to destinations whose handshake failed (certificate not "
            "verified or not naming the destination, version refused).",
            value=shell.tls_failures,
        )
        yield CounterMetricFamily(
            _name("tls_handshakes_failed"),
            "Accepted TLS connections closed before their handshake completed (a failed "
            "handshake, or none within server.tcp_message_timeout).",
            value=shell.tls_handshakes_failed,
        )
        yield CounterMetricFamily(
            _name("tls_unconfigured"),
            "Messages to TLS destinations not sent because the configuration has no [tls].",
            value=shell.tls_unconfigured,
        )

        collector = traffic.collector
        yield GaugeMetricFamily(
            _name("gc_objects_pending"),
            "Objects the garbage collector tracks, made since its last collection and still "
            "alive: follows the calls in flight; climbing while they do not is a leak.",
            value=collector.pending,
        )
        yield CounterMetricFamily(
            _name("gc_safety_collections"),
            "Full collections run because too many objects were pending.",
            value=collector.collections,
        )
        yield CounterMetricFamily(
            _name("gc_objects_collected"),
            "Unreachable objects the safety collections found (0 without a leak).",
            value=collector.collected,
        )
        yield CounterMetricFamily(
            _name("memory_trims"),
            "Times the C allocator was asked to give its free memory back (every 10 s).",
            value=collector.trims,
        )
        yield CounterMetricFamily(
            _name("memory_trim_seconds"),
            "Time those took, in all.",
            value=collector.trim_seconds,
        )

    # -- destinations ---------------------------------------------------------------------------

    def _destinations(self, traffic: Traffic | None) -> Iterator[Metric]:
        router = self.target.dispatcher.router
        # Drop call-load entries past hash_expire first, as dispatcher.list does.
        router.expire_calls(self.target.now())
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
            "Calls in progress on the destination: INVITE sent, not yet failed, BYE not yet "
            "seen (RUNTIME DLGLOAD; counted for every algorithm).",
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

        in_flight: Counter[int] = Counter()
        for handle in traffic.branch_handles if traffic is not None else ():
            if isinstance(handle, Destination):
                in_flight[id(handle)] += 1
        for dset in sets:
            setid = str(dset.setid)
            set_size.add_metric([setid], len(dset.dests))
            set_usable.add_metric([setid], sum(1 for d in dset.dests if d.is_usable()))
            seen: set[str] = set()
            set_total = 0
            for dest in dset.dests:
                set_total += dest.dispatched
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
                dispatched.add_metric(key, dest.dispatched)
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
        yield dispatched
        yield set_dispatched
        yield GaugeMetricFamily(
            _name("calls_tracked"),
            "Calls in the call-load table (algorithm 10).",
            value=len(router.calls),
        )

    # -- calls ------------------------------------------------------------------------------

    def _calls(self) -> Iterator[Metric]:
        router = self.target.dispatcher.router
        outcomes = CounterMetricFamily(
            _name("destination_calls"),
            "Calls (INVITEs) by what the destination did: answered (2xx), rejected (with "
            "code_class 3xx..6xx), timeout (no answer before the timer), cancelled (the "
            "caller sent CANCEL while the call was there).",
            labels=["set", "uri", "outcome", "code_class"],
        )
        in_progress = 0
        for dset in router.sets:
            setid = str(dset.setid)
            seen: set[str] = set()
            for dest in dset.dests:
                in_progress += dest.dlg_load
                if dest.uri in seen:
                    continue
                seen.add(dest.uri)
                key = [setid, dest.uri]
                outcomes.add_metric([*key, "answered", "2xx"], dest.calls_answered)
                for i, count in enumerate(dest.calls_rejected):
                    outcomes.add_metric([*key, "rejected", f"{i + 3}xx"], count)
                outcomes.add_metric([*key, "timeout", ""], dest.calls_timeout)
                outcomes.add_metric([*key, "cancelled", ""], dest.calls_cancelled)
        yield outcomes
        yield GaugeMetricFamily(
            _name("calls_in_progress"),
            "Calls in progress on every destination together (every algorithm).",
            value=in_progress,
        )
        no_dest = CounterMetricFamily(
            _name("set_calls_no_destination"),
            "Calls refused because the set had no usable destination.",
            labels=["set"],
        )
        counts = router.no_destination
        for set_id in sorted({*counts, *(r.set_id for r in router.routes)}):
            no_dest.add_metric([str(set_id)], counts.get(set_id, 0))
        yield no_dest
        fallback = CounterMetricFamily(
            _name("fallback_calls"),
            "Calls that went on to a fallback set (rule_set: the set their rule or hook "
            "routed them to; set: the fallback set), once per call and fallback set reached.",
            labels=["rule_set", "set"],
        )
        reached = router.fallback_calls
        configured = {(r.set_id, s) for r in router.routes for s, _ in r.fallback}
        for rule_set, set_id in sorted({*reached, *configured}):
            fallback.add_metric([str(rule_set), str(set_id)], reached.get((rule_set, set_id), 0))
        yield fallback
        times = router.setup_times
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*SETUP_TIME_BUCKETS, float("inf")), times.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        yield HistogramMetricFamily(
            _name("call_setup_seconds"),
            "Call set-up time: from the INVITE to the final response sent upstream.",
            buckets=buckets,
            sum_value=times.sum,
        )

    # -- prober -------------------------------------------------------------------------------

    def _state_changes(self) -> Iterator[Metric]:
        changes = CounterMetricFamily(
            _name("destination_state_changes"),
            "Destination state changes (pings, failed calls, admin), by the new FLAGS letters.",
            labels=["to"],
        )
        for letters, value in sorted(self.target.state_log.by_new_state.items()):
            changes.add_metric([letters], value)
        yield changes

    def _prober(self) -> Iterator[Metric]:
        prober = self.target.prober
        if prober is None:
            return
        events = CounterMetricFamily(
            _name("prober_events"),
            "What the OPTIONS prober did (pings_sent, ping_timeouts, went_down, ...).",
            labels=["event"],
        )
        log = self.target.state_log
        counts = {**prober.stats, "went_down": log.went_down, "went_up": log.went_up}
        for key, value in sorted(counts.items()):
            events.add_metric([key], value)
        yield events
        yield GaugeMetricFamily(
            _name("ping_active"),
            "1 when periodic pings are on (dispatcher.ping_active).",
            value=1 if prober.active else 0,
        )

    # -- security -----------------------------------------------------------------------------

    def _security(self) -> Iterator[Metric]:
        sources = self.target.sources
        yield CounterMetricFamily(
            _name("requests_refused"),
            "Requests refused by security.allow/deny (403 or dropped).",
            value=sources.refused if sources is not None else 0,
        )
        yield CounterMetricFamily(
            _name("requests_flood_dropped"),
            "Requests dropped over security.flood_limit.",
            value=sources.flooded if sources is not None else 0,
        )

    # -- admin --------------------------------------------------------------------------------

    def _cluster(self) -> Iterator[Metric]:
        return _cluster_metrics(self.target)

    def _admin(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(
            _name("reloads"), "dispatcher.reload calls, by result.", labels=["result"]
        )
        done = self.target.dispatcher.reloads
        for result in ("ok", "failed"):
            reloads.add_metric([result], done.get(result, 0))
        yield reloads
        dns = self.target.dispatcher.dns
        stats = dns.stats if dns is not None else {}
        yield CounterMetricFamily(
            _name("dns_refreshes"),
            "Background DNS lookups of destinations located by DNS.",
            value=stats.get("refreshes", 0),
        )
        yield CounterMetricFamily(
            _name("dns_refresh_failures"),
            "Background DNS lookups that failed or came back empty (the last good answer kept).",
            value=stats.get("refresh_failures", 0),
        )
        yield CounterMetricFamily(
            _name("dns_changes"),
            "DNS answers that changed a destination's addresses without a reload.",
            value=stats.get("changes", 0),
        )
        calls = CounterMetricFamily(
            _name("rpc_calls"), "Admin JSON-RPC calls, by method.", labels=["method"]
        )
        for method, value in sorted(self.rpc.calls.items()):
            calls.add_metric([method], value)
        yield calls
        if self.logins is not None:
            logins = CounterMetricFamily(
                _name("console_logins"),
                'Web console logins by result: "ok", "wrong" (a wrong token), "limited" '
                "(refused: too many wrong tokens from that address within a minute).",
                labels=["result"],
            )
            for result in ("ok", "wrong", "limited"):
                logins.add_metric([result], self.logins.get(result, 0))
            yield logins

    # -- Python routing hooks -----------------------------------------------------------------

    def _hooks(self) -> Iterator[Metric]:
        loader = self.target.dispatcher.hooks
        if not loader:
            return
        seconds = HistogramMetricFamily(
            _name("hook_seconds"),
            "Time spent in each Python routing hook call (on the event loop).",
            labels=["hook"],
        )
        calls = CounterMetricFamily(
            _name("hook_calls"),
            'Python routing hook calls, by outcome ("pass": it returned None; "error": it '
            "raised or returned something else, answered 500).",
            labels=["hook", "outcome"],
        )
        slow = CounterMetricFamily(
            _name("hook_slow_calls"),
            "Python routing hook calls that took longer than the slow-call threshold.",
            labels=["hook"],
        )
        for index, name in loader.specs:
            stats = loader.stats[index]
            label = f"route[{index}] {name}"
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*BUCKETS, float("inf")), stats.buckets, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            seconds.add_metric([label], buckets, stats.seconds)
            for outcome in OUTCOMES:
                calls.add_metric([label, outcome], stats.outcomes[outcome])
            slow.add_metric([label], stats.slow)
        yield seconds
        yield calls
        yield slow

    # -- destination events -------------------------------------------------------------------

    def _events(self) -> Iterator[Metric]:
        events = events_of(self.target)
        if events is None:
            return
        raised = CounterMetricFamily(
            _name("destination_events"),
            "Destination events raised by this process (dst-down, dst-up: Kamailio's "
            "dispatcher event routes).",
            labels=["event"],
        )
        for kind, value in sorted(events.raised.items()):
            raised.add_metric([kind], value)
        yield raised
        told = CounterMetricFamily(
            _name("destination_event_deliveries"),
            "Destination events told to each [events] outlet, by outcome (sent, failed, "
            "timeout, dropped).",
            labels=["outlet", "outcome"],
        )
        for outlet in events.outlets:
            for outcome in EVENT_OUTCOMES:
                told.add_metric([outlet.label, outcome], outlet.stats[outcome])
        yield told


def build_registry(
    target: AdminTarget, rpc: Rpc, logins: Counter[str] | None = None
) -> CollectorRegistry:
    """A registry for one proxy's ``/metrics``: our collector plus the standard
    ``process_*`` metrics (CPU, memory, open files). ``logins``: the web console's
    logins by result."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SipdispatchCollector(target, rpc, logins))
    ProcessCollector(registry=registry)
    return registry


CLUSTER_COUNTERS: Final[dict[str, tuple[str, str]]] = {
    "events_sent": ("cluster_events_sent", "Events published to the other nodes."),
    "events_received": ("cluster_events_received", "Events received from the other nodes."),
    "states_applied": (
        "cluster_states_applied",
        "Destination state changes made on another node and applied here.",
    ),
    "reloads_received": ("cluster_reloads_received", "Reloads asked by another node."),
    "redis_errors": ("cluster_redis_errors", "Redis sessions ended by an error (Redis lost)."),
    "membership_changes": ("cluster_membership_changes", "Changes of the live node list."),
    "load_reserved": ("cluster_load_reserved", "Calls counted in the shared call-load ledger."),
    "load_refused": (
        "cluster_load_refused",
        "Calls whose destination the ledger found full (other nodes' calls had taken its "
        "maxload): they went to the next destination, or were answered 503.",
    ),
    "load_overbooked": (
        "cluster_load_overbooked",
        "Calls counted over the destination's maxload: sent before the ledger answered "
        "(it took longer than load_wait, or load_wait is 0).",
    ),
    "load_wait_expired": (
        "cluster_load_wait_expired",
        "Calls sent on the local count because the ledger had not answered within load_wait.",
    ),
    "load_released": ("cluster_load_released", "Calls released from the shared ledger."),
    "master_changes": (
        "cluster_redis_master_changes",
        "Times this node found the cluster's Redis at a new address (a Sentinel failover).",
    ),
}
"""``ClusterNode.stats`` keys with a metric: key -> (name, help)."""


def _cluster_metrics(target: AdminTarget) -> Iterator[Metric]:
    cluster = cluster_of(target)
    if cluster is None:
        return
    yield GaugeMetricFamily(
        _name("cluster_redis_up"),
        "1 while this node is connected to the cluster's Redis and synchronised.",
        value=1.0 if cluster.up else 0.0,
    )
    yield GaugeMetricFamily(
        _name("cluster_nodes"),
        "Live nodes of the cluster, this one included.",
        value=len(cluster.live),
    )
    master = GaugeMetricFamily(
        _name("cluster_redis_master"),
        "1 for the Redis this node uses (with Sentinel: the master the sentinels named).",
        labels=["address"],
    )
    address = cluster.redis_info()["MASTER"]
    if address:
        master.add_metric([address], 1.0)
    yield master
    stats = cluster.stats
    for key, (suffix, doc) in CLUSTER_COUNTERS.items():
        yield CounterMetricFamily(_name(suffix), doc, value=stats[key])
