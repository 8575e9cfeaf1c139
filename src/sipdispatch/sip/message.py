"""SIP messages: model, parser and serializer (RFC 3261 §7, §18.3, §20, §25).

A message keeps its headers as an ordered list of ``(key, name, value)`` tuples:
``key`` is the long name lower-cased (for lookups), ``name`` as written, ``value``
with folding undone and outer white space stripped. The head is decoded as
latin-1, which maps every byte to one character, so any byte a peer sends comes
back out unchanged; the body stays bytes.

The proxy reads only a few headers; they are found by a linear scan of a short
list, which is cheaper than building a dictionary for every message.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Final

from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.headers import Via as Via
from sipdispatch.sip.headers import (
    header_key,
    parse_cseq,
    parse_via,
    split_commas,
    split_first,
    split_name_addr,
    tag_of,
)
from sipdispatch.sip.memo import remember
from sipdispatch.sip.uri import SipUri, parse_uri

SIP_VERSION: Final = "SIP/2.0"
DEFAULT_MAX_FORWARDS: Final = 70
"""RFC 3261 §8.1.1.6 / §16.6 step 3: the Max-Forwards a request starts with (and the
one a proxy adds when a request has none)."""
MAX_HEADER_LINES: Final = 512
"""Most header lines a message may have (after unfolding): real ones have a few dozen.
Every header costs the proxy some work (it is read, copied and written out again), so a
message of thousands of them is refused with 400 rather than handled."""
DEFAULT_MAX_MESSAGE_SIZE = 65535
"""Largest message accepted (bytes): the largest UDP payload; Kamailio's BUF_SIZE."""

Header = tuple[str, str, str]

_TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)

REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    487: "Request Terminated",
    500: "Server Internal Error",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
}
"""Default reason phrases (RFC 3261 §21) for the codes the proxy generates."""


