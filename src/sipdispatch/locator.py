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

The queries of one name run at once, within one ``[dns] timeout`` for the whole name,
and each can fail on its own: the A and the AAAA of a target are two answers, and a
target with addresses of one family is used whatever the other said (refused, failed,
timed out, empty); a target with none is skipped for the next; a NAPTR query that fails
is taken as no NAPTR. Only a name with no address at all fails, with every query that
failed named and what it answered (``NXDOMAIN``, ``NODATA``, ``REFUSED``, ``SERVFAIL``,
a timeout). What failed on the way of a name that resolved is logged once, when it
starts, and once when it stops.

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

from sipdispatch.config import DnsConfig
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


NXDOMAIN: Final = "NXDOMAIN"
"""The name does not exist (an empty answer)."""
NODATA: Final = "NODATA"
"""The name exists but has no record of the type asked (an empty answer)."""
REFUSED: Final = "REFUSED"
"""The server refused to answer (many authoritative servers do for AAAA)."""
SERVFAIL: Final = "SERVFAIL"
"""The server failed to answer."""
TIMEOUT: Final = "timeout"
"""No server answered in time."""
OTHER: Final = "error"
"""Any other failure (a malformed answer, a network error)."""
NO_RECORD: Final = (NXDOMAIN, NODATA)
"""The two empty answers: the DNS worked and says there is nothing."""
DEFAULT_TIMEOUT: Final = 2.0
"""Seconds the lookups of one name may take together (``[dns] timeout``)."""


class DnsError(Exception):
    """A lookup did not give an answer: ``kind`` says why (:data:`REFUSED`,
    :data:`SERVFAIL`, :data:`TIMEOUT`, :data:`OTHER`; for a whole name that found no
    address, the kind of its first failure)."""

    def __init__(self, message: str, kind: str = OTHER) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Records:
    """What one query returned: the records' text forms parsed by the caller, and the
    TTL of the set (None when there is no record)."""

    rdata: tuple[Any, ...]
    ttl: float | None
    empty: str = NODATA
    """Why there is no record when there is none: :data:`NXDOMAIN` or :data:`NODATA`."""


Query = Callable[[str, str], Awaitable[Records]]
"""``query(name, rdtype)``: the records of ``name``; empty (with the reason) when the
name has none of that type or does not exist; raises :class:`DnsError` when no server
answered (refused, failed, timed out)."""
Fallback = Callable[[str], Awaitable[list[str]]]
"""``fallback(host)``: the host's IP addresses by other means than DNS queries."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A destination's addresses as the DNS gave them, and how long they hold."""

    addresses: tuple[DnsAddress, ...]
    ttl: float
    """The smallest TTL of the records used (seconds), not yet bounded."""
    how: str
    """How they were found, for the log: ``NAPTR+SRV``, ``SRV`` or ``A/AAAA``."""
    problems: tuple[str, ...] = ()
    """Lookups on the way that failed although the name resolved (an AAAA refused, an
    SRV target without address, a NAPTR query that timed out): logged once."""


def _failure_text(kind: str, timeout: float) -> str:
    if kind in (REFUSED, SERVFAIL):
        return f"answered {kind}"
    if kind == TIMEOUT:
        return f"no answer within {timeout:g} s (timeout)"
    return kind


def _kind_of(exc: dns.exception.DNSException) -> str:
    """The kind of a failed query: the rcode every server answered, or a timeout."""
    if isinstance(exc, dns.exception.Timeout):
        return TIMEOUT
    if isinstance(exc, dns.resolver.NoNameservers):
        codes = {str(e[3]) for e in exc.kwargs.get("errors", ()) if isinstance(e[3], str)}
        for kind in (REFUSED, SERVFAIL):
            if codes == {kind}:
                return kind
    return OTHER


def nameserver_query(
    nameservers: Sequence[tuple[str, int]] = (), timeout: float = DEFAULT_TIMEOUT
) -> Query:
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
        except dns.resolver.NXDOMAIN:
            return Records((), None, NXDOMAIN)
        except dns.resolver.NoAnswer:
            return Records((), None, NODATA)
        except dns.exception.DNSException as exc:
            kind = _kind_of(exc)
            text = _failure_text(kind, timeout) if kind != OTHER else str(exc) or type(exc).__name__
            raise DnsError(f"{rdtype} {name}: {text}", kind) from None
        rrset = answer.rrset
        if rrset is None:
            return Records((), None, NODATA)
        return Records(tuple(rrset), float(rrset.ttl))

    return query


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One query's result within a lookup: its records, or why there are none."""

    records: Records
    failure: str = ""
    """``"{rdtype} {name}: why"`` when it gave no record."""
    kind: str = ""
    """:data:`NXDOMAIN`/:data:`NODATA` for an empty answer, else the error's kind."""


