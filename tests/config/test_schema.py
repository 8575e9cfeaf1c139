"""The schema: names from the algorithm registry, URLs through SQLAlchemy, file keys only
in files, and objects built in Python validated as well."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import ValidationError

from sipdispatch.config import (
    AdminConfig,
    ConfigError,
    DispatcherConfig,
    ListenAddr,
    RouteRule,
    default_config,
    parse_config,
)
from sipdispatch.dispatcher.algorithms import REGISTRY


def error_for(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value


@pytest.mark.parametrize(
    ("name", "number"),
    [(name, n) for n, alg in REGISTRY.items() for name in (alg.name, *alg.aliases)],
)
def test_every_name_and_alias_of_the_registry_is_an_algorithm(name: str, number: int) -> None:
    data = {"dispatcher": {"hash_header": "X-Key"}, "route": [{"set": 1, "algorithm": name}]}
    assert parse_config(data).routes[0].algorithm == number
    data["route"] = [{"set": 1, "algorithm": name.upper()}]
    assert parse_config(data).routes[0].algorithm == number


@pytest.mark.parametrize("number", range(-2, 20))
def test_an_algorithm_number_is_accepted_exactly_when_registered(number: int) -> None:
    data = {"dispatcher": {"hash_header": "X-Key"}, "route": [{"set": 1, "algorithm": number}]}
    if number in REGISTRY:
        assert parse_config(data).routes[0].algorithm == number
    else:
        assert error_for(data).key == "route[0].algorithm"


def test_algorithm_7_by_alias_still_needs_hash_header() -> None:
    error = error_for({"route": [{"set": 1}, {"set": 2, "algorithm": "hash-pvar"}]})
    assert error.key == "route[1].algorithm"
    assert str(error) == (
        'config: route[1].algorithm = "hash-pvar": '
        "algorithm 7 (hash-header) needs dispatcher.hash_header set"
    )


@pytest.mark.parametrize(
    "dispatcher",
    [
        {"db_url": "oracle://scott:tiger-secret@db/orcl"},
        {"db_url": "mysql://root:tiger-secret@db:notaport/ds"},
        {"db_url": "mysql//root:tiger-secret@db/ds"},
        {"db_url": "oracle://scott:tiger@secret@db/orcl"},
        {"db_url": "oracle://scott:tiger/secret@db/orcl"},
        {"list_file": "ds.list", "db_url": "postgresql://u:tiger-secret@db/ds"},
    ],
)
def test_db_url_error_never_shows_the_password(dispatcher: dict[str, str]) -> None:
    error = error_for({"dispatcher": dispatcher})
    assert error.key == "dispatcher.db_url"
    assert "tiger" not in str(error) and "secret" not in str(error)
    assert "***" in str(error)


def test_unsupported_database_is_named_in_the_message() -> None:
    message = str(error_for({"dispatcher": {"db_url": "oracle://db/orcl"}}))
    assert "unsupported database 'oracle'" in message
    assert "sqlite:///PATH" in message


@pytest.mark.parametrize(
    ("key", "data"),
    [
        ("route[0].set_id", {"route": [{"set": 1, "set_id": 2}]}),
        ("route[0].failover_codes", {"route": [{"set": 1, "failover_codes": [500]}]}),
        ("route[0].match.methods", {"route": [{"set": 1, "match": {"methods": ["INVITE"]}}]}),
        ("server.advertise_host", {"server": {"advertise_host": "lb.example.com"}}),
        ("admin.host", {"admin": {"host": "127.0.0.1"}}),
        ("dispatcher.ping_reply_classes", {"dispatcher": {"ping_reply_classes": [4]}}),
        ("routes", {"routes": []}),
    ],
)
def test_attribute_names_are_not_keys_of_the_file(key: str, data: dict[str, Any]) -> None:
    error = error_for(data)
    assert error.key == key
    assert "unknown key" in str(error)


def test_ping_reply_codes_must_be_text_in_a_file() -> None:
    assert error_for({"dispatcher": {"ping_reply_codes": [404]}}).key == (
        "dispatcher.ping_reply_codes"
    )


def test_ping_from_with_a_space_is_refused() -> None:
    assert error_for({"dispatcher": {"ping_from": "sip:a b@lb"}}).key == "dispatcher.ping_from"


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        ("UDP:LB.Example.COM", ListenAddr("udp", "lb.example.com", 5060)),
        ("tcp:[0:0::1]:5070", ListenAddr("tcp", "::1", 5070)),
        ("udp:[2001:DB8::1]", ListenAddr("udp", "2001:db8::1", 5060)),
        ("tls:10.0.0.1", ListenAddr("tls", "10.0.0.1", 5061)),
    ],
)
def test_listen_address_is_normalised(text: str, addr: ListenAddr) -> None:
    assert ListenAddr.parse(text) == addr


@pytest.mark.parametrize("text", ["udp:a..b", "udp:-lb.example", "udp:" + "a" * 64 + ".example"])
def test_listen_host_name_must_be_made_of_valid_labels(text: str) -> None:
    with pytest.raises(ValueError, match="not a valid host name"):
        ListenAddr.parse(text)


def test_objects_built_in_python_take_attribute_names_and_positions() -> None:
    d = DispatcherConfig(list_file="ds.list", ping_reply_codes=(404,), ping_reply_classes=(4,))
    assert (d.ping_reply_codes, d.ping_reply_classes) == ((404,), (4,))
    assert AdminConfig("::1", 0).port == 0  # any free port, for tests and the demo
    assert RouteRule(set_id=3).set_id == 3
    server = dataclasses.replace(default_config().server, listen=(ListenAddr("udp", "::1", 0),))
    assert server.listen == (ListenAddr("udp", "::1", 0),)


def test_objects_built_in_python_are_validated_too() -> None:
    with pytest.raises(ValidationError):
        RouteRule(set_id=-1)
    with pytest.raises(ValidationError):
        RouteRule(set_id=1, algorithm=99)
    with pytest.raises(ValidationError):
        AdminConfig("0.0.0.0", 5080)  # no token off loopback
    with pytest.raises(ValidationError):
        dataclasses.replace(default_config().transaction, t2=1)


def test_a_wrong_choice_is_shown_as_written() -> None:
    assert str(error_for({"server": {"log_level": "TRACE"}})) == (
        'config: server.log_level = "TRACE": must be one of "debug", "info", "warning", "error"'
    )
    assert parse_config({"server": {"log_level": "WARNING"}}).server.log_level == "warning"


@pytest.mark.parametrize(
    ("security", "key"),
    [
        ({"allow": ["10.0.0.300"]}, "security.allow[0]"),
        ({"deny": ["10.0.0.0/8", "mg1.example.com"]}, "security.deny[1]"),
        ({"allow": "10.0.0.0/8"}, "security.allow"),
        ({"acl_action": "ignore"}, "security.acl_action"),
        ({"flood_limit": -1}, "security.flood_limit"),
        ({"flood_window": 0}, "security.flood_window"),
    ],
)
def test_a_bad_security_value_is_named_by_its_key(security: dict[str, Any], key: str) -> None:
    error = error_for({"security": security})
    assert error.key == key, str(error)


def test_security_networks_are_kept_in_canonical_form() -> None:
    config = parse_config({"security": {"allow": ["192.0.2.7", "10.1.2.3/8", "2001:DB8::/32"]}})
    assert config.security.allow == ("192.0.2.7/32", "10.0.0.0/8", "2001:db8::/32")
