"""The asyncio shell's timer pump: the core's deadlines run on a coarse grid.

A real ProxyCore with no traffic: the test puts its own timers in the core's timer
queue, each recording when it ran, so it sees exactly when the shell woke the core
(a wake-up is one distinct loop time at which timers ran). Real loop time, generous
bounds: a loaded machine can only make wake-ups later and fewer, never earlier or
more.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field

import uvloop

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


def _response(i: int) -> bytes:
    """A 200 that matches no transaction (the core counts it and drops it)."""
    return (
        "SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKlate{i}\r\n"
        "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\n"
        f"Call-ID: late-{i}@example.com\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def _timer_after_a_stall(responses: int) -> list[int]:
    """A timer falls due while the loop is stalled and ``responses`` wait in the
    socket: how many the core had received when the timer ran."""
    loop = asyncio.get_running_loop()
    core = ProxyCore(ProxySettings(local={"udp": ("127.0.0.1", 0)}), NoRouter(), TIMERS)  # type: ignore[arg-type]
    shell = SipShell(core, loop)
    host, port = await shell.listen_udp("127.0.0.1", 0)
    seen: list[int] = []

    def fire(now: float) -> None:
        seen.append(core.stats.rx_replies)

    def stall() -> None:
        core.call_at(loop.time() + 0.05, fire)
        shell.flush()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            for i in range(responses):
                peer.sendto(_response(i), (host, port))
        time.sleep(0.3)  # the loop stalls past the timer's deadline

    loop.call_soon(stall)
    for _ in range(400):  # up to 20 s on a very busy machine
        if seen:
            break
        await asyncio.sleep(0.05)
    await shell.close()
    return seen


def test_after_a_stall_the_waiting_responses_are_read_before_late_timers_run() -> None:
    # uvloop runs the due timers of a loop turn before it polls the sockets, and reads
    # at most 32 datagrams a socket per poll: without putting the late timer off, it
    # would run with only the first few of the 100 responses read.
    seen = uvloop.run(_timer_after_a_stall(100))
    assert seen == [100]
