"""Destinations located by DNS, end to end: a real dnsmasq on a loopback port serves
NAPTR, SRV and A records, sipp gateways answer the calls and the pings, and the proxy
runs as ``sipdispatch run`` with ``[dns] nameservers`` pointing at dnsmasq.

Each gateway is a sipp UAS (``-aa`` answers the OPTIONS pings) whose message trace
says how many INVITEs reached it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ProxyFactory, in_ci
from .dnsmasq import Dnsmasq, DropAAAA, dnsmasq_path, host, naptr, srv
from .proxyctl import ProxyProcess, basic_config, write_list_file
from .sippctl import SippProcess, SippTransport, free_port, run_sipp, start_sipp_uas
from .test_admin import dests, result, rpc, wait_for

pytestmark = pytest.mark.timeout(240)

UAS = Path(__file__).resolve().parents[2] / "bench" / "sipp" / "uas.xml"
CARRIER = "sip:carrier.test"
SIPP_TIMEOUT = 60
SETTLE = 30.0
"""Generous deadline for what the pings or a DNS refresh change (seconds)."""


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[Dnsmasq]:
    """A dnsmasq (not started) on a free port; stopped after the test."""
    if dnsmasq_path() is None:
        if in_ci():
            pytest.fail("dnsmasq is not installed and CI is set: apt-get install dnsmasq-base")
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
    server = Dnsmasq(free_port("udp"), [], tmp_path / "dnsmasq")
    yield server
    server.stop()


class Gateway:
    """A sipp UAS on 127.0.0.1:``port`` counting the INVITEs it gets."""

    def __init__(self, name: str, port: int, workdir: Path, transport: SippTransport) -> None:
        self.name = name
        self.port = port
        self.workdir = workdir / name
        self.proc: SippProcess = start_sipp_uas(
            UAS,
            port,
            transport=transport,
            workdir=self.workdir,
            extra_args=["-aa", "-trace_msg", "-message_file", "messages.log"],
        )

    def invites(self) -> int:
        path = self.workdir / "messages.log"
        if not path.exists():
            return 0
        text = path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if line.startswith("INVITE sip:"))

    def kill(self) -> None:
        """Stop it (sipp's quit), killed when it has not ended within 5 s."""
        self.proc.stop()
        proc = self.proc.proc
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def sipp_gateways(sipp: str, tmp_path: Path) -> Iterator[Any]:
    started: list[Gateway] = []

    def make(name: str, transport: SippTransport = "udp") -> Gateway:
        gw = Gateway(name, free_port("both"), tmp_path / "gateways", transport)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.kill()


def start(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    dns: Dnsmasq,
    lines: list[str],
    *,
    ping_interval: int = 1,
    nameserver_port: int | None = None,
) -> ProxyProcess:
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(tmp_path / "dispatcher.list", lines)
    toml = basic_config(
        port,
        admin,
        list_file,
        algorithm=4,
        ping_interval=ping_interval,
        fr_timer=2000,
        fr_inv_timer=10000,
        extra=f'\n[dns]\nnameservers = ["127.0.0.1:{nameserver_port or dns.port}"]\n'
        "timeout = 1.0\n",
    )
    # Every destination is pinged (probing_mode 1), every ping_interval.
    toml = toml.replace("[dispatcher]\n", "[dispatcher]\nprobing_mode = 1\n", 1)
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def calls(proxy: ProxyProcess, tmp_path: Path, n: int, name: str) -> None:
    res = run_sipp(
        "uac_call", "127.0.0.1", proxy.port, calls=n, rate=20, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / name,
    )  # fmt: skip
    assert res.ok and res.successful == n, res.report()


def carrier(proxy: ProxyProcess) -> dict[str, Any]:
    [record] = [d for d in dests(result(proxy, "dispatcher.list")) if d["URI"] == CARRIER]
    return record


def addresses(proxy: ProxyProcess) -> list[tuple[str, int, str, bool]]:
    return [
        (a["TARGET"], a["PORT"], a["TRANSPORT"], a["UP"])
        for a in carrier(proxy).get("ADDRESSES", [])
    ]


def all_up(proxy: ProxyProcess) -> bool:
    found = addresses(proxy)
    return bool(found) and all(up for *_, up in found) and carrier(proxy)["FLAGS"][0] == "A"


def metric(proxy: ProxyProcess, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{proxy.admin_url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


# -- tests -----------------------------------------------------------------------------


def test_srv_priority_calls_go_to_the_first_target_and_to_the_second_when_it_dies(
    tmp_path: Path, proxy_factory: ProxyFactory, dnsmasq: Dnsmasq, sipp_gateways: Any
) -> None:
    gw1, gw2 = sipp_gateways("gw1"), sipp_gateways("gw2")
    dnsmasq.records = [
        srv("_sip._udp.carrier.test", "gw1.carrier.test", gw1.port, 10, 0),
        srv("_sip._udp.carrier.test", "gw2.carrier.test", gw2.port, 20, 0),
        host("gw1.carrier.test"),
        host("gw2.carrier.test"),
    ]
    dnsmasq.start()
    proxy = start(tmp_path, proxy_factory, dnsmasq, [f"1 {CARRIER}"])
    wait_for(lambda: all_up(proxy), SETTLE, "both addresses pinged up")
    # dispatcher.list shows the addresses in priority order; the usual fields stay.
    record = carrier(proxy)
    assert addresses(proxy) == [
        ("gw1.carrier.test", gw1.port, "udp", True),
        ("gw2.carrier.test", gw2.port, "udp", True),
    ]
    assert set(record) >= {"URI", "FLAGS", "PRIORITY"}
    full = dests(result(proxy, "dispatcher.list", "full"))[0]
    assert (full["IPADDR"], full["PORT"]) == ("127.0.0.1", gw1.port)

    calls(proxy, tmp_path, 5, "before")
    assert (gw1.invites(), gw2.invites()) == (5, 0)

    gw1.kill()
    # Its pings fail: that address is marked down, the destination stays usable.
    wait_for(
        lambda: addresses(proxy)[0][3] is False, SETTLE, "gw1's address found down by the pings"
    )
    assert carrier(proxy)["FLAGS"][0] == "A"
    calls(proxy, tmp_path, 5, "after")
    assert gw2.invites() == 5


def test_a_call_fails_over_to_the_next_address_of_the_destination_before_the_pings_see_it(
    tmp_path: Path, proxy_factory: ProxyFactory, dnsmasq: Dnsmasq, sipp_gateways: Any
) -> None:
    gw1, gw2 = sipp_gateways("gw1"), sipp_gateways("gw2")
    dead = free_port("udp")
    dnsmasq.records = [
        srv("_sip._udp.carrier.test", "dead.carrier.test", dead, 10, 0),
        srv("_sip._udp.carrier.test", "gw2.carrier.test", gw2.port, 20, 0),
        host("dead.carrier.test"),
        host("gw2.carrier.test"),
    ]
    dnsmasq.start()
    # No pings: only the call itself finds the first address silent (its timer fires).
    proxy = start(tmp_path, proxy_factory, dnsmasq, [f"1 {CARRIER}", f"1 sip:127.0.0.1:{gw1.port}"],
                  ping_interval=0)  # fmt: skip
    # Round-robin over two destinations: the DNS one gets every other call.
    calls(proxy, tmp_path, 4, "calls")
    assert gw2.invites() == 2 and gw1.invites() == 2
    log = proxy.log_text()
    assert log.count(": carrier.test timeout -> carrier.test 200") == 2, log[-3000:]
    # A failover inside the destination does not mark it failed.
    assert carrier(proxy)["FLAGS"] == "AX"


def test_srv_weights_spread_the_calls_over_equal_priority_targets(
    tmp_path: Path, proxy_factory: ProxyFactory, dnsmasq: Dnsmasq, sipp_gateways: Any
) -> None:
    gw1, gw2 = sipp_gateways("gw1"), sipp_gateways("gw2")
    dnsmasq.records = [
        srv("_sip._udp.carrier.test", "gw1.carrier.test", gw1.port, 10, 75),
        srv("_sip._udp.carrier.test", "gw2.carrier.test", gw2.port, 10, 25),
        host("gw1.carrier.test"),
        host("gw2.carrier.test"),
    ]
    dnsmasq.start()
    proxy = start(tmp_path, proxy_factory, dnsmasq, [f"1 {CARRIER}"])
    wait_for(lambda: all_up(proxy), SETTLE, "both addresses pinged up")
    calls(proxy, tmp_path, 60, "calls")
    one, two = gw1.invites(), gw2.invites()
    assert one + two == 60
    # 75/25 by weight: both get calls, the heavier one most (a miss here is < 1e-6).
    assert two >= 3 and one > two * 1.5, (one, two)


def test_a_changed_record_is_used_after_its_ttl_without_a_reload(
    tmp_path: Path, proxy_factory: ProxyFactory, dnsmasq: Dnsmasq, sipp_gateways: Any
) -> None:
    gw1, gw2 = sipp_gateways("gw1"), sipp_gateways("gw2")
    dnsmasq.ttl = 5
    dnsmasq.records = [
        srv("_sip._udp.carrier.test", "gw1.carrier.test", gw1.port, 10, 0),
        host("gw1.carrier.test"),
        host("gw2.carrier.test"),
    ]
    dnsmasq.start()
    proxy = start(tmp_path, proxy_factory, dnsmasq, [f"1 {CARRIER}"])
    calls(proxy, tmp_path, 3, "before")
    assert (gw1.invites(), gw2.invites()) == (3, 0)
    dnsmasq.restart([
        srv("_sip._udp.carrier.test", "gw2.carrier.test", gw2.port, 10, 0),
        host("gw2.carrier.test"),
    ])  # fmt: skip
    wait_for(
        lambda: [a[:2] for a in addresses(proxy)] == [("gw2.carrier.test", gw2.port)],
        SETTLE,
        "the new SRV answer",
    )
    calls(proxy, tmp_path, 3, "after")
    assert (gw1.invites(), gw2.invites()) == (3, 3)
    assert metric(proxy, "sipdispatch_dns_changes_total") >= 1
    assert "addresses now udp:127.0.0.1:" in proxy.log_text()


def test_a_dns_server_that_stops_answering_leaves_the_last_good_answer_in_use(
    tmp_path: Path, proxy_factory: ProxyFactory, dnsmasq: Dnsmasq, sipp_gateways: Any
) -> None:
    gw1 = sipp_gateways("gw1")
    dnsmasq.ttl = 5
    dnsmasq.records = [
        srv("_sip._udp.carrier.test", "gw1.carrier.test", gw1.port, 10, 0),
        host("gw1.carrier.test"),
    ]
    dnsmasq.start()
    proxy = start(tmp_path, proxy_factory, dnsmasq, [f"1 {CARRIER}"])
    wait_for(lambda: all_up(proxy), SETTLE, "the address pinged up")
    dnsmasq.pause()
    try:
        wait_for(
            lambda: metric(proxy, "sipdispatch_dns_refresh_failures_total") >= 2,
            SETTLE,
            "two failed refreshes",
        )
        assert addresses(proxy) == [("gw1.carrier.test", gw1.port, "udp", True)]
        calls(proxy, tmp_path, 3, "calls")
        assert gw1.invites() == 3
        # Logged once, not at every failed refresh.
        assert proxy.log_text().count("DNS refresh of carrier.test failed") == 1
    finally:
        dnsmasq.resume()
    wait_for(lambda: "carrier.test answers again" in proxy.log_text(), SETTLE, "recovery")


def test_naptr_chooses_tcp_and_the_calls_go_over_tcp(
    tmp_path: Path, proxy_factory: ProxyFactory, dnsmasq: Dnsmasq, sipp_gateways: Any
) -> None:
    over_udp, over_tcp = sipp_gateways("udp-gw"), sipp_gateways("tcp-gw", "tcp")
    dnsmasq.records = [
        naptr("carrier.test", 20, 10, "SIP+D2U", "_sip._udp.carrier.test"),
        naptr("carrier.test", 10, 10, "SIP+D2T", "_sip._tcp.carrier.test"),
        srv("_sip._udp.carrier.test", "u.carrier.test", over_udp.port, 10, 0),
        srv("_sip._tcp.carrier.test", "t.carrier.test", over_tcp.port, 10, 0),
        host("u.carrier.test"),
        host("t.carrier.test"),
    ]
    dnsmasq.start()
    proxy = start(tmp_path, proxy_factory, dnsmasq, [f"1 {CARRIER}"])
    assert addresses(proxy)[0][:3] == ("t.carrier.test", over_tcp.port, "tcp")
    calls(proxy, tmp_path, 3, "calls")
    assert (over_tcp.invites(), over_udp.invites()) == (3, 0)


def test_an_unresolvable_name_is_loaded_inactive_at_start_and_refused_by_a_reload(
    tmp_path: Path, proxy_factory: ProxyFactory, dnsmasq: Dnsmasq, sipp_gateways: Any
) -> None:
    gw1 = sipp_gateways("gw1")
    dnsmasq.records = [
        srv("_sip._udp.carrier.test", "gw1.carrier.test", gw1.port, 10, 0),
        host("gw1.carrier.test"),
    ]
    dnsmasq.start()
    proxy = start(tmp_path, proxy_factory, dnsmasq, [f"1 {CARRIER}", "1 sip:missing.test"])
    listing = {d["URI"]: d for d in dests(result(proxy, "dispatcher.list"))}
    missing = listing["sip:missing.test"]
    assert missing["FLAGS"] == "IP" and "could not resolve missing.test" in missing["REASON"]
    assert "no NAPTR, SRV or A/AAAA record for missing.test" in missing["REASON"]
    calls(proxy, tmp_path, 2, "calls")
    assert gw1.invites() == 2
    # A reload stays all or nothing: a name that does not resolve refuses it.
    (tmp_path / "dispatcher.list").write_text(f"1 {CARRIER}\n1 sip:other.test\n")
    response = rpc(proxy, "dispatcher.reload")
    assert "error" in response and "could not resolve other.test" in response["error"]["message"]
    assert {d["URI"] for d in dests(result(proxy, "dispatcher.list"))} == {
        CARRIER,
        "sip:missing.test",
    }


def test_dispatcher_add_locates_a_name_by_dns_with_the_configured_nameservers(
    tmp_path: Path, dnsmasq: Dnsmasq
) -> None:
    import sys

    from .proxyctl import proxy_env

    dnsmasq.records = [srv("_sip._udp.carrier.test", "gw1.carrier.test", 5070, 10, 0),
                       host("gw1.carrier.test")]  # fmt: skip
    dnsmasq.start()
    config = tmp_path / "sipdispatch.toml"
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text("")
    config.write_text(
        f'[dispatcher]\nlist_file = "{list_file}"\n\n'
        f'[dns]\nnameservers = ["127.0.0.1:{dnsmasq.port}"]\ntimeout = 1.0\n'
    )

    def add(uri: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sipdispatch", "dispatcher", "--config", str(config),
             "add", "1", uri],
            cwd=tmp_path, env=proxy_env(), capture_output=True, text=True, timeout=90,
        )  # fmt: skip

    quiet = add(CARRIER)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = add("sip:missing.test")
    assert loud.returncode == 0
    [warning] = loud.stderr.splitlines()
    assert warning.startswith(
        "sipdispatch: warning: missing.test does not resolve now "
        "(no NAPTR, SRV or A/AAAA record for missing.test)"
    ), warning
    text = list_file.read_text()
    assert CARRIER in text and "sip:missing.test" in text


# -- a server that refuses or drops AAAA ----------------------------------------------


def carrier_records(gw1: Gateway, dead_port: int) -> list[str]:
    """carrier.test on NAPTR -> SRV -> A, IPv4 only: its first SRV target has no address
    at all, its second is gw1; nowhere.test's only target has no address either."""
    return [
        naptr("carrier.test", 10, 10, "SIP+D2U", "_sip._udp.carrier.test"),
        srv("_sip._udp.carrier.test", "gw0.carrier.test", dead_port, 10, 0),
        srv("_sip._udp.carrier.test", "gw1.carrier.test", gw1.port, 20, 0),
        host("gw1.carrier.test"),
        naptr("nowhere.test", 10, 10, "SIP+D2U", "_sip._udp.nowhere.test"),
        srv("_sip._udp.nowhere.test", "gw9.nowhere.test", dead_port, 10, 0),
    ]


def test_a_carrier_whose_server_refuses_aaaa_is_reached_on_its_ipv4_srv_target(
    tmp_path: Path, proxy_factory: ProxyFactory, sipp_gateways: Any
) -> None:
    if dnsmasq_path() is None:
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
    gw1 = sipp_gateways("gw1")
    # Not authoritative: every AAAA (and gw0's and gw9's A) is answered REFUSED.
    server = Dnsmasq(free_port("udp"), [], tmp_path / "dnsmasq", authoritative=False)
    server.records = carrier_records(gw1, free_port("udp"))
    server.start()
    try:
        proxy = start(tmp_path, proxy_factory, server, [f"1 {CARRIER}", "2 sip:nowhere.test"])
        # The first SRV target has no address: the second is the destination's one.
        assert [a[:3] for a in addresses(proxy)] == [("gw1.carrier.test", gw1.port, "udp")]
        wait_for(lambda: all_up(proxy), SETTLE, "carrier.test pinged up (active)")
        assert carrier(proxy)["FLAGS"][0] == "A"
        calls(proxy, tmp_path, 3, "calls")
        assert gw1.invites() == 3
        # A name with no address in either family: IP, the reason naming both failures.
        [nowhere] = dests(result(proxy, "dispatcher.list"), 2)
        assert nowhere["FLAGS"] == "IP"
        assert "A gw9.nowhere.test: answered REFUSED" in nowhere["REASON"], nowhere
        assert "AAAA gw9.nowhere.test: answered REFUSED" in nowhere["REASON"], nowhere
        # The refused AAAA is said once, not at every refresh (the TTL is 5 s).
        wait_for(lambda: metric(proxy, "sipdispatch_dns_refreshes_total") >= 2, SETTLE,
                 "two refreshes")  # fmt: skip
        log = proxy.log_text()
        assert log.count("AAAA gw1.carrier.test: answered REFUSED") == 1, log[-3000:]
    finally:
        server.stop()


def test_a_carrier_whose_server_never_answers_aaaa_is_reached_on_its_ipv4_address(
    tmp_path: Path, proxy_factory: ProxyFactory, dnsmasq: Dnsmasq, sipp_gateways: Any
) -> None:
    gw1 = sipp_gateways("gw1")
    dnsmasq.records = carrier_records(gw1, free_port("udp"))
    dnsmasq.start()
    firewall = DropAAAA(dnsmasq)
    try:
        proxy = start(tmp_path, proxy_factory, dnsmasq, [f"1 {CARRIER}"],
                      nameserver_port=firewall.port)  # fmt: skip
        wait_for(lambda: all_up(proxy), SETTLE, "carrier.test pinged up (active)")
        assert [a[:2] for a in addresses(proxy)] == [("gw1.carrier.test", gw1.port)]
        calls(proxy, tmp_path, 3, "calls")
        assert gw1.invites() == 3
        assert firewall.dropped >= 2  # gw0's and gw1's AAAA, at least
        assert "AAAA gw1.carrier.test: no answer within 1 s (timeout)" in proxy.log_text()
    finally:
        firewall.stop()
