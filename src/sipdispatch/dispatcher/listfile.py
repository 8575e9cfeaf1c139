"""Kamailio ``dispatcher.list`` files, and building/resolving destinations.

Line format (Kamailio ``ds_load_list``)::

    setid uri [flags [priority [attrs [description...]]]]

Fields are separated by spaces or tabs; blank lines and lines starting with
``#`` are skipped; a ``#`` ends the URI and a ``#`` right after a field starts a
comment. Kamailio reads ``flags`` and ``priority`` as decimal digits only; we
also accept ``0x`` hex flags (Kamailio's documentation shows ``0x8``, its
parser reads it as 0 followed by junk). ``""`` or ``''`` as attrs means none.
Kamailio ignores anything after attrs; we keep it as the description.

Loading is all-or-nothing: the first bad line raises
:class:`DispatcherLoadError` naming ``source:line`` and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from sipdispatch.dispatcher.addresses import LocatedAddresses
from sipdispatch.dispatcher.destination import Attrs, Destination
from sipdispatch.dispatcher.errors import AttrsError, DispatcherLoadError
from sipdispatch.dispatcher.states import DS_NODNSARES_DST
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.uri import SipUri, parse_uri

Resolver = Callable[[str, int, str], tuple[str, int]]
"""``resolver(host, port, transport) -> (ip, port)``; raises when the host does not resolve."""
Locate = Callable[[Destination], LocatedAddresses]
"""``locate(dest)``: the addresses of a destination located by DNS (``dest.by_dns``);
raises when its host does not resolve."""

_WS: Final = " \t\r\n"


def parse_destination_uri(text: str) -> tuple[str, SipUri]:
    """Parse a destination URI as Kamailio's ``pack_dest`` does.

    A URI that does not parse and does not start with ``sip:`` is retried with
    ``sip:`` prepended (Kamailio: "uri without sip scheme - fixing it"). Returns
    the URI text actually used and its parse. Raises :class:`ParseError`.
    """
    try:
        return text, parse_uri(text)
    except ParseError:
        if len(text) > 4 and not text.startswith("sip:"):
            fixed = "sip:" + text
            try:
                return fixed, parse_uri(fixed)
            except ParseError:
                pass
        raise


def make_destination(
    setid: int,
    uri: str,
    flags: int = 0,
    priority: int = 0,
    attrs: str | None = "",
    description: str = "",
    *,
    where: str = "",
) -> Destination:
    """Build one destination from column values (list file, SQL row, RPC add).

    Raises :class:`DispatcherLoadError` naming ``where`` and the reason.
    """
    if setid < 0:
        raise DispatcherLoadError(where, f"bad setid {setid}: must be >= 0")
    if flags < 0:
        raise DispatcherLoadError(where, f"bad flags {flags}: must be >= 0")
    uri = uri.strip()
    if not uri:
        raise DispatcherLoadError(where, "missing destination URI")
    try:
        uri_text, sip_uri = parse_destination_uri(uri)
    except ParseError as exc:
        raise DispatcherLoadError(where, f"bad URI {uri!r}: {exc}") from None
    try:
        parsed_attrs = Attrs.parse(attrs)
    except AttrsError as attrs_exc:
        raise DispatcherLoadError(where, f"bad attrs {attrs!r}: {attrs_exc}") from None
    return Destination(
        setid=setid, uri=uri_text, sip_uri=sip_uri, flags=flags, priority=priority,
        attrs=parsed_attrs, description=description, where=where,
    )  # fmt: skip


def _parse_int(token: str, what: str, where: str, *, allow_hex: bool) -> int:
    try:
        if allow_hex and token[:2].lower() == "0x":
            return int(token[2:], 16)
        if token.isascii() and token.isdigit():  # isdigit alone takes '¹'
            return int(token)
    except ValueError:
        pass
    form = "a decimal or 0x hex integer" if allow_hex else "a decimal integer"
    raise DispatcherLoadError(where, f"bad {what} {token!r}: must be {form}")


def _tokens(line: str) -> list[str]:
    """Whitespace-separated fields, stopping at a field that starts a comment."""
    out: list[str] = []
    for token in line.split():
        if token.startswith("#"):
            break
        out.append(token)
    return out


def parse_line(line: str, where: str) -> Destination | None:
    """Parse one list-file line; None for a blank or comment line."""
    text = line.strip(_WS)
    if not text or text.startswith("#"):
        return None
    tokens = _tokens(text)
    if len(tokens) < 2:
        raise DispatcherLoadError(where, "expected: setid uri [flags] [priority] [attrs]")
    setid_text, uri = tokens[0], tokens[1]
    if not (setid_text.isascii() and setid_text.isdigit()):  # isdigit alone takes '¹'
        raise DispatcherLoadError(where, f"bad setid {setid_text!r}: must be a decimal integer")
    # Kamailio: '#' ends the URI field.
    uri = uri.split("#", 1)[0]
    flags = _parse_int(tokens[2], "flags", where, allow_hex=True) if len(tokens) > 2 else 0
    priority = _parse_int(tokens[3], "priority", where, allow_hex=False) if len(tokens) > 3 else 0
    attrs = tokens[4] if len(tokens) > 4 else ""
    if attrs in ('""', "''"):
        attrs = ""
    description = " ".join(tokens[5:])
    if len(description) >= 2 and description[0] == description[-1] and description[0] in "\"'":
        description = description[1:-1]
    return make_destination(int(setid_text), uri, flags, priority, attrs, description, where=where)


def parse_list(text: str, source: str) -> list[Destination]:
    """Parse a whole ``dispatcher.list`` text, in file order.

    ``source`` names the file in error messages (``source:line: reason``).
    """
    dests: list[Destination] = []
    for number, line in enumerate(text.splitlines(), start=1):
        dest = parse_line(line, f"{source}:{number}")
        if dest is not None:
            dests.append(dest)
    return dests


def resolve_all(
    dests: Iterable[Destination], resolver: Resolver, locate: Locate | None = None
) -> None:
    """Resolve every destination's host to ``dest.addr``, all or nothing.

    ``resolver(host, port, transport)`` returns ``(ip, port)`` and raises (any
    exception) when the host does not resolve; ``locate(dest)``, when given, finds the
    addresses of the destinations located by DNS (``dest.by_dns``) instead.
    Destinations with flag 16 (``DS_NODNSARES_DST``) are not resolved, as in
    Kamailio. If one fails, nothing is assigned and :class:`DispatcherLoadError` names
    the destination's line/row and the host.
    """
    results: list[tuple[Destination, tuple[str, int] | LocatedAddresses]] = []
    for dest in dests:
        if dest.flags & DS_NODNSARES_DST:
            continue
        try:
            if locate is not None and dest.by_dns:
                results.append((dest, locate(dest)))
            else:
                results.append((dest, resolver(dest.host, dest.port, dest.transport)))
        except Exception as exc:  # the resolver is injected: any failure is "does not resolve"
            detail = str(exc) or type(exc).__name__
            raise DispatcherLoadError(
                dest.where, f"could not resolve {dest.host} ({dest.uri}): {detail}"
            ) from exc
    for dest, found in results:
        if isinstance(found, LocatedAddresses):
            dest.use_located(found)
        else:
            dest.addr = found
