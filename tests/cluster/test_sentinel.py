"""Redis without a single point of failure: two ``sipdispatch run`` nodes find their
Redis master through three Sentinels (a private master and replica with an ACL user,
sentinels with a password of their own), and when the master is killed and the
sentinels promote the replica, both nodes move to it without a restart: the shared
state, the pub/sub events and the call-load ledger's Lua scripts work on the new
master, and calls never stopped being routed meanwhile."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.conftest import GatewayFactory, ProxyFactory
from tests.integration.proxyctl import ProxyProcess, toml_str
from tests.integration.sippctl import free_port, start_sipp
from tests.integration.test_admin import flags, result, wait_for

from .conftest import SENTINEL_MASTER, PrivateRedis, acl_args, private_sentinel
from .test_two_nodes import HEARTBEAT, SIPP_TIMEOUT, Cluster, metric

pytestmark = pytest.mark.timeout(120)

MASTER_NAME = SENTINEL_MASTER
USER = "sipd"
PASSWORD = "redis-pw-4f9c1e"
"""The ACL user's password on the master and the replica."""
SENTINEL_PASSWORD = "sentinel-pw-7d21ab"


@dataclass
class SentinelGroup:
    """A master, its replica and three sentinels watching them, all private."""

    master: PrivateRedis
    replica: PrivateRedis
    sentinels: list[PrivateRedis]

    def data(self, server: PrivateRedis) -> redis.Redis:
        return redis.Redis(port=server.port, username=USER, password=PASSWORD,
                           decode_responses=True, socket_timeout=5)  # fmt: skip

    def sentinel(self, server: PrivateRedis) -> redis.Redis:
        return redis.Redis(port=server.port, password=SENTINEL_PASSWORD,
                           decode_responses=True, socket_timeout=5)  # fmt: skip

    def named_master(self) -> list[str]:
        """What each live sentinel names as the master (``host:port``)."""
        named = []
        for s in self.sentinels:
            client = self.sentinel(s)
            try:
                host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                named.append(f"{host}:{port}")
            finally:
                client.close()
        return named

    def watching(self) -> bool:
        """Every sentinel knows the other two and the replica, which is in sync: a
        failover can be agreed on."""
        for s in self.sentinels:
            client = self.sentinel(s)
            try:
                state = client.sentinel_master(MASTER_NAME)
            finally:
                client.close()
            if state["num-other-sentinels"] != 2 or state["num-slaves"] != 1:
                return False
        replica = self.data(self.replica)
        try:
            return replica.info("replication")["master_link_status"] == "up"
        finally:
            replica.close()

    def cluster_keys(self) -> str:
        """What a node's ``[cluster]`` says to reach them."""
        addresses = ", ".join(toml_str(s.address) for s in self.sentinels)
        return (
            f"sentinels = [{addresses}]\n"
            f"sentinel_master = {toml_str(MASTER_NAME)}\n"
            f"sentinel_password = {toml_str(SENTINEL_PASSWORD)}\n"
            f"redis_username = {toml_str(USER)}\n"
            f"redis_password = {toml_str(PASSWORD)}\n"
        )


ACL = acl_args(USER, PASSWORD)
"""The data servers: one ACL user, the default user off, replication as that user."""


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    master = PrivateRedis(free_port("tcp"), tmp_path / "master", args=ACL)
    replica = PrivateRedis(
        free_port("tcp"), tmp_path / "replica",
        args=[*ACL, "--replicaof", "127.0.0.1", str(master.port)],
    )  # fmt: skip
    sentinels = [
        private_sentinel(
            tmp_path / f"sentinel{i}",
            master,
            quorum=2,
            user=USER,
            password=PASSWORD,
            requirepass=SENTINEL_PASSWORD,
        )
        for i in range(3)
    ]
    group = SentinelGroup(master, replica, sentinels)
    try:
        for server in (master, replica, *sentinels):
            server.start()
        wait_for(group.watching, 30, "the sentinels watching the master and its replica")
        yield group
    finally:
        for server in (*sentinels, replica, master):
            server.kill()


def redis_in_use(proxy: ProxyProcess) -> dict[str, Any]:
    info: dict[str, Any] = result(proxy, "cluster.nodes")["REDIS"]
    return info


def on(proxy: ProxyProcess, server: PrivateRedis) -> bool:
    """The node is connected to ``server``, as its ``cluster.nodes`` says."""
    info = redis_in_use(proxy)
    return bool(info["UP"]) and info["MASTER"] == server.address


