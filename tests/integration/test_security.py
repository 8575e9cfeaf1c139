"""The source ACL and the flood limit of a running proxy, on loopback addresses.

Loopback is a whole /8: the caller (sipp) sends from 127.0.0.2, a flooder from
127.0.0.3, a stranger from 127.0.0.4; the gateway listens on 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from .conftest import GatewayFactory, ProxyFactory
from .proxyctl import basic_config, write_list_file
from .sippctl import free_port, run_sipp
from .test_admin import result
from .test_connection_limits import metrics

pytestmark = pytest.mark.timeout(180)


def options(i: int, port: int) -> bytes:
    return (
        f"OPTIONS sip:x@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.3:9;branch=z9hG4bK-flood-{i}\r\n"
        "From: <sip:flood@127.0.0.3>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n"
        f"Call-ID: flood-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def start(tmp_path: Path, proxy_factory: ProxyFactory, gw_uri: str, security: str) -> object:
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(tmp_path / "dispatcher.list", [f"1 {gw_uri}"])
    toml = basic_config(port, admin, list_file, extra=f"\n[security]\n{security}\n")
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def test_a_flooding_source_is_limited_while_another_sources_calls_all_succeed(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, gw.uri, "flood_limit = 30\nflood_window = 2")
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.3", 0))
            while not stop.is_set():
                s.sendto(options(sent[0], proxy.port), ("127.0.0.1", proxy.port))  # type: ignore[attr-defined]
                sent[0] += 1

    flooder = threading.Thread(target=flood, daemon=True)
    started = time.monotonic()
    flooder.start()
    try:
        calls = run_sipp(
            "uac_call", "127.0.0.1", proxy.port, calls=40, rate=20, timeout=60,  # type: ignore[attr-defined]
            local_host="127.0.0.2", workdir=tmp_path / "caller",
        )  # fmt: skip
    finally:
        stop.set()
        flooder.join(10)
        elapsed = time.monotonic() - started
    assert calls.ok and calls.successful == 40, calls.report()
    m = metrics(proxy.admin_url)  # type: ignore[attr-defined]
    assert sent[0] > 4000
    assert m["sipdispatch_requests_flood_dropped_total"] > sent[0] / 2
    # The flooder got its bucket's worth, not thousands, relayed: 30 at once, then 15/s.
    assert gw.options <= 30 + 15 * elapsed + 10, (gw.options, elapsed)
    hot = result(proxy, "pike.top")  # type: ignore[arg-type]
    assert hot and hot[0]["IP"] == "127.0.0.3" and hot[0]["DROPPED"] > 0


def test_a_source_outside_allow_gets_403_and_destinations_still_answer(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, gw.uri, 'allow = ["127.0.0.2"]')
    calls = run_sipp(
        "uac_call", "127.0.0.1", proxy.port, calls=3, rate=10, timeout=60,  # type: ignore[attr-defined]
        local_host="127.0.0.2", workdir=tmp_path / "caller",
    )  # fmt: skip
    assert calls.ok and calls.successful == 3, calls.report()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.4", 0))
        s.settimeout(10)
        data = options(1, proxy.port).replace(b"127.0.0.3:9", b"127.0.0.4:9;rport")  # type: ignore[attr-defined]
        s.sendto(data, ("127.0.0.1", proxy.port))  # type: ignore[attr-defined]
        answer = s.recv(65535)
    assert answer.startswith(b"SIP/2.0 403 Forbidden")
    deadline = time.monotonic() + 10
    while metrics(proxy.admin_url)["sipdispatch_requests_refused_total"] < 1:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline
        time.sleep(0.05)
