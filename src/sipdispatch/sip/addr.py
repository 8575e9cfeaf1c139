"""Where a message comes from or goes to."""

from __future__ import annotations

import ipaddress
from typing import Final, NamedTuple

from sipdispatch.sip.memo import remember


class Addr(NamedTuple):
    """Where a message came from or goes to (a named tuple: made for every
    datagram, and a tuple is the cheapest immutable, hashable record)."""

    transport: str
    """``udp`` or ``tcp`` (lower case)."""
    host: str
    """IP address (or, for a destination not yet resolved, a host name)."""
    port: int
    """Port."""
    conn: int | None = None
    """For stream transports: the connection the message came on, if any."""

    @property
    def reliable(self) -> bool:
        """True for stream transports, which do their own retransmission."""
        return is_reliable(self)


def is_reliable(addr: Addr) -> bool:
    """``addr.reliable``, as a function: compiled, it is a direct call where the
    property is looked up by name."""
    return addr.transport != "udp"


_forbidden: Final[dict[str, bool]] = {}


def is_forbidden_ip(host: str) -> bool:
    """Whether ``host`` is an IP address nothing may be sent to: the IPv4 broadcast
    address (255.255.255.255), a multicast address or the unspecified address
    (0.0.0.0, ``::``). A Via, a Route, a Request-URI or a DNS answer naming one is a
    peer's attempt to make the proxy flood a network (RFC 4475's ``bcast``).
    Memoised: it runs for every request."""
    forbidden = _forbidden.get(host)
    if forbidden is None:
        text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            forbidden = False
        else:
            broadcast = ip.version == 4 and int(ip) == 0xFFFFFFFF
            forbidden = broadcast or ip.is_multicast or ip.is_unspecified
        remember(_forbidden, host, forbidden)
    return forbidden