def health(proxy: ProxyProcess) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{proxy.admin_url}/health", timeout=30) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:  # 503 has the same summary
        body = exc.read()
    summary: dict[str, Any] = json.loads(body)
    return summary


def test_the_nodes_follow_a_master_failover_with_state_events_and_call_load(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    sentinel_group: SentinelGroup,
    sipp: str,
) -> None:
    group = sentinel_group
    # gw3 is disabled before the failover; gw1 and gw2 take two calls each at most.
    gw1, gw2, gw3 = gateways("gw1"), gateways("gw2"), gateways("gw3")
    cluster = Cluster(
        tmp_path, proxy_factory, [gw1, gw2, gw3], namespace, redis_url="", algorithm=10,
        attrs="maxload=2", cluster_extra=group.cluster_keys(),
    )  # fmt: skip
    a, b = cluster.start("lb-a"), cluster.start("lb-b")
    wait_for(lambda: len(result(a, "cluster.nodes")["NODES"]) == 2, 20, "both nodes live")
    for node in (a, b):
        assert redis_in_use(node) == {"MASTER": group.master.address, "UP": True,
                                      "SENTINEL_MASTER": MASTER_NAME, "TLS": False}  # fmt: skip
        assert health(node)["cluster"] == {"redis_up": True, "redis": group.master.address}

    # Before the failover: a state change, and a call counted by the ledger's scripts
    # (so the old master has them loaded, the replica does not).
    assert result(a, "dispatcher.set_state", "dx", 1, gw3.uri)
    wait_for(lambda: flags(b)[gw3.uri] == "DX", 20, "DX on node B")
    first = cluster.call("lb-a", sipp, 1, tmp_path / "sipp-first")
    assert first.ok and first.successful == 1, first.report()
    replica = group.data(group.replica)
    state_key, gw3_field = f"{namespace}:state", f"1 {gw3.uri}"
    wait_for(lambda: replica.hexists(state_key, gw3_field), 20, "the state on the replica")
    disabled = replica.hget(state_key, gw3_field)

    # Calls through A all along the failover: routed on the state known meanwhile.
    with start_sipp(
        "uac_call.xml", "127.0.0.1", cluster.ports["lb-a"][0], calls=40, rate=10,
        timeout=SIPP_TIMEOUT, workdir=tmp_path / "sipp-during", binary=sipp,
    ) as during:  # fmt: skip
        sent = gw1.invites + gw2.invites
        wait_for(lambda: gw1.invites + gw2.invites >= sent + 5, 20, "calls, the master up")
        group.master.kill()
        killed = time.monotonic()
        wait_for(lambda: group.named_master() == [group.replica.address] * 3, 30,
                 "the sentinels promoting the replica")  # fmt: skip
        promoted = time.monotonic()
        for node in (a, b):
            wait_for(lambda n=node: on(n, group.replica), 30, "the node on the new master")
        followed = time.monotonic()
        outcome = during.wait()
    assert outcome.ok and outcome.successful == 40, outcome.report()
    print(
        f"failover: sentinels promoted the replica {promoted - killed:.2f} s after the kill; "
        f"both nodes on it {followed - killed:.2f} s after the kill "
        f"({followed - promoted:.2f} s after the promotion)"
    )
    assert followed - killed < 20

    for node in (a, b):
        log = node.log_text()
        assert log.count("cluster: Redis unreachable") == 1, log
        assert (f"cluster: Redis master is now {group.replica.address} "
                f"(was {group.master.address})") in log  # fmt: skip
        assert metric(node, "sipdispatch_cluster_redis_master_changes_total") == 1
        assert metric(node, "sipdispatch_cluster_redis_errors_total") >= 1
        assert metric(node, "sipdispatch_cluster_redis_up") == 1
        assert health(node)["cluster"] == {"redis_up": True, "redis": group.replica.address}

    # After it: the state set before the failover is still the shared one, and changes
    # go both ways through the new master's channel.
    new_master = group.data(group.replica)
    assert new_master.hget(state_key, gw3_field) == disabled
    assert result(b, "dispatcher.set_state", "ax", 1, gw3.uri)
    wait_for(lambda: flags(a)[gw3.uri] == "AX", 20, "AX on node A")
    assert result(a, "dispatcher.set_state", "dx", 1, gw3.uri)
    wait_for(lambda: flags(b)[gw3.uri] == "DX", 20, "DX again on node B")

    # The ledger on the new master: four held calls through A fill both gateways
    # (maxload 2 each), B sees them and refuses the next call, the BYEs free them.
    def load(proxy: ProxyProcess) -> list[int]:
        listing = result(proxy, "dispatcher.list")
        targets = listing["RECORDS"][0]["SET"]["TARGETS"]
        return sorted(int(t["DEST"]["RUNTIME"]["DLGLOAD"]) for t in targets)

    invites = gw1.invites + gw2.invites
    with start_sipp(
        "uac_call_hold.xml", "127.0.0.1", cluster.ports["lb-a"][0], calls=4, rate=10,
        timeout=SIPP_TIMEOUT, workdir=tmp_path / "sipp-hold", extra_args=["-d", "6000"],
        binary=sipp,
    ) as holder:  # fmt: skip
        wait_for(lambda: load(a) == [0, 2, 2], 20, "four calls up through A")
        wait_for(lambda: load(b) == [0, 2, 2], 20, "B sees A's four calls")
        refused = cluster.call("lb-b", sipp, 1, tmp_path / "sipp-refused", "uac_expect_503.xml")
        assert refused.ok and refused.successful == 1, refused.report()
        held = holder.wait()
    assert held.ok and held.successful == 4, held.report()
    assert gw1.invites + gw2.invites == invites + 4 and gw3.invites == 0
    wait_for(lambda: load(b) == [0, 0, 0], 20, "the BYEs released the load on B")
    # The replica never had the ledger's scripts (a master replicates what they do,
    # not them): they were loaded again on it when it answered NOSCRIPT.
    assert int(new_master.info("memory")["number_of_cached_scripts"]) >= 3
    for node in (a, b):
        assert metric(node, "sipdispatch_cluster_load_overbooked_total") == 0

    # No password anywhere a node shows.
    for node in (a, b):
        shown = (
            node.log_text() + json.dumps(result(node, "cluster.nodes")) + json.dumps(health(node))
        )
        assert PASSWORD not in shown and SENTINEL_PASSWORD not in shown
    replica.close()
    new_master.close()


