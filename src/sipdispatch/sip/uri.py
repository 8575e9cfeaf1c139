"""SIP and SIPS URIs (RFC 3261 §19.1, §25.1).

``parse_uri`` accepts ``sip:`` and ``sips:`` URIs with user, password, host
(name, IPv4 or bracketed IPv6), port, ``;params`` and ``?headers``. Parameter
names are compared case-insensitively (§19.1.4), so they are stored lower-cased;
their values and the user part are kept as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sipdispatch.sip.errors import ParseError

DEFAULT_SIP_PORT: Final = 5060
"""RFC 3261 §19.1.2: port when a sip: URI names none (UDP/TCP)."""
DEFAULT_SIPS_PORT: Final = 5061
"""RFC 3261 §19.1.2 / §26.2: port when a sips: URI (TLS) names none."""

HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
"""Characters of a host name or IPv4 address (IPv6 references are bracketed)."""
MAX_IPV6_TEXT: Final = 45
"""Longest IPv6 address in text form (RFC 4291 §2.2: eight groups with an IPv4 tail)."""
IPV6_CHARS: Final = frozenset("0123456789abcdefABCDEF:.")
"""Characters of an IPv6 reference between its brackets (hex digits, colons, and the
dots of an embedded IPv4 address)."""


@dataclass(slots=True)
class SipUri:
    """A parsed SIP URI. ``str(uri)`` writes it back in canonical form."""

    scheme: str
    """``sip`` or ``sips`` (lower-cased)."""
    host: str
    """Host name, IPv4 address, or IPv6 address *without* brackets."""
    user: str | None = None
    """User part as written (escapes kept), or None when absent."""
    password: str | None = None
    """Password part, or None."""
    port: int | None = None
    """Explicit port, or None when the URI names none."""
    params: dict[str, str | None] = field(default_factory=dict)
    """URI parameters, names lower-cased, in order; a flag parameter has value None."""
    headers: str | None = None
    """The raw ``?headers`` part without the ``?``, or None."""

    @property
    def is_ipv6(self) -> bool:
        """True when the host is an IPv6 reference."""
        return ":" in self.host

    @property
    def hostport(self) -> str:
        """``host[:port]`` with IPv6 bracketed, as written in Via or Route."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def transport(self) -> str:
        """The ``transport`` parameter lower-cased; ``tls`` for sips, else ``udp``."""
        t = self.params.get("transport")
        if t:
            return t.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def effective_port(self) -> int:
        """The port to send to: explicit, else the scheme's default."""
        if self.port is not None:
            return self.port
        return DEFAULT_SIPS_PORT if self.scheme == "sips" else DEFAULT_SIP_PORT

    def copy(self) -> SipUri:
        """A copy that can be changed without touching this one."""
        return SipUri(
            self.scheme, self.host, self.user, self.password, self.port,
            dict(self.params), self.headers,
        )  # fmt: skip

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":")
                parts.append(self.password)
            parts.append("@")
        parts.append(self.hostport)
        for name, value in self.params.items():
            parts.append(f";{name}" if value is None else f";{name}={value}")
        if self.headers is not None:
            parts.append("?")
            parts.append(self.headers)
        return "".join(parts)


def parse_hostport(text: str, what: str = "host") -> tuple[str, int | None]:
    """Parse ``host[:port]`` (IPv6 bracketed) into (host without brackets, port)."""
    if not text:
        raise ParseError(f"empty {what}")
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            raise ParseError(f"unterminated IPv6 reference in {what}")
        host = text[1:end]
        if (
            not 2 <= len(host) <= MAX_IPV6_TEXT
            or not IPV6_CHARS.issuperset(host)
            or ":" not in host
        ):
            raise ParseError(f"bad IPv6 address in {what}")
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise ParseError(f"junk after IPv6 address in {what}")
        return host, _port(rest[1:], what)
    host, sep, port_text = text.partition(":")
    if not host or not HOST_CHARS.issuperset(host):
        raise ParseError(f"bad {what} {text[:60]!r}")  # bounded: it becomes a reason phrase
    return host, (_port(port_text, what) if sep else None)


def _port(text: str, what: str) -> int:
    # isascii: str.isdigit() also accepts '²' (a latin-1 byte), which int() rejects.
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise ParseError(f"bad port in {what}")
    port = int(text)
    if not 0 < port < 65536:
        raise ParseError(f"port out of range in {what}")
    return port


MAX_PARAMS: Final = 100
"""Most parameters one URI or header value may have: real ones have a handful (a Via's
branch, rport, received; a URI's transport, lr, user), and each one is parsed, copied
and written out again, so a value of thousands is refused rather than handled."""


def parse_params(text: str, what: str = "URI") -> dict[str, str | None]:
    """Parse ``;name[=value]`` pairs (text starts after the first ``;``)."""
    params: dict[str, str | None] = {}
    if not text or ";;" in text or text[-1] == ";":  # found before splitting a long run
        raise ParseError(f"empty parameter in {what}")
    if text.count(";") >= MAX_PARAMS:
        raise ParseError(f"more than {MAX_PARAMS} parameters in {what}")
    for item in text.split(";"):
        if not item:
            raise ParseError(f"empty parameter in {what}")
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not name:
            raise ParseError(f"parameter without a name in {what}")
        params[name] = value.strip() if sep else None
    return params


def parse_uri(text: str) -> SipUri:
    """Parse a ``sip:`` or ``sips:`` URI. Raises :class:`ParseError` if malformed."""
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sip", "sips"):
        raise ParseError(f"not a SIP URI: {text[:60]!r}")
    headers: str | None = None
    q = rest.find("?")
    if q >= 0:
        rest, headers = rest[:q], rest[q + 1 :]
    user: str | None = None
    password: str | None = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, psep, pw = userinfo.partition(":")
        if psep:
            password = pw
        if not user:
            raise ParseError("empty user part in URI")
    semi = rest.find(";")
    params: dict[str, str | None] = {}
    if semi >= 0:
        params = parse_params(rest[semi + 1 :])
        rest = rest[:semi]
    host, port = parse_hostport(rest, "URI host")
    return SipUri(scheme, host, user, password, port, params, headers)
