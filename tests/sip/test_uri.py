"""SIP and SIPS URIs (RFC 3261 §19.1)."""

from __future__ import annotations

import pytest

from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.uri import (
    DEFAULT_SIP_PORT,
    DEFAULT_SIPS_PORT,
    MAX_PARAMS,
    SipUri,
    parse_hostport,
    parse_params,
    parse_uri,
)


def test_rfc3261_19_1_1_every_component_is_parsed() -> None:
    uri = parse_uri(
        "sip:alice:secret@atlanta.example.com:5070"
        ";transport=tcp;lr;maddr=10.0.0.1?subject=project%20x&priority=urgent"
    )
    assert uri.scheme == "sip"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "atlanta.example.com"
    assert uri.port == 5070
    assert uri.params == {"transport": "tcp", "lr": None, "maddr": "10.0.0.1"}
    assert list(uri.params) == ["transport", "lr", "maddr"]  # order kept
    assert uri.headers == "subject=project%20x&priority=urgent"


def test_host_only_uri_has_no_user_port_params_or_headers() -> None:
    uri = parse_uri("sip:gateway.example.com")
    assert (uri.user, uri.password, uri.port, uri.params, uri.headers) == (
        None,
        None,
        None,
        {},
        None,
    )
    assert uri.hostport == "gateway.example.com"


def test_ipv4_host_with_port() -> None:
    uri = parse_uri("sip:1000@192.0.2.4:5080")
    assert (uri.user, uri.host, uri.port) == ("1000", "192.0.2.4", 5080)
    assert not uri.is_ipv6
    assert uri.hostport == "192.0.2.4:5080"


def test_rfc3261_19_1_1_scheme_is_case_insensitive() -> None:
    assert parse_uri("SIP:bob@example.com").scheme == "sip"
    assert parse_uri("SiPs:bob@example.com").scheme == "sips"


def test_rfc3261_19_1_4_param_names_are_case_insensitive_values_kept() -> None:
    uri = parse_uri("sip:bob@example.com;Transport=TCP;LR;User=Phone")
    assert uri.params == {"transport": "TCP", "lr": None, "user": "Phone"}
    assert uri.transport == "tcp"


def test_rfc3261_19_1_2_user_part_escapes_are_kept_as_written() -> None:
    uri = parse_uri("sip:%61lice%40home@example.com")
    assert uri.user == "%61lice%40home"
    assert str(uri) == "sip:%61lice%40home@example.com"


def test_user_part_may_hold_semicolons_telephone_subscriber() -> None:
    uri = parse_uri("sip:+1-212-555-1212;isub=1411;postd=pp22@gw.example.com;user=phone")
    assert uri.user == "+1-212-555-1212;isub=1411;postd=pp22"
    assert uri.host == "gw.example.com"
    assert uri.params == {"user": "phone"}


def test_rfc3261_19_1_1_ipv6_reference_without_port() -> None:
    uri = parse_uri("sip:bob@[2001:db8::1]")
    assert uri.host == "2001:db8::1"
    assert uri.port is None
    assert uri.is_ipv6
    assert uri.hostport == "[2001:db8::1]"
    assert str(uri) == "sip:bob@[2001:db8::1]"


def test_ipv6_reference_with_port_and_params() -> None:
    uri = parse_uri("sip:[2001:db8::1]:5070;transport=udp")
    assert (uri.host, uri.port) == ("2001:db8::1", 5070)
    assert uri.hostport == "[2001:db8::1]:5070"
    assert uri.params == {"transport": "udp"}


def test_ipv4_mapped_ipv6_reference() -> None:
    assert parse_uri("sip:[::ffff:192.0.2.1]").host == "::ffff:192.0.2.1"


def test_rfc3261_19_1_2_default_ports_sip_5060_sips_5061() -> None:
    assert parse_uri("sip:example.com").effective_port == DEFAULT_SIP_PORT == 5060
    assert parse_uri("sips:example.com").effective_port == DEFAULT_SIPS_PORT == 5061
    assert parse_uri("sips:example.com:6000").effective_port == 6000


def test_transport_defaults_to_udp_for_sip_and_tls_for_sips() -> None:
    assert parse_uri("sip:example.com").transport == "udp"
    assert parse_uri("sips:example.com").transport == "tls"
    assert parse_uri("sip:example.com;transport=SCTP").transport == "sctp"
    assert parse_uri("sips:example.com;transport=tcp").transport == "tcp"


