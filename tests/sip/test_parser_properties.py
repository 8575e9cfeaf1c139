"""Properties of the parser (hypothesis, deterministic runs).

(a) Any bytes give a message or a ParseError, never another exception, through
    ``parse_datagram`` and through ``StreamParser.feed`` over any chunking; every
    lazy accessor of a parsed message raises ParseError at worst; a parsed message
    serializes into bytes that parse back to it.
(b) Generated valid messages round-trip: parse(serialize(m)) == m.
(c) A valid message split at arbitrary points into StreamParser gives exactly it.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import string
from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.headers import header_key
from sipdispatch.sip.message import (
    Header,
    Request,
    Response,
    StreamParser,
    make_response,
    parse_datagram,
)
from tests.sip.vectors import INVALID, VALID, same_message

Message = Request | Response

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True)

# -- strategies: hostile bytes --------------------------------------------------------

SEEDS = sorted(VALID.values()) + sorted(v.data for v in INVALID.values() if len(v.data) < 4096)

TRICKY = [
    b"\r\n", b"\r\n ", b"\r\n\t", b"\n", b"\r", b"\r\n\r\n", b",", b";", b":", b'"', b"\\",
    b"<", b">", b"[", b"]", b"@", b"=", b" ", b"\t", b"\x00", b"\xb2", b"\xb9", b"\xa0",
    b"\x85", b"\xff", b"Via: ", b"v: ", b"l: ", b"Content-Length: 999", b"Content-Length: 0",
    b"SIP/2.0", b"SIP/2.0/UDP ", b"sip:", b"sips:", b"tag=", b"branch=", b"2147483648",
    b"-1", b"999", b"INVITE", b"CSeq: 1 INVITE", b"Max-Forwards: 300", b"[::1]", b":5060",
]  # fmt: skip


@st.composite
def mutated_vectors(draw: st.DrawFn) -> bytes:
    """A known message with a few slices replaced by hostile bytes."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 12))
        insert = draw(
            st.binary(max_size=8) | st.lists(st.sampled_from(TRICKY), max_size=4).map(b"".join)
        )
        data[pos : pos + cut] = insert
    return bytes(data)


# Mostly mutated messages: random bytes rarely get past the start line.
any_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(TRICKY), max_size=40).map(b"".join),
    mutated_vectors(),
    mutated_vectors(),
    mutated_vectors(),
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# -- helpers --------------------------------------------------------------------------


def without_content_length(headers: list[Header]) -> list[Header]:
    return [h for h in headers if h[0] != "content-length"]


def exercise(msg: Message) -> None:
    """Every accessor the proxy uses raises ParseError at worst; re-serializing is lossless.

    Works on a copy: one probe edits the message, and callers compare it afterwards.
    """
    msg = msg.copy()
    probes: list[Callable[[], Any]] = [
        lambda: msg.top_via,
        msg.vias,
        lambda: msg.cseq,
        lambda: msg.from_tag,
        lambda: msg.to_tag,
        lambda: msg.values("route"),
        lambda: msg.values("record-route"),
        lambda: msg.values("contact"),
        lambda: msg.pop_first_value("route"),
    ]
    if isinstance(msg, Request):
        probes.append(lambda: msg.uri)
        # Building a reply never fails, whatever the request holds.
        assert make_response(msg, 400, to_tag="t").to_bytes()
    for probe in probes:
        with contextlib.suppress(ParseError):
            probe()
    again = parse_datagram(msg.to_bytes())
    assert type(again) is type(msg)
    assert again.start_line() == msg.start_line()
    assert without_content_length(again.headers) == without_content_length(msg.headers)
    assert again.body == msg.body
    assert again.get("content-length") == str(len(msg.body))


def run_stream(
    chunks: list[bytes], max_size: int
) -> tuple[list[Message | ParseError], ParseError | None, StreamParser]:
    parser = StreamParser(max_size)
    items: list[Message | ParseError] = []
    for chunk in chunks:
        try:
            items.extend(parser.feed(chunk))
        except ParseError as e:
            return items, e, parser
    return items, None, parser


def same_item(a: Message | ParseError, b: Message | ParseError) -> None:
    if isinstance(a, ParseError):
        assert isinstance(b, ParseError)
        assert (a.status, a.reason, a.start_line, a.headers) == (
            b.status,
            b.reason,
            b.start_line,
            b.headers,
        )
    else:
        same_message(a, b)


# -- (a) any bytes --------------------------------------------------------------------


