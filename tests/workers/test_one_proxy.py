"""``[server] workers = 2`` with no Redis: one ``sipdispatch run`` supervising two worker
processes that act as one proxy. The caller is sipp sending every call from ONE source
address and port (``-t u1``, sipp's default), as an SBC does: the kernel gives all its
datagrams to one worker, which hands each to the worker of its Call-ID. Scripted
gateways record what reaches them (source address, Via, order)."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from sipdispatch.cluster.link import worker_id
from sipdispatch.cluster.rendezvous import owner
from tests.integration.conftest import GatewayFactory, ProxyFactory
from tests.integration.gateway import GatewayThread, SipRecord
from tests.integration.proxyctl import ProxyProcess, ProxyStartError, basic_config
from tests.integration.sippctl import free_port, run_sipp, start_sipp
from tests.integration.test_admin import flags, result, wait_for

pytestmark = pytest.mark.timeout(300)

SIPP_TIMEOUT = 120


def workers_config(
    port: int, admin: int, list_file: Path, *, workers: int = 2, extra: str = "", **kw: object
) -> str:
    toml = basic_config(port, admin, list_file, extra=extra, **kw)  # type: ignore[arg-type]
    toml = toml.replace("record_route = true\n", f"record_route = true\nworkers = {workers}\n", 1)
    # Every destination pinged (Kamailio's probing_mode 1), not only the failing ones.
    return toml.replace("ping_interval = ", "probing_mode = 1\nping_interval = ", 1)


def start_workers(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gws: list[GatewayThread],
    attrs: str = "",
    **kw: object,
) -> ProxyProcess:
    port, admin = free_port(), free_port("tcp")
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text("".join(f"1 {gw.uri} 0 0 {attrs}\n" for gw in gws))
    proxy = proxy_factory(workers_config(port, admin, list_file, **kw), port=port, admin_port=admin)
    wait_for(lambda: live_workers(proxy) == 2, 30, "both workers live")
    return proxy


def metrics(proxy: ProxyProcess) -> str:
    with urllib.request.urlopen(f"{proxy.admin_url}/metrics", timeout=30) as resp:
        text: str = resp.read().decode()
    return text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` (0 when absent)."""
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m is None or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if found == labels:
            return float(m.group(3))
    return 0.0


def live_workers(proxy: ProxyProcess) -> int:
    return int(sample(metrics(proxy), "sipdispatch_workers", state="live"))


def invites_by_worker(proxy: ProxyProcess) -> dict[int, float]:
    text = metrics(proxy)
    name = "sipdispatch_worker_requests_received_total"
    return {k: sample(text, name, worker=str(k), method="INVITE") for k in (0, 1)}


def worker_pids(proxy: ProxyProcess) -> dict[int, int]:
    """Worker index -> pid of its latest start, from the supervisor's log."""
    pids: dict[int, int] = {}
    for m in re.finditer(r"worker (\d+) started \(pid (\d+)\)", proxy.log_text()):
        pids[int(m.group(1))] = int(m.group(2))
    return pids


def calls(
    proxy: ProxyProcess,
    tmp_path: Path,
    sipp: str,
    name: str,
    n: int,
    scenario: str = "uac_call",
    rate: float = 20,
    extra: tuple[str, ...] = (),
) -> None:
    outcome = run_sipp(
        scenario, "127.0.0.1", proxy.port, calls=n, rate=rate, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / name, binary=sipp, extra_args=["-t", "u1", *extra],
    )  # fmt: skip
    assert outcome.ok and outcome.successful == n, outcome.report()


def sent_by(record: SipRecord) -> tuple[str, int]:
    """The host and port of a request's top Via."""
    host_port = record.vias[0].split(None, 1)[1].split(";", 1)[0]
    host, _, port = host_port.rpartition(":")
    return host, int(port)


# -- calls from one source spread over both workers ---------------------------------------


