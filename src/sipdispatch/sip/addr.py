"""Where a message comes from or goes to."""

from __future__ import annotations

from typing import NamedTuple


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
