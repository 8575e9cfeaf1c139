"""Received messages are sent by splicing their bytes, and that agrees with the serializer.

``Message.to_bytes`` copies the header lines of a received message that are still as
they came and formats only the ones added or edited since; ``Message.serialize``
writes everything anew. The two must give the same bytes for every message, edited
or not -- the vectors, the generated valid messages and arbitrary bytes that parse --
and a message the proxy does not otherwise change leaves exactly as it came, but for
our Via (and Record-Route, Max-Forwards).
"""

from __future__ import annotations

import contextlib

from hypothesis import given, settings

from sipdispatch.sip.addr import Addr
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.message import (
    Request,
    Response,
    StreamParser,
    make_response,
    parse_datagram,
    trying_bytes,
)
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.router import StaticPlan, Target
from sipdispatch.sip.timers import Timers
from tests.corepump import CorePump
from tests.sip.test_parser_properties import any_bytes, valid_messages
from tests.sip.vectors import VALID, sip

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True)
PROXY = ("127.0.0.1", 5060)
CALLER = Addr("udp", "127.0.0.1", 5555)
GW = Addr("udp", "127.0.0.1", 5071)

Message = Request | Response


def edits(msg: Message) -> list[Message]:
    """The message after each kind of edit the proxy makes, one copy per edit, and
    after all of them together."""
    out: list[Message] = []

    def edited(step: int) -> Message:
        m = msg.copy()
        if step in (0, 9):
            m.prepend("via", "Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsdx.1")
        if step in (1, 9):
            m.prepend("record-route", "Record-Route", "<sip:127.0.0.1:5060;lr>")
        if step in (2, 9):
            m.set("max-forwards", "Max-Forwards", "69")
        if step in (3, 9):
            m.drop_values("route", 1)
        if step in (4, 9):
            with contextlib.suppress(ParseError):
                m.pop_first_value("via")
        if step in (5, 9):
            m.remove("contact")
        if step in (6, 9):
            m.append("x-added", "X-Added", "1")
        if step in (7, 9):
            m.body = b"v=0\r\n"
        if step in (8, 9) and isinstance(m, Request):
            m.set_uri("sip:other@example.net")
        return m

    for step in range(10):
        out.append(edited(step))
    return out


def assert_splice_agrees(msg: Message) -> None:
    assert msg.to_bytes() == msg.serialize()
    for m in edits(msg):
        assert m.to_bytes() == m.serialize()


def test_every_vector_is_spliced_as_the_serializer_writes_it_edited_or_not() -> None:
    for name, data in VALID.items():
        msg = parse_datagram(data)
        assert_splice_agrees(msg)
        # The same message framed off a stream keeps its spans too.
        for framed in StreamParser().feed(data):
            assert isinstance(framed, Request | Response), name
            assert_splice_agrees(framed)


def test_100_trying_from_the_received_bytes_is_what_make_response_writes() -> None:
    for name, data in VALID.items():
        msg = parse_datagram(data)
        if isinstance(msg, Request):
            assert trying_bytes(msg) == make_response(msg, 100).to_bytes(), name


@PROPERTY
@given(msg=valid_messages())
def test_100_trying_of_a_generated_request_is_what_make_response_writes(msg: Message) -> None:
    received = parse_datagram(msg.to_bytes())
    if isinstance(received, Request):
        assert trying_bytes(received) == make_response(received, 100).to_bytes()


def test_vector_written_as_the_serializer_writes_leaves_unchanged_and_is_copied() -> None:
    # A message whose lines all are ``Name: value`` CRLF is sent as received, and
    # that takes the splicing path (a run of lines copied in one piece).
    data = VALID["invite_with_sdp_body"]
    msg = parse_datagram(data)
    assert msg._starts is not None and -1 not in msg._starts
    assert msg.to_bytes() == data


def test_lines_not_written_as_the_serializer_writes_are_written_anew_the_rest_copied() -> None:
    data = sip(
        "OPTIONS sip:bob@example.com SIP/2.0",
        "Via:SIP/2.0/UDP client.example.com;branch=z9hG4bK-ws",
        "To:   <sip:bob@example.com>  ",
        "From: <sip:alice@example.com>;tag=1",
        "Call-ID: ws-1",
        "CSeq : 1 OPTIONS",
    )
    msg = parse_datagram(data)
    assert msg._starts is not None
    assert [s >= 0 for s in msg._starts] == [False, False, True, True, False, True]
    assert msg.to_bytes() == msg.serialize()
    assert b"Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-ws\r\n" in msg.to_bytes()


def test_folded_and_bare_lf_messages_fall_back_to_the_serializer() -> None:
    folded = parse_datagram(VALID["folded_headers"])
    assert folded._starts is None
    assert folded.to_bytes() == folded.serialize()
    bare = parse_datagram(VALID["bare_lf_line_endings"])
    assert bare._starts is not None and max(bare._starts) == -1
    assert bare.to_bytes() == bare.serialize()


def test_missing_or_wrong_content_length_is_written_right_when_spliced() -> None:
    no_clen = sip(
        "MESSAGE sip:bob@example.com SIP/2.0",
        "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-m",
        "To: <sip:bob@example.com>",
        "From: <sip:alice@example.com>;tag=1",
        "Call-ID: m-1",
        "CSeq: 1 MESSAGE",
        body=b"hello",
        clen=False,
    )
    msg = parse_datagram(no_clen)
    assert msg.to_bytes() == msg.serialize()
    assert msg.to_bytes().endswith(b"Content-Length: 5\r\n\r\nhello")
    twice = no_clen.replace(
        b"CSeq: 1 MESSAGE\r\n", b"CSeq: 1 MESSAGE\r\nl: 5\r\nContent-Length: 5\r\n"
    )
    again = parse_datagram(twice)
    assert again.to_bytes() == again.serialize()
    assert again.to_bytes().count(b"5\r\n") == 1


