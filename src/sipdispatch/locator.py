"""Locating destinations by DNS (RFC 3263), with a cache that follows the TTLs.

A destination written as a host name without a port (``sip:carrier.example.com``,
``sip:carrier.example.com;transport=tcp``) is looked up as RFC 3263 says, with
dnspython's asyncio resolver:

1. NAPTR of the host: the records of service ``SIP+D2U`` (UDP) and ``SIP+D2T`` (TCP)
   with flag ``s``, in order then preference (only those of the URI's transport when
   it names one); the first whose replacement has SRV records gives the transport;
2. without a usable NAPTR: SRV ``_sip._udp.host`` then ``_sip._tcp.host`` (only the
   URI's transport when it names one);
3. without SRV: A/AAAA of the host on port 5060 (UDP, or the URI's transport).

Every SRV target's A/AAAA addresses become the destination's addresses
(:class:`~sipdispatch.dispatcher.addresses.DnsAddress`), with the target's priority
and weight. :class:`DnsCache` keeps each answer for its TTL (the smallest of the
records used, at least :data:`TTL_FLOOR`, at most :data:`TTL_CAP`) and looks it up
again before it runs out; a lookup that fails or comes back empty keeps the last good
answer. The router never waits on DNS: it reads the answer the destination holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from sipdispatch.dispatcher.addresses import DnsAddress, LocatedAddresses
from sipdispatch.dispatcher.destination import Destination

log = logging.getLogger("sipdispatch.dns")

TTL_FLOOR: Final = 5.0
"""Shortest time an answer is kept (seconds), whatever its TTL says."""
TTL_CAP: Final = 3600.0
"""Longest time an answer is kept (seconds), whatever its TTL says."""
REFRESH_AHEAD: Final = 0.2
"""An answer is looked up again when this share of its lifetime is left."""
RETRY_AFTER_FAILURE: Final = 5.0
"""Seconds between two lookups of an answer whose last refresh failed."""
FALLBACK_TTL: Final = 60.0
"""Seconds an address found by the system's resolver (``getaddrinfo``: ``/etc/hosts``,
...) is kept: it gives no TTL."""
DEFAULT_PORT: Final = 5060
"""Port of a host located by its A/AAAA records alone (RFC 3263 §4.2)."""

NAPTR_SERVICES: Final = {"SIP+D2U": "udp", "SIP+D2T": "tcp"}
"""NAPTR services used, and their transport (TLS destinations are not located by DNS)."""
SRV_PREFIXES: Final = {"udp": "_sip._udp.", "tcp": "_sip._tcp."}
"""SRV name prefix of each transport."""


class DnsError(Exception):
    """A lookup did not give an answer (no record, or no server answered)."""


@dataclass(frozen=True, slots=True)
class Records:
    """What one query returned: the records' text forms parsed by the caller, and the
    TTL of the set (None when there is no record)."""

    rdata: tuple[Any, ...]
    ttl: float | None


Query = Callable[[str, str], Awaitable[Records]]
Fallback = Callable[[str], Awaitable[list[str]]]
"""``fallback(host)``: the host's IP addresses by other means than DNS queries."""
"""``query(name, rdtype)``: the records of ``name``; empty when the name has none of
that type (or does not exist); raises :class:`DnsError` when no server answered."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A destination's addresses as the DNS gave them, and how long they hold."""

    addresses: tuple[DnsAddress, ...]
    ttl: float
    """The smallest TTL of the records used (seconds), not yet bounded."""
    how: str
    """How they were found, for the log: ``NAPTR+SRV``, ``SRV`` or ``A/AAAA``."""


