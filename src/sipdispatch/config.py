"""Configuration for ``sipdispatch run``: a TOML file turned into a frozen, validated `Config`.

The file format is SPEC §2; every key, its default and its Kamailio counterpart is listed in
``docs/configuration.md``. This module only reads the configuration file: it does not resolve
host names, open the destination store or bind sockets. A problem is reported as one
`ConfigError` whose message names the dotted key, the value given and what is allowed::

    config: transaction.fr_timer = -5: must be an integer >= 1 (milliseconds)

Only the first problem found is reported.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from sipdispatch.routing import RouteMatch, RouteMode, RouteRule

__all__ = [
    "ALGORITHM_NAMES",
    "DEFAULT_CONFIG_FILE",
    "AdminConfig",
    "Config",
    "ConfigError",
    "DispatcherConfig",
    "ListenAddr",
    "RouteMatch",
    "RouteMode",
    "RouteRule",
    "ServerConfig",
    "StoreKind",
    "TransactionConfig",
    "default_config",
    "load_config",
    "parse_config",
]

# --------------------------------------------------------------------------------------------
# Named constants and their origin.
# --------------------------------------------------------------------------------------------

DEFAULT_CONFIG_FILE: Final = "sipdispatch.toml"
"""File `sipdispatch run` reads when started without ``--config`` (SPEC §1), if it exists."""

SIP_PORT: Final = 5060
"""Default port for udp/tcp (RFC 3261 §19.1.2)."""
SIPS_PORT: Final = 5061
"""Default port for tls (RFC 3261 §19.1.2)."""

T1_MS: Final = 500
"""RTT estimate (RFC 3261 §17.1.1.1, Table 4; Kamailio ``tm.retr_timer1``)."""
T2_MS: Final = 4000
"""Maximum retransmit interval for non-INVITE requests and INVITE responses (RFC 3261 Table 4;
Kamailio ``tm.retr_timer2``)."""
T4_MS: Final = 5000
WAIT_TIMER_MS: Final = 5000
"""Maximum time a message remains in the network (RFC 3261 Table 4)."""
FR_TIMER_MS: Final = 30000
"""Kamailio ``tm.fr_timer`` default."""
FR_INV_TIMER_MS: Final = 120000
"""Kamailio ``tm.fr_inv_timer`` default."""

MAX_MESSAGE_SIZE: Final = 65535
"""Largest UDP payload, and Kamailio's receive buffer (``BUF_SIZE``)."""
MIN_MESSAGE_SIZE: Final = 1300
"""RFC 3261 §18.1.1 uses 1300 bytes as the path-MTU threshold; accepting less would reject
ordinary requests."""
MAX_MAX_MESSAGE_SIZE: Final = 1 << 20
"""Upper bound for ``server.max_message_size`` (1 MiB): a peer must not make us buffer more
(SPEC §8)."""

DEFAULT_DB_URL: Final = "sqlite:///sipdispatch.db"
"""SPEC §1 / §2: an SQLite file ``./sipdispatch.db`` relative to the working directory."""
DEFAULT_PING_FROM: Final = "sip:dispatcher@localhost"
"""Kamailio ``dispatcher.ds_ping_from`` default."""
DEFAULT_FAILOVER_ON: Final = ("5xx", "404", "408")
"""SPEC §2 example values, used as the default of ``route.failover_on``."""

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LISTEN_PROTOS: Final = ("udp", "tcp", "tls")
SUPPORTED_LISTEN_PROTOS: Final = ("udp", "tcp")
ROUTE_MODES: Final = ("dst", "domain")
MARK_FAILED_STATES: Final = ("ip", "tx", "dx", "ap", "ax")
"""States ``ds_mark_dst`` accepts: first letter a/i/d/t, second p (probing) or x (not)."""

ALGORITHM_NAMES: Final[dict[str, int]] = {
    "hash-callid": 0,
    "hash-from": 1,
    "hash-to": 2,
    "hash-ruri": 3,
    "round-robin": 4,
    "hash-auth-user": 5,
    "random": 6,
    "hash-header": 7,
    "priority": 8,
    "weight": 9,
    "call-load": 10,
    "relative-weight": 11,
    "parallel": 12,
    "latency": 13,
    "round-robin-serial": 14,
    "priority-weight": 15,
}
"""Names accepted for ``route.algorithm``; numbers are Kamailio's ``ds_select_dst`` algorithms."""

