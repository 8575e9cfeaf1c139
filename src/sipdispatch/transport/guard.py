"""Who may send requests, and how fast: the source ACL and the flood limit.

Decided per request from its source address alone, before the request is parsed (the
shell only looks whether a datagram is a response): a source outside ``allow``, or in
``deny``, gets 403 or nothing; a source sending more than ``flood_limit`` requests per
``flood_window`` seconds has the excess dropped (Kamailio's ``pike``). The proxy's own
destinations are never refused nor limited (their in-dialog requests, their answers),
and responses are not looked at here: a response with no transaction is dropped by the
core anyway.

The flood limit is a token bucket per source IP: ``flood_limit`` requests may come at
once, and the bucket refills at ``flood_limit / flood_window`` per second. Buckets of
sources that have been quiet for a window are forgotten at the next sweep, so the table
holds only the sources active now.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sipdispatch.sip.memo import remember

log: Final = logging.getLogger("sipdispatch.security")

ADMIT: Final = 0
REJECT: Final = 1
DROP: Final = 2
"""What happens to a request: it goes on, it gets 403, it is dropped."""
LOG_INTERVAL: Final = 10.0
"""Seconds between two log lines about refused or dropped requests, at most."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """``[security]``."""

    allow: tuple[str, ...] = ()
    """Networks (``10.0.0.0/8``) or addresses whose requests are taken; empty = all."""
    deny: tuple[str, ...] = ()
    """Networks or addresses whose requests are refused (checked before ``allow``)."""
    reject: bool = True
    """Refused requests get ``403 Forbidden`` (else they are dropped)."""
    flood_limit: int = 0
    """Requests per ``flood_window`` per source IP; 0 = no limit."""
    flood_window: float = 2.0
    """Seconds of the flood limit's window (Kamailio pike's ``sampling_time_unit``)."""

    @property
    def active(self) -> bool:
        """Anything to check at all (else the shell skips the guard)."""
        return bool(self.allow or self.deny or self.flood_limit)


def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks of ``allow``/``deny`` entries (an address is a /32 or /128).
    Raises ValueError for an entry that is neither."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


class _Bucket:
    __slots__ = ("hits", "last", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.last = now
        self.hits = 0
        """Requests dropped from this source (since it was last forgotten)."""


class SourceGuard:
    """Applies the ACL and the flood limit to requests, by source IP."""

    def __init__(self, settings: GuardSettings, is_destination: Callable[[str], bool]) -> None:
        self.settings = settings
        self.is_destination = is_destination
        """True for the IP of a destination of any set (never refused nor limited)."""
        self._allow = parse_networks(settings.allow)
        self._deny = parse_networks(settings.deny)
        self._verdicts: dict[str, bool] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._rate = settings.flood_limit / settings.flood_window if settings.flood_limit else 0.0
        self._next_sweep = -math.inf
        self._last_log = -math.inf
        self._unlogged_refused = 0
        self._unlogged_dropped = 0
        self.refused = 0
        """Requests refused by the ACL (403 or dropped)."""
        self.flooded = 0
        """Requests dropped over the flood limit."""

    def _allowed(self, ip: str) -> bool:
        verdict = self._verdicts.get(ip)
        if verdict is None:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                verdict = not self._allow
            else:
                denied = any(address in net for net in self._deny)
                listed = not self._allow or any(address in net for net in self._allow)
                verdict = listed and not denied
            remember(self._verdicts, ip, verdict)
        return verdict

    def check_request(self, ip: str, now: float) -> int:
        """``ADMIT``, ``REJECT`` or ``DROP`` for a request from ``ip`` at ``now``."""
        if self.is_destination(ip):
            return ADMIT
        settings = self.settings
        if (self._allow or self._deny) and not self._allowed(ip):
            self.refused += 1
            self._unlogged_refused += 1
            self._log(now)
            return REJECT if settings.reject else DROP
        if self._rate and not self._take(ip, now):
            self.flooded += 1
            self._unlogged_dropped += 1
            self._log(now)
            return DROP
        return ADMIT

    def _take(self, ip: str, now: float) -> bool:
        if now >= self._next_sweep:
            self._sweep(now)
        bucket = self._buckets.get(ip)
        burst = float(self.settings.flood_limit)
        if bucket is None:
            bucket = self._buckets[ip] = _Bucket(burst, now)
        else:
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.last) * self._rate)
            bucket.last = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        bucket.hits += 1
        return False

    def _sweep(self, now: float) -> None:
        """Forget the sources quiet for a whole window (their buckets are full again)."""
        window = self.settings.flood_window
        quiet = now - window
        self._buckets = {ip: b for ip, b in self._buckets.items() if b.last > quiet}
        self._next_sweep = now + window

    def _log(self, now: float) -> None:
        if now - self._last_log < LOG_INTERVAL:
            return
        self._last_log = now
        parts = []
        if self._unlogged_refused:
            parts.append(f"{self._unlogged_refused} refused by security.allow/deny")
        if self._unlogged_dropped:
            hot = ", ".join(f"{ip} ({hits})" for ip, hits in self.hot(3))
            parts.append(
                f"{self._unlogged_dropped} dropped over security.flood_limit (most from {hot})"
            )
        log.warning("requests %s", "; ".join(parts))
        self._unlogged_refused = self._unlogged_dropped = 0

    def hot(self, count: int = 10) -> list[tuple[str, int]]:
        """The sources with the most requests dropped over the flood limit, most first."""
        ranked = sorted(
            ((ip, b.hits) for ip, b in self._buckets.items() if b.hits),
            key=lambda item: (-item[1], item[0]),
        )
        return ranked[:count]