def nameserver_query(nameservers: Sequence[tuple[str, int]] = (), timeout: float = 2.0) -> Query:
    """A :data:`Query` over dnspython's asyncio resolver: the ``nameservers``
    (``(ip, port)``), or the system's (``/etc/resolv.conf``) when empty. ``timeout``
    bounds one query, retries included."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
    resolver.lifetime = timeout
    resolver.timeout = timeout
    resolver.cache = None

    async def query(name: str, rdtype: str) -> Records:
        try:
            answer = await resolver.resolve(
                name, dns.rdatatype.from_text(rdtype), raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return Records((), None)
        except dns.exception.DNSException as exc:
            raise DnsError(f"{rdtype} {name}: {exc or type(exc).__name__}") from None
        rrset = answer.rrset
        if rrset is None:
            return Records((), None)
        return Records(tuple(rrset), float(rrset.ttl))

    return query


async def locate(query: Query, host: str, transport: str, transport_given: bool) -> Answer:
    """The addresses of ``host`` by RFC 3263 (see the module). ``transport`` is the
    URI's (``udp`` without one); ``transport_given``: the URI names it, so NAPTR and
    SRV are asked for it alone. Raises :class:`DnsError` when nothing is found."""
    ttls: list[float] = []
    wanted = [transport] if transport_given else ["udp", "tcp"]
    naptr = await query(host, "NAPTR")
    if naptr.rdata:
        assert naptr.ttl is not None
        candidates = []
        for r in naptr.rdata:
            service = r.service.decode("ascii", "replace").upper()
            chosen = NAPTR_SERVICES.get(service)
            if r.flags.decode("ascii", "replace").lower() == "s" and chosen in wanted:
                candidates.append((r.order, r.preference, chosen, r.replacement.to_text()))
        for _, _, chosen, name in sorted(candidates):
            found = await _srv(query, name.rstrip("."), chosen, ttls)
            if found:
                ttls.append(naptr.ttl)
                return Answer(tuple(found), min(ttls), "NAPTR+SRV")
    for chosen in wanted:
        found = await _srv(query, SRV_PREFIXES[chosen] + host, chosen, ttls)
        if found:
            return Answer(tuple(found), min(ttls), "SRV")
    chosen = wanted[0]
    found = await _addresses(query, host, DEFAULT_PORT, chosen, 0, 0, ttls)
    if found:
        return Answer(tuple(found), min(ttls), "A/AAAA")
    raise DnsError(f"no NAPTR, SRV or A/AAAA record for {host}")


async def _srv(query: Query, name: str, transport: str, ttls: list[float]) -> list[DnsAddress]:
    srv = await query(name, "SRV")
    if not srv.rdata:
        return []
    assert srv.ttl is not None
    out: list[DnsAddress] = []
    used: list[float] = [srv.ttl]
    for r in sorted(srv.rdata, key=lambda r: (r.priority, -r.weight)):
        target = r.target.to_text().rstrip(".")
        if not target:
            continue  # "." : the service is not offered at this name (RFC 2782)
        out += await _addresses(query, target, r.port, transport, r.priority, r.weight, used)
    if out:
        ttls.extend(used)
    return out


async def _addresses(
    query: Query,
    name: str,
    port: int,
    transport: str,
    priority: int,
    weight: int,
    ttls: list[float],
) -> list[DnsAddress]:
    out: list[DnsAddress] = []
    for rdtype in ("A", "AAAA"):
        records = await query(name, rdtype)
        if records.ttl is not None:
            ttls.append(records.ttl)
        for r in records.rdata:
            out.append(DnsAddress(r.address, port, transport, priority, weight, name))
    return out


async def system_addresses(host: str) -> list[str]:
    """``host``'s addresses from the system's resolver (``getaddrinfo``: ``/etc/hosts``
    first, as the proxy resolves any other name); [] when it knows none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def bounded_ttl(ttl: float) -> float:
    """``ttl`` within :data:`TTL_FLOOR`..:data:`TTL_CAP`."""
    return min(max(ttl, TTL_FLOOR), TTL_CAP)


@dataclass(slots=True)
class Entry:
    """One cached answer."""

    answer: Answer
    """The last good answer."""
    expires: float
    """When it runs out (it is kept after, until a lookup gives a new one)."""
    refresh_at: float
    """When it is looked up again."""
    failing: bool = False
    """The last refresh failed (logged once until one succeeds)."""


Key = tuple[str, str, bool]
"""``(host, transport, transport_given)``: what a lookup depends on."""

_T = TypeVar("_T")


