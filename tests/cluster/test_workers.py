"""``[server] workers = 2``: one ``sipdispatch run`` supervising two worker processes
that share the SIP port (SO_REUSEPORT) and their state through a Redis namespace of
the test's own. sipp is the caller (``-t un``: a socket, so a source port, per call,
which the kernel's hash spreads over both workers), scripted gateways answer."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import GatewayFactory, ProxyFactory
from tests.integration.gateway import GatewayThread
from tests.integration.proxyctl import (
    ProxyProcess,
    ProxyStartError,
    basic_config,
    proxy_env,
    toml_str,
)
from tests.integration.sippctl import free_port, run_sipp, start_sipp
from tests.integration.test_admin import flags, result, wait_for

from .conftest import SHARED_URL

pytestmark = pytest.mark.timeout(240)

SIPP_TIMEOUT = 90
ONE_SOCKET_PER_CALL = ["-t", "un", "-max_socket", "1000"]
"""sipp: a UDP socket of its own for each call, so the calls come from many ports."""


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
        extra_args=ONE_SOCKET_PER_CALL,
        binary=sipp,
    )
    assert outcome.ok and outcome.successful == n, outcome.report()


def test_two_workers_relay_calls_from_many_sources_each_from_its_own_port(
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
    with urllib.request.urlopen(f"{proxy.admin_url}/metrics", timeout=30) as resp:
        assert 'sipdispatch_worker_info{worker="0",workers="2"} 1.0' in resp.read().decode()
    calls(proxy, tmp_path, sipp, "sipp", 40)
    # Both workers took calls (40 source ports), each sending from a port of its own
    # (its Via), none from the shared one; each got its responses back (all calls ok).
    ports = via_ports(gw1) | via_ports(gw2)
    assert len(ports) == 2 and proxy.port not in ports, ports
    # Record-Route names the shared address: the BYEs came through it, to either worker.
    assert gw1.byes + gw2.byes == 40
    for gw in (gw1, gw2):
        for invite in gw.requests("INVITE"):
            assert invite.get("record-route") == f"<sip:127.0.0.1:{proxy.port};lr>"


def test_two_workers_relay_tcp_calls_each_over_its_own_connections(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    sipp: str,
) -> None:
    gw = gateways("gw1", "tcp")
    proxy = start_workers(tmp_path, proxy_factory, [gw], namespace)
    outcome = run_sipp(
        "uac_call",
        "127.0.0.1",
        proxy.port,
        transport="tcp",
        calls=30,
        rate=20,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
        extra_args=["-t", "tn", "-max_socket", "1000"],  # a connection per call
        binary=sipp,
    )
    assert outcome.ok and outcome.successful == 30, outcome.report()
    # The kernel gave the callers' connections to both workers; each reached the
    # gateway over connections of its own.
    sources = {r.source for r in gw.requests("INVITE")}
    assert len(sources) >= 2, sources
    assert gw.byes == 30


def test_the_workers_split_the_pings_and_each_gets_its_replies(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
) -> None:
    # Which worker pings a gateway hashes the worker's id (with the proxy's port) and the
    # gateway's URI (an ephemeral port): with 6 gateways all would go to one worker in 1
    # run of 32, with 12 in 1 of 2 048.
    gws = [gateways(f"gw{i}") for i in range(12)]
    proxy = start_workers(tmp_path, proxy_factory, gws, namespace, ping_interval=1)
    nodes = result(proxy, "cluster.nodes")["NODES"]
    probes = [set(n["PROBES"]) for n in nodes]
    assert probes[0] | probes[1] == {gw.uri for gw in gws} and not probes[0] & probes[1]
    assert probes[0] and probes[1], probes

    def last_pingers(gw: GatewayThread) -> set[int]:
        """The Via ports of its last three pings (all its pings until it had three)."""
        return via_ports(gw, "OPTIONS", last=3) if gw.options >= 3 else {0, 1}

    # Until both workers have seen each other each pings every gateway; then each
    # gateway is pinged by one worker only, from that worker's own port...
    wait_for(lambda: all(len(last_pingers(gw)) == 1 for gw in gws), 30, "one pinger each")
    assert len(set().union(*(last_pingers(gw) for gw in gws))) == 2
    # ... which got the replies: every gateway stays active.
    assert set(flags(proxy).values()) == {"AP"}


def test_back_to_back_in_dialog_requests_keep_their_order_through_two_workers(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    sipp: str,
) -> None:
    # The gateway answers INFO and BYE after 300 ms: sipp has sent all three by then.
    gw = gateways("gw1", answer_others_after_ms=300)
    proxy = start_workers(tmp_path, proxy_factory, [gw], namespace)
    calls(proxy, tmp_path, sipp, "sipp", 40, scenario="uac_info_info_bye")
    # The kernel sends every datagram of one source to the same worker, which relays
    # them in the order they came: the gateway sees INFO 2, INFO 3, BYE 4 of each call.
    seen: dict[str, list[int]] = {}
    for r in gw.requests():
        if r.method in ("INFO", "BYE"):
            seen.setdefault(r.call_id, []).append(r.cseq[0])
    assert len(seen) == 40
    assert all(order == [2, 3, 4] for order in seen.values()), seen
    assert len(via_ports(gw)) == 2, "all calls went through one worker: nothing was shown"


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
    # Worker 1 logs the change it applied from worker 0 (lines tagged with the worker).
    wait_for(
        lambda: (
            f"w1: set 1 {gw1.uri}: AX -> DX (dispatcher.set_state dx, on lb/w0)" in proxy.log_text()
        ),
        20,
        "worker 1 applying the DX",
    )
    calls(proxy, tmp_path, sipp, "sipp", 40)
    assert gw1.invites == 0, gw1.describe()
    assert gw2.invites == 40 and len(via_ports(gw2)) == 2, via_ports(gw2)


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
        extra_args=[*ONE_SOCKET_PER_CALL, "-d", "20000"],
        binary=sipp,
    )
    assert outcome.ok and outcome.successful == 8, outcome.report()
    assert gw.invites == 2, gw.describe()
    listing = result(proxy, "dispatcher.list")
    assert listing["RECORDS"][0]["SET"]["TARGETS"][0]["DEST"]["RUNTIME"]["DLGLOAD"] == 0


@pytest.mark.parametrize("index", [1, 0])
def test_a_killed_worker_is_started_again_and_calls_succeed(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    sipp: str,
    index: int,
) -> None:
    gw = gateways("gw1")
    proxy = start_workers(tmp_path, proxy_factory, [gw], namespace)
    old = worker_pids(proxy)[index]
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: (
            f"worker {index} (pid {old}) was killed by SIGKILL; starting a new one"
            in proxy.log_text()
        ),
        20,
        "the supervisor seeing the death",
    )
    wait_for(lambda: worker_pids(proxy)[index] != old, 20, "a new worker")
    new = worker_pids(proxy)[index]
    wait_for(lambda: f"worker {index} (pid {new}) is up again" in proxy.log_text(), 30, "it is up")
    # Worker 0 serves the admin listener: it answers again (the new worker 0's).
    assert result(proxy, "core.uptime")
    calls(proxy, tmp_path, sipp, "sipp", 40)
    assert gw.invites == 40 and len(via_ports(gw)) == 2, via_ports(gw)
    assert proxy.alive()


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


def test_sigterm_to_every_process_at_once_still_drains(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    sipp: str,
) -> None:
    """systemd's default KillMode (and ``kill`` of the group) sends SIGTERM to the
    supervisor and to every worker: the supervisor must not add a second one, which
    would stop the workers at once and lose the call being set up."""
    gw = gateways("gw1", reject=404, answer_delay_ms=3000)
    proxy = start_workers(tmp_path, proxy_factory, [gw], namespace, failover_on=())
    pids = worker_pids(proxy)
    with start_sipp(
        "uac_expect_404",
        "127.0.0.1",
        proxy.port,
        calls=1,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
        binary=sipp,
    ) as caller:
        wait_for(lambda: gw.invites == 1, 20, "the INVITE at the gateway")
        for pid in pids.values():
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: proxy.log_text().count("SIGTERM: new calls get 503") == 2, 20, "drain")
        os.kill(proxy.pid, signal.SIGTERM)
        outcome = caller.wait()
    # The 404 came 3 s later, through the draining worker.
    assert outcome.ok and outcome.successful == 1, outcome.report()
    assert proxy.proc.wait(60) == 0, proxy.log_text()  # of itself, once drained
    log = proxy.log_text()
    assert "SIGTERM again" not in log
    assert log.count("w0: SIGTERM: new calls get 503") == 1
    assert log.count("w1: SIGTERM: new calls get 503") == 1


def test_sighup_reloads_every_worker(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
) -> None:
    gw1, gw2 = gateways("gw1"), gateways("gw2")
    proxy = start_workers(tmp_path, proxy_factory, [gw1], namespace)
    (tmp_path / "dispatcher.list").write_text(f"1 {gw1.uri} 0 0\n1 {gw2.uri} 0 0\n")
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: gw2.uri in flags(proxy), 20, "worker 0 reloaded")
    wait_for(lambda: "w1: cluster: reloaded as lb/w0 asked" in proxy.log_text(), 20, "worker 1 too")
    assert proxy.log_text().count("cluster: reloaded") == 1, "worker 0 reloaded twice"


def test_systemd_hears_ready_once_every_worker_is_up(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = gateways("gw1")
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        proxy = start_workers(tmp_path, proxy_factory, [gw], namespace)
        ready = sock.recv(1000).decode()
        assert ready.splitlines()[0] == "READY=1" and f"MAINPID={proxy.pid}" in ready, ready
        log = proxy.log_text()
        # Both workers were up (each told the supervisor, not systemd) before it.
        assert log.count(" up: SIP on ") == 2
        assert log.index("sipdispatch ready") > max(
            log.index("w0: worker 0 up"), log.index("w1: worker 1 up")
        )
        proxy.proc.send_signal(signal.SIGTERM)
        assert sock.recv(1000) == b"STOPPING=1"  # the supervisor's only; none of a worker
        assert proxy.proc.wait(60) == 0


def test_a_killed_supervisor_leaves_no_worker_behind(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
) -> None:
    gw = gateways("gw1")
    proxy = start_workers(tmp_path, proxy_factory, [gw], namespace)
    pids = worker_pids(proxy)
    proxy.kill()
    for pid in pids.values():
        wait_for(lambda pid=pid: _gone(pid), 30, f"worker {pid} gone")


def test_a_worker_that_cannot_start_fails_the_start(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, namespace: str
) -> None:
    gw = gateways("gw1")
    port, admin = free_port(), free_port("tcp")
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text(f"1 {gw.uri} 0 0\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))  # without SO_REUSEPORT: no worker can share it
        with pytest.raises(ProxyStartError) as info:
            proxy_factory(
                workers_config(port, admin, list_file, namespace), port=port, admin_port=admin
            )
    text = str(info.value)
    assert "exited with status 1" in text and "cannot listen on udp:127.0.0.1" in text, text
    assert "before every worker was up; stopping" in text, text


def _gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def test_two_workers_without_redis_is_a_config_error_naming_both_keys(tmp_path: Path) -> None:
    config = tmp_path / "sipdispatch.toml"
    config.write_text("[server]\nworkers = 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "sipdispatch", "run", "--config", str(config)],
        env=proxy_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "server.workers" in done.stderr and "cluster.redis_url" in done.stderr, done.stderr
