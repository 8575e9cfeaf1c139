"""The addresses of a destination located by DNS (RFC 3263), and their order (RFC 2782).

A destination written as a host name without a port (``sip:carrier.example.com``) is
located by NAPTR, SRV and A/AAAA lookups; each SRV target's addresses become one
:class:`DnsAddress`, with the target's priority and weight. :class:`LocatedAddresses`
holds the last good answer of the lookups for one destination, which addresses the
pings found down, and gives the order a request tries them in: lower priority first,
a weighted random choice among equal priorities (RFC 2782), the addresses found down
after the others. Pure: the lookups are the shell's (``sipdispatch.locator``); the
router only reads what is here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DnsAddress:
    """One address a destination located by DNS can be reached at."""

    ip: str
    """IP address (IPv6 without brackets)."""
    port: int
    """Port (the SRV record's, or the transport's default without SRV)."""
    transport: str
    """``udp`` or ``tcp``: the transport NAPTR (or the URI) chose."""
    priority: int = 0
    """SRV priority: lower is tried first."""
    weight: int = 0
    """SRV weight: share of the requests among the targets of one priority."""
    target: str = ""
    """The SRV target (or the host itself without SRV), for display."""

    @property
    def addr(self) -> tuple[str, int]:
        """``(ip, port)``."""
        return (self.ip, self.port)


def srv_order(addresses: list[DnsAddress], rng: random.Random) -> list[DnsAddress]:
    """Order ``addresses`` as RFC 2782 says a client tries SRV targets: by priority
    (lowest first), and within one priority by repeated weighted choice -- the
    zero-weight targets placed first, a number drawn in 0..(sum of the weights left)
    and the first target whose running sum reaches it taken next. A target's
    addresses (its A/AAAA records) stay together, in the order of the answer; the
    weight is the target's, whatever number of addresses it has. Deterministic for a
    seeded ``rng``; a priority with a single target draws nothing."""
    targets: dict[tuple[int, int, str, int], list[DnsAddress]] = {}
    for a in addresses:
        targets.setdefault((a.priority, a.weight, a.target, a.port), []).append(a)
    by_priority: dict[int, list[tuple[int, int, str, int]]] = {}
    for key in targets:
        by_priority.setdefault(key[0], []).append(key)
    out: list[DnsAddress] = []
    for priority in sorted(by_priority):
        group = by_priority[priority]
        if len(group) == 1:
            out.extend(targets[group[0]])
            continue
        left = [k for k in group if k[1] == 0] + [k for k in group if k[1] != 0]
        while left:
            total = 0
            for k in left:
                total += k[1]
            pick = rng.randint(0, total) if total > 0 else 0
            running = 0
            chosen = len(left) - 1
            for i, k in enumerate(left):
                running += k[1]
                if running >= pick:
                    chosen = i
                    break
            out.extend(targets[left.pop(chosen)])
    return out


class LocatedAddresses:
    """What the DNS said of one destination, and which of its addresses answer.

    ``addresses`` is the answer in priority order (for display, the pings and the
    source index); :meth:`order` is the order one request tries them in.
    """

    __slots__ = ("addresses", "down", "expires", "single")

    def __init__(self, addresses: tuple[DnsAddress, ...], expires: float = 0.0) -> None:
        self.addresses = tuple(sorted(addresses, key=lambda a: a.priority))
        """Every address, lowest priority first (order of the answer within one)."""
        self.expires = expires
        """When the answer runs out (the shell's monotonic clock): it is looked up again
        before."""
        self.down: set[tuple[str, int]] = set()
        """``(ip, port)`` of the addresses whose last ping failed: tried after the
        others until a ping answers again."""
        self.single = len(self.addresses) == 1
        """One address only: nothing to choose."""

    @property
    def first(self) -> DnsAddress:
        """The first address of the answer (the destination's ``addr``)."""
        return self.addresses[0]

    def same_as(self, other: LocatedAddresses) -> bool:
        """Whether ``other`` holds the same addresses (priority and weight included)."""
        return set(self.addresses) == set(other.addresses)

    def carry_down(self, previous: LocatedAddresses) -> None:
        """Keep the down marks ``previous`` had for addresses that are still here (a
        refreshed answer, or a reload)."""
        mine = {a.addr for a in self.addresses}
        self.down = {addr for addr in previous.down if addr in mine}

    def order(self, rng: random.Random) -> list[DnsAddress]:
        """The addresses in the order a request tries them: RFC 2782 order of those
        that answer pings, then those found down (also in RFC 2782 order)."""
        if self.single:
            return [self.addresses[0]]
        down = self.down
        if not down:
            return srv_order(list(self.addresses), rng)
        up = [a for a in self.addresses if a.addr not in down]
        rest = [a for a in self.addresses if a.addr in down]
        return srv_order(up, rng) + srv_order(rest, rng)

    def set_down(self, addr: tuple[str, int], down: bool) -> bool:
        """Record a ping's outcome for ``addr``; True when that changed its mark."""
        if down == (addr in self.down):
            return False
        if down:
            self.down.add(addr)
        else:
            self.down.discard(addr)
        return True

    def any_up(self) -> bool:
        """At least one address answers (or was not found down)."""
        return len(self.down) < len(self.addresses)

    def __repr__(self) -> str:
        shown = ", ".join(f"{a.transport}:{a.ip}:{a.port}" for a in self.addresses)
        return f"<LocatedAddresses {shown}>"
