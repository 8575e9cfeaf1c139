"""The value forms of the configuration file: host and port, reply codes, algorithm names...

Each ``parse_*`` function takes a value as the TOML decoder gives it and returns what the
config objects hold, or raises `Invalid` saying what is allowed. Syntax that the SIP layer
already parses is parsed by it (`sipdispatch.sip.uri`); the algorithm names are the
registry's (`sipdispatch.dispatcher.algorithms`); database URLs are SQLAlchemy's.
Nothing here depends on pydantic: the schema (`.schema`) calls these from its validators.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

import sqlalchemy
from sqlalchemy.exc import ArgumentError

from sipdispatch.dispatcher.algorithms import REGISTRY
from sipdispatch.dispatcher.hashing import is_hash_template, parse_hash_template
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.uri import parse_hostport, parse_uri
from sipdispatch.store import StoreError, make_engine_url
from sipdispatch.store.sql import URL_FORMS

__all__ = [
    "ALGORITHM_ALLOWED",
    "ALGORITHM_NAMES",
    "FAILOVER_ON_ALLOWED",
    "REPLY_CODES_ALLOWED",
    "SQL_IDENTIFIER_ALLOWED",
    "URL_FORMS",
    "Invalid",
    "bracket",
    "is_loopback",
    "is_wildcard",
    "parse_algorithm",
    "parse_db_url",
    "parse_failover_on",
    "parse_header_name",
    "parse_host_port",
    "parse_method",
    "parse_reply_codes",
    "parse_sip_uri",
    "parse_sql_identifier",
    "show_db_url",
]


class Invalid(ValueError):
    """A value that cannot be used: ``allowed`` says what would be.

    ``at`` is the place inside the value (an array index, or a key of the table being
    validated) when the problem is not the value as a whole; ``value`` replaces the value
    shown in the message (for instance a database URL with its password masked).
    """

    def __init__(
        self, allowed: str, *, at: tuple[str | int, ...] = (), value: object = None
    ) -> None:
        super().__init__(allowed)
        self.allowed = allowed
        self.at = at
        self.value = value


# --------------------------------------------------------------------------------------------
# Hosts and ports
# --------------------------------------------------------------------------------------------

MAX_HOST_NAME: Final = 253
"""Longest host name (RFC 1035 §2.3.4), dots included."""
MAX_LABEL: Final = 63
"""Longest label of a host name (RFC 1035 §2.3.4)."""
_IPV4_CHARS: Final = frozenset("0123456789.")


def parse_host_port(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv4, host name or ``[IPv6]``) with the SIP parser, then check
    the host: returned normalised (IPv6 without brackets and compressed, names lower-case).

    Raises ValueError saying what is wrong; `what` names the value in it (``listen address``).
    """
    if text.count(":") > 1 and not text.startswith("["):
        raise ValueError("an IPv6 address must be written in brackets, e.g. [::1]")
    try:
        host, port = parse_hostport(text, what)
    except ParseError as exc:
        raise ValueError(str(exc)) from None
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host)), port
        except ValueError:
            raise ValueError(f"[{host}] is not a valid IPv6 address") from None
    if _IPV4_CHARS.issuperset(host):
        try:
            return str(ipaddress.IPv4Address(host)), port
        except ValueError:
            raise ValueError(f"{host} is not a valid IPv4 address") from None
    labels = host.split(".")
    if len(host) > MAX_HOST_NAME or not all(
        0 < len(label) <= MAX_LABEL and label[0] != "-" and label[-1] != "-" for label in labels
    ):
        raise ValueError(f"{host!r} is not a valid host name")
    return host.lower(), port


