"""RFC 4475's torture messages that a proxy must relay, answer or drop in one way only,
fed byte for byte to the proxy core (RFC 3261 §16) on a virtual clock."""

from __future__ import annotations

import pytest

from sipdispatch.sip.addr import Addr, is_forbidden_ip
from sipdispatch.sip.message import Request, Response, parse_datagram
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.router import Plan, Reject, StaticPlan, Target
from sipdispatch.sip.timers import Timers
from tests.corepump import CorePump, parsed
from tests.sip.vectors.rfc4475 import (
    BCAST,
    BCAST_REQUEST,
    BEXT01,
    ESCRURI,
    WSINV,
    WSINV_PLAIN,
)

PROXY = ("127.0.0.1", 5060)
SENDER = Addr("udp", "127.0.0.1", 40000)
GW = Addr("udp", "127.0.0.1", 5071)
TIMERS = Timers(t1=0.5, t2=4.0, t4=5.0, fr_timer=3.0, fr_inv_timer=10.0)


class ToGateway:
    """Routes every out-of-dialog request to GW; counts what it is asked."""

    def __init__(self) -> None:
        self.routed = 0
        self.in_dialog_seen = 0

    def route(self, request: Request, source: Addr, now: float) -> Plan | Reject:
        self.routed += 1
        return StaticPlan([Target(GW)])

    def in_dialog(self, request: Request, now: float) -> None:
        self.in_dialog_seen += 1


def core() -> tuple[CorePump, ToGateway]:
    router = ToGateway()
    settings = ProxySettings(local={"udp": PROXY, "tcp": PROXY}, record_route=True)
    return CorePump(ProxyCore(settings, router, TIMERS)), router


def send(data: bytes) -> tuple[list[tuple[Addr, Request | Response]], ToGateway]:
    pump, router = core()
    return parsed(pump.receive(data, SENDER)), router


def requests(out: list[tuple[Addr, Request | Response]]) -> list[tuple[Addr, Request]]:
    return [(a, m) for a, m in out if isinstance(m, Request)]


def responses(out: list[tuple[Addr, Request | Response]]) -> list[tuple[Addr, Response]]:
    return [(a, m) for a, m in out if isinstance(m, Response)]


# Where RFC 3261 §18.2.2 sends the answers of these messages: the Via names another
# host and no rport, so to the source's address (received) on the Via's port, 5060.
ANSWERS_TO = Addr("udp", SENDER.host, 5060)


def test_rfc4475_wsinv_is_relayed_along_its_route_set_as_the_plainly_written_request() -> None:
    tortuous, router = send(WSINV)
    plain, _ = send(WSINV_PLAIN)
    [(to, fwd)] = requests(tortuous)
    [(plain_to, plain_fwd)] = requests(plain)
    # In dialog (To has a tag) with a route set that does not start with us: relayed
    # to its top Route, never dispatched (RFC 3261 §16.4, §16.6 step 7).
    assert router.routed == 0 and router.in_dialog_seen == 1
    assert to == plain_to == Addr("udp", "services.example.com", 5060)
    assert fwd.uri_text == plain_fwd.uri_text == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert fwd.get("max-forwards") == "67" and plain_fwd.get("max-forwards") == "67"
    assert fwd.cseq == plain_fwd.cseq == (9, "INVITE")
    assert (fwd.to_tag, fwd.from_tag) == (plain_fwd.to_tag, plain_fwd.from_tag)
    assert (fwd.to_tag, fwd.from_tag) == ("1918181833n", "98asjd8")
    assert fwd.values("route") == plain_fwd.values("route")
    assert [v.branch for v in fwd.vias()[1:]] == [v.branch for v in plain_fwd.vias()[1:]] == [
        "390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"
    ]  # fmt: skip
    assert fwd.body == plain_fwd.body and len(fwd.body) == 150
    assert [(a, r.status) for a, r in responses(tortuous)] == [(ANSWERS_TO, 100)]


def test_rfc4475_bext01_proxy_require_gets_420_with_unsupported_listing_them() -> None:
    out, router = send(BEXT01)
    [(to, answer)] = responses(out)
    assert (to, answer.status, answer.reason) == (ANSWERS_TO, 420, "Bad Extension")
    # A proxy lists what Proxy-Require asked; Require is the user agent's business.
    assert answer.get("unsupported") == "noProxiesSupportThis, norDoAnyProxiesSupportThis"
    assert answer.call_id == "bext01@239409asdfakjkn23onasd0-3234"
    assert not requests(out) and router.routed == 0


