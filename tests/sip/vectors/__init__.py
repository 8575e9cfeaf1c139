"""SIP message vectors in the spirit of RFC 4475, written for this project.

Every message is built from explicit lines joined by CRLF, so the exact bytes
are visible here (no editor or checkout can change line endings behind our back).

``VALID`` maps a name to a message every parser path must accept; ``INVALID``
lists messages a parser must refuse, with the status and the words the reason
must contain. ``parse_all_ways`` feeds one valid message whole, byte by byte and
with trailing bytes, and checks every path gives the same message.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.message import Request, Response, StreamParser, parse_datagram

Message = Request | Response


def sip(*lines: str, body: bytes = b"", clen: bool = True) -> bytes:
    """Join header lines with CRLF, add Content-Length (unless told not to) and body."""
    head = list(lines)
    if clen:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def same_message(a: Message | object, b: Message | object) -> None:
    """Assert two parsed messages are equal in start line, headers and body."""
    assert isinstance(a, Request | Response), a
    assert isinstance(b, Request | Response), b
    assert type(a) is type(b)
    assert a.start_line() == b.start_line()
    assert a.headers == b.headers
    assert a.body == b.body


# A message that follows the vector on a stream; its first bytes must stay buffered.
NEXT_MESSAGE = sip(
    "OPTIONS sip:next@example.com SIP/2.0",
    "Via: SIP/2.0/TCP next.example.com;branch=z9hG4bK-next",
    "To: <sip:next@example.com>",
    "From: <sip:probe@example.com>;tag=nx",
    "Call-ID: next-1@next.example.com",
    "CSeq: 1 OPTIONS",
)

TRAILING_JUNK = b"bytes past Content-Length\r\n\r\nINVITE junk"


def feed_bytewise(parser: StreamParser, data: bytes) -> list[Message | ParseError]:
    """Feed one byte per call; return everything the parser handed back."""
    out: list[Message | ParseError] = []
    for i in range(len(data)):
        out.extend(parser.feed(data[i : i + 1]))
    return out


def parse_all_ways(data: bytes) -> Message:
    """Parse ``data`` whole, byte by byte, and with trailing bytes; all must agree.

    1. ``parse_datagram(data)``.
    2. ``StreamParser.feed`` one byte per call: exactly one message, nothing left.
    3. A datagram with bytes past Content-Length: they are ignored (§18.3).
    4. A stream where the first bytes of the next message follow: they stay
       buffered, and the rest of that message completes it.
    """
    whole = parse_datagram(data)

    parser = StreamParser()
    items = feed_bytewise(parser, data)
    assert len(items) == 1, items
    same_message(whole, items[0])
    assert parser.buffered == 0

    same_message(whole, parse_datagram(data + TRAILING_JUNK))

    nxt = parse_datagram(NEXT_MESSAGE)
    for cut in (1, 9, len(NEXT_MESSAGE) - 1):
        parser = StreamParser()
        items = parser.feed(data + NEXT_MESSAGE[:cut])
        assert len(items) == 1, items
        same_message(whole, items[0])
        assert parser.buffered == cut
        items = parser.feed(NEXT_MESSAGE[cut:])
        assert len(items) == 1, items
        same_message(nxt, items[0])
        assert parser.buffered == 0
    return whole


SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

VALID: dict[str, bytes] = {
    "invite_with_sdp_body": sip(
        "INVITE sip:bob@biloxi.example.com SIP/2.0",
        "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds",
        "Max-Forwards: 70",
        "To: Bob <sip:bob@biloxi.example.com>",
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
        "CSeq: 314159 INVITE",
        "Contact: <sip:alice@pc33.atlanta.example.com>",
        "Content-Type: application/sdp",
        body=SDP,
    ),
    "body_with_blank_lines": sip(
        "MESSAGE sip:pager@example.com SIP/2.0",
        "Via: SIP/2.0/TCP client.example.com;branch=z9hG4bK-blank",
        "To: <sip:pager@example.com>",
        "From: <sip:sender@example.com>;tag=bl",
        "Call-ID: blank-lines@client.example.com",
        "CSeq: 4 MESSAGE",
        "Content-Type: text/plain",
        body=b"first line\r\n\r\nthird line after a blank one\r\n\r\n",
    ),
    "compact_forms": sip(
        "OPTIONS sip:carol@chicago.example.com SIP/2.0",
        "v: SIP/2.0/TCP client.example.net:5060;branch=z9hG4bK-compact-1",
        "i: compact-forms-7@client.example.net",
        "f: <sip:dave@example.net>;tag=c0mp",
        't: "Carol" <sip:carol@chicago.example.com>',
        "m: <sip:dave@client.example.net;transport=tcp>",
        "CSeq: 9 OPTIONS",
        "c: text/plain",
        "s: compact subject",
        "k: timer",
        "l: 11",
        clen=False,
    )
    + b"hello there",
    "folded_headers": sip(
        "REGISTER sip:registrar.example.org SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060",
        " ;branch=z9hG4bK-fold-1",
        "Max-Forwards:  70",
        "To:",
        "\t<sip:erin@example.org>",
        "From: <sip:erin@example.org>",
        "   ;tag=fold7",
        "Subject: a subject",
        "\t that continues",
        " \t over three lines",
        "Call-ID: fold-1@192.0.2.10",
        "CSeq:",
        " 1",
        "  REGISTER",
        "Contact: <sip:erin@192.0.2.10>",
    ),
    "header_names_in_any_case": sip(
        "SUBSCRIBE sip:frank@example.com SIP/2.0",
        "vIA: SIP/2.0/UDP host.example.com;branch=z9hG4bK-case",
        "TO: <sip:frank@example.com>",
        "from: <sip:gina@example.com>;TAG=CaseTag",
        "CALL-id: case-1@host.example.com",
        "cSeQ: 2 SUBSCRIBE",
        "eVeNt: presence",
        "MAX-FORWARDS: 10",
        clen=False,
    ).replace(b"\r\n\r\n", b"\r\ncontent-LENGTH: 0\r\n\r\n"),
    "multiple_vias_on_one_line_and_several_lines": sip(
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP proxy2.example.com:5060;branch=z9hG4bK-p2, "
        "SIP/2.0/UDP proxy1.example.com;branch=z9hG4bK-p1",
        "Via: SIP/2.0/TCP uac.example.com;branch=z9hG4bK-uac;received=198.51.100.7;rport=5070",
        "v: SIP/2.0/UDP  [2001:db8::9]:5062 ;branch=z9hG4bK-v6",
        "To: <sip:bob@example.com>;tag=totag",
        "From: <sip:alice@example.com>;tag=fromtag",
        "Call-ID: vias-1@uac.example.com",
        "CSeq: 5 INVITE",
    ),
    "display_names_with_commas_and_brackets": sip(
        "MESSAGE sip:hank@example.com SIP/2.0",
        "Via: SIP/2.0/UDP iris.example.com;branch=z9hG4bK-dn",
        'To: "Hank, \\"The Tank\\" <Jr>; Esq." <sip:hank@example.com>',
        'From: "Iris; <not a uri>, really" <sip:iris@example.com;transport=udp>;tag=q1;x',
        'Contact: "A, B" <sip:a@example.com;lr>, <sip:b,c@example.com?S=x,y>;q=0.5, '
        "sip:c@example.com;q=0.1",
        "Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr;note=a,b>",
        "Call-ID: display-names@iris.example.com",
        "CSeq: 8 MESSAGE",
        "Content-Type: text/plain",
        body=b"Hi!\r\n",
    ),
    "escaped_characters_in_user_part": sip(
        "INVITE sip:%61lice%20smith;phone-context=home@example.com SIP/2.0",
        "Via: SIP/2.0/UDP esc.example.com;branch=z9hG4bK-esc",
        "To: <sip:%22quoted%22@example.com>",
        "From: <sip:user%40domain@example.com>;tag=esc",
        "Call-ID: escaped@esc.example.com",
        "CSeq: 1 INVITE",
    ),
    "ipv6_hosts_in_via_and_uris": sip(
        "INVITE sip:[2001:db8::10]:5070;transport=tcp SIP/2.0",
        "Via: SIP/2.0/TCP [2001:db8::20];branch=z9hG4bK-v6a;received=2001:db8::21",
        "To: <sip:user@[2001:db8::10]>",
        "From: <sip:caller@[2001:DB8::20]:5061>;tag=v6",
        "Contact: <sip:caller@[::ffff:192.0.2.1]:5061;transport=tcp>",
        "Call-ID: v6@[2001:db8::20]",
        "CSeq: 10 INVITE",
    ),
    "unknown_method_and_headers": sip(
        "FROBNICATE sip:svc@example.com SIP/2.0",
        "Via: SIP/2.0/UDP odd.example.com;branch=z9hG4bK-odd",
        'X-Weird-Header: value with : colons ; semis , commas and "an open quote',
        "NewFangled:no-space-after-colon",
        "P-Asserted-Identity: <sip:asserted@example.com>",
        "To: <sip:svc@example.com>",
        "From: <sip:odd@example.com>;tag=odd",
        "Call-ID: unknown-method@odd.example.com",
        "CSeq: 77 FROBNICATE",
    ),
    "whitespace_around_colons": sip(
        "BYE sip:jill@example.com SIP/2.0",
        "Via   :   SIP/2.0/UDP host.example.com;branch=z9hG4bK-ws",
        "To\t:\t<sip:jill@example.com>;tag=t1",
        "From :<sip:kim@example.com>;tag=f1",
        "Call-ID:ws-1@example.com",
        "CSeq  :  3  BYE",
        clen=False,
    ).replace(b"\r\n\r\n", b"\r\nContent-Length :   0\r\n\r\n"),
    "content_length_zero": sip(
        "CANCEL sip:bob@example.com SIP/2.0",
        "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-zero",
        "Max-Forwards: 70",
        "To: <sip:bob@example.com>",
        "From: <sip:alice@example.com>;tag=zero",
        "Call-ID: zero@client.example.com",
        "CSeq: 1 CANCEL",
    ),
    "preceded_by_crlfs": b"\r\n\r\n\r\n"
    + sip(
        "OPTIONS sip:ping@example.com SIP/2.0",
        "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-crlf",
        "To: <sip:ping@example.com>",
        "From: <sip:client@example.com>;tag=crlf",
        "Call-ID: crlf-first@client.example.com",
        "CSeq: 2 OPTIONS",
    ),
    "response_reason_with_latin1_bytes": sip(
        "SIP/2.0 486 Occupé, rappelez plus tard",
        "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-busy",
        "To: <sip:bob@example.com>;tag=busy",
        "From: <sip:alice@example.com>;tag=a",
        "Call-ID: busy@client.example.com",
        "CSeq: 1 INVITE",
    ),
    "request_uri_with_params_and_headers": sip(
        "INVITE sip:bob@example.com:5080;transport=TCP;lr?Subject=hi&Priority=urgent SIP/2.0",
        "Via: SIP/2.0/TCP client.example.com;branch=z9hG4bK-ruri",
        "To: <sip:bob@example.com>",
        "From: <sip:alice@example.com>;tag=ruri",
        "Call-ID: ruri@client.example.com",
        "CSeq: 1 INVITE",
    ),
    "lower_case_sip_version_in_request_line": sip(
        "OPTIONS sip:lc@example.com sip/2.0",
        "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-lc",
        "To: <sip:lc@example.com>",
        "From: <sip:client@example.com>;tag=lc",
        "Call-ID: lower-version@client.example.com",
        "CSeq: 1 OPTIONS",
    ),
    "bare_lf_line_endings": (
        b"OPTIONS sip:lf@example.com SIP/2.0\n"
        b"Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-lf\n"
        b"To: <sip:lf@example.com>\n"
        b"From: <sip:client@example.com>;tag=lf\n"
        b"Call-ID: bare-lf@client.example.com\n"
        b"CSeq: 1 OPTIONS\n"
        b"Content-Length: 4\n"
        b"\n"
        b"a\nb\n"
    ),
    "cseq_and_max_forwards_at_their_limits": sip(
        "OPTIONS sip:limits@example.com SIP/2.0",
        "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-lim",
        "Max-Forwards: 255",
        "To: <sip:limits@example.com>",
        "From: <sip:client@example.com>;tag=lim",
        "Call-ID: limits@client.example.com",
        f"CSeq: {2**31 - 1} OPTIONS",
    ),
    "sips_request_uri": sip(
        "INVITE sips:secure@example.com SIP/2.0",
        "Via: SIP/2.0/TLS client.example.com:5061;branch=z9hG4bK-tls",
        "To: <sips:secure@example.com>",
        "From: <sips:client@example.com>;tag=tls",
        "Call-ID: sips@client.example.com",
        "CSeq: 1 INVITE",
    ),
    "empty_header_values": sip(
        "OPTIONS sip:empty@example.com SIP/2.0",
        "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-empty",
        "Subject:",
        "Organization:   ",
        "To: <sip:empty@example.com>",
        "From: <sip:client@example.com>;tag=e",
        "Call-ID: empty-values@client.example.com",
        "CSeq: 1 OPTIONS",
    ),
    "provisional_response_without_to_tag": sip(
        "SIP/2.0 100 Trying",
        "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-100",
        "To: <sip:bob@example.com>",
        "From: <sip:alice@example.com>;tag=a",
        "Call-ID: trying@client.example.com",
        "CSeq: 1 INVITE",
    ),
    "binary_body": sip(
        "MESSAGE sip:bin@example.com SIP/2.0",
        "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-bin",
        "To: <sip:bin@example.com>",
        "From: <sip:client@example.com>;tag=bin",
        "Call-ID: binary@client.example.com",
        "CSeq: 1 MESSAGE",
        "Content-Type: application/octet-stream",
        body=bytes(range(256)),
    ),
}


# -- invalid messages -----------------------------------------------------------------

BASE_REQUEST = (
    "INVITE sip:bob@example.com SIP/2.0",
    "Via: SIP/2.0/UDP client.example.com:5060;branch=z9hG4bK-base",
    "Max-Forwards: 70",
    "To: <sip:bob@example.com>",
    "From: <sip:alice@example.com>;tag=base",
    "Call-ID: base-1@client.example.com",
    "CSeq: 1 INVITE",
)


def base_without(name: str) -> bytes:
    """BASE_REQUEST without the header line called ``name``."""
    lines = [line for line in BASE_REQUEST if not line.startswith(name + ":")]
    assert len(lines) == len(BASE_REQUEST) - 1
    return sip(*lines)


def base_with(name: str, line: str) -> bytes:
    """BASE_REQUEST with the line starting ``name`` replaced by ``line``."""
    lines = [(line if x.startswith(name) else x) for x in BASE_REQUEST]
    assert lines != list(BASE_REQUEST)
    return sip(*lines)


def _raw(data: str) -> bytes:
    return data.encode("latin-1")


@dataclass(frozen=True)
class Invalid:
    """A message that must be refused."""

    data: bytes
    status: int
    words: str
    """Text the reason must contain (case-insensitive)."""
    framed: bool
    """True when a stream can still frame it (the error is about content, not length)."""
    headers_read: bool
    """True when the error comes after the head was read (err.headers is set)."""


INVALID: dict[str, Invalid] = {
    "missing_via": Invalid(base_without("Via"), 400, "Via", True, True),
    "missing_to": Invalid(base_without("To"), 400, "To", True, True),
    "missing_from": Invalid(base_without("From"), 400, "From", True, True),
    "missing_call_id": Invalid(base_without("Call-ID"), 400, "Call-ID", True, True),
    "missing_cseq": Invalid(base_without("CSeq"), 400, "CSeq", True, True),
    "cseq_method_mismatch": Invalid(
        base_with("CSeq", "CSeq: 1 BYE"), 400, "CSeq method", True, True
    ),
    "cseq_number_not_numeric": Invalid(
        base_with("CSeq", "CSeq: one INVITE"), 400, "CSeq", True, True
    ),
    "cseq_without_method": Invalid(base_with("CSeq", "CSeq: 1"), 400, "CSeq", True, True),
    "cseq_number_2_pow_31": Invalid(
        base_with("CSeq", f"CSeq: {2**31} INVITE"), 400, "CSeq", True, True
    ),
    # RFC 4475 §3.1.2.19 (multi01): single-value headers given twice.
    "two_call_ids": Invalid(
        sip(*BASE_REQUEST, "Call-ID: other@client.example.com"),
        400,
        "more than one Call-ID",
        True,
        True,
    ),
    "two_tos_and_froms": Invalid(
        sip(*BASE_REQUEST, "t: <sip:carol@example.com>", "From: <sip:eve@example.com>;tag=e"),
        400,
        "more than one t",
        True,
        True,
    ),
    "two_cseqs": Invalid(
        sip(*BASE_REQUEST, "CSeq: 2 INVITE"), 400, "more than one CSeq", True, True
    ),
    "two_max_forwards": Invalid(
        sip(*BASE_REQUEST, "Max-Forwards: 69"), 400, "more than one Max-Forwards", True, True
    ),
    # RFC 4475 §3.1.2.16 (quotbal): a quote left open in To.
    "unbalanced_quote_in_to": Invalid(
        base_with("To", 'To: "Mr. J. User <sip:bob@example.com>'), 400, "unterminated", True, True
    ),
    "cseq_number_negative": Invalid(base_with("CSeq", "CSeq: -1 INVITE"), 400, "CSeq", True, True),
    "cseq_superscript_digit": Invalid(
        base_with("CSeq", "CSeq: 1\xb2 INVITE"), 400, "CSeq", True, True
    ),
    "content_length_larger_than_body": Invalid(
        sip(*BASE_REQUEST, "Content-Length: 50", clen=False) + b"only twenty bytes!!!",
        400,
        "Content-Length",
        False,
        True,
    ),
    "content_length_negative": Invalid(
        sip(*BASE_REQUEST, "Content-Length: -1", clen=False), 400, "Content-Length", False, True
    ),
    "content_length_garbage": Invalid(
        sip(*BASE_REQUEST, "Content-Length: ten", clen=False), 400, "Content-Length", False, True
    ),
    "content_length_two_numbers": Invalid(
        sip(*BASE_REQUEST, "Content-Length: 0, 0", clen=False), 400, "Content-Length", False, True
    ),
    "content_length_superscript_digit": Invalid(
        sip(*BASE_REQUEST, "Content-Length: \xb9", clen=False) + b"x",
        400,
        "Content-Length",
        False,
        True,
    ),
    "conflicting_content_lengths": Invalid(
        sip(*BASE_REQUEST, "Content-Length: 3", "l: 5", clen=False) + b"12345",
        400,
        "conflicting Content-Length",
        False,
        True,
    ),
    "request_with_unsupported_sip_version": Invalid(
        base_with("INVITE", "INVITE sip:bob@example.com SIP/3.0"), 505, "version", True, True
    ),
    "response_with_unsupported_sip_version": Invalid(
        sip(
            "SIP/1.0 200 OK",
            "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bK-v1",
            "To: <sip:bob@example.com>;tag=b",
            "From: <sip:alice@example.com>;tag=a",
            "Call-ID: old-version@client.example.com",
            "CSeq: 1 INVITE",
        ),
        505,
        "version",
        True,
        True,
    ),
    "no_blank_line_after_headers": Invalid(
        ("\r\n".join(BASE_REQUEST) + "\r\n").encode(), 400, "empty line", False, False
    ),
    "header_line_without_colon": Invalid(
        base_with("Max-Forwards", "Max-Forwards 70"), 400, "colon", False, True
    ),
    "header_name_with_space": Invalid(
        base_with("Max-Forwards", "Max Forwards: 70"), 400, "header name", False, True
    ),
    "continuation_before_any_header": Invalid(
        _raw("INVITE sip:bob@example.com SIP/2.0\r\n folded: nothing\r\nVia: x\r\n\r\n"),
        400,
        "continuation",
        False,
        False,
    ),
    "garbage_bytes": Invalid(
        b"\x00\x01\x02\xff\xfe garbage \x7f\r\n\x80\x81: \x82\r\n\r\n", 400, "", False, False
    ),
    "max_forwards_not_numeric": Invalid(
        base_with("Max-Forwards", "Max-Forwards: seventy"), 400, "Max-Forwards", True, True
    ),
    "max_forwards_over_255": Invalid(
        base_with("Max-Forwards", "Max-Forwards: 256"), 400, "Max-Forwards", True, True
    ),
    "max_forwards_negative": Invalid(
        base_with("Max-Forwards", "Max-Forwards: -1"), 400, "Max-Forwards", True, True
    ),
    "max_forwards_superscript_digit": Invalid(
        base_with("Max-Forwards", "Max-Forwards: \xb3"), 400, "Max-Forwards", True, True
    ),
    "method_not_a_token": Invalid(
        base_with("INVITE", "INV<ITE sip:bob@example.com SIP/2.0"), 400, "method", True, True
    ),
    "request_line_with_two_spaces": Invalid(
        base_with("INVITE", "INVITE  sip:bob@example.com SIP/2.0"),
        400,
        "request line",
        True,
        True,
    ),
    "request_uri_without_scheme": Invalid(
        base_with("INVITE", "INVITE bob SIP/2.0"), 400, "Request-URI", True, True
    ),
    "status_code_four_digits": Invalid(
        sip("SIP/2.0 2000 OK", *BASE_REQUEST[1:]), 400, "status", True, True
    ),
    "status_code_below_100": Invalid(
        sip("SIP/2.0 099 Early", *BASE_REQUEST[1:]), 400, "status", True, True
    ),
    "status_code_superscript_digit": Invalid(
        sip("SIP/2.0 1\xb20 OK", *BASE_REQUEST[1:]), 400, "status", True, True
    ),
}
