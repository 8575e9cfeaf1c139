"""A flood of TCP connections cannot take the proxy's file descriptors or its admin API.

The proxy runs under a small file limit (`ulimit -n 300`); more idle connections than
that are opened to it. It accepts what the limit leaves after its reserve, closes the
rest at once, stays reachable on its admin listener, relays calls, and closes the idle
ones after its idle timeout.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import GatewayFactory, ProxyFactory
from .proxyctl import basic_config, write_list_file
from .sippctl import free_port
from .test_admin import HTTP_TIMEOUT, calls, result

pytestmark = pytest.mark.timeout(180)

FILE_LIMIT = 300
CONNECTIONS = 400


def metrics(admin_url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{admin_url}/metrics", timeout=HTTP_TIMEOUT) as resp:
        text = resp.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:  # summed over the labels
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def test_a_connection_flood_under_a_small_file_limit_leaves_the_admin_api_and_calls_working(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg1")
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(tmp_path / "dispatcher.list", [f"1 {gw.uri}"])
    toml = basic_config(port, admin, list_file).replace(
        "record_route = true\n",
        "record_route = true\ntcp_idle_timeout = 3\ntcp_max_connections_per_source = 1000\n",
    )
    proxy = proxy_factory(
        toml, port=port, admin_port=admin, expect_clean_exit=True, file_limit=FILE_LIMIT
    )
    assert "lowered to" in proxy.log_text()
    flood: list[socket.socket] = []
    try:
        for _ in range(CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            flood.append(s)
        deadline = time.monotonic() + 30
        while True:
            m = metrics(proxy.admin_url)  # the admin listener answers throughout
            if m["sipdispatch_tcp_connections_refused_total"] >= CONNECTIONS - FILE_LIMIT:
                break
            assert time.monotonic() < deadline, m
            time.sleep(0.1)
        assert m["sipdispatch_tcp_connections"] <= FILE_LIMIT
        assert result(proxy, "core.version")
        calls(proxy, tmp_path, 2, "during-flood")
        # The idle ones go after tcp_idle_timeout (3 s): within a few sweeps.
        deadline = time.monotonic() + 30
        while metrics(proxy.admin_url)["sipdispatch_tcp_connections"] > 0:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert metrics(proxy.admin_url)["sipdispatch_tcp_connections_closed_total"] > 0
    finally:
        for s in flood:
            s.close()
