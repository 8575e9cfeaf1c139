"""A UDP destination that answers with ICMP port unreachable fails its branch at once.

Set 1 by priority: first a port nobody listens on (127.0.0.1 answers every datagram to
it with ICMP port unreachable), then a scripted gateway. ``fr_timer`` is long, so a call
that waited for it would take 20 s: with ``[transaction] icmp_failover`` (the default)
the call is answered by the gateway within a round trip of the ICMP error, the attempt
shows in the call log and in ``sipdispatch_branch_unreachable_total``, and the dead
destination is marked as a timed-out branch marks it. With ``icmp_failover = false``
the branch waits for ``fr_timer``.

Probing is off: the calls are what finds the dead destination. Nothing waits a fixed
time; the set-up times are measured by the test around sipp.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import GatewayFactory, ProxyFactory
from .proxyctl import ProxyProcess, basic_config, write_list_file
from .sippctl import free_port, run_sipp
from .test_admin import dests, result, wait_for

pytestmark = pytest.mark.timeout(120)

FR_TIMER = 20_000
"""Milliseconds: what a call waits for a silent first destination without the ICMP."""
FAST = 5.0
"""Seconds a call through the dead destination may take with the ICMP failover (a
round trip on 127.0.0.1, with room for a loaded machine): a quarter of fr_timer."""


def start(
    tmp_path: Path, proxy_factory: ProxyFactory, dead: int, live: str, extra: str, fr: int
) -> ProxyProcess:
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(
        tmp_path / "dispatcher.list", [f"1 sip:127.0.0.1:{dead} 0 10", f"1 {live} 0 5"]
    )
    toml = basic_config(
        port, admin, list_file, algorithm=8, fr_timer=fr, extra='mark_failed = "ip"\n'
    )
    toml = toml.replace("[transaction]\n", f"[transaction]\n{extra}", 1)
    assert f"[transaction]\n{extra}" in toml
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def one_call(proxy: ProxyProcess, tmp_path: Path, name: str) -> float:
    """Seconds one sipp call took from start to its end (INVITE to BYE's 200)."""
    started = time.monotonic()
    outcome = run_sipp(
        "uac_call", "127.0.0.1", proxy.port, calls=1, rate=1, timeout=60,
        workdir=tmp_path / name,
    )  # fmt: skip
    took = time.monotonic() - started
    assert outcome.ok and outcome.successful == 1, outcome.report()
    return took


def metric(proxy: ProxyProcess, name: str) -> float:
    with urllib.request.urlopen(f"{proxy.admin_url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def flags_of(proxy: ProxyProcess, uri: str) -> str:
    for dest in dests(result(proxy, "dispatcher.list")):
        if dest["URI"] == uri:
            return str(dest["FLAGS"])
    raise AssertionError(f"{uri} not listed")


def test_a_destination_answering_icmp_unreachable_fails_over_without_waiting_for_fr_timer(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg2")
    dead = free_port()
    proxy = start(tmp_path, proxy_factory, dead, gw.uri, "", FR_TIMER)
    took = one_call(proxy, tmp_path, "call")
    assert took < FAST, f"the call took {took:.1f} s: it waited for fr_timer"
    assert gw.invites == 1
    assert metric(proxy, "sipdispatch_branch_unreachable_total") == 1
    # Marked as a timed-out branch is (mark_failed = "ip"): inactive, probing.
    dead_uri = f"sip:127.0.0.1:{dead}"
    assert flags_of(proxy, dead_uri) == "IP"
    # The call log names the failed attempt as one with no answer.
    wait_for(lambda: "sipdispatch.calls: call " in proxy.log_text(), 20, "the call log line")
    [line] = [x for x in proxy.log_text().splitlines() if "sipdispatch.calls: call " in x]
    assert (
        f"127.0.0.1:{dead} timeout ->" in line and f"{gw.uri.removeprefix('sip:')} 200" in line
    ), line


def test_with_icmp_failover_off_the_branch_waits_for_fr_timer(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg2")
    dead = free_port()
    proxy = start(tmp_path, proxy_factory, dead, gw.uri, "icmp_failover = false\n", 2000)
    took = one_call(proxy, tmp_path, "call")
    assert took >= 2.0, f"the call took {took:.1f} s: shorter than fr_timer"
    assert gw.invites == 1
    assert metric(proxy, "sipdispatch_branch_unreachable_total") == 0
