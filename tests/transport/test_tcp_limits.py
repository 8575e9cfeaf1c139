"""TCP connections are capped, per source and in all, and closed when they idle or
trickle: a peer cannot hold the proxy's connections (or its file descriptors).

A real SipShell on loopback with small limits; real clocks with generous margins
(closing can only be late on a busy machine, never early), polling, no fixed sleeps
as synchronisation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import Request
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.router import Plan, Reject, StaticPlan, Target
from sipdispatch.sip.timers import Timers
from sipdispatch.transport.shell import SipShell, TcpLimits

TIMERS = Timers(t1=0.5, t2=4.0, t4=5.0, fr_timer=3.0, fr_inv_timer=10.0)


class Rejecting:
    def route(self, request: Request, source: Addr, now: float) -> Plan | Reject:
        return Reject(404, "Nowhere")

    def in_dialog(self, request: Request, now: float) -> None:
        pass


def options(i: int) -> bytes:
    return (
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-tcp-{i}\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n"
        f"Call-ID: tcp-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def with_shell(
    limits: TcpLimits, test: Callable[[SipShell, int], Awaitable[None]]
) -> SipShell:
    core = ProxyCore(ProxySettings(local={"tcp": ("127.0.0.1", 0)}), Rejecting(), TIMERS)
    shell = SipShell(core, asyncio.get_running_loop(), limits)
    _, port = await shell.listen_tcp("127.0.0.1", 0)
    try:
        await test(shell, port)
    finally:
        await shell.close()
    return shell


async def until(predicate: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def closed_by_peer(reader: asyncio.StreamReader, seconds: float = 20.0) -> bool:
    try:
        while await asyncio.wait_for(reader.read(4096), seconds):
            pass
    except (TimeoutError, ConnectionError):
        return False
    return True


def test_connections_over_the_per_source_limit_are_closed_at_once() -> None:
    async def test(shell: SipShell, port: int) -> None:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        assert await until(lambda: shell.stats.tcp_refused_per_source == 2)
        assert shell.stats.tcp_connections == 3
        # The refused ones see the connection closed; the others still answer.
        closed = [await closed_by_peer(r, 0.5) for r, _ in conns[3:]]
        assert closed == [True, True]
        reader, writer = conns[0]
        writer.write(options(1))
        assert (await asyncio.wait_for(reader.readline(), 20)).startswith(b"SIP/2.0 404")
        for _, w in conns:
            w.close()

    asyncio.run(with_shell(TcpLimits(max_per_source=3), test))


def test_connections_over_the_total_limit_are_closed_at_once() -> None:
    async def test(shell: SipShell, port: int) -> None:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        assert await until(lambda: shell.stats.tcp_refused_total == 1)
        assert shell.stats.tcp_connections == 3 and shell.max_accepted == 3
        for _, w in conns:
            w.close()
        # Closing makes room again.
        assert await until(lambda: shell.stats.tcp_connections == 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(options(2))
        assert (await asyncio.wait_for(reader.readline(), 20)).startswith(b"SIP/2.0 404")
        writer.close()

    asyncio.run(with_shell(TcpLimits(max_connections=3), test))


def test_a_connection_that_sends_nothing_or_trickles_is_closed_after_the_message_timeout() -> None:
    async def test(shell: SipShell, port: int) -> None:
        started = time.monotonic()
        silent_reader, _silent = await asyncio.open_connection("127.0.0.1", port)
        trickle_reader, trickle = await asyncio.open_connection("127.0.0.1", port)
        data = options(3)
        for i in range(40):  # one byte every 50 ms: never a whole message in 0.5 s
            if trickle.is_closing() or trickle_reader.at_eof():
                break
            trickle.write(data[i : i + 1])
            await asyncio.sleep(0.05)
        assert await closed_by_peer(silent_reader)
        assert await closed_by_peer(trickle_reader)
        assert time.monotonic() - started >= 0.5  # not before the timeout
        assert shell.stats.tcp_closed_incomplete == 2

    asyncio.run(with_shell(TcpLimits(message_timeout=0.5), test))


def test_an_idle_connection_is_closed_unless_a_call_was_answered_over_it() -> None:
    class Answering:
        def route(self, request: Request, source: Addr, now: float) -> Plan | Reject:
            return StaticPlan([Target(Addr("udp", "127.0.0.1", 9))])

        def in_dialog(self, request: Request, now: float) -> None:
            pass

    async def test(shell: SipShell, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(options(4))
        assert (await asyncio.wait_for(reader.readline(), 20)).startswith(b"SIP/2.0 404")
        started = time.monotonic()
        assert await closed_by_peer(reader)
        assert time.monotonic() - started >= 0.5
        assert shell.stats.tcp_closed_idle == 1
        # A connection a 2xx to an INVITE went over stays.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await until(lambda: shell.stats.tcp_connections == 1)
        [conn] = shell.conns.values()
        conn.write(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-d\r\n"
            b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        await asyncio.sleep(2.0)  # four idle timeouts: it must still be open
        assert not reader.at_eof() and shell.stats.tcp_connections == 1
        writer.close()

    shell_limits = TcpLimits(idle_timeout=0.5, dialog_idle_timeout=3600.0)
    asyncio.run(with_shell(shell_limits, test))


def test_the_file_limit_keeps_descriptors_free_of_accepted_connections() -> None:
    import resource

    from sipdispatch.transport.shell import FD_RESERVE

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def test(shell: SipShell, port: int) -> None:
        assert shell.max_accepted <= max(soft - FD_RESERVE, 16)

    asyncio.run(with_shell(TcpLimits(max_connections=10**9), test))