def test_one_callers_calls_are_spread_over_both_workers_and_leave_from_the_listening_port(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, sipp: str
) -> None:
    gw1, gw2 = gateways("gw1"), gateways("gw2")
    proxy = start_workers(tmp_path, proxy_factory, [gw1, gw2], ping_interval=1)
    calls(proxy, tmp_path, sipp, "sipp", 200, rate=50)
    by_worker = invites_by_worker(proxy)
    # Call-IDs spread evenly: each worker handled 35..65 % of one source's calls
    # (binomial, 200 calls: outside that once in about 30 000 runs).
    assert sum(by_worker.values()) == 200, by_worker
    assert all(70 <= n <= 130 for n in by_worker.values()), by_worker
    # Every request reached the gateways from the listening address and port, with a
    # Via and Record-Route naming it: the workers are one face to the network.
    requests = gw1.requests() + gw2.requests()
    assert {r.method for r in requests} >= {"INVITE", "ACK", "BYE", "OPTIONS"}
    assert {r.source for r in requests} == {("127.0.0.1", proxy.port)}
    assert {sent_by(r) for r in requests} == {("127.0.0.1", proxy.port)}
    for r in gw1.requests("INVITE") + gw2.requests("INVITE"):
        assert r.get("record-route") == f"<sip:127.0.0.1:{proxy.port};lr>"
    # The whole proxy's counters, summed over the workers, are what was sent.
    text = metrics(proxy)
    assert sample(text, "sipdispatch_sip_requests_received_total", method="INVITE") == 200
    answered = sum(
        sample(text, "sipdispatch_destination_calls_total", code_class="2xx",
               outcome="answered", set="1", uri=gw.uri)
        for gw in (gw1, gw2)
    )  # fmt: skip
    assert answered == 200
    assert gw1.invites + gw2.invites == 200
    assert gw1.byes + gw2.byes == 200


def test_refer_then_bye_of_one_dialog_arrive_in_order_through_two_workers(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, sipp: str
) -> None:
    # The gateway answers REFER and BYE after 300 ms: sipp has sent both by then.
    gw = gateways("gw1", answer_others_after_ms=300)
    proxy = start_workers(tmp_path, proxy_factory, [gw])
    calls(proxy, tmp_path, sipp, "sipp", 300, scenario="uac_refer_bye", rate=50)
    seen: dict[str, list[str]] = {}
    for r in gw.requests():
        if r.method in ("REFER", "BYE"):
            seen.setdefault(r.call_id, []).append(r.method)
    assert len(seen) == 300
    assert all(order == ["REFER", "BYE"] for order in seen.values()), [
        (k, v) for k, v in seen.items() if v != ["REFER", "BYE"]
    ]
    assert all(n > 0 for n in invites_by_worker(proxy).values()), "one worker took every call"


def test_tcp_calls_over_one_connection_are_spread_over_both_workers(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, sipp: str
) -> None:
    gw = gateways("gw1")
    proxy = start_workers(tmp_path, proxy_factory, [gw])
    outcome = run_sipp(
        "uac_call", "127.0.0.1", proxy.port, transport="tcp", calls=60, rate=20,
        timeout=SIPP_TIMEOUT, workdir=tmp_path / "sipp", binary=sipp,
        extra_args=["-t", "t1"],  # every call over one connection
    )  # fmt: skip
    assert outcome.ok and outcome.successful == 60, outcome.report()
    by_worker = invites_by_worker(proxy)
    assert sum(by_worker.values()) == 60 and all(n > 0 for n in by_worker.values()), by_worker
    assert gw.byes == 60


# -- one state without Redis --------------------------------------------------------------


