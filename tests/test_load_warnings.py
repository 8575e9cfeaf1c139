"""Warnings at load: lists that load but will not do what they look like."""

from __future__ import annotations

import errno
import logging
import random
from pathlib import Path

import pytest

from sipdispatch.checks import bind_reason, load_warnings, probing_warnings
from sipdispatch.config import ListenAddr, parse_config
from sipdispatch.dispatcher import DispatcherSets, parse_list
from sipdispatch.health.statelog import StateLog
from sipdispatch.routing import RouteRule
from sipdispatch.service import DispatcherService

WEIGHTED = (RouteRule(set_id=1, algorithm=9),)


def warnings(text: str, rules: tuple[RouteRule, ...] = WEIGHTED, listen: str = "udp") -> list[str]:
    sets = DispatcherSets(parse_list(text, "t.list"), random.Random(1))
    return load_warnings(sets, rules, listen.split(","))


def test_a_clean_weighted_list_gives_no_warning() -> None:
    assert warnings("1 sip:a:5060 0 0 weight=75\n1 sip:b:5060 0 0 weight=25\n") == []


def test_the_first_destination_without_weight_makes_the_table_ignore_weights() -> None:
    # Kamailio order for equal priorities is the reverse of the file: b comes first.
    [line] = warnings("1 sip:a:5060 0 0 weight=75\n1 sip:b:5060 0 0\n")
    assert line.startswith("set 1: algorithm 9 (weight) but its first destination sip:b:5060")
    assert "weights are ignored" in line


def test_another_destination_without_weight_is_named() -> None:
    [line] = warnings("1 sip:a:5060 0 0\n1 sip:b:5060 0 0 weight=50\n")
    assert line == "set 1 sip:a:5060: algorithm 9 (weight) but no weight: " + (
        "it gets what the others leave of 100"
    )


def test_weights_are_not_checked_for_a_set_routed_by_another_algorithm() -> None:
    assert warnings("1 sip:a:5060 0 0\n1 sip:b:5060 0 0 weight=50\n", ()) == []


def test_attrs_written_with_a_colon_are_named() -> None:
    [line] = warnings("1 sip:a:5060 0 0 weight:75\n", ())
    assert line.startswith("set 1 sip:a:5060: attrs 'weight:75': 'weight:75' is not key=value")


def test_the_same_uri_twice_in_a_set() -> None:
    [line] = warnings("1 sip:a:5060 0 0\n1 sip:a:5060 0 0\n2 sip:a:5060 0 0\n", ())
    assert line == "set 1 sip:a:5060: listed twice in the set (the second is never shown)"


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_a_stream_destination_without_a_listener_of_its_transport(transport: str) -> None:
    text = f"1 sip:a:5060;transport={transport} 0 0\n"
    [line] = warnings(text, (), "udp")
    assert f"transport={transport} but no {transport} listener in server.listen" in line
    if transport == "tcp":
        assert warnings(text, (), "udp,tcp") == []


def test_the_warnings_are_logged_at_start_and_at_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text("1 sip:127.0.0.1:5071 0 0 weight:75\n")
    config = parse_config(
        {"server": {"listen": ["udp:127.0.0.1:5999"]}, "dispatcher": {"list_file": str(list_file)}}
    )
    caplog.set_level(logging.WARNING, "sipdispatch.dispatcher")
    svc = DispatcherService.from_config(config, StateLog())
    assert svc.listeners == ("udp",)
    assert [r.message for r in caplog.records if "is not key=value" in r.message]
    caplog.clear()
    list_file.write_text("1 sip:127.0.0.1:5071;transport=tcp 0 0\n")
    import asyncio

    asyncio.run(svc.reload())
    [message] = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert "no tcp listener" in message


def test_bind_errors_say_what_they_mean() -> None:
    assert bind_reason(OSError(errno.EADDRINUSE, "Address already in use")).startswith(
        "address in use"
    )
    assert bind_reason(OSError(errno.EADDRNOTAVAIL, "x")).startswith("no such address")
    assert bind_reason(OSError(errno.EPERM, "Operation not permitted")) == (
        "Operation not permitted"
    )


def test_a_listen_address_without_port_is_marked_so_the_start_can_say_it() -> None:
    addr = ListenAddr.parse("udp:127.0.0.1")
    assert (addr.port, addr.port_given) == (5060, False)
    assert addr == ListenAddr.parse("udp:127.0.0.1:5060")
    assert ListenAddr.parse("udp:127.0.0.1:5060").port_given


def test_probing_mode_0_with_marked_destinations_warns_one_missed_ping_leaves_them_ix() -> None:
    [line] = probing_warnings(0, 10, ["ip"])
    assert "probing_mode = 0" in line and "IX" in line and "probing_mode = 1" in line


@pytest.mark.parametrize(
    ("mode", "interval", "marks"),
    [(1, 10, ["ip"]), (3, 10, ["ip"]), (0, 0, ["ip"]), (0, 10, [""]), (0, 10, ["dx"])],
)
def test_probing_settings_that_keep_probing_marked_destinations_give_no_warning(
    mode: int, interval: int, marks: list[str]
) -> None:
    assert probing_warnings(mode, interval, marks) == []
