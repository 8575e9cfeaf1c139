"""Tests for sipdispatch.config: defaults, validation messages, file loading."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdispatch.config import (
    ALGORITHM_NAMES,
    AdminConfig,
    Config,
    ConfigError,
    DispatcherConfig,
    ListenAddr,
    RouteMatch,
    RouteRule,
    ServerConfig,
    TransactionConfig,
    default_config,
    load_config,
    parse_config,
)
from sipdispatch.health.state import is_ping_reply_alive as _alive
from sipdispatch.service import route_rules


def is_ping_reply_alive(d: DispatcherConfig, code: int) -> bool:
    return _alive(code, d.ping_reply_codes, d.ping_reply_classes)


def is_failover(rule: RouteRule, code: int) -> bool:
    """What the router makes of the rule (its own record of it)."""
    return route_rules((rule,))[0].is_failover(code)


def rule_matches(match: RouteMatch, *request: Any) -> bool:
    return route_rules((RouteRule(set_id=1, match=match),))[0].matches(*request)


# A file that writes out every key of the reference setup, with comments.
EXAMPLE = """
[server]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]  # proto:host:port; proto udp|tcp|tls
advertise = ""            # host[:port] written in Via/Record-Route when it differs from listen
record_route = true
workers = 1               # processes sharing the SIP sockets

[transaction]             # Kamailio tm names and units (milliseconds)
fr_timer = 30000          # no final response (and no provisional) -> branch timeout (408)
fr_inv_timer = 120000     # INVITE: no final response after a provisional
t1 = 500
t2 = 4000

[admin]
listen = "127.0.0.1:5080" # JSON-RPC at POST /RPC, metrics at GET /metrics
token = ""                # required (Bearer) when listen is not a loopback address

[dispatcher]
list_file = ""            # Kamailio dispatcher.list format, or:
db_url = "sqlite:///sipdispatch.db"  # mysql://user:pw@host:3306/db, postgresql://user:pw@host/db
table_name = "dispatcher"
ping_interval = 10        # ds_ping_interval, seconds; 0 = no pings
ping_method = "OPTIONS"
ping_from = "sip:dispatcher@localhost"
ping_reply_codes = ""     # extra codes/classes that count as alive: "code=404;class=4"
probing_threshold = 1     # failed pings in a row before a destination is IP
inactive_threshold = 1    # answered pings in a row before it is active again
probing_mode = 0          # 0..3 as Kamailio
ping_latency_stats = false
latency_estimator_alpha = 100   # per mille
hash_size = 0             # call-load table (algorithm 10) size as power of two
hash_expire = 7200
hash_initexpire = 7200
use_default = false
failover = true           # Kamailio `flags` bit 2
hash_user_only = false    # Kamailio `flags` bit 1
keep_state_on_reload = true   # unchanged destinations keep state, latency and load across reload

