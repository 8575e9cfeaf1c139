"""The hash Kamailio's dispatcher uses, and the keys it hashes.

:func:`ds_get_hash` reproduces Kamailio's ``ds_get_hash(str *x, str *y)``
(``src/modules/dispatcher/dispatch.c``), so that the same Call-ID, URI or
username picks the same slot as Kamailio does, and ``dispatcher.hash 4 bob
server.com`` gives hashid 3883463682, slot 2.

The function, for each of the two strings: sums ``v ^ (v >> 3)`` over the
big-endian 32-bit words of each whole 4-byte group, then once more over the
remaining 0..3 bytes shifted together; finally ``h + (h >> 11) + (h >> 13) +
(h >> 23)``, all modulo 2**32, and 0 becomes 1. Kamailio reads the bytes as C
``char``, which is signed on x86-64 (and on the common Linux builds): bytes
0x80..0xff count as negative. We do the same, so non-ASCII keys hash as on
x86-64 Kamailio. Text is UTF-8 encoded.

Keys, as Kamailio's ``ds_hash_*`` functions:

* Call-ID (alg 0): the trimmed Call-ID alone;
* From/To/R-URI (alg 1/2/3, ``get_uri_hash_keys``): user part and
  ``host[:port]`` (port only when it is not 5060, or 5061 for sips; IPv6 host in
  brackets); with ``hash_user_only`` (Kamailio ``flags`` bit 1) the user alone.
  A ``tel:`` URI hashes its number (Kamailio moves it to the user part);
* auth username (alg 5): the ``user`` part of the digest username (before
  ``@``, after a ``:``, as Kamailio's digest parser splits it);
* a configured value (alg 7, Kamailio ``hash_pvar``): the trimmed value.
"""

from __future__ import annotations

import struct
from typing import Final

from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.memo import remember
from sipdispatch.sip.uri import DEFAULT_SIP_PORT, DEFAULT_SIPS_PORT, parse_uri

_MASK: Final = 0xFFFFFFFF
_TRIM: Final = " \t\r\n"
"""Kamailio ``trim()``: spaces, tabs, CR, LF."""


_WORDS: Final[dict[int, struct.Struct]] = {}
"""Precompiled big-endian unpackers by word count (no format parsing per call)."""


def _words(count: int) -> struct.Struct:
    unpacker = _WORDS.get(count)
    if unpacker is None:
        unpacker = _WORDS[count] = struct.Struct(f">{count}I")
    return unpacker


def _signed(b: int) -> int:
    return b - 256 if b > 127 else b


def _sum_part(data: bytes, h: int) -> int:
    """Add one string's contribution to ``h`` (mod 2**32)."""
    n = len(data)
    whole = n & ~3
    if data.isascii():
        # Bytes < 0x80: signed and unsigned char agree, so unpack words directly.
        for v in _words(whole >> 2).unpack_from(data):
            h += v ^ (v >> 3)
        v = 0
        for b in data[whole:]:
            v = (v << 8) + b
    else:
        for i in range(0, whole, 4):
            v = (
                (_signed(data[i]) << 24)
                + (_signed(data[i + 1]) << 16)
                + (_signed(data[i + 2]) << 8)
                + _signed(data[i + 3])
            ) & _MASK
            h += v ^ (v >> 3)
        v = 0
        for b in data[whole:]:
            v = ((v << 8) + _signed(b)) & _MASK
    h += v ^ (v >> 3)
    return h & _MASK


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def ds_get_hash(x: str | bytes | None, y: str | bytes | None = None) -> int:
    """Kamailio's ``ds_get_hash``: a 32-bit unsigned hash of one or two strings.

    None (Kamailio: a NULL string) contributes nothing; an empty string adds 0,
    so ``ds_get_hash(a, "") == ds_get_hash(a)``. Never returns 0.
    """
    h = 0
    if x is not None:
        h = _sum_part(_as_bytes(x), h)
    if y is not None:
        h = _sum_part(_as_bytes(y), h)
    h = (h + (h >> 11) + (h >> 13) + (h >> 23)) & _MASK
    return h or 1


def hash_slot(nslots: int, v1: str, v2: str | None = None) -> tuple[int, int]:
    """``dispatcher.hash NSLOTS V1 [V2]``: ``(hashid, slot)``; slot is 0 when
    ``nslots`` is not positive."""
    hashid = ds_get_hash(v1, v2)
    return hashid, (hashid % nslots if nslots > 0 else 0)


