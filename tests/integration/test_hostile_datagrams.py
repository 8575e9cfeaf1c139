"""One hostile datagram does not hold the running proxy.

A datagram of a folded header line and a long run of blanks used to stop
``sipdispatch run`` for up to 41 seconds (a backtracking pattern unfolding the head):
it read nothing meanwhile, missed its own OPTIONS pings and marked a healthy gateway
``IP``. Each row of that measurement is sent here to a real proxy process, followed by
an OPTIONS probe relayed through it to a gateway; the probe must be answered at once,
and afterwards a call through sipp succeeds, the admin RPC answers, the gateway is
still ``AP`` and no message took the proxy more than 50 ms of CPU.
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
from .test_admin import HTTP_TIMEOUT, calls, flags, result

pytestmark = pytest.mark.timeout(180)

PROBE_DEADLINE = 1.0
"""Seconds within which the probe after a hostile datagram must be answered; the
datagrams of the table held the proxy 0.9 to 41 seconds before."""

ROWS = {
    "10 000 spaces": (" " * 10_000, True),
    "30 000 spaces": (" " * 30_000, True),
    "60 000 spaces": (" " * 60_000, True),
    "60 000 tabs": ("\t" * 60_000, True),
    "60 000 spaces, no folded line": (" " * 60_000, False),
}
"""The measured table: (the run of blanks, whether a folded Subject line comes with it)."""


def options(port: int, caller: int, call_id: str, extra: str = "") -> bytes:
    return (
        f"OPTIONS sip:{call_id}@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{caller};rport;branch=z9hG4bK-{call_id}\r\n"
        f"From: <sip:fuzzer@127.0.0.1:{caller}>;tag=f1\r\n"
        f"To: <sip:{call_id}@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode("latin-1")


def hostile(port: int, caller: int, call_id: str, run: str, folded: bool) -> bytes:
    extra = "Subject: a folded\r\n subject line\r\n" if folded else ""
    return options(port, caller, call_id, f"{extra}X-Junk: a{run}b\r\n")


def answered(sock: socket.socket, call_id: str, deadline: float) -> bool:
    """Read answers until one for ``call_id`` (True) or the deadline (False)."""
    wanted = f"Call-ID: {call_id}\r\n".encode()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return False
        if data.startswith(b"SIP/2.0 200") and wanted in data:
            return True


def metric(admin_url: str, name: str) -> float:
    with urllib.request.urlopen(f"{admin_url}/metrics", timeout=HTTP_TIMEOUT) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def test_each_hostile_datagram_is_followed_by_a_probe_answered_at_once(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg1")
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(tmp_path / "dispatcher.list", [f"1 {gw.uri} 8"])  # 8: probing
    # Pings every second, and a missed one marks the gateway IP after 2 s: a stall
    # of the proxy would show as the gateway's state, as it did in the field.
    toml = basic_config(port, admin, list_file, ping_interval=1, fr_timer=2000)
    proxy = proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        caller = sock.getsockname()[1]
        for i, (row, (run, folded)) in enumerate(ROWS.items()):
            data = hostile(port, caller, f"hostile-{i}", run, folded)
            assert len(data) < 65535, row
            sock.sendto(data, ("127.0.0.1", port))
            probe = f"probe-{i}"
            sent = time.monotonic()
            sock.sendto(options(port, caller, probe), ("127.0.0.1", port))
            assert answered(sock, probe, sent + PROBE_DEADLINE), (
                f"after {row}: no answer to the probe within {PROBE_DEADLINE} s"
            )
    calls(proxy, tmp_path, 1, "call-after")
    assert result(proxy, "core.version")
    assert flags(proxy) == {gw.uri: "AP"}
    assert metric(proxy.admin_url, "sipdispatch_slow_messages_total") == 0
    relayed = [r for r in gw.requests("OPTIONS") if r.call_id.startswith("hostile-")]
    assert len(relayed) == len(ROWS)  # each was a valid request, relayed whole
    assert max(len(r.raw) for r in relayed) > 60_000
