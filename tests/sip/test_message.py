"""The message model: lookups, edits, serialization, make_response and StreamParser."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from sipdispatch.sip import message
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.message import (
    REASON_PHRASES,
    Header,
    Request,
    Response,
    StreamParser,
    digits_value,
    find_head_end,
    is_keepalive,
    make_response,
    number,
    number_text,
    parse_datagram,
    trying_bytes,
)
from sipdispatch.sip.uri import parse_uri
from tests.sip.vectors import (
    BASE_REQUEST,
    INVALID,
    NEXT_MESSAGE,
    VALID,
    feed_bytewise,
    same_message,
    sip,
)

Message = Request | Response


def parse_request(data: bytes) -> Request:
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def reparse(msg: Message) -> Message:
    return parse_datagram(msg.to_bytes())


def content_lengths(data: bytes) -> list[bytes]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")[1:]
        if line.split(b":", 1)[0].strip().lower() in (b"content-length", b"l")
    ]


TWO_VIAS_ON_ONE_LINE = sip(
    "INVITE sip:bob@example.com SIP/2.0",
    "Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bK-2, SIP/2.0/UDP p1.example.com;branch=z9hG4bK-1",
    "Via: SIP/2.0/UDP uac.example.com;branch=z9hG4bK-0",
    "Max-Forwards: 70",
    "To: <sip:bob@example.com>",
    "From: <sip:alice@example.com>;tag=a",
    "Call-ID: edits@uac.example.com",
    "CSeq: 1 INVITE",
    "Route: <sip:r1.example.com;lr>, <sip:r2.example.com;lr>",
)


# -- round trip -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID))
def test_parse_of_serialized_message_gives_the_same_message(name: str) -> None:
    msg = parse_datagram(VALID[name])
    data = msg.to_bytes()
    again = parse_datagram(data)
    same_message(msg, again)
    # Content-Length is always written once and always right.
    assert content_lengths(data) == [str(len(msg.body)).encode()]
    # Serializing is stable.
    assert again.to_bytes() == data


def test_serialized_head_uses_crlf_and_one_line_per_header() -> None:
    msg = parse_datagram(VALID["folded_headers"])
    data = msg.to_bytes()
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b""
    lines = head.split(b"\r\n")
    assert lines[0] == b"REGISTER sip:registrar.example.org SIP/2.0"
    assert b"Subject: a subject that continues over three lines" in lines
    assert all(b"\n" not in line and line[:1] not in (b" ", b"\t") for line in lines)


def test_content_length_is_added_when_missing() -> None:
    req = Request("MESSAGE", "sip:a@example.com", [("call-id", "Call-ID", "x")], b"hello")
    assert req.to_bytes().endswith(b"Call-ID: x\r\nContent-Length: 5\r\n\r\nhello")
    empty = Response(200, "OK", [])
    assert empty.to_bytes() == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_wrong_content_length_is_corrected_and_duplicates_dropped() -> None:
    req = Request(
        "MESSAGE",
        "sip:a@example.com",
        [
            ("content-length", "l", "99"),
            ("call-id", "Call-ID", "x"),
            ("content-length", "Content-Length", "99"),
        ],
        b"abc",
    )
    data = req.to_bytes()
    assert data == b"MESSAGE sip:a@example.com SIP/2.0\r\nl: 3\r\nCall-ID: x\r\n\r\nabc"
    assert content_lengths(data) == [b"3"]


def test_body_change_is_reflected_in_content_length() -> None:
    msg = parse_datagram(VALID["invite_with_sdp_body"])
    msg.body = b"v=0\r\n"
    again = reparse(msg)
    assert again.body == b"v=0\r\n"
    assert again.get("content-length") == "5"


# -- lookups --------------------------------------------------------------------------


def test_get_get_all_values_and_has() -> None:
    msg = parse_request(TWO_VIAS_ON_ONE_LINE)
    assert msg.get("via") == (
        "SIP/2.0/UDP p2.example.com;branch=z9hG4bK-2, SIP/2.0/UDP p1.example.com;branch=z9hG4bK-1"
    )
    assert len(msg.get_all("via")) == 2
    assert len(msg.values("via")) == 3
    assert msg.has("route") and not msg.has("record-route")
    assert msg.get("record-route") is None
    assert msg.get_all("record-route") == [] and msg.values("record-route") == []
    assert [h[0] for h in msg][:2] == ["via", "via"]


def test_missing_optional_headers_read_as_none() -> None:
    resp = Response(200, "OK", [])
    assert resp.call_id == ""
    assert resp.from_tag is None and resp.to_tag is None
    with pytest.raises(ParseError, match="CSeq"):
        _ = resp.cseq
    with pytest.raises(ParseError, match="Via"):
        _ = resp.top_via


def test_request_uri_is_parsed_lazily_and_errors_are_parse_errors() -> None:
    req = Request("OPTIONS", "tel:+123", [])
    with pytest.raises(ParseError):
        _ = req.uri
    req.set_uri("sip:x@example.com:5070")
    assert req.uri.port == 5070
    uri = parse_uri("sips:y@example.com")
    req.set_uri(uri)
    assert req.uri is uri
    assert req.start_line() == "OPTIONS sips:y@example.com SIP/2.0"


def test_copy_has_an_independent_header_list() -> None:
    msg = parse_request(TWO_VIAS_ON_ONE_LINE)
    dup = msg.copy()
    dup.prepend("via", "Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-px")
    dup.set("max-forwards", "Max-Forwards", "69")
    assert msg.top_via.host == "p2.example.com"
    assert msg.get("max-forwards") == "70"
    assert dup.top_via.host == "proxy.example.com"
    resp = make_response(msg, 200).copy()
    assert isinstance(resp, Response) and resp.status == 200


# -- edits ----------------------------------------------------------------------------


def test_prepend_via_goes_above_the_first_via_and_resets_top_via() -> None:
    msg = parse_request(TWO_VIAS_ON_ONE_LINE)
    assert msg.top_via.branch == "z9hG4bK-2"  # cached now
    msg.prepend("via", "Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-px")
    assert msg.top_via.branch == "z9hG4bK-px"
    again = reparse(msg)
    assert [v.branch for v in again.vias()] == ["z9hG4bK-px", "z9hG4bK-2", "z9hG4bK-1", "z9hG4bK-0"]


def test_prepend_of_a_new_header_goes_to_the_top() -> None:
    msg = parse_request(TWO_VIAS_ON_ONE_LINE)
    msg.prepend("record-route", "Record-Route", "<sip:proxy.example.com;lr>")
    assert msg.headers[0] == ("record-route", "Record-Route", "<sip:proxy.example.com;lr>")
    assert reparse(msg).values("record-route") == ["<sip:proxy.example.com;lr>"]


def test_set_replaces_the_first_and_keeps_its_name_or_appends() -> None:
    msg = parse_datagram(VALID["header_names_in_any_case"])
    msg.set("max-forwards", "Max-Forwards", "9")
    assert ("max-forwards", "MAX-FORWARDS", "9") in msg.headers
    msg.set("x-new", "X-New", "1")
    assert msg.headers[-1] == ("x-new", "X-New", "1")
    again = reparse(msg)
    assert again.get("max-forwards") == "9"
    assert again.get("x-new") == "1"


def test_set_of_via_replaces_the_cached_top_via() -> None:
    msg = parse_request(TWO_VIAS_ON_ONE_LINE)
    assert msg.top_via.host == "p2.example.com"
    msg.set("via", "Via", "SIP/2.0/TCP other.example.com;branch=z9hG4bK-new")
    assert msg.top_via.host == "other.example.com"


def test_pop_first_value_of_a_multi_value_via_line_keeps_the_rest_in_place() -> None:
    msg = parse_request(TWO_VIAS_ON_ONE_LINE)
    assert msg.top_via.branch == "z9hG4bK-2"
    popped = msg.pop_first_value("via")
    assert popped == "SIP/2.0/UDP p2.example.com;branch=z9hG4bK-2"
    assert msg.top_via.branch == "z9hG4bK-1"
    assert msg.get_all("via") == [
        "SIP/2.0/UDP p1.example.com;branch=z9hG4bK-1",
        "SIP/2.0/UDP uac.example.com;branch=z9hG4bK-0",
    ]
    assert msg.headers[0][0] == "via" and msg.headers[1][0] == "via"
    again = reparse(msg)
    assert [v.branch for v in again.vias()] == ["z9hG4bK-1", "z9hG4bK-0"]
    # Popping the single value of a line removes the line.
    assert msg.pop_first_value("via") == "SIP/2.0/UDP p1.example.com;branch=z9hG4bK-1"
    assert msg.get_all("via") == ["SIP/2.0/UDP uac.example.com;branch=z9hG4bK-0"]
    assert msg.top_via.branch == "z9hG4bK-0"


def test_pop_first_value_of_route_and_of_an_absent_header() -> None:
    msg = parse_request(TWO_VIAS_ON_ONE_LINE)
    assert msg.pop_first_value("route") == "<sip:r1.example.com;lr>"
    assert msg.values("route") == ["<sip:r2.example.com;lr>"]
    assert msg.pop_first_value("route") == "<sip:r2.example.com;lr>"
    assert not msg.has("route")
    assert msg.pop_first_value("route") is None
    assert not reparse(msg).has("route")


def test_remove_drops_every_line_of_a_header() -> None:
    msg = parse_request(TWO_VIAS_ON_ONE_LINE)
    _ = msg.top_via
    msg.remove("via")
    assert not msg.has("via")
    with pytest.raises(ParseError, match="Via"):
        _ = msg.top_via
    # A request without Via no longer parses: the edit is visible on the wire.
    with pytest.raises(ParseError, match="missing Via"):
        reparse(msg)


# -- make_response --------------------------------------------------------------------


def test_rfc3261_8_2_6_2_response_copies_via_from_to_call_id_cseq_and_adds_to_tag() -> None:
    req = parse_request(TWO_VIAS_ON_ONE_LINE)
    resp = make_response(req, 404, to_tag="prx1")
    assert resp.status == 404 and resp.reason == "Not Found"
    assert [h[0] for h in resp.headers] == ["via", "via", "to", "from", "call-id", "cseq"]
    assert resp.get_all("via") == req.get_all("via")
    assert resp.get("from") == req.get("from")
    assert resp.call_id == req.call_id
    assert resp.cseq == (1, "INVITE")
    assert resp.to_tag == "prx1"
    assert resp.get("to") == "<sip:bob@example.com>;tag=prx1"
    assert not resp.has("route") and not resp.has("max-forwards")
    again = reparse(resp)
    assert again.start_line() == "SIP/2.0 404 Not Found"
    assert again.headers == [*resp.headers, ("content-length", "Content-Length", "0")]


def test_response_keeps_an_existing_to_tag() -> None:
    req = parse_datagram(VALID["whitespace_around_colons"])
    assert isinstance(req, Request)
    resp = make_response(req, 200, to_tag="ignored")
    assert resp.to_tag == "t1"


@pytest.mark.parametrize(
    "to", ['"never closed <sip:bob@example.com>;tag=1', "<sip:bob@example.com>;tag=1;;x"]
)
def test_response_to_a_request_with_a_broken_to_can_still_be_built(to: str) -> None:
    # The proxy answers a malformed request with a 400 built from what was read;
    # a To that does not parse must not make building that 400 fail.
    data = INVALID["missing_call_id"].data
    data = data.replace(b"To: <sip:bob@example.com>", f"To: {to}".encode())
    with pytest.raises(ParseError, match=r"Call-ID|unterminated") as info:
        parse_datagram(data)
    err = info.value
    assert err.headers is not None and err.start_line is not None
    req = Request("INVITE", "sip:invalid", list(err.headers))
    resp = make_response(req, 400, err.reason, to_tag="x")
    assert resp.get("to") == to  # copied as it is
    assert parse_datagram(resp.to_bytes()).get("to") == to


def test_100_trying_without_to_tag_and_default_reasons() -> None:
    req = parse_request(TWO_VIAS_ON_ONE_LINE)
    trying = make_response(req, 100)
    assert trying.reason == "Trying" and trying.to_tag is None
    for status, phrase in REASON_PHRASES.items():
        assert make_response(req, status).reason == phrase
    assert make_response(req, 599).reason == "Unknown"
    assert make_response(req, 486, "Busy Here").reason == "Busy Here"


@pytest.mark.parametrize(
    "text", [TWO_VIAS_ON_ONE_LINE, TWO_VIAS_ON_ONE_LINE.replace(b"Via:", b"v:")]
)
def test_100_trying_written_straight_out_is_make_response_serialized(text: bytes) -> None:
    req = parse_request(text)
    assert trying_bytes(req) == make_response(req, 100).to_bytes()


def test_response_extra_headers_come_after_the_copied_ones() -> None:
    req = parse_request(TWO_VIAS_ON_ONE_LINE)
    resp = make_response(req, 503, extra=[("retry-after", "Retry-After", "30")])
    assert resp.headers[-1] == ("retry-after", "Retry-After", "30")
    assert reparse(resp).get("retry-after") == "30"


# -- StreamParser ---------------------------------------------------------------------


def test_rfc5626_3_5_1_double_crlf_ping_is_counted() -> None:
    parser = StreamParser()
    assert parser.feed(b"\r\n\r\n") == []
    assert parser.pings == 1
    assert parser.buffered == 0


def test_ping_split_across_segments_is_counted_once() -> None:
    parser = StreamParser()
    assert parser.feed(b"\r\n") == []
    assert parser.pings == 0
    assert parser.feed(b"\r\n") == []
    assert parser.pings == 1
    parser = StreamParser()
    assert feed_bytewise(parser, b"\r\n\r\n") == []
    assert parser.pings == 1
    assert parser.buffered == 0


def test_each_ping_in_one_segment_is_counted() -> None:
    parser = StreamParser()
    parser.feed(b"\r\n\r\n\r\n\r\n")
    assert parser.pings == 2
    parser = StreamParser()
    feed_bytewise(parser, b"\r\n\r\n\r\n\r\n")
    assert parser.pings == 2


def test_pings_between_messages_are_counted_and_skipped() -> None:
    parser = StreamParser()
    stream = b"\r\n\r\n" + NEXT_MESSAGE + b"\r\n\r\n" + NEXT_MESSAGE + b"\r\n"
    items = parser.feed(stream)
    assert len(items) == 2
    assert parser.pings == 2
    parser = StreamParser()
    assert len(feed_bytewise(parser, stream)) == 2
    assert parser.pings == 2


def test_lone_crlf_between_messages_is_not_a_ping() -> None:
    parser = StreamParser()
    items = parser.feed(NEXT_MESSAGE + b"\r\n" + NEXT_MESSAGE)
    assert len(items) == 2
    assert parser.pings == 0


def test_rfc3261_18_3_message_without_content_length_on_a_stream_is_a_framing_error() -> None:
    data = sip(*BASE_REQUEST, clen=False)
    with pytest.raises(ParseError, match="Content-Length"):
        StreamParser().feed(data)
    parser = StreamParser()
    with pytest.raises(ParseError, match="Content-Length"):
        feed_bytewise(parser, data)


def test_invalid_but_framed_message_comes_back_in_place_and_the_stream_reads_on() -> None:
    bad = INVALID["missing_call_id"].data
    parser = StreamParser()
    items = parser.feed(NEXT_MESSAGE + bad + NEXT_MESSAGE)
    assert [type(i) for i in items] == [Request, ParseError, Request]
    err = items[1]
    assert isinstance(err, ParseError)
    assert err.reason == "missing Call-ID header"
    assert err.headers is not None and err.headers[0][0] == "via"
    assert err.start_line == "INVITE sip:bob@example.com SIP/2.0"


def test_buffered_counts_bytes_of_the_incomplete_message() -> None:
    parser = StreamParser()
    data = VALID["invite_with_sdp_body"]
    head_len = data.index(b"\r\n\r\n") + 4
    assert parser.feed(data[:10]) == []
    assert parser.buffered == 10
    head_end = head_len + 5
    assert parser.feed(data[10:head_end]) == []
    assert parser.buffered == head_end
    items = parser.feed(data[head_end:] + b"OPT")
    assert len(items) == 1
    assert parser.buffered == 3


def test_several_messages_in_one_segment_come_out_in_order() -> None:
    first = VALID["content_length_zero"]
    second = VALID["invite_with_sdp_body"]
    items = StreamParser().feed(first + second + first)
    assert [m.start_line() for m in items if isinstance(m, Request | Response)] == [
        "CANCEL sip:bob@example.com SIP/2.0",
        "INVITE sip:bob@biloxi.example.com SIP/2.0",
        "CANCEL sip:bob@example.com SIP/2.0",
    ]


def test_stream_refuses_a_message_larger_than_max_size_with_513() -> None:
    parser = StreamParser(max_size=200)
    with pytest.raises(ParseError) as info:
        parser.feed(sip(*BASE_REQUEST, "Content-Length: 5000", clen=False))
    assert info.value.status == 513
    # A head that never ends is refused as soon as it passes max_size.
    parser = StreamParser(max_size=200)
    with pytest.raises(ParseError) as info:
        parser.feed(b"INVITE sip:x@y SIP/2.0\r\nX: " + b"a" * 300)
    assert info.value.status == 513


def test_stream_gives_the_same_513_whole_or_trickled() -> None:
    data = sip(*BASE_REQUEST, "X-Pad: " + "p" * 300, "Bad Header: x")
    with pytest.raises(ParseError) as whole:
        StreamParser(max_size=200).feed(data)
    with pytest.raises(ParseError) as trickled:
        feed_bytewise(StreamParser(max_size=200), data)
    assert whole.value.status == trickled.value.status == 513


def message_source_module() -> ModuleType:
    """message.py loaded from its source, apart from the imported (maybe compiled) module.

    A compiled module binds its calls to its own functions when it is built, so
    patching its globals would count nothing; the source's own copy can be patched.
    """
    source = Path(str(message.__file__)).with_name("message.py")
    spec = importlib.util.spec_from_file_location("sipdispatch.sip._message_source", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_message_trickled_one_byte_per_segment_costs_linear_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A peer sending one byte per TCP segment must not make each byte rescan the
    # buffer or re-parse the head: count the bytes searched and the head parses.
    source = message_source_module()
    scanned: list[int] = []
    heads: list[int] = []
    real_find, real_parse = source.find_head_end, source.parse_head_spans

    def find(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
        scanned.append(len(data) - start)
        return real_find(data, start)  # type: ignore[no-any-return]

    def parse(
        text: str, head_end: int, crlf_end: bool | None
    ) -> tuple[str, list[Header], list[int] | None]:
        heads.append(1)
        return real_parse(text, head_end, crlf_end)  # type: ignore[no-any-return]

    monkeypatch.setattr(source, "find_head_end", find)
    monkeypatch.setattr(source, "parse_head_spans", parse)

    body = b"a=x\r\n" * 2000
    data = sip(*BASE_REQUEST, body=body)
    items = feed_bytewise(source.StreamParser(), data)
    assert len(items) == 1 and isinstance(items[0], source.Request) and items[0].body == body
    assert len(heads) == 1
    assert sum(scanned) < 5 * len(data)

    scanned.clear()
    head = b"OPTIONS sip:x@y SIP/2.0\r\nX-Pad: " + b"p" * 20000
    parser = source.StreamParser()
    assert feed_bytewise(parser, head) == []
    assert parser.buffered == len(head)
    assert sum(scanned) < 5 * len(head)


# -- small helpers --------------------------------------------------------------------


def test_find_head_end_crlf_and_bare_lf() -> None:
    assert find_head_end(b"A\r\nB: c\r\n\r\nbody") == (7, 11)
    assert find_head_end(b"A\nB: c\n\nbody") == (6, 8)
    assert find_head_end(b"A\r\nB: c\r\n") == (-1, -1)
    assert find_head_end(b"A\r\n\r\nB\n\n") == (1, 5)


def test_rfc5626_keepalive_datagrams() -> None:
    assert is_keepalive(b"\r\n\r\n")
    assert is_keepalive(b"\r\n")
    assert is_keepalive(b"\x00\x00\x00\x00")
    assert not is_keepalive(VALID["content_length_zero"])


@pytest.mark.parametrize("cut", range(12))
def test_rfc5626_two_pings_split_anywhere_count_two(cut: int) -> None:
    # The start of the next message follows the pings and stays buffered.
    data = b"\r\n\r\n" * 2 + b"OPTIONS"
    parser = StreamParser()
    parser.feed(data[:cut])
    parser.feed(data[cut:])
    assert parser.pings == 2


def test_more_header_lines_than_the_limit_is_a_400_with_the_first_ones_read() -> None:
    from sipdispatch.sip.message import MAX_HEADER_LINES

    head, _, _ = sip(*BASE_REQUEST).partition(b"\r\n\r\n")
    data = head + b"\r\nX-Pad: 1" * MAX_HEADER_LINES + b"\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(ParseError, match="too many header lines") as info:
        parse_datagram(data)
    assert info.value.status == 400
    assert info.value.headers is not None and info.value.headers[0][0] == "via"
    within = head + b"\r\nX-Pad: 1" * (MAX_HEADER_LINES - 10) + b"\r\nContent-Length: 0\r\n\r\n"
    assert len(parse_datagram(within).headers) < MAX_HEADER_LINES


def test_numbers_read_digit_by_digit_and_written_by_lookup_equal_int_and_str() -> None:
    for n in [*range(1100), 5000, 65535, 10**9]:
        assert number(str(n)) == n
        assert number_text(n) == str(n)
    for text in ("00", "07", "007", "099", "0001"):
        assert number(text) == int(text)
    assert number_text(-1) == "-1"


def test_digits_value_is_the_number_of_ascii_digits_and_minus_one_for_anything_else() -> None:
    samples = [str(n) for n in range(1100)] + ["00", "007", "0255", "65535", "123456789"]
    samples += ["", " ", "1 ", " 1", "+1", "-1", "1a", "a", "\u00b2", "1\u00b2", "\u0663", "1.0"]
    for text in samples:
        expected = int(text) if text.isascii() and text.isdigit() else -1
        assert digits_value(text) == expected, text


def test_max_forwards_and_content_length_written_with_non_ascii_digits_are_refused() -> None:
    head = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\n"
    head += "From: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n"
    for bad in ("\u00b2", "7\u00b2", "+7", "-1", "0x1"):
        with pytest.raises(ParseError, match="malformed Max-Forwards"):
            parse_datagram((head + f"Max-Forwards: {bad}\r\n\r\n").encode("latin-1"))
        with pytest.raises(ParseError, match="malformed Content-Length"):
            parse_datagram((head + f"Content-Length: {bad}\r\n\r\n").encode("latin-1"))
    msg = parse_datagram((head + "Max-Forwards: 255\r\nContent-Length: 0\r\n\r\n").encode())
    assert msg.get("max-forwards") == "255"


def test_a_max_forwards_of_1000_is_refused_and_a_content_length_of_1500_is_read() -> None:
    head = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\n"
    head += "From: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
    with pytest.raises(ParseError, match="Max-Forwards"):
        parse_datagram((head + "Max-Forwards: 1000\r\nContent-Length: 0\r\n\r\n").encode())
    body = b"x" * 1500
    msg = parse_datagram((head + "Content-Length: 1500\r\n\r\n").encode() + body)
    assert msg.body == body and msg.to_bytes().endswith(b"Content-Length: 1500\r\n\r\n" + body)


def test_a_head_ended_by_a_bare_lf_empty_line_ends_there_though_the_body_has_crlf_crlf() -> None:
    # §7.5 / §18.3: the head ends at the first empty line; a body that itself contains
    # CRLF CRLF (SDP does not, a multipart body may) must not be read as more headers.
    body = b"X-Not-A-Header: 1\r\n\r\nrest"
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\n"
        b"From: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: %d\n\n" % len(body)
    ) + body
    msg = parse_datagram(data)
    assert msg.body == body
    assert msg.get("x-not-a-header") is None
    assert [h[0] for h in msg.headers][-1] == "content-length"


@pytest.mark.parametrize("name", message.KNOWN_NAMES)
def test_known_header_names_read_in_place_give_the_key_and_name_the_memo_gives(
    name: str,
) -> None:
    """A name the scan recognises in place is read as the memo's way reads it: the base
    request's own line of that header, spelled so, or an extra line."""
    key = message.header_key(name)
    lines = list(BASE_REQUEST)
    same = [i for i in range(1, len(lines)) if message.header_key(lines[i].split(":")[0]) == key]
    if same:
        value = lines[same[0]].split(": ", 1)[1]
        lines[same[0]] = f"{name}: {value}"
        data = sip(*lines)
    elif key == "content-length":
        value = "0"
        data = sip(*lines, f"{name}: 0", clen=False)
    else:
        value = "x"
        data = sip(*lines, f"{name}: x")
    msg = parse_datagram(data)
    assert (key, name, value) in msg.headers
    assert msg.to_bytes() == msg.serialize()


@pytest.mark.parametrize(
    "line, key, name",
    [
        ("call-id2: x", "call-id2", "call-id2"),  # same first letter, longer
        ("Contacts: x", "contacts", "Contacts"),
        ("Contac: x", "contac", "Contac"),  # a known name's prefix
        ("CONTACT: x", "contact", "CONTACT"),  # another spelling: the memo's way
        ("Contact : x", "contact", "Contact"),  # a blank before the colon
        ("Xontact: x", "xontact", "Xontact"),
        ("\xe9Contact: x", None, None),  # not a token: 400
    ],
)
def test_names_like_known_ones_are_read_by_the_memo_as_written(
    line: str, key: str | None, name: str | None
) -> None:
    data = sip(*BASE_REQUEST, line)
    if key is None:
        with pytest.raises(ParseError):
            parse_datagram(data)
        return
    msg = parse_datagram(data)
    assert (key, name, "x") in msg.headers
    assert msg.to_bytes() == msg.serialize()
