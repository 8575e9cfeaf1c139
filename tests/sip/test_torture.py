"""Torture messages in the spirit of RFC 4475, fed whole, byte by byte and with trailing bytes.

The vectors live in :mod:`tests.sip.vectors`; every valid one goes through
``parse_all_ways``, which checks that a datagram, a byte-by-byte stream and a
message followed by extra bytes all give the same message.
"""

from __future__ import annotations

import re

import pytest

from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.headers import split_name_addr, tag_of
from sipdispatch.sip.message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Request,
    Response,
    StreamParser,
    parse_datagram,
)
from tests.sip.vectors import (
    BASE_REQUEST,
    INVALID,
    NEXT_MESSAGE,
    VALID,
    Invalid,
    parse_all_ways,
    same_message,
    sip,
)


def request(name: str) -> Request:
    msg = parse_all_ways(VALID[name])
    assert isinstance(msg, Request)
    return msg


def response(name: str) -> Response:
    msg = parse_all_ways(VALID[name])
    assert isinstance(msg, Response)
    return msg


# -- every valid vector, three ways ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_vector_parses_the_same_whole_bytewise_and_with_trailing_bytes(name: str) -> None:
    msg = parse_all_ways(VALID[name])
    # Lazy accessors the proxy uses must work on every valid vector.
    assert msg.call_id
    # The CSeq number as the vector writes it, read with a pattern independent of ours.
    written = re.search(rb"(?im)^cseq[ \t]*:\s*([0-9]+)", VALID[name])
    assert written is not None and msg.cseq[0] == int(written.group(1))
    assert msg.top_via.host
    if isinstance(msg, Request):
        assert msg.cseq[1] == msg.method


# -- valid messages: what each one must mean ------------------------------------------


def test_rfc3261_18_3_body_is_exactly_content_length_octets() -> None:
    msg = request("invite_with_sdp_body")
    assert msg.method == "INVITE"
    assert msg.uri_text == "sip:bob@biloxi.example.com"
    assert msg.body.startswith(b"v=0\r\n") and msg.body.endswith(b"PCMU/8000\r\n")
    assert msg.get("content-length") == str(len(msg.body))
    assert msg.get("content-type") == "application/sdp"


def test_body_may_contain_blank_lines_the_head_ends_at_the_first() -> None:
    msg = request("body_with_blank_lines")
    assert msg.body == b"first line\r\n\r\nthird line after a blank one\r\n\r\n"


def test_rfc3261_7_3_3_compact_forms_are_the_long_headers() -> None:
    msg = request("compact_forms")
    assert msg.get("via") == "SIP/2.0/TCP client.example.net:5060;branch=z9hG4bK-compact-1"
    assert msg.call_id == "compact-forms-7@client.example.net"
    assert msg.from_tag == "c0mp"
    assert msg.to_tag is None
    assert msg.get("contact") == "<sip:dave@client.example.net;transport=tcp>"
    assert msg.get("content-type") == "text/plain"
    assert msg.get("subject") == "compact subject"
    assert msg.get("supported") == "timer"
    assert msg.get("content-length") == "11"
    assert msg.body == b"hello there"
    # The name as written is kept for forwarding.
    assert [h[1] for h in msg.headers][:4] == ["v", "i", "f", "t"]


def test_compact_via_and_long_via_are_the_same_header() -> None:
    msg = response("multiple_vias_on_one_line_and_several_lines")
    assert [v.branch for v in msg.vias()] == [
        "z9hG4bK-p2",
        "z9hG4bK-p1",
        "z9hG4bK-uac",
        "z9hG4bK-v6",
    ]


def test_rfc3261_7_3_1_folded_header_is_unfolded() -> None:
    msg = request("folded_headers")
    assert msg.get("via") == "SIP/2.0/UDP 192.0.2.10:5060 ;branch=z9hG4bK-fold-1"
    assert msg.top_via.branch == "z9hG4bK-fold-1"
    assert msg.top_via.port == 5060
    assert msg.get("to") == "<sip:erin@example.org>"
    assert msg.from_tag == "fold7"
    assert msg.get("subject") == "a subject that continues over three lines"
    assert msg.cseq == (1, "REGISTER")
    assert msg.get("max-forwards") == "70"


def test_rfc3261_7_3_1_header_names_are_case_insensitive() -> None:
    msg = request("header_names_in_any_case")
    assert [h[0] for h in msg.headers] == [
        "via",
        "to",
        "from",
        "call-id",
        "cseq",
        "event",
        "max-forwards",
        "content-length",
    ]
    assert msg.headers[0][1] == "vIA"  # written back as received
    assert msg.cseq == (2, "SUBSCRIBE")
    # Parameter names are case-insensitive too; their values are not touched.
    assert msg.from_tag == "CaseTag"