class _Lookup:
    """The queries of one name's location, each asked once and all within one
    deadline; what failed on the way, in the order it was met."""

    def __init__(self, query: Query, timeout: float) -> None:
        self.query = query
        self.timeout = timeout
        self.deadline = asyncio.get_running_loop().time() + timeout
        self.tasks: dict[tuple[str, str], asyncio.Task[_Outcome]] = {}
        self.failures: list[_Outcome] = []
        self._seen: set[tuple[str, str]] = set()

    def start(self, name: str, rdtype: str) -> asyncio.Task[_Outcome]:
        key = (name.lower(), rdtype)
        task = self.tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(self._ask(name, rdtype))
            self.tasks[key] = task
        return task

    async def _ask(self, name: str, rdtype: str) -> _Outcome:
        remaining = self.deadline - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise TimeoutError
            records = await asyncio.wait_for(self.query(name, rdtype), remaining)
        except TimeoutError:
            text = _failure_text(TIMEOUT, self.timeout)
            return _Outcome(Records((), None), f"{rdtype} {name}: {text}", TIMEOUT)
        except DnsError as exc:
            return _Outcome(Records((), None), str(exc), exc.kind)
        if records.rdata:
            if rdtype == "SRV":
                # The targets' addresses are asked now, not when this SRV's turn comes.
                for target, *_ in _targets(records):
                    self.start(target, "A")
                    self.start(target, "AAAA")
            return _Outcome(records)
        why = "no such name" if records.empty == NXDOMAIN else f"no {rdtype} record"
        return _Outcome(records, f"{rdtype} {name}: {why} ({records.empty})", records.empty)

    async def get(self, name: str, rdtype: str) -> _Outcome:
        """The outcome of a query (started now if it was not), noted when it failed."""
        outcome = await self.start(name, rdtype)
        key = (name.lower(), rdtype)
        if outcome.failure and key not in self._seen:
            self._seen.add(key)
            self.failures.append(outcome)
        return outcome

    def problems(self) -> tuple[str, ...]:
        """The failures met that are not an empty answer (the DNS did not work there)."""
        return tuple(f.failure for f in self.failures if f.kind not in NO_RECORD)

    def error(self, host: str) -> DnsError:
        """Why ``host`` has no address: every failure met, each named."""
        if all(f.kind in NO_RECORD for f in self.failures):
            return DnsError(f"no NAPTR, SRV or A/AAAA record for {host}", NODATA)
        shown = "; ".join(f.failure for f in self.failures)
        first = next(f.kind for f in self.failures if f.kind not in NO_RECORD)
        return DnsError(f"no address for {host} ({shown})", first)

    def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()


async def locate(
    query: Query,
    host: str,
    transport: str,
    transport_given: bool,
    timeout: float = DEFAULT_TIMEOUT,
) -> Answer:
    """The addresses of ``host`` by RFC 3263 (see the module). ``transport`` is the
    URI's (``udp`` without one); ``transport_given``: the URI names it, so NAPTR and
    SRV are asked for it alone. Raises :class:`DnsError` when nothing is found.

    Every query of the name runs within one ``timeout``: the NAPTR, the SRV of each
    transport and the host's A and AAAA are asked at once, each SRV target's A and
    AAAA at once as soon as the SRV answers, and the first usable step in RFC 3263's
    order gives the answer. A failed query (refused, failed, timed out) counts as no
    record there: a target with addresses of one family is used, a target without
    any is skipped for the next, a failed NAPTR goes on to SRV (RFC 3263 §4.1)."""
    look = _Lookup(query, timeout)
    wanted = [transport] if transport_given else ["udp", "tcp"]
    look.start(host, "NAPTR")
    for chosen in wanted:
        look.start(SRV_PREFIXES[chosen] + host, "SRV")
    look.start(host, "A")
    look.start(host, "AAAA")
    try:
        naptr = await look.get(host, "NAPTR")
        if naptr.records.rdata:
            candidates = []
            for r in naptr.records.rdata:
                service = r.service.decode("ascii", "replace").upper()
                offered = NAPTR_SERVICES.get(service)
                if r.flags.decode("ascii", "replace").lower() == "s" and offered in wanted:
                    candidates.append((r.order, r.preference, offered, r.replacement.to_text()))
            for _, _, via, name in sorted(candidates):
                found = await _srv(look, name.rstrip("."), via)
                if found is not None:
                    addresses, ttls = found
                    assert naptr.records.ttl is not None
                    ttl = min(naptr.records.ttl, *ttls)
                    return Answer(addresses, ttl, "NAPTR+SRV", look.problems())
        for chosen in wanted:
            found = await _srv(look, SRV_PREFIXES[chosen] + host, chosen)
            if found is not None:
                return Answer(found[0], min(found[1]), "SRV", look.problems())
        found = await _addresses(look, host, DEFAULT_PORT, wanted[0], 0, 0)
        if found is not None:
            return Answer(found[0], min(found[1]), "A/AAAA", look.problems())
        raise look.error(host)
    finally:
        look.close()


