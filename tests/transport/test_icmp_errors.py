"""ICMP errors on the UDP listener: read from the socket's error queue (Linux
``IP_RECVERR``), each naming the request it answers by its Via branch and method.

With the errors queued, the kernel also reports a pending error on the socket's next
send, which then fails although its own destination is fine: the shell reads the queue
and sends that datagram again, so no datagram to a healthy peer is lost.
"""

from __future__ import annotations

import asyncio
import select
import socket
import sys

import pytest

from sipdispatch.sip.addr import Addr
from sipdispatch.sip.proxy import ProxyCore, ProxySettings, sent_request_key
from sipdispatch.sip.router import Reject
from sipdispatch.sip.timers import Timers
from sipdispatch.transport.shell import SipShell

BRANCH = "z9hG4bKsd.1a2b"


@pytest.mark.parametrize(
    ("head", "key"),
    [
        (f"INVITE sip:1@gw SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch={BRANCH}\r\n"
         "Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKcaller\r\n", (BRANCH, "INVITE")),
        (f"OPTIONS sip:gw SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.1;rport;branch={BRANCH};x=1\r\n",
         (BRANCH, "OPTIONS")),
        (f"BYE sip:gw SIP/2.0\r\nvia: SIP/2.0/UDP 10.0.0.1;branch={BRANCH}\r\n", (BRANCH, "BYE")),
        (f"CANCEL sip:gw SIP/2.0\r\nVIA : x\r\nVia: SIP/2.0/UDP h;branch={BRANCH}, SIP/2.0/UDP"
         " y\r\n", (BRANCH, "CANCEL")),
        # A response the proxy relayed, a Via cut short by the ICMP's size, none at all.
        (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch={BRANCH}\r\n", None),
        ("INVITE sip:1@gw SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9h", None),
        ("INVITE sip:1@gw SIP/2.0\r\nTo: <sip:1@gw>\r\n\r\n", None),
        ("INVITE sip:1@gw SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=\r\n", None),
        ("garbage", None),
    ],
)  # fmt: skip
def test_an_icmp_error_names_the_client_transaction_by_top_via_branch_and_method(
    head: str, key: tuple[str, str] | None
) -> None:
    assert sent_request_key(head.encode()) == key


class NoRoute:
    def route(self, request: object, source: object, now: float) -> Reject:
        return Reject(404)

    def in_dialog(self, request: object, now: float) -> None:
        pass


def dead_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _send_after_an_icmp_error() -> tuple[bytes, int]:
    timers = Timers(t1=0.5, t2=4.0, t4=5.0, fr_timer=3.0, fr_inv_timer=10.0)
    core = ProxyCore(ProxySettings(local={"udp": ("127.0.0.1", 0)}), NoRoute(), timers)  # type: ignore[arg-type]
    shell = SipShell(core, asyncio.get_running_loop())
    await shell.listen_udp("127.0.0.1", 0)
    listener = shell.udp_sock[socket.AF_INET]
    assert listener.sock is not None and listener.errors_queued
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(20)
        # The first datagram's ICMP error arrives while the loop does not run (as under
        # load, between two sends): the socket has an error pending.
        shell._send(Addr("udp", "127.0.0.1", dead_port()), b"OPTIONS first", None)
        poller = select.poll()
        poller.register(listener.sock.fileno(), select.POLLERR)
        assert poller.poll(20_000), "no ICMP error within 20 s"
        shell._send(Addr("udp", "127.0.0.1", peer.getsockname()[1]), b"OPTIONS second", None)
        got = peer.recv(100)
    errors = shell.stats.udp_errors
    await shell.close()
    return got, errors


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux's")
def test_a_datagram_sent_while_an_icmp_error_is_pending_still_reaches_its_peer() -> None:
    got, errors = asyncio.run(_send_after_an_icmp_error())
    assert got == b"OPTIONS second"
    assert errors == 1  # the first datagram's error, read from the queue
