"""Loading a store and resolving every destination host, all or nothing."""

from __future__ import annotations

import ipaddress
import socket

from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.listfile import Locate, Resolver, resolve_all
from sipdispatch.dispatcher.states import DS_NODNSARES_DST
from sipdispatch.store.base import Store

_SOCKET_TYPES = {
    "udp": socket.SOCK_DGRAM,
    "tcp": socket.SOCK_STREAM,
    "tls": socket.SOCK_STREAM,
    "sctp": socket.SOCK_STREAM,
    "ws": socket.SOCK_STREAM,
    "wss": socket.SOCK_STREAM,
}


def resolve_host(host: str, port: int, transport: str) -> tuple[str, int]:
    """Default resolver: ``(ip, port)`` for ``host``.

    An IP address is returned as it is (IPv6 compressed). A name is looked up with
    :func:`socket.getaddrinfo` (A and AAAA records, ``/etc/hosts``) and the first
    address the system returns is used. SRV/NAPTR lookups are not done: the port is
    the URI's (or 5060/5061).
    Raises :class:`OSError` (``socket.gaierror``) when the name does not resolve.
    """
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=_SOCKET_TYPES.get(transport, socket.SOCK_DGRAM))
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(f"no address for {host}")
    address = infos[0][4][0]
    return str(address), port


def resolve_each(
    dests: list[Destination], resolver: Resolver | None = None, locate: Locate | None = None
) -> list[tuple[Destination, str]]:
    """Resolve each destination's host it can (flag 16 excepted); the others are
    returned with the reason, unchanged. Start-up uses this (one bad host must not
    stop the proxy); a reload stays all or nothing (:func:`load_and_resolve`).
    ``locate``, when given, finds the addresses of the destinations located by DNS."""
    resolve = resolver if resolver is not None else resolve_host
    failed: list[tuple[Destination, str]] = []
    for dest in dests:
        if dest.flags & DS_NODNSARES_DST:
            continue
        try:
            if locate is not None and dest.by_dns:
                dest.use_located(locate(dest))
            else:
                dest.addr = resolve(dest.host, dest.port, dest.transport)
        except Exception as exc:  # the resolver is injected: any failure is "does not resolve"
            detail = str(exc) or type(exc).__name__
            failed.append((dest, f"could not resolve {dest.host}: {detail}"))
    return failed


def load_and_resolve(
    store: Store, resolver: Resolver | None = None, locate: Locate | None = None
) -> list[Destination]:
    """Load every destination of ``store`` and resolve each host, all or nothing.

    ``resolver(host, port, transport) -> (ip, port)`` defaults to :func:`resolve_host`;
    ``locate(dest)``, when given, finds the addresses of the destinations located by
    DNS (a host name without a port).
    Destinations with flag 16 (``DS_NODNSARES_DST``) are not resolved, as in
    Kamailio. Raises :class:`~sipdispatch.dispatcher.errors.DispatcherLoadError`
    naming the line/row and the reason (bad record, or the host that did not
    resolve) and :class:`~sipdispatch.store.base.StoreError` when the store
    cannot be read; on any error no destination is returned, so the caller keeps
    its running list (a reload is all or nothing).
    """
    dests = store.load()
    resolve_all(dests, resolver if resolver is not None else resolve_host, locate)
    return dests
