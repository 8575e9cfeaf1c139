"""One virtual clock for tests that drive a proxy core in memory.

:class:`CorePump` does what the asyncio shell does, on virtual time: it hands the
core what arrives, runs its timers when due and collects what it sends, through the
core's public boundary only (``receive``, ``handle_timer``, ``get_timer``,
``datagrams_to_send``). Messages can also be scheduled to arrive later (a gateway
answering after a delay); timers and arrivals run in time order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import Request, Response, parse_datagram
from sipdispatch.sip.proxy import ProxyCore

Sent = list[tuple[Addr, bytes]]


def parsed(sent: Sent) -> list[tuple[Addr, Request | Response]]:
    """What was sent, parsed."""
    return [(addr, parse_datagram(data)) for addr, data in sent]


class CorePump:
    """A proxy core on a virtual clock."""

    def __init__(self, core: ProxyCore, now: float = 0.0) -> None:
        self.core = core
        self.now = now
        self._arrivals: list[tuple[float, int, bytes, Addr]] = []
        self._seq = 0

    def sent(self) -> Sent:
        """What the core has sent since the last look."""
        return [(addr, data) for addr, data, _owner in self.core.datagrams_to_send()]

    def receive(self, data: bytes, src: Addr) -> Sent:
        """``data`` arrives from ``src`` now; what the core sends at once."""
        self.core.receive(data, src, self.now)
        return self.sent()

    def arrive_at(self, when: float, data: bytes, src: Addr) -> None:
        """``data`` will arrive from ``src`` at virtual time ``when``."""
        self._seq += 1
        heapq.heappush(self._arrivals, (when, self._seq, data, src))

    def advance(self, seconds: float, on_sent: Callable[[Sent], None] | None = None) -> Sent:
        """Run every timer and arrival due in the next ``seconds``, in time order;
        return what was sent meanwhile. ``on_sent`` sees each batch as it leaves
        (it may schedule arrivals, which run in this same call when due)."""
        end = self.now + seconds
        out: Sent = []

        def collect() -> None:
            batch = self.sent()
            if batch:
                out.extend(batch)
                if on_sent is not None:
                    on_sent(batch)

        collect()
        while True:
            deadline = self.core.get_timer()
            arrival = self._arrivals[0][0] if self._arrivals else None
            due = [t for t in (deadline, arrival) if t is not None]
            if not due or min(due) > end:
                break
            self.now = max(self.now, min(due))
            if arrival is not None and arrival <= self.now:
                _, _, data, src = heapq.heappop(self._arrivals)
                self.core.receive(data, src, self.now)
            else:
                self.core.handle_timer(self.now)
            collect()
        self.now = end
        return out