def test_directly_appended_header_line_is_still_written() -> None:
    # Code that appends to the header list itself (not through the message's
    # methods) leaves the spans behind: the serializer then writes everything.
    msg = parse_datagram(VALID["invite_with_sdp_body"])
    msg.headers.append(("server", "Server", "test"))
    assert msg.to_bytes() == msg.serialize()
    assert b"Server: test\r\n" in msg.to_bytes()


@PROPERTY
@given(msg=valid_messages())
def test_generated_valid_message_is_spliced_as_the_serializer_writes_it(msg: Message) -> None:
    received = parse_datagram(msg.to_bytes())
    assert_splice_agrees(received)


@PROPERTY
@given(data=any_bytes)
def test_any_bytes_that_parse_are_spliced_as_the_serializer_writes_them(data: bytes) -> None:
    try:
        msg = parse_datagram(data)
    except ParseError:
        return
    assert_splice_agrees(msg)


# -- through the proxy -----------------------------------------------------------------


class OneGateway:
    def route(self, request: Request, source: Addr, now: float) -> StaticPlan:
        return StaticPlan([Target(GW)])

    def in_dialog(self, request: Request, now: float) -> None:
        pass


def core(record_route: bool = True) -> CorePump:
    settings = ProxySettings(local={"udp": PROXY}, record_route=record_route)
    timers = Timers(t1=0.5, t2=4.0, t4=5.0, fr_timer=3.0, fr_inv_timer=10.0)
    return CorePump(ProxyCore(settings, OneGateway(), timers))  # type: ignore[arg-type]


INVITE_LINES = (
    "INVITE sip:bob@127.0.0.1:5071 SIP/2.0",
    "Via: SIP/2.0/UDP 127.0.0.1:5555;branch=z9hG4bK-caller",
    'From: "Alice" <sip:alice@127.0.0.1:5555>;tag=a1',
    "To: <sip:bob@127.0.0.1:5071>",
    "Call-ID: splice-1@127.0.0.1",
    "CSeq: 1 INVITE",
    "Contact: <sip:alice@127.0.0.1:5555>",
    "Max-Forwards: 70",
    "Subject: unchanged",
    "Content-Type: application/sdp",
)
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def test_forwarded_invite_is_the_received_bytes_plus_our_via_rr_and_max_forwards() -> None:
    pump = core()
    data = sip(*INVITE_LINES, body=SDP)
    sent = pump.receive(data, CALLER)
    (fwd,) = [d for a, d in sent if a == GW]
    head, _, body = fwd.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"INVITE sip:bob@127.0.0.1:5071 SIP/2.0"
    assert lines[1].startswith(b"Record-Route: <sip:127.0.0.1:5060;lr>")
    assert lines[2].startswith(b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsd")
    expected = [
        line.encode() if not line.startswith("Max-Forwards") else b"Max-Forwards: 69"
        for line in INVITE_LINES[1:]
    ]
    assert lines[3:] == [*expected, b"Content-Length: %d" % len(SDP)]
    assert body == SDP
    # Byte for byte what the full serializer writes of the same forwarded request.
    assert fwd == parse_datagram(fwd).serialize()


def test_forwarded_line_not_written_as_name_colon_space_value_is_normalised() -> None:
    # Such a line is written anew, as the serializer writes it (as before splicing);
    # the lines around it are still copied.
    pump = core()
    lines = (*INVITE_LINES[:7], "X-Odd:   spaced   ", *INVITE_LINES[7:])
    sent = pump.receive(sip(*lines, body=SDP), CALLER)
    (fwd,) = [d for a, d in sent if a == GW]
    assert b"\r\nX-Odd: spaced\r\nMax-Forwards: 69\r\nSubject: unchanged\r\n" in fwd
    assert fwd == parse_datagram(fwd).serialize()


def test_relayed_response_is_the_received_bytes_without_our_via() -> None:
    pump = core()
    sent = pump.receive(sip(*INVITE_LINES, body=SDP), CALLER)
    (fwd,) = [d for a, d in sent if a == GW]
    ours = next(line for line in fwd.split(b"\r\n") if line.startswith(b"Via: "))
    ringing_lines = [
        b"SIP/2.0 180 Ringing",
        ours,
        b"Via: SIP/2.0/UDP 127.0.0.1:5555;branch=z9hG4bK-caller",
        b'From: "Alice" <sip:alice@127.0.0.1:5555>;tag=a1',
        b"To: <sip:bob@127.0.0.1:5071>;tag=gw",
        b"Call-ID: splice-1@127.0.0.1",
        b"CSeq: 1 INVITE",
        b"X-Gateway: as it was",
        b"Content-Length: 0",
    ]
    sent = pump.receive(b"\r\n".join(ringing_lines) + b"\r\n\r\n", GW)
    (relayed,) = [d for a, d in sent if a == CALLER]
    assert relayed == b"\r\n".join(ringing_lines[:1] + ringing_lines[2:]) + b"\r\n\r\n"
