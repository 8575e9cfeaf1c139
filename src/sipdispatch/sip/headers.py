"""Header names and the small grammars the proxy needs (RFC 3261 §7.3, §20, §25).

Header names are compared case-insensitively and compact forms are the same
header (§7.3.3), so every header carries a *key*: its long name lower-cased.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.memo import remember
from sipdispatch.sip.uri import HOST_CHARS, IPV6_CHARS, parse_hostport, parse_params

COMPACT_FORMS: Final[dict[str, str]] = {
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


BRANCH_COOKIE: Final = "z9hG4bK"
"""RFC 3261 §8.1.1.7: the magic cookie that starts every RFC 3261 branch."""


def header_key(name: str) -> str:
    """The lookup key of a header name: long form, lower-cased (the parser memoises
    it with the name as written)."""
    low = name.lower()
    return COMPACT_FORMS.get(low, low)


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
    while True:
        comma = _top_level_comma(value, start)
        if comma < 0:
            break
        out.append(value[start:comma].strip())
        start = comma + 1
    out.append(value[start:].strip())
    if any(not part for part in out):
        raise ParseError("empty value in comma-separated list")
    return out


def _top_level_comma(value: str, start: int) -> int:
    """Index of the first comma at or after ``start`` outside quotes and ``<...>``;
    -1 when there is none (a quote left open at the end is a ParseError)."""
    in_quote = False
    in_angle = False
    i = start
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
            return i
        i += 1
    if in_quote:
        raise ParseError("unterminated quoted string")
    return -1


def split_first(value: str) -> tuple[str, str]:
    """The first comma-separated value of a header line, and the rest after its comma
    ("" when there is none), both stripped; quotes and ``<...>`` are respected as by
    :func:`split_commas`. Only as much of the line is read as the first value takes:
    the top Via of a long Via line costs its own length, not the line's."""
    # Nothing quoted (a Via line, as it mostly is): the first comma ends the value.
    plain = '"' not in value and "<" not in value
    comma = value.find(",") if plain else _top_level_comma(value, 0)
    if comma < 0:
        first, rest = value.strip(), ""
    else:
        first, rest = value[:comma].strip(), value[comma + 1 :].strip()
        if not rest:
            raise ParseError("empty value in comma-separated list")
    if not first:
        raise ParseError("empty value in comma-separated list")
    return first, rest


def split_name_addr(value: str) -> tuple[str, str]:
    """Split a From/To/Contact/Route value into (URI text, header params text).

    Handles ``"Display, Name" <sip:u@h;p>;tag=x`` and bare ``sip:u@h;tag=x``
    (in the bare form, ``;`` parameters belong to the header, RFC 3261 §20.10).
    The params text is what follows the first ``;`` after the URI, or "".
    """
    v = value.strip()
    i = 0
    if v.startswith('"'):
        # The closing quote: the first one no backslash escapes. Searched for, not
        # walked: ``quote`` is searched for again only once an escape has passed it,
        # from there on, so each part of the name is looked at once.
        i = 1
        quote = v.find('"', 1)
        while quote >= 0:
            backslash = v.find("\\", i, quote)
            if backslash < 0:
                break
            i = backslash + 2
            if i > quote:
                quote = v.find('"', i)
        if quote < 0:
            raise ParseError("unterminated quoted display name")
        i = quote + 1
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
    # Mostly written ``<URI>;tag=X`` with nothing after the tag: then the tag is what
    # follows ``;tag=``, as the full parse below would find it, without its dictionary.
    semi = value.rfind(";tag=")
    if semi > 0 and value.find(">") == semi - 1 and '"' not in value:
        lt = value.find("<")
        rest = value[semi + 5 :]
        if 0 <= lt < semi and ";" not in rest:
            return rest.strip() or None
    _, params = split_name_addr(value)
    if not params:
        return None
    tag = parse_params(params, "From/To").get("tag")
    return tag or None


@dataclass(slots=True, init=False)
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

    # Written out (init=False): compiled, it is a native call; the one dataclass
    # generates is interpreted Python, several times dearer, and one is made per request.
    def __init__(
        self, transport: str, host: str, port: int | None, params: dict[str, str | None]
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params

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


_TRANSPORT_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"
)
_SENT_BY_CHARS: Final = HOST_CHARS | {":"}
_KNOWN_TRANSPORTS: Final[dict[str, str]] = {
    t: t.upper() for t in ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp", "tcp", "tls")
}
"""The transports peers write, as written -> upper case (no character check needed)."""
_sent_by_cache: Final[dict[str, tuple[str, int | None]]] = {}
"""Parsed sent-by values: the same few peers write every Via."""


