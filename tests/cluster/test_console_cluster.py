"""The web console of a clustered node: the live nodes, where each is reached and when
it was last heard of, and which destinations each one pings, as ``cluster.nodes``
says, updated without reloading the page (Chromium, two nodes on one Redis
namespace)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import GatewayFactory, ProxyFactory
from tests.integration.test_admin import result, wait_for
from tests.integration.test_console import WAIT_MS, playwright_api, screenshot

from .test_two_nodes import Cluster

pytestmark = pytest.mark.timeout(240)


def node_row(page: Any, node: str) -> Any:
    return page.locator(f'#cluster tr[data-node="{node}"]')


def test_cluster_view_lists_the_nodes_and_what_each_probes_and_follows_a_node_leaving(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    page: Any,
) -> None:
    gws = [gateways(f"gw{i}") for i in range(1, 5)]
    cluster = Cluster(tmp_path, proxy_factory, gws, namespace, ping_interval=1)
    a, b = cluster.start("lb-a"), cluster.start("lb-b")
    wait_for(lambda: len(result(a, "cluster.nodes")["NODES"]) == 2, 30, "both nodes live")
    page.goto(a.admin_url + "/")
    view = page.locator("#cluster")
    playwright_api.expect(view).to_be_visible()
    playwright_api.expect(page.locator("#cluster-up")).to_have_text(
        "connected to Redis at 127.0.0.1:6379"
    )
    playwright_api.expect(node_row(page, "lb-a")).to_have_count(1)
    playwright_api.expect(node_row(page, "lb-b")).to_have_count(1)
    playwright_api.expect(node_row(page, "lb-a").locator("td.is-self")).to_have_text("this node")
    playwright_api.expect(node_row(page, "lb-b").locator("td.is-self")).to_have_text("")
    playwright_api.expect(node_row(page, "lb-b").locator("td.seen")).to_have_text(
        re.compile(r"^\d+ s ago$")
    )

    # The same split as cluster.nodes: every destination pinged by exactly one node.
    def shown() -> dict[str, list[str]]:
        return {
            node: node_row(page, node).locator("td.node-probes li").all_text_contents()
            for node in ("lb-a", "lb-b")
        }

    def rpc_split() -> dict[str, list[str]]:
        return {n["ID"]: n["PROBES"] for n in result(a, "cluster.nodes")["NODES"]}

    def agree() -> bool:
        want = rpc_split()
        return shown() == {k: want[k] for k in ("lb-a", "lb-b")}

    wait_for(agree, 30, "the page shows cluster.nodes' split")
    split = shown()
    assert sorted(split["lb-a"] + split["lb-b"]) == sorted(gw.uri for gw in gws)
    address = next(n["ADDRESS"] for n in result(a, "cluster.nodes")["NODES"] if n["ID"] == "lb-b")
    playwright_api.expect(node_row(page, "lb-b").locator("td.address")).to_have_text(address)
    screenshot(page, "cluster")

    # lb-b stops: without a reload the page drops it and lb-a probes everything.
    page.evaluate("window.sameDocument = true")
    assert b.stop(timeout=20) == 0
    playwright_api.expect(node_row(page, "lb-b")).to_have_count(0, timeout=WAIT_MS)
    playwright_api.expect(node_row(page, "lb-a").locator("td.node-probes li")).to_have_count(
        len(gws), timeout=WAIT_MS
    )
    assert page.evaluate("window.sameDocument") is True


def test_a_standalone_node_shows_no_cluster_view(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, page: Any
) -> None:
    from tests.integration.test_console import expect_state, start

    gw1 = gateways("gw1")
    proxy = start(tmp_path, proxy_factory, [gw1])
    page.goto(proxy.admin_url + "/")
    expect_state(page, gw1, "AP")
    playwright_api.expect(page.locator("#cluster")).to_be_hidden()
    assert page.request.get(proxy.admin_url + "/console/state").json()["cluster"] is None
