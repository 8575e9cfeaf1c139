"""Header names and the small header grammars the proxy reads (RFC 3261 §7.3, §20, §25)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.headers import (
    COMPACT_FORMS,
    Via,
    header_key,
    parse_cseq,
    parse_via,
    split_commas,
    split_name_addr,
    tag_of,
)
from sipdispatch.sip.uri import parse_params

# -- header_key -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("v", "via"),
        ("V", "via"),
        ("i", "call-id"),
        ("f", "from"),
        ("t", "to"),
        ("l", "content-length"),
        ("m", "contact"),
        ("c", "content-type"),
        ("k", "supported"),
        ("Via", "via"),
        ("CALL-ID", "call-id"),
        ("X-Custom", "x-custom"),
    ],
)
def test_rfc3261_7_3_3_header_key_is_long_name_lower_cased(name: str, key: str) -> None:
    assert header_key(name) == key


def test_every_compact_form_is_one_letter_to_a_long_lower_case_name() -> None:
    for short, long in COMPACT_FORMS.items():
        assert len(short) == 1 and short.islower()
        assert long == long.lower() and len(long) > 1


# -- split_commas ---------------------------------------------------------------------


def test_split_commas_strips_white_space_around_values() -> None:
    assert split_commas(" a ,b,\tc ") == ["a", "b", "c"]
    assert split_commas("  single  ") == ["single"]


def test_rfc3261_7_3_1_comma_in_quoted_string_does_not_split() -> None:
    assert split_commas('"Doe, John" <sip:j@x>, <sip:k@y>') == [
        '"Doe, John" <sip:j@x>',
        "<sip:k@y>",
    ]


def test_escaped_quote_inside_quoted_string_does_not_end_it() -> None:
    value = r'"say \"hi, there\"" <sip:a@x>, <sip:b@y>'
    assert split_commas(value) == [r'"say \"hi, there\"" <sip:a@x>', "<sip:b@y>"]


def test_escaped_backslash_before_closing_quote() -> None:
    value = r'"back\\" <sip:a@x>, <sip:b@y>'
    assert split_commas(value) == [r'"back\\" <sip:a@x>', "<sip:b@y>"]


def test_comma_inside_angle_brackets_does_not_split() -> None:
    assert split_commas("<sip:a@x;p=1,2>;q=1, <sip:b@y?h=a,b>") == [
        "<sip:a@x;p=1,2>;q=1",
        "<sip:b@y?h=a,b>",
    ]


def test_angle_bracket_inside_quotes_does_not_open_a_uri() -> None:
    assert split_commas('"a < b", <sip:c@d>') == ['"a < b"', "<sip:c@d>"]


@pytest.mark.parametrize("value", ['"open, <sip:a@b>', r'"esc\", <sip:a@b>'])
def test_unterminated_quote_is_a_parse_error(value: str) -> None:
    with pytest.raises(ParseError, match="unterminated"):
        split_commas(value)


@pytest.mark.parametrize("value", ["a,,b", "a,", ",a", "a, ,b"])
def test_empty_element_in_a_list_is_a_parse_error(value: str) -> None:
    with pytest.raises(ParseError, match="empty value"):
        split_commas(value)


# -- split_name_addr ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<sip:a@example.com>", ("sip:a@example.com", "")),
        ("<sip:a@example.com>;tag=1", ("sip:a@example.com", "tag=1")),
        ("<sip:a@example.com;lr>  ;tag=1;x", ("sip:a@example.com;lr", "tag=1;x")),
        ("Alice <sip:a@example.com>;tag=1", ("sip:a@example.com", "tag=1")),
        ('"Alice" <sip:a@example.com>', ("sip:a@example.com", "")),
        ('"A, <b>; c" <sip:a@example.com>;tag=t', ("sip:a@example.com", "tag=t")),
        (r'"quote \" <x> inside" <sip:a@example.com>', ("sip:a@example.com", "")),
        ("< sip:a@example.com >", ("sip:a@example.com", "")),
        # §20.10: without <>, the ;params belong to the header, not the URI.
        ("sip:a@example.com;tag=1;x=y", ("sip:a@example.com", "tag=1;x=y")),
        ("  sip:a@example.com  ", ("sip:a@example.com", "")),
    ],
)
def test_rfc3261_20_10_split_name_addr(value: str, expected: tuple[str, str]) -> None:
    assert split_name_addr(value) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"never closed <sip:a@b>', "unterminated"),
        ("<sip:a@b", "missing '>'"),
        ("<sip:a@b> junk", "junk after"),
        ('"Name" sip:a@b', "display name without"),
    ],
)
def test_malformed_name_addr_is_a_parse_error(value: str, words: str) -> None:
    with pytest.raises(ParseError) as info:
        split_name_addr(value)
    assert words in info.value.reason


# -- tag_of ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("<sip:a@example.com>;tag=abc", "abc"),
        ("<sip:a@example.com>;x=1;tag=abc;y", "abc"),
        ("<sip:a@example.com>;TAG=AbC", "AbC"),
        ("<sip:a@example.com> ; tag = abc", "abc"),
        ("sip:a@example.com;tag=bare", "bare"),
        ('"Tag;tag=no" <sip:a@example.com>', None),
        ("<sip:a@example.com;tag=in-uri>", None),
        ("<sip:tagger@example.com>", None),
        ("<sip:a@example.com>;tag=", None),
        ("<sip:a@example.com>;tag", None),
        ("<sip:a@example.com>", None),
    ],
)
def test_tag_of_reads_only_the_header_tag_param(value: str, tag: str | None) -> None:
    assert tag_of(value) == tag


def _tag_by_full_parse(value: str) -> str | None:
    _, params = split_name_addr(value)
    return (parse_params(params, "From/To").get("tag") or None) if params else None


_TAG_VALUES = st.tuples(
    st.sampled_from(["", '"B" ', "B ", '"a\\"b" ', " ", '"']),
    st.sampled_from(["<sip:a@h>", "<sip:a@h;tag=u>", "sip:a@h", "<sip:a@h", "sip:a>", ""]),
    st.lists(
        st.sampled_from([";tag=", "x", ";", "=", " ", ";;", ";TAG=", ">", "<", '"', "y=1"]),
        max_size=6,
    ).map("".join),
).map("".join)


@settings(max_examples=3000, derandomize=True)
@given(_TAG_VALUES)
def test_tag_of_agrees_with_the_full_parse_of_the_value(value: str) -> None:
    """The short way for ``<URI>;tag=X`` finds what splitting the value and parsing all
    its parameters finds, and refuses what that refuses."""
    try:
        expected: str | type[ParseError] | None = _tag_by_full_parse(value)
    except ParseError:
        expected = ParseError
    if "tag" not in value.lower():
        expected = None  # no tag to read: the value is not parsed at all
    try:
        got: str | type[ParseError] | None = tag_of(value)
    except ParseError:
        got = ParseError
    assert got == expected


# -- parse_via ------------------------------------------------------------------------


def test_rfc3261_20_42_via_with_branch_and_port() -> None:
    via = parse_via("SIP/2.0/UDP pc33.atlanta.example.com:5066;branch=z9hG4bK776asdhds")
    assert via == Via("UDP", "pc33.atlanta.example.com", 5066, {"branch": "z9hG4bK776asdhds"})
    assert via.branch == "z9hG4bK776asdhds"
    assert via.sent_by == "pc33.atlanta.example.com:5066"


def test_rfc3581_received_and_rport_params() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bKx")
    assert via.params == {"rport": None, "branch": "z9hG4bKx"}
    via = parse_via("SIP/2.0/UDP 10.0.0.1;rport=5070;received=192.0.2.7;branch=z9hG4bKx")
    assert via.params["rport"] == "5070"
    assert via.params["received"] == "192.0.2.7"
    assert via.port is None


def test_via_ipv6_sent_by_with_and_without_port() -> None:
    via = parse_via("SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKv6")
    assert (via.transport, via.host, via.port) == ("TCP", "2001:db8::1", 5070)
    assert via.sent_by == "[2001:db8::1]:5070"
    via = parse_via("SIP/2.0/UDP [2001:db8::1];received=2001:db8::2")
    assert (via.host, via.port) == ("2001:db8::1", None)
    assert via.params["received"] == "2001:db8::2"


def test_rfc3261_25_1_linear_white_space_inside_via_is_allowed() -> None:
    via = parse_via("SIP / 2.0 / UDP   host.example.com : 5060 ; branch = z9hG4bKws ;rport")
    assert (via.transport, via.host, via.port) == ("UDP", "host.example.com", 5060)
    assert via.params == {"branch": "z9hG4bKws", "rport": None}


def test_via_protocol_and_transport_are_case_insensitive() -> None:
    via = parse_via("sip/2.0/tcp host.example.com;BRANCH=z9hG4bKAbC")
    assert via.transport == "TCP"
    assert via.branch == "z9hG4bKAbC"


def test_via_without_params_and_unknown_transport() -> None:
    via = parse_via("SIP/2.0/WSS edge.example.com")
    assert via == Via("WSS", "edge.example.com", None, {})
    assert via.branch is None


def test_str_of_via_is_canonical_and_parses_back() -> None:
    text = "SIP / 2.0 / udp [::1] : 5060 ;branch=z9hG4bK1;rport;received=::1"
    via = parse_via(text)
    assert str(via) == "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport;received=::1"
    assert parse_via(str(via)) == via


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 host.example.com",
        "SIP/3.0/UDP host.example.com",
        "SIP/2.0/UDP host.example.com:port",
        "SIP/2.0/UDP host.example.com:99999",
        "SIP/2.0/UDP host.example.com;;branch=z9hG4bK1",
        "SIP/2.0/UDP [2001:db8::1",
        "SIP/2.0/UDP ho$t.example.com",
        "UDP host.example.com",
    ],
)
def test_malformed_via_is_a_parse_error(value: str) -> None:
    with pytest.raises(ParseError):
        parse_via(value)


# -- parse_cseq -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1 INVITE", (1, "INVITE")),
        ("  42\tBYE  ", (42, "BYE")),
        ("0 ACK", (0, "ACK")),
        (f"{2**31 - 1} REGISTER", (2**31 - 1, "REGISTER")),
        ("7 FROBNICATE", (7, "FROBNICATE")),
    ],
)
def test_rfc3261_20_16_cseq_number_and_method(value: str, expected: tuple[int, str]) -> None:
    assert parse_cseq(value) == expected


def test_rfc3261_8_1_1_5_cseq_number_must_be_below_2_pow_31() -> None:
    with pytest.raises(ParseError, match="out of range"):
        parse_cseq(f"{2**31} INVITE")
    with pytest.raises(ParseError, match="out of range"):
        parse_cseq(f"{2**32} INVITE")


@pytest.mark.parametrize(
    "value",
    ["", "INVITE", "1", "one INVITE", "-1 INVITE", "+1 INVITE", "1 INVITE extra", "1\xb2 INVITE"],
)
def test_malformed_cseq_is_a_parse_error(value: str) -> None:
    with pytest.raises(ParseError, match="CSeq"):
        parse_cseq(value)
