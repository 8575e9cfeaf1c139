"""What every destination store offers: the :class:`Store` protocol, :class:`Row`
and :class:`StoreError`.

A store holds Kamailio ``dispatcher`` records (a ``dispatcher.list`` file or the
``dispatcher`` SQL table). It loads them as :class:`~sipdispatch.dispatcher.
destination.Destination` objects for the proxy, and lists/edits them for
``sipdispatch dispatcher add|show|rm|rmset|rmip`` (kamctl's ``dispatcher``
commands).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.listfile import parse_destination_uri
from sipdispatch.sip.errors import ParseError


class StoreError(Exception):
    """The store cannot be used: database unreachable, wrong table version, list
    file unreadable, unsupported URL...

    The message is one line that names the store (URL with the password masked,
    or file path) and the reason. Bad *content* (a row or line that does not
    parse) is :class:`~sipdispatch.dispatcher.errors.DispatcherLoadError`
    instead.
    """


@dataclass(frozen=True, slots=True)
class Row:
    """One stored destination record, columns as in Kamailio's ``dispatcher`` table.

    For a list file ``id`` is the line number (1-based) and the other fields are
    the line's fields as parsed.
    """

    id: int
    """Table ``id`` (SQL) or line number (list file)."""
    setid: int
    """Destination set (group) id."""
    destination: str
    """Destination SIP URI as stored."""
    flags: int = 0
    """Initial state flags (Kamailio ``DS_*_DST`` bits)."""
    priority: int = 0
    """Priority inside the set (higher first)."""
    attrs: str = ""
    """Attributes string (``weight=50;duid=gw1``)."""
    description: str = ""
    """Free text."""


@runtime_checkable
class Store(Protocol):
    """A destination store (list file or SQL table).

    Every method may raise :class:`StoreError` when the store cannot be reached.
    """

    @property
    def location(self) -> str:
        """Human-readable name of the store for messages: the file path, or the
        database URL with its password masked plus the table name."""
        ...

    def ensure_schema(self) -> None:
        """Prepare the store for use (SQL: create the table and its ``version``
        row when missing, check the version otherwise). Idempotent; the other
        methods call it on first use."""
        ...

    def load(self) -> list[Destination]:
        """Every destination in load order (file lines / rows by id), each with
        ``where`` naming its line or row. All or nothing: the first bad record
        raises :class:`~sipdispatch.dispatcher.errors.DispatcherLoadError`."""
        ...

    def rows(self) -> list[Row]:
        """The stored records for display (``dispatcher show``)."""
        ...

    def add(
        self,
        setid: int,
        uri: str,
        flags: int = 0,
        priority: int = 0,
        attrs: str = "",
        description: str = "",
    ) -> int:
        """Validate and store a new destination; return its id (row id / line number).

        Raises :class:`~sipdispatch.dispatcher.errors.DispatcherLoadError` when the
        URI, attrs or another value cannot be used; nothing is written then.
        """
        ...

    def remove(self, id: int) -> int:
        """Delete the record ``id``; return the number deleted (0 or 1)."""
        ...

    def remove_set(self, setid: int) -> int:
        """Delete every record of set ``setid``; return the number deleted."""
        ...

    def remove_ip(self, ip: str, setid: int) -> int:
        """Delete the records of set ``setid`` whose destination host is ``ip``;
        return the number deleted (see :func:`host_matches`)."""
        ...

    def close(self) -> None:
        """Release connections/handles. The store may be used again afterwards."""
        ...


def _normalise_host(host: str) -> str:
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text.lower().rstrip(".")


def host_matches(destination: str, ip: str) -> bool:
    """True when the host of the destination URI ``destination`` is ``ip``.

    ``rmip`` semantics (kamctl ``dispatcher rmip IP SETID``): the URI's host is
    compared with ``ip`` as addresses (so ``::1``, ``0::1`` and ``[::1]`` are the
    same, and ``10.0.0.1`` does not match ``10.0.0.10``); port, transport, user
    and parameters do not matter. A host name is compared case-insensitively. A
    destination that does not parse as a SIP URI never matches.
    """
    try:
        _, uri = parse_destination_uri(destination.strip())
    except ParseError:
        return False
    return _normalise_host(uri.host) == _normalise_host(ip)
