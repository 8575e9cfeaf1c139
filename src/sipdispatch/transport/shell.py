"""The asyncio shell around :class:`~sipdispatch.sip.proxy.ProxyCore`.

It owns the sockets and the clock and does nothing clever: every datagram or
framed stream message goes to the core with ``loop.time()``, then the core's
outbox is written out and one ``call_at`` is kept armed for the core's next
deadline. Every UDP datagram leaves from the listening socket; TCP and TLS
destinations are reached over a pooled connection, reused for both directions (RFC 3261
§18). A TLS destination is only ever reached over TLS: without ``[tls]`` its messages
fail.

One of several worker processes (``[server] workers``) hands what it receives to the
worker that owns its Call-ID (:mod:`sipdispatch.transport.handoff`), and takes over
what the others hand it as if it had received it itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import math
import os
import resource
import socket
import ssl
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, cast

from sipdispatch.sip.addr import Addr, is_forbidden_ip
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.memo import remember
from sipdispatch.sip.message import (
    Request,
    Response,
    StreamParser,
    is_keepalive,
    parse_datagram,
)
from sipdispatch.sip.proxy import ProxyCore
from sipdispatch.transport.capture import Tap
from sipdispatch.transport.guard import ADMIT, REJECT, SourceGuard
from sipdispatch.transport.handoff import MESSAGE, WRITE, Handoff, frame
from sipdispatch.transport.tls import TlsContexts

log: Final = logging.getLogger("sipdispatch.transport")

DNS_CACHE_SECONDS: Final = 60.0
"""How long a resolved host name is reused."""
TCP_CONNECT_TIMEOUT: Final = 10.0
"""Seconds to wait for an outgoing TCP connection before failing its messages."""
TCP_SWEEP_INTERVAL: Final = 1.0
"""Seconds between two looks for TCP connections to close (see ``TcpLimits``)."""
FD_RESERVE: Final = 128
"""File descriptors kept free of accepted SIP connections: the admin listener, the
database, DNS and the connections the proxy opens to its destinations still get
theirs when a flood of connections fills the rest."""
TCP_MAX_BUFFERED: Final = 1 << 20
"""A peer whose unsent output exceeds this many bytes is disconnected."""
TLS_BACKLOG: Final = 1024
"""Pending connections the kernel queues on a ``tls:`` listener (and on any listener
the supervisor of several workers binds)."""
TLS_ACCEPTS_PER_WAKEUP: Final = 64
"""Connections a ``tls:`` listener accepts per wake-up of the event loop, so that a
burst of them cannot hold the loop."""
TIMER_RESOLUTION: Final = 0.01
"""Seconds: the core's timers run on a 10 ms grid (a deadline is rounded up to it), so
one wake-up runs every timer of its slot. SIP timers are 500 ms and more; at 500
calls/s the transactions' timers would otherwise wake the process thousands of times
a second, one timer each (Kamailio's transaction timers tick at a coarser grid)."""
LATE_TIMER: Final = 0.02
"""A wake-up this late (seconds) means the loop stalled: the responses waiting in the
sockets are read before the timers run (see :meth:`SipShell._on_timer`)."""
LATE_READ_MAX: Final = 0.25
"""Longest time (seconds) the timers of a stalled loop wait for that reading."""


SLOW_MESSAGE_CPU = 0.05
"""Seconds of CPU: a received datagram or TCP segment whose handling takes more is
logged and counted (``ShellStats.slow_messages``). Handling is linear in the message's size and
a 64 KiB message takes a few milliseconds; one that takes this long held every other
message, ping and RPC waiting, and the operator should hear of it."""
SLOW_MESSAGE_LOG_INTERVAL = 10.0
"""Seconds: at most one log line per interval about slow messages (the count has all)."""
CPU_MARK_INTERVAL: Final = 0.01
"""Seconds of wall time between two readings of the thread's CPU clock (see SlowGuard)."""


class SlowGuard:
    """Finds the messages whose handling took more than ``threshold`` of CPU, and logs
    them (one line per ``log_interval`` at most, with how many it did not log).

    Reading the thread's CPU clock is a system call (about half a microsecond), too
    dear twice per message; the monotonic clock is not. So each message is timed on
    the monotonic clock, and the CPU clock is read at the start of a message only when
    ``CPU_MARK_INTERVAL`` has passed since the last reading (at most 100 times a
    second). A message whose wall time passes the threshold -- the only kind whose CPU
    time can -- then has its CPU time measured from that last reading, which is at most
    ``CPU_MARK_INTERVAL`` of wall time before it started: never less than what the
    message took, and at most that interval more.
    """

    __slots__ = ("_cpu_mark", "_last_log", "_unlogged", "_wall_mark", "log_interval", "threshold")

    def __init__(
        self, threshold: float = SLOW_MESSAGE_CPU, log_interval: float = SLOW_MESSAGE_LOG_INTERVAL
    ) -> None:
        self.threshold = threshold
        """Seconds of CPU that make a message slow."""
        self.log_interval = log_interval
        """Seconds between two log lines at most."""
        self._wall_mark = -math.inf
        self._cpu_mark = 0.0
        self._last_log = -math.inf
        self._unlogged = 0

    def start(self) -> float:
        """Call before handling a message; pass what it returns to :meth:`done`."""
        now = time.perf_counter()
        if now - self._wall_mark >= CPU_MARK_INTERVAL:
            self._wall_mark = now
            self._cpu_mark = time.thread_time()
        return now

    def done(self, started: float, size: int, source: Addr) -> bool:
        """Call after handling a message of ``size`` bytes from ``source``; True if slow."""
        now = time.perf_counter()
        if now - started < self.threshold:
            return False
        cpu = time.thread_time() - self._cpu_mark
        self._wall_mark = -math.inf  # the next message reads the CPU clock afresh
        if cpu < self.threshold:
            return False  # the thread waited for a CPU (or slept); it did not spend it
        if now - self._last_log < self.log_interval:
            self._unlogged += 1
            return True
        more = f"; {self._unlogged} more since the last report" if self._unlogged else ""
        log.warning(
            "slow message: %d ms of CPU for %d bytes from %s:%s (%s)%s",
            round(cpu * 1000), size, source.host, source.port, source.transport, more,
        )  # fmt: skip
        self._last_log = now
        self._unlogged = 0
        return True


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """How many TCP connections are accepted, and how long they may stay."""

    max_connections: int = 4096
    """Accepted connections at once, all sources together (also kept under the file
    limit less ``FD_RESERVE``). Connections the proxy opens to its destinations are
    not counted: they are never refused."""
    max_per_source: int = 64
    """Accepted connections at once from one IP address."""
    message_timeout: float = 10.0
    """Seconds an accepted connection has to complete its first message, and any
    connection to complete a message once its first byte came (slow senders)."""
    idle_timeout: float = 120.0
    """Seconds with no traffic either way after which a connection is closed
    (Kamailio's ``tcp_connection_lifetime``)."""
    dialog_idle_timeout: float = 3600.0
    """The same for a connection over which a call was answered (a 2xx to an INVITE
    went either way): its in-dialog requests may come much later."""


class ShellStats:
    """What the shell counts (the core counts the rest)."""

    __slots__ = (
        "refused_destinations",
        "slow_messages",
        "tcp_closed_idle",
        "tcp_closed_incomplete",
        "tcp_connections",
        "tcp_refused_per_source",
        "tcp_refused_total",
        "tls_failures",
        "tls_handshakes_failed",
        "tls_unconfigured",
        "udp_errors",
    )

    def __init__(self) -> None:
        self.tcp_connections = 0
        """TCP connections open now (accepted and opened)."""
        self.tcp_refused_total = 0
        """Connections refused: ``max_connections`` accepted already."""
        self.tcp_refused_per_source = 0
        """Connections refused: ``max_per_source`` from that IP already."""
        self.tcp_closed_idle = 0
        """Connections closed after ``idle_timeout`` (or ``dialog_idle_timeout``)."""
        self.tcp_closed_incomplete = 0
        """Connections closed because a message was not completed in ``message_timeout``."""
        self.refused_destinations = 0
        """Messages not sent: their destination was a broadcast, multicast or
        unspecified address (see ``address_kind``)."""
        self.udp_errors = 0
        """ICMP errors reported on the UDP sockets."""
        self.slow_messages = 0
        """Received datagrams or TCP segments whose handling took more than
        ``SLOW_MESSAGE_CPU`` of CPU."""
        self.tls_failures = 0
        """TLS connections to destinations whose handshake failed (a certificate that
        does not verify or does not name the destination, a version refused...)."""
        self.tls_unconfigured = 0
        """Messages to TLS destinations not sent because there is no ``[tls]``."""
        self.tls_handshakes_failed = 0
        """Accepted TLS connections closed before their handshake completed (a failed
        handshake, or none within ``TcpLimits.message_timeout``)."""


REFUSAL_LOG_INTERVAL: Final = 10.0
"""Seconds: at most one log line per interval about refused TCP connections."""


def _descriptors_for_connections() -> int:
    """How many accepted connections the file limit leaves room for (the soft limit
    raised to the hard one first, as servers do), less ``FD_RESERVE``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(soft - FD_RESERVE, 16)


NAME, USABLE_IP, FORBIDDEN_IP = 0, 1, 2
"""What a destination host is: a name to resolve, an IP address to send to, or an IP
address nothing is ever sent to."""
_kinds: Final[dict[str, int]] = {}


def address_kind(host: str) -> int:
    """``NAME``, ``USABLE_IP`` or ``FORBIDDEN_IP`` (memoised: this runs per send).

    Forbidden: broadcast (255.255.255.255), multicast and unspecified (0.0.0.0, ::)
    addresses. A Via, a Route, a Request-URI or a DNS answer naming one is a peer's
    attempt to make the proxy flood a network (RFC 4475 §3.1.2.6's ``bcast``): the
    message is not sent.
    """
    kind = _kinds.get(host)
    if kind is None:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            kind = NAME
        else:
            kind = FORBIDDEN_IP if is_forbidden_ip(host) else USABLE_IP
        remember(_kinds, host, kind)
    return kind


def listening_socket(host: str, port: int, kind: int, reuse_port: bool) -> socket.socket:
    """A socket bound to ``host:port`` (``kind``: ``SOCK_DGRAM`` or ``SOCK_STREAM``, the
    latter listening), with ``SO_REUSEPORT`` when several workers share the port.
    Raises OSError."""
    info = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = info[0]
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # workers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        if kind == socket.SOCK_STREAM:
            sock.listen(TLS_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


IP_RECVERR: Final = 11
IPV6_RECVERR: Final = 25
"""Linux: queue the ICMP errors of an unconnected UDP socket's datagrams, each with the
datagram's destination and its start (ip(7), ipv6(7))."""
UNREACHABLE: Final = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH))
"""The errors of a destination that cannot be reached: ICMP port, host or network
unreachable."""
ERRORS_PER_READ: Final = 64
"""Queued errors read at most per wake-up."""
_extended_err: Final = struct.Struct("=IBBBBII")
"""``struct sock_extended_err``: errno, origin, ICMP type, code, pad, info, data."""


