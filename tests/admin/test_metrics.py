"""Metrics are read at scrape time from the proxy's counters and tables."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sipdispatch.admin.metrics import build_registry
from sipdispatch.admin.protocol import Traffic
from sipdispatch.admin.rpc import Rpc
from sipdispatch.collector import Collector
from sipdispatch.config import EventsConfig
from sipdispatch.dispatcher.listfile import make_destination
from sipdispatch.dispatcher.sets import DispatcherSets
from sipdispatch.events import DestinationEvents
from sipdispatch.server import Server
from sipdispatch.sip.stats import ProxyStats
from sipdispatch.transport.shell import ShellStats

from .conftest import ServerFactory, run

Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(server: Server, methods: Rpc | None = None) -> dict[Sample, float]:
    """Every sample of ``/metrics`` as {(name, sorted labels): value}."""
    registry = build_registry(server, methods if methods is not None else Rpc(server))
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def with_traffic(
    server: Server,
    proxy: ProxyStats,
    shell: ShellStats | None = None,
    servers: int = 0,
    clients: int = 0,
    handles: tuple[Any, ...] = (),
) -> None:
    """Make ``server.traffic()`` answer these counters (as a running proxy would)."""
    traffic = Traffic(proxy, shell or ShellStats(), servers, clients, handles, Collector())
    server.traffic = lambda: traffic  # type: ignore[method-assign]


def test_proxy_counters_become_metrics(make_server: ServerFactory) -> None:
    server = make_server()
    stats = ProxyStats()
    for method in ["INVITE"] * 5 + ["BYE"] * 4 + ["FOO", "BAR", "BAZ"]:
        stats.count_request(method)
    stats.rx_replies = 30
    stats.relayed_2xx = 4
    for code in (503, 400, 400):
        stats.count_reply(code)
    stats.tx_requests, stats.tx_requests_local = 20, 6
    stats.parse_errors, stats.dropped, stats.failovers, stats.branch_timeouts = 3, 1, 2, 1
    shell = ShellStats()
    shell.slow_messages, shell.udp_errors = 2, 7
    dest = server.router.sets.find(1, "sip:127.0.0.1:5071")
    with_traffic(server, stats, shell, servers=2, clients=2, handles=(dest, None))
    m = scrape(server)
    requests = "sipdispatch_sip_requests_received_total"
    assert value(m, requests, method="INVITE") == 5
    assert value(m, requests, method="BYE") == 4
    assert value(m, requests, method="other") == 3  # not counted per method by the proxy
    assert value(m, "sipdispatch_sip_replies_sent_total", code="503") == 1
    assert value(m, "sipdispatch_sip_replies_sent_total", code="400") == 2
    assert value(m, "sipdispatch_sip_replies_sent_total", code="2xx") == 4
    assert value(m, "sipdispatch_sip_replies_received_total") == 30
    assert value(m, "sipdispatch_sip_requests_sent_total", origin="proxied") == 20
    assert value(m, "sipdispatch_sip_requests_sent_total", origin="local") == 6
    assert value(m, "sipdispatch_sip_parse_errors_total") == 3
    assert value(m, "sipdispatch_sip_dropped_total") == 1
    assert value(m, "sipdispatch_failovers_total") == 2
    assert value(m, "sipdispatch_branch_timeouts_total") == 1
    assert value(m, "sipdispatch_slow_messages_total") == 2
    assert value(m, "sipdispatch_udp_errors_total") == 7
    assert value(m, "sipdispatch_transactions_in_flight", kind="server") == 2
    assert value(m, "sipdispatch_transactions_in_flight", kind="client") == 2
    in_flight = "sipdispatch_destination_branches_in_flight"
    assert value(m, in_flight, set="1", uri="sip:127.0.0.1:5071") == 1
    assert value(m, in_flight, set="1", uri="sip:127.0.0.1:5072") == 0


def test_with_no_request_yet_the_method_family_has_other_at_zero(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    with_traffic(server, ProxyStats())
    assert value(scrape(server), "sipdispatch_sip_requests_received_total", method="other") == 0


def test_before_start_there_are_no_proxy_counters_but_destinations(
    make_server: ServerFactory,
) -> None:
    m = scrape(make_server())
    assert ("sipdispatch_sip_requests_received_total", (("method", "other"),)) not in m
    assert value(m, "sipdispatch_sets") == 1


def test_destination_state_latency_and_load(make_server: ServerFactory) -> None:
    server = make_server(
        ["1 sip:127.0.0.1:5071 8 0 latency=40", "1 sip:127.0.0.1:5072 4", "2 sip:127.0.0.1:5073"]
    )
    dest = server.router.sets.find(1, "sip:127.0.0.1:5071")
    assert dest is not None
    dest.dlg_load = 3
    dest.latency.timeout = 2
    m = scrape(server)
    key = {"set": "1", "uri": "sip:127.0.0.1:5071"}
    state = "sipdispatch_destination_state"
    assert value(m, state, state="active", **key) == 1
    assert value(m, state, state="inactive", **key) == 0
    assert value(m, state, state="disabled", set="1", uri="sip:127.0.0.1:5072") == 1
    assert value(m, "sipdispatch_destination_probing", **key) == 1
    assert value(m, "sipdispatch_destination_usable", set="1", uri="sip:127.0.0.1:5072") == 0
    assert value(m, "sipdispatch_destination_latency_average_seconds", **key) == 0.04
    assert value(m, "sipdispatch_destination_ping_timeouts_total", **key) == 2
    assert value(m, "sipdispatch_destination_calls_active", **key) == 3
    assert value(m, "sipdispatch_set_destinations_usable", set="1") == 1
    assert value(m, "sipdispatch_sets") == 2
    # Nothing was routed in this test: the counter is there and zero.
    assert value(m, "sipdispatch_destination_calls_dispatched_total", **key) == 0


def test_calls_dispatched_are_counted_per_destination_and_per_set(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    dests = []
    for port, count in ((5071, 4), (5072, 6)):
        d = make_destination(1, f"sip:127.0.0.1:{port}")
        d.dispatched = count
        dests.append(d)
    server.router.sets = DispatcherSets(dests, random.Random(1))
    m = scrape(server)
    assert (
        value(
            m, "sipdispatch_destination_calls_dispatched_total", set="1", uri="sip:127.0.0.1:5072"
        )
        == 6
    )
    assert value(m, "sipdispatch_set_calls_dispatched_total", set="1") == 10


def test_a_uri_listed_twice_is_one_series(make_server: ServerFactory) -> None:
    server = make_server(["1 sip:127.0.0.1:5071", "1 sip:127.0.0.1:5071 0 5"])
    m = scrape(server)  # the parser would reject duplicate series
    assert value(m, "sipdispatch_set_destinations", set="1") == 2


def test_admin_prober_and_state_log_counters(make_server: ServerFactory) -> None:
    server = make_server()
    methods = Rpc(server)
    run(methods.call("dispatcher.reload", []))
    run(methods.call("core.version", []))
    run(methods.call("dispatcher.set_state", ["ip", 1, "all"]))

    class Prober:
        active = False
        stats = Counter({"pings_sent": 5})

    server.prober = Prober()  # type: ignore[assignment]
    m = scrape(server, methods)
    assert value(m, "sipdispatch_reloads_total", result="ok") == 1
    assert value(m, "sipdispatch_rpc_calls_total", method="core.version") == 1
    assert value(m, "sipdispatch_prober_events_total", event="pings_sent") == 5
    assert value(m, "sipdispatch_destination_state_changes_total", to="IP") == 2
    assert value(m, "sipdispatch_prober_events_total", event="went_down") == 2
    assert value(m, "sipdispatch_ping_active") == 0
    assert value(m, "sipdispatch_build_info", version=__import__("sipdispatch").__version__) == 1


def test_calls_to_fallback_sets_are_counted_per_rule_set_and_fallback_set(
    make_server: ServerFactory,
) -> None:
    server = make_server(
        ["1 sip:127.0.0.1:5071", "2 sip:127.0.0.1:5072", "3 sip:127.0.0.1:5073"],
        routes=[{"set": 1, "fallback": [2, 3]}],
    )
    server.router.count_fallback(1, 2)
    server.router.count_fallback(1, 2)
    server.router.count_fallback(4, 5)  # a hook's route to a set no rule names
    m = scrape(server)
    name = "sipdispatch_fallback_calls_total"
    assert value(m, name, rule_set="1", set="2") == 2
    # A configured fallback set is listed before any call reached it.
    assert value(m, name, rule_set="1", set="3") == 0
    assert value(m, name, rule_set="4", set="5") == 1


def test_destination_events_and_their_deliveries_are_counted_per_outlet(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    assert not any(name.startswith("sipdispatch_destination_event") for name, _ in scrape(server))
    events = DestinationEvents(
        EventsConfig(command=("true",), webhook="http://127.0.0.1:9/"), server.dispatcher.hooks
    )
    events.outlets[1].retries = 0  # type: ignore[attr-defined]
    server.events = events
    events.attach(server.state_log)

    async def scenario() -> None:
        dest = server.router.sets.find(1, "sip:127.0.0.1:5071")
        assert dest is not None
        server.router.mark(dest, "ip", "503 from the gateway", server.now())
        await events.close(grace=30)

    run(scenario())
    m = scrape(server)
    assert value(m, "sipdispatch_destination_events_total", event="dst-down") == 1
    assert value(m, "sipdispatch_destination_events_total", event="dst-up") == 0
    told = "sipdispatch_destination_event_deliveries_total"
    assert value(m, told, outlet="command", outcome="sent") == 1
    assert value(m, told, outlet="webhook", outcome="failed") == 1  # nothing listens on :9
    assert value(m, told, outlet="webhook", outcome="dropped") == 0
