"""The shell counts and logs a message whose handling takes more than 50 ms of CPU.

Parsing is linear, so no message the proxy receives today is slow; the guard is there
for the next one (a bug, or a routing hook that blocks). These tests make the work slow
on purpose: a router that spins on the CPU for a while, or sleeps (wall time that is
not CPU time, which must not count). Real clocks, generous margins: a loaded machine
makes a spin take longer, never shorter.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import Request
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.router import Plan, Reject
from sipdispatch.sip.timers import Timers
from sipdispatch.transport.shell import SLOW_MESSAGE_CPU, SipShell, SlowGuard

SOURCE = Addr("udp", "192.0.2.4", 5060)


def spin(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def handled(guard: SlowGuard, work: float, *, sleep: bool = False) -> bool:
    started = guard.start()
    if sleep:
        time.sleep(work)
    else:
        spin(work)
    return guard.done(started, 100, SOURCE)


def test_the_threshold_is_50_ms_of_cpu() -> None:
    assert SLOW_MESSAGE_CPU == 0.05


def test_a_message_that_spends_more_cpu_than_the_threshold_is_slow() -> None:
    assert handled(SlowGuard(threshold=0.03), 0.04)


def test_a_quick_message_is_not_slow() -> None:
    guard = SlowGuard(threshold=0.03)
    assert not any(handled(guard, 0.0001) for _ in range(50))


def test_waiting_is_not_spending_cpu() -> None:
    # A handler that sleeps (or a thread that waits for a CPU) takes wall time only.
    assert not handled(SlowGuard(threshold=0.03), 0.05, sleep=True)


def test_slow_messages_are_logged_once_per_interval_with_how_many_were_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = SlowGuard(threshold=0.02, log_interval=3600)
    caplog.set_level(logging.WARNING, logger="sipdispatch.transport")
    assert all(handled(guard, 0.025) for _ in range(3))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0].startswith("slow message: ") and "ms of CPU for 100 bytes" in lines[0]
    assert "from 192.0.2.4:5060 (udp)" in lines[0]
    guard.log_interval = 0.0
    assert handled(guard, 0.025)
    assert "; 2 more since the last report" in caplog.records[-1].getMessage()


class SpinningRouter:
    """Spends CPU on every request it routes, then rejects it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def route(self, request: Request, source: Addr, now: float) -> Plan | Reject:
        spin(self.seconds)
        return Reject(404, "Nowhere")

    def in_dialog(self, request: Request, now: float) -> None:
        pass


OPTIONS = (
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/%s 127.0.0.1:9;rport;branch=z9hG4bK-slow-%d\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n"
    b"Call-ID: slow-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


TIMERS = Timers(t1=0.5, t2=4.0, t4=5.0, fr_timer=3.0, fr_inv_timer=10.0)


def make_core(router: SpinningRouter) -> ProxyCore:
    local = {"udp": ("127.0.0.1", 0), "tcp": ("127.0.0.1", 0)}
    return ProxyCore(ProxySettings(local=local), router, TIMERS)


async def _send_over_udp(router: SpinningRouter, count: int) -> tuple[int, int]:
    """Send ``count`` requests to a shell over loopback; (answers, slow_messages)."""
    core = make_core(router)
    shell = SipShell(core, asyncio.get_running_loop())
    host, port = await shell.listen_udp("127.0.0.1", 0)
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.setblocking(False)
    caller.bind(("127.0.0.1", 0))
    answers = 0
    try:
        for i in range(count):
            caller.sendto(OPTIONS % (b"UDP", i, i), (host, port))
        for _ in range(400):  # up to 20 s on a very busy machine
            while True:
                try:
                    caller.recv(65535)
                except BlockingIOError:
                    break
                answers += 1
            if answers == count:
                break
            await asyncio.sleep(0.05)
    finally:
        caller.close()
        await shell.close()
    return answers, shell.stats.slow_messages


def test_the_udp_shell_counts_a_datagram_that_took_more_than_50_ms_of_cpu(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sipdispatch.transport")
    answers, slow = asyncio.run(_send_over_udp(SpinningRouter(0.06), 2))
    assert answers == 2
    assert slow == 2
    assert sum(r.getMessage().startswith("slow message: ") for r in caplog.records) == 1


def test_the_udp_shell_counts_no_quick_datagram() -> None:
    answers, slow = asyncio.run(_send_over_udp(SpinningRouter(0.0), 20))
    assert (answers, slow) == (20, 0)


async def _send_over_tcp(router: SpinningRouter, count: int) -> tuple[int, int]:
    """Send ``count`` requests over one TCP connection; (answers, slow_messages)."""
    core = make_core(router)
    shell = SipShell(core, asyncio.get_running_loop())
    host, port = await shell.listen_tcp("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(host, port)
    answers = 0
    try:
        for i in range(count):
            # The next request only after the answer: one segment, one data_received each.
            writer.write(OPTIONS % (b"TCP", i, i))
            await writer.drain()
            while not (await asyncio.wait_for(reader.readline(), 20)).startswith(b"SIP/2.0 "):
                pass
            answers += 1
    finally:
        writer.close()
        await shell.close()
    return answers, shell.stats.slow_messages


def test_the_tcp_shell_counts_a_segment_that_took_more_than_50_ms_of_cpu() -> None:
    answers, slow = asyncio.run(_send_over_tcp(SpinningRouter(0.06), 2))
    assert (answers, slow) == (2, 2)