def bracket(host: str) -> str:
    """``host`` as written before ``:port``: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def is_loopback(host: str) -> bool:
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


def is_wildcard(host: str) -> bool:
    """The address that listens on every interface of its family."""
    return host in ("0.0.0.0", "::")


# --------------------------------------------------------------------------------------------
# SIP names
# --------------------------------------------------------------------------------------------

TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
"""RFC 3261 §25.1 ``token``: what a header name is made of."""


def parse_method(value: object, allowed: str) -> str:
    """A SIP method name as the config takes it: upper-case ASCII letters."""
    if not isinstance(value, str) or not (value.isascii() and value.isalpha() and value.isupper()):
        raise Invalid(allowed)
    return value


def parse_header_name(value: str) -> str:
    """``""`` or a header name (an RFC 3261 token)."""
    if value and not TOKEN_CHARS.issuperset(value):
        raise Invalid('must be "" or a SIP header name, e.g. "X-Customer"')
    return value


HASH_HEADER_ALLOWED: Final = (
    'must be "", a SIP header name, e.g. "X-Customer", or a template of {hdr:Name}, '
    "{call_id}, {from_uri}, {from_user}, {to_uri}, {to_user}, {ruri}, {ruri_user} and text, "
    'e.g. "{hdr:X-Tenant}{from_user}"'
)


def parse_hash_header(value: str) -> str:
    """Algorithm 7's key: a header name, or a template over several values."""
    if not is_hash_template(value):
        if value and not TOKEN_CHARS.issuperset(value):
            raise Invalid(HASH_HEADER_ALLOWED)
        return value
    try:
        parse_hash_template(value)
    except ValueError as exc:
        raise Invalid(f"{HASH_HEADER_ALLOWED} ({exc})") from None
    return value


HOOK_ALLOWED: Final = (
    'must be "module:function", e.g. "myhooks:route" (a module on sys.path or next to the '
    "config file, and a function in it)"
)


def parse_hook_name(value: str) -> str:
    """``module:function`` of a Python routing hook: a dotted module name and an identifier.
    Only its form is checked here; importing it is the server's business."""
    module, sep, function = value.partition(":")
    if not (
        sep
        and function.isidentifier()
        and module
        and all(part.isidentifier() for part in module.split("."))
    ):
        raise Invalid(HOOK_ALLOWED)
    return value


def parse_sip_uri(value: str) -> str:
    """A ``sip:`` or ``sips:`` URI that the SIP parser accepts, kept as written."""
    allowed = "must be a SIP URI starting with sip: or sips:"
    if any(c.isspace() for c in value):
        raise Invalid(f"{allowed} (no spaces)")
    try:
        parse_uri(value)
    except ParseError as exc:
        raise Invalid(f"{allowed} ({exc})") from None
    return value


# --------------------------------------------------------------------------------------------
# Reply codes
# --------------------------------------------------------------------------------------------

REPLY_CODES_ALLOWED: Final = (
    'must be ";"-separated code=NNN (200..699) or class=N (2..6), e.g. "code=404;class=4"'
)


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def parse_reply_codes(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Kamailio ``ds_ping_reply_codes``: ``code=404;class=4``, ';'-separated, any order.

    Returns (codes, classes), each without repeats, in the order written.
    """
    codes: list[int] = []
    classes: list[int] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, number_text = (s.strip() for s in part.partition("="))
        number = _number(number_text)
        name = name.lower()
        if eq and number is not None and name == "code" and 200 <= number <= 699:
            if number not in codes:
                codes.append(number)
        elif eq and number is not None and name == "class" and 2 <= number <= 6:
            if number not in classes:
                classes.append(number)
        else:
            raise Invalid(REPLY_CODES_ALLOWED)
    return tuple(codes), tuple(classes)


FAILOVER_ON_ALLOWED: Final = (
    'must be a list of reply codes 300..699 or classes "3xx".."6xx", e.g. ["5xx", "404"]'
)
_FAILOVER_ITEM_ALLOWED: Final = (
    'must be a reply code "300".."699" or a class "3xx".."6xx" (a string)'
)


def parse_failover_on(value: object) -> tuple[frozenset[int], frozenset[int]]:
    """``failover_on``: a list of ``"NNN"`` codes and ``"Nxx"`` classes -> (codes, classes)."""
    if not isinstance(value, list | tuple):
        raise Invalid(FAILOVER_ON_ALLOWED)
    codes: set[int] = set()
    classes: set[int] = set()
    for i, item in enumerate(value):
        text = item.strip() if isinstance(item, str) else ""
        number = _number(text)
        if len(text) == 3 and text[0] in "3456" and text[1:].lower() == "xx":
            classes.add(int(text[0]))
        elif len(text) == 3 and number is not None and 300 <= number <= 699:
            codes.add(number)
        else:
            raise Invalid(_FAILOVER_ITEM_ALLOWED, at=(i,), value=item)
    return frozenset(codes), frozenset(classes)


# --------------------------------------------------------------------------------------------
# Algorithms
# --------------------------------------------------------------------------------------------


def _algorithm_names() -> dict[str, int]:
    return {alg.name: number for number, alg in sorted(REGISTRY.items())}


def _accepted_names() -> dict[str, int]:
    return {
        name: number
        for number, alg in sorted(REGISTRY.items())
        for name in (alg.name, *alg.aliases)
    }


ALGORITHM_NAMES: Final[dict[str, int]] = _algorithm_names()
"""The registry's name of each algorithm -> its number (Kamailio's ``ds_select_dst``
numbers); `parse_algorithm` also takes each algorithm's aliases."""
_ACCEPTED_NAMES: Final = _accepted_names()


