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


Targets = list[list[tuple[int, list[DnsAddress]]]]
"""Addresses grouped for :func:`srv_order`: by priority (lowest first), each priority a
list of ``(weight, addresses of one target)``, the zero-weight targets first."""


def group_targets(addresses: list[DnsAddress]) -> Targets:
    """``addresses`` grouped by priority and target (see :data:`Targets`); a target's
    addresses stay in the order of the answer."""
    targets: dict[tuple[int, int, str, int], list[DnsAddress]] = {}
    for a in addresses:
        targets.setdefault((a.priority, a.weight, a.target, a.port), []).append(a)
    by_priority: dict[int, list[tuple[int, list[DnsAddress]]]] = {}
    for key, found in targets.items():
        by_priority.setdefault(key[0], []).append((key[1], found))
    out: Targets = []
    for priority in sorted(by_priority):
        group = by_priority[priority]
        out.append([t for t in group if t[0] == 0] + [t for t in group if t[0] != 0])
    return out


def order_targets(groups: Targets, rng: random.Random) -> list[DnsAddress]:
    """The RFC 2782 order of grouped targets (see :func:`srv_order`)."""
    out: list[DnsAddress] = []
    for group in groups:
        if len(group) == 1:
            out.extend(group[0][1])
            continue
        left = list(group)
        while left:
            total = 0
            for t in left:
                total += t[0]
            pick = rng.randint(0, total) if total > 0 else 0
            running = 0
            chosen = len(left) - 1
            for i, t in enumerate(left):
                running += t[0]
                if running >= pick:
                    chosen = i
                    break
            out.extend(left.pop(chosen)[1])
    return out


def srv_order(addresses: list[DnsAddress], rng: random.Random) -> list[DnsAddress]:
    """Order ``addresses`` as RFC 2782 says a client tries SRV targets: by priority
    (lowest first), and within one priority by repeated weighted choice -- the
    zero-weight targets placed first, a number drawn in 0..(sum of the weights left)
    and the first target whose running sum reaches it taken next. A target's
    addresses (its A/AAAA records) stay together, in the order of the answer; the
    weight is the target's, whatever number of addresses it has. Deterministic for a
    seeded ``rng``; a priority with a single target draws nothing."""
    return order_targets(group_targets(addresses), rng)


class LocatedAddresses:
    """What the DNS said of one destination, and which of its addresses answer.

    ``addresses`` is the answer in priority order (for display, the pings and the
    source index); :meth:`order` is the order one request tries them in.
    """

    __slots__ = ("_fixed", "_groups", "addresses", "down", "expires", "single")

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
        self._groups = group_targets(list(self.addresses))
        self._fixed: list[DnsAddress] | None = None
        """The order when it needs no draw (one target per priority): made once."""
        if all(len(group) == 1 for group in self._groups):
            self._fixed = order_targets(self._groups, random.Random(0))

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
        that answer pings, then those found down (also in RFC 2782 order). Not to be
        changed: without a draw to make it is the same list every time."""
        down = self.down
        if not down:
            fixed = self._fixed
            if fixed is not None:
                return fixed  # the same list every time: the caller only reads it
            return order_targets(self._groups, rng)
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