@pytest.mark.parametrize(
    "text",
    [
        "sip:example.com",
        "sips:bob@example.com:5061",
        "sip:alice:pw@example.com;transport=tcp;lr",
        "sip:bob@[2001:db8::1]:5070;maddr=239.255.255.1;ttl=15",
        "sip:%61lice@example.com?Subject=hi&Priority=urgent",
        "sip:+1-212-555-1212;isub=1411@gw.example.com;user=phone",
        "sip:host.example.com;flag;k=v?h=1",
    ],
)
def test_str_of_a_canonical_uri_is_the_same_text(text: str) -> None:
    assert str(parse_uri(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "SIP:Bob@Example.COM;LR;Transport=TCP",
        "sips:[2001:DB8::A]",
        "sip:u:@h",
        "sip:h;a=;b",
    ],
)
def test_str_then_parse_gives_the_same_uri(text: str) -> None:
    uri = parse_uri(text)
    assert parse_uri(str(uri)) == uri


def test_canonical_form_lowercases_scheme_and_param_names_only() -> None:
    assert str(parse_uri("SIP:Bob@Example.COM;LR;Transport=TCP")) == (
        "sip:Bob@Example.COM;lr;transport=TCP"
    )


def test_copy_is_independent() -> None:
    uri = parse_uri("sip:bob@example.com;lr")
    other = uri.copy()
    other.params["transport"] = "tcp"
    other.port = 5080
    assert uri.params == {"lr": None}
    assert uri.port is None
    assert other == SipUri(
        "sip", "example.com", "bob", None, 5080, {"lr": None, "transport": "tcp"}
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tel:+12125551212", "not a SIP URI"),
        ("http://example.com/", "not a SIP URI"),
        ("example.com", "not a SIP URI"),
        ("sip:", "empty"),
        ("sip:@example.com", "empty user"),
        ("sip:bob@", "empty"),
        ("sip:example.com:0", "port out of range"),
        ("sip:example.com:65536", "port out of range"),
        ("sip:example.com:123456", "bad port"),
        ("sip:example.com:", "bad port"),
        ("sip:example.com:http", "bad port"),
        ("sip:example.com:5\xb2", "bad port"),
        ("sip:example.com:+5060", "bad port"),
        ("sip:[2001:db8::1", "unterminated IPv6"),
        ("sip:[]", "bad IPv6"),
        ("sip:[example.com]", "bad IPv6"),
        ("sip:[2001:db8::1]x", "junk after IPv6"),
        ("sip:[2001:db8::1]:", "bad port"),
        ("sip:exa mple.com", "bad URI host"),
        ("sip:exa_mple.com", "bad URI host"),
        ("sip:example.com;", "empty parameter"),
        ("sip:example.com;a;;b", "empty parameter"),
        ("sip:example.com;=v", "without a name"),
    ],
)
def test_malformed_uri_raises_parse_error_saying_what(text: str, words: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_uri(text)
    assert words.lower() in info.value.reason.lower()
    assert info.value.status == 400


def test_error_reason_quoting_a_huge_host_is_bounded() -> None:
    with pytest.raises(ParseError) as info:
        parse_uri("sip:" + "x_" * 10000)
    assert len(info.value.reason) < 120


def test_parse_hostport_forms() -> None:
    assert parse_hostport("example.com") == ("example.com", None)
    assert parse_hostport("example.com:5062") == ("example.com", 5062)
    assert parse_hostport("[::1]") == ("::1", None)
    assert parse_hostport("[::1]:5062") == ("::1", 5062)
    with pytest.raises(ParseError, match="sent-by"):
        parse_hostport("", "sent-by")


def test_parse_params_flags_values_and_spacing() -> None:
    assert parse_params("lr;transport=tcp; maddr = 10.0.0.1") == {
        "lr": None,
        "transport": "tcp",
        "maddr": "10.0.0.1",
    }
    assert parse_params("a=") == {"a": ""}
    # A value may itself contain '=' (only the first one separates).
    assert parse_params("x=a=b") == {"x": "a=b"}


def test_a_uri_of_more_parameters_than_any_peer_sends_is_refused() -> None:
    most = "sip:a@h" + ";p" * MAX_PARAMS
    assert len(parse_uri(most).params) == 1
    with pytest.raises(ParseError, match=f"more than {MAX_PARAMS} parameters in URI"):
        parse_uri(most + ";q")
    with pytest.raises(ParseError, match=f"more than {MAX_PARAMS} parameters in Via"):
        parse_params(";".join(["a=b"] * (MAX_PARAMS + 1)), "Via")