@PROPERTY
@given(data=any_bytes, max_size=st.sampled_from([65535, 200]))
@example(  # regression: a non-ASCII digit in Content-Length once raised ValueError
    data=(
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP client.example.com:5060;branch=z9hG4bK-base\r\n"
        b"Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\n"
        b"From: <sip:alice@example.com>;tag=base\r\nCall-ID: base-1@client.example.com\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: \xb9\r\n\r\nx"
    ),
    max_size=65535,
)
def test_any_bytes_give_a_message_or_a_parse_error(data: bytes, max_size: int) -> None:
    try:
        msg = parse_datagram(data, max_size)
    except ParseError as e:
        assert e.status in (400, 505, 513)
        assert e.reason and "\n" not in e.reason and "\r" not in e.reason
        return
    assert isinstance(msg, Request | Response)
    exercise(msg)


@PROPERTY
@given(
    data=any_bytes,
    cuts=st.lists(st.integers(0, 1000), max_size=12),
    max_size=st.sampled_from([65535, 200]),
)
@example(  # regression: quoted display names with commas, `<` and `;`, one chunk
    data=(
        b"MESSAGE sip:hank@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP iris.example.com;branch=z9hG4bK-dn\r\n"
        b'To: "Hank, \\"The Tank\\" <Jr>; Esq." <sip:hank@example.com>\r\n'
        b'From: "Iris; <not a uri>, really" <sip:iris@example.com;transport=udp>;tag=q1;x\r\n'
        b'Contact: "A, B" <sip:a@example.com;lr>, <sip:b,c@example.com?S=x,y>;q=0.5,'
        b" sip:c@example.com;q=0.1\r\n"
        b"Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr;note=a,b>\r\n"
        b"Call-ID: display-names@iris.example.com\r\nCSeq: 8 MESSAGE\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nHi!\r\n"
    ),
    cuts=[],
    max_size=65535,
)
def test_stream_over_any_chunking_raises_only_parse_error_and_agrees_with_one_chunk(
    data: bytes, cuts: list[int], max_size: int
) -> None:
    items, error, parser = run_stream(chunked(data, cuts), max_size)
    whole_items, whole_error, whole = run_stream([data], max_size)
    for item in items:
        if not isinstance(item, ParseError):
            exercise(item)
    if whole_error is None:
        assert error is None
        assert len(items) == len(whole_items)
        for a, b in zip(items, whole_items, strict=True):
            same_item(a, b)
        assert parser.pings == whole.pings
        assert parser.buffered == whole.buffered
    else:
        # Items completed in the same feed() as a framing error are not returned,
        # so the one-chunk run may have fewer; the error itself is the same.
        assert error is not None
        assert (error.status, error.reason) == (whole_error.status, whole_error.reason)
        assert len(whole_items) <= len(items)
        for a, b in zip(whole_items, items, strict=False):
            same_item(a, b)


_CONTENT_LENGTH_LINE = re.compile(rb"(?i)[ \t]*(content-length|l)[ \t]*:")


@st.composite
def framed_messages(draw: st.DrawFn) -> bytes:
    """Hostile bytes made into exactly one stream frame: a head with no empty line in
    it and no Content-Length of its own, then the right Content-Length, the empty
    line and the body."""
    head, _, body = draw(any_bytes).partition(b"\r\n\r\n")
    head = head.lstrip(b"\r\n")
    lines = [line for line in head.split(b"\r\n") if not _CONTENT_LENGTH_LINE.match(line)]
    if not lines or not lines[0]:
        lines.insert(0, b"OPTIONS sip:x@y SIP/2.0")  # a start line, so Content-Length is a header
    head = b"\r\n".join([*lines, b"Content-Length: %d" % len(body)])
    while b"\n\n" in head or b"\r\n\r\n" in head:
        head = head.replace(b"\n\n", b"\n").replace(b"\r\n\r\n", b"\r\n")
    return head + b"\r\n\r\n" + body


@PROPERTY
@given(data=framed_messages())
def test_one_framed_message_on_a_stream_is_what_the_datagram_parser_gives(data: bytes) -> None:
    items, error, parser = run_stream([data], 65535)
    try:
        msg: Message | ParseError = parse_datagram(data)
    except ParseError as e:
        msg = e
    if error is not None:
        # The head itself is broken: the stream gives up on it as the datagram does.
        assert isinstance(msg, ParseError)
        assert (error.status, error.reason) == (msg.status, msg.reason)
        return
    assert len(items) == 1 and parser.buffered == 0 and parser.pings == 0
    same_item(items[0], msg)


# -- (b) generated valid messages round-trip ------------------------------------------

# Structural parts come from small pools (their own grammars are tested in
# test_uri / test_headers); free text goes in header values, reasons and bodies.
# Text is drawn as bytes mapped onto an alphabet: one draw per string instead of
# one per character keeps 300 examples fast.


def text_over(chars: str, min_size: int, max_size: int) -> st.SearchStrategy[str]:
    table = bytes(ord(chars[i % len(chars)]) for i in range(256))
    return st.binary(min_size=min_size, max_size=max_size).map(
        lambda b: b.translate(table).decode("latin-1")
    )


TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
token = text_over(TOKEN_CHARS, 1, 6)
host = st.sampled_from(
    ["example.com", "a.b-c.example.org", "gw1", "192.0.2.7", "[2001:db8::1]", "[::ffff:10.0.0.1]"]
)
port = st.sampled_from(["", ":5060", ":1", ":65535"])
# RFC 3261 user-unreserved also allows '?', which parse_uri takes as the start of
# ?headers; it is left out here.
user = st.sampled_from(
    ["", "alice@", "%61lice%20b@", "+1-212-555;isub=1@", "u:pw@", "a&=+$,;/!~*'()@"]
)
uri_params = st.sampled_from(["", ";lr", ";transport=tcp", ";user=phone;lr", ";x=y;flag"])
uri = st.builds(
    lambda scheme, u, h, p, params: f"{scheme}:{u}{h}{p}{params}",
    st.sampled_from(["sip", "sips", "SIP"]),
    user,
    host,
    port,
    uri_params,
)
# Header values: any latin-1 text without line breaks or outer white space.
VALUE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F)) + "\t" + "éüßÀÿ"
header_value = text_over(VALUE_CHARS, 0, 30).map(lambda s: s.strip(" \t"))
reason_phrase = text_over(VALUE_CHARS, 0, 20)
method = st.one_of(
    st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE"]),
    text_over(TOKEN_CHARS, 1, 8),
)


def named(*names: str) -> st.SearchStrategy[str]:
    return st.sampled_from(names)


@st.composite
def valid_messages(draw: st.DrawFn) -> Message:
    body = draw(st.binary(max_size=100))
    meth = draw(method)
    headers: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(1, 2))):
        vias = [
            f"SIP/2.0/{draw(named('UDP', 'TCP', 'TLS'))} {draw(host)}{draw(port)}"
            f";branch=z9hG4bK{draw(token)}"
            for _ in range(draw(st.integers(1, 2)))
        ]
        headers.append((draw(named("Via", "v", "VIA")), ", ".join(vias)))
    headers.append((draw(named("From", "f")), f"<{draw(uri)}>;tag={draw(token)}"))
    to_tag = draw(st.sampled_from(["", ";tag=x1", ";TAG=Ab.c"]))
    headers.append((draw(named("To", "t")), f'"{draw(token)}, Esq." <{draw(uri)}>{to_tag}'))
    headers.append((draw(named("Call-ID", "i", "call-id")), f"{draw(token)}@{draw(host)}"))
    headers.append(("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {meth}"))
    if draw(st.booleans()):
        headers.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    for _ in range(draw(st.integers(0, 3))):
        headers.append((f"X-{draw(token)}", draw(header_value)))
    headers.append((draw(named("Content-Length", "l")), str(len(body))))
    ordered = draw(st.permutations(headers))
    hs = [(header_key(name), name, value) for name, value in ordered]
    if draw(st.booleans()):
        return Request(meth, draw(uri), hs, body)
    return Response(draw(st.integers(100, 699)), draw(reason_phrase), hs, body)


@PROPERTY
@given(msg=valid_messages())
def test_parse_of_serialize_of_a_valid_message_is_the_same_message(msg: Message) -> None:
    data = msg.to_bytes()
    again = parse_datagram(data)
    same_message(msg, again)
    if isinstance(msg, Request):
        assert isinstance(again, Request)
        assert again.method == msg.method and again.uri == msg.uri
        assert again.cseq[1] == msg.method
    else:
        assert isinstance(again, Response)
        assert (again.status, again.reason) == (msg.status, msg.reason)
    assert len(again.vias()) >= 1
    assert again.from_tag is not None
    assert again.to_bytes() == data


# -- (c) a valid message split anywhere -----------------------------------------------


@PROPERTY
@given(
    msg=valid_messages(),
    cuts=st.lists(st.integers(0, 2000), max_size=20),
    pings=st.integers(0, 2),
)
def test_valid_message_split_anywhere_on_a_stream_is_exactly_that_message(
    msg: Message, cuts: list[int], pings: int
) -> None:
    data = b"\r\n\r\n" * pings + msg.to_bytes()
    items, error, parser = run_stream(chunked(data, cuts), 65535)
    assert error is None
    assert len(items) == 1
    same_message(msg, items[0])
    assert parser.buffered == 0
    assert parser.pings == pings


@PROPERTY
@given(
    names=st.lists(st.sampled_from(sorted(VALID)), min_size=2, max_size=4),
    cuts=st.lists(st.integers(0, 5000), max_size=20),
)
def test_back_to_back_messages_split_anywhere_come_out_in_order(
    names: list[str], cuts: list[int]
) -> None:
    data = b"".join(VALID[name] for name in names)
    items, error, parser = run_stream(chunked(data, cuts), 65535)
    assert error is None
    assert len(items) == len(names)
    for name, item in zip(names, items, strict=True):
        same_message(parse_datagram(VALID[name]), item)
    assert parser.buffered == 0
