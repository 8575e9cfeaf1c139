"""RFC 4475's torture messages through a running proxy with a gateway behind it.

Each message is sent as RFC 4475 writes it, with one change where the test must see
the answer: the top Via's sent-by names the test's socket (the RFC's hosts are
example addresses; RFC 3261 §18.2.2 would send the answer to port 5060 of the
source). For ``wsinv`` the route set names the gateway, where the RFC's
``services.example.com`` would be found by DNS.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.sip.vectors.rfc4475 import BCAST, BCAST_REQUEST, BEXT01, ESCRURI, WSINV

from .conftest import GatewayFactory, ProxyFactory
from .gateway import GatewayThread
from .proxyctl import ProxyProcess, basic_config, write_list_file
from .sippctl import free_port
from .test_admin import wait_for

pytestmark = pytest.mark.timeout(120)

DEADLINE = 10.0
"""Seconds an answer may take on a loaded machine."""


def start(tmp_path: Path, proxy_factory: ProxyFactory, gw: GatewayThread) -> ProxyProcess:
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(tmp_path / "dispatcher.list", [f"1 {gw.uri} 0"])
    toml = basic_config(port, admin, list_file)
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def answers(sock: socket.socket, call_id: str, final: bool = True) -> list[bytes]:
    """What comes back for ``call_id``, until a final response (or the deadline)."""
    got: list[bytes] = []
    wanted = f"Call-ID: {call_id}\r\n".encode()
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        sock.settimeout(max(end - time.monotonic(), 0.01))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            break
        if wanted in data:
            got.append(data)
            if final and not data.startswith(b"SIP/2.0 1"):
                break
    return got


def status_lines(got: list[bytes]) -> list[str]:
    return [g.split(b"\r\n", 1)[0].decode() for g in got]


def reached(gw: GatewayThread, call_id: str) -> int:
    return sum(1 for r in gw.received if r.call_id == call_id)


@pytest.fixture
def tester() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock  # type: ignore[misc]
    sock.close()


def test_rfc4475_wsinv_is_relayed_to_the_gateway_and_its_answer_comes_back(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, tester: socket.socket
) -> None:
    gw = gateways("gw1")
    proxy = start(tmp_path, proxy_factory, gw)
    me = tester.getsockname()[1]
    data = WSINV.replace(b"    192.0.2.2;branch", f"    127.0.0.1:{me};branch".encode())
    data = data.replace(b"<sip:services.example.com;lr;", f"<sip:127.0.0.1:{gw.port};lr;".encode())
    tester.sendto(data, ("127.0.0.1", proxy.port))
    got = answers(tester, "wsinv.ndaksdj@192.0.2.1")
    assert status_lines(got)[0] == "SIP/2.0 100 Trying", status_lines(got)
    wait_for(lambda: reached(gw, "wsinv.ndaksdj@192.0.2.1") == 1, DEADLINE, "wsinv relayed")
    [relayed] = [r for r in gw.received if r.call_id == "wsinv.ndaksdj@192.0.2.1"]
    assert relayed.method == "INVITE"
    assert relayed.raw.startswith(b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0")
    assert relayed.get("max-forwards") == "67"
    assert relayed.raw.endswith(b"a=rtpmap:31 LPC\r\n")


def test_rfc4475_bext01_gets_420_naming_the_proxy_extensions_and_reaches_no_gateway(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, tester: socket.socket
) -> None:
    gw = gateways("gw1")
    proxy = start(tmp_path, proxy_factory, gw)
    me = tester.getsockname()[1]
    data = BEXT01.replace(b"UDP 192.0.2.1;branch", f"UDP 127.0.0.1:{me};branch".encode())
    tester.sendto(data, ("127.0.0.1", proxy.port))
    [answer] = answers(tester, "bext01@239409asdfakjkn23onasd0-3234")
    assert answer.startswith(b"SIP/2.0 420 Bad Extension\r\n"), answer
    assert b"\r\nUnsupported: noProxiesSupportThis, norDoAnyProxiesSupportThis\r\n" in answer
    assert reached(gw, "bext01@239409asdfakjkn23onasd0-3234") == 0


def test_rfc4475_escruri_gets_400_and_reaches_no_gateway(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, tester: socket.socket
) -> None:
    gw = gateways("gw1")
    proxy = start(tmp_path, proxy_factory, gw)
    me = tester.getsockname()[1]
    data = ESCRURI.replace(b"host-of-the-hour.example.com;", f"127.0.0.1:{me};".encode())
    tester.sendto(data, ("127.0.0.1", proxy.port))
    got = answers(tester, "escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5")
    assert status_lines(got) == ["SIP/2.0 100 Trying", "SIP/2.0 400 Request-URI carries headers"]
    assert reached(gw, "escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5") == 0


def test_rfc4475_bcast_request_gets_400_and_the_response_is_dropped(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory, tester: socket.socket
) -> None:
    gw = gateways("gw1")
    proxy = start(tmp_path, proxy_factory, gw)
    me = tester.getsockname()[1]
    call_id = "bcast.0384840201234ksdfak3j2erwedfsASdf"
    data = BCAST_REQUEST.replace(b"UDP 192.0.2.198;branch", f"UDP 127.0.0.1:{me};branch".encode())
    tester.sendto(data, ("127.0.0.1", proxy.port))
    got = answers(tester, call_id)
    assert status_lines(got) == [
        "SIP/2.0 100 Trying", "SIP/2.0 400 Via names a broadcast or multicast address"
    ]  # fmt: skip
    # The 200 itself, as the RFC writes it: dropped; a call after it goes through.
    tester.sendto(BCAST, ("127.0.0.1", proxy.port))
    probe = (
        data.replace(call_id.encode(), b"after-bcast")
        .replace(b"Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\r\n", b"")
        .replace(b"branch=z9hG4bK1324923", b"branch=z9hG4bKafter")  # a new transaction
    )
    tester.sendto(probe, ("127.0.0.1", proxy.port))
    assert status_lines(answers(tester, "after-bcast"))[-1] == "SIP/2.0 200 OK"
    assert reached(gw, call_id) == 0
    assert reached(gw, "after-bcast") == 1