Found = tuple[tuple[DnsAddress, ...], list[float]]
"""Addresses found, and the TTLs of the records that gave them."""


async def _srv(look: _Lookup, name: str, transport: str) -> Found | None:
    srv = (await look.get(name, "SRV")).records
    if not srv.rdata:
        return None
    assert srv.ttl is not None
    out: list[DnsAddress] = []
    ttls = [srv.ttl]
    for target, port, priority, weight in _targets(srv):
        found = await _addresses(look, target, port, transport, priority, weight)
        if found is not None:  # a target without address is skipped (RFC 3263 §4.4)
            out += found[0]
            ttls += found[1]
    return (tuple(out), ttls) if out else None


def _targets(srv: Records) -> list[tuple[str, int, int, int]]:
    """An SRV answer's ``(target, port, priority, weight)`` in priority order, weight
    descending within one, without the "." of a service not offered (RFC 2782)."""
    out = []
    for r in sorted(srv.rdata, key=lambda r: (r.priority, -r.weight)):
        target = r.target.to_text().rstrip(".")
        if target:
            out.append((target, r.port, r.priority, r.weight))
    return out


async def _addresses(
    look: _Lookup,
    name: str,
    port: int,
    transport: str,
    priority: int,
    weight: int,
) -> Found | None:
    """``name``'s A and AAAA addresses: either family alone is enough."""
    out: list[DnsAddress] = []
    ttls: list[float] = []
    for rdtype in ("A", "AAAA"):
        records = (await look.get(name, rdtype)).records
        if records.ttl is not None:
            ttls.append(records.ttl)
        for r in records.rdata:
            out.append(DnsAddress(r.address, port, transport, priority, weight, name))
    return (tuple(out), ttls) if out else None


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
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.query = query
        self.clock = clock
        self.timeout = timeout
        """Seconds the lookups of one name may take together."""
        self.fallback = fallback
        """With the system's resolver: a host the DNS lookups find nothing for is
        asked of ``getaddrinfo`` too (``/etc/hosts``: ``sip:localhost``), on port 5060."""
        self.entries: dict[Key, Entry] = {}
        self.stats: Counter[str] = Counter()
        """``lookups``, ``lookup_failures`` (a destination that did not resolve),
        ``refreshes``, ``refresh_failures`` (the last good answer kept), ``changes``."""

    @classmethod
    def for_config(cls, dns: DnsConfig) -> DnsCache:
        """The cache ``[dns]`` describes: its name servers (the system's resolver, with
        ``getaddrinfo`` behind it, when none is given) and its timeout."""
        servers = dns.servers
        return cls(
            nameserver_query(servers, dns.timeout),
            fallback=None if servers else system_addresses,
            timeout=dns.timeout,
        )

    @staticmethod
    def key(dest: Destination) -> Key:
        """What ``dest``'s lookup depends on."""
        return (dest.host.lower(), dest.sip_uri.transport, dest.transport_given)

    def _store(self, key: Key, answer: Answer, now: float) -> Entry:
        ttl = bounded_ttl(answer.ttl)
        entry = Entry(answer, now + ttl, now + ttl * (1 - REFRESH_AHEAD))
        before = self.entries.get(key)
        self.entries[key] = entry
        had = before.answer.problems if before is not None else ()
        if answer.problems and set(answer.problems) != set(had):
            log.warning("DNS lookup of %s: %s; using what answered (%s)", key[0],
                        "; ".join(answer.problems), _shown(answer.addresses))  # fmt: skip
        elif had and not answer.problems:
            log.info("DNS lookup of %s: every query answers again", key[0])
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
            return await locate(self.query, *key, timeout=self.timeout)
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