def uri_hash_keys(uri: str, *, user_only: bool = False) -> tuple[str | None, str | None]:
    """Kamailio's ``get_uri_hash_keys``: ``(user, host[:port])`` of a URI.

    ``user`` is None when the URI has none; ``host[:port]`` is None with
    ``user_only``. Raises :class:`ParseError` when the URI does not parse.
    """
    text = uri.strip(_TRIM)
    if text[:4].lower() == "tel:" or text[:5].lower() == "tels:":
        # Kamailio parse_uri moves a tel number to the user part, host empty.
        number = text.split(":", 1)[1].split(";", 1)[0]
        if not number:
            raise ParseError("empty tel URI")
        return number, (None if user_only else "")
    parsed = parse_uri(text)
    if user_only:
        return parsed.user, None
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    default = DEFAULT_SIPS_PORT if parsed.scheme == "sips" else DEFAULT_SIP_PORT
    if parsed.port is not None and parsed.port != default:
        host = f"{host}:{parsed.port}"
    return parsed.user, host


_uri_hashes: Final[tuple[dict[str, int | None], dict[str, int | None]]] = ({}, {})
"""Memos of :func:`hash_uri`, without and with ``user_only``."""


def hash_uri(uri: str, *, user_only: bool = False) -> int | None:
    """Hash of a From/To/R-URI as algorithms 1, 2 and 3; None when it does not
    parse (Kamailio then fails the selection).

    Memoised (pure function of its arguments): the same callers and numbers recur,
    and parsing the URI is most of the cost.
    """
    memo = _uri_hashes[user_only]
    if uri in memo:
        return memo[uri]
    try:
        user, hostport = uri_hash_keys(uri, user_only=user_only)
        hashed: int | None = ds_get_hash(user, hostport)
    except ParseError:
        hashed = None
    remember(memo, uri, hashed)
    return hashed


def hash_callid(call_id: str) -> int:
    """Algorithm 0: hash of the trimmed Call-ID."""
    return ds_get_hash(call_id.strip(_TRIM))


def digest_user(username: str) -> str:
    """The ``user`` part of a digest username, as Kamailio's ``parse_username``:
    up to the first ``@`` and after a ``:`` in what remains (values of two
    characters or fewer are taken whole)."""
    if len(username) <= 2:
        return username
    user = username.split("@", 1)[0]
    if ":" in user:
        user = user.split(":", 1)[1]
    return user


def hash_authusername(username: str | None) -> int | None:
    """Algorithm 5: hash of the credentials' username; None when there is no
    usable username (Kamailio then falls back to round-robin)."""
    if not username:
        return None
    user = digest_user(username)
    if not user:
        return None
    return ds_get_hash(user.strip(_TRIM))


def hash_value(value: str | None) -> int | None:
    """Algorithm 7: hash of a configured value, trimmed; None when empty
    (Kamailio then fails the selection)."""
    if value is None:
        return None
    text = value.strip(_TRIM)
    if not text:
        return None
    return ds_get_hash(text)


HASH_FIELDS: Final = ("call_id", "from_uri", "from_user", "to_uri", "to_user", "ruri", "ruri_user")
"""What a hash template may name besides ``{hdr:Name}``."""
_TOKEN: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~"
)


def parse_hash_template(text: str) -> tuple[tuple[str, str], ...]:
    """The parts of algorithm 7's template (Kamailio's ``hash_pvar``, a format string):
    literal text, ``{hdr:Name}`` (a header's first value) and the fields of
    :data:`HASH_FIELDS`, e.g. ``"{hdr:X-Tenant}{from_user}"``; each part as ``(kind,
    arg)`` with kind ``text``, ``hdr`` or a field name. Raises ValueError naming what is
    wrong."""
    parts: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        j = text.find("{", i)
        end = len(text) if j < 0 else j
        if text.find("}", i, end) >= 0:
            raise ValueError(f"a '}}' without its '{{' at character {text.find('}', i) + 1}")
        if end > i:
            parts.append(("text", text[i:end]))
        if j < 0:
            break
        k = text.find("}", j)
        if k < 0:
            raise ValueError(f"the '{{' at character {j + 1} is not closed")
        field = text[j + 1 : k].strip()
        if field[:4].lower() == "hdr:":
            name = field[4:].strip()
            if not name or not _TOKEN.issuperset(name):
                raise ValueError(f"{{{field}}}: a header name must follow hdr:")
            parts.append(("hdr", name))
        elif field in HASH_FIELDS:
            parts.append((field, ""))
        else:
            raise ValueError(
                f"unknown part {{{field}}}: use {{hdr:Name}} or one of "
                + ", ".join(f"{{{f}}}" for f in HASH_FIELDS)
            )
        i = k + 1
    if not any(kind != "text" for kind, _ in parts):
        raise ValueError("the template names nothing of the request")
    return tuple(parts)


def is_hash_template(text: str) -> bool:
    """A template (``{...}`` parts) rather than a header name."""
    return "{" in text or "}" in text