def test_rfc4475_escruri_request_uri_with_headers_gets_400_and_is_not_relayed() -> None:
    out, router = send(ESCRURI)
    assert [(a, r.status) for a, r in responses(out)] == [(ANSWERS_TO, 100), (ANSWERS_TO, 400)]
    assert responses(out)[1][1].reason == "Request-URI carries headers"
    assert not requests(out) and router.routed == 0


def test_rfc4475_bcast_response_not_ours_is_dropped() -> None:
    pump, _ = core()
    assert pump.receive(BCAST, GW) == []
    assert pump.core.stats.dropped >= 1 or pump.core.stats.rx_replies == 1


def test_rfc4475_bcast_request_naming_a_broadcast_via_gets_400_and_is_not_relayed() -> None:
    out, router = send(BCAST_REQUEST)
    assert [r.status for _, r in responses(out)] == [100, 400]
    assert responses(out)[1][1].reason == "Via names a broadcast or multicast address"
    assert {a for a, _ in out} == {ANSWERS_TO}  # the answers go to the source, only there
    assert not requests(out) and router.routed == 0


@pytest.mark.parametrize("host", ["255.255.255.255", "224.0.1.75", "0.0.0.0", "[ff02::1]"])
def test_rfc4475_bcast_request_uri_naming_a_broadcast_or_multicast_host_gets_400(
    host: str,
) -> None:
    data = BCAST_REQUEST.replace(
        b"INVITE sip:user@example.edu ", f"INVITE sip:user@{host} ".encode()
    )
    data = data.replace(b"Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\r\n", b"")
    out, router = send(data)
    assert [r.status for _, r in responses(out)] == [100, 400]
    assert responses(out)[1][1].reason == "Request-URI names a broadcast or multicast address"
    assert not requests(out) and router.routed == 0


def test_rfc4475_bcast_top_via_naming_a_broadcast_address_is_answered_at_the_source() -> None:
    data = BCAST_REQUEST.replace(
        b"Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\n", b""
    )  # the broadcast Via is the top one now
    out, router = send(data)
    assert [(a, r.status) for a, r in responses(out)] == [(ANSWERS_TO, 100), (ANSWERS_TO, 400)]
    assert not requests(out) and router.routed == 0


def test_an_ack_naming_a_broadcast_via_is_dropped() -> None:
    ack = (
        b"ACK sip:user@example.edu SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bKack1\r\n"
        b"Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKack2\r\n"
        b"Route: <sip:gw.example.com;lr>\r\n"
        b"Max-Forwards: 70\r\nCall-ID: bcast-ack\r\nCSeq: 35 ACK\r\n"
        b"From: sip:user@example.com;tag=1\r\nTo: sip:user@example.edu;tag=2\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    pump, _ = core()
    assert pump.receive(ack, SENDER) == []
    assert pump.core.stats.dropped == 1
    # The same ACK without the broadcast Via is relayed along its route set.
    assert len(pump.receive(ack.replace(b"255.255.255.255", b"192.0.2.199"), SENDER)) == 1


def test_an_in_dialog_request_without_any_route_is_still_not_here() -> None:
    # wsinv without its Route: in dialog, nothing says where: 404 Not here.
    data = WSINV_PLAIN.replace(
        b"Route: <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n", b""
    )
    out, _ = send(data)
    [(_, trying), (_, answer)] = responses(out)
    assert (trying.status, answer.status, answer.reason) == (100, 404, "Not here")
    assert not requests(out)


@pytest.mark.parametrize(
    ("host", "forbidden"),
    [
        ("255.255.255.255", True), ("239.255.255.250", True), ("224.0.0.1", True),
        ("0.0.0.0", True), ("::", True), ("[::]", True), ("ff05::2", True),
        ("192.0.2.255", False), ("10.0.0.1", False), ("2001:db8::1", False),
        ("gw.example.com", False), ("", False),
    ],
)  # fmt: skip
def test_forbidden_addresses_are_broadcast_multicast_and_unspecified(
    host: str, forbidden: bool
) -> None:
    assert is_forbidden_ip(host) is forbidden


def test_the_tortuous_messages_parse_as_the_rfc_says() -> None:
    for data in (WSINV, BEXT01, ESCRURI, BCAST, BCAST_REQUEST):
        parse_datagram(data)  # every one is well framed; the faults are semantic
