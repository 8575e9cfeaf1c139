"""Nothing is sent to a broadcast, multicast or unspecified address (RFC 4475 bcast)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.router import Reject
from sipdispatch.sip.timers import Timers
from sipdispatch.transport.shell import FORBIDDEN_IP, NAME, USABLE_IP, SipShell, address_kind


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("255.255.255.255", FORBIDDEN_IP),
        ("224.0.0.1", FORBIDDEN_IP),
        ("239.255.255.250", FORBIDDEN_IP),
        ("0.0.0.0", FORBIDDEN_IP),
        ("::", FORBIDDEN_IP),
        ("ff02::1", FORBIDDEN_IP),
        ("127.0.0.1", USABLE_IP),
        ("192.0.2.255", USABLE_IP),  # a subnet's broadcast cannot be known from here
        ("::1", USABLE_IP),
        ("gw.example.com", NAME),
    ],
)
def test_address_kind(host: str, kind: int) -> None:
    assert address_kind(host) == kind


class NoRoute:
    def route(self, request: object, source: object, now: float) -> Reject:
        return Reject(404)

    def in_dialog(self, request: object, now: float) -> None:
        pass


def response_via_broadcast(our_port: int) -> bytes:
    # bcast: a response with our Via on top and a broadcast Via below it, which a
    # stateless forward would send to.
    return (
        "SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{our_port};branch=z9hG4bKsdlost\r\n"
        "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\r\n"
        "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\n"
        "Call-ID: bcast@example.com\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def _send_bcast() -> tuple[int, int]:
    timers = Timers(t1=0.5, t2=4.0, t4=5.0, fr_timer=3.0, fr_inv_timer=10.0)
    core = ProxyCore(ProxySettings(local={"udp": ("127.0.0.1", 0)}), NoRoute(), timers)  # type: ignore[arg-type]
    shell = SipShell(core, asyncio.get_running_loop())
    host, port = await shell.listen_udp("127.0.0.1", 0)
    core.settings = ProxySettings(local={"udp": (host, port)})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(response_via_broadcast(port), (host, port))
        for _ in range(400):  # up to 20 s on a very busy machine
            if shell.stats.refused_destinations:
                break
            await asyncio.sleep(0.05)
    await shell.close()
    return shell.stats.refused_destinations, core.stats.tx_replies_stateless


def test_a_response_is_never_forwarded_to_a_broadcast_via() -> None:
    refused, forwarded = asyncio.run(_send_bcast())
    assert (refused, forwarded) == (1, 1)  # the core forwarded it; the shell did not send
