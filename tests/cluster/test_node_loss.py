"""A node is lost with a call up through it: the node that takes its address relays the
call's BYE from the route set alone, and the call's algorithm-10 load is released in
the shared Redis."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.conftest import GatewayFactory, ProxyFactory
from tests.integration.proxyctl import ProxyProcess
from tests.integration.sippctl import free_port, start_sipp
from tests.integration.test_admin import result, wait_for

from .conftest import SHARED_URL
from .test_two_nodes import SIPP_TIMEOUT, Cluster

pytestmark = pytest.mark.timeout(240)

HOLD_MS = 25000
"""How long the caller holds the call before its BYE: node A is killed and node B
started on A's address meanwhile."""


def _dest(proxy: ProxyProcess) -> dict[str, Any]:
    dest: dict[str, Any] = result(proxy, "dispatcher.list")["RECORDS"][0]["SET"]["TARGETS"][0][
        "DEST"
    ]
    return dest


def test_after_a_node_is_killed_the_node_taking_its_address_relays_the_bye_and_frees_the_load(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    sipp: str,
) -> None:
    """The address the caller and the callee know the proxy by (the Record-Route, a
    keepalived VIP in production) is 127.0.0.1:PORT. On one machine an address cannot be
    held by two live processes at once, so the VIP's move is modelled by what it looks
    like from the network: once node A is dead (SIGKILL: no goodbye to the cluster, no
    closing of anything), node B, a node of the same cluster (same Redis namespace, its
    own node id), has its SIP listener on that IP:port and gets the packets sent to it,
    as a backup with ``ip_nonlocal_bind`` does when keepalived adds the VIP to its
    interface. B never saw the call: it must relay the caller's BYE from the Record-Route
    in it alone, and release the call's load counted by A in Redis."""
    gw = gateways("gw1")
    cluster = Cluster(tmp_path, proxy_factory, [gw], namespace, algorithm=10, attrs="maxload=5")
    a = cluster.start("lb-a")
    port = cluster.ports["lb-a"][0]
    store = redis.Redis.from_url(SHARED_URL, decode_responses=True)
    with start_sipp(
        "uac_call_hold.xml",
        "127.0.0.1",
        port,
        calls=1,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
        extra_args=["-d", str(HOLD_MS)],
        binary=sipp,
    ) as caller:
        wait_for(lambda: gw.acks == 1, 30, "the call up through node A")
        call_id = gw.requests("INVITE")[0].call_id
        assert int(_dest(a)["RUNTIME"]["DLGLOAD"]) == 1
        assert store.exists(f"{namespace}:call:{call_id}")
        routes = gw.requests("INVITE")[0].get_all("record-route")
        assert routes == [f"<sip:127.0.0.1:{port};lr>"], routes

        a.kill()
        killed_at = time.monotonic()
        cluster.ports["lb-b"] = (port, free_port("tcp"))  # A's SIP address, an admin of its own
        b = cluster.start("lb-b")
        # B knows the call only through the cluster's ledger.
        assert int(_dest(b)["RUNTIME"]["DLGLOAD"]) == 1
        assert gw.byes == 0, "the BYE came before node B was up: HOLD_MS is too short"
        outcome = caller.wait()

    assert outcome.ok and outcome.successful == 1, outcome.report()
    [bye] = gw.requests("BYE")
    assert bye.time > killed_at and bye.call_id == call_id
    # Relayed by the proxy (its Via on top), the only one alive being B.
    assert bye.vias[0].startswith(f"SIP/2.0/UDP 127.0.0.1:{port};branch=")
    assert b.alive() and not a.alive()
    wait_for(lambda: int(_dest(b)["RUNTIME"]["DLGLOAD"]) == 0, 20, "the load released on B")
    assert not store.exists(f"{namespace}:call:{call_id}")
    for key in store.scan_iter(match=f"{namespace}:load:*"):
        assert store.zcard(key) == 0, key
    store.close()