ALGORITHM_HASH_HEADER: Final = 7
ALGORITHM_ROUND_ROBIN: Final = 4

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DIGITS = re.compile(r"[0-9]+")
_IPV4_LIKE = re.compile(r"[0-9.]+")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
_METHOD = re.compile(r"[A-Z]+")
# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_SQL_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DB_URL = re.compile(r"(?P<dialect>[a-z]+)(?:\+[a-z0-9_]+)?://.*", re.DOTALL)
_DB_DIALECTS: Final = ("sqlite", "mysql", "mariadb", "postgresql", "postgres")
_FAILOVER_CLASS = re.compile(r"([3-6])xx", re.IGNORECASE)
_TOML_POSITION = re.compile(r"\s*\(at (line \d+, column \d+|end of document)\)$")

_SHOW_MAX = 60
"""Values longer than this are cut in error messages to keep them on one readable line."""

StoreKind = Literal["list", "db"]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ConfigError(Exception):
    """The configuration cannot be used; ``str(error)`` is a one-line message for the operator.

    ``key`` is the dotted key at fault (``transaction.fr_timer``, ``route[2].algorithm``), or
    None when the file itself cannot be read or parsed. ``source`` names the file.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str = "<config>") -> None:
        super().__init__(message)
        self.key = key
        self.source = source


class _Missing:
    """Marker for a required key that is absent."""


_MISSING: Final = _Missing()


class _Invalid(Exception):
    """Raised by the parsing helpers; `parse_config` turns it into a `ConfigError`."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(key)
        self.key = key
        self.value = value
        self.allowed = allowed


def _show(value: object) -> str:
    """Render a TOML value the way it would be written in the file, on one short line."""
    text = _render(value)
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 3] + "..."
    return text


