"""Timer values and a virtual-time timer queue (sans-IO).

Nothing here reads a clock: callers pass ``now`` and ask for the next deadline,
as aioquic does. The asyncio shell arms one ``loop.call_at`` for that deadline.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

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


COMPACT_MIN_CANCELLED: Final = 1024
"""The queue is rebuilt without its cancelled entries once there are at least this many
and they are more than half of it (asyncio's rule): an answered INVITE leaves its
fr_inv_timer (120 s by default) cancelled in the queue, which would otherwise hold
tens of thousands of dead entries at a few hundred calls a second."""
MAX_LANES: Final = 16
"""Distinct delays :meth:`TimerQueue.call_later` keeps a lane for; others go to the heap."""


class TimerTarget:
    """An object whose timers are told apart by a number (:meth:`TimerQueue.call_later_on`):
    when one is due, :meth:`on_timer` is called with that number -- a direct call, with
    no bound method made for each timer scheduled, nor an argument tuple when it runs."""

    def on_timer(self, kind: int, now: float) -> None:
        raise NotImplementedError


def _on_target(*args: Any) -> None:
    """The ``callback`` of a timer that calls a :class:`TimerTarget` (it is never
    called: it only marks the timer live, as any callback does)."""
    raise AssertionError("a target's timer is run through its target")


class TimerHandle:
    """A scheduled call; ``cancel()`` makes it a no-op (lazy removal)."""

    __slots__ = ("args", "callback", "kind", "queue", "seq", "target", "when")

    def __init__(
        self,
        when: float,
        callback: Callable[..., None] | None,
        args: tuple[Any, ...],
        queue: TimerQueue | None = None,
        seq: int = 0,
        target: TimerTarget | None = None,
        kind: int = 0,
    ):
        self.when = when
        self.callback = callback
        self.args = args
        self.queue = queue
        self.seq = seq
        """Order of scheduling: of two timers due at the same time, the earlier runs first."""
        self.target = target
        """Told ``on_timer(kind, now)`` when due, instead of ``callback`` (then a marker)."""
        self.kind = kind

    def cancel(self) -> None:
        """Do not run this timer."""
        if self.callback is not None:
            self.callback = None
            self.args = ()
            self.target = None
            queue = self.queue
            if queue is not None:
                self.queue = None
                queue.cancelled += 1
                if queue.cancelled >= COMPACT_MIN_CANCELLED and 2 * queue.cancelled > queue.size():
                    queue.compact()

    @property
    def cancelled(self) -> bool:
        """True once cancelled or run."""
        return self.callback is None


class _Lane:
    """The timers of one delay, in the order they were scheduled -- which, time never
    going back, is their deadline order: a list appended to and read from its head."""

    __slots__ = ("delay", "head", "items", "last")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        """The delay its timers were scheduled with."""
        self.items: list[TimerHandle] = []
        self.head = 0
        """``items[:head]`` have run (or were cancelled) and are gone."""
        self.last = -math.inf
        """The deadline appended last: a timer due before it goes to the heap instead."""

    def first(self, queue: TimerQueue) -> TimerHandle | None:
        """The earliest live timer, dropping the cancelled ones before it."""
        items = self.items
        head = self.head
        n = len(items)
        while head < n:
            handle = items[head]
            if handle.callback is not None:
                self.head = head
                return handle
            head += 1
            queue.cancelled -= 1
        if n:
            items.clear()
        self.head = 0
        return None

    def pop(self) -> None:
        """Drop the timer :meth:`first` returned."""
        head = self.head + 1
        items = self.items
        if head >= len(items):
            items.clear()
            head = 0
        elif head >= COMPACT_MIN_CANCELLED and 2 * head > len(items):
            del items[:head]
            head = 0
        self.head = head


class TimerQueue:
    """Timers in virtual time: a lane per delay for :meth:`call_later` (the
    transactions' timers: a handful of fixed delays, so that scheduling one is an
    append and no heap is reordered), and a heap for :meth:`call_at`. Both run in
    one order, by deadline, then by when they were scheduled."""

    __slots__ = ("_heap", "_lane_list", "_seq", "cancelled")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._lane_list: list[_Lane] = []
        self._seq = 0
        self.cancelled = 0
        """Cancelled entries still queued."""

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> TimerHandle:
        """Run ``callback(*args, now)`` at virtual time ``when``."""
        self._seq += 1
        handle = TimerHandle(when, callback, args, self, self._seq)
        heapq.heappush(self._heap, (when, self._seq, handle))
        return handle

    def call_later(
        self, now: float, delay: float, callback: Callable[..., None], *args: Any
    ) -> TimerHandle:
        """Run ``callback(*args, now)`` at ``now + delay``: :meth:`call_at` for a delay
        that recurs, which is cheaper to schedule."""
        when = now + delay
        return self._later(when, delay, TimerHandle(when, callback, args, self))

    def call_later_on(
        self, now: float, delay: float, target: TimerTarget, kind: int
    ) -> TimerHandle:
        """Call ``target.on_timer(kind, now)`` at ``now + delay``, as :meth:`call_later`
        schedules a callback."""
        when = now + delay
        return self._later(when, delay, TimerHandle(when, _on_target, (), self, 0, target, kind))

    def _later(self, when: float, delay: float, handle: TimerHandle) -> TimerHandle:
        """Queue ``handle`` (due at ``when``) in the lane of ``delay``, or in the heap."""
        # The lanes are few: compared as floats in a short list, a delay is found
        # without the float object and hash a dictionary lookup would make.
        lane: _Lane | None = None
        for candidate in self._lane_list:
            if candidate.delay == delay:
                lane = candidate
                break
        self._seq += 1
        handle.seq = self._seq
        if lane is None:
            if len(self._lane_list) >= MAX_LANES:
                heapq.heappush(self._heap, (when, self._seq, handle))
                return handle
            lane = _Lane(delay)
            self._lane_list.append(lane)
        elif when < lane.last:
            # Time went back: out of the lane's order, so into the heap.
            heapq.heappush(self._heap, (when, self._seq, handle))
            return handle
        lane.items.append(handle)
        lane.last = when
        return handle

    def size(self) -> int:
        """Entries queued, cancelled ones included."""
        n = len(self._heap)
        for lane in self._lane_list:
            n += len(lane.items) - lane.head
        return n

    def compact(self) -> None:
        """Drop the cancelled entries (order of the others is kept)."""
        heap = [entry for entry in self._heap if entry[2].callback is not None]
        heapq.heapify(heap)
        self._heap = heap
        for lane in self._lane_list:
            lane.items = [h for h in lane.items[lane.head :] if h.callback is not None]
            lane.head = 0
        self.cancelled = 0

    def _next(self, now: float | None) -> tuple[TimerHandle | None, _Lane | None]:
        """The timer to run next (due at ``now`` when given) and its lane (None: the heap)."""
        heap = self._heap
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)
            self.cancelled -= 1
        best: TimerHandle | None = None
        if heap and (now is None or heap[0][0] <= now):
            best = heap[0][2]
        best_lane: _Lane | None = None
        for lane in self._lane_list:
            handle = lane.first(self)
            if handle is None:
                continue
            when = handle.when
            if now is not None and when > now:
                continue
            if best is None or when < best.when or (when == best.when and handle.seq < best.seq):
                best = handle
                best_lane = lane
        return best, best_lane

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is scheduled."""
        best, _ = self._next(None)
        return best.when if best is not None else None

    def run_due(self, now: float) -> int:
        """Run every timer due at ``now`` in deadline order; return how many ran."""
        ran = 0
        while True:
            handle, lane = self._next(now)
            if handle is None:
                return ran
            if lane is None:
                heapq.heappop(self._heap)
            else:
                lane.pop()
            callback = handle.callback
            if callback is None:
                continue  # not reached: _next returns live timers only
            handle.callback = None
            handle.queue = None
            target = handle.target
            if target is not None:
                handle.target = None
                target.on_timer(handle.kind, now)
            else:
                args = handle.args
                handle.args = ()
                callback(*args, now)
            ran += 1

    def __len__(self) -> int:
        n = sum(1 for _, _, h in self._heap if h.callback is not None)
        for lane in self._lane_list:
            n += sum(1 for h in lane.items[lane.head :] if h.callback is not None)
        return n