def test_a_switchover_moves_both_nodes_off_the_demoted_master(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    sentinel_group: SentinelGroup,
) -> None:
    """``SENTINEL FAILOVER`` (maintenance): the old master lives on, and takes writes
    until the sentinels turn it into a replica; the nodes must not stay on it."""
    group = sentinel_group
    gw1, gw2 = gateways("gw1"), gateways("gw2")
    cluster = Cluster(tmp_path, proxy_factory, [gw1, gw2], namespace, redis_url="",
                      cluster_extra=group.cluster_keys())  # fmt: skip
    a, b = cluster.start("lb-a"), cluster.start("lb-b")
    wait_for(lambda: len(result(a, "cluster.nodes")["NODES"]) == 2, 20, "both nodes live")
    assert on(a, group.master) and on(b, group.master)

    asked = group.sentinel(group.sentinels[0])
    assert asked.sentinel_failover(MASTER_NAME)
    asked.close()
    wait_for(lambda: group.named_master() == [group.replica.address] * 3, 30,
             "the sentinels naming the replica")  # fmt: skip
    switched = time.monotonic()
    for node in (a, b):
        wait_for(lambda n=node: on(n, group.replica), 30, "the node on the new master")
    moved = time.monotonic() - switched
    # The old master takes writes until the sentinels turn it into a replica (at
    # their next look at it, up to 10 s on): the nodes left it at their next heartbeat.
    assert moved < 5 * HEARTBEAT, moved
    print(f"switchover: both nodes on the new master {moved:.2f} s after the sentinels named it")

    assert result(a, "dispatcher.set_state", "dx", 1, gw2.uri)
    wait_for(lambda: flags(b)[gw2.uri] == "DX", 20, "DX on node B")
    new_master = group.data(group.replica)
    assert new_master.hexists(f"{namespace}:state", f"1 {gw2.uri}")
    new_master.close()
    for node in (a, b):
        assert metric(node, "sipdispatch_cluster_redis_master_changes_total") == 1
        assert metric(node, "sipdispatch_cluster_redis_up") == 1
        assert "cluster: Redis unreachable" not in node.log_text()