def receive_errors(sock: socket.socket) -> bool:
    """Ask the kernel to queue ``sock``'s ICMP errors (Linux); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    v6 = sock.family == socket.AF_INET6
    try:
        sock.setsockopt(
            socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP, IPV6_RECVERR if v6 else IP_RECVERR, 1
        )
    except OSError:
        return False
    return True


class UdpProtocol(asyncio.DatagramProtocol):
    """One UDP listening socket."""

    def __init__(self, shell: SipShell) -> None:
        self.shell = shell
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        """The address the socket is bound to (what a capture names as ours)."""
        self.sock: socket.socket | None = None
        """The socket itself (a duplicate of the transport's descriptor): datagrams are
        sent on it directly, and its queued ICMP errors are read from it."""
        self.errors_queued = False
        """The kernel queues this socket's ICMP errors (``IP_RECVERR``)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        dgram = cast(asyncio.DatagramTransport, transport)
        self.transport = dgram
        bound = transport.get_extra_info("sockname")
        self.local = (bound[0], bound[1])
        shell = self.shell
        inner = transport.get_extra_info("socket")
        family = inner.family
        sock = socket.socket(family, socket.SOCK_DGRAM, fileno=os.dup(inner.fileno()))
        sock.setblocking(False)
        self.sock = sock
        if shell.icmp_failover:
            self.errors_queued = receive_errors(sock)
        # Known to the shell at once: datagrams waiting on a worker's inherited socket
        # are read (and answered) before the listener's set-up returns.
        shell.udp_sock.setdefault(family, self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sock is not None:
            self.sock.close()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        shell = self.shell
        guard = shell.slow
        started = guard.start()
        src = Addr("udp", addr[0], addr[1])
        tap = shell.tap
        sources = shell.sources
        if sources is not None and not data.startswith(b"SIP/") and not is_keepalive(data):
            # A request (or garbage): the source ACL and the flood limit first.
            verdict = sources.check_request(src.host, shell.loop.time())
            if verdict != ADMIT:
                if tap is not None:
                    tap.copy("udp", (src.host, src.port), self.local, data, time.time())
                if verdict == REJECT:
                    shell.core.refuse(data, src, shell.loop.time())
                    shell.flush()
                return
        handoff = shell.handoff
        if handoff is not None:
            owner = handoff.owner(data)
            if owner != handoff.index:
                handoff.send(owner, frame(MESSAGE, src, data))
                return  # copied by its owner
        if tap is not None:
            tap.copy("udp", (src.host, src.port), self.local, data, time.time())
        shell.core.receive(data, src, shell.loop.time())
        shell.flush()
        if guard.done(started, len(data), src):
            shell.stats.slow_messages += 1

    def error_received(self, exc: Exception) -> None:
        # An ICMP error of a datagram sent earlier. Where the kernel queues them, each
        # names the datagram (its destination and start): the branch that sent it fails
        # at once. Elsewhere the transaction timers deal with the silence.
        if not self.read_errors(True):
            self.shell.stats.udp_errors += 1

    def read_errors(self, flush: bool) -> int:
        """Read the queued ICMP errors (at most :data:`ERRORS_PER_READ`) and tell the
        core of each unreachable destination, then send what that started when
        ``flush``; the number read."""
        sock = self.sock
        if sock is None or not self.errors_queued:
            return 0
        shell = self.shell
        core = shell.core
        read = 0
        failed = False
        while read < ERRORS_PER_READ:
            try:
                data, ancillary, _flags, addr = sock.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
            except OSError:  # the queue is empty (EAGAIN), or the socket closed
                break
            read += 1
            shell.stats.udp_errors += 1
            for level, kind, value in ancillary:
                if kind not in (IP_RECVERR, IPV6_RECVERR) or len(value) < _extended_err.size:
                    continue
                if level not in (socket.IPPROTO_IP, socket.IPPROTO_IPV6):
                    continue
                if _extended_err.unpack_from(value)[0] in UNREACHABLE and addr:
                    dst = Addr("udp", addr[0], addr[1])
                    if core.unreachable(dst, data, shell.loop.time()):
                        failed = True
        if failed and flush:
            shell.flush()  # the next destination's INVITE
        return read


def _answers_invite(response: Response) -> bool:
    try:
        return response.cseq[1] == "INVITE"
    except ParseError:
        return False


class TcpConnection(asyncio.Protocol):
    """One TCP or TLS connection, accepted or opened by us."""

    def __init__(self, shell: SipShell, conn_id: int, accepted: bool, proto: str = "tcp") -> None:
        self.shell = shell
        self.conn_id = conn_id
        self.accepted = accepted
        self.proto = proto
        """``tcp`` or ``tls``: the transport of the messages it carries."""
        """Accepted from a peer (else opened by the proxy to a destination)."""
        self.parser = StreamParser(shell.core.settings.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        now = shell.loop.time()
        self.last_activity = now
        self.waiting_since: float | None = now if accepted else None
        """Since when a message is being waited for: the first one of an accepted
        connection, or one whose first bytes came; None when none is pending."""
        self.dialog = False
        """A call was answered over it (a 2xx to an INVITE went either way)."""
        self.counted = False
        """Counted against the connection limits (an accepted connection, from the
        moment it is admitted: for TLS, before its handshake)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        bound = transport.get_extra_info("sockname")
        self.local = (bound[0], bound[1])
        if self.accepted and not self.counted and not self.shell.admit(self):
            self.transport = None
            cast(asyncio.Transport, transport).abort()
            return
        self.shell.register(self)

    def data_received(self, data: bytes) -> None:
        shell = self.shell
        guard = shell.slow
        started = guard.start()
        self._received(data)
        if guard.done(started, len(data), Addr(self.proto, self.peer[0], self.peer[1])):
            shell.stats.slow_messages += 1

    def _received(self, data: bytes) -> None:
        shell = self.shell
        core = shell.core
        now = shell.loop.time()
        self.last_activity = now
        src = Addr(self.proto, self.peer[0], self.peer[1], self.conn_id)
        pings = self.parser.pings
        try:
            items = self.parser.feed(data)
        except ParseError as e:
            core.bad_message(e, src, now)
            shell.flush()
            log.info("closing TCP connection from %s:%s: %s", *self.peer, e.reason)
            if self.transport is not None:
                self.transport.close()
            return
        if self.parser.pings != pings and self.transport is not None:
            self.transport.write(b"\r\n")  # RFC 5626 §3.5.1: pong
        if items:
            self.waiting_since = now if self.parser.buffered else None
        elif self.parser.buffered and self.waiting_since is None:
            self.waiting_since = now
        sources = shell.sources
        handoff = shell.handoff
        tap = shell.tap
        for item in items:
            if isinstance(item, ParseError):
                core.bad_message(item, src, now)
                continue
            if (
                isinstance(item, Request)
                and sources is not None
                and (verdict := sources.check_request(src.host, now)) != ADMIT
            ):
                if tap is not None:
                    tap.copy(self.proto, self.peer, self.local, item.to_bytes(), time.time())
                if verdict == REJECT:
                    core.refuse(item, src, now)
            else:
                if isinstance(item, Response) and 200 <= item.status < 300:
                    self.dialog = self.dialog or _answers_invite(item)
                if handoff is not None:
                    owner = handoff.owner_of_call(item.call_id)
                    if owner != handoff.index:
                        handoff.send(owner, frame(MESSAGE, src, item.to_bytes()))
                        continue  # copied by its owner
                if tap is not None:
                    tap.copy(self.proto, self.peer, self.local, item.to_bytes(), time.time())
                core.receive_message(item, src, now)
        shell.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.shell.unregister(self)

    def write(self, data: bytes) -> bool:
        t = self.transport
        if t is None or t.is_closing():
            return False
        if t.get_write_buffer_size() > TCP_MAX_BUFFERED:
            log.warning("TCP peer %s:%s does not read; disconnecting", *self.peer)
            t.abort()
            return False
        t.write(data)
        tap = self.shell.tap
        if tap is not None:
            tap.copy(self.proto, self.local, self.peer, data, time.time())
        self.last_activity = self.shell.loop.time()
        if not self.dialog and data.startswith(b"SIP/2.0 2") and b" INVITE\r\n" in data:
            self.dialog = True  # a 2xx to an INVITE: a call goes on over this connection
        return True


class SipShell:
    """Sockets, clock and DNS for one ProxyCore."""

    def __init__(
        self,
        core: ProxyCore,
        loop: asyncio.AbstractEventLoop | None = None,
        limits: TcpLimits | None = None,
        sources: SourceGuard | None = None,
        tls: TlsContexts | None = None,
        reuse_port: bool = False,
        icmp_failover: bool = True,
    ) -> None:
        self.core = core
        self.reuse_port = reuse_port
        """Bind the listeners with ``SO_REUSEPORT``: worker processes share them, the
        kernel spreading the sources over the workers."""
        self.tls = tls
        """TLS contexts, when the configuration has ``[tls]``."""
        self.sources = sources
        """The source ACL and flood limit, when ``[security]`` sets any."""
        self.limits = limits or TcpLimits()
        self.max_accepted = min(self.limits.max_connections, _descriptors_for_connections())
        """Accepted connections allowed at once (the file limit may lower the setting)."""
        self._per_source: dict[str, int] = {}
        self._accepted = 0
        self.loop = loop or asyncio.get_running_loop()
        self.udp_sock: dict[int, UdpProtocol] = {}
        """The listener each family sends from (its address is what a capture names as
        ours), by address family."""
        self.icmp_failover = icmp_failover
        """Read the UDP sockets' ICMP errors: a request whose destination answers with
        ICMP unreachable fails at once (where the platform queues them: Linux)."""
        self._udp_backlog = False
        """A datagram waits in a transport's buffer (the socket was full): the next ones
        queue behind it, keeping their order."""
        self.tap: Tap | None = None
        """A copy of every message received and sent goes here when set: HEPv3 to a
        collector, pcap captures, the ladder of failed calls
        (:class:`~sipdispatch.transport.capture.Capture`)."""
        self.handoff: Handoff | None = None
        """One worker of several: the messages of other workers' Call-IDs go to them."""
        self.servers: list[asyncio.Server] = []
        self._tls_listeners: list[socket.socket] = []
        self.conns: dict[int, TcpConnection] = {}
        self.conn_by_peer: dict[tuple[str, str, int], TcpConnection] = {}
        """By (transport, IP, port) of the peer."""
        self._next_conn = 0
        self._connecting: dict[tuple[str, str, int], deque[tuple[bytes, Any]]] = {}
        self._resolving: dict[str, deque[tuple[Addr, bytes, Any]]] = {}
        self._dns: dict[str, tuple[str, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._late_since: float | None = None
        """When a late wake-up was first put off to read the sockets, or None."""
        self._late_replies = 0
        """The core's count of responses received at the last put-off."""
        self._idle_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_refusal_log = -math.inf
        self._last_tls_log = -math.inf
        self.slow = SlowGuard()
        """Times every received message; the slow ones are counted in ``stats``."""
        self.stats = ShellStats()

    # -- listeners -----------------------------------------------------------------

    async def listen_udp(
        self, host: str, port: int, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Bind a UDP socket (or take ``sock``, bound already: a worker's share of the
        listener); return the bound address."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport = await self._udp_socket(host, port, family, self.reuse_port, sock)
        bound = transport.get_extra_info("sockname")
        return bound[0], bound[1]

    async def _udp_socket(
        self, host: str, port: int, family: int, reuse_port: bool, sock: socket.socket | None
    ) -> asyncio.DatagramTransport:
        if sock is not None:
            transport, _ = await self.loop.create_datagram_endpoint(
                lambda: UdpProtocol(self), sock=sock
            )
        else:
            transport, _ = await self.loop.create_datagram_endpoint(
                lambda: UdpProtocol(self),
                local_addr=(host, port),
                family=family,
                reuse_port=reuse_port,
            )
        sock = transport.get_extra_info("socket")
        # Large buffers absorb bursts (Kamailio raises them as well).
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        return transport

    async def listen_tcp(
        self, host: str, port: int, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Start a TCP listener (on ``sock`` when given: listening already); return the
        bound address."""
        if sock is not None:
            server = await self.loop.create_server(
                lambda: TcpConnection(self, self._new_conn_id(), True), sock=sock
            )
        else:
            server = await self.loop.create_server(
                lambda: TcpConnection(self, self._new_conn_id(), True),
                host,
                port,
                reuse_address=True,
                reuse_port=self.reuse_port,
            )
        return self._serving(server)

    async def listen_tls(
        self, host: str, port: int, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Start a TLS listener (needs ``tls.server``; on ``sock`` when given: listening
        already); return the bound address. A handshake has
        ``TcpLimits.message_timeout`` to complete."""
        if self.tls is None or self.tls.server is None:
            raise ValueError("a tls: listener needs [tls] certificate")
        # The listening socket is ours: each connection is admitted (and counted)
        # against the connection limits when it is accepted, before its handshake, so
        # that connections that never finish one cannot hold descriptors beyond them.
        if sock is not None:
            lsock = sock
            lsock.setblocking(False)
        else:
            lsock = listening_socket(host, port, socket.SOCK_STREAM, self.reuse_port)
        self._tls_listeners.append(lsock)
        self.loop.add_reader(lsock.fileno(), self._accept_tls, lsock)
        self._start_sweep()
        bound = lsock.getsockname()
        return bound[0], bound[1]

    def _accept_tls(self, lsock: socket.socket) -> None:
        """Accept what is waiting on a ``tls:`` listener; admit each connection, then
        start its handshake (``TcpLimits.message_timeout`` to complete)."""
        for _ in range(TLS_ACCEPTS_PER_WAKEUP):
            try:
                sock, peer = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of descriptors: stop accepting for a moment
                log.warning("cannot accept TLS connections: %s", e)
                self.loop.remove_reader(lsock.fileno())
                self.loop.call_later(1.0, self._resume_tls_accept, lsock)
                return
            conn = TcpConnection(self, self._new_conn_id(), True, "tls")
            conn.peer = (peer[0], peer[1])
            if not self.admit(conn):
                sock.close()
                continue
            self.count_in(conn)
            self._spawn(self._tls_handshake(sock, conn))

    def _resume_tls_accept(self, lsock: socket.socket) -> None:
        if lsock in self._tls_listeners:
            self.loop.add_reader(lsock.fileno(), self._accept_tls, lsock)

    async def _tls_handshake(self, sock: socket.socket, conn: TcpConnection) -> None:
        """The server side of an admitted TLS connection's handshake; the connection is
        then ``conn``'s. A failure or a time-out closes it and releases its count."""
        assert self.tls is not None and self.tls.server is not None
        try:
            await self.loop.connect_accepted_socket(
                lambda: conn,
                sock,
                ssl=self.tls.server,
                ssl_handshake_timeout=self.limits.message_timeout,
            )
        except BaseException as e:
            self.stats.tls_handshakes_failed += 1
            self.count_out(conn)
            with contextlib.suppress(OSError):
                sock.close()
            if not isinstance(e, Exception):
                raise
            log.info("TLS handshake with %s:%s failed: %s", *conn.peer, e or type(e).__name__)

    def _serving(self, server: asyncio.Server) -> tuple[str, int]:
        """Keep a started TCP listener, start the idle sweep with the first one, and
        return its bound address."""
        self.servers.append(server)
        self._start_sweep()
        # Read untyped: typeshed says a tuple, uvloop gives a list, and the compiled
        # build checks the declared type.
        bound = cast(Any, server).sockets[0].getsockname()
        return bound[0], bound[1]

    def _start_sweep(self) -> None:
        """Start the sweep of connections past their deadlines (once)."""
        if self._idle_task is None:
            self._idle_task = self.loop.create_task(self._close_idle())

    def _new_conn_id(self) -> int:
        """A new connection's id; with workers, ``id % workers`` is this worker's index
        (:func:`~sipdispatch.transport.handoff.holder_of`)."""
        self._next_conn += 1
        handoff = self.handoff
        if handoff is None:
            return self._next_conn
        return self._next_conn * handoff.workers + handoff.index

    def admit(self, conn: TcpConnection) -> bool:
        """Whether an accepted connection may stay (``TcpLimits``); counts a refusal."""
        ip = conn.peer[0]
        if self._accepted >= self.max_accepted:
            self.stats.tcp_refused_total += 1
            self._refused(ip, f"{self._accepted} connections open (max_connections)")
            return False
        if self._per_source.get(ip, 0) >= self.limits.max_per_source:
            self.stats.tcp_refused_per_source += 1
            self._refused(ip, f"{self.limits.max_per_source} from it already (max_per_source)")
            return False
        return True

    def _refused(self, ip: str, why: str) -> None:
        now = self.loop.time()
        if now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL:
            self._last_refusal_log = now
            log.warning("refusing TCP connections from %s: %s", ip, why)

    def count_in(self, conn: TcpConnection) -> None:
        """Count an admitted connection against the limits (once)."""
        if conn.counted:
            return
        conn.counted = True
        self._accepted += 1
        ip = conn.peer[0]
        self._per_source[ip] = self._per_source.get(ip, 0) + 1

    def count_out(self, conn: TcpConnection) -> None:
        """Release what :meth:`count_in` counted."""
        if not conn.counted:
            return
        conn.counted = False
        self._accepted -= 1
        ip = conn.peer[0]
        left = self._per_source.get(ip, 1) - 1
        if left > 0:
            self._per_source[ip] = left
        else:
            self._per_source.pop(ip, None)

    def register(self, conn: TcpConnection) -> None:
        self.conns[conn.conn_id] = conn
        self.conn_by_peer[(conn.proto, *conn.peer)] = conn
        self.stats.tcp_connections += 1
        if conn.accepted:
            self.count_in(conn)

    def unregister(self, conn: TcpConnection) -> None:
        if self.conns.pop(conn.conn_id, None) is None:
            return
        key = (conn.proto, *conn.peer)
        if self.conn_by_peer.get(key) is conn:
            del self.conn_by_peer[key]
        self.stats.tcp_connections -= 1
        self.count_out(conn)

    def sweep(self, now: float) -> None:
        """Close the connections past their deadlines (``TcpLimits``)."""
        limits = self.limits
        for conn in list(self.conns.values()):
            transport = conn.transport
            if transport is None:
                continue
            waiting = conn.waiting_since
            if waiting is not None and now - waiting > limits.message_timeout:
                self.stats.tcp_closed_incomplete += 1
                log.info("closing TCP connection from %s:%s: no complete message in %g s",
                         *conn.peer, limits.message_timeout)  # fmt: skip
                transport.abort()
                continue
            idle = limits.dialog_idle_timeout if conn.dialog else limits.idle_timeout
            if now - conn.last_activity > idle:
                self.stats.tcp_closed_idle += 1
                transport.close()

    async def _close_idle(self) -> None:
        while True:
            await asyncio.sleep(TCP_SWEEP_INTERVAL)
            self.sweep(self.loop.time())

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._timer is not None:
            self._timer.cancel()
        if self._idle_task is not None:
            self._idle_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        for server in self.servers:
            server.close()
        for lsock in self._tls_listeners:
            self.loop.remove_reader(lsock.fileno())
            lsock.close()
        self._tls_listeners.clear()
        for conn in list(self.conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        for server in self.servers:
            await server.wait_closed()
        if self.handoff is not None:
            self.handoff.close()
        for listener in self.udp_sock.values():
            if listener.transport is not None:
                listener.transport.close()

    # -- output ----------------------------------------------------------------------

    def flush(self) -> None:
        """Write out the core's outbox and re-arm the timer."""
        core = self.core
        out = core.datagrams_to_send()
        while out:
            for addr, data, owner in out:
                self._send(addr, data, owner)
            # A send that failed may have started the next branch.
            out = core.datagrams_to_send()
        held = core.take_held()
        if held:
            for ticket, hold in held:
                hold.add_done_callback(functools.partial(self._settled, ticket))
        deadline = core.get_timer()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            when = max(deadline, math.ceil(deadline / TIMER_RESOLUTION) * TIMER_RESOLUTION)
            if self._timer_at is not None and when >= self._timer_at:
                return  # the armed wake-up is in the same slot
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self.loop.call_at(when, self._on_timer)

    def _settled(self, ticket: Any, hold: asyncio.Future[bool]) -> None:
        """A branch's hold (a cluster's call-load reservation) has its answer: send the
        branch, or go to the next destination (the core decides)."""
        ok = True if hold.cancelled() or hold.exception() is not None else hold.result()
        self.core.admitted(ticket, ok, self.loop.time())
        self.flush()

    def _on_timer(self) -> None:
        due = self._timer_at
        self._timer = None
        self._timer_at = None
        now = self.loop.time()
        if due is not None and now - due > LATE_TIMER and self._read_first(now):
            # Come back after the next poll of the sockets (uvloop runs the due timers
            # of a loop turn before it reads, and reads at most 32 datagrams a socket
            # per turn): the answers that came during the stall are then handled
            # first, instead of their transactions retransmitting or timing out.
            self._timer_at = due
            self._timer = self.loop.call_later(0.001, self._on_timer)
            return
        self._late_since = None
        self.core.handle_timer(now)
        self.flush()

    def _read_first(self, now: float) -> bool:
        """Whether a late wake-up is put off once more: the first time, and again
        while responses keep arriving, for at most :data:`LATE_READ_MAX`."""
        replies = self.core.stats.rx_replies
        since = self._late_since
        if since is None:
            self._late_since = now
        elif replies == self._late_replies or now - since > LATE_READ_MAX:
            return False
        self._late_replies = replies
        return True

    def _send(self, addr: Addr, data: bytes, owner: Any, server_name: str = "") -> None:
        """Send ``data`` to ``addr``; ``server_name`` is the host name a TLS
        destination's certificate must name (``addr.host`` once resolved)."""
        host = addr.host
        kind = address_kind(host)
        if kind == FORBIDDEN_IP:
            self.stats.refused_destinations += 1
            self._fail(owner)
            return
        if kind == NAME:
            cached = self._dns.get(host)
            if cached is not None and cached[1] > self.loop.time():
                server_name = host
                addr = Addr(addr.transport, cached[0], addr.port, addr.conn)
            else:
                self._resolve_then_send(addr, data, owner)
                return
        if addr.transport == "udp":
            family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
            listener = self.udp_sock.get(family)
            if listener is None:
                self._fail(owner)
                return
            self._send_udp(listener, data, (addr.host, addr.port), owner)
            tap = self.tap
            if tap is not None:
                tap.copy("udp", listener.local, (addr.host, addr.port), data, time.time())
            return
        self._send_stream(addr, data, owner, server_name or addr.host)

    def _send_udp(
        self, listener: UdpProtocol, data: bytes, dest: tuple[str, int], owner: Any
    ) -> None:
        """One datagram, on the socket directly (the transport buffers it when the
        socket is full)."""
        sock = listener.sock
        transport = listener.transport
        if sock is None or transport is None:
            self._fail(owner)
            return
        if self._udp_backlog:
            if cast(Any, transport).get_write_buffer_size():  # asyncio's and uvloop's have it
                transport.sendto(data, dest)
                return
            self._udp_backlog = False
        try:
            sock.sendto(data, dest)
        except (BlockingIOError, InterruptedError):
            self._udp_backlog = True
            transport.sendto(data, dest)
        except OSError as exc:
            if exc.errno not in UNREACHABLE or not listener.errors_queued:
                self.stats.udp_errors += 1
                self._fail(owner)
                return
            # The error of an earlier datagram, which the kernel reports on the next
            # send (and this one was not sent): read it, and send again.
            listener.read_errors(False)  # the flush that sends this one sends the rest
            try:
                sock.sendto(data, dest)
            except OSError:
                self.stats.udp_errors += 1
                self._fail(owner)

    def _fail(self, owner: Any) -> None:
        if owner is not None:
            self.core.send_failed(owner, self.loop.time())

    def take(self, kind: int, addr: Addr, data: bytes) -> None:
        """A frame another worker handed over: a message of one of this worker's
        Call-IDs, handled as if received here (the source ACL and the flood limit were
        applied where it came in), or bytes to write on a connection held here."""
        if kind == WRITE:
            conn = self.conns.get(addr.conn) if addr.conn is not None else None
            if conn is None or conn.proto != addr.transport or not conn.write(data):
                # Gone meanwhile: to the peer's address, as a new message would go.
                peer = Addr(addr.transport, addr.host, addr.port)
                self._send_stream(peer, data, None, addr.host)
            self.flush()
            return
        if kind != MESSAGE:
            return
        core = self.core
        now = self.loop.time()
        tap = self.tap
        if tap is not None:
            family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
            # A connection another worker holds was accepted on the listening port
            # too (the UDP socket's address, as `server.listen` usually gives both).
            listener = self.udp_sock.get(family)
            local = listener.local if listener is not None else ("0.0.0.0", 0)
            tap.copy(addr.transport, (addr.host, addr.port), local, data, time.time())
        if addr.transport == "udp":
            core.receive(data, addr, now)
        else:
            try:
                message = parse_datagram(data, core.settings.max_message_size)
            except ParseError as e:
                core.bad_message(e, addr, now)
            else:
                core.receive_message(message, addr, now)
        self.flush()

    def _send_stream(self, addr: Addr, data: bytes, owner: Any, server_name: str) -> None:
        proto = addr.transport
        if proto == "tls" and self.tls is None:
            self.stats.tls_unconfigured += 1
            self._no_tls(addr)
            self._fail(owner)
            return
        handoff = self.handoff
        if addr.conn is not None and handoff is not None:
            holder = handoff.holder(addr.conn)
            if holder != handoff.index:
                # Another worker holds that connection: it writes (RFC 3261 §18.2.2:
                # a response goes back over the connection its request came on).
                handoff.send(holder, frame(WRITE, addr, data))
                return
        conn = self.conns.get(addr.conn) if addr.conn is not None else None
        if conn is None or conn.proto != proto:
            conn = self.conn_by_peer.get((proto, addr.host, addr.port))
        if conn is not None and conn.write(data):
            return
        if proto not in ("tcp", "tls"):
            self._fail(owner)  # sctp, ws...: no such transport here
            return
        key = (proto, addr.host, addr.port)
        pending = self._connecting.get(key)
        if pending is not None:
            pending.append((data, owner))  # keep order behind the connect
            return
        self._connecting[key] = deque([(data, owner)])
        self._spawn(self._connect(key, server_name))

    def _no_tls(self, addr: Addr) -> None:
        now = self.loop.time()
        if now - self._last_tls_log >= REFUSAL_LOG_INTERVAL:
            self._last_tls_log = now
            log.error(
                "cannot send to %s:%s over TLS: the configuration has no [tls] table "
                "(a TLS destination is never reached over plain TCP)",
                addr.host,
                addr.port,
            )

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, key: tuple[str, str, int], server_name: str) -> None:
        transport, host, port = key
        conn: TcpConnection | None = None
        try:
            if transport == "tls":
                assert self.tls is not None
                connecting = self.loop.create_connection(
                    lambda: TcpConnection(self, self._new_conn_id(), False, "tls"),
                    host,
                    port,
                    ssl=self.tls.client,
                    server_hostname=server_name if self.tls.verify_peer else None,
                    ssl_handshake_timeout=TCP_CONNECT_TIMEOUT,
                )
            else:
                connecting = self.loop.create_connection(
                    lambda: TcpConnection(self, self._new_conn_id(), False), host, port
                )
            _, conn = await asyncio.wait_for(connecting, TCP_CONNECT_TIMEOUT)
        except ssl.SSLError as e:
            self.stats.tls_failures += 1
            log.warning("TLS connection to %s:%s (%s) failed: %s", host, port, server_name, e)
        except (TimeoutError, OSError) as e:
            log.info("%s connect to %s:%s failed: %s", transport.upper(), host, port, e)
        pending = self._connecting.pop(key, deque())
        for data, owner in pending:
            if conn is None or not conn.write(data):
                self._fail(owner)
        self.flush()

    def _resolve_then_send(self, addr: Addr, data: bytes, owner: Any) -> None:
        pending = self._resolving.get(addr.host)
        if pending is not None:
            pending.append((addr, data, owner))
            return
        self._resolving[addr.host] = deque([(addr, data, owner)])
        self._spawn(self._resolve(addr.host))

    async def _resolve(self, host: str) -> None:
        ip: str | None = None
        try:
            infos = await self.loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
            ip = str(infos[0][4][0]) if infos else None
        except OSError as e:
            log.warning("cannot resolve %s: %s", host, e)
        if ip is not None:
            remember(self._dns, host, (ip, self.loop.time() + DNS_CACHE_SECONDS))
        pending = self._resolving.pop(host, deque())
        for addr, data, owner in pending:
            if ip is None:
                self._fail(owner)
            else:
                self._send(Addr(addr.transport, ip, addr.port, addr.conn), data, owner, host)
        self.flush()
