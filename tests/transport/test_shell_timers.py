"""The asyncio shell's timer pump: the core's deadlines run on a coarse grid.

A fake core stands in for ProxyCore (the shell only calls next_deadline,
handle_timer and reads outbox), so the test sees exactly when the shell wakes it.
Real loop time, generous bounds: a loaded machine can only make wake-ups later
and fewer, never earlier or more.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

from sipdispatch.transport.shell import TIMER_RESOLUTION, SipShell


class FakeCore:
    def __init__(self) -> None:
        self.outbox: list[Any] = []
        self.deadlines: list[float] = []
        self.wakeups: list[float] = []
        self.ran: list[tuple[float, float]] = []  # (deadline, when it ran)

    def next_deadline(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def handle_timer(self, now: float) -> None:
        self.wakeups.append(now)
        while self.deadlines and self.deadlines[0] <= now:
            self.ran.append((heapq.heappop(self.deadlines), now))


async def _run_deadlines(offsets_ms: list[float]) -> FakeCore:
    loop = asyncio.get_running_loop()
    core = FakeCore()
    shell = SipShell(core, loop)  # type: ignore[arg-type]
    base = loop.time() + 0.05
    for ms in offsets_ms:
        heapq.heappush(core.deadlines, base + ms / 1000)
        shell.flush()  # as after every datagram: arm for the earliest deadline
    for _ in range(400):  # up to 20 s on a very busy machine
        if not core.deadlines:
            break
        await asyncio.sleep(0.05)
    await shell.close()
    return core


def test_timers_due_within_one_slot_run_in_one_wake_up() -> None:
    # 60 deadlines 0.5 ms apart span 30 ms: three 10 ms slots, so a handful of
    # wake-ups rather than one per deadline.
    core = asyncio.run(_run_deadlines([i * 0.5 for i in range(60)]))
    assert len(core.ran) == 60
    assert len(core.wakeups) <= 8, core.wakeups
    assert TIMER_RESOLUTION == 0.01


def test_no_timer_runs_before_its_deadline() -> None:
    core = asyncio.run(_run_deadlines([0.0, 3.3, 17.0, 17.1, 42.0, 250.0]))
    assert len(core.ran) == 6
    for deadline, ran in core.ran:
        assert ran >= deadline
        # At most one slot late, plus what a loaded machine adds (generous).
        assert ran - deadline < TIMER_RESOLUTION + 2.0
