"""The asyncio shell's timer pump: the core's deadlines run on a coarse grid.

A real ProxyCore with no traffic: the test puts its own timers in the core's timer
queue, each recording when it ran, so it sees exactly when the shell woke the core
(a wake-up is one distinct loop time at which timers ran). Real loop time, generous
bounds: a loaded machine can only make wake-ups later and fewer, never earlier or
more.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.timers import Timers
from sipdispatch.transport.shell import TIMER_RESOLUTION, SipShell

TIMERS = Timers(t1=0.5, t2=4.0, t4=5.0, fr_timer=3.0, fr_inv_timer=10.0)


class NoRouter:
    """The core is given no request, so it never asks for a route."""


@dataclass
class Ran:
    ran: list[tuple[float, float]] = field(default_factory=list)  # (deadline, when it ran)

    @property
    def wakeups(self) -> list[float]:
        return sorted({now for _, now in self.ran})


async def _run_deadlines(offsets_ms: list[float]) -> Ran:
    loop = asyncio.get_running_loop()
    core = ProxyCore(ProxySettings(local={}), NoRouter(), TIMERS)  # type: ignore[arg-type]
    shell = SipShell(core, loop)
    out = Ran()

    def fire(deadline: float, now: float) -> None:
        out.ran.append((deadline, now))

    base = loop.time() + 0.05
    for ms in offsets_ms:
        core.call_at(base + ms / 1000, fire, base + ms / 1000)
        shell.flush()  # as after every datagram: arm for the earliest deadline
    for _ in range(400):  # up to 20 s on a very busy machine
        if len(out.ran) == len(offsets_ms):
            break
        await asyncio.sleep(0.05)
    await shell.close()
    return out


def test_timers_due_within_one_slot_run_in_one_wake_up() -> None:
    # 60 deadlines 0.5 ms apart span 30 ms: three 10 ms slots, so a handful of
    # wake-ups rather than one per deadline.
    timers = asyncio.run(_run_deadlines([i * 0.5 for i in range(60)]))
    assert len(timers.ran) == 60
    assert len(timers.wakeups) <= 8, timers.wakeups
    assert TIMER_RESOLUTION == 0.01


def test_no_timer_runs_before_its_deadline() -> None:
    timers = asyncio.run(_run_deadlines([0.0, 3.3, 17.0, 17.1, 42.0, 250.0]))
    assert len(timers.ran) == 6
    for deadline, ran in timers.ran:
        assert ran >= deadline
        # At most one slot late, plus what a loaded machine adds (generous).
        assert ran - deadline < TIMER_RESOLUTION + 2.0