def test_maxload_holds_exactly_across_two_workers_without_redis(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, sipp: str
) -> None:
    gw = gateways("gw1")
    proxy = start_workers(tmp_path, proxy_factory, [gw], "maxload=5", algorithm=10)
    # 20 calls held 4 s each, 10 a second from one port: far more than 5 at once.
    outcome = run_sipp(
        "uac_call_hold_or_503", "127.0.0.1", proxy.port, calls=20, rate=10,
        timeout=SIPP_TIMEOUT, workdir=tmp_path / "sipp", binary=sipp,
        extra_args=["-t", "u1", "-d", "4000"],
    )  # fmt: skip
    assert outcome.ok and outcome.successful == 20, outcome.report()
    # The calls up at the gateway at any moment: never more than 5, and 5 were.
    events = sorted(
        [(r.time, 1) for r in gw.requests("INVITE") if not r.retransmission]
        + [(r.time, -1) for r in gw.requests("BYE") if not r.retransmission]
    )
    up = most = 0
    for _, step in events:
        up += step
        most = max(most, up)
    assert most == 5, events
    assert gw.invites < 20
    assert all(n > 0 for n in invites_by_worker(proxy).values())
    wait_for(
        lambda: (
            result(proxy, "dispatcher.list")["RECORDS"][0]["SET"]["TARGETS"][0]["DEST"]
            ["RUNTIME"]["DLGLOAD"] == 0
        ),
        20,
        "the load released",
    )  # fmt: skip


def test_each_destination_is_pinged_once_per_interval_by_one_worker(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    gws = [gateways(f"gw{i}") for i in range(6)]
    proxy = start_workers(tmp_path, proxy_factory, gws, ping_interval=1)
    wait_for(lambda: set(flags(proxy).values()) == {"AP"}, 30, "every gateway pinged up")
    before = [gw.options for gw in gws]
    time.sleep(8.0)  # the window the pings are counted over
    pings = [gw.options - n for gw, n in zip(gws, before, strict=True)]
    # One ping a second each: about 8 in 8 s; both workers pinging one would be about 16.
    assert all(6 <= n <= 10 for n in pings), pings
    for gw in gws:
        assert {r.source for r in gw.requests("OPTIONS")} == {("127.0.0.1", proxy.port)}
    # Each gateway is pinged by the worker its URI hashes to among the live workers
    # (rendezvous hashing: with six random ports both workers usually have some, but
    # not always, so the split is computed, not assumed).
    expected = {owner(gw.uri.lower(), [worker_id(0), worker_id(1)]) for gw in gws}
    pingers = {m.group(1) for m in re.finditer(r"(w\d): set 1 \S+: AX -> AP", proxy.log_text())}
    assert pingers == expected, proxy.log_text()[-2000:]


def test_set_state_and_add_are_applied_by_every_worker_before_the_rpc_answers(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, sipp: str
) -> None:
    gw1, gw2 = gateways("gw1"), gateways("gw2")
    proxy = start_workers(tmp_path, proxy_factory, [gw1])
    assert result(proxy, "dispatcher.add", 1, gw2.uri) == "Ok. Dispatcher destination added."
    assert result(proxy, "dispatcher.set_state", "dx", 1, gw1.uri)
    assert flags(proxy) == {gw1.uri: "DX", gw2.uri: "AX"}
    # At once, with no wait: every worker has both changes, so every call goes to gw2.
    calls(proxy, tmp_path, sipp, "sipp", 60, rate=30)
    assert (gw1.invites, gw2.invites) == (0, 60)
    by_worker = invites_by_worker(proxy)
    assert all(n > 0 for n in by_worker.values()), by_worker
    log = proxy.log_text()
    assert f"w1: set 1 {gw1.uri}: AX -> DX (dispatcher.set_state dx)" in log
    assert f"w1: dispatcher.add: set 1 {gw2.uri} added in memory" in log


def test_sighup_and_a_reload_reload_every_worker(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, sipp: str
) -> None:
    gw1, gw2, gw3 = gateways("gw1"), gateways("gw2"), gateways("gw3")
    proxy = start_workers(tmp_path, proxy_factory, [gw1])
    (tmp_path / "dispatcher.list").write_text(f"1 {gw2.uri} 0 0\n")
    assert result(proxy, "dispatcher.reload")
    calls(proxy, tmp_path, sipp, "after-reload", 30, rate=30)
    assert (gw1.invites, gw2.invites) == (0, 30)
    (tmp_path / "dispatcher.list").write_text(f"1 {gw3.uri} 0 0\n")
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: proxy.log_text().count("SIGHUP: dispatcher.reload") == 2, 30, "both")
    calls(proxy, tmp_path, sipp, "after-hup", 30, rate=30)
    assert gw3.invites == 30