def _numbers(numbers: Iterable[int]) -> str:
    """``0..15, 114, 115``: runs of three or more written as ranges."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{run[0]}..{run[-1]}")
        else:
            parts.extend(map(str, run))
    return ", ".join(parts)


ALGORITHM_ALLOWED: Final = (
    f"must be an integer {_numbers(REGISTRY)} or one of {', '.join(ALGORITHM_NAMES)}"
)


def parse_algorithm(value: object) -> int:
    """An algorithm number the registry knows, or a name or alias of one (any case)."""
    if isinstance(value, str) and value.lower() in _ACCEPTED_NAMES:
        return _ACCEPTED_NAMES[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in REGISTRY:
        return value
    raise Invalid(ALGORITHM_ALLOWED)


# --------------------------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------------------------

MAX_SQL_IDENTIFIER: Final = 63
"""PostgreSQL's limit (MySQL's is 64)."""


SQL_IDENTIFIER_ALLOWED: Final = (
    f"must be an SQL identifier: letters, digits, _ (max {MAX_SQL_IDENTIFIER})"
)


def parse_sql_identifier(value: str) -> str:
    """A plain SQL identifier (it is written into SQL): ASCII letters, digits and ``_``."""
    if not (value.isascii() and value.isidentifier() and len(value) <= MAX_SQL_IDENTIFIER):
        raise Invalid(SQL_IDENTIFIER_ALLOWED)
    return value


EXTRA_ATTRS_ALLOWED: Final = (
    'must be "" or attr=column pairs separated by ";", e.g. "socket=socket;pref=prefix" '
    "(an attr name of letters, digits, _ or -; a column an SQL identifier)"
)


def parse_extra_attrs(value: str) -> tuple[tuple[str, str], ...]:
    """Kamailio's ``ds_db_extra_attrs``: ``aname1=cname1;aname2=cname2``."""
    out: list[tuple[str, str]] = []
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        attr, sep, column = (p.strip() for p in part.partition("="))
        if (
            not sep
            or not attr
            or not all(c.isalnum() or c in "_-" for c in attr)
            or not attr.isascii()
        ):
            raise Invalid(f"{EXTRA_ATTRS_ALLOWED}: {part!r}")
        try:
            parse_sql_identifier(column)
        except Invalid:
            raise Invalid(f"{EXTRA_ATTRS_ALLOWED}: {part!r}") from None
        out.append((attr, column))
    return tuple(out)


def parse_db_url(value: str) -> str:
    """A database URL SQLAlchemy can read, of a database the SQL store supports.

    Kept as written; a message shows it with its password masked.
    """
    if not value:
        return value
    shown = show_db_url(value)
    try:
        sqlalchemy.make_url(value)
    except (ArgumentError, ValueError):
        raise Invalid(f"must be a URL {URL_FORMS}", value=shown) from None
    try:
        make_engine_url(value)
    except StoreError:
        backend = value.partition(":")[0].partition("+")[0]
        raise Invalid(f"unsupported database {backend!r}; use {URL_FORMS}", value=shown) from None
    return value


def show_db_url(value: str) -> str:
    """``db_url`` as a message may show it: whatever follows the user name up to the last
    ``@`` is masked, so a password is hidden even in a URL that does not parse (or that
    parses wrongly because the password holds an ``@`` or a ``/``)."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return value
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hostpart}"