class Message:
    """Common part of :class:`Request` and :class:`Response`."""

    __slots__ = ("_raw", "_starts", "_via", "body", "headers")

    headers: list[Header]
    body: bytes
    _raw: bytes
    """The bytes the message was received as (its head at least), or b"" for one we
    built: what :meth:`to_bytes` copies untouched header lines from."""
    _starts: list[int] | None
    """Where each header line starts in ``_raw``, one per entry of ``headers``; -1 for
    a line that must be written anew (added, edited, or not written the way the
    serializer writes it). None when the message has no usable spans at all."""

    def __init__(self, headers: list[Header], body: bytes = b"") -> None:
        self.headers = headers
        self.body = body
        self._via: Via | None = None
        self._raw = b""
        self._starts = None

    # -- lookups ---------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """Value of the first header with this key (long lower-case name)."""
        for h in self.headers:
            if h[0] == key:
                return h[2]
        return None

    def get_all(self, key: str) -> list[str]:
        """Values of every header line with this key, in order."""
        return [h[2] for h in self.headers if h[0] == key]

    def values(self, key: str) -> list[str]:
        """Every comma-separated value of every line with this key, in order."""
        out: list[str] = []
        for h in self.headers:
            if h[0] == key:
                out.extend(split_commas(h[2]))
        return out

    def has(self, key: str) -> bool:
        """True if at least one header with this key is present."""
        return any(h[0] == key for h in self.headers)

    @property
    def call_id(self) -> str:
        """The Call-ID (validated present at parse time for received messages)."""
        return self.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method) of the CSeq header."""
        value = self.get("cseq")
        if value is None:
            raise ParseError("missing CSeq header")
        return parse_cseq(value)

    @property
    def from_tag(self) -> str | None:
        """The From tag, or None."""
        value = self.get("from")
        return tag_of(value) if value is not None else None

    @property
    def to_tag(self) -> str | None:
        """The To tag, or None."""
        value = self.get("to")
        return tag_of(value) if value is not None else None

    @property
    def top_via(self) -> Via:
        """The first Via value, parsed (cached)."""
        via = self._via
        if via is None:
            value = self.get("via")
            if value is None:
                raise ParseError("missing Via header")
            first = value if "," not in value else split_first(value)[0]
            via = self._via = parse_via(first)
        return via

    def vias(self) -> list[Via]:
        """Every Via value, parsed, top first."""
        return [parse_via(v) for v in self.values("via")]

    # -- edits -----------------------------------------------------------------

    def prepend(self, key: str, name: str, value: str) -> None:
        """Add a header line above the first one with this key (or at the top)."""
        hs = self.headers
        at = 0
        for i, h in enumerate(hs):
            if h[0] == key:
                at = i
                break
        hs.insert(at, (key, name, value))
        starts = self._starts
        if starts is not None:
            starts.insert(at, -1)
        if key == "via":
            self._via = None

    def append(self, key: str, name: str, value: str) -> None:
        """Add a header line at the end."""
        self.headers.append((key, name, value))
        starts = self._starts
        if starts is not None:
            starts.append(-1)

    def set(self, key: str, name: str, value: str) -> None:
        """Replace the first header with this key, or append one."""
        hs = self.headers
        starts = self._starts
        for i, h in enumerate(hs):
            if h[0] == key:
                hs[i] = (key, h[1], value)
                if starts is not None:
                    starts[i] = -1
                break
        else:
            hs.append((key, name, value))
            if starts is not None:
                starts.append(-1)
        if key == "via":
            self._via = None  # the cached top Via may be the one just replaced

    def remove(self, key: str) -> None:
        """Remove every header with this key."""
        starts = self._starts
        if starts is not None:
            hs = self.headers
            self._starts = [starts[i] for i in range(len(hs)) if hs[i][0] != key]
        self.headers = [h for h in self.headers if h[0] != key]
        if key == "via":
            self._via = None

    def pop_first_value(self, key: str) -> str | None:
        """Remove and return the first comma-separated value of this header.

        Used to remove the top Via from a response and our own Route from a
        request; other values on the same line stay where they were.
        """
        hs = self.headers
        starts = self._starts
        for i, h in enumerate(hs):
            if h[0] == key:
                value = h[2]
                rest = ""
                if "," not in value:
                    first = value
                else:
                    # Only the first value is read: the rest stays as it was written.
                    first, rest = split_first(value)
                if rest:
                    hs[i] = (key, h[1], rest)
                    if starts is not None:
                        starts[i] = -1
                else:
                    del hs[i]
                    if starts is not None:
                        del starts[i]
                if key == "via":
                    self._via = None
                return first
        return None

    def drop_values(self, key: str, count: int) -> None:
        """Remove the first ``count`` comma-separated values of this header, in one pass.

        The lines they fill go; a line left with some of its values keeps the rest.
        """
        hs = self.headers
        starts = self._starts
        if count == 1:
            # One value (our Route, mostly): when it fills the first line with this
            # key, that line goes and nothing else is copied.
            for i in range(len(hs)):
                h = hs[i]
                if h[0] == key:
                    if "," not in h[2]:
                        del hs[i]
                        if starts is not None:
                            del starts[i]
                        if key == "via":
                            self._via = None
                        return
                    break
        kept: list[Header] = []
        kept_starts: list[int] | None = [] if starts is not None else None
        for i in range(len(hs)):
            h = hs[i]
            s = starts[i] if starts is not None else -1
            if count and h[0] == key:
                value = h[2]
                parts = split_commas(value) if "," in value else [value]
                if len(parts) <= count:
                    count -= len(parts)
                    continue
                h = (key, h[1], ", ".join(parts[count:]))
                s = -1
                count = 0
            kept.append(h)
            if kept_starts is not None:
                kept_starts.append(s)
        self.headers = kept
        self._starts = kept_starts
        if key == "via":
            self._via = None

    # -- output ----------------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always written and always right.

        A received message is not written anew: its start line is, then every run of
        header lines still as they came is copied from the received bytes in one
        slice, and only the lines added or edited since (our Via, a Record-Route, a
        Max-Forwards one lower, ...) are formatted. The result is byte for byte what
        :meth:`serialize` writes -- lines are copied only where they were written
        ``Name: value`` CRLF, exactly as it would write them -- at a fraction of the
        cost.
        """
        starts = self._starts
        hs = self.headers
        if starts is None or len(starts) != len(hs):
            return self.serialize()
        raw = self._raw
        body = self.body
        clen = number_text(len(body))
        out = [(self.start_line() + "\r\n").encode("latin-1")]
        run_start = -1  # raw[run_start:run_end] are lines to copy, not yet copied
        run_end = -1
        seen_clen = False
        for i in range(len(hs)):
            h = hs[i]
            s = starts[i]
            if h[0] == "content-length":
                if seen_clen or s < 0 or h[2] != clen:
                    if run_start >= 0:
                        out.append(raw[run_start:run_end])
                        run_start = run_end = -1
                    if not seen_clen:
                        out.append(f"{h[1]}: {clen}\r\n".encode("latin-1"))
                    seen_clen = True
                    continue
                seen_clen = True
            if s >= 0:
                if s != run_end:
                    if run_start >= 0:
                        out.append(raw[run_start:run_end])
                    run_start = s
                run_end = s + len(h[1]) + len(h[2]) + 4
            else:
                if run_start >= 0:
                    out.append(raw[run_start:run_end])
                    run_start = run_end = -1
                out.append(f"{h[1]}: {h[2]}\r\n".encode("latin-1"))
        if run_start >= 0:
            out.append(raw[run_start:run_end])
        if not seen_clen:
            out.append(f"Content-Length: {clen}\r\n".encode("latin-1"))
        out.append(b"\r\n")
        if body:
            out.append(body)
        return b"".join(out)

    def serialize(self) -> bytes:
        """Write the whole message anew from its parts (what :meth:`to_bytes` gives,
        the slow way: every header line formatted)."""
        body = self.body
        lines = [self.start_line()]
        clen = str(len(body))
        seen_clen = False
        for key, name, value in self.headers:
            if key == "content-length":
                if seen_clen:
                    continue
                seen_clen = True
                lines.append(f"{name}: {clen}")
            else:
                lines.append(f"{name}: {value}")
        if not seen_clen:
            lines.append(f"Content-Length: {clen}")
        lines.append("")
        lines.append("")
        head = "\r\n".join(lines).encode("latin-1")
        return head + body if body else head

    def copy(self) -> Message:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Header]:
        return iter(self.headers)