def parse_via(value: str) -> Via:
    """Parse one Via value; raise :class:`ParseError` saying what is wrong."""
    if value.startswith("SIP/2.0/"):
        # Fast path for the form every peer writes: ``SIP/2.0/UDP host:port;params``
        # with single spaces and no IPv6; anything else takes the regex below.
        sp = value.find(" ", 8)
        transport = value[8:sp]
        upper = _KNOWN_TRANSPORTS.get(transport) if sp > 8 else None
        if upper is None and sp > 8 and _TRANSPORT_CHARS.issuperset(transport):
            upper = transport.upper()
        if upper is not None:
            sent_by, _, params_text = value[sp + 1 :].partition(";")
            # A sent-by in the memo passed the character check when it was learned.
            known = _sent_by_cache.get(sent_by)
            if known is not None or (sent_by and _SENT_BY_CHARS.issuperset(sent_by)):
                try:
                    if known is None:
                        known = parse_hostport(sent_by, "Via sent-by")
                        remember(_sent_by_cache, sent_by, known)
                except ParseError:
                    pass  # the careful parse below says what is wrong, as it always did
                else:
                    host, port = known
                    params_text = params_text.strip()
                    # (What is wrong with the parameters, the careful parse would say
                    # the same way, after parsing them again.)
                    params = parse_params(params_text, "Via") if params_text else {}
                    return Via(upper, host, port, params)
    return _parse_via_spaced(value)


def _skip_space(text: str, i: int) -> int:
    """The index of the first character at or after ``i`` that is not white space."""
    rest = text[i:]
    return i + len(rest) - len(rest.lstrip())


def _run_length(text: str, i: int, chars: str) -> int:
    """How many characters from ``i`` on are among ``chars``."""
    rest = text[i:]
    return len(rest) - len(rest.lstrip(chars))


def _word_at(text: str, i: int) -> str:
    """The characters from ``i`` up to the next white space (or the end)."""
    words = text[i:].split(None, 1)
    return words[0] if words and not text[i : i + 1].isspace() else ""


def _skip_literal(text: str, i: int, literal: str) -> int:
    """The index after ``literal`` (matched case-insensitively) at ``i``, or -1."""
    end = i + len(literal)
    return end if text[i:end].upper() == literal else -1


def _sent_by_end(text: str, host_end: int) -> int:
    """Where a sent-by whose host ends at ``host_end`` ends: after an optional
    ``: port`` (white space allowed around the colon), else at ``host_end``."""
    j = _skip_space(text, host_end)
    if text.startswith(":", j):
        k = _skip_space(text, j + 1)
        digits = _run_length(text, k, "0123456789")
        if digits:
            return k + digits
    return host_end


def _after_sent_by(text: str, i: int) -> str | None:
    """The parameters after a sent-by ending at ``i`` ("" for none), or None when
    what follows is neither the end nor ``;``."""
    j = _skip_space(text, i)
    if j == len(text):
        return ""
    return text[j + 1 :] if text[j] == ";" else None


def _parse_via_spaced(value: str) -> Via:
    """The general form of a Via value (§20.42, §25.1): white space allowed around
    the slashes and the port's colon, and between sent-by and the parameters; an
    IPv6 reference; ``sip``/``SIP`` in any case.

    A left-to-right scan in string methods (strip, split, find), each looking at a
    part of the value once: a backtracking pattern over peer input could be made to
    take quadratic time, and this runs on every Via that is not written the common
    way.
    """
    err = ParseError("malformed Via header")
    i = _skip_space(value, 0)
    for literal in ("SIP", "/", "2.0", "/"):
        i = _skip_literal(value, i, literal)
        if i < 0:
            raise err
        i = _skip_space(value, i)
    # The transport, then white space: the word up to it is all transport characters.
    transport = _word_at(value, i)
    i += len(transport)
    if not transport or i == len(value) or not _TRANSPORT_CHARS.issuperset(transport):
        raise err
    i = _skip_space(value, i)
    sent_by = params_text = None
    if value.startswith("[", i):
        close = value.find("]", i + 1)
        if close > i + 1 and IPV6_CHARS.issuperset(value[i + 1 : close]):
            end = _sent_by_end(value, close + 1)
            params_text = _after_sent_by(value, end)
            if params_text is not None:
                sent_by = value[i:end]
    if sent_by is None:
        # The host: up to white space, ``;`` or ``:``.
        word = _word_at(value, i)
        host_end = len(word)
        for stop in ";:":
            at = word.find(stop)
            if 0 <= at < host_end:
                host_end = at
        if host_end == 0:
            raise err
        end = _sent_by_end(value, i + host_end)
        params_text = _after_sent_by(value, end)
        if params_text is None:
            raise err
        sent_by = value[i:end]
    host, port = parse_hostport(sent_by.replace(" ", "").replace("\t", ""), "Via sent-by")
    params = parse_params(params_text.strip(), "Via") if params_text else {}
    return Via(transport.upper(), host, port, params)


_cseqs: Final[dict[str, tuple[int, str]]] = {}
"""What :func:`parse_cseq` made of each value it accepted: ``1 INVITE``, ``2 BYE``...
come in call after call, and it is read several times per message."""


def parse_cseq(value: str) -> tuple[int, str]:
    """Parse ``CSeq: number METHOD`` (RFC 3261 §20.16)."""
    known = _cseqs.get(value)
    if known is not None:
        return known
    parsed = _parse_cseq(value)
    remember(_cseqs, value, parsed)
    return parsed


def _parse_cseq(value: str) -> tuple[int, str]:
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
