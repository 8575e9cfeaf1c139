"""Header names and the small grammars the proxy needs (RFC 3261 §7.3, §20, §25).

Header names are compared case-insensitively and compact forms are the same
header (§7.3.3), so every header carries a *key*: its long name lower-cased.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.uri import HOST_CHARS, parse_hostport, parse_params

COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "r": "refer-to",
    "b": "referred-by",
    "o": "event",
    "u": "allow-events",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}
"""Compact header forms: RFC 3261 §7.3.3 and the extensions that define one."""

_key_cache: dict[str, str] = {}


def header_key(name: str) -> str:
    """The lookup key of a header name: long form, lower-cased."""
    key = _key_cache.get(name)
    if key is None:
        low = name.lower()
        key = COMPACT_FORMS.get(low, low)
        if len(_key_cache) < 4096:  # bounded: names are peer-chosen
            _key_cache[name] = key
    return key


def split_commas(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and ``<...>``.

    RFC 3261 §7.3.1: several values of one header may stand on one line separated
    by commas; commas inside a quoted display name or an angle-bracketed URI are
    not separators.
    """
    if "," not in value:
        return [value.strip()]
    if '"' not in value and "<" not in value:
        # Fast path (Via sets, Route sets written without brackets): no quoting.
        parts = [part.strip() for part in value.split(",")]
        if not all(parts):
            raise ParseError("empty value in comma-separated list")
        return parts
    out: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    if in_quote:
        raise ParseError("unterminated quoted string")
    out.append(value[start:].strip())
    if any(not part for part in out):
        raise ParseError("empty value in comma-separated list")
    return out


def split_name_addr(value: str) -> tuple[str, str]:
    """Split a From/To/Contact/Route value into (URI text, header params text).

    Handles ``"Display, Name" <sip:u@h;p>;tag=x`` and bare ``sip:u@h;tag=x``
    (in the bare form, ``;`` parameters belong to the header, RFC 3261 §20.10).
    The params text is what follows the first ``;`` after the URI, or "".
    """
    v = value.strip()
    i = 0
    if v.startswith('"'):
        i = 1
        n = len(v)
        while i < n:
            ch = v[i]
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                break
            i += 1
        else:
            raise ParseError("unterminated quoted display name")
        i += 1
    lt = v.find("<", i)
    if lt >= 0:
        gt = v.find(">", lt)
        if gt < 0:
            raise ParseError("missing '>' after URI")
        rest = v[gt + 1 :].lstrip()
        if rest and rest[0] != ";":
            raise ParseError("junk after '>'")
        return v[lt + 1 : gt].strip(), rest[1:] if rest else ""
    if i:
        raise ParseError("display name without <URI>")
    uri, _, params = v.partition(";")
    return uri.strip(), params


def tag_of(value: str) -> str | None:
    """The ``tag`` parameter of a From or To value, or None."""
    if "tag" not in value and "TAG" not in value.upper():
        return None
    _, params = split_name_addr(value)
    if not params:
        return None
    tag = parse_params(params, "From/To").get("tag")
    return tag or None


_VIA_RE = re.compile(
    r"\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9-]+)\s+(\[[0-9A-Fa-f:.]+\](?:\s*:\s*\d+)?|[^\s;:]+(?:\s*:\s*\d+)?)\s*(?:;(.*))?$",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(slots=True)
class Via:
    """One Via value (RFC 3261 §20.42)."""

    transport: str
    """Upper-case transport token (UDP, TCP, TLS, ...)."""
    host: str
    """sent-by host, IPv6 without brackets."""
    port: int | None
    """sent-by port, or None."""
    params: dict[str, str | None]
    """Via parameters, names lower-cased."""

    @property
    def branch(self) -> str | None:
        """The branch parameter, or None."""
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as it goes in a Via (IPv6 bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        params = "".join(
            f";{name}" if value is None else f";{name}={value}"
            for name, value in self.params.items()
        )
        return f"SIP/2.0/{self.transport} {self.sent_by}{params}"


_TRANSPORT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_SENT_BY_CHARS = HOST_CHARS | {":"}
_sent_by_cache: dict[str, tuple[str, int | None]] = {}
"""Parsed sent-by values: the same few peers write every Via."""


def parse_via(value: str) -> Via:
    """Parse one Via value; raise :class:`ParseError` saying what is wrong."""
    if value.startswith("SIP/2.0/"):
        # Fast path for the form every peer writes: ``SIP/2.0/UDP host:port;params``
        # with single spaces and no IPv6; anything else takes the regex below.
        sp = value.find(" ", 8)
        transport = value[8:sp]
        if sp > 8 and _TRANSPORT_CHARS.issuperset(transport):
            sent_by, _, params_text = value[sp + 1 :].partition(";")
            if sent_by and _SENT_BY_CHARS.issuperset(sent_by):
                try:
                    known = _sent_by_cache.get(sent_by)
                    if known is None:
                        known = parse_hostport(sent_by, "Via sent-by")
                        if len(_sent_by_cache) >= 4096:  # bounded: peers choose them
                            _sent_by_cache.clear()
                        _sent_by_cache[sent_by] = known
                    host, port = known
                    params_text = params_text.strip()
                    params = parse_params(params_text, "Via") if params_text else {}
                    return Via(transport.upper(), host, port, params)
                except ParseError:
                    pass  # the regex below says what is wrong, as it always did
    m = _VIA_RE.match(value)
    if m is None:
        raise ParseError("malformed Via header")
    # group 3 (the parameters) is None when absent: kept apart from the str
    # variables above, whose types a compiled build checks
    via_transport: str = m.group(1)
    via_sent_by: str = m.group(2)
    via_params: str | None = m.group(3)
    host, port = parse_hostport(via_sent_by.replace(" ", "").replace("\t", ""), "Via sent-by")
    params = parse_params(via_params.strip(), "Via") if via_params else {}
    return Via(via_transport.upper(), host, port, params)


def parse_cseq(value: str) -> tuple[int, str]:
    """Parse ``CSeq: number METHOD`` (RFC 3261 §20.16)."""
    parts = value.split()
    # isascii: str.isdigit() also accepts '²' (a latin-1 byte), which int() rejects.
    if len(parts) != 2 or not parts[0].isascii() or not parts[0].isdigit():
        raise ParseError("malformed CSeq header")
    number = int(parts[0])
    # §8.1.1.5: "The sequence number MUST be expressible as a 32-bit unsigned integer
    # and MUST be less than 2**31."
    if number >= 2**31:
        raise ParseError("CSeq number out of range")
    return number, parts[1]