class Request(Message):
    """A SIP request."""

    __slots__ = ("_uri", "method", "uri_text")

    def __init__(
        self, method: str, uri_text: str, headers: list[Header], body: bytes = b""
    ) -> None:
        # Message.__init__ written out: one call less per message.
        self.headers = headers
        self.body = body
        self._via = None
        self._raw = b""
        self._starts = None
        self.method = method
        self.uri_text = uri_text
        self._uri: SipUri | None = None

    @property
    def uri(self) -> SipUri:
        """The Request-URI parsed as a SIP URI (raises ParseError if it is not one)."""
        uri = self._uri
        if uri is None:
            uri = self._uri = parse_uri(self.uri_text)
        return uri

    def set_uri(self, uri: SipUri | str) -> None:
        """Replace the Request-URI."""
        if isinstance(uri, SipUri):
            self._uri = uri
            self.uri_text = str(uri)
        else:
            self._uri = None
            self.uri_text = uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri_text} {SIP_VERSION}"

    def copy(self) -> Request:
        """A copy whose header list can be edited independently."""
        req = Request(self.method, self.uri_text, list(self.headers), self.body)
        starts = self._starts
        if starts is not None:
            req._raw = self._raw
            req._starts = list(starts)
        return req

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str, headers: list[Header], body: bytes = b"") -> None:
        self.headers = headers  # Message.__init__ written out, as in Request
        self.body = body
        self._via = None
        self._raw = b""
        self._starts = None
        self.status = status
        self.reason = reason

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def copy(self) -> Response:
        """A copy whose header list can be edited independently."""
        resp = Response(self.status, self.reason, list(self.headers), self.body)
        starts = self._starts
        if starts is not None:
            resp._raw = self._raw
            resp._starts = list(starts)
        return resp

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


# -- parsing ----------------------------------------------------------------------

REQUIRED_REQUEST_HEADERS: Final = (
    ("via", "Via"),
    ("to", "To"),
    ("from", "From"),
    ("call-id", "Call-ID"),
    ("cseq", "CSeq"),
)
"""RFC 3261 §8.1.1: headers every request carries (Max-Forwards a proxy adds)."""


def find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Index where the head ends and where the body starts, or (-1, -1).

    The head ends at the first empty line; CRLF is the rule (§7), a bare LF is
    tolerated as many implementations do.
    """
    i = data.find(b"\r\n\r\n", start)
    # A bare-LF end counts only before the CRLF one (not searched through the body).
    j = data.find(b"\n\n", start) if i < 0 else data.find(b"\n\n", start, i)
    if j >= 0:
        return j, j + 2
    if i >= 0:
        return i, i + 4
    return -1, -1


def _find_head_end_text(text: str) -> tuple[int, int]:
    """:func:`find_head_end` of a decoded message."""
    i = text.find("\r\n\r\n")
    j = text.find("\n\n") if i < 0 else text.find("\n\n", 0, i)
    if j >= 0:
        return j, j + 2
    if i >= 0:
        return i, i + 4
    return -1, -1


_name_cache: Final[dict[str, tuple[str, str]]] = {}
"""(key, name) of each header name as written before its colon: the same few names
come in every message, so the token check and the compact-form lookup run once per
distinct spelling."""
NEW_NAMES_PER_MESSAGE: Final = 32
"""Names one message may add to ``_name_cache``. The common names arrive a few at a
time; a message of thousands of new names would only empty the memo (it is bounded)
and fill it with names nobody sends again, at every parse of that message."""


KNOWN_NAMES: Final = (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Type",
    "Content-Length", "Record-Route", "Route", "Allow", "Supported", "Require",
    "Proxy-Require", "User-Agent", "Server", "Subject", "Expires", "Accept",
    "Allow-Events", "Event", "Session-Expires", "Min-SE", "P-Asserted-Identity",
    "Privacy", "Reason", "Refer-To", "Referred-By", "Content-Disposition", "Date",
    "Organization", "Warning", "Retry-After", "Unsupported", "Authorization",
    "WWW-Authenticate", "Proxy-Authorization", "Proxy-Authenticate", "Call-Info",
    "Alert-Info", "Diversion", "Remote-Party-ID", "X-Call-ID",
    "v", "f", "t", "i", "m", "l", "c", "k", "s", "e", "r", "b", "o", "u",
)  # fmt: skip
"""Header names as they are mostly written, which the scan recognises in place by
their characters: no string is cut out for the name, nor hashed to look it up. Any
other spelling (``call-id``, ``VIA``, ``Via :``) takes the memo's way, with the same
result."""


def _names_by_first_char(names: tuple[str, ...]) -> list[tuple[tuple[str, str], ...]]:
    table: list[list[tuple[str, str]]] = [[] for _ in range(128)]
    for name in names:
        table[ord(name[0])].append((sys.intern(header_key(name)), sys.intern(name)))
    return [tuple(entry) for entry in table]


_BY_FIRST_CHAR: Final = _names_by_first_char(KNOWN_NAMES)
"""(key, name) of the known names, by the code of their first character."""


def _header_name(raw: str) -> tuple[str, str] | None:
    """(key, name) for the text before a header's colon, or None if not a token."""
    name = raw.rstrip(" \t")
    if not name:
        return None
    # Most names are letters, digits and '-': checked at C speed, the rest by the set.
    common = name.isascii() and name.replace("-", "").isalnum()
    if not common and not _TOKEN_CHARS.issuperset(name):
        return None
    # Interned: the proxy compares keys with literals, which then match by identity.
    return sys.intern(header_key(name)), name