def test_rfc3261_7_3_1_via_values_on_one_line_and_on_several_lines() -> None:
    msg = response("multiple_vias_on_one_line_and_several_lines")
    assert msg.status == 200 and msg.reason == "OK"
    assert len(msg.get_all("via")) == 3
    assert len(msg.values("via")) == 4
    vias = msg.vias()
    assert [(v.transport, v.host, v.port) for v in vias] == [
        ("UDP", "proxy2.example.com", 5060),
        ("UDP", "proxy1.example.com", None),
        ("TCP", "uac.example.com", None),
        ("UDP", "2001:db8::9", 5062),
    ]
    assert vias[2].params["received"] == "198.51.100.7"
    assert vias[2].params["rport"] == "5070"
    assert msg.top_via.branch == "z9hG4bK-p2"
    assert (msg.from_tag, msg.to_tag) == ("fromtag", "totag")


def test_rfc3261_25_1_quoted_display_name_may_hold_commas_brackets_and_semicolons() -> None:
    msg = request("display_names_with_commas_and_brackets")
    to = msg.get("to")
    assert to is not None
    assert split_name_addr(to) == ("sip:hank@example.com", "")
    assert tag_of(to) is None
    assert msg.from_tag == "q1"
    frm = msg.get("from")
    assert frm is not None
    assert split_name_addr(frm) == ("sip:iris@example.com;transport=udp", "tag=q1;x")


def test_rfc3261_7_3_1_commas_inside_angle_brackets_do_not_split_values() -> None:
    msg = request("display_names_with_commas_and_brackets")
    assert msg.values("contact") == [
        '"A, B" <sip:a@example.com;lr>',
        "<sip:b,c@example.com?S=x,y>;q=0.5",
        "sip:c@example.com;q=0.1",
    ]
    assert msg.values("route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr;note=a,b>",
    ]
    assert msg.body == b"Hi!\r\n"


def test_rfc3261_19_1_2_escaped_user_part_is_kept_as_written() -> None:
    msg = request("escaped_characters_in_user_part")
    assert msg.uri.user == "%61lice%20smith;phone-context=home"
    assert msg.uri.host == "example.com"
    frm = msg.get("from")
    assert frm is not None
    assert split_name_addr(frm)[0] == "sip:user%40domain@example.com"


def test_rfc3261_19_1_1_ipv6_references_in_request_uri_and_via() -> None:
    msg = request("ipv6_hosts_in_via_and_uris")
    assert msg.uri.host == "2001:db8::10"
    assert msg.uri.port == 5070
    assert msg.uri.transport == "tcp"
    via = msg.top_via
    assert (via.transport, via.host, via.port) == ("TCP", "2001:db8::20", None)
    assert via.params["received"] == "2001:db8::21"
    assert via.sent_by == "[2001:db8::20]"


def test_rfc3261_8_2_1_unknown_method_and_unknown_headers_are_carried() -> None:
    msg = request("unknown_method_and_headers")
    assert msg.method == "FROBNICATE"
    assert msg.cseq == (77, "FROBNICATE")
    assert msg.get("x-weird-header") == ('value with : colons ; semis , commas and "an open quote')
    assert msg.get("newfangled") == "no-space-after-colon"
    assert msg.get("p-asserted-identity") == "<sip:asserted@example.com>"


def test_rfc3261_7_3_1_whitespace_around_the_colon_is_allowed() -> None:
    msg = request("whitespace_around_colons")
    assert msg.headers[0] == ("via", "Via", "SIP/2.0/UDP host.example.com;branch=z9hG4bK-ws")
    assert msg.get("to") == "<sip:jill@example.com>;tag=t1"
    assert msg.get("from") == "<sip:kim@example.com>;tag=f1"
    assert msg.call_id == "ws-1@example.com"
    assert msg.cseq == (3, "BYE")
    assert msg.get("content-length") == "0"


def test_content_length_zero_means_no_body() -> None:
    msg = request("content_length_zero")
    assert msg.body == b""
    assert msg.method == "CANCEL"


def test_rfc3261_7_5_crlfs_before_the_start_line_are_ignored() -> None:
    msg = request("preceded_by_crlfs")
    assert msg.start_line() == "OPTIONS sip:ping@example.com SIP/2.0"


def test_reason_phrase_keeps_any_latin1_byte() -> None:
    msg = response("response_reason_with_latin1_bytes")
    assert msg.status == 486
    assert msg.reason == "Occupé, rappelez plus tard"
    assert msg.to_bytes().startswith("SIP/2.0 486 Occupé, rappelez".encode("latin-1"))


def test_request_uri_with_params_and_headers() -> None:
    msg = request("request_uri_with_params_and_headers")
    uri = msg.uri
    assert (uri.user, uri.host, uri.port) == ("bob", "example.com", 5080)
    assert uri.params == {"transport": "TCP", "lr": None}
    assert uri.transport == "tcp"
    assert uri.headers == "Subject=hi&Priority=urgent"


def test_rfc3261_7_1_sip_version_is_case_insensitive() -> None:
    msg = request("lower_case_sip_version_in_request_line")
    # Received in lower case, always sent in upper case.
    assert msg.start_line() == "OPTIONS sip:lc@example.com SIP/2.0"


