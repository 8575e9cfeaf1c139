"""``[server] workers = 2`` with ``[cluster]``: the worker processes of one proxy are
also nodes of the Redis cluster (``<node_id>/wK``), sharing destination state and call
load through a Redis namespace of the test's own; calls still go to the worker of their
Call-ID and leave from the listening port (tests/workers/ has the rest, without Redis).
sipp is the caller from one source port, scripted gateways answer."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import GatewayFactory, ProxyFactory
from tests.integration.gateway import GatewayThread
from tests.integration.proxyctl import (
    ProxyProcess,
    basic_config,
    toml_str,
)
from tests.integration.sippctl import free_port, run_sipp
from tests.integration.test_admin import flags, result, wait_for

from .conftest import SHARED_URL

pytestmark = pytest.mark.timeout(240)

SIPP_TIMEOUT = 90
ONE_SOURCE = ["-t", "u1"]
"""sipp: every call from one socket, as an SBC sends them."""


def workers_config(
    port: int, admin: int, list_file: Path, namespace: str, *, workers: int = 2, **kw: object
) -> str:
    toml = basic_config(port, admin, list_file, **kw)  # type: ignore[arg-type]
    toml = toml.replace("record_route = true\n", f"record_route = true\nworkers = {workers}\n", 1)
    # Every destination pinged (Kamailio's probing_mode 1), not only the failing ones.
    toml = toml.replace("ping_interval = ", "probing_mode = 1\nping_interval = ", 1)
    return toml + (
        "\n[cluster]\n"
        f"redis_url = {toml_str(SHARED_URL)}\n"
        f"namespace = {toml_str(namespace)}\n"
        'node_id = "lb"\n'
        "heartbeat = 1.0\n"
    )


def start_workers(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gws: list[GatewayThread],
    namespace: str,
    attrs: str = "",
    **kw: object,
) -> ProxyProcess:
    port, admin = free_port(), free_port("tcp")
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text("".join(f"1 {gw.uri} 0 0 {attrs}\n" for gw in gws))
    toml = workers_config(port, admin, list_file, namespace, **kw)
    proxy = proxy_factory(toml, port=port, admin_port=admin)
    wait_for(lambda: len(result(proxy, "cluster.nodes")["NODES"]) == 2, 30, "both workers")
    return proxy


def worker_pids(proxy: ProxyProcess) -> dict[int, int]:
    """Worker index -> pid of its latest start, from the supervisor's log."""
    pids: dict[int, int] = {}
    for m in re.finditer(r"worker (\d+) started \(pid (\d+)\)", proxy.log_text()):
        pids[int(m.group(1))] = int(m.group(2))
    return pids


def via_ports(gw: GatewayThread, method: str = "INVITE", last: int = 0) -> set[int]:
    """The ports in the proxy's Via (the top one) of the requests the gateway got (of
    the ``last`` ones if given)."""
    ports = set()
    for r in gw.requests(method)[-last:]:
        sent_by = r.vias[0].split(None, 1)[1].split(";", 1)[0]
        ports.add(int(sent_by.rsplit(":", 1)[1]))
    return ports


def calls(
    proxy: ProxyProcess, tmp_path: Path, sipp: str, name: str, n: int, scenario: str = "uac_call"
) -> None:
    outcome = run_sipp(
        scenario,
        "127.0.0.1",
        proxy.port,
        calls=n,
        rate=20,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / name,
        extra_args=ONE_SOURCE,
        binary=sipp,
    )
    assert outcome.ok and outcome.successful == n, outcome.report()


def test_workers_with_a_cluster_are_its_nodes_and_share_one_face(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    sipp: str,
) -> None:
    gw1, gw2 = gateways("gw1"), gateways("gw2")
    proxy = start_workers(tmp_path, proxy_factory, [gw1, gw2], namespace)
    nodes = result(proxy, "cluster.nodes")["NODES"]
    assert sorted(n["ID"] for n in nodes) == ["lb/w0", "lb/w1"]
    calls(proxy, tmp_path, sipp, "sipp", 40)
    # Every request left from the listening port, named in Via and Record-Route.
    assert via_ports(gw1) | via_ports(gw2) == {proxy.port}
    assert {r.source[1] for r in gw1.requests() + gw2.requests()} == {proxy.port}
    assert gw1.byes + gw2.byes == 40
    for gw in (gw1, gw2):
        for invite in gw.requests("INVITE"):
            assert invite.get("record-route") == f"<sip:127.0.0.1:{proxy.port};lr>"


def test_set_state_through_the_admin_endpoint_is_honoured_by_both_workers(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    sipp: str,
) -> None:
    gw1, gw2 = gateways("gw1"), gateways("gw2")
    proxy = start_workers(tmp_path, proxy_factory, [gw1, gw2], namespace)
    assert result(proxy, "dispatcher.set_state", "dx", 1, gw1.uri)
    assert flags(proxy) == {gw1.uri: "DX", gw2.uri: "AX"}
    # Worker 1 had the change before the RPC answered -- from the RPC handed to it or
    # from the cluster's event of worker 0's change, whichever came first (the other then
    # changes nothing) -- and logged it once (lines tagged with the worker).
    changed = f"w1: set 1 {gw1.uri}: AX -> DX (dispatcher.set_state dx"
    lines = [line for line in proxy.log_text().splitlines() if changed in line]
    assert len(lines) == 1, proxy.log_text()
    assert lines[0].endswith(("(dispatcher.set_state dx)", "(dispatcher.set_state dx, on lb/w0)"))
    calls(proxy, tmp_path, sipp, "sipp", 40)
    assert gw1.invites == 0, gw1.describe()
    assert gw2.invites == 40 and via_ports(gw2) == {proxy.port}, via_ports(gw2)


def test_maxload_holds_across_the_workers(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    sipp: str,
) -> None:
    gw = gateways("gw1")
    proxy = start_workers(tmp_path, proxy_factory, [gw], namespace, "maxload=2", algorithm=10)
    # Held calls one after another (1 call/s), so each worker knows the others' count.
    outcome = run_sipp(
        "uac_call_hold_or_503",
        "127.0.0.1",
        proxy.port,
        calls=8,
        rate=1,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
        extra_args=[*ONE_SOURCE, "-d", "20000"],
        binary=sipp,
    )
    assert outcome.ok and outcome.successful == 8, outcome.report()
    assert gw.invites == 2, gw.describe()
    listing = result(proxy, "dispatcher.list")
    assert listing["RECORDS"][0]["SET"]["TARGETS"][0]["DEST"]["RUNTIME"]["DLGLOAD"] == 0


def test_sigterm_stops_every_worker_cleanly_and_they_leave_the_cluster(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
) -> None:
    gw = gateways("gw1")
    proxy = start_workers(tmp_path, proxy_factory, [gw], namespace)
    pids = worker_pids(proxy)
    proxy.expect_clean_exit = True
    assert proxy.stop(60) == 0
    for pid in pids.values():
        assert _gone(pid), f"worker {pid} still runs"
    assert "w0: SIGTERM: new calls get 503" in proxy.log_text()
    assert "w1: SIGTERM: new calls get 503" in proxy.log_text()
    client = redis.Redis.from_url(SHARED_URL)
    assert not list(client.scan_iter(match=f"{namespace}:node:*")), "a worker did not leave"
    client.close()


def _gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True