def unfold(text: str) -> str:
    """Undo line folding (RFC 3261 §7.3.1): each line break followed by white space,
    with the white space around it, becomes one space.

    A scan, in time linear in the text: the regular expression that says the same
    (``[ \\t]*\\r?\\n[ \\t]+``) retries its leading ``[ \\t]*`` from every blank of a
    long run that no line break follows, which is quadratic -- one 60 KB datagram of
    blanks held the proxy for 40 seconds. Here each line break is looked at once and
    only the blanks around a folding one are walked, each once: the blanks before
    it back to the end of the previous fold at most, those after it forward.
    """
    pieces: list[str] = []  # the text between folds, joined by one space each
    done = 0  # text[:done] is in ``pieces`` (or replaced by a space)
    n = len(text)
    i = text.find("\n")
    # (ord() of an index is compiled to a read of the character: no str made;
    # 32 is a space, 9 a tab, 13 a CR.)
    while i >= 0:
        end = i + 1
        if end < n and (ord(text[end]) == 32 or ord(text[end]) == 9):
            begin = i - 1 if i > done and ord(text[i - 1]) == 13 else i
            while begin > done and (ord(text[begin - 1]) == 32 or ord(text[begin - 1]) == 9):
                begin -= 1
            end += 1
            while end < n and (ord(text[end]) == 32 or ord(text[end]) == 9):
                end += 1
            pieces.append(text[done:begin])
            done = end
        i = text.find("\n", end)
    if not pieces:
        return text
    pieces.append(text[done:])
    return " ".join(pieces)


def parse_head(head: str) -> tuple[str, list[Header]]:
    """Split a decoded head into its start line and header list (folding undone)."""
    start, headers, _ = parse_head_spans(head, len(head), None)
    return start, headers


def parse_head_spans(
    text: str, head_end: int, crlf_end: bool | None
) -> tuple[str, list[Header], list[int] | None]:
    """:func:`parse_head` of ``text[:head_end]`` (read in place, not copied out), and
    where each header line starts in the head (its
    ``_starts``: -1 for a line not written ``Name: value`` CRLF), when
    ``crlf_end`` is not None: True when the empty line that ends the head is a
    CRLF one, so that the last header line ends in CRLF too. No spans (None) for a
    folded head: undoing the folds moves every line after one."""
    nl = text.find("\n", 0, head_end)
    if nl >= 0:
        # A folded line, too many lines or anything odd stop the scan (a line that
        # starts with white space has no token before its colon): then the slow way.
        starts: list[int] | None = [] if crlf_end is not None else None
        headers = _scan_lines(text, nl + 1, head_end, starts, crlf_end is True)
        if headers is not None:
            start = text[:nl]
            if start.endswith("\r"):
                start = start[:-1]
            return start, headers, starts
    return _parse_head_slow(text[:head_end] if head_end < len(text) else text, crlf_end)


def _parse_head_fast(text: str, head_end: int) -> tuple[str, list[Header], list[int]] | None:
    """:func:`parse_head_spans` of a head ending in CRLF CRLF at ``head_end`` when the
    scan takes every line, else None (without raising)."""
    nl = text.find("\n", 0, head_end)
    if nl < 0:
        return None
    starts: list[int] = []
    headers = _scan_lines(text, nl + 1, head_end, starts, True)
    if headers is None:
        return None
    start = text[:nl]
    if start.endswith("\r"):
        start = start[:-1]
    return start, headers, starts