def _render(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(str(k))} = {_render(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    return str(value)


def _key(name: str) -> str:
    """A key as TOML would spell it: bare when possible, quoted otherwise."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _format_error(error: _Invalid, source: str) -> str:
    where = "" if source == "<config>" else f"{source}: "
    if isinstance(error.value, _Missing):
        return f"config: {where}{error.key} is missing: {error.allowed}"
    return f"config: {where}{error.key} = {_show(error.value)}: {error.allowed}"


# --------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------


def _parse_host(host: str, *, bracketed: bool) -> str:
    """Validate a host and return it normalised (IPv6 without brackets, names lower-case).

    Raises ValueError with the reason.
    """
    if bracketed:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"[{host}] is not a valid IPv6 address") from None
    if not host:
        raise ValueError("the host is empty")
    if _IPV4_LIKE.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"{host} is not a valid IPv4 address") from None
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a valid IPv4 address, host name or [IPv6] address")
    return host.lower()


def _parse_port(text: str) -> int:
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {text!r} is not an integer 1..65535")
    return int(text)


def _split_host_port(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` where host is IPv4, a name or ``[IPv6]``. Raises ValueError."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("missing ']' after the IPv6 address")
        host = _parse_host(text[1:end], bracketed=True)
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after the IPv6 address")
        return host, _parse_port(rest[1:])
    if text.count(":") > 1:
        raise ValueError("an IPv6 address must be written in brackets, e.g. [::1]")
    name, colon, port = text.partition(":")
    host = _parse_host(name, bracketed=False)
    return host, (_parse_port(port) if colon else None)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also as IPv4-mapped) and the name ``localhost``."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class ListenAddr:
    """One SIP socket to listen on: ``proto:host:port``."""

    proto: str
    """``udp``, ``tcp`` or ``tls`` (lower case)."""
    host: str
    """IPv4 address, lower-case host name, or IPv6 address *without* brackets (``::1``)."""
    port: int
    """1..65535."""

    def __str__(self) -> str:
        return f"{self.proto}:{_bracket(self.host)}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> ListenAddr:
        """Parse ``proto:host[:port]``; the port defaults to 5060 (5061 for tls).

        ``tls`` is accepted here; `parse_config` rejects it until TLS is implemented.
        Raises ValueError saying what is wrong.
        """
        proto, colon, rest = text.partition(":")
        if not colon or proto.lower() not in LISTEN_PROTOS:
            raise ValueError(
                "must be proto:host[:port] with proto udp, tcp or tls, "
                "e.g. udp:127.0.0.1:5060 or tcp:[::1]"
            )
        proto = proto.lower()
        host, port = _split_host_port(rest)
        if port is None:
            port = SIPS_PORT if proto == "tls" else SIP_PORT
        return cls(proto, host, port)


# --------------------------------------------------------------------------------------------
# Configuration dataclasses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: SIP sockets and process model."""

    listen: tuple[ListenAddr, ...] = (
        ListenAddr("udp", "127.0.0.1", SIP_PORT),
        ListenAddr("tcp", "127.0.0.1", SIP_PORT),
    )
    """SIP sockets, in the order given; never empty, no duplicates."""
    advertise_host: str | None = None
    """Host written in Via / Record-Route instead of the socket's address (None = the socket's).
    IPv6 without brackets."""
    advertise_port: int | None = None
    """Port written with ``advertise_host`` (None = the socket's port)."""
    record_route: bool = True
    """Add a Record-Route (with ``lr``) to dialog-creating requests."""
    workers: int = 1
    """Processes sharing the SIP sockets (Kamailio ``children``)."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error`` (sipdispatch addition)."""
    max_message_size: int = MAX_MESSAGE_SIZE
    """Largest SIP message accepted, in bytes; larger ones get 513 (sipdispatch addition)."""


@dataclass(frozen=True, slots=True)
class TransactionConfig:
    """``[transaction]``: RFC 3261 timers, in milliseconds, with Kamailio ``tm`` names."""

    fr_timer: int = FR_TIMER_MS
    """No final (and no provisional) response within this time: the branch times out with 408
    (Kamailio ``tm.fr_timer``)."""
    fr_inv_timer: int = FR_INV_TIMER_MS
    """INVITE: no final response this long after a provisional one (``tm.fr_inv_timer``)."""
    t1: int = T1_MS
    """RFC 3261 T1, RTT estimate (``tm.retr_timer1``)."""
    t2: int = T2_MS
    """RFC 3261 T2, retransmission cap (``tm.retr_timer2``); >= t1."""
    t4: int = T4_MS
    """RFC 3261 T4, time a message can stay in the network (sipdispatch addition)."""
    wait_timer: int = WAIT_TIMER_MS
    """How long a finished transaction stays to absorb retransmissions: RFC 3261 Timers
    D, J, L and M, which are 32 s in the RFC (Kamailio ``tm.wt_timer``, 5 s)."""


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """``[admin]``: the JSON-RPC (POST /RPC) and metrics (GET /metrics) HTTP listener."""

    host: str = "127.0.0.1"
    """Address to listen on; IPv6 without brackets."""
    port: int = 5080
    """TCP port."""
    token: str = ""
    """Bearer token required on requests; "" = none (only allowed on a loopback address)."""

    @property
    def listen(self) -> str:
        """``host:port`` as written in the file (IPv6 bracketed)."""
        return f"{_bracket(self.host)}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """The listener is reachable only from this machine."""
        return _is_loopback(self.host)


@dataclass(frozen=True, slots=True)
class DispatcherConfig:
    """``[dispatcher]``: destination store, probing and algorithm settings (Kamailio
    ``dispatcher`` module parameters)."""

    list_file: str = ""
    """Kamailio ``dispatcher.list`` file; when set it is the store (``list_file``)."""
    db_url: str = DEFAULT_DB_URL
    """SQLAlchemy-style URL of the store when ``list_file`` is empty (``db_url``)."""
    table_name: str = "dispatcher"
    """SQL table holding the destinations (``table_name``)."""
    ping_interval: int = 10
    """Seconds between OPTIONS pings; 0 = no pings (``ds_ping_interval``)."""
    ping_method: str = "OPTIONS"
    """SIP method of the pings (``ds_ping_method``)."""
    ping_from: str = DEFAULT_PING_FROM
    """From URI of the pings (``ds_ping_from``)."""
    ping_reply_codes: tuple[int, ...] = ()
    """Extra reply codes counting as alive, besides 2xx (``ds_ping_reply_codes`` ``code=``)."""
    ping_reply_classes: tuple[int, ...] = ()
    """Extra reply classes (4 = 4xx) counting as alive (``ds_ping_reply_codes`` ``class=``)."""
    probing_threshold: int = 1
    """Failed pings in a row before a destination becomes inactive (``ds_probing_threshold``)."""
    inactive_threshold: int = 1
    """Answered pings in a row before it is active again (``ds_inactive_threshold``)."""
    probing_mode: int = 0
    """Which destinations are pinged, 0..3 as Kamailio (``ds_probing_mode``)."""
    ping_latency_stats: bool = False
    """Keep latency statistics from the pings (``ds_ping_latency_stats``)."""
    latency_estimator_alpha: int = 100
    """EWMA weight of a new latency sample, per mille (``ds_latency_estimator_alpha``)."""
    hash_size: int = 0
    """Call-load table size as a power of two for algorithm 10 (``ds_hash_size``)."""
    hash_expire: int = 7200
    """Seconds a confirmed call counts towards load without a BYE (``ds_hash_expire``)."""
    hash_initexpire: int = 7200
    """Seconds an unconfirmed call counts towards load (``ds_hash_initexpire``)."""
    use_default: bool = False
    """The last destination of a set is used only when all others failed (``use_default``)."""
    failover: bool = True
    """Keep the rest of the set for ``ds_next_dst`` failover (``flags`` value 2)."""
    hash_user_only: bool = False
    """URI hashes use only the user part (``flags`` value 1)."""
    keep_state_on_reload: bool = True
    """Unchanged destinations keep state, latency and load across a reload."""
    hash_header: str = ""
    """Header whose value algorithm 7 hashes (Kamailio ``hash_pvar``; sipdispatch addition)."""

    @property
    def store_kind(self) -> StoreKind:
        """``"list"`` when ``list_file`` is set, else ``"db"``."""
        return "list" if self.list_file else "db"

    def is_ping_reply_alive(self, code: int) -> bool:
        """A ping answered with `code` shows the destination alive: any 2xx, or a code or class
        listed in ``ping_reply_codes``."""
        return (
            200 <= code <= 299
            or code in self.ping_reply_codes
            or code // 100 in self.ping_reply_classes
        )


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one sipdispatch process."""

    server: ServerConfig = ServerConfig()
    """``[server]``."""
    transaction: TransactionConfig = TransactionConfig()
    """``[transaction]``."""
    admin: AdminConfig = AdminConfig()
    """``[admin]``."""
    dispatcher: DispatcherConfig = DispatcherConfig()
    """``[dispatcher]``."""
    routes: tuple[RouteRule, ...] = ()
    """``[[route]]`` rules in file order; first match wins."""


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------


class _Table:
    """A TOML table being read: knows its dotted path and rejects unknown keys up front."""

    __slots__ = ("data", "path")

    def __init__(self, data: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        self.data = data
        self.path = path
        for name, value in data.items():
            if name not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                guess = f" (did you mean {hint[0]}?)" if hint else ""
                raise _Invalid(
                    self.key(name), value, f"unknown key{guess}; allowed: {', '.join(allowed)}"
                )

    def key(self, name: str) -> str:
        return f"{self.path}.{_key(name)}" if self.path else _key(name)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, default: object) -> object:
        return self.data.get(name, default)

    def fail(self, name: str, allowed: str) -> _Invalid:
        return _Invalid(self.key(name), self.data.get(name, _MISSING), allowed)

    def get_int(
        self,
        name: str,
        default: int | _Missing,
        *,
        lo: int | None = None,
        hi: int | None = None,
        unit: str = "",
    ) -> int:
        value = self.data.get(name, default)
        if lo is not None and hi is not None:
            allowed = f"must be an integer {lo}..{hi}"
        elif lo is not None:
            allowed = f"must be an integer >= {lo}"
        else:
            allowed = "must be an integer"
        if unit:
            allowed += f" ({unit})"
        # TOML booleans are not integers even though Python's bool subclasses int.
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid(self.key(name), value, allowed)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _Invalid(self.key(name), value, allowed)
        return value

    def get_str(self, name: str, default: str) -> str:
        value = self.data.get(name, default)
        if not isinstance(value, str):
            raise _Invalid(self.key(name), value, "must be a string")
        return value

    def get_bool(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise _Invalid(self.key(name), value, "must be true or false")
        return value

    def get_choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """A string from `choices`, compared case-insensitively, returned lower-case."""
        allowed = "must be one of " + ", ".join(json.dumps(c) for c in choices)
        value = self.data.get(name, default)
        if not isinstance(value, str) or value.lower() not in choices:
            raise _Invalid(self.key(name), value, allowed)
        return value.lower()

    def table(self, name: str, allowed: tuple[str, ...], *, example: str = "") -> _Table:
        value = self.data.get(name, {})
        if not isinstance(value, Mapping):
            example = example or f"[{self.key(name)}]"
            raise _Invalid(self.key(name), value, f"must be a table, e.g. {example}")
        return _Table(value, self.key(name), allowed)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------

_TOP_KEYS: Final = ("server", "transaction", "admin", "dispatcher", "route")
_SERVER_KEYS: Final = (
    "listen",
    "advertise",
    "record_route",
    "workers",
    "log_level",
    "max_message_size",
)
_TRANSACTION_KEYS: Final = ("fr_timer", "fr_inv_timer", "t1", "t2", "t4", "wait_timer")
_ADMIN_KEYS: Final = ("listen", "token")
_DISPATCHER_KEYS: Final = (
    "list_file",
    "db_url",
    "table_name",
    "ping_interval",
    "ping_method",
    "ping_from",
    "ping_reply_codes",
    "probing_threshold",
    "inactive_threshold",
    "probing_mode",
    "ping_latency_stats",
    "latency_estimator_alpha",
    "hash_size",
    "hash_expire",
    "hash_initexpire",
    "use_default",
    "failover",
    "hash_user_only",
    "keep_state_on_reload",
    "hash_header",
)
_ROUTE_KEYS: Final = (
    "match",
    "set",
    "algorithm",
    "mode",
    "limit",
    "failover_on",
    "mark_failed",
    "no_destination",
)
_MATCH_KEYS: Final = ("method", "domain", "user_prefix", "source_set")


def _parse_server(t: _Table) -> ServerConfig:
    d = ServerConfig()
    listen_allowed = 'must be a non-empty list of "proto:host[:port]" strings (proto udp|tcp)'
    raw = t.get("listen", [str(a) for a in d.listen])
    if not isinstance(raw, list) or not raw:
        raise t.fail("listen", listen_allowed)
    addrs: list[ListenAddr] = []
    for i, item in enumerate(raw):
        key = f"{t.key('listen')}[{i}]"
        if not isinstance(item, str):
            raise _Invalid(key, item, listen_allowed)
        try:
            addr = ListenAddr.parse(item)
        except ValueError as exc:
            raise _Invalid(key, item, str(exc)) from None
        if addr.proto not in SUPPORTED_LISTEN_PROTOS:
            raise _Invalid(key, item, "tls is not supported yet; use udp or tcp")
        if addr in addrs:
            raise _Invalid(key, item, f"duplicate of {t.key('listen')}[{addrs.index(addr)}]")
        addrs.append(addr)

    advertise = t.get_str("advertise", "")
    advertise_host: str | None = None
    advertise_port: int | None = None
    if advertise:
        try:
            advertise_host, advertise_port = _split_host_port(advertise)
        except ValueError as exc:
            raise t.fail("advertise", f'must be "" or host[:port]: {exc}') from None

    workers = t.get_int("workers", d.workers, lo=1, unit="processes")
    if workers != 1:
        # Several processes need call load, round-robin position and destination
        # state shared between them; until that exists, refuse rather than
        # silently run one process.
        raise t.fail("workers", "only 1 is supported yet (several worker processes are planned)")
    return ServerConfig(
        listen=tuple(addrs),
        advertise_host=advertise_host,
        advertise_port=advertise_port,
        record_route=t.get_bool("record_route", d.record_route),
        workers=workers,
        log_level=t.get_choice("log_level", d.log_level, LOG_LEVELS),
        max_message_size=t.get_int(
            "max_message_size",
            d.max_message_size,
            lo=MIN_MESSAGE_SIZE,
            hi=MAX_MAX_MESSAGE_SIZE,
            unit="bytes",
        ),
    )


def _parse_transaction(t: _Table) -> TransactionConfig:
    d = TransactionConfig()
    ms = "milliseconds"
    t1 = t.get_int("t1", d.t1, lo=1, unit=ms)
    return TransactionConfig(
        fr_timer=t.get_int("fr_timer", d.fr_timer, lo=1, unit=ms),
        fr_inv_timer=t.get_int("fr_inv_timer", d.fr_inv_timer, lo=1, unit=ms),
        t1=t1,
        t2=t.get_int("t2", d.t2, lo=t1, unit=f"{ms}, not less than t1"),
        t4=t.get_int("t4", d.t4, lo=1, unit=ms),
        wait_timer=t.get_int("wait_timer", d.wait_timer, lo=1, unit=ms),
    )


def _parse_admin(t: _Table) -> AdminConfig:
    d = AdminConfig()
    listen = t.get_str("listen", d.listen)
    try:
        host, port = _split_host_port(listen)
    except ValueError as exc:
        raise t.fail("listen", f"must be host:port, e.g. 127.0.0.1:5080: {exc}") from None
    if port is None:
        raise t.fail("listen", "must be host:port, e.g. 127.0.0.1:5080: the port is missing")
    token = t.get_str("token", d.token)
    admin = AdminConfig(host=host, port=port, token=token)
    # SPEC §2: the RPC interface can reconfigure the proxy, so off this machine it needs a token.
    if not token and not admin.is_loopback:
        raise _Invalid(
            t.key("token"),
            token,
            f"must be set when admin.listen ({admin.listen}) is not a loopback address",
        )
    return admin


def _parse_reply_codes(t: _Table) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Kamailio ``ds_ping_reply_codes``: ``code=404;class=4``, ';'-separated, any order."""
    text = t.get_str("ping_reply_codes", "")
    allowed = 'must be ";"-separated code=NNN (200..699) or class=N (2..6), e.g. "code=404;class=4"'
    codes: list[int] = []
    classes: list[int] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, number = (s.strip() for s in part.partition("="))
        if not eq or not _DIGITS.fullmatch(number):
            raise t.fail("ping_reply_codes", allowed)
        value = int(number)
        if name.lower() == "code" and 200 <= value <= 699:
            if value not in codes:
                codes.append(value)
        elif name.lower() == "class" and 2 <= value <= 6:
            if value not in classes:
                classes.append(value)
        else:
            raise t.fail("ping_reply_codes", allowed)
    return tuple(codes), tuple(classes)


def _parse_dispatcher(t: _Table) -> DispatcherConfig:
    d = DispatcherConfig()
    list_file = t.get_str("list_file", d.list_file)
    db_url = t.get_str("db_url", d.db_url)
    if db_url:
        match = _DB_URL.fullmatch(db_url)
        if match is None or match["dialect"] not in _DB_DIALECTS:
            raise t.fail(
                "db_url",
                "must be a URL sqlite:///PATH, mysql://USER:PW@HOST:PORT/DB "
                "or postgresql://USER:PW@HOST/DB",
            )
    if list_file and t.has("db_url") and db_url and db_url != DEFAULT_DB_URL:
        raise t.fail("db_url", "cannot be used together with dispatcher.list_file; choose one")
    if not list_file and not db_url:
        raise t.fail("db_url", "must be set when dispatcher.list_file is empty")

    table_name = t.get_str("table_name", d.table_name)
    if not _SQL_IDENTIFIER.fullmatch(table_name):
        raise t.fail("table_name", "must be an SQL identifier: letters, digits, _ (max 63)")

    ping_method = t.get_str("ping_method", d.ping_method)
    if not _METHOD.fullmatch(ping_method):
        raise t.fail("ping_method", "must be a SIP method name in upper-case letters")

    ping_from = t.get_str("ping_from", d.ping_from)
    scheme, _, rest = ping_from.partition(":")
    if scheme.lower() not in ("sip", "sips") or not rest or any(c.isspace() for c in rest):
        raise t.fail("ping_from", "must be a SIP URI starting with sip: or sips:")

    codes, classes = _parse_reply_codes(t)

    hash_header = t.get_str("hash_header", d.hash_header)
    if hash_header and not _TOKEN.fullmatch(hash_header):
        raise t.fail("hash_header", 'must be "" or a SIP header name, e.g. "X-Customer"')

    return DispatcherConfig(
        list_file=list_file,
        db_url=db_url,
        table_name=table_name,
        ping_interval=t.get_int("ping_interval", d.ping_interval, lo=0, unit="seconds, 0 = off"),
        ping_method=ping_method,
        ping_from=ping_from,
        ping_reply_codes=codes,
        ping_reply_classes=classes,
        probing_threshold=t.get_int("probing_threshold", d.probing_threshold, lo=1),
        inactive_threshold=t.get_int("inactive_threshold", d.inactive_threshold, lo=1),
        probing_mode=t.get_int("probing_mode", d.probing_mode, lo=0, hi=3),
        ping_latency_stats=t.get_bool("ping_latency_stats", d.ping_latency_stats),
        latency_estimator_alpha=t.get_int(
            "latency_estimator_alpha", d.latency_estimator_alpha, lo=0, hi=1000, unit="per mille"
        ),
        hash_size=t.get_int("hash_size", d.hash_size, lo=0, hi=16, unit="power of two"),
        hash_expire=t.get_int("hash_expire", d.hash_expire, lo=1, unit="seconds"),
        hash_initexpire=t.get_int("hash_initexpire", d.hash_initexpire, lo=1, unit="seconds"),
        use_default=t.get_bool("use_default", d.use_default),
        failover=t.get_bool("failover", d.failover),
        hash_user_only=t.get_bool("hash_user_only", d.hash_user_only),
        keep_state_on_reload=t.get_bool("keep_state_on_reload", d.keep_state_on_reload),
        hash_header=hash_header,
    )


def _parse_match(route: _Table) -> RouteMatch:
    if not route.has("match"):
        return RouteMatch()
    t = route.table("match", _MATCH_KEYS, example='match = { method = ["INVITE"] }')

    methods: tuple[str, ...] | None = None
    if t.has("method"):
        raw = t.get("method", None)
        items = [raw] if isinstance(raw, str) else raw
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(m, str) and _METHOD.fullmatch(m) for m in items)
        ):
            raise t.fail(
                "method", 'must be a method name or a non-empty list of them, e.g. ["INVITE"]'
            )
        methods = tuple(dict.fromkeys(items))

    domain: str | None = None
    if t.has("domain"):
        domain = t.get_str("domain", "")
        if not domain:
            raise t.fail("domain", "must be a non-empty domain name (leave it out to match any)")
        domain = domain.lower()

    user_prefix: str | None = None
    if t.has("user_prefix"):
        user_prefix = t.get_str("user_prefix", "")
        if not user_prefix or any(c.isspace() for c in user_prefix):
            raise t.fail(
                "user_prefix",
                "must be a non-empty string without spaces (leave it out to match any)",
            )

    source_set: int | None = None
    if t.has("source_set"):
        source_set = t.get_int("source_set", 0, lo=0, unit="destination set id")

    return RouteMatch(methods, domain, user_prefix, source_set)


def _parse_algorithm(t: _Table) -> int:
    value = t.get("algorithm", ALGORITHM_ROUND_ROBIN)
    if isinstance(value, str) and value.lower() in ALGORITHM_NAMES:
        return ALGORITHM_NAMES[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 15:
        return value
    raise t.fail("algorithm", "must be an integer 0..15 or one of " + ", ".join(ALGORITHM_NAMES))


def _parse_failover_on(t: _Table) -> tuple[frozenset[int], frozenset[int]]:
    raw = t.get("failover_on", list(DEFAULT_FAILOVER_ON))
    allowed = 'must be a list of reply codes 300..699 or classes "3xx".."6xx", e.g. ["5xx", "404"]'
    each = 'must be a reply code "300".."699" or a class "3xx".."6xx" (a string)'
    if not isinstance(raw, list):
        raise t.fail("failover_on", allowed)
    codes: set[int] = set()
    classes: set[int] = set()
    for i, item in enumerate(raw):
        key = f"{t.key('failover_on')}[{i}]"
        if not isinstance(item, str):
            raise _Invalid(key, item, each)
        item = item.strip()
        cls = _FAILOVER_CLASS.fullmatch(item)
        if cls:
            classes.add(int(cls[1]))
        elif _DIGITS.fullmatch(item) and len(item) == 3 and 300 <= int(item) <= 699:
            codes.add(int(item))
        else:
            raise _Invalid(key, item, each)
    return frozenset(codes), frozenset(classes)


def _parse_route(t: _Table, dispatcher: DispatcherConfig) -> RouteRule:
    match = _parse_match(t)
    set_id = t.get_int("set", _MISSING, lo=0, unit="destination set id, required")
    algorithm = _parse_algorithm(t)
    if algorithm == ALGORITHM_HASH_HEADER and not dispatcher.hash_header:
        raise t.fail("algorithm", "algorithm 7 (hash-header) needs dispatcher.hash_header set")
    mode = t.get_choice("mode", "dst", ROUTE_MODES)
    route_mode: RouteMode = "domain" if mode == "domain" else "dst"
    limit = t.get_int("limit", 0, lo=0, unit="0 = whole set")
    codes, classes = _parse_failover_on(t)
    mark_failed = t.get_str("mark_failed", "ip")
    if mark_failed and mark_failed.lower() not in MARK_FAILED_STATES:
        raise t.fail("mark_failed", 'must be "" or one of ' + ", ".join(MARK_FAILED_STATES))
    no_destination = t.get_int("no_destination", 503, lo=300, hi=699, unit="SIP reply code")
    return RouteRule(
        set_id=set_id,
        match=match,
        algorithm=algorithm,
        mode=route_mode,
        limit=limit,
        failover_codes=codes,
        failover_classes=classes,
        mark_failed=mark_failed.lower(),
        no_destination=no_destination,
    )


def _parse_routes(root: _Table, dispatcher: DispatcherConfig) -> tuple[RouteRule, ...]:
    raw = root.get("route", [])
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) for r in raw):
        raise root.fail("route", "must be an array of tables: write each rule as [[route]]")
    return tuple(
        _parse_route(_Table(r, f"route[{i}]", _ROUTE_KEYS), dispatcher) for i, r in enumerate(raw)
    )


def _check_admin_vs_sip(server: ServerConfig, admin: AdminConfig) -> None:
    """The admin HTTP listener must not take a TCP port a SIP socket needs."""
    for i, addr in enumerate(server.listen):
        same_host = addr.host == admin.host or _is_wildcard(addr.host) or _is_wildcard(admin.host)
        if addr.proto in ("tcp", "tls") and addr.port == admin.port and same_host:
            raise _Invalid(
                "admin.listen", admin.listen, f"conflicts with server.listen[{i}] ({addr})"
            )


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a decoded TOML document and build a `Config`.

    `source` names the origin (the file path) in error messages.
    Raises `ConfigError` for the first problem found.
    """
    try:
        root = _Table(data, "", _TOP_KEYS)
        server = _parse_server(root.table("server", _SERVER_KEYS))
        transaction = _parse_transaction(root.table("transaction", _TRANSACTION_KEYS))
        admin = _parse_admin(root.table("admin", _ADMIN_KEYS))
        dispatcher = _parse_dispatcher(root.table("dispatcher", _DISPATCHER_KEYS))
        routes = _parse_routes(root, dispatcher)
        _check_admin_vs_sip(server, admin)
    except _Invalid as exc:
        raise ConfigError(_format_error(exc, source), key=exc.key, source=source) from None
    return Config(server, transaction, admin, dispatcher, routes)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML configuration file. Raises `ConfigError`."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"config: {source}: cannot read: {reason}", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config: {source}: not valid UTF-8 (byte {exc.start})", source=source
        ) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        if position:
            where = position[1]
            if where == "end of document":
                where = "at end of document"
            message = f"{where}: {message[: position.start()]}"
        raise ConfigError(f"config: {source}: invalid TOML: {message}", source=source) from None
    return parse_config(data, source)


def default_config() -> Config:
    """The built-in configuration used when there is no file (SPEC §1)."""
    return Config()