def test_bare_lf_line_endings_are_tolerated() -> None:
    msg = request("bare_lf_line_endings")
    assert msg.call_id == "bare-lf@client.example.com"
    assert msg.body == b"a\nb\n"


def test_rfc3261_8_1_1_5_cseq_2_pow_31_minus_1_and_max_forwards_255_are_valid() -> None:
    msg = request("cseq_and_max_forwards_at_their_limits")
    assert msg.cseq == (2**31 - 1, "OPTIONS")
    assert msg.get("max-forwards") == "255"


def test_sips_request_uri() -> None:
    msg = request("sips_request_uri")
    assert msg.uri.scheme == "sips"
    assert msg.uri.effective_port == 5061
    assert msg.top_via.transport == "TLS"


def test_empty_header_values_are_kept_empty() -> None:
    msg = request("empty_header_values")
    assert msg.get("subject") == ""
    assert msg.get("organization") == ""


def test_binary_body_is_kept_byte_for_byte() -> None:
    msg = request("binary_body")
    assert msg.body == bytes(range(256))


def test_rfc3261_18_3_datagram_without_content_length_takes_the_rest_as_body() -> None:
    data = sip(*BASE_REQUEST, clen=False) + b"body to the end"
    msg = parse_datagram(data)
    assert msg.body == b"body to the end"
    assert not msg.has("content-length")


# -- invalid messages -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_datagram_gives_parse_error_with_status_and_reason(name: str) -> None:
    vec = INVALID[name]
    with pytest.raises(ParseError) as info:
        parse_datagram(vec.data)
    err = info.value
    assert err.status == vec.status
    assert vec.words.lower() in err.reason.lower()
    # Fit to be sent as a reason phrase: one short printable line.
    assert err.reason and len(err.reason) <= 120
    assert "\r" not in err.reason and "\n" not in err.reason
    assert str(err) == err.reason


@pytest.mark.parametrize("name", sorted(n for n, v in INVALID.items() if v.headers_read))
def test_error_after_the_head_carries_start_line_and_headers_for_a_400(name: str) -> None:
    vec = INVALID[name]
    with pytest.raises(ParseError) as info:
        parse_datagram(vec.data)
    err = info.value
    assert err.start_line == vec.data.split(b"\r\n", 1)[0].decode("latin-1")
    assert err.headers is not None
    # The headers read before the error are there; a Via lets the proxy answer.
    keys = [h[0] for h in err.headers]
    if name != "missing_via":
        assert keys[0] == "via"


@pytest.mark.parametrize("name", sorted(n for n, v in INVALID.items() if v.framed))
def test_framed_invalid_message_on_a_stream_is_an_error_item_and_the_next_one_parses(
    name: str,
) -> None:
    vec: Invalid = INVALID[name]
    parser = StreamParser()
    items = parser.feed(vec.data + NEXT_MESSAGE)
    assert len(items) == 2
    err, nxt = items
    assert isinstance(err, ParseError)
    assert err.status == vec.status
    assert vec.words.lower() in err.reason.lower()
    assert err.headers is not None and err.start_line is not None
    same_message(nxt, parse_datagram(NEXT_MESSAGE))
    assert parser.buffered == 0


@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n, v in INVALID.items()
        if not v.framed
        and n not in ("content_length_larger_than_body", "no_blank_line_after_headers")
    ),
)
def test_unframeable_message_on_a_stream_raises(name: str) -> None:
    with pytest.raises(ParseError):
        StreamParser().feed(INVALID[name].data)


def test_missing_header_reason_names_the_header() -> None:
    for header in ("Via", "To", "From", "Call-ID", "CSeq"):
        with pytest.raises(ParseError) as info:
            parse_datagram(INVALID[f"missing_{header.lower().replace('-', '_')}"].data)
        assert info.value.reason == f"missing {header} header"


def test_rfc3261_18_3_content_length_larger_than_datagram_is_400() -> None:
    with pytest.raises(ParseError) as info:
        parse_datagram(INVALID["content_length_larger_than_body"].data)
    assert info.value.status == 400
    assert "Content-Length" in info.value.reason


def test_content_length_larger_than_received_on_a_stream_waits_for_more() -> None:
    data = INVALID["content_length_larger_than_body"].data
    parser = StreamParser()
    assert parser.feed(data) == []
    assert parser.buffered == len(data)
    assert len(parser.feed(b"x" * 30)) == 1
    assert parser.buffered == 0


def test_oversize_datagram_is_513() -> None:
    data = sip(*BASE_REQUEST, body=b"x" * DEFAULT_MAX_MESSAGE_SIZE)
    with pytest.raises(ParseError) as info:
        parse_datagram(data)
    assert info.value.status == 513
    assert "too large" in info.value.reason
    # The head was small enough to read: a Via is there to answer with.
    assert info.value.headers is not None
    assert info.value.headers[0][0] == "via"


def test_max_size_is_configurable() -> None:
    data = VALID["invite_with_sdp_body"]
    assert parse_datagram(data, max_size=len(data))
    with pytest.raises(ParseError) as info:
        parse_datagram(data, max_size=len(data) - 1)
    assert info.value.status == 513