# -- a worker that dies --------------------------------------------------------------------


def _log_time(line: str) -> datetime:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


@pytest.mark.parametrize("index", [0, 1])
def test_a_worker_killed_under_load_is_back_within_a_second_and_the_calls_go_on(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, sipp: str, index: int
) -> None:
    gw = gateways("gw1")
    proxy = start_workers(tmp_path, proxy_factory, [gw])
    old = worker_pids(proxy)[index]
    n = 400
    with start_sipp(
        "uac_call", "127.0.0.1", proxy.port, calls=n, rate=50, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp", binary=sipp, extra_args=["-t", "u1"],
    ) as caller:  # fmt: skip
        wait_for(lambda: gw.invites >= 100, 60, "calls flowing")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: worker_pids(proxy)[index] != old, 20, "a new worker")
        new = worker_pids(proxy)[index]
        wait_for(lambda: f"worker {index} (pid {new}) is up again" in proxy.log_text(), 30, "up")
        outcome = caller.wait()
    log = proxy.log_text().splitlines()
    died = next(line for line in log if f"(pid {old}) was killed by SIGKILL" in line)
    back = next(line for line in log if f"(pid {new}) is up again" in line)
    assert (_log_time(back) - _log_time(died)).total_seconds() < 1.0, (died, back)
    # Only the calls whose transactions were in flight in the killed worker may fail.
    assert outcome.successful + outcome.failed == n, outcome.report()
    assert outcome.failed <= 5, outcome.report()
    if index == 0:  # the admin listener is worker 0's: the new one answers
        assert result(proxy, "core.uptime")
    assert proxy.alive()


# -- start and stop ------------------------------------------------------------------------


def test_sigterm_drains_every_worker_and_stops_cleanly(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    gw = gateways("gw1")
    proxy = start_workers(tmp_path, proxy_factory, [gw])
    pids = worker_pids(proxy)
    proxy.expect_clean_exit = True
    assert proxy.stop(60) == 0
    for pid in pids.values():
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), f"worker {pid} still runs"
    log = proxy.log_text()
    assert "w0: SIGTERM: new calls get 503" in log and "w1: SIGTERM: new calls get 503" in log


