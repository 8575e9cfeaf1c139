"""dispatcher.list parsing, building destinations and resolution."""

from __future__ import annotations

import pytest

from sipdispatch.dispatcher import (
    DS_NODNSARES_DST,
    DS_PROBING_DST,
    DispatcherLoadError,
    make_destination,
    parse_list,
    resolve_all,
)

SAMPLE = """\
# dispatcher destination sets
# setid uri flags priority attrs

1 sip:mg1.example.com:5060 0 10 weight=75;duid=mg1   Media Gateway 1
1 sip:mg2.example.com:5060 0x8 5 weight=25
	2  sip:127.0.0.1:5080   # a comment after the URI
2 sip:127.0.0.1:5082 8
3 sip:[2001:db8::1]:5070;transport=tcp 0 0 "" "PBX v6"
"""


def test_comments_and_blank_lines_are_skipped() -> None:
    dests = parse_list(SAMPLE, "dispatcher.list")
    assert [d.uri for d in dests] == [
        "sip:mg1.example.com:5060",
        "sip:mg2.example.com:5060",
        "sip:127.0.0.1:5080",
        "sip:127.0.0.1:5082",
        "sip:[2001:db8::1]:5070;transport=tcp",
    ]


def test_fields_default_to_kamailio_defaults() -> None:
    dest = parse_list("2 sip:127.0.0.1:5080\n", "x")[0]
    assert (dest.setid, dest.flags, dest.priority, dest.attrs.body, dest.description) == (
        2, 0, 0, "", ""
    )  # fmt: skip


def test_hex_and_decimal_flags_are_read() -> None:
    dests = parse_list(SAMPLE, "dispatcher.list")
    assert dests[1].flags == DS_PROBING_DST
    assert dests[3].flags == 8
    assert dests[1].flags_text() == "AP"


def test_priority_attrs_and_description_are_read() -> None:
    mg1 = parse_list(SAMPLE, "dispatcher.list")[0]
    assert mg1.priority == 10
    assert mg1.attrs.weight == 75
    assert mg1.attrs.duid == "mg1"
    assert mg1.description == "Media Gateway 1"


def test_quoted_empty_attrs_mean_none_and_quoted_description_is_unquoted() -> None:
    v6 = parse_list(SAMPLE, "dispatcher.list")[4]
    assert v6.attrs.body == ""
    assert v6.description == "PBX v6"
    assert v6.host == "2001:db8::1"
    assert v6.port == 5070
    assert v6.transport == "tcp"


def test_where_names_source_and_line() -> None:
    dests = parse_list(SAMPLE, "dispatcher.list")
    assert dests[0].where == "dispatcher.list:4"
    assert dests[2].where == "dispatcher.list:6"


def test_uri_without_scheme_gets_sip_prepended_as_kamailio() -> None:
    dest = parse_list("1 mg1.example.com:5070\n", "x")[0]
    assert dest.uri == "sip:mg1.example.com:5070"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1 sip:mg1.example.com:99999", "bad URI"),
        ("1 http://example.com", "bad URI"),
        ("x1 sip:mg1.example.com", "bad setid"),
        ("-1 sip:mg1.example.com", "bad setid"),
        # str.isdigit() says yes to a superscript or Arabic-Indic digit; int() or Kamailio not
        ("\u00b9 sip:mg1.example.com", "bad setid"),
        ("\u0663 sip:mg1.example.com", "bad setid"),
        ("1 sip:mg1.example.com \u00b9", "bad flags"),
        ("1 sip:mg1.example.com 0 \u00b2", "bad priority"),
        ("1 sip:mg1.example.com 0 0 weight=\u00b9", "weight="),
        ("1 sip:mg1.example.com 0xZZ", "bad flags"),
        ("1 sip:mg1.example.com abc", "bad flags"),
        ("1 sip:mg1.example.com 0 high", "bad priority"),
        ("1 sip:mg1.example.com 0 0 weight=150", "weight=150"),
        ("1 sip:mg1.example.com 0 0 weight=abc", "weight=abc"),
        ("1 sip:mg1.example.com 0 0 rweight=101", "rweight=101"),
        ("1 sip:mg1.example.com 0 0 maxload=-2", "maxload=-2"),
        ("1 sip:mg1.example.com 0 0 socket=udp:1.2.3.4:notaport", "socket"),
        ("1 sip:mg1.example.com 0 0 ping_from=mailto:x", "ping_from"),
        ("1", "expected: setid uri"),
    ],
)
def test_errors_name_the_line_and_the_reason(line: str, reason: str) -> None:
    text = "# header\n\n" + line + "\n1 sip:ok.example.com\n"
    with pytest.raises(DispatcherLoadError) as info:
        parse_list(text, "dispatcher.list")
    assert info.value.where == "dispatcher.list:3"
    assert reason in info.value.reason
    assert str(info.value).startswith("dispatcher.list:3: ")


def test_make_destination_names_the_row() -> None:
    with pytest.raises(DispatcherLoadError, match=r"^dispatcher row id=7: bad URI"):
        make_destination(1, "sip:", where="dispatcher row id=7")


def test_make_destination_accepts_null_attrs_from_a_table() -> None:
    dest = make_destination(1, "sip:mg1:5060", 0, 0, None, "Media Gateway 1")
    assert dest.attrs.body == ""
    assert dest.description == "Media Gateway 1"


def test_resolve_all_assigns_addresses() -> None:
    dests = parse_list(SAMPLE, "dispatcher.list")
    seen: list[tuple[str, int, str]] = []

    def resolver(host: str, port: int, transport: str) -> tuple[str, int]:
        seen.append((host, port, transport))
        return ("192.0.2.1" if "example" in host else host), port

    resolve_all(dests, resolver)
    assert dests[0].addr == ("192.0.2.1", 5060)
    assert dests[4].addr == ("2001:db8::1", 5070)
    assert ("2001:db8::1", 5070, "tcp") in seen


def test_resolve_all_is_all_or_nothing_and_names_line_and_host() -> None:
    dests = parse_list(SAMPLE, "dispatcher.list")

    def resolver(host: str, port: int, transport: str) -> tuple[str, int]:
        if host == "mg2.example.com":
            raise OSError("Name or service not known")
        return "192.0.2.1", port

    with pytest.raises(DispatcherLoadError) as info:
        resolve_all(dests, resolver)
    assert info.value.where == "dispatcher.list:5"
    assert "mg2.example.com" in info.value.reason
    assert "Name or service not known" in info.value.reason
    assert all(d.addr is None for d in dests)


def test_resolve_all_skips_destinations_flagged_no_dns() -> None:
    dests = parse_list(f"1 sip:srv-only.example.com 0x{DS_NODNSARES_DST:x}\n", "x")

    def resolver(host: str, port: int, transport: str) -> tuple[str, int]:
        raise AssertionError("must not resolve")

    resolve_all(dests, resolver)
    assert dests[0].addr is None
