"""Attrs, destination state bits and letters."""

from __future__ import annotations

import pytest

from sipdispatch.dispatcher import (
    DS_DISABLED_DST,
    DS_INACTIVE_DST,
    DS_PROBING_DST,
    DS_TRYING_DST,
    Attrs,
    AttrsError,
    flags_text,
    make_destination,
    parse_socket,
    parse_state_letters,
)


def test_kamailio_state_bit_values() -> None:
    assert (DS_INACTIVE_DST, DS_TRYING_DST, DS_DISABLED_DST, DS_PROBING_DST) == (1, 2, 4, 8)


@pytest.mark.parametrize(
    ("state", "letters"),
    [
        (DS_PROBING_DST, "AP"),
        (DS_INACTIVE_DST | DS_PROBING_DST, "IP"),
        (DS_DISABLED_DST, "DX"),
        (0, "AX"),
        (DS_TRYING_DST, "TX"),
        (DS_TRYING_DST | DS_PROBING_DST, "TP"),
        (DS_INACTIVE_DST | DS_DISABLED_DST, "IX"),  # Kamailio tests inactive first
    ],
)
def test_flags_text_gives_kamailio_letters(state: int, letters: str) -> None:
    assert flags_text(state) == letters


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("ap", DS_PROBING_DST),
        ("AP", DS_PROBING_DST),
        ("ip", DS_INACTIVE_DST | DS_PROBING_DST),
        ("dx", DS_DISABLED_DST),
        ("dp", DS_DISABLED_DST),
        ("tx", DS_TRYING_DST),
        ("a", 0),
        ("0", DS_INACTIVE_DST),
        ("2", DS_DISABLED_DST),
    ],
)
def test_set_state_letters_parse_as_kamailio_rpc(text: str, bits: int) -> None:
    assert parse_state_letters(text) == bits


def test_set_state_letters_reject_unknown() -> None:
    with pytest.raises(ValueError):
        parse_state_letters("zz")


def test_state_starts_from_flags_column() -> None:
    dest = make_destination(1, "sip:mg1:5060", flags=DS_INACTIVE_DST | DS_PROBING_DST)
    assert dest.state == 9
    assert dest.flags_text() == "IP"
    assert not dest.is_usable()


def test_trying_counts_as_usable_inactive_and_disabled_do_not() -> None:
    dest = make_destination(1, "sip:mg1:5060")
    for state, usable in [
        (0, True),
        (DS_TRYING_DST, True),
        (DS_PROBING_DST, True),
        (DS_INACTIVE_DST, False),
        (DS_DISABLED_DST, False),
    ]:
        dest.state = state
        assert dest.is_usable() is usable


def test_known_attrs_are_typed_and_unknown_kept_in_order() -> None:
    text = (
        "duid=abc;maxload=20;weight=75;rweight=50;cc=1;latency=30;"
        "ping_from=sip:ping@proxy.example.com;socket=udp:1.2.3.4:5060;"
        "prefix=011;strip=2;my=xyz;anything=else;flag"
    )
    attrs = Attrs.parse(text)
    assert attrs.duid == "abc"
    assert (attrs.maxload, attrs.weight, attrs.rweight, attrs.cc) == (20, 75, 50, 1)
    assert attrs.latency == 30
    assert attrs.ping_from == "sip:ping@proxy.example.com"
    assert attrs.socket == "udp:1.2.3.4:5060"
    assert attrs.socket_addr is not None
    assert (attrs.socket_addr.proto, attrs.socket_addr.host, attrs.socket_addr.port) == (
        "udp", "1.2.3.4", 5060
    )  # fmt: skip
    assert (attrs.prefix, attrs.strip) == ("011", 2)
    assert attrs.extra == (("my", "xyz"), ("anything", "else"), ("flag", None))
    assert attrs.body == text
    assert len(attrs.pairs) == 13


def test_attrs_body_drops_trailing_semicolon_and_names_are_case_insensitive() -> None:
    attrs = Attrs.parse("Weight=10;DUID=x;")
    assert attrs.body == "Weight=10;DUID=x"
    assert attrs.weight == 10
    assert attrs.duid == "x"
    assert attrs.get("weight") == "10"


def test_attrs_last_occurrence_wins_as_kamailio() -> None:
    assert Attrs.parse("weight=10;weight=20").weight == 20


def test_attrs_quoted_value_may_hold_semicolon() -> None:
    attrs = Attrs.parse('note="a;b";weight=5')
    assert attrs.extra == (("note", "a;b"),)
    assert attrs.weight == 5


def test_weight_zero_means_unset_and_is_accepted() -> None:
    assert Attrs.parse("weight=0").weight == 0


@pytest.mark.parametrize(
    "text",
    [
        "weight=101",
        "weight=-1",
        "weight=",
        "rweight=x",
        "cc=2",
        "strip=-1",
        "latency=fast",
        "duid=",
    ],
)
def test_bad_known_attr_values_raise_naming_the_key(text: str) -> None:
    with pytest.raises(AttrsError) as info:
        Attrs.parse(text)
    assert text.split("=")[0] in str(info.value)


def test_prefix_and_strip_rewrite_the_user() -> None:
    attrs = Attrs.parse("strip=2;prefix=011")
    assert attrs.rewrite_user("0044123") == "01144123"
    assert Attrs.parse("prefix=49").rewrite_user(None) == "49"
    assert Attrs.parse("").rewrite_user("alice") == "alice"


def test_socket_forms() -> None:
    assert parse_socket("tcp:[2001:db8::1]:5060").host == "2001:db8::1"
    assert parse_socket("1.2.3.4").port is None
    assert parse_socket("1.2.3.4:5062").proto is None


def test_latency_attr_seeds_stats_as_trained() -> None:
    dest = make_destination(1, "sip:mg1:5060", attrs="latency=40")
    assert dest.latency.average == 40
    assert dest.latency.estimate == 40
    assert dest.latency.count == 10000


def test_call_load_key_is_duid_else_uri() -> None:
    assert make_destination(1, "sip:mg1:5060", attrs="duid=gw1").key == "gw1"
    assert make_destination(1, "sip:mg1:5060").key == "sip:mg1:5060"
