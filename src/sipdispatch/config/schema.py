"""The configuration schema: one frozen pydantic dataclass per TOML table.

Every field is typed, constrained and documented here, and this is the only list of keys:
the loader validates a file against these classes, and ``docs/configuration.md`` lists the
keys from them (`sipdispatch.config.docs`).

A field is read from the TOML key of its name, or from its ``validation_alias`` when the
file spells it differently (``set`` for `RouteRule.set_id`); a file is validated with
``by_name=False``, so it cannot use the attribute name instead. A few keys give two fields
(``advertise`` gives `ServerConfig.advertise_host` and ``advertise_port``); those fields
parse the key's text only when a file is validated (validation context `FILE_CONTEXT`), and
take their own values when the objects are built in Python (``AdminConfig("::1", 0)``).

The classes are real dataclasses: positional and keyword construction, `dataclasses.replace`
and equality work as usual, and every construction is validated.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from typing import Annotated, Final, Literal, get_args

from pydantic import (
    AliasPath,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from sipdispatch.config.values import (
    ALGORITHM_ALLOWED,
    EXTRA_ATTRS_ALLOWED,
    FAILOVER_ON_ALLOWED,
    HASH_HEADER_ALLOWED,
    HOOK_ALLOWED,
    REPLY_CODES_ALLOWED,
    SQL_IDENTIFIER_ALLOWED,
    URL_FORMS,
    Invalid,
    bracket,
    is_loopback,
    is_wildcard,
    parse_algorithm,
    parse_db_url,
    parse_extra_attrs,
    parse_failover_on,
    parse_hash_header,
    parse_hook_name,
    parse_host_port,
    parse_method,
    parse_reply_codes,
    parse_sip_uri,
    parse_sql_identifier,
    show_db_url,
)
from sipdispatch.dispatcher.states import MARK_LETTERS_ALLOWED, parse_mark_letters
from sipdispatch.sip.uri import DEFAULT_SIP_PORT, DEFAULT_SIPS_PORT

__all__ = [
    "FILE_CONTEXT",
    "AdminConfig",
    "ClusterConfig",
    "Config",
    "DispatcherConfig",
    "EventsConfig",
    "FallbackSet",
    "Key",
    "ListenAddr",
    "LogConfig",
    "RouteMatch",
    "RouteMode",
    "RouteRule",
    "ServerConfig",
    "StoreKind",
    "TransactionConfig",
]

# --------------------------------------------------------------------------------------------
# Named constants and their origin.
# --------------------------------------------------------------------------------------------

T1_MS: Final = 500
"""RTT estimate (RFC 3261 §17.1.1.1, Table 4; Kamailio ``tm.retr_timer1``)."""
T2_MS: Final = 4000
"""Maximum retransmit interval for non-INVITE requests and INVITE responses (RFC 3261 Table 4;
Kamailio ``tm.retr_timer2``)."""
T4_MS: Final = 5000
"""Maximum time a message remains in the network (RFC 3261 Table 4)."""
WAIT_TIMER_MS: Final = 5000
"""Kamailio ``tm.wt_timer`` default (the RFC's Timers D, J, L and M are 32 s)."""
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
"""Upper bound for ``server.max_message_size`` (1 MiB): a peer must not make us buffer
more than this for one message."""

DEFAULT_DB_URL: Final = "sqlite:///sipdispatch.db"
"""An SQLite file ``./sipdispatch.db`` relative to the working directory."""
DEFAULT_PING_FROM: Final = "sip:dispatcher@localhost"
"""Kamailio ``dispatcher.ds_ping_from`` default."""
DEFAULT_ALGORITHM: Final = parse_algorithm("round-robin")
"""Kamailio's algorithm 4, the reference setup's ``ds_select_dst("1", "4")``."""
ALGORITHM_HASH_HEADER: Final = parse_algorithm("hash-header")
"""Kamailio's algorithm 7, which needs ``dispatcher.hash_header``."""
ALGORITHM_PARALLEL: Final = parse_algorithm("parallel")
"""Kamailio's algorithm 12 (parallel forking), which a fallback set cannot use."""

ListenProto = Literal["udp", "tcp", "tls"]
_LISTEN_PROTOS: Final[dict[str, ListenProto]] = {"udp": "udp", "tcp": "tcp", "tls": "tls"}
StoreKind = Literal["list", "db"]
RouteMode = Literal["dst", "domain"]
LogLevel = Literal["debug", "info", "warning", "error"]
ConsoleMode = Literal["read-write", "read-only", "off"]

# --------------------------------------------------------------------------------------------
# How a field appears in the file
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    """What a field says about its TOML key, besides its type and constraints (Annotated
    metadata read by the loader's messages and by the reference in the docs)."""

    unit: str = ""
    """Unit or meaning of an integer, shown after the range: ``milliseconds``."""
    allowed: str = ""
    """What is allowed, when the type and constraints do not say it well enough."""
    kamailio: str = ""
    """The Kamailio parameter, function or module it corresponds to; "" = none."""
    toml_type: str = ""
    """The key's type as written in the file, when the field's own type is not it."""
    toml_default: str = ""
    """The key's default as written in the file, when the field's default is not it."""
    doc: str = ""
    """The key's description when the field is not the only one the key gives (the field's
    docstring then describes the field)."""


_CONFIG: Final = ConfigDict(
    extra="forbid", use_attribute_docstrings=True, validate_by_name=True, validate_by_alias=True
)
"""Unknown keys are errors; field docstrings are the descriptions; a field whose key is
spelt differently in the file (``set``) takes its own name too when built in Python."""

FILE_CONTEXT: Final[Mapping[str, str]] = {"sipdispatch.config": "file"}
"""Validation context of a configuration file, as opposed to objects built in Python."""


def _from_file(info: ValidationInfo) -> bool:
    context = info.context
    return isinstance(context, Mapping) and context.get("sipdispatch.config") == "file"


def _any_case(choices: object) -> BeforeValidator:
    """A choice of `choices` (a ``Literal``) written in any case; anything else is left as
    written, so that the message shows it so."""
    allowed = frozenset(get_args(choices))

    def validate(value: object) -> object:
        if isinstance(value, str) and value.lower() in allowed:
            return value.lower()
        return value

    return BeforeValidator(validate)


def _str_then(check: Callable[[str], str]) -> BeforeValidator:
    """Check a string with `check`; anything else fails the field's own type check."""
    return BeforeValidator(lambda v: check(v) if isinstance(v, str) else v)


def _part_of_file_key(parse: Callable[[object], tuple[object, ...]], index: int) -> BeforeValidator:
    """For one of the fields a key gives: in a file, part `index` of the parsed key."""

    def validate(value: object, info: ValidationInfo) -> object:
        return parse(value)[index] if _from_file(info) else value

    return BeforeValidator(validate)


# --------------------------------------------------------------------------------------------
# [server]
# --------------------------------------------------------------------------------------------

_LISTEN_FORM: Final = (
    "must be proto:host[:port] with proto udp, tcp or tls and port 1..65535, "
    "e.g. udp:127.0.0.1:5060 or tcp:[::1]"
)
LISTEN_ALLOWED: Final = 'must be a non-empty list of "proto:host[:port]" strings (proto udp|tcp)'


@dataclass(frozen=True, slots=True, config=_CONFIG)
class ListenAddr:
    """One SIP socket to listen on: ``proto:host:port``."""

    proto: ListenProto
    """``udp``, ``tcp`` or ``tls`` (lower case)."""
    host: StrictStr
    """IPv4 address, lower-case host name, or IPv6 address *without* brackets (``::1``)."""
    port: Annotated[StrictInt, Field(ge=0, le=65535)]
    """1..65535 in a file; 0 (any free port) only when built in Python."""
    port_given: StrictBool = Field(default=True, repr=False)
    """False when the file gave no port (the default port was taken): the start says so."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ListenAddr):
            return NotImplemented
        return (self.proto, self.host, self.port) == (other.proto, other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.proto, self.host, self.port))

    def __str__(self) -> str:
        return f"{self.proto}:{bracket(self.host)}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> ListenAddr:
        """Parse ``proto:host[:port]``; the port defaults to 5060 (5061 for tls).

        A ``tls`` address needs the ``[tls]`` table's certificate (checked by `Config`).
        Raises ValueError saying what is wrong.
        """
        proto, colon, rest = text.partition(":")
        proto = proto.lower()
        if not colon or proto not in _LISTEN_PROTOS:
            raise ValueError(_LISTEN_FORM)
        try:
            host, port = parse_host_port(rest, "listen address")
        except ValueError as exc:
            raise ValueError(f"{_LISTEN_FORM}: {exc}") from None
        given = port is not None
        if port is None:
            port = DEFAULT_SIPS_PORT if proto == "tls" else DEFAULT_SIP_PORT
        return cls(_LISTEN_PROTOS[proto], host, port, given)


def _listen(value: object) -> object:
    """``listen``: the strings of a file parsed, the `ListenAddr` of Python kept; no repeats."""
    if not isinstance(value, list | tuple) or not value:
        raise Invalid(LISTEN_ALLOWED)
    addrs: list[ListenAddr] = []
    for i, item in enumerate(value):
        if isinstance(item, ListenAddr):
            addr = item
        elif isinstance(item, str):
            try:
                addr = ListenAddr.parse(item)
            except ValueError as exc:
                raise Invalid(str(exc), at=(i,), value=item) from None
        else:
            raise Invalid(LISTEN_ALLOWED, at=(i,), value=item)
        if addr in addrs:
            raise Invalid(f"duplicate of server.listen[{addrs.index(addr)}]", at=(i,), value=item)
        addrs.append(addr)
    return tuple(addrs)


_ADVERTISE_ALLOWED: Final = 'must be "" or host[:port] (port 1..65535)'


def _advertise(value: object) -> tuple[str | None, int | None]:
    if not isinstance(value, str):
        raise Invalid(_ADVERTISE_ALLOWED)
    if not value:
        return None, None
    try:
        return parse_host_port(value, "advertise address")
    except ValueError as exc:
        raise Invalid(f"{_ADVERTISE_ALLOWED}: {exc}") from None


SECONDS_ALLOWED = "must be a number > 0 (seconds)"


def _seconds(value: object) -> float:
    """A duration in seconds: an integer or a float of TOML, more than 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise Invalid(SECONDS_ALLOWED)
    return float(value)


Seconds = Annotated[StrictFloat, BeforeValidator(_seconds)]
"""A duration in seconds, more than 0 (an integer or a float in the file)."""


@dataclass(frozen=True, slots=True, config=_CONFIG)
class ServerConfig:
    """``[server]``: SIP sockets and process model."""

    listen: Annotated[
        tuple[ListenAddr, ...],
        BeforeValidator(_listen),
        Key(
            allowed=LISTEN_ALLOWED,
            kamailio="core `listen`",
            toml_type="array of strings",
            toml_default='["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]',
            doc="SIP sockets, `proto:host[:port]` (see below), in the order given. "
            "Non-empty, no duplicates.",
        ),
    ] = (
        ListenAddr("udp", "127.0.0.1", DEFAULT_SIP_PORT),
        ListenAddr("tcp", "127.0.0.1", DEFAULT_SIP_PORT),
    )
    """SIP sockets, in the order given; never empty, no duplicates."""
    advertise_host: Annotated[
        StrictStr | None,
        _part_of_file_key(_advertise, 0),
        Field(validation_alias="advertise"),
        Key(
            allowed=_ADVERTISE_ALLOWED,
            kamailio="`listen = ... advertise host:port`",
            toml_type="string",
            toml_default='""',
            doc="`host[:port]` written in Via and Record-Route instead of the socket "
            "address; `\"\"` = the socket's own. The port is optional (then the socket's "
            "port is used).",
        ),
    ] = None
    """Host written in Via / Record-Route instead of the socket's address (None = the socket's).
    IPv6 without brackets."""
    advertise_port: Annotated[
        Annotated[StrictInt, Field(ge=1, le=65535)] | None,
        _part_of_file_key(_advertise, 1),
        Field(validation_alias="advertise"),
    ] = None
    """Port written with ``advertise_host`` (None = the socket's port)."""
    record_route: Annotated[StrictBool, Key(kamailio="`record_route()` (rr module)")] = True
    """Add a Record-Route header with `;lr` to dialog-creating requests, so in-dialog requests
    come back through the proxy."""
    workers: Annotated[
        StrictInt, Field(ge=0, le=256), Key(unit="processes", kamailio="core `children`")
    ] = 1
    """Worker processes acting as one proxy (`0` = one per core). Every message of one
    Call-ID is handled by one worker, whatever its source (one SBC's calls spread over
    every worker), every datagram leaves from the listening address and port, and the
    workers share destination state, probing, call load and every admin change through
    their supervisor (no Redis needed; with `[cluster]` they also join the cluster).
    See docs/workers.md."""

    @property
    def worker_count(self) -> int:
        """``workers``, with 0 taken as the number of CPUs."""
        return self.workers or os.cpu_count() or 1

    log_level: Annotated[
        LogLevel, _any_case(LogLevel), Key(kamailio="core `debug` (numeric levels)")
    ] = "info"
    """*(sipdispatch addition)* `debug`, `info`, `warning` or `error` (any case)."""
    max_message_size: Annotated[
        StrictInt,
        Field(ge=MIN_MESSAGE_SIZE, le=MAX_MAX_MESSAGE_SIZE),
        Key(unit="bytes", kamailio="none: Kamailio's compile-time `BUF_SIZE` is 65535"),
    ] = MAX_MESSAGE_SIZE
    """*(sipdispatch addition)* Largest SIP message accepted, in bytes. A larger message gets
    `513 Message Too Large`."""
    tcp_max_connections: Annotated[
        StrictInt, Field(ge=1), Key(unit="connections", kamailio="core `tcp_max_connections`")
    ] = 4096
    """TCP connections accepted at once, all sources together (connections the proxy opens
    to its destinations are not counted). The process's file limit lowers it when needed, so
    that 128 descriptors stay free for the admin listener, the database and those outgoing
    connections. Over it, a new connection is closed at once."""
    tcp_max_connections_per_source: Annotated[
        StrictInt, Field(ge=1), Key(unit="connections", kamailio="none (a pike-like limit)")
    ] = 64
    """*(sipdispatch addition)* TCP connections accepted at once from one IP address."""
    tcp_message_timeout: Annotated[
        Seconds,
        Key(allowed=SECONDS_ALLOWED, toml_type="number", kamailio="core `tcp_msg_read_timeout`"),
    ] = 10.0
    """Time an accepted TCP connection has to complete its first message, and any
    connection to complete a message once its first byte came; then it is closed (slow
    senders hold no connection)."""
    tcp_idle_timeout: Annotated[
        Seconds,
        Key(allowed=SECONDS_ALLOWED, toml_type="number", kamailio="core `tcp_connection_lifetime`"),
    ] = 120.0
    """A TCP connection with no traffic either way for this long is closed."""
    tcp_dialog_idle_timeout: Annotated[
        Seconds, Key(allowed=SECONDS_ALLOWED, toml_type="number", kamailio="none")
    ] = 3600.0
    """*(sipdispatch addition)* The same for a connection over which a call was answered (a
    2xx to an INVITE went either way): its in-dialog requests may come much later."""


# --------------------------------------------------------------------------------------------
# [transaction]
# --------------------------------------------------------------------------------------------

Milliseconds = Annotated[StrictInt, Field(ge=1)]


@dataclass(frozen=True, slots=True, config=_CONFIG)
class TransactionConfig:
    """``[transaction]``: RFC 3261 timers, in milliseconds, with Kamailio ``tm`` names."""

    fr_timer: Annotated[Milliseconds, Key(unit="milliseconds", kamailio="`tm.fr_timer`")] = (
        FR_TIMER_MS
    )
    """A branch with no final response (and, for INVITE, no provisional one) within this time
    times out; the proxy acts as if it had received 408 (RFC 3261 Timers B/F)."""
    fr_inv_timer: Annotated[
        Milliseconds, Key(unit="milliseconds", kamailio="`tm.fr_inv_timer`")
    ] = FR_INV_TIMER_MS
    """INVITE: no final response this long after a provisional one; the branch is cancelled
    and times out with 408 (RFC 3261 §16.8 Timer C)."""
    t1: Annotated[Milliseconds, Key(unit="milliseconds", kamailio="`tm.retr_timer1`")] = T1_MS
    """RFC 3261 T1, round-trip estimate; first retransmission interval over UDP."""
    t2: Annotated[
        Milliseconds, Key(unit="milliseconds, not less than t1", kamailio="`tm.retr_timer2`")
    ] = T2_MS
    """RFC 3261 T2, cap of the retransmission interval for non-INVITE requests and INVITE
    responses. Must be >= `t1`."""
    t4: Annotated[Milliseconds, Key(unit="milliseconds")] = T4_MS
    """*(sipdispatch addition)* RFC 3261 T4, the longest a message stays in the network; sets
    Timers I and K."""
    wait_timer: Annotated[Milliseconds, Key(unit="milliseconds", kamailio="`tm.wt_timer`")] = (
        WAIT_TIMER_MS
    )
    """How long a finished transaction is kept to absorb retransmissions: RFC 3261 Timers D,
    J, L and M (RFC 6026), which the RFCs set to 64·T1 = 32 s. Kamailio keeps them for its
    `wt_timer`, 5 s, and so do we by default: a call's transactions are freed 5 s after its
    final response instead of 32 s, which is most of the memory a call holds (BENCHMARKS.md).
    A retransmission that comes later is still handled: a retransmitted 2xx is relayed
    statelessly along its Via, a late INVITE retransmission (a caller that missed our
    100 Trying for 5 s) would be relayed again, as with Kamailio."""

    icmp_failover: Annotated[StrictBool, Key(kamailio="none (Kamailio waits for `fr_timer`)")] = (
        True
    )
    """*(sipdispatch addition)* A request sent over UDP whose destination answers with ICMP
    port, host or network unreachable fails at once, as a transport error, instead of
    waiting for `fr_timer`: the call goes to the next destination within a round trip, and
    the destination is marked as a branch that timed out would mark it (the call log shows
    the attempt as `timeout`; the metric `sipdispatch_branch_unreachable_total` counts
    them). Linux only (the kernel queues each ICMP error with the datagram it answers, and
    the branch is found by the Via branch in it, so an ICMP error that does not name one of
    the proxy's requests changes nothing). `false`: the ICMP errors are not read (the
    kernel drops them) and the branch waits for `fr_timer`, as with Kamailio."""

    @model_validator(mode="after")
    def _t2_not_below_t1(self) -> TransactionConfig:
        if self.t2 < self.t1:
            raise Invalid(
                f"must be an integer >= {self.t1} (milliseconds, not less than t1)",
                at=("t2",),
                value=self.t2,
            )
        return self


# --------------------------------------------------------------------------------------------
# [admin]
# --------------------------------------------------------------------------------------------

_ADMIN_LISTEN_FORM: Final = "must be host:port (port 1..65535), e.g. 127.0.0.1:5080"


def _admin_listen(value: object) -> tuple[str, int]:
    if not isinstance(value, str):
        raise Invalid(_ADMIN_LISTEN_FORM)
    try:
        host, port = parse_host_port(value, "admin address")
    except ValueError as exc:
        raise Invalid(f"{_ADMIN_LISTEN_FORM}: {exc}") from None
    if port is None:
        raise Invalid(f"{_ADMIN_LISTEN_FORM}: the port is missing")
    return host, port


@dataclass(frozen=True, slots=True, config=_CONFIG)
class AdminConfig:
    """``[admin]``: the JSON-RPC (POST /RPC) and metrics (GET /metrics) HTTP listener."""

    host: Annotated[
        StrictStr,
        _part_of_file_key(_admin_listen, 0),
        Field(validation_alias="listen"),
        Key(
            allowed=_ADMIN_LISTEN_FORM,
            kamailio="`xhttp` + `jsonrpcs` modules on a `listen` socket",
            toml_type="string",
            toml_default='"127.0.0.1:5080"',
            doc="`host:port` (port required, IPv6 in brackets) of the HTTP listener: "
            "JSON-RPC 2.0 at `POST /RPC`, metrics at `GET /metrics`. It must not be the same "
            "TCP address and port as a tcp entry of `server.listen` (a wildcard host "
            "`0.0.0.0` / `[::]` overlaps every address).",
        ),
    ] = "127.0.0.1"
    """Address to listen on; IPv6 without brackets."""
    port: Annotated[
        StrictInt,
        _part_of_file_key(_admin_listen, 1),
        Field(ge=0, le=65535, validation_alias="listen"),
    ] = 5080
    """TCP port (0 = any free port, only when built in Python)."""
    token: Annotated[
        StrictStr,
        Key(kamailio="none (Kamailio's jsonrpcs has no authentication of its own)"),
    ] = ""
    """Bearer token required on every admin request; `""` = no authentication. **Required**
    when `listen` is not a loopback address (127.0.0.0/8, `::1`, `localhost`): the admin
    interface can reconfigure the proxy."""
    console: Annotated[
        ConsoleMode,
        _any_case(ConsoleMode),
        Key(kamailio="none (Siremis and similar panels are separate applications)"),
    ] = "read-write"
    """*(sipdispatch addition)* The web console at `GET /` of this listener: `read-write`
    (state, drain / enable / reload / add / remove), `read-only` (state only, every action
    refused) or `off` (not served). With `token` set it asks for the token once, then keeps
    a session cookie."""

    @property
    def listen(self) -> str:
        """``host:port`` as written in the file (IPv6 bracketed)."""
        return f"{bracket(self.host)}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """The listener is reachable only from this machine."""
        return is_loopback(self.host)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> AdminConfig:
        if not self.token and not self.is_loopback:
            raise Invalid(
                f"must be set when admin.listen ({self.listen}) is not a loopback address",
                at=("token",),
                value=self.token,
            )
        return self


# --------------------------------------------------------------------------------------------
# [dispatcher]
# --------------------------------------------------------------------------------------------


def _reply_codes(value: object) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if not isinstance(value, str):
        raise Invalid(REPLY_CODES_ALLOWED)
    return parse_reply_codes(value)


_METHOD_ALLOWED: Final = "must be a SIP method name in upper-case letters"


@dataclass(frozen=True, slots=True, config=_CONFIG)
class DispatcherConfig:
    """``[dispatcher]``: destination store, probing and algorithm settings (Kamailio
    ``dispatcher`` module parameters)."""

    list_file: Annotated[StrictStr, Key(kamailio="`list_file`")] = ""
    """Destination list in Kamailio's `dispatcher.list` format. When set, it is the store."""
    db_url: Annotated[
        StrictStr,
        _str_then(parse_db_url),
        Key(allowed=f"must be a URL {URL_FORMS}", kamailio="`db_url`"),
    ] = DEFAULT_DB_URL
    """Destination store when `list_file` is empty: `sqlite:///PATH` (relative to the working
    directory; `sqlite:////abs/path` for an absolute one), `mysql://user:pw@host:3306/db`
    (also `mariadb://`), `postgresql://user:pw@host/db` (also `postgres://`); an SQLAlchemy
    driver suffix such as `mysql+pymysql://` is allowed."""
    table_name: Annotated[
        StrictStr,
        _str_then(parse_sql_identifier),
        Key(allowed=SQL_IDENTIFIER_ALLOWED, kamailio="`table_name`"),
    ] = "dispatcher"
    """SQL table of destinations (Kamailio schema version 4); it is written into SQL."""
    setid_col: Annotated[
        StrictStr,
        _str_then(parse_sql_identifier),
        Key(allowed=SQL_IDENTIFIER_ALLOWED, kamailio="`setid_col`"),
    ] = "setid"
    """Column of the set id in `table_name` (a table whose columns Kamailio was told to
    name otherwise)."""
    destination_col: Annotated[
        StrictStr,
        _str_then(parse_sql_identifier),
        Key(allowed=SQL_IDENTIFIER_ALLOWED, kamailio="`destination_col`"),
    ] = "destination"
    """Column of the destination URI in `table_name` (a table whose columns Kamailio was told to
    name otherwise)."""
    flags_col: Annotated[
        StrictStr,
        _str_then(parse_sql_identifier),
        Key(allowed=SQL_IDENTIFIER_ALLOWED, kamailio="`flags_col`"),
    ] = "flags"
    """Column of the flags in `table_name` (a table whose columns Kamailio was told to
    name otherwise)."""
    priority_col: Annotated[
        StrictStr,
        _str_then(parse_sql_identifier),
        Key(allowed=SQL_IDENTIFIER_ALLOWED, kamailio="`priority_col`"),
    ] = "priority"
    """Column of the priority in `table_name` (a table whose columns Kamailio was told to
    name otherwise)."""
    attrs_col: Annotated[
        StrictStr,
        _str_then(parse_sql_identifier),
        Key(allowed=SQL_IDENTIFIER_ALLOWED, kamailio="`attrs_col`"),
    ] = "attrs"
    """Column of the attrs in `table_name` (a table whose columns Kamailio was told to
    name otherwise)."""
    db_extra_attrs: Annotated[
        tuple[tuple[StrictStr, StrictStr], ...],
        BeforeValidator(lambda v: parse_extra_attrs(v) if isinstance(v, str) else v),
        Key(
            allowed=EXTRA_ATTRS_ALLOWED,
            kamailio="`ds_db_extra_attrs`",
            toml_type="string",
            toml_default='""',
        ),
    ] = ()
    """Columns of `table_name` whose value is added to each row's attrs, as
    `attr=value` after the attrs column's (Kamailio's format: `"attr=column;..."`, e.g.
    `"socket=socket;pref=prefix"`). The columns are the operator's own: a table
    sipdispatch creates does not get them. A NULL or empty value adds nothing."""
    ping_interval: Annotated[
        StrictInt,
        Field(ge=0),
        Key(
            unit="seconds, 0 = off",
            kamailio="`ds_ping_interval` (Kamailio's default is 0, no pings: a load "
            "balancer that does not ping sends calls to a dead gateway until each one times "
            "out, so ours pings every 10 s unless told `0`)",
        ),
    ] = 10
    """Seconds between OPTIONS pings to destinations; `0` = no pings."""
    ping_method: Annotated[
        StrictStr,
        _str_then(lambda v: parse_method(v, _METHOD_ALLOWED)),
        Key(allowed=_METHOD_ALLOWED, kamailio="`ds_ping_method`"),
    ] = "OPTIONS"
    """Method of the pings."""
    ping_from: Annotated[
        StrictStr,
        _str_then(parse_sip_uri),
        Key(allowed="must be a SIP URI starting with sip: or sips:", kamailio="`ds_ping_from`"),
    ] = DEFAULT_PING_FROM
    """From URI of the pings."""
    outbound_proxy: Annotated[
        StrictStr,
        _str_then(lambda v: parse_sip_uri(v) if v else v),
        Key(
            allowed='must be "" or a SIP URI starting with sip: or sips:',
            kamailio="`outbound_proxy` (`ds_outbound_proxy`)",
        ),
    ] = ""
    """SIP URI the pings are sent through (their Request-URI stays the destination's);
    a destination's `obproxy` attr overrides it. As in Kamailio it applies to pings only:
    calls go to the destination. `""` = pings go to each destination."""
    ping_reply_codes: Annotated[
        tuple[StrictInt, ...],
        Field(validation_alias=AliasPath("ping_reply_codes", "codes")),
        Key(
            allowed=REPLY_CODES_ALLOWED,
            kamailio="`ds_ping_reply_codes`",
            toml_type="string",
            toml_default='""',
            doc="Replies that show a destination alive besides 2xx: `code=NNN` (200..699) and "
            "`class=N` (2..6, e.g. `class=4` = any 4xx), separated by `;`, any number, any "
            'order: `"code=404;code=480;class=3"`.',
        ),
    ] = ()
    """Extra reply codes counting as alive, besides 2xx (the ``code=`` entries of the key)."""
    ping_reply_classes: Annotated[
        tuple[StrictInt, ...],
        Field(validation_alias=AliasPath("ping_reply_codes", "classes")),
    ] = ()
    """Extra reply classes (4 = 4xx) counting as alive (the ``class=`` entries of
    ``ping_reply_codes``)."""
    ping_fr_timer: Annotated[
        StrictInt,
        Field(ge=0, le=3_600_000),
        Key(
            unit="milliseconds, 0 = `[transaction] fr_timer`",
            kamailio="`ds_ping_fr_timer` (Kamailio passes the number to tm as timer ticks, "
            "1/16 s each: its `10` is 625 ms here)",
        ),
    ] = 0
    """How long a ping waits for its final answer before it counts as failed (408); `0`
    takes `[transaction] fr_timer`. A short one finds a dead destination sooner without
    shortening the calls' own timer."""
    probing_threshold: Annotated[StrictInt, Field(ge=1), Key(kamailio="`ds_probing_threshold`")] = 1
    """Failed pings in a row before a destination becomes inactive (`IP`)."""
    inactive_threshold: Annotated[
        StrictInt, Field(ge=1), Key(kamailio="`ds_inactive_threshold`")
    ] = 1
    """Answered pings in a row before an inactive destination is active (`AP`) again."""
    probing_mode: Annotated[StrictInt, Field(ge=0, le=3), Key(kamailio="`ds_probing_mode`")] = 0
    """Which destinations are pinged: `0` those in probing state; `1` all; `2` only inactive
    ones in probing state; `3` those in probing state, continually, without the pings
    changing the probing flag."""
    ping_latency_stats: Annotated[StrictBool, Key(kamailio="`ds_ping_latency_stats`")] = False
    """Keep ping latency statistics (`AVG STD EST MAX TIMEOUT` in `dispatcher.list`)."""
    latency_estimator_alpha: Annotated[
        StrictInt,
        Field(ge=0, le=1000),
        Key(
            unit="per mille",
            kamailio="`ds_latency_estimator_alpha` (current meaning and default; Kamailio "
            "versions before 2025 documented the complement, 900)",
        ),
    ] = 100
    """Weight of a new latency sample in the EWMA estimate, per mille (100 = 0.1)."""
    hash_size: Annotated[
        StrictInt, Field(ge=0, le=16), Key(unit="power of two", kamailio="`ds_hash_size`")
    ] = 0
    """Size of the call-load table used by algorithm 10, as a power of two (8 = 256 slots)."""
    hash_expire: Annotated[
        StrictInt, Field(ge=1), Key(unit="seconds", kamailio="`ds_hash_expire`")
    ] = 7200
    """Seconds a confirmed call counts towards a destination's load when no BYE is seen."""
    hash_initexpire: Annotated[
        StrictInt, Field(ge=1), Key(unit="seconds", kamailio="`ds_hash_initexpire`")
    ] = 7200
    """Seconds an unconfirmed call (INVITE sent, no 2xx yet) counts towards load."""
    use_default: Annotated[StrictBool, Key(kamailio="`use_default`")] = False
    """The last destination of each set is a backup, used only when all others fail."""
    failover: Annotated[
        StrictBool,
        Key(
            kamailio="`flags` value 2 (Kamailio's `flags` default is 0, no failover: "
            "every Kamailio dispatcher example sets 2, and a failed call tried nowhere else "
            "is what an operator moves away from; `false` gives Kamailio's default)"
        ),
    ] = True
    """Keep the rest of the set so a failed call can try the next destination."""
    hash_user_only: Annotated[StrictBool, Key(kamailio="`flags` value 1")] = False
    """URI hashes (algorithms 1, 2, 3) use only the user part."""
    keep_state_on_reload: Annotated[
        StrictBool,
        Key(
            kamailio="none (a Kamailio reload takes each destination's flags from the list "
            "again, losing what pings and `set_state` made of them, and resets latency unless "
            "`ds_retain_latency_stats` = 1; `false` behaves so)"
        ),
    ] = True
    """Destinations present before and after `dispatcher.reload` keep their state, latency and
    call load."""
    reload_delta: Annotated[
        StrictInt,
        Field(ge=0, le=3600),
        Key(unit="seconds, 0 = off", kamailio="`reload_delta`"),
    ] = 0
    """After a `dispatcher.reload`, `dispatcher.add` or `dispatcher.remove` asked over RPC,
    another one is refused with `Ongoing reload` for this many seconds (a rate limit). `0`
    = none: only one that arrives while another runs is refused. Kamailio's master
    default is 0; its 5.6 to 6.1 releases used 5."""
    hash_header: Annotated[
        StrictStr,
        _str_then(parse_hash_header),
        Key(
            allowed=HASH_HEADER_ALLOWED,
            kamailio='`hash_pvar` (a format string: `"$hdr(X-Customer)"` is `"X-Customer"`, '
            '`"$hdr(X-Tenant)$fU"` is `"{hdr:X-Tenant}{from_user}"`)',
        ),
    ] = ""
    """What algorithm 7 hashes: the value of a header, e.g. `"X-Customer"`, or a template
    of several values and text, as Kamailio's `hash_pvar` format string: `{hdr:Name}`
    (the header's first value), `{call_id}`, `{from_uri}`, `{from_user}`, `{to_uri}`,
    `{to_user}`, `{ruri}`, `{ruri_user}`, e.g. `"{hdr:X-Tenant}{from_user}"`. A part
    the request lacks is empty; a request where all are empty gets no destination
    (Kamailio: an empty hash string fails the selection). A route using algorithm 7
    requires it."""

    @model_validator(mode="before")
    @classmethod
    def _reply_codes_text(cls, data: object, info: ValidationInfo) -> object:
        # The key's text gives two fields, and one of them has the key's name: in a file, the
        # text becomes {"codes": ..., "classes": ...}, which the fields' alias paths read; in
        # Python each field takes its own name (a tuple has no "codes" to find).
        if _from_file(info) and isinstance(data, Mapping) and "ping_reply_codes" in data:
            raw = data["ping_reply_codes"]
            try:
                codes, classes = _reply_codes(raw)
            except Invalid as exc:
                raise Invalid(exc.allowed, at=("ping_reply_codes",), value=raw) from None
            data = {**data, "ping_reply_codes": {"codes": codes, "classes": classes}}
        return data

    @property
    def columns(self) -> dict[str, str]:
        """The renamed columns of the table, by their usual name."""
        return {
            "setid": self.setid_col,
            "destination": self.destination_col,
            "flags": self.flags_col,
            "priority": self.priority_col,
            "attrs": self.attrs_col,
        }

    @property
    def store_kind(self) -> StoreKind:
        """``"list"`` when ``list_file`` is set, else ``"db"``."""
        return "list" if self.list_file else "db"

    @model_validator(mode="after")
    def _one_store(self) -> DispatcherConfig:
        if self.list_file and self.db_url and self.db_url != DEFAULT_DB_URL:
            raise Invalid(
                "cannot be used together with dispatcher.list_file; choose one",
                at=("db_url",),
                value=show_db_url(self.db_url),
            )
        if not self.list_file and not self.db_url:
            raise Invalid(
                "must be set when dispatcher.list_file is empty", at=("db_url",), value=""
            )
        return self


# --------------------------------------------------------------------------------------------
# [[route]]
# --------------------------------------------------------------------------------------------

_MATCH_METHOD_ALLOWED: Final = 'must be a method name or a non-empty list of them, e.g. ["INVITE"]'
_MATCH_DOMAIN_ALLOWED: Final = "must be a non-empty domain name (leave it out to match any)"
_MATCH_PREFIX_ALLOWED: Final = (
    "must be a non-empty string without spaces (leave it out to match any)"
)


def _methods(value: object) -> object:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise Invalid(_MATCH_METHOD_ALLOWED)
    return tuple(dict.fromkeys(parse_method(m, _MATCH_METHOD_ALLOWED) for m in items))


def _non_empty(allowed: str, *, lower: bool = False) -> BeforeValidator:
    def validate(value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            raise Invalid(allowed)
        return value.lower() if lower else value

    return BeforeValidator(validate)


@dataclass(frozen=True, slots=True, config=_CONFIG)
class RouteMatch:
    """``match = {...}`` of a ``[[route]]`` rule; None fields match anything."""

    methods: Annotated[
        tuple[str, ...] | None,
        BeforeValidator(_methods),
        Field(validation_alias="method"),
        Key(
            allowed=_MATCH_METHOD_ALLOWED,
            kamailio='`is_method("INVITE")`',
            toml_type="string or array of strings",
            toml_default="any method",
        ),
    ] = None
    """A method name or a list of them, upper case (`"INVITE"`, `["INVITE", "MESSAGE"]`).
    Compared case-sensitively (RFC 3261 §7.1)."""
    domain: Annotated[
        str | None,
        _non_empty(_MATCH_DOMAIN_ALLOWED, lower=True),
        Key(
            allowed=_MATCH_DOMAIN_ALLOWED,
            kamailio='`$rd == "..."`',
            toml_type="string",
            toml_default="any domain",
        ),
    ] = None
    """Request-URI host, stored lower-case and compared case-insensitively."""
    user_prefix: Annotated[
        str | None,
        _non_empty(_MATCH_PREFIX_ALLOWED),
        Key(
            allowed=_MATCH_PREFIX_ALLOWED,
            kamailio='`$rU =~ "^44"`',
            toml_type="string",
            toml_default="any user",
        ),
    ] = None
    """The Request-URI user part starts with this string."""
    source_set: Annotated[
        Annotated[StrictInt, Field(ge=0)] | None,
        Key(
            unit="destination set id",
            kamailio='`ds_is_from_list("2")`',
            toml_type="integer",
            toml_default="any source",
        ),
    ] = None
    """The request comes from a destination of this set."""


def _as_written(value: object, info: ValidationInfo) -> str:
    """A number or string of a file as TOML writes it (``14``, ``"srv"``); else ``""``."""
    if not _from_file(info) or isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else ""


def _mark_letters(value: object) -> object:
    """``mark_failed``: Kamailio's ``ds_mark_dst`` letters, kept lower-case."""
    if not isinstance(value, str):
        raise Invalid(MARK_LETTERS_ALLOWED)
    text = value.strip().lower()
    if text:
        try:
            parse_mark_letters(text)
        except ValueError as exc:
            hint = f'; write "{text.replace("x", "")}"' if "x" in text and text != "x" else ""
            raise Invalid(f"{exc}{hint}; allowed: {MARK_LETTERS_ALLOWED}") from None
    return text


FALLBACK_ALLOWED: Final = (
    "must be an array of destination set ids or inline tables { set = N, algorithm = A }, "
    'e.g. [2, { set = 3, algorithm = "priority" }]'
)
_FALLBACK_ITEM_ALLOWED: Final = (
    "must be a destination set id (an integer >= 0) or an inline table "
    '{ set = N, algorithm = A }, e.g. { set = 3, algorithm = "priority" }'
)
_FALLBACK_SET_ALLOWED: Final = "must be an integer >= 0 (destination set id)"
_FALLBACK_NO_PARALLEL: Final = (
    "parallel forking (12) cannot be a fallback set's algorithm: a failover tries one "
    "destination at a time (make 12 the rule's own algorithm to fork its set first)"
)


@dataclass(frozen=True, slots=True, config=_CONFIG)
class FallbackSet:
    """One entry of a rule's ``fallback``: a destination set tried after the rule's own,
    with its algorithm."""

    set_id: Annotated[StrictInt, Field(ge=0)]
    """The destination set."""
    algorithm: int | None = None
    """Its algorithm number; None (a bare set id in the file) = the rule's ``algorithm``."""


def _fallback_item(i: int, item: object) -> FallbackSet:
    if isinstance(item, FallbackSet):
        return item
    if isinstance(item, int) and not isinstance(item, bool):
        if item < 0:
            raise Invalid(_FALLBACK_ITEM_ALLOWED, at=(i,), value=item)
        return FallbackSet(item)
    if not isinstance(item, Mapping):
        raise Invalid(_FALLBACK_ITEM_ALLOWED, at=(i,), value=item)
    for key in item:
        if key not in ("set", "algorithm"):
            raise Invalid("unknown key; allowed: set, algorithm", at=(i, str(key)), value=item[key])
    if "set" not in item:
        raise Invalid(
            "must give set = N, the destination set id (an integer >= 0)", at=(i,), value=item
        )
    set_id = item["set"]
    if isinstance(set_id, bool) or not isinstance(set_id, int) or set_id < 0:
        raise Invalid(_FALLBACK_SET_ALLOWED, at=(i, "set"), value=set_id)
    algorithm: int | None = None
    if "algorithm" in item:
        try:
            algorithm = parse_algorithm(item["algorithm"])
        except Invalid as exc:
            raise Invalid(exc.allowed, at=(i, "algorithm"), value=item["algorithm"]) from None
        if algorithm == ALGORITHM_PARALLEL:
            raise Invalid(_FALLBACK_NO_PARALLEL, at=(i, "algorithm"), value=item["algorithm"])
    return FallbackSet(set_id, algorithm)


def _fallback(value: object) -> object:
    """``fallback``: set ids and ``{ set, algorithm }`` tables -> `FallbackSet` entries."""
    if not isinstance(value, list | tuple):
        raise Invalid(FALLBACK_ALLOWED)
    return tuple(_fallback_item(i, item) for i, item in enumerate(value))


@dataclass(frozen=True, slots=True, config=_CONFIG)
class RouteRule:
    """One ``[[route]]`` rule; the first rule whose `match` fits a request routes it."""

    set_id: Annotated[
        StrictInt,
        Field(ge=0, validation_alias="set"),
        Key(unit="destination set id, required", kamailio='`ds_select_dst("SET", ...)`'),
    ]
    """Destination set to dispatch to."""
    match: Annotated[
        RouteMatch,
        Key(
            allowed='must be a table, e.g. match = { method = ["INVITE"] }',
            kamailio="`if (...)` in `request_route`",
            toml_type="inline table",
            toml_default="{}",
            doc="Conditions, all optional, all must hold (see `match` below); `{}` matches "
            "every request.",
        ),
    ] = RouteMatch()
    """Conditions; the empty match fits every request."""
    algorithm: Annotated[
        int,
        BeforeValidator(parse_algorithm),
        Key(
            allowed=ALGORITHM_ALLOWED,
            kamailio='`ds_select_dst(..., "ALG")`',
            toml_type="integer or string",
        ),
    ] = DEFAULT_ALGORITHM
    """Algorithm number or name (table below, any case)."""
    algorithm_written: Annotated[
        StrictStr, BeforeValidator(_as_written), Field(validation_alias="algorithm")
    ] = dataclasses.field(default="", compare=False, repr=False)
    """`algorithm` as the file wrote it (`14`, `"priority-weight"`), for the warnings at
    start about algorithms whose meaning changed; `""` when the file does not give it or
    the rule is built in Python."""
    mode: Annotated[
        RouteMode,
        _any_case(RouteMode),
        Key(kamailio="`ds_select_dst` / `ds_select_domain`"),
    ] = "dst"
    """`"dst"`: the request goes to the destination, Request-URI kept (`ds_select_dst`).
    `"domain"`: the Request-URI host:port is rewritten to the destination
    (`ds_select_domain`)."""
    limit: Annotated[
        StrictInt,
        Field(ge=0),
        Key(unit="0 = no limit", kamailio="`ds_select_dst(set, alg, limit)`"),
    ] = 0
    """Length of the failover list (the chosen destination plus alternatives), fallback
    sets included."""
    fallback: Annotated[
        tuple[FallbackSet, ...],
        BeforeValidator(_fallback),
        Key(
            allowed=FALLBACK_ALLOWED,
            kamailio='`ds_select_routes("1=4;2=8", "0")` + `ds_next_dst()`',
            toml_type="array of integers or inline tables",
            toml_default="[]",
            doc="Further destination sets, tried in order after `set`: a set id (chosen with "
            "the rule's `algorithm`) or `{ set = 2, algorithm = 8 }` (number or name, not 12). "
            "Their destinations follow the set's own in the failover list; a call whose set "
            "has no usable destination goes to the first of them that has one. Not the "
            'rule\'s own set, none twice. See docs/routing.md, "Fallback sets".',
        ),
    ] = ()
    """Sets tried after ``set_id``, in order (the failover list goes on across them)."""
    failover_codes: Annotated[
        frozenset[StrictInt],
        _part_of_file_key(parse_failover_on, 0),
        Field(validation_alias="failover_on"),
        Key(
            allowed=FAILOVER_ON_ALLOWED,
            kamailio="`failure_route`: `t_check_status(...)` + `ds_next_dst()`",
            toml_type="array of strings",
            toml_default='["5xx", "404", "408"]',
            doc="Final responses after which the call is tried on the next destination: "
            '3-digit codes `"300"`..`"699"` and classes `"3xx"`..`"6xx"`, as strings. A '
            "branch that times out (`fr_timer` / `fr_inv_timer`) always tries the next "
            "destination; this list is about final responses received. `[]` = no failover on "
            "responses. Nothing fails over when `dispatcher.failover = false`.",
        ),
    ] = frozenset({404, 408})
    """Final response codes that make the call try the next destination."""
    failover_classes: Annotated[
        frozenset[StrictInt],
        _part_of_file_key(parse_failover_on, 1),
        Field(validation_alias="failover_on"),
    ] = frozenset({5})
    """Final response classes (5 = 5xx) that make the call try the next destination."""
    mark_failed: Annotated[
        str,
        BeforeValidator(_mark_letters),
        Key(allowed=MARK_LETTERS_ALLOWED, kamailio='`ds_mark_dst("ip")`'),
    ] = "ip"
    """State given to a destination that failed a call, with the letters and meaning of
    Kamailio's `ds_mark_dst("...")`: `i` inactive, `t` trying (inactive after
    `probing_threshold` failures in a row), `d` disabled, `p` probing, `a` active (clears
    what comes before it); `"ip"`, `"tp"`, `"t"`... `""` = leave its state alone."""
    no_destination: Annotated[
        StrictInt,
        Field(ge=300, le=699),
        Key(unit="SIP reply code", kamailio='`send_reply("503", ...)`'),
    ] = 503
    """Reply sent when no usable destination is left."""
    python: Annotated[
        str | None,
        _str_then(parse_hook_name),
        Key(
            allowed=HOOK_ALLOWED,
            kamailio="KEMI: `request_route` written in Python (`app_python3`)",
            toml_type="string",
            toml_default="none",
        ),
    ] = None
    """A Python routing hook, `"module:function"`: when `match` fits, the function is called
    with a read-only view of the request and decides: a `Route` (which may choose the set
    and algorithm; `set` and `algorithm` here are what it does not choose), a `Reject`, or
    `None` to go on with the next rule. See docs/hooks.md."""

    @model_validator(mode="after")
    def _fallback_sets_are_other_sets(self) -> RouteRule:
        """A fallback set is not the rule's own set, not given twice, and does not take
        algorithm 12 from the rule."""
        seen: dict[int, int] = {}
        for i, entry in enumerate(self.fallback):
            shown: object = (
                entry.set_id
                if entry.algorithm is None
                else {"set": entry.set_id, "algorithm": entry.algorithm}
            )
            if entry.set_id == self.set_id:
                raise Invalid(
                    f"set {entry.set_id} is the rule's own set: a fallback set must be another set",
                    at=("fallback", i),
                    value=shown,
                )
            if entry.set_id in seen:
                raise Invalid(
                    f"set {entry.set_id} is already fallback[{seen[entry.set_id]}]: each set "
                    "may be given once",
                    at=("fallback", i),
                    value=shown,
                )
            seen[entry.set_id] = i
            if entry.algorithm is None and self.algorithm == ALGORITHM_PARALLEL:
                raise Invalid(
                    "takes the rule's algorithm 12 (parallel forking), which a fallback set "
                    f"cannot use (a failover tries one destination at a time): write "
                    f"{{ set = {entry.set_id}, algorithm = ... }}",
                    at=("fallback", i),
                    value=shown,
                )
        return self

    def fallback_algorithms(self) -> tuple[tuple[int, int], ...]:
        """``fallback`` as (set id, algorithm) pairs, a bare set id with the rule's algorithm."""
        return tuple(
            (f.set_id, self.algorithm if f.algorithm is None else f.algorithm)
            for f in self.fallback
        )


# --------------------------------------------------------------------------------------------
# The whole file
# --------------------------------------------------------------------------------------------

ROUTE_ALLOWED: Final = "must be an array of tables: write each rule as [[route]]"


def _routes(value: object) -> object:
    if not isinstance(value, list | tuple) or not all(
        isinstance(r, Mapping | RouteRule) for r in value
    ):
        raise Invalid(ROUTE_ALLOWED)
    return value


# --------------------------------------------------------------------------------------------
# [security]
# --------------------------------------------------------------------------------------------

NETWORKS_ALLOWED = 'must be an array of addresses or networks, e.g. ["10.0.0.0/8", "192.0.2.7"]'


def _networks(value: object) -> tuple[str, ...]:
    """``allow``/``deny``: addresses or networks, kept as written in their canonical form."""
    if not isinstance(value, list | tuple):
        raise Invalid(NETWORKS_ALLOWED)
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise Invalid(NETWORKS_ALLOWED, at=(i,), value=item)
        try:
            out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise Invalid(NETWORKS_ALLOWED, at=(i,), value=item) from None
    return tuple(out)


AclAction = Literal["reject", "drop"]


@dataclass(frozen=True, slots=True, config=_CONFIG)
class SecurityConfig:
    """``[security]``: who may send requests, and how fast."""

    allow: Annotated[
        tuple[str, ...],
        BeforeValidator(_networks),
        Key(
            allowed=NETWORKS_ALLOWED,
            kamailio="`allow_source_address()` (permissions module)",
            toml_type="array of strings",
            toml_default="[] (every source)",
        ),
    ] = ()
    """Sources whose requests are taken: addresses and networks. Empty: every source.
    The destinations of every set are always allowed, whatever this says."""
    deny: Annotated[
        tuple[str, ...],
        BeforeValidator(_networks),
        Key(
            allowed=NETWORKS_ALLOWED,
            kamailio="`allow_source_address()` (permissions module)",
            toml_type="array of strings",
            toml_default="[]",
        ),
    ] = ()
    """Sources whose requests are refused, even when `allow` lists them (destinations
    excepted)."""
    acl_action: Annotated[AclAction, _any_case(AclAction), Key(kamailio="`sl_send_reply(403)`")] = (
        "reject"
    )
    """What a refused request gets: `"reject"` = `403 Forbidden`; `"drop"` = nothing."""
    flood_limit: Annotated[
        StrictInt,
        Field(ge=0),
        Key(unit="requests per window, 0 = no limit", kamailio="pike `reqs_density_per_unit` (30)"),
    ] = 0
    """Requests per `flood_window` from one source IP; over it, requests are dropped (a
    token bucket: that many may come at once, refilled at limit/window per second).
    Destinations and responses are never limited. 0 = off (Kamailio's pike is off unless
    loaded; its default is 30 per 2 s)."""
    flood_window: Annotated[
        Seconds,
        Key(allowed=SECONDS_ALLOWED, toml_type="number", kamailio="pike `sampling_time_unit` (2)"),
    ] = 2.0
    """Seconds the flood limit counts over."""


# --------------------------------------------------------------------------------------------
# [tls]
# --------------------------------------------------------------------------------------------

TlsVersion = Literal["TLSv1.2", "TLSv1.3"]
_PEM_ALLOWED: Final = 'must be "" or the path of a PEM file'


@dataclass(frozen=True, slots=True, config=_CONFIG)
class TlsConfig:
    """``[tls]``: the certificate of `tls:` listeners and how TLS peers are checked. The
    table's presence is what turns TLS on: without it, a `tls:` listener is refused and a
    `sips:` or `;transport=tls` destination fails (never reached over plain TCP)."""

    certificate: Annotated[StrictStr, Key(allowed=_PEM_ALLOWED, kamailio="tls `certificate`")] = ""
    """Our certificate chain (PEM), shown to callers on `tls:` listeners and to
    destinations that ask for a client certificate. Required by a `tls:` listener. A
    relative path is taken from the working directory, as `dispatcher.list_file` is."""
    private_key: Annotated[StrictStr, Key(allowed=_PEM_ALLOWED, kamailio="tls `private_key`")] = ""
    """The private key of `certificate` (PEM, not encrypted); "" = inside `certificate`'s file."""
    ca_file: Annotated[StrictStr, Key(allowed=_PEM_ALLOWED, kamailio="tls `ca_list`")] = ""
    """CA certificates (PEM) that peers' certificates must chain to; "" = the system's
    trusted CAs."""
    verify_peer: Annotated[StrictBool, Key(kamailio="tls `verify_certificate` (client side)")] = (
        True
    )
    """A TLS destination's certificate must chain to `ca_file` and name the destination's
    host (its IP address when the URI has one). `false` accepts any certificate: for tests
    only, since anyone on the path can then read the calls."""
    verify_client: Annotated[
        StrictBool, Key(kamailio="tls `verify_certificate` + `require_certificate` (server)")
    ] = False
    """Callers on a `tls:` listener must show a certificate that chains to `ca_file`
    (mutual TLS); `false` = callers are not asked for one (source ACLs still apply)."""
    min_version: Annotated[TlsVersion, Key(kamailio="tls `method` (`TLSv1.2+`)")] = "TLSv1.2"
    """The oldest TLS version accepted either way."""


# --------------------------------------------------------------------------------------------
# [log]
# --------------------------------------------------------------------------------------------

CallLogChoice = Literal["failures", "all", "none"]
LogFormat = Literal["text", "json"]


@dataclass(frozen=True, slots=True, config=_CONFIG)
class LogConfig:
    """``[log]``: what is logged of each call, and how lines are written."""

    calls: Annotated[CallLogChoice, _any_case(CallLogChoice), Key(kamailio="none")] = "failures"
    """*(sipdispatch addition)* One `info` line per call: `"failures"` = every call that does
    not simply succeed (rejected, failed over, timed out, no destination, not here,
    cancelled), with its Call-ID, source, R-URI, each destination tried with its answer, and
    the set-up time; `"all"` = every call; `"none"` = no call lines."""
    format: Annotated[LogFormat, _any_case(LogFormat), Key(kamailio="core `log_engine_type`")] = (
        "text"
    )
    """`"text"` (`time level logger: message`) or `"json"` (one JSON object per line, with the
    call's fields on call lines: for Loki or ELK)."""


# --------------------------------------------------------------------------------------------
# [cluster]
# --------------------------------------------------------------------------------------------

ClusterProbing = Literal["split", "all"]
REDIS_URL_ALLOWED: Final = (
    'must be "" or a redis:// or rediss:// URL: redis://[user:password@]host[:port][/db], '
    "without a ?query (TLS files are tls_ca, tls_cert, tls_key)"
)
SENTINELS_ALLOWED: Final = (
    'must be an array of "host" or "host:port" strings (port 26379 when none is given, '
    'IPv6 in brackets), e.g. ["10.0.0.5:26379", "10.0.0.6:26379", "10.0.0.7:26379"]'
)
SENTINEL_PORT: Final = 26379
"""The port Redis Sentinel listens on by default."""
REDIS_PORT: Final = 6379
_SECRET_ALLOWED: Final = "must be a string"
_TLS_FILE_ALLOWED: Final = 'must be "" or the path of a PEM file'


def _redis_url(value: object) -> object:
    """``redis_url``: checked here without redis (a standalone node never loads it); a
    message shows it with its password masked."""
    if not isinstance(value, str) or not value:
        return value
    shown = show_db_url(value)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("redis", "rediss"):
        raise Invalid(REDIS_URL_ALLOWED, value=shown)
    if "?" in rest or "#" in rest:
        raise Invalid(REDIS_URL_ALLOWED, value=shown)
    hostpart = rest.rpartition("@")[2]
    hostport, slash, db = hostpart.partition("/")
    try:
        host, _port = parse_host_port(hostport, "Redis address")
    except ValueError:
        raise Invalid(REDIS_URL_ALLOWED, value=shown) from None
    if not host or (slash and db and not db.isdigit()):
        raise Invalid(REDIS_URL_ALLOWED, value=shown)
    return value


def _sentinels(value: object) -> tuple[str, ...]:
    """``sentinels``: host[:port] strings, kept as ``host:port``."""
    if not isinstance(value, list | tuple):
        raise Invalid(SENTINELS_ALLOWED)
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise Invalid(SENTINELS_ALLOWED, at=(i,), value=item)
        try:
            host, port = parse_host_port(item.strip(), "sentinel")
        except ValueError:
            raise Invalid(SENTINELS_ALLOWED, at=(i,), value=item) from None
        if port == 0:
            raise Invalid(SENTINELS_ALLOWED, at=(i,), value=item)
        address = f"{bracket(host)}:{port or SENTINEL_PORT}"
        if address in out:
            raise Invalid("must not name a sentinel twice", at=(i,), value=item)
        out.append(address)
    return tuple(out)


def _secret(value: object) -> object:
    """A password: never shown in a message, whatever was written."""
    if not isinstance(value, str):
        raise Invalid(_SECRET_ALLOWED, value="***")
    return value


Secret = Annotated[StrictStr, BeforeValidator(_secret)]
"""A password: a string, masked in the messages about it."""


@dataclass(frozen=True, slots=True, config=_CONFIG)
class ClusterConfig:
    """``[cluster]``: several nodes sharing destination state, probing and call load
    through Redis (docs/cluster.md)."""

    redis_url: Annotated[
        StrictStr,
        BeforeValidator(_redis_url),
        Key(allowed=REDIS_URL_ALLOWED, kamailio="none (Kamailio's dmq module shares state)"),
    ] = Field(default="", repr=False)
    """Redis to share state through, e.g. `"redis://127.0.0.1:6379/0"`, with an ACL user
    and password `"redis://sipd:secret@10.0.0.5:6379/0"` (a password alone:
    `"redis://:secret@10.0.0.5/0"`), over TLS `"rediss://10.0.0.5:6380/0"`; `""` with no
    `sentinels` = standalone (the default: no cluster code runs). The password never
    appears in logs, `cluster.nodes`, `/health` or the console."""
    sentinels: Annotated[
        tuple[str, ...],
        BeforeValidator(_sentinels),
        Key(
            allowed=SENTINELS_ALLOWED,
            kamailio="ndb_redis `sentinel`",
            toml_type="array of strings",
            toml_default="[] (no Sentinel: redis_url)",
        ),
    ] = ()
    """Redis Sentinels that name the master to use instead of `redis_url` (which must then
    be `""`): the node asks them for `sentinel_master`'s address, and asks again whenever
    it loses the master, so it follows a failover without a restart. List every sentinel
    (3 or more); one that answers is enough."""
    sentinel_master: Annotated[
        StrictStr,
        Key(allowed="a master name", kamailio="ndb_redis `sentinel_group`"),
    ] = ""
    """The master's name in the sentinels' configuration (`sentinel monitor mymaster ...`);
    required with `sentinels`."""
    sentinel_username: Annotated[StrictStr, Key(kamailio="none")] = ""
    """ACL user the sentinels are logged in as (their `requirepass`/`user` settings);
    `""` = the default user."""
    sentinel_password: Annotated[
        Secret, Key(allowed=_SECRET_ALLOWED, kamailio="none", toml_type="string")
    ] = Field(default="", repr=False)
    """Password of the sentinels themselves (sentinel.conf `requirepass`, or the ACL
    user's); `""` = none. Not the master's: that is `redis_password`."""
    redis_db: Annotated[
        StrictInt, Field(ge=0, le=65535), Key(allowed="0..65535", kamailio="ndb_redis `db`")
    ] = 0
    """With `sentinels`: the database number on the master (`redis_url`'s `/db`)."""
    redis_username: Annotated[StrictStr, Key(kamailio="none")] = ""
    """With `sentinels`: the ACL user logged in on the master (`redis_url`'s `user`);
    `""` = the default user."""
    redis_password: Annotated[
        Secret, Key(allowed=_SECRET_ALLOWED, kamailio="ndb_redis `pass`", toml_type="string")
    ] = Field(default="", repr=False)
    """With `sentinels`: the master's password (`requirepass`, or the ACL user's;
    `redis_url`'s `password`); `""` = none."""
    redis_tls: Annotated[StrictBool, Key(kamailio="ndb_redis `tls`")] = False
    """With `sentinels`: talk TLS to the sentinels and to the master (`rediss://` of
    `redis_url`), with `tls_ca`, `tls_cert` and `tls_key`."""
    tls_ca: Annotated[StrictStr, Key(allowed=_TLS_FILE_ALLOWED, kamailio="ndb_redis `ca_path`")] = (
        ""
    )
    """With TLS (`rediss://` or `redis_tls`): the CA certificates (PEM) Redis's certificate
    must chain to (Redis's `tls-ca-cert-file`); `""` = the system's trusted CAs."""
    tls_cert: Annotated[StrictStr, Key(allowed=_TLS_FILE_ALLOWED, kamailio="none")] = ""
    """With TLS: this node's client certificate (PEM), for a Redis with
    `tls-auth-clients yes`; `""` = none."""
    tls_key: Annotated[StrictStr, Key(allowed=_TLS_FILE_ALLOWED, kamailio="none")] = ""
    """With TLS: the private key of `tls_cert` (PEM, not encrypted); `""` = inside
    `tls_cert`'s file."""
    tls_check_hostname: Annotated[StrictBool, Key(kamailio="none")] = True
    """With TLS: Redis's certificate must also name the host connected to (the master's IP
    address as the sentinels give it, with `sentinels`). `false` checks the chain to
    `tls_ca` only, as Redis's own replication and Sentinel do."""
    namespace: Annotated[StrictStr, Field(min_length=1), Key(kamailio="none")] = "sipdispatch"
    """Prefix of every Redis key and channel: several clusters can share one Redis."""
    node_id: Annotated[
        StrictStr, Key(kamailio="dmq `server_address`", toml_default='"" (hostname:port)')
    ] = ""
    """This node's name in the cluster; `""` = `<hostname>:<first SIP port>`. Unique per
    node."""
    heartbeat: Annotated[
        Seconds,
        Field(gt=0, le=60),
        Key(allowed=SECONDS_ALLOWED, toml_type="number", kamailio="none"),
    ] = 1.0
    """Seconds between heartbeats; a node silent for 3 heartbeats has left. Changes made
    on another node are applied here within one heartbeat."""
    probing: Annotated[
        ClusterProbing,
        _any_case(ClusterProbing),
        Key(kamailio="none"),
    ] = "split"
    """`"split"`: each destination is pinged by one live node (rendezvous hashing of its
    URI over the live nodes); `"all"`: every node pings every destination."""
    load_wait: Annotated[
        StrictInt, Field(ge=0, le=10000), Key(unit="milliseconds", kamailio="none")
    ] = 100
    """How long an INVITE under algorithm 10 to a destination with a `maxload` waits for
    Redis to say the call fits, so that `maxload` holds across the nodes (the reservation
    takes one Redis round trip, well under a millisecond on a LAN). A call that does not
    fit goes to the next destination, or gets 503. Past this wait the call goes on the
    node's own count and is counted in Redis when the answer comes. `0` = never wait:
    two nodes may then give the last free slot to two calls at once."""

    @property
    def enabled(self) -> bool:
        """A cluster node: `redis_url` or `sentinels` is set."""
        return bool(self.redis_url or self.sentinels)

    @property
    def tls(self) -> bool:
        """TLS to Redis: `rediss://`, or `redis_tls` with `sentinels`."""
        return self.redis_tls or self.redis_url.lower().startswith("rediss://")

    @model_validator(mode="after")
    def _one_way_to_redis(self) -> ClusterConfig:
        if self.redis_url and self.sentinels:
            raise Invalid(
                "cannot be used together with cluster.redis_url; choose one (with "
                "sentinels, the master's db, user and password are redis_db, "
                "redis_username, redis_password)",
                at=("sentinels",),
                value=list(self.sentinels),
            )
        if self.sentinels and not self.sentinel_master:
            raise Invalid(
                "must name the master the sentinels monitor (sentinel monitor NAME ...) "
                "when cluster.sentinels is set",
                at=("sentinel_master",),
                value="",
            )
        if not self.sentinels:
            sentinel_only: list[tuple[str, object, object]] = [
                ("sentinel_master", self.sentinel_master, ""),
                ("sentinel_username", self.sentinel_username, ""),
                ("sentinel_password", self.sentinel_password, ""),
                ("redis_db", self.redis_db, 0),
                ("redis_username", self.redis_username, ""),
                ("redis_password", self.redis_password, ""),
                ("redis_tls", self.redis_tls, False),
            ]
            for key, value, default in sentinel_only:
                if value != default:
                    why = "is used with cluster.sentinels only"
                    if key.startswith("redis_"):
                        why += " (without them it is part of cluster.redis_url)"
                    shown = "***" if key.endswith("password") else value
                    raise Invalid(why, at=(key,), value=shown)
        if not self.tls:
            for key in ("tls_ca", "tls_cert", "tls_key"):
                value = getattr(self, key)
                if value:
                    raise Invalid(
                        "needs TLS to Redis: a rediss:// cluster.redis_url, or "
                        "cluster.redis_tls = true with cluster.sentinels",
                        at=(key,),
                        value=value,
                    )
        if self.tls_key and not self.tls_cert:
            raise Invalid("needs cluster.tls_cert (its certificate)", at=("tls_key",),
                          value=self.tls_key)  # fmt: skip
        return self


# --------------------------------------------------------------------------------------------
# [dns]
# --------------------------------------------------------------------------------------------

NAMESERVERS_ALLOWED: Final = (
    'must be an array of "ip" or "ip:port" strings (IPv6 in brackets), '
    'e.g. ["127.0.0.1:5353", "[2001:db8::53]"]'
)
DNS_PORT: Final = 53


def _nameservers(value: object) -> tuple[str, ...]:
    """``nameservers``: IP addresses with an optional port, kept as ``ip:port``."""
    if not isinstance(value, list | tuple):
        raise Invalid(NAMESERVERS_ALLOWED)
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise Invalid(NAMESERVERS_ALLOWED, at=(i,), value=item)
        try:
            host, port = parse_host_port(item.strip(), "nameserver")
            ipaddress.ip_address(host)
        except ValueError:
            raise Invalid(NAMESERVERS_ALLOWED, at=(i,), value=item) from None
        if port == 0:
            raise Invalid(NAMESERVERS_ALLOWED, at=(i,), value=item)
        out.append(f"{bracket(host)}:{port or DNS_PORT}")
    return tuple(out)


@dataclass(frozen=True, slots=True, config=_CONFIG)
class DnsConfig:
    """``[dns]``: how destinations given as a host name without a port are located
    (NAPTR, SRV, A/AAAA; docs/dispatcher.md)."""

    nameservers: Annotated[
        tuple[str, ...],
        BeforeValidator(_nameservers),
        Key(
            allowed=NAMESERVERS_ALLOWED,
            kamailio="core `dns_*` / `/etc/resolv.conf`",
            toml_type="array of strings",
            toml_default="[] (the system's resolver)",
        ),
    ] = ()
    """DNS servers asked, in order (port 53 when none is given); empty = the servers of
    `/etc/resolv.conf`."""
    timeout: Annotated[
        Seconds,
        Field(gt=0, le=30),
        Key(
            allowed=SECONDS_ALLOWED + ", at most 30",
            toml_type="number",
            kamailio="core `dns_retr_time`",
        ),
    ] = 2.0
    """Seconds the lookups of one name may take together (its NAPTR, SRV, A and AAAA
    queries run at once, retries included); a query not answered by then counts as
    failed: the name resolves with what did answer, and fails only when nothing gave an
    address (a refresh then keeps the last good answer)."""

    @property
    def servers(self) -> tuple[tuple[str, int], ...]:
        """``nameservers`` as ``(ip, port)``."""
        out = []
        for text in self.nameservers:
            host, _, port = text.rpartition(":")
            out.append((host.strip("[]"), int(port)))
        return tuple(out)


# --------------------------------------------------------------------------------------------
# [capture]
# --------------------------------------------------------------------------------------------

HEP_ALLOWED: Final = '"" (off), udp:HOST:PORT or tcp:HOST:PORT, e.g. "udp:10.0.0.5:9060"'
HEP_DEFAULT_PORT: Final = 9060


def _hep(value: object) -> object:
    """``hep``: ``udp:HOST:PORT`` or ``tcp:HOST:PORT`` (``udp:`` and the port may be
    left out), kept as ``PROTO:HOST:PORT``."""
    if not isinstance(value, str):
        raise Invalid(HEP_ALLOWED)
    text = value.strip()
    if not text:
        return ""
    proto, sep, rest = text.partition(":")
    transport = "udp"
    if sep and proto.lower() in ("udp", "tcp", "tls", "sctp"):
        transport = proto.lower()
        if transport not in ("udp", "tcp"):
            raise Invalid(HEP_ALLOWED + " (HEP goes over UDP or TCP)")
        text = rest
    try:
        host, port = parse_host_port(text, "HEP collector")
    except ValueError as exc:
        raise Invalid(f"{HEP_ALLOWED}: {exc}") from None
    if port == 0:
        raise Invalid(HEP_ALLOWED)
    return f"{transport}:{bracket(host)}:{port or HEP_DEFAULT_PORT}"


@dataclass(frozen=True, slots=True, config=_CONFIG)
class CaptureConfig:
    """``[capture]``: copies of the SIP messages, for Homer (HEPv3; docs/capture.md)."""

    hep: Annotated[
        str,
        BeforeValidator(_hep),
        Key(allowed=HEP_ALLOWED, kamailio="siptrace `duplicate_uri` with `hep_mode_on`"),
    ] = ""
    """Where every SIP message received and sent is copied as HEPv3 (Homer,
    heplify-server): `udp:HOST:PORT` (one datagram per copy) or `tcp:HOST:PORT` (the
    copies of 10 ms written together on one connection: the cheaper, for heplify-server's
    `HEPTCPAddr`). Empty = no copies. A slow or absent collector never delays the SIP;
    copies that cannot be sent are counted (`sipdispatch_hep_dropped_total`)."""
    hep_id: Annotated[
        int,
        Field(ge=0, le=4294967295),
        Key(allowed="0..4294967295", kamailio="siptrace `hep_capture_id`"),
    ] = 1
    """The capture agent id written in each copy (Homer shows it as the node)."""
    hep_password: Annotated[str, Key(allowed="a string", kamailio="siptrace `auth_key`")] = ""
    """Sent in each copy when set (the collector's HEP password); empty = none."""
    capture_pings: Annotated[bool, Key(kamailio="none")] = False
    """*(sipdispatch addition)* Copy the proxy's own OPTIONS pings and their answers too
    (off: a destination pinged every few seconds would fill the collector)."""
    dir: Annotated[
        StrictStr,
        Key(allowed="a directory path", kamailio="sipdump `folder`"),
    ] = "capture"
    """Where `capture.start` writes its pcap files (relative to the working directory;
    made when the first capture starts)."""
    max_bytes: Annotated[
        StrictInt,
        Field(ge=10_000, le=2_000_000_000),
        Key(unit="bytes", allowed="10000..2000000000", kamailio="none"),
    ] = 50_000_000
    """A capture's file ends at this size."""
    max_seconds: Annotated[
        StrictInt,
        Field(ge=1, le=86_400),
        Key(unit="seconds", allowed="1..86400", kamailio="none"),
    ] = 3600
    """A capture runs at most this long (`capture.start` asks for 60 s when it names
    no time)."""
    ladder: Annotated[
        StrictInt,
        Field(ge=0, le=1000),
        Key(unit="calls, 0 = off", allowed="0..1000", kamailio="none"),
    ] = 50
    """*(sipdispatch addition)* The console keeps the messages of this many of the last
    failed calls (rejected, timed out, cancelled or failed over) and shows each as a
    ladder."""

    @property
    def collector(self) -> tuple[str, int] | None:
        """``hep`` as ``(host, port)``; None when off."""
        if not self.hep:
            return None
        host, _, port = self.hep[4:].rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def hep_transport(self) -> str:
        """``udp`` or ``tcp``: how the copies go to the collector."""
        return self.hep[:3]


# --------------------------------------------------------------------------------------------
# [events]
# --------------------------------------------------------------------------------------------

COMMAND_ALLOWED: Final = (
    'must be an array of strings, the program first, e.g. ["/usr/local/bin/notify", "ops"] '
    "(run without a shell); [] = none"
)
WEBHOOK_ALLOWED: Final = 'must be "" (none) or an http:// or https:// URL'


def _command(value: object) -> tuple[str, ...]:
    """``command``: the program and its arguments, each a string; the program not empty."""
    if not isinstance(value, list | tuple):
        raise Invalid(COMMAND_ALLOWED)
    for i, item in enumerate(value):
        if not isinstance(item, str) or "\0" in item:
            raise Invalid(COMMAND_ALLOWED, at=(i,), value=item)
    if value and not value[0].strip():
        raise Invalid(COMMAND_ALLOWED + " (the program is empty)", at=(0,), value=value[0])
    return tuple(value)


def _webhook(value: object) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return ""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
        raise Invalid(WEBHOOK_ALLOWED)
    if any(c.isspace() for c in text):
        raise Invalid(WEBHOOK_ALLOWED + " (no spaces)")
    return text


@dataclass(frozen=True, slots=True, config=_CONFIG)
class EventsConfig:
    """``[events]``: what is told when a destination goes down or comes back up
    (Kamailio's `event_route[dispatcher:dst-down]` and `[dispatcher:dst-up]`;
    docs/hooks.md, "Destination events")."""

    mode: Annotated[
        StrictInt,
        Field(ge=0, le=2),
        Key(allowed="must be 0, 1 or 2", kamailio="`event_callback_mode`"),
    ] = 0
    """When events are raised: `0` = when a ping's result or a failed call (`mark_failed`,
    Kamailio's `ds_mark_dst`) makes a destination stop or start getting calls; `1` = only
    for pings' results; `2` = as 0, and also `dst-up` when a destination with no state
    bits yet (`AX`, as loaded) gets its first state that keeps it up. Never for
    `dispatcher.set_state` (as in Kamailio), a reload, DNS, nor a change another worker
    or cluster node made (that one raised it)."""
    on_destination_down: Annotated[
        str | None,
        _str_then(parse_hook_name),
        Key(
            allowed=HOOK_ALLOWED,
            kamailio="`event_route[dispatcher:dst-down]` / `event_callback`",
            toml_type="string",
            toml_default="none",
        ),
    ] = None
    """A Python function, `"module:function"`, called with a read-only `DestinationEvent`
    when a destination goes down (`dst-down`). Found as `[[route]] python` hooks are, and
    imported afresh by `dispatcher.reload`."""
    on_destination_up: Annotated[
        str | None,
        _str_then(parse_hook_name),
        Key(
            allowed=HOOK_ALLOWED,
            kamailio="`event_route[dispatcher:dst-up]` / `event_callback`",
            toml_type="string",
            toml_default="none",
        ),
    ] = None
    """The same for a destination that comes back up (`dst-up`)."""
    hook_timeout: Annotated[
        Seconds,
        Field(gt=0, le=300),
        Key(allowed=SECONDS_ALLOWED + ", at most 300", toml_type="number", kamailio="none"),
    ] = 5.0
    """Seconds an event hook may take; past it, it is logged and counted as timed out and
    the next event does not wait for it. A plain function runs in a thread of its own (it
    may block), an `async def` one on the event loop (it is cancelled)."""
    command: Annotated[
        tuple[str, ...],
        BeforeValidator(_command),
        Key(
            allowed=COMMAND_ALLOWED,
            kamailio="`exec` module from the event route",
            toml_type="array of strings",
            toml_default="[] (none)",
        ),
    ] = ()
    """A program run for every event, without a shell, with the event in its environment
    (`SIPDISPATCH_EVENT=dst-down`, `SIPDISPATCH_SET`, `SIPDISPATCH_URI`, ...); what it
    prints is logged. A relative program is looked up on `PATH` (a name) or from the
    working directory (a path); it must exist when the proxy starts."""
    command_timeout: Annotated[
        Seconds,
        Field(gt=0, le=3600),
        Key(allowed=SECONDS_ALLOWED + ", at most 3600", toml_type="number", kamailio="none"),
    ] = 10.0
    """Seconds the command may run; then it (and what it started) is killed and the event
    counted as timed out."""
    command_concurrency: Annotated[
        StrictInt, Field(ge=1, le=64), Key(unit="processes", kamailio="none")
    ] = 4
    """Commands running at once at most; the next events wait (those of one destination
    always run one after the other, in order)."""
    webhook: Annotated[
        StrictStr,
        BeforeValidator(_webhook),
        Key(allowed=WEBHOOK_ALLOWED, kamailio="`http_async_client` from the event route"),
    ] = ""
    """A URL each event is POSTed to as a JSON object (the same fields as the command's
    environment); a reply other than 2xx, or none, is retried. Never delays the SIP."""
    webhook_timeout: Annotated[
        Seconds,
        Field(gt=0, le=60),
        Key(allowed=SECONDS_ALLOWED + ", at most 60", toml_type="number", kamailio="none"),
    ] = 5.0
    """Seconds one POST may take (connecting included)."""
    webhook_retries: Annotated[
        StrictInt, Field(ge=0, le=10), Key(unit="retries", kamailio="none")
    ] = 2
    """POSTs tried again after a failed one (1 s, then 2 s, 4 s... later), before the event
    is counted as failed."""

    @property
    def active(self) -> bool:
        """Something is told of events."""
        return bool(
            self.on_destination_down or self.on_destination_up or self.command or self.webhook
        )

    @property
    def hooks(self) -> dict[str, str]:
        """The event hooks configured: key (``events.on_destination_down``) -> name."""
        named = {
            "events.on_destination_down": self.on_destination_down,
            "events.on_destination_up": self.on_destination_up,
        }
        return {key: name for key, name in named.items() if name}


@dataclass(frozen=True, slots=True, config=_CONFIG)
class Config:
    """The whole configuration of one sipdispatch process."""

    server: ServerConfig = ServerConfig()
    """SIP sockets and process model."""
    transaction: TransactionConfig = TransactionConfig()
    """Transaction timers, with Kamailio `tm` names."""
    admin: AdminConfig = AdminConfig()
    """The admin HTTP listener."""
    dispatcher: DispatcherConfig = DispatcherConfig()
    """Destination store, probing and algorithm settings."""
    security: SecurityConfig = SecurityConfig()
    """Who may send requests, and how fast."""
    tls: TlsConfig | None = None
    """TLS settings; None (no `[tls]` table) = no TLS at all."""
    log: LogConfig = LogConfig()
    """The call log and the format of log lines."""
    cluster: ClusterConfig = ClusterConfig()
    """Sharing state with other nodes through Redis."""
    dns: DnsConfig = DnsConfig()
    """How destinations given by host name alone are located."""
    capture: CaptureConfig = CaptureConfig()
    """Copies of the SIP messages for a capture server (Homer)."""
    events: EventsConfig = EventsConfig()
    """What is told when a destination goes down or comes back up."""
    routes: Annotated[
        tuple[RouteRule, ...],
        BeforeValidator(_routes),
        Field(validation_alias="route"),
        Key(allowed=ROUTE_ALLOWED, toml_type="array of tables", toml_default="none"),
    ] = ()
    """``[[route]]`` rules in file order; first match wins."""

    @field_validator("routes", mode="wrap")
    @classmethod
    def _algorithm_needs(
        cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> tuple[RouteRule, ...]:
        """What an algorithm needs from ``[dispatcher]``: algorithm 7 a header to hash."""
        rules: tuple[RouteRule, ...] = handler(value)
        dispatcher = info.data.get("dispatcher")
        if not isinstance(dispatcher, DispatcherConfig):
            return rules  # [dispatcher] is wrong itself; that is reported
        for i, rule in enumerate(rules):
            if rule.algorithm == ALGORITHM_HASH_HEADER and not dispatcher.hash_header:
                raw = value[i] if isinstance(value, list | tuple) else None
                written = raw.get("algorithm") if isinstance(raw, Mapping) else rule.algorithm
                raise Invalid(
                    "algorithm 7 (hash-header) needs dispatcher.hash_header set",
                    at=(i, "algorithm"),
                    value=written,
                )
            for j, entry in enumerate(rule.fallback):
                if entry.algorithm == ALGORITHM_HASH_HEADER and not dispatcher.hash_header:
                    raise Invalid(
                        "algorithm 7 (hash-header) needs dispatcher.hash_header set",
                        at=(i, "fallback", j, "algorithm"),
                        value=entry.algorithm,
                    )
        return rules

    @model_validator(mode="after")
    def _tls_listener_has_a_certificate(self) -> Config:
        """A `tls:` listener needs `[tls] certificate`."""
        for i, addr in enumerate(self.server.listen):
            if addr.proto == "tls" and (self.tls is None or not self.tls.certificate):
                raise Invalid(
                    "a tls: listener needs [tls] certificate (and private_key) set",
                    at=("server", "listen", i),
                    value=str(addr),
                )
        return self

    @model_validator(mode="after")
    def _admin_port_free(self) -> Config:
        """The admin HTTP listener must not take a TCP port a SIP socket needs."""
        admin = self.admin
        for i, addr in enumerate(self.server.listen):
            same_host = addr.host == admin.host or is_wildcard(addr.host) or is_wildcard(admin.host)
            if addr.proto in ("tcp", "tls") and addr.port == admin.port and same_host:
                raise Invalid(
                    f"conflicts with server.listen[{i}] ({addr})",
                    at=("admin", "listen"),
                    value=admin.listen,
                )
        return self