def test_a_port_taken_without_sharing_fails_the_start_naming_the_listener(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    gw = gateways("gw1")
    port, admin = free_port(), free_port("tcp")
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text(f"1 {gw.uri} 0 0\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))  # without SO_REUSEPORT: nobody can share it
        with pytest.raises(ProxyStartError) as info:
            proxy_factory(workers_config(port, admin, list_file), port=port, admin_port=admin)
    text = str(info.value)
    assert f"cannot listen on udp:127.0.0.1:{port}" in text, text


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def test_sigterm_to_every_process_at_once_still_drains(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, sipp: str
) -> None:
    """systemd's default KillMode (and ``kill`` of the group) sends SIGTERM to the
    supervisor and to every worker: the supervisor must not add a second one, which
    would stop the workers at once and lose the call being set up."""
    gw = gateways("gw1", reject=404, answer_delay_ms=3000)
    proxy = start_workers(tmp_path, proxy_factory, [gw], failover_on=())
    pids = worker_pids(proxy)
    with start_sipp(
        "uac_expect_404", "127.0.0.1", proxy.port, calls=1, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp", binary=sipp,
    ) as caller:  # fmt: skip
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


def test_systemd_hears_ready_once_every_worker_is_up(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = gateways("gw1")
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        proxy = start_workers(tmp_path, proxy_factory, [gw])
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


def test_a_killed_supervisor_leaves_no_worker_nor_standby_behind(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    gw = gateways("gw1")
    proxy = start_workers(tmp_path, proxy_factory, [gw])
    children = _children(proxy.pid)
    assert len(children) == 3, children  # two workers and the standby
    proxy.kill()
    for pid in children:
        wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 30,
                 f"process {pid} gone")  # fmt: skip


def test_a_worker_that_cannot_start_fails_the_start(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    gw = gateways("gw1")
    port, admin = free_port(), free_port("tcp")
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text(f"1 {gw.uri} 0 0\n")
    # The route's hook is imported by each worker as it starts: none can.
    toml = workers_config(port, admin, list_file).replace(
        "[[route]]\n", '[[route]]\npython = "no_such_hooks_module:route"\n', 1
    )
    with pytest.raises(ProxyStartError) as info:
        proxy_factory(toml, port=port, admin_port=admin)
    text = str(info.value)
    assert "no_such_hooks_module" in text, text
    assert "before every worker was up; stopping" in text, text


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().split(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def test_a_capture_runs_on_every_worker_and_downloads_as_one_pcap_with_every_message(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, sipp: str
) -> None:
    from sipdispatch.transport.pcap import read_records

    gw1 = gateways("gw1")
    capture_dir = tmp_path / "pcap"
    proxy = start_workers(
        tmp_path, proxy_factory, [gw1], extra=f'\n[capture]\ndir = "{capture_dir}"\n'
    )
    started = result(proxy, "capture.start", "all", 120, "both")
    assert started["FILE"].endswith("sipdispatch-both.w0.pcap"), started
    calls(proxy, tmp_path, sipp, "sipp", 20)
    stopped = result(proxy, "capture.stop", "both")
    assert stopped[0]["STATE"] == "stopped"
    [listed] = result(proxy, "capture.list")
    assert sorted(Path(f).name for f in listed["FILES"]) == [
        "sipdispatch-both.w0.pcap", "sipdispatch-both.w1.pcap"]  # fmt: skip
    assert all(Path(f).stat().st_size > 24 for f in listed["FILES"])  # both had calls
    url = f"{proxy.admin_url}/console/capture/both.pcap"
    with urllib.request.urlopen(url, timeout=30) as resp:
        merged = read_records(resp.read())
    times = [(s, u) for s, u, _ in merged]
    assert times == sorted(times)
    # Each of the 20 calls: INVITE, 100, 180, 200, ACK, BYE, 200 on both legs (the
    # 100 only upstream, the gateway's own 100 too): every message once.
    invites = [p for _, _, p in merged if p[28:].startswith(b"INVITE ")]
    assert len(invites) == 40, len(invites)
    byes = [p for _, _, p in merged if p[28:].startswith(b"BYE ")]
    assert len(byes) == 40, len(byes)


def test_the_admin_worker_shows_failed_calls_kept_by_every_worker(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, sipp: str
) -> None:
    gw1 = gateways("gw1", reject=486)
    proxy = start_workers(tmp_path, proxy_factory, [gw1])
    outcome = run_sipp(
        "uac_call", "127.0.0.1", proxy.port, calls=12, rate=20, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "busy", binary=sipp, extra_args=["-t", "u1"],
    )  # fmt: skip
    assert outcome.failed == 12, outcome.report()  # every call answered 486
    kept = result(proxy, "capture.calls")
    assert len(kept) == 12 and {c["status"] for c in kept} == {486}, kept
    by_worker = invites_by_worker(proxy)
    assert by_worker[0] > 0 and by_worker[1] > 0, by_worker  # both held some
    for call in kept:
        ladder = result(proxy, "capture.ladder", call["call_id"])
        firsts = [m["first"] for m in ladder["messages"]]
        assert firsts[0].startswith("INVITE ") and "SIP/2.0 486 Busy Here" in firsts, firsts