def _parse_head_slow(
    head: str, crlf_end: bool | None
) -> tuple[str, list[Header], list[int] | None]:
    """:func:`parse_head_spans` for a head the scan did not take: folding undone,
    every check made (spans only when the scan then takes it)."""
    if "\n " in head or "\n\t" in head:
        # §7.3.1: a line starting with white space continues the previous one.
        first, sep, rest = head.partition("\n")
        if rest[:1] in (" ", "\t"):
            err = ParseError("continuation line before any header")
            err.start_line, err.headers = first.rstrip("\r"), []
            raise err
        head = first + sep + unfold(rest)
        crlf_end = None
    nl = head.find("\n")
    start = head if nl < 0 else head[:nl]
    if start.endswith("\r"):
        start = start[:-1]
    if nl < 0:
        return start, [], [] if crlf_end is not None else None
    if head.count("\n") > MAX_HEADER_LINES:
        err = ParseError("too many header lines")
        # The first ones are read anyway, so that a usable Via still gets the 400.
        lines = head.split("\n", MAX_HEADER_LINES + 1)[: MAX_HEADER_LINES + 1]
        with contextlib.suppress(ParseError):
            err.start_line, err.headers = start, _parse_lines_checked(start, lines)
        raise err
    starts: list[int] | None = [] if crlf_end is not None else None
    headers = _scan_lines(head, nl + 1, len(head), starts, crlf_end is True)
    if headers is None:
        return start, _parse_lines_checked(start, head.split("\n")), None
    return start, headers, starts


def _scan_lines(
    head: str, pos: int, n: int, starts: list[int] | None, crlf_end: bool
) -> list[Header] | None:
    """The header lines of a head whose folding is undone, from ``pos`` to ``n``;
    None when one needs the checked parse.

    Fast path: every line is ``name:value``, so a line costs two searches in the
    head (its end, its colon), a lookup of the name in the memo (which holds only
    names that passed the token check) and the value cut out -- no list of lines, no
    split of each. A name not in the memo is checked here and, up to
    ``NEW_NAMES_PER_MESSAGE``, learned. Anything else -- an empty or colon-less
    line, a name that is not a token -- is left to :func:`_parse_lines_checked`,
    which says what is wrong (and gives no spans).

    With ``starts``, the offset of each line in the head is appended to it, or -1
    when the line is not exactly ``name: value`` CRLF as the serializer writes it
    (white space elsewhere, a bare LF): such a line is written anew when sent.
    """
    cache = _name_cache
    headers: list[Header] = []
    learned = 0
    while True:
        eol = head.find("\n", pos, n)
        last = eol < 0
        end = n if last else eol
        colon = head.find(":", pos, end)
        if colon < 0:
            return None
        # A known name is compared in place (one search), not cut out and looked up.
        key = ""
        name = ""
        first = ord(head[pos]) if colon > pos else 128
        if first < 128:
            size = colon - pos
            for candidate in _BY_FIRST_CHAR[first]:
                spelling = candidate[1]
                if len(spelling) == size and head.find(spelling, pos, colon) == pos:
                    key = candidate[0]
                    name = spelling
                    break
        if not name:
            raw_name = head[pos:colon]
            known = cache.get(raw_name)
            if known is None:
                known = _header_name(raw_name)
                if known is None:
                    return None
                if learned < NEW_NAMES_PER_MESSAGE:
                    learned += 1
                    remember(cache, raw_name, known)
            key, name = known
        # As the serializer writes it: no blank before the colon, one space after
        # it, the value with nothing to strip, CRLF.
        canonical = False
        # (ord() of an index is compiled to a read of the character: no str made.)
        value_end = end - 1 if not last and ord(head[end - 1]) == 13 else end
        if (
            colon + 1 < end
            and ord(head[colon + 1]) == 32
            and (value_end < end or (last and crlf_end))
            and len(name) == colon - pos
        ):
            raw_value = head[colon + 2 : value_end]
            value = raw_value.strip()
            canonical = value is raw_value
        else:
            value = head[colon + 1 : end].strip()
        headers.append((key, name, value))
        if starts is not None:
            starts.append(pos if canonical else -1)
        if last:
            return headers
        if len(headers) >= MAX_HEADER_LINES:
            return None  # one more line is one too many: the slow way says so
        pos = eol + 1


def _parse_lines_checked(start: str, lines: list[str]) -> list[Header]:
    """The line-by-line parse with every check, for heads the fast path did not take
    (empty lines, which it skips; a line without a colon or a bad name, which it
    reports, with the headers read before it)."""
    headers: list[Header] = []
    append = headers.append
    cache = _name_cache
    for line in lines[1:]:
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            continue
        raw, colon, value = line.partition(":")
        known = (cache.get(raw) or _header_name(raw)) if colon else None
        if known is None:
            err = ParseError(
                "header line without a colon" if not colon else f"bad header name {raw[:40]!r}"
            )
            # Keep what was read so far: a usable Via still allows a 400 reply.
            err.start_line, err.headers = start, headers
            raise err
        append((known[0], known[1], value.strip()))
    return headers


_start_lines: Final[dict[str, tuple[str, str] | tuple[int, str]]] = {}
"""What :func:`parse_start_line` made of each start line it accepted: the same status
lines (``SIP/2.0 200 OK``) and Request-URIs (a gateway's Contact, our service URI)
come in every call, and a lookup costs less than the split and the checks."""


