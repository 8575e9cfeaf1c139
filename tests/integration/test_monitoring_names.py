"""Every metric the shipped Grafana dashboard and Prometheus alert rules query is one a
running proxy exports: a real ``sipdispatch run`` (two workers, a node of a Redis cluster,
so that the worker and cluster families are there too) takes a call from sipp, and the
names in the examples' PromQL are looked up in its ``/metrics``."""

from __future__ import annotations

import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import PrivateRedis
from tests.test_monitoring_examples import alert_exprs, dashboard_exprs, metric_names

from .conftest import GatewayFactory, ProxyFactory, in_ci
from .proxyctl import ProxyProcess, basic_config, toml_str, write_list_file
from .sippctl import free_port
from .test_admin import calls, result, wait_for

pytestmark = pytest.mark.timeout(240)

SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}
"""How prometheus_client's parser names a family's samples: a counter family is named
without ``_total`` (its samples have it), a histogram's samples add ``_bucket``, ``_sum``,
``_count``; ``_created`` only where the exposition has one. Gauges (and the info metric,
which the text format exposes as the gauge ``sipdispatch_build_info``) are named as their
one sample."""

RATED = re.compile(r"\b(?:rate|irate|increase)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")
"""A metric whose per-second rate or increase a query takes: it must be a counter."""


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (asked for before the proxies, so stopped after
    them)."""
    if shutil.which("redis-server") is None:
        if in_ci():
            pytest.fail("redis-server is not on PATH and CI is set: apt-get install redis-server")
        pytest.skip("redis-server is not on PATH (apt-get install redis-server)")
    server = PrivateRedis(free_port("tcp"), tmp_path)
    server.start()
    yield server
    server.kill()


def family_of(name: str, families: dict[str, Metric]) -> Metric | None:
    """The family a sample name of a query belongs to, found the way prometheus_client
    names families (see SAMPLE_SUFFIXES), or None."""
    family = families.get(name)
    if family is not None and family.type not in SAMPLE_SUFFIXES:
        return family
    for kind, suffixes in SAMPLE_SUFFIXES.items():
        for suffix in suffixes:
            if name.endswith(suffix):
                family = families.get(name[: -len(suffix)])
                if family is not None and family.type == kind:
                    return family
    return None


def scrape(proxy: ProxyProcess) -> dict[str, Metric]:
    with urllib.request.urlopen(f"{proxy.admin_url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_every_metric_the_dashboard_and_the_alerts_query_is_in_a_running_proxys_metrics(
    tmp_path: Path,
    redis_server: PrivateRedis,
    gateways: GatewayFactory,
    proxy_factory: ProxyFactory,
    sipp: str,
) -> None:
    gw = gateways("gw1")
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(tmp_path / "dispatcher.list", [(1, gw.uri)])
    toml = basic_config(port, admin, list_file, ping_interval=1)
    toml = toml.replace("record_route = true\n", "record_route = true\nworkers = 2\n", 1)
    toml += (
        "\n[cluster]\n"
        f"redis_url = {toml_str(redis_server.url)}\n"
        'namespace = "monitoring"\n'
        'node_id = "lb"\n'
        "heartbeat = 1.0\n"
    )
    proxy = proxy_factory(toml, port=port, admin_port=admin)
    wait_for(lambda: len(result(proxy, "cluster.nodes")["NODES"]) == 2, 30, "both workers")
    # A state change (drained and back, as an operator does) and a call: the labelled
    # families show no series before their first one.
    for state in ("dx", "ax"):
        assert result(proxy, "dispatcher.set_state", state, 1, gw.uri)
    calls(proxy, tmp_path, 1, "call")
    wait_for(lambda: gw.byes == 1, what="the BYE")
    families = scrape(proxy)

    samples = {s.name for family in families.values() for s in family.samples}
    # The call and the state changes are there: labelled series, not only the families.
    assert "sipdispatch_worker_requests_received_total" in samples
    assert "sipdispatch_destination_state_changes_total" in samples
    answered = [
        s
        for s in families["sipdispatch_destination_calls"].samples
        if s.labels["outcome"] == "answered"
    ]
    assert [s.value for s in answered] == [1.0]

    for where, exprs in (("dashboard", dashboard_exprs()), ("alerts", alert_exprs())):
        used = set().union(*(metric_names(e) for e in exprs))
        assert len(used) >= (40 if where == "dashboard" else 5), (where, sorted(used))
        missing = sorted(n for n in used if family_of(n, families) is None or n not in samples)
        assert missing == [], f"{where} queries metrics /metrics does not have: {missing}"
        rated = {m for e in exprs for m in RATED.findall(e)}
        for name in rated:
            family = family_of(name, families)
            assert family is not None and family.type in ("counter", "histogram"), (
                f"{where} takes the rate of {name}, a {family.type if family else '?'}"
            )
            if family.type == "histogram":
                assert name.endswith("_bucket") or name.endswith(("_sum", "_count")), name
