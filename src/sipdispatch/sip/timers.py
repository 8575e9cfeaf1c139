"""Timer values and a virtual-time timer queue (sans-IO).

Nothing here reads a clock: callers pass ``now`` and ask for the next deadline,
as aioquic does. The asyncio shell arms one ``loop.call_at`` for that deadline.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

T1_DEFAULT = 0.5
"""RFC 3261 §17.1.1.1: RTT estimate, 500 ms (Kamailio tm ``retr_timer1``)."""
T2_DEFAULT = 4.0
"""RFC 3261 §17.1.2.2: longest retransmit interval for non-INVITE, 4 s."""
T4_DEFAULT = 5.0
"""RFC 3261 §17.1.2.2: longest time a message stays in the network, 5 s."""


@dataclass(frozen=True, slots=True)
class Timers:
    """Timer base values in seconds, and the timeouts the proxy uses.

    ``fr_timer`` replaces timers B and F (no final response, and for INVITE no
    provisional either) and ``fr_inv_timer`` is the INVITE wait after a
    provisional (RFC 3261 §16.6 timer C) — Kamailio tm's names and meaning.
    """

    t1: float = T1_DEFAULT
    """T1, seconds."""
    t2: float = T2_DEFAULT
    """T2, seconds."""
    t4: float = T4_DEFAULT
    """T4, seconds."""
    fr_timer: float = 30.0
    """Seconds without a final (or, for INVITE, any) response before a branch times out."""
    fr_inv_timer: float = 120.0
    """Seconds an INVITE branch waits for a final response after a provisional."""

    wait_timer: float | None = None
    """How long a finished transaction stays to absorb retransmissions: timers D, J, L
    and M (Kamailio tm ``wt_timer``). None keeps the RFC values (32 s with the default
    T1); the proxy's configuration sets Kamailio's 5 s."""

    @property
    def timer_64t1(self) -> float:
        """64*T1: timers B, F, H (RFC 3261 §17) and the §9.1 wait after a CANCEL."""
        return 64 * self.t1

    @property
    def timer_wait(self) -> float:
        """Timers J, L and M (RFC 3261 §17.2.2, RFC 6026 §7): 64*T1, or ``wait_timer``."""
        wait = self.wait_timer
        return 64 * self.t1 if wait is None else wait

    @property
    def timer_d(self) -> float:
        """Timer D for unreliable transports: at least 32 s (RFC 3261 §17.1.1.2), or
        ``wait_timer``."""
        wait = self.wait_timer
        return max(32.0, 64 * self.t1) if wait is None else wait


COMPACT_MIN_CANCELLED = 1024
"""The heap is rebuilt without its cancelled entries once there are at least this many
and they are more than half of it (asyncio's rule): an answered INVITE leaves its
fr_inv_timer (120 s by default) cancelled in the heap, which would otherwise hold
tens of thousands of dead entries at a few hundred calls a second."""


class TimerHandle:
    """A scheduled call; ``cancel()`` makes it a no-op (lazy removal)."""

    __slots__ = ("args", "callback", "queue", "when")

    def __init__(
        self,
        when: float,
        callback: Callable[..., None] | None,
        args: tuple[Any, ...],
        queue: TimerQueue | None = None,
    ):
        self.when = when
        self.callback = callback
        self.args = args
        self.queue = queue

    def cancel(self) -> None:
        """Do not run this timer."""
        if self.callback is not None:
            self.callback = None
            self.args = ()
            queue = self.queue
            if queue is not None:
                self.queue = None
                queue.cancelled += 1
                if queue.cancelled >= COMPACT_MIN_CANCELLED and 2 * queue.cancelled > len(
                    queue._heap
                ):
                    queue.compact()

    @property
    def cancelled(self) -> bool:
        """True once cancelled or run."""
        return self.callback is None


class TimerQueue:
    """A heap of timers in virtual time."""

    __slots__ = ("_heap", "_seq", "cancelled")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = 0
        self.cancelled = 0
        """Cancelled entries still in the heap."""

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> TimerHandle:
        """Run ``callback(*args, now)`` at virtual time ``when``."""
        handle = TimerHandle(when, callback, args, self)
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, handle))
        return handle

    def compact(self) -> None:
        """Drop the cancelled entries from the heap (order of the others is kept)."""
        heap = [entry for entry in self._heap if entry[2].callback is not None]
        heapq.heapify(heap)
        self._heap = heap
        self.cancelled = 0

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is scheduled."""
        heap = self._heap
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)
            self.cancelled -= 1
        return heap[0][0] if heap else None

    def run_due(self, now: float) -> int:
        """Run every timer due at ``now`` in deadline order; return how many ran."""
        ran = 0
        while True:
            heap = self._heap  # a callback's cancel() may have compacted it
            if not heap or heap[0][0] > now:
                return ran
            _, _, handle = heapq.heappop(heap)
            callback = handle.callback
            if callback is None:
                self.cancelled -= 1
                continue
            args = handle.args
            handle.callback = None
            handle.args = ()
            handle.queue = None
            callback(*args, now)
            ran += 1

    def __len__(self) -> int:
        return sum(1 for _, _, h in self._heap if h.callback is not None)