def parse_start_line(start: str) -> tuple[str, str] | tuple[int, str]:
    """Parse a start line into (method, uri) for a request or (status, reason)."""
    known = _start_lines.get(start)
    if known is not None:
        return known
    parsed = _parse_start_line(start)
    remember(_start_lines, start, parsed)
    return parsed


def _parse_start_line(start: str) -> tuple[str, str] | tuple[int, str]:
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if parts[0] != SIP_VERSION:
            raise ParseError("unsupported SIP version", 505)
        code = parts[1] if len(parts) > 1 else ""
        # isascii: str.isdigit() also accepts '²' (a latin-1 byte), which int() rejects.
        if len(code) != 3 or not code.isascii() or not code.isdigit():
            raise ParseError("malformed status line")
        status = int(code)
        if status < 100:
            raise ParseError("status code out of range")
        return status, parts[2] if len(parts) == 3 else ""
    parts = start.split(" ")
    if len(parts) != 3:
        raise ParseError("malformed request line")
    method, uri, version = parts
    if not method or not _TOKEN_CHARS.issuperset(method):
        raise ParseError("bad method in request line")
    if version != SIP_VERSION:
        if version.upper() == SIP_VERSION:
            pass  # §7.1: the version string is case-insensitive
        elif version.upper().startswith("SIP/"):
            raise ParseError("unsupported SIP version", 505)
        else:
            raise ParseError("malformed request line")
    if not uri or ":" not in uri:
        raise ParseError("bad Request-URI")
    return sys.intern(method), uri  # one str per method, however many requests hold it


def build_message(start: str, headers: list[Header], body: bytes) -> Request | Response:
    """Make a Request or Response from parsed parts and check what every one needs."""
    first, second = parse_start_line(start)
    if isinstance(first, int):
        msg: Request | Response = Response(first, second, headers, body)
    else:
        msg = Request(first, second, headers, body)
        seen = 0
        cseq = ""
        mf: str | None = None
        for h in headers:
            bit = _REQUEST_CHECKED.get(h[0], 0)
            if bit:
                if bit & seen & _ONCE:
                    # §7.3 / RFC 4475 §3.1.2.19: these appear once; two Call-IDs,
                    # CSeqs, ... make the request unusable (which would a reply copy?).
                    raise ParseError(f"more than one {h[1]} header")
                if bit & _NAME_ADDR_BITS and '"' in h[2]:
                    split_name_addr(h[2])  # RFC 4475 §3.1.2.16: unbalanced quotes, 400
                seen |= bit
                if bit == _CSEQ_BIT:
                    cseq = h[2]
                elif bit == _MAX_FORWARDS_BIT:
                    mf = h[2]
        if seen & _REQUIRED_BITS != _REQUIRED_BITS:
            for key, name in REQUIRED_REQUEST_HEADERS:
                if not seen & _REQUEST_CHECKED[key]:
                    raise ParseError(f"missing {name} header")
        _num, cseq_method = parse_cseq(cseq)
        # §8.2.2 / §20.16: the CSeq method MUST match the request method.
        if cseq_method != first:
            raise ParseError("CSeq method does not match request method")
        if mf is not None and not 0 <= digits_value(mf) <= 255:
            raise ParseError("malformed Max-Forwards header")
    return msg


_CSEQ_BIT: Final = 16
_MAX_FORWARDS_BIT: Final = 32
_REQUEST_CHECKED: Final[dict[str, int]] = {
    "via": 1,
    "to": 2,
    "from": 4,
    "call-id": 8,
    "cseq": _CSEQ_BIT,
    "max-forwards": _MAX_FORWARDS_BIT,
}
"""The headers :func:`build_message` checks in a request, each a bit of a mask."""
_REQUIRED_BITS: Final = 1 | 2 | 4 | 8 | 16
"""REQUIRED_REQUEST_HEADERS as bits."""
_ONCE: Final = 2 | 4 | 8 | 16 | 32
"""Headers a request carries at most once, as bits (Content-Length: see
``content_length_of``)."""
_NAME_ADDR_BITS: Final = 2 | 4
"""From and To, as bits: name-addr values whose quotes must balance."""


def content_length_of(headers: list[Header]) -> int | None:
    """The Content-Length value, None when absent; ParseError when malformed."""
    value: str | None = None
    for h in headers:
        if h[0] == "content-length":
            if value is not None and h[2] != value:
                raise ParseError("conflicting Content-Length headers")
            value = h[2]
    if value is None:
        return None
    length = digits_value(value) if len(value) <= 9 else -1
    if length < 0:
        raise ParseError("malformed Content-Length header")
    return length


NUMBER_TEXT: Final = tuple(str(i) for i in range(1024))
"""``str(i)`` for the small numbers (Max-Forwards, Content-Length) the proxy writes."""


def number_text(n: int) -> str:
    """``str(n)``, the small ones made once."""
    return NUMBER_TEXT[n] if 0 <= n < 1024 else str(n)