[[route]]                 # request_route: rules in order, first match wins
match = { method = ["INVITE"], domain = "pbx1.example.com", user_prefix = "44", source_set = 2 }
set = 1
algorithm = 4             # number 0..15 or name (e.g. "round-robin", "weight")
mode = "dst"              # "dst" = ds_select_dst (R-URI kept), "domain" = ds_select_domain
limit = 0                 # failover list length, 0 = all
failover_on = ["5xx", "404", "408"]   # failure_route: these finals, and a branch timeout
mark_failed = "ip"        # ds_mark_dst state for a destination that failed a call; "" = none
no_destination = 503      # reply when nothing usable is left
"""


def error_for(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value


def route(**keys: Any) -> dict[str, Any]:
    """A document with one [[route]] rule (set 1 unless given)."""
    return {"route": [{"set": 1, **keys}]}


# --------------------------------------------------------------------------------------------
# Defaults and the commented example
# --------------------------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    c = default_config()
    assert [str(a) for a in c.server.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert c.server.advertise_host is None and c.server.advertise_port is None
    assert c.server.record_route is True
    assert c.server.workers == 1
    assert c.transaction == TransactionConfig(
        fr_timer=30000, fr_inv_timer=120000, t1=500, t2=4000, t4=5000, wait_timer=5000
    )
    assert (c.admin.host, c.admin.port, c.admin.token) == ("127.0.0.1", 5080, "")
    d = c.dispatcher
    assert d.list_file == ""
    assert d.db_url == "sqlite:///sipdispatch.db"
    assert d.store_kind == "db"
    assert d.table_name == "dispatcher"
    assert d.ping_interval == 10
    assert d.ping_method == "OPTIONS"
    assert d.ping_from == "sip:dispatcher@localhost"
    assert d.ping_reply_codes == () and d.ping_reply_classes == ()
    assert d.probing_threshold == 1 and d.inactive_threshold == 1
    assert d.probing_mode == 0
    assert d.ping_latency_stats is False
    assert d.latency_estimator_alpha == 100
    assert d.hash_size == 0
    assert d.hash_expire == 7200 and d.hash_initexpire == 7200
    assert d.use_default is False
    assert d.failover is True
    assert d.hash_user_only is False
    assert d.keep_state_on_reload is True
    assert c.routes == ()


def test_our_additions_have_documented_defaults() -> None:
    c = default_config()
    assert c.transaction.t4 == 5000
    assert c.transaction.wait_timer == 5000  # Kamailio tm.wt_timer; the RFC's is 32 s
    assert c.server.log_level == "info"
    assert c.server.max_message_size == 65535
    assert c.dispatcher.hash_header == ""


def test_empty_document_gives_the_defaults() -> None:
    assert parse_config({}) == default_config()
    assert parse_config({"server": {}, "route": []}) == default_config()


def test_commented_example_parses() -> None:
    c = parse_config(tomllib.loads(EXAMPLE))
    assert c.server == default_config().server
    assert c.dispatcher == default_config().dispatcher
    (rule,) = c.routes
    assert rule.match == RouteMatch(("INVITE",), "pbx1.example.com", "44", 2)
    assert rule.set_id == 1
    assert rule.algorithm == 4
    assert rule.mode == "dst"
    assert rule.limit == 0
    assert rule.failover_codes == {404, 408}
    assert rule.failover_classes == {5}
    assert rule.mark_failed == "ip"
    assert rule.no_destination == 503


def test_route_defaults() -> None:
    (rule,) = parse_config(route()).routes
    assert rule == RouteRule(set_id=1)
    assert rule.match == RouteMatch()
    assert rule.algorithm == 4
    assert rule.mode == "dst"
    assert rule.limit == 0
    assert rule.failover_codes == {404, 408} and rule.failover_classes == {5}
    assert rule.mark_failed == "ip"
    assert rule.no_destination == 503


def test_routes_keep_file_order() -> None:
    data = {"route": [{"set": 3}, {"set": 1}, {"set": 2}]}
    assert [r.set_id for r in parse_config(data).routes] == [3, 1, 2]


def test_config_objects_are_frozen() -> None:
    c = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.server.workers = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.routes = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    "cls",
    [
        Config,
        ServerConfig,
        TransactionConfig,
        AdminConfig,
        DispatcherConfig,
        ListenAddr,
    ],
)
def test_config_dataclasses_use_slots(cls: type) -> None:
    assert "__slots__" in cls.__dict__


def test_all_keys_parse_with_non_default_values() -> None:
    c = parse_config(
        {
            "server": {
                "listen": ["udp:0.0.0.0", "tcp:[::]:5070"],
                "advertise": "sip.example.com:5080",
                "record_route": False,
                "workers": 1,
                "log_level": "DEBUG",
                "max_message_size": 8192,
            },
            "transaction": {"fr_timer": 5000, "fr_inv_timer": 60000, "t1": 250, "t2": 2000},
            "admin": {"listen": "0.0.0.0:9000", "token": "s3cret"},
            "dispatcher": {
                "list_file": "/etc/sipdispatch/dispatcher.list",
                "table_name": "ds_gw",
                "ping_interval": 0,
                "ping_method": "INFO",
                "ping_from": "sips:probe@lb.example.com",
                "ping_reply_codes": "code=404;class=4",
                "probing_threshold": 3,
                "inactive_threshold": 2,
                "probing_mode": 3,
                "ping_latency_stats": True,
                "latency_estimator_alpha": 1000,
                "hash_size": 16,
                "hash_expire": 60,
                "hash_initexpire": 30,
                "use_default": True,
                "failover": False,
                "hash_user_only": True,
                "keep_state_on_reload": False,
                "hash_header": "X-Customer",
            },
            "route": [
                {
                    "match": {"method": "MESSAGE"},
                    "set": 0,
                    "algorithm": "hash-header",
                    "mode": "domain",
                    "limit": 2,
                    "failover_on": [],
                    "mark_failed": "",
                    "no_destination": 480,
                }
            ],
        }
    )
    assert c.server.listen == (
        ListenAddr("udp", "0.0.0.0", 5060),
        ListenAddr("tcp", "::", 5070),
    )
    assert (c.server.advertise_host, c.server.advertise_port) == ("sip.example.com", 5080)
    assert c.server.record_route is False
    assert c.server.workers == 1
    assert c.server.log_level == "debug"
    assert c.server.max_message_size == 8192
    assert c.transaction == TransactionConfig(5000, 60000, 250, 2000, 5000)
    assert (c.admin.host, c.admin.port, c.admin.token) == ("0.0.0.0", 9000, "s3cret")
    d = c.dispatcher
    assert d.store_kind == "list"
    assert d.list_file == "/etc/sipdispatch/dispatcher.list"
    assert d.ping_method == "INFO"
    assert (d.ping_reply_codes, d.ping_reply_classes) == ((404,), (4,))
    assert (d.probing_threshold, d.inactive_threshold, d.probing_mode) == (3, 2, 3)
    assert (d.latency_estimator_alpha, d.hash_size) == (1000, 16)
    assert (d.use_default, d.failover, d.hash_user_only) == (True, False, True)
    assert d.keep_state_on_reload is False
    assert d.hash_header == "X-Customer"
    (rule,) = c.routes
    assert rule.match.methods == ("MESSAGE",)
    assert (rule.set_id, rule.algorithm, rule.mode, rule.limit) == (0, 7, "domain", 2)
    assert rule.failover_codes == frozenset() and rule.failover_classes == frozenset()
    assert rule.mark_failed == ""
    assert rule.no_destination == 480


# --------------------------------------------------------------------------------------------
# Validation: every path names the dotted key
# --------------------------------------------------------------------------------------------

INVALID: list[tuple[str, dict[str, Any]]] = [
    # unknown keys at every level
    ("servr", {"servr": {}}),
    ("routes", {"routes": []}),
    ("server.lisen", {"server": {"lisen": []}}),
    ("transaction.t3", {"transaction": {"t3": 1}}),
    ("admin.password", {"admin": {"password": "x"}}),
    ("dispatcher.ds_ping_interval", {"dispatcher": {"ds_ping_interval": 1}}),
    ("route[0].priority", route(priority=1)),
    ("route[0].match.uri", route(match={"uri": "sip:x"})),
    ('server."a b"', {"server": {"a b": 1}}),
    # sections of the wrong shape
    ("server", {"server": 5}),
    ("transaction", {"transaction": "x"}),
    ("route", {"route": {"set": 1}}),
    ("route", {"route": [1]}),
    ("route[0].match", route(match="INVITE")),
    # [server]
    ("server.listen", {"server": {"listen": []}}),
    ("server.listen", {"server": {"listen": "udp:127.0.0.1"}}),
    ("server.listen[0]", {"server": {"listen": [5060]}}),
    ("server.listen[0]", {"server": {"listen": ["sctp:127.0.0.1:5060"]}}),
    ("server.listen[0]", {"server": {"listen": ["127.0.0.1:5060"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:127.0.0.1:0"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:127.0.0.1:65536"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:127.0.0.1:"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:127.0.0.1:50x"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:300.1.1.1"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:::1"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:[::1"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:[nothex]:5060"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:[::1]5060"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:bad_host"]}}),
    ("server.listen[0]", {"server": {"listen": ["udp:"]}}),
    ("server.listen[0]", {"server": {"listen": ["tls:127.0.0.1:5061"]}}),
    ("server.listen[1]", {"server": {"listen": ["udp:127.0.0.1", "udp:127.0.0.1:5060"]}}),
    ("server.advertise", {"server": {"advertise": "a b"}}),
    ("server.advertise", {"server": {"advertise": "host:99999"}}),
    ("server.advertise", {"server": {"advertise": 5}}),
    ("server.record_route", {"server": {"record_route": "yes"}}),
    ("server.record_route", {"server": {"record_route": 1}}),
    ("server.workers", {"server": {"workers": -1}}),
    ("server.workers", {"server": {"workers": 2.0}}),
    ("server.workers", {"server": {"workers": 257}}),
    ("server.log_level", {"server": {"log_level": "trace"}}),
    ("server.max_message_size", {"server": {"max_message_size": 100}}),
    ("server.max_message_size", {"server": {"max_message_size": 1 << 30}}),
    # [transaction]
    ("transaction.fr_timer", {"transaction": {"fr_timer": -5}}),
    ("transaction.fr_timer", {"transaction": {"fr_timer": 0}}),
    ("transaction.fr_timer", {"transaction": {"fr_timer": True}}),
    ("transaction.fr_timer", {"transaction": {"fr_timer": "30000"}}),
    ("transaction.fr_inv_timer", {"transaction": {"fr_inv_timer": 0}}),
    ("transaction.t1", {"transaction": {"t1": 0}}),
    ("transaction.t2", {"transaction": {"t2": 0}}),
    ("transaction.t2", {"transaction": {"t1": 500, "t2": 400}}),
    ("transaction.t4", {"transaction": {"t4": -1}}),
    ("transaction.wait_timer", {"transaction": {"wait_timer": 0}}),
    # [admin]
    ("admin.listen", {"admin": {"listen": "127.0.0.1"}}),
    ("admin.listen", {"admin": {"listen": "127.0.0.1:0"}}),
    ("admin.listen", {"admin": {"listen": "::1:5080"}}),
    ("admin.listen", {"admin": {"listen": 5080}}),
    ("admin.listen", {"admin": {"listen": "127.0.0.1:5060"}}),
    ("admin.token", {"admin": {"listen": "0.0.0.0:5080"}}),
    ("admin.token", {"admin": {"token": 1234}}),
    # [dispatcher]
    ("dispatcher.list_file", {"dispatcher": {"list_file": 1}}),
    ("dispatcher.db_url", {"dispatcher": {"db_url": "oracle://x/y"}}),
    ("dispatcher.db_url", {"dispatcher": {"db_url": "sipdispatch.db"}}),
    ("dispatcher.db_url", {"dispatcher": {"db_url": ""}}),
    ("dispatcher.db_url", {"dispatcher": {"list_file": "ds.list", "db_url": "mysql://u@h/db"}}),
    ("dispatcher.table_name", {"dispatcher": {"table_name": "dispatcher; drop table x"}}),
    ("dispatcher.table_name", {"dispatcher": {"table_name": ""}}),
    ("dispatcher.ping_interval", {"dispatcher": {"ping_interval": -1}}),
    ("dispatcher.ping_method", {"dispatcher": {"ping_method": "options"}}),
    ("dispatcher.ping_method", {"dispatcher": {"ping_method": ""}}),
    ("dispatcher.ping_from", {"dispatcher": {"ping_from": "dispatcher@localhost"}}),
    ("dispatcher.ping_from", {"dispatcher": {"ping_from": "sip:"}}),
    ("dispatcher.ping_from", {"dispatcher": {"ping_from": "tel:+4412345"}}),
    ("dispatcher.ping_reply_codes", {"dispatcher": {"ping_reply_codes": "404"}}),
    ("dispatcher.ping_reply_codes", {"dispatcher": {"ping_reply_codes": "code=99"}}),
    ("dispatcher.ping_reply_codes", {"dispatcher": {"ping_reply_codes": "code=700"}}),
    ("dispatcher.ping_reply_codes", {"dispatcher": {"ping_reply_codes": "class=7"}}),
    ("dispatcher.ping_reply_codes", {"dispatcher": {"ping_reply_codes": "status=404"}}),
    ("dispatcher.ping_reply_codes", {"dispatcher": {"ping_reply_codes": "code=4x4"}}),
    ("dispatcher.ping_reply_codes", {"dispatcher": {"ping_reply_codes": ["code=404"]}}),
    ("dispatcher.probing_threshold", {"dispatcher": {"probing_threshold": 0}}),
    ("dispatcher.inactive_threshold", {"dispatcher": {"inactive_threshold": 0}}),
    ("dispatcher.probing_mode", {"dispatcher": {"probing_mode": 4}}),
    ("dispatcher.probing_mode", {"dispatcher": {"probing_mode": -1}}),
    ("dispatcher.ping_latency_stats", {"dispatcher": {"ping_latency_stats": 1}}),
    ("dispatcher.latency_estimator_alpha", {"dispatcher": {"latency_estimator_alpha": 1001}}),
    ("dispatcher.latency_estimator_alpha", {"dispatcher": {"latency_estimator_alpha": 0.5}}),
    ("dispatcher.hash_size", {"dispatcher": {"hash_size": 17}}),
    ("dispatcher.hash_expire", {"dispatcher": {"hash_expire": 0}}),
    ("dispatcher.hash_initexpire", {"dispatcher": {"hash_initexpire": 0}}),
    ("dispatcher.use_default", {"dispatcher": {"use_default": "false"}}),
    ("dispatcher.failover", {"dispatcher": {"failover": 2}}),
    ("dispatcher.hash_user_only", {"dispatcher": {"hash_user_only": 1}}),
    ("dispatcher.keep_state_on_reload", {"dispatcher": {"keep_state_on_reload": None}}),
    ("dispatcher.hash_header", {"dispatcher": {"hash_header": "X Customer"}}),
    # [[route]]
    ("route[0].set", {"route": [{}]}),
    ("route[0].set", route(set=-1)),
    ("route[0].set", route(set="1")),
    ("route[0].set", route(set=True)),
    ("route[1].set", {"route": [{"set": 1}, {"set": 1.5}]}),
    ("route[0].algorithm", route(algorithm=16)),
    ("route[0].algorithm", route(algorithm=113)),
    ("route[0].algorithm_written", route(algorithm_written="14")),
    ("route[0].algorithm", route(algorithm=-1)),
    ("route[0].algorithm", route(algorithm="fastest")),
    ("route[0].algorithm", route(algorithm="4")),
    ("route[0].algorithm", route(algorithm=True)),
    ("route[0].algorithm", route(algorithm=7)),
    ("route[0].mode", route(mode="uri")),
    ("route[0].limit", route(limit=-1)),
    ("route[0].failover_on", route(failover_on="5xx")),
    ("route[0].failover_on[0]", route(failover_on=[503])),
    ("route[0].failover_on[1]", route(failover_on=["5xx", "2xx"])),
    ("route[0].failover_on[0]", route(failover_on=["7xx"])),
    ("route[0].failover_on[0]", route(failover_on=["200"])),
    ("route[0].failover_on[0]", route(failover_on=["4040"])),
    ("route[0].failover_on[0]", route(failover_on=["busy"])),
    ("route[0].mark_failed", route(mark_failed="tx")),
    ("route[0].mark_failed", route(mark_failed="down")),
    ("route[0].mark_failed", route(mark_failed=False)),
    ("route[0].no_destination", route(no_destination=200)),
    ("route[0].no_destination", route(no_destination=700)),
    ("route[0].match.method", route(match={"method": []})),
    ("route[0].match.method", route(match={"method": "invite"})),
    ("route[0].match.method", route(match={"method": ["INVITE", 5]})),
    ("route[0].match.method", route(match={"method": "IN VITE"})),
    ("route[0].match.domain", route(match={"domain": ""})),
    ("route[0].match.domain", route(match={"domain": ["a.example"]})),
    ("route[0].match.user_prefix", route(match={"user_prefix": ""})),
    ("route[0].match.user_prefix", route(match={"user_prefix": 44})),
    ("route[0].match.source_set", route(match={"source_set": -1})),
    ("route[0].match.source_set", route(match={"source_set": "2"})),
]


@pytest.mark.parametrize(
    ("key", "data"), INVALID, ids=[f"{k}-{i}" for i, (k, _) in enumerate(INVALID)]
)
def test_invalid_value_is_error_naming_the_dotted_key(key: str, data: dict[str, Any]) -> None:
    error = error_for(data)
    message = str(error)
    assert error.key == key
    assert message.startswith(f"config: {key} = ") or message.startswith(
        f"config: {key} is missing"
    )
    assert "\n" not in message


def test_error_message_names_key_value_and_what_is_allowed() -> None:
    error = error_for({"transaction": {"fr_timer": -5}})
    assert str(error) == "config: transaction.fr_timer = -5: must be an integer >= 1 (milliseconds)"


def test_toml_bool_is_not_an_integer() -> None:
    assert "fr_timer = true:" in str(error_for({"transaction": {"fr_timer": True}}))


def test_unknown_key_is_error_naming_it_and_listing_allowed_keys() -> None:
    message = str(error_for({"server": {"lisen": ["udp:127.0.0.1"]}}))
    assert "server.lisen" in message
    assert "unknown key" in message
    assert "did you mean listen?" in message
    for key in ("listen", "advertise", "record_route", "workers", "log_level", "max_message_size"):
        assert key in message


def test_unknown_top_level_table_is_error_listing_tables() -> None:
    message = str(error_for({"dispatch": {"ping_interval": 5}}))
    assert message.startswith("config: dispatch = ")
    tables = (
        "server, transaction, admin, dispatcher, security, tls, log, cluster, dns, capture, "
        "events, route"
    )
    assert tables in message


def test_unknown_key_inside_route_match_is_error() -> None:
    message = str(error_for(route(match={"methods": ["INVITE"]})))
    assert "route[0].match.methods" in message
    assert "method, domain, user_prefix, source_set" in message


def test_route_index_in_message_counts_from_zero() -> None:
    data = {"route": [{"set": 1}, {"set": 2}, {"set": 3, "algorithm": "nope"}]}
    assert error_for(data).key == "route[2].algorithm"


def test_missing_required_route_set_says_missing() -> None:
    assert str(error_for({"route": [{"algorithm": 4}]})).startswith(
        "config: route[0].set is missing: "
    )


def test_long_values_are_shortened_in_messages() -> None:
    message = str(error_for({"server": {"workers": "x" * 500}}))
    assert len(message) < 200
    assert "..." in message


def test_source_is_named_in_messages() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"server": {"workers": -1}}, source="/etc/sipdispatch.toml")
    assert str(info.value).startswith("config: /etc/sipdispatch.toml: server.workers = -1:")
    assert info.value.source == "/etc/sipdispatch.toml"


def test_first_error_wins_in_document_order_of_sections() -> None:
    data = {"dispatcher": {"probing_mode": 9}, "server": {"workers": -1}}
    assert error_for(data).key == "server.workers"


# --------------------------------------------------------------------------------------------
# server.listen / server.advertise
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("udp:127.0.0.1:5060", ListenAddr("udp", "127.0.0.1", 5060)),
        ("udp:127.0.0.1", ListenAddr("udp", "127.0.0.1", 5060)),
        ("tcp:10.0.0.1:5070", ListenAddr("tcp", "10.0.0.1", 5070)),
        ("tls:10.0.0.1", ListenAddr("tls", "10.0.0.1", 5061)),
        ("udp:[::1]:5062", ListenAddr("udp", "::1", 5062)),
        ("tcp:[::1]", ListenAddr("tcp", "::1", 5060)),
        ("udp:[2001:DB8:0:0::1]", ListenAddr("udp", "2001:db8::1", 5060)),
        ("udp:sip.Example.com:5080", ListenAddr("udp", "sip.example.com", 5080)),
        ("udp:localhost", ListenAddr("udp", "localhost", 5060)),
        ("UDP:0.0.0.0", ListenAddr("udp", "0.0.0.0", 5060)),
    ],
)
def test_listen_address_parsing(text: str, expected: ListenAddr) -> None:
    assert ListenAddr.parse(text) == expected


@pytest.mark.parametrize(
    ("addr", "text"),
    [
        (ListenAddr("udp", "127.0.0.1", 5060), "udp:127.0.0.1:5060"),
        (ListenAddr("tcp", "::1", 5060), "tcp:[::1]:5060"),
        (ListenAddr("tls", "sip.example.com", 5061), "tls:sip.example.com:5061"),
    ],
)
def test_listen_address_str_gives_proto_host_port(addr: ListenAddr, text: str) -> None:
    assert str(addr) == text


@given(
    proto=st.sampled_from(["udp", "tcp", "tls"]),
    ip=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    port=st.integers(1, 65535),
)
def test_listen_address_str_round_trips(proto: str, ip: Any, port: int) -> None:
    addr = ListenAddr(proto, str(ip), port)
    assert ListenAddr.parse(str(addr)) == addr


def test_listen_parses_into_addresses_in_order() -> None:
    c = parse_config({"server": {"listen": ["tcp:[::1]", "udp:gw.example.net:5070"]}})
    assert c.server.listen == (
        ListenAddr("tcp", "::1", 5060),
        ListenAddr("udp", "gw.example.net", 5070),
    )


def test_same_host_and_port_on_udp_and_tcp_is_not_a_duplicate() -> None:
    c = parse_config({"server": {"listen": ["udp:127.0.0.1", "tcp:127.0.0.1"]}})
    assert len(c.server.listen) == 2


def test_duplicate_listen_is_error_naming_both_entries() -> None:
    message = str(error_for({"server": {"listen": ["udp:[::1]:5060", "udp:[0::1]"]}}))
    assert "server.listen[1]" in message and "server.listen[0]" in message


def test_tls_listen_without_a_certificate_is_an_error_naming_the_listener() -> None:
    error = error_for({"server": {"listen": ["tls:127.0.0.1"]}})
    assert error.key == "server.listen[0]"
    assert "[tls] certificate" in str(error)


def test_tls_listen_with_a_certificate_takes_port_5061() -> None:
    c = parse_config({"server": {"listen": ["tls:127.0.0.1"]}, "tls": {"certificate": "a.pem"}})
    assert c.server.listen[0].port == 5061 and c.tls is not None


def test_no_tls_table_means_no_tls() -> None:
    assert parse_config({}).tls is None


def test_unbracketed_ipv6_listen_says_use_brackets() -> None:
    assert "[::1]" in str(error_for({"server": {"listen": ["udp:::1:5060"]}}))


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("", None, None),
        ("203.0.113.5", "203.0.113.5", None),
        ("203.0.113.5:5080", "203.0.113.5", 5080),
        ("sip.example.com", "sip.example.com", None),
        ("[2001:db8::5]:5060", "2001:db8::5", 5060),
        ("[2001:db8::5]", "2001:db8::5", None),
    ],
)
def test_advertise_parses_host_and_optional_port(
    text: str, host: str | None, port: int | None
) -> None:
    server = parse_config({"server": {"advertise": text}}).server
    assert (server.advertise_host, server.advertise_port) == (host, port)


# --------------------------------------------------------------------------------------------
# [admin]
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:5080", "127.0.0.1", 5080),
        ("127.1.2.3:8000", "127.1.2.3", 8000),
        ("[::1]:5080", "::1", 5080),
        ("localhost:5080", "localhost", 5080),
    ],
)
def test_admin_on_loopback_needs_no_token(listen: str, host: str, port: int) -> None:
    admin = parse_config({"admin": {"listen": listen}}).admin
    assert (admin.host, admin.port, admin.token) == (host, port, "")
    assert admin.is_loopback
    assert admin.listen == listen


@pytest.mark.parametrize(
    "listen",
    ["0.0.0.0:5080", "192.0.2.10:5080", "[::]:5080", "[2001:db8::1]:5080", "lb.example:80"],
)
def test_admin_off_loopback_without_token_is_error_naming_admin_token(listen: str) -> None:
    error = error_for({"admin": {"listen": listen}})
    assert error.key == "admin.token"
    assert "loopback" in str(error)


def test_admin_off_loopback_with_token_is_accepted() -> None:
    admin = parse_config({"admin": {"listen": "0.0.0.0:5080", "token": "t0ken"}}).admin
    assert admin.token == "t0ken"
    assert not admin.is_loopback


def test_admin_on_ipv4_mapped_loopback_counts_as_loopback() -> None:
    assert parse_config({"admin": {"listen": "[::ffff:127.0.0.1]:5080"}}).admin.is_loopback


def test_admin_port_taken_by_a_tcp_sip_socket_is_error() -> None:
    data = {"server": {"listen": ["tcp:0.0.0.0:5080"]}, "admin": {"listen": "127.0.0.1:5080"}}
    assert "server.listen[0]" in str(error_for(data))


def test_admin_port_shared_with_a_udp_sip_socket_is_fine() -> None:
    data = {"server": {"listen": ["udp:127.0.0.1:5080"]}, "admin": {"listen": "127.0.0.1:5080"}}
    assert parse_config(data).admin.port == 5080


# --------------------------------------------------------------------------------------------
# [dispatcher]
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "codes", "classes"),
    [
        ("", (), ()),
        ("code=404", (404,), ()),
        ("class=4", (), (4,)),
        ("code=404;class=4", (404,), (4,)),
        ("code=404;code=480;class=3", (404, 480), (3,)),
        (" code = 404 ; CLASS=4 ;", (404,), (4,)),
        ("code=404;code=404", (404,), ()),
    ],
)
def test_ping_reply_codes_parse_codes_and_classes(
    text: str, codes: tuple[int, ...], classes: tuple[int, ...]
) -> None:
    d = parse_config({"dispatcher": {"ping_reply_codes": text}}).dispatcher
    assert (d.ping_reply_codes, d.ping_reply_classes) == (codes, classes)


def test_ping_reply_alive_is_2xx_plus_configured_codes_and_classes() -> None:
    d = parse_config({"dispatcher": {"ping_reply_codes": "code=404;class=3"}}).dispatcher
    assert is_ping_reply_alive(d, 200) and is_ping_reply_alive(d, 299)
    assert is_ping_reply_alive(d, 404)
    assert is_ping_reply_alive(d, 302)
    assert not is_ping_reply_alive(d, 408)
    assert not is_ping_reply_alive(d, 503)
    assert not is_ping_reply_alive(default_config().dispatcher, 404)


def test_list_file_selects_the_list_store() -> None:
    d = parse_config({"dispatcher": {"list_file": "dispatcher.list"}}).dispatcher
    assert d.store_kind == "list"


def test_list_file_with_default_db_url_written_out_is_accepted() -> None:
    data = {"dispatcher": {"list_file": "ds.list", "db_url": "sqlite:///sipdispatch.db"}}
    assert parse_config(data).dispatcher.store_kind == "list"


def test_list_file_with_other_db_url_is_error_saying_choose_one() -> None:
    data = {"dispatcher": {"list_file": "ds.list", "db_url": "postgresql://u@h/db"}}
    error = error_for(data)
    assert error.key == "dispatcher.db_url"
    assert "list_file" in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///sipdispatch.db",
        "sqlite:////var/lib/sipdispatch/ds.db",
        "mysql://root@127.0.0.1:3306/test",
        "mysql+pymysql://user:pw@db.example:3306/kamailio",
        "mariadb://user:pw@db/kamailio",
        "postgresql://user:pw@127.0.0.1/test",
        "postgresql+psycopg://user@db/test",
    ],
)
def test_db_url_accepts_sqlite_mysql_and_postgresql(url: str) -> None:
    d = parse_config({"dispatcher": {"db_url": url}}).dispatcher
    assert d.db_url == url
    assert d.store_kind == "db"


# --------------------------------------------------------------------------------------------
# [[route]]
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "number"), list(ALGORITHM_NAMES.items()))
def test_algorithm_name_maps_to_kamailio_number(name: str, number: int) -> None:
    data = {"dispatcher": {"hash_header": "X-Key"}, "route": [{"set": 1, "algorithm": name}]}
    assert parse_config(data).routes[0].algorithm == number


def test_algorithm_names_cover_kamailios_0_to_15_and_64_and_our_114_115() -> None:
    assert sorted(ALGORITHM_NAMES.values()) == [*range(16), 64, 114, 115]


def test_algorithm_names_are_case_insensitive() -> None:
    assert parse_config(route(algorithm="Weight")).routes[0].algorithm == 9


@pytest.mark.parametrize("number", [n for n in [*range(16), 114, 115] if n != 7])
def test_algorithm_number_is_kept(number: int) -> None:
    assert parse_config(route(algorithm=number)).routes[0].algorithm == number


def test_unknown_algorithm_name_lists_the_names() -> None:
    message = str(error_for(route(algorithm="fastest")))
    assert "route[0].algorithm" in message
    for name in ALGORITHM_NAMES:
        assert name in message


def test_algorithm_7_needs_hash_header() -> None:
    error = error_for(route(algorithm="hash-header"))
    assert error.key == "route[0].algorithm"
    assert "dispatcher.hash_header" in str(error)


def test_failover_on_parses_codes_and_classes() -> None:
    (rule,) = parse_config(route(failover_on=["3XX", "6xx", "486", "603"])).routes
    assert rule.failover_codes == {486, 603}
    assert rule.failover_classes == {3, 6}


@pytest.mark.parametrize(
    ("code", "expected"),
    [(500, True), (503, True), (599, True), (404, True), (408, True), (486, False), (603, False)],
)
def test_default_failover_is_5xx_404_408(code: int, expected: bool) -> None:
    assert is_failover(parse_config(route()).routes[0], code) is expected


def test_empty_failover_on_never_fails_over() -> None:
    (rule,) = parse_config(route(failover_on=[])).routes
    assert not any(is_failover(rule, code) for code in range(300, 700))


@pytest.mark.parametrize(("given", "stored"), [("IP", "ip"), ("D", "d"), ("Ap", "ap"), ("", "")])
def test_mark_failed_is_case_insensitive(given: str, stored: str) -> None:
    assert parse_config(route(mark_failed=given)).routes[0].mark_failed == stored


def test_match_method_may_be_a_single_string() -> None:
    assert parse_config(route(match={"method": "INVITE"})).routes[0].match.methods == ("INVITE",)


def test_route_matching_checks_every_given_condition() -> None:
    (rule,) = parse_config(tomllib.loads(EXAMPLE)).routes
    match = rule.match
    assert rule_matches(match, "INVITE", "pbx1.example.com", "441234", 2)
    assert rule_matches(match, "INVITE", "PBX1.Example.COM", "44", 2)
    assert not rule_matches(match, "invite", "pbx1.example.com", "441234", 2)
    assert not rule_matches(match, "MESSAGE", "pbx1.example.com", "441234", 2)
    assert not rule_matches(match, "INVITE", "pbx2.example.com", "441234", 2)
    assert not rule_matches(match, "INVITE", "pbx1.example.com", "331234", 2)
    assert not rule_matches(match, "INVITE", "pbx1.example.com", "441234", 3)
    assert not rule_matches(match, "INVITE", "pbx1.example.com", "441234", None)


def test_route_without_match_matches_everything() -> None:
    (rule,) = parse_config(route()).routes
    assert rule_matches(rule.match, "OPTIONS", "anything", "", None)
    assert rule_matches(rule.match, "INVITE", "x.example", "123", 7)


# --------------------------------------------------------------------------------------------
# load_config
# --------------------------------------------------------------------------------------------


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "sipdispatch.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    c = load_config(path)
    assert c == parse_config(tomllib.loads(EXAMPLE))
    assert load_config(str(path)) == c


def test_load_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[transaction]\nfr_timer = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"config: {path}: transaction.fr_timer = 0:")


def test_missing_file_is_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "cannot read" in str(info.value)


def test_directory_instead_of_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[server]\nworkers = 1\nlisten = udp\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"config: {path}: ")
    assert "invalid TOML" in message
    assert "line 3, column 10" in message
    assert "\n" not in message
    assert info.value.key is None


def test_toml_error_at_end_of_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "unclosed.toml"
    path.write_text('[server]\nlisten = ["udp:127.0.0.1"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="at end of document"):
        load_config(path)


def test_toml_duplicate_key_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.toml"
    path.write_text("[server]\nworkers = 1\nworkers = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 3"):
        load_config(path)


def test_non_utf8_file_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[admin]\ntoken = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


# --------------------------------------------------------------------------------------------
# Robustness
# --------------------------------------------------------------------------------------------

_toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        ["", "udp:127.0.0.1", "tcp:[::1]:5060", "5xx", "404", "ip", "code=404;class=4", "weight"]
    ),
)
_toml_values = st.recursive(
    _toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["method", "domain", "x"]), inner, max_size=2)
    ),
    max_leaves=4,
)
_sections = {
    "server": ["listen", "advertise", "record_route", "workers", "log_level", "max_message_size"],
    "transaction": ["fr_timer", "fr_inv_timer", "t1", "t2", "t4", "wait_timer"],
    "admin": ["listen", "token"],
    "dispatcher": ["db_url", "list_file", "ping_reply_codes", "probing_mode", "hash_header"],
    "route": ["set", "algorithm", "failover_on", "mark_failed", "match", "mode"],
}


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, Any]:
    section = draw(st.sampled_from(sorted(_sections)))
    table = draw(st.dictionaries(st.sampled_from(_sections[section]), _toml_values, max_size=3))
    return {section: [table] if section == "route" else table}


@given(_documents())
def test_any_document_gives_a_config_or_a_config_error(doc: dict[str, Any]) -> None:
    try:
        parse_config(doc)
    except ConfigError as error:
        assert str(error).startswith("config: ")
        assert "\n" not in str(error)
        assert error.key


def test_algorithm_names_in_the_config_are_the_registrys() -> None:
    from sipdispatch.dispatcher.algorithms import REGISTRY

    assert {name: n for n, alg in REGISTRY.items() for name in (alg.name,)} == ALGORITHM_NAMES


def test_wait_timer_sets_the_cores_timers_d_j_l_m() -> None:
    from sipdispatch.server import timers_from

    timers = timers_from(parse_config({"transaction": {"wait_timer": 2500}}))
    assert timers.timer_wait == timers.timer_d == 2.5
    assert timers.timer_64t1 == 32.0  # timer H and the CANCEL wait stay 64*T1


@pytest.mark.parametrize("letters", ["i", "t", "tp", "ip", "a", "ap", "d", "pi", "IP"])
def test_mark_failed_takes_every_ds_mark_dst_letter_combination(letters: str) -> None:
    assert parse_config(route(mark_failed=letters)).routes[0].mark_failed == letters.lower()


def test_mark_failed_x_is_not_a_ds_mark_dst_letter_and_the_error_says_what_to_write() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(route(mark_failed="tx"))
    assert info.value.key == "route[0].mark_failed"
    assert 'write "t"' in str(info.value), str(info.value)
