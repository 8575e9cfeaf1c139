"""Warnings at load: lists that load but will not do what they look like."""

from __future__ import annotations

import errno
import logging
import random
from pathlib import Path

import pytest

from sipdispatch.checks import algorithm_warnings, bind_reason, load_warnings, probing_warnings
from sipdispatch.config import ListenAddr, parse_config
from sipdispatch.dispatcher import DispatcherSets, parse_list
from sipdispatch.health.statelog import StateLog
from sipdispatch.routing import DEFAULT_ROUTE, RouteRule
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


def route_warnings(*algorithms: object) -> list[str]:
    """The algorithm warnings of a file whose [[route]] rules (sets 1, 2...) have these."""
    routes = [{"set": i + 1, "algorithm": a} for i, a in enumerate(algorithms)]
    config = parse_config({"route": [*routes, {"set": 9}]})
    return algorithm_warnings((r.set_id, r.algorithm_written) for r in config.routes)


def test_algorithm_14_by_number_warns_that_it_is_now_kamailios_and_where_ours_went() -> None:
    [line] = route_warnings(14)
    assert line == (
        "route[0] (set 1): algorithm = 14 changed meaning in this release: it is now "
        "Kamailio's algorithm 14 (round-robin-or-serial: round-robin when every destination "
        "of the set has the same priority above 0, else serial); sipdispatch's former 14 is "
        'algorithm = 114 or "round-robin-tiers"'
    )


def test_algorithm_15_by_number_warns_and_names_115() -> None:
    [line] = route_warnings(4, 15)
    assert line.startswith("route[1] (set 2): algorithm = 15 changed meaning in this release")
    assert "Kamailio's algorithm 15 (priority-weight: " in line
    assert line.endswith('sipdispatch\'s former 15 is algorithm = 115 or "srv"')


@pytest.mark.parametrize("written", ["priority-weight", "Priority-Weight"])
def test_the_name_priority_weight_warns_it_now_reaches_kamailios_15(written: str) -> None:
    [line] = route_warnings(written)
    assert line.startswith(f'route[0] (set 1): algorithm = "{written}" changed meaning')
    assert "Kamailio's algorithm 15" in line
    assert line.endswith('sipdispatch\'s former "priority-weight" is algorithm = 115 or "srv"')


@pytest.mark.parametrize(
    "written",
    ["round-robin-or-serial", "rr-or-serial", 114, 115, "round-robin-serial", "srv", 4, 13],
)
def test_algorithms_chosen_by_their_current_name_or_another_number_give_no_warning(
    written: object,
) -> None:
    assert route_warnings(written) == []


def test_rules_built_in_python_give_no_algorithm_warning() -> None:
    from sipdispatch.config import RouteRule as ConfigRule

    rule = ConfigRule(set_id=1, algorithm=14)
    assert algorithm_warnings([(rule.set_id, rule.algorithm_written)]) == []


def test_the_algorithm_warning_is_logged_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sipdispatch.config import load_config
    from sipdispatch.server import Server

    list_file = tmp_path / "dispatcher.list"
    list_file.write_text("1 sip:127.0.0.1:5071 0 5\n1 sip:127.0.0.1:5072 0 5\n")
    config = tmp_path / "sipdispatch.toml"
    config.write_text(
        f'[dispatcher]\nlist_file = "{list_file}"\nping_interval = 0\n'
        "[[route]]\nset = 1\nalgorithm = 14\n"
    )
    caplog.set_level(logging.WARNING, "sipdispatch.server")
    Server(load_config(config), str(config))
    [message] = [r.message for r in caplog.records if "changed meaning" in r.message]
    assert message.startswith("route[0] (set 1): algorithm = 14 changed meaning in this release")


def test_a_fallback_set_with_no_destination_in_the_list_is_named() -> None:
    rules = (RouteRule(set_id=1, fallback=((2, 4), (3, 8))),)
    [line] = warnings("1 sip:a:5060 0 0\n2 sip:b:5060 0 0\n", rules)
    assert line == ("route[0]: fallback[1] set 3 has no destination in the list: it is passed over")


def test_a_rules_set_with_no_destination_says_where_its_calls_go() -> None:
    lines = warnings(
        "2 sip:b:5060 0 0\n",
        (RouteRule(set_id=1, fallback=((2, 4),)), RouteRule(set_id=5, no_destination=480)),
    )
    assert lines == [
        "route[0]: set 1 has no destination in the list: its calls go to its fallback sets",
        "route[1]: set 5 has no destination in the list: its calls get 480",
    ]


def test_without_rules_the_default_set_1_is_checked() -> None:
    assert warnings("2 sip:b:5060 0 0\n", (DEFAULT_ROUTE,)) == [
        "with no [[route]], set 1 has no destination in the list: its calls get 503"
    ]