def number(digits: str) -> int:
    """``int(digits)`` of a checked string of ASCII digits; the short ones read digit
    by digit (cheaper than parsing, or than hashing the string for a lookup, and they
    are most of what comes: Max-Forwards, short bodies)."""
    # (ord() of an index is compiled to a read of the character; 48 is "0".)
    size = len(digits)
    if size == 2:
        return (ord(digits[0]) - 48) * 10 + ord(digits[1]) - 48
    if size == 1:
        return ord(digits[0]) - 48
    if size == 3:
        return (ord(digits[0]) - 48) * 100 + (ord(digits[1]) - 48) * 10 + ord(digits[2]) - 48
    return int(digits)


def digits_value(text: str) -> int:
    """The number a string of ASCII digits writes; -1 for any other string (empty, a
    sign, a blank, or a digit outside ASCII such as '²', which ``str.isdigit()``
    accepts and ``int()`` does not). The short ones -- Max-Forwards, most
    Content-Lengths -- are read digit by digit, with no method called."""
    size = len(text)
    if 0 < size <= 3:
        value = 0
        for i in range(size):
            # (ord() of an index is compiled to a read of the character; 48 is "0".)
            digit = ord(text[i]) - 48
            if digit < 0 or digit > 9:
                return -1
            value = value * 10 + digit
        return value
    return int(text) if size and text.isascii() and text.isdigit() else -1


def is_keepalive(data: bytes) -> bool:
    """True for a keep-alive datagram: CRLFs only (RFC 5626 §3.5.1) or NULs."""
    if data and data[0] not in _KEEPALIVE_BYTES:
        return False  # a message: no copy of it is made to find out
    return not data.strip(b"\r\n\x00 \t")


_KEEPALIVE_BYTES: Final = frozenset(b"\r\n\x00 \t")


def parse_datagram(data: bytes, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Request | Response:
    """Parse one message that arrived whole, as in a UDP datagram (RFC 3261 §18.3).

    Raises :class:`ParseError` with the status for a reply: 513 when larger than
    ``max_size``, 400 (or 505) with a reason saying what is wrong otherwise.
    """
    if data and (data[0] == 13 or data[0] == 10):
        data = data.lstrip(b"\r\n")  # §7.5: CRLFs before a start line are ignored
    if len(data) > max_size:
        err = ParseError("message too large", 513)
        # Read the head anyway (bounded) so a usable Via still gets the 513.
        head_end, _ = find_head_end(data)
        if 0 < head_end <= 2 * max_size:
            with contextlib.suppress(ParseError):
                err.start_line, err.headers = parse_head(data[:head_end].decode("latin-1"))
        raise err
    text = data.decode("latin-1")  # one copy, searched in place (no bytes method calls)
    # Most heads end at the first CRLF CRLF and scan cleanly up to it. An earlier end
    # (an empty line after a bare LF) is an empty line the scan stops at: then, and
    # for anything else the scan does not take, the head is found and read again.
    crlf_end = text.find("\r\n\r\n")
    parsed = _parse_head_fast(text, crlf_end) if crlf_end >= 0 else None
    starts: list[int] | None
    if parsed is not None:
        start, headers, starts = parsed
        body_start = crlf_end + 4
    else:
        head_end, body_start = _find_head_end_text(text)
        if head_end < 0:
            raise ParseError("no empty line after the headers")
        start, headers, starts = parse_head_spans(text, head_end, body_start - head_end == 4)
    try:
        clen = content_length_of(headers)
        body = data[body_start:]
        if clen is not None:
            # §18.3: octets past Content-Length are discarded; a body shorter than
            # Content-Length makes the message invalid.
            if clen > len(body):
                raise ParseError("Content-Length larger than the body")
            body = body[:clen]
        msg = build_message(start, headers, body)
        if starts is not None:
            msg._raw = data
            msg._starts = starts
        return msg
    except ParseError as e:
        e.start_line, e.headers = start, headers
        raise


class StreamParser:
    """Frames messages out of a byte stream (TCP, RFC 3261 §18.3).

    ``feed(data)`` takes any chunk and returns the messages completed by it.
    A framing error (no or bad Content-Length, over-size) raises ParseError and
    the stream cannot be resynchronised: the caller closes the connection.
    CRLF keep-alives between messages are skipped and counted in ``pings`` so
    the caller can answer a double-CRLF ping with a CRLF pong (RFC 5626 §3.5.1).
    """

    __slots__ = ("_buf", "_head", "_scan", "max_size", "pings")

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self.max_size = max_size
        self.pings = 0
        # Resume points, so that a message trickling in (one byte per segment at
        # worst) costs linear time: where the search for the empty line resumes,
        # and the parsed head of the message whose body is still arriving.
        self._scan = 0
        self._head: tuple[str, list[Header], int, int, bytes, list[int] | None] | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Request | Response | ParseError]:
        """Add received bytes; return every message now complete, in order.

        A message that is framed but invalid comes back as its ParseError, in
        place; a framing error is raised.
        """
        buf = self._buf
        buf += data
        out: list[Request | Response | ParseError] = []
        while True:
            head = self._head
            if head is None:
                # Skip keep-alives: CRLFCRLF pings, or stray CRLFs between messages.
                skip = 0
                n = len(buf)
                while skip < n and buf[skip] in (13, 10):
                    skip += 1
                if skip:
                    run = bytes(buf[:skip])
                    count = run.count(b"\r\n\r\n")
                    self.pings += count
                    if skip == n:
                        # A ping may be split across segments: keep what follows the
                        # last ping counted (up to three bytes), it may start the next.
                        # Found the way count() counts, left to right without overlap
                        # (rfind would find an overlapping one and drop a CRLF).
                        end = 0
                        for _ in range(count):
                            end = run.index(b"\r\n\r\n", end) + 4
                        del buf[: max(end, skip - 3)]
                        return out
                    del buf[:skip]
                head_end, body_start = find_head_end(buf, self._scan)
                if head_end < 0:
                    if len(buf) > self.max_size:
                        raise ParseError("message too large", 513)
                    self._scan = max(0, len(buf) - 3)  # the empty line is 2 to 4 bytes
                    return out
                self._scan = 0
                if body_start > self.max_size:
                    raise ParseError("message too large", 513)
                raw = bytes(buf[:body_start])
                start, headers, starts = parse_head_spans(
                    raw.decode("latin-1"), head_end, body_start - head_end == 4
                )
                clen = content_length_of(headers)
                if clen is None:
                    # §18.3 / §20.14: Content-Length MUST be used with stream transports.
                    raise ParseError("missing Content-Length on a stream transport")
                total = body_start + clen
                if total > self.max_size:
                    raise ParseError("message too large", 513)
                head = self._head = (start, headers, body_start, total, raw, starts)
            start, headers, body_start, total, raw, starts = head
            if len(buf) < total:
                return out
            self._head = None
            body = bytes(buf[body_start:total])
            del buf[:total]
            try:
                msg = build_message(start, headers, body)
                if starts is not None:
                    msg._raw = raw
                    msg._starts = starts
                out.append(msg)
            except ParseError as e:
                # Framing is intact: hand the error over in order, so the caller
                # can answer 400 and read on.
                e.start_line, e.headers = start, headers
                out.append(e)