def _run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to its end from blocking code: in this thread when it runs no event
    loop (a worker of the loop's executor), else in a thread of its own (start-up)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class DnsCache:
    """The answers of the destinations located by DNS, kept for their TTL.

    ``query`` asks the DNS (:func:`nameserver_query`); ``clock`` gives the monotonic
    time (virtual in tests). :meth:`resolve` answers from the cache while an answer
    holds; :meth:`refresh_due` (run in the background) looks up again those whose
    time has come and keeps the last good answer when the lookup fails.
    """

    def __init__(
        self,
        query: Query,
        clock: Callable[[], float] = time.monotonic,
        fallback: Fallback | None = None,
    ) -> None:
        self.query = query
        self.clock = clock
        self.fallback = fallback
        """With the system's resolver: a host the DNS lookups find nothing for is
        asked of ``getaddrinfo`` too (``/etc/hosts``: ``sip:localhost``), on port 5060."""
        self.entries: dict[Key, Entry] = {}
        self.stats: Counter[str] = Counter()
        """``lookups``, ``lookup_failures`` (a destination that did not resolve),
        ``refreshes``, ``refresh_failures`` (the last good answer kept), ``changes``."""

    @staticmethod
    def key(dest: Destination) -> Key:
        """What ``dest``'s lookup depends on."""
        return (dest.host.lower(), dest.sip_uri.transport, dest.transport_given)

    def _store(self, key: Key, answer: Answer, now: float) -> Entry:
        ttl = bounded_ttl(answer.ttl)
        entry = Entry(answer, now + ttl, now + ttl * (1 - REFRESH_AHEAD))
        self.entries[key] = entry
        return entry

    async def resolve(self, key: Key) -> Entry:
        """The answer for ``key``: the cached one while it holds, else looked up now.
        Raises :class:`DnsError` when it is not cached and does not resolve."""
        now = self.clock()
        entry = self.entries.get(key)
        if entry is not None and now < entry.expires:
            return entry
        self.stats["lookups"] += 1
        try:
            answer = await self._lookup(key)
        except DnsError:
            self.stats["lookup_failures"] += 1
            if entry is not None:
                return entry  # the last good answer holds until one replaces it
            raise
        return self._store(key, answer, self.clock())

    async def _lookup(self, key: Key) -> Answer:
        try:
            return await locate(self.query, *key)
        except DnsError:
            if self.fallback is None:
                raise
            ips = await self.fallback(key[0])
            if not ips:
                raise
        transport = key[1] if key[2] else "udp"
        found = tuple(DnsAddress(ip, DEFAULT_PORT, transport, 0, 0, key[0]) for ip in ips)
        return Answer(found, FALLBACK_TTL, "getaddrinfo")

    def located(self, entry: Entry) -> LocatedAddresses:
        """A destination's addresses from a cached answer."""
        return LocatedAddresses(entry.answer.addresses, entry.expires)

    def locate_blocking(self, dest: Destination) -> LocatedAddresses:
        """:meth:`resolve` for ``dest`` from blocking code (a load or a reload, run off
        the event loop). Raises :class:`DnsError`."""
        return self.located(_run_blocking(self.resolve(self.key(dest))))

    def next_refresh(self) -> float | None:
        """When the next answer is due to be looked up again; None when none is cached."""
        # A copy first: a reload's lookups may add an entry from a worker thread.
        return min((e.refresh_at for e in list(self.entries.values())), default=None)

    async def refresh_due(self, keep: set[Key] | None = None) -> list[Key]:
        """Look up again every answer whose refresh time has come; returns the keys whose
        addresses changed. A lookup that fails or finds nothing keeps the last good
        answer (logged once until one succeeds, counted in ``refresh_failures``) and is
        tried again in :data:`RETRY_AFTER_FAILURE`. ``keep``: the keys still in use
        (the others are dropped)."""
        if keep is not None:
            for key in [k for k in list(self.entries) if k not in keep]:
                self.entries.pop(key, None)
        changed: list[Key] = []
        now = self.clock()
        for key, entry in list(self.entries.items()):
            if entry.refresh_at > now:
                continue
            self.stats["refreshes"] += 1
            try:
                answer = await self._lookup(key)
            except DnsError as exc:
                self.stats["refresh_failures"] += 1
                entry.refresh_at = self.clock() + RETRY_AFTER_FAILURE
                if not entry.failing:
                    entry.failing = True
                    log.warning("DNS refresh of %s failed (%s): keeping its last answer "
                                "(%s)", key[0], exc, _shown(entry.answer.addresses))  # fmt: skip
                continue
            if entry.failing:
                log.info("DNS refresh of %s answers again", key[0])
            if set(answer.addresses) != set(entry.answer.addresses):
                changed.append(key)
                self.stats["changes"] += 1
                log.info("DNS answer of %s changed: %s -> %s", key[0],
                         _shown(entry.answer.addresses), _shown(answer.addresses))  # fmt: skip
            self._store(key, answer, self.clock())
        return changed


def _shown(addresses: Sequence[DnsAddress]) -> str:
    return ", ".join(f"{a.transport}:{a.ip}:{a.port}" for a in addresses) or "none"