def _lacks_tag(to_value: str) -> bool:
    """True when a To value parses and has no tag (a broken one gets none added)."""
    try:
        return tag_of(to_value) is None
    except ParseError:
        return False


RELEASED: Final = Request("RELEASED", "", [])
"""Put in place of a request that its holder no longer needs (a transaction after its
final response, a call's context once it has answered upstream), so that the parsed
message -- a list and a tuple per header -- is freed then, not when the transaction
ends (``wait_timer`` later). Fewer objects per call in flight mean shorter pauses of
the garbage collector, which walks them all."""

_RESPONSE_COPIES: Final = frozenset(("via", "from", "to", "call-id", "cseq"))
"""§8.2.6.2: the headers a response copies from its request."""


def trying_bytes(request: Request) -> bytes:
    """The 100 Trying for ``request`` on the wire: what ``make_response(request, 100)``
    serializes to, written straight out (one goes with every INVITE)."""
    hs = request.headers
    starts = request._starts
    if starts is None or len(starts) != len(hs):
        lines = ["SIP/2.0 100 Trying"]
        lines += [f"{h[1]}: {h[2]}" for h in hs if h[0] in _RESPONSE_COPIES]
        lines.append("Content-Length: 0\r\n\r\n")
        return "\r\n".join(lines).encode("latin-1")
    # From the received bytes: the lines copied as they came, where they can be.
    raw = request._raw
    out = [b"SIP/2.0 100 Trying\r\n"]
    for i in range(len(hs)):
        h = hs[i]
        if h[0] in _RESPONSE_COPIES:
            s = starts[i]
            if s >= 0:
                out.append(raw[s : s + len(h[1]) + len(h[2]) + 4])
            else:
                out.append(f"{h[1]}: {h[2]}\r\n".encode("latin-1"))
    out.append(b"Content-Length: 0\r\n\r\n")
    return b"".join(out)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    to_tag: str | None = None,
    extra: list[Header] | None = None,
) -> Response:
    """Build a response to ``request`` (RFC 3261 §8.2.6.2).

    Copies Via (all values, in order), From, To, Call-ID and CSeq; adds a To tag
    when asked and the To has none (§8.2.6.2: MUST for non-100 when absent).
    Never raises: a To that does not parse is copied as it is, so that the 400
    for a malformed request can always be built.
    """
    headers: list[Header] = []
    for h in request.headers:
        key = h[0]
        if key == "to" and to_tag is not None and _lacks_tag(h[2]):
            headers.append((key, h[1], f"{h[2]};tag={to_tag}"))
        elif key in _RESPONSE_COPIES:
            headers.append(h)
    if extra:
        headers.extend(extra)
    if reason is None:
        reason = REASON_PHRASES.get(status, "Unknown")
    return Response(status, reason, headers)
