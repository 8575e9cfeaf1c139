"""HEPv3 copies of the SIP messages the proxy receives and sends, for Homer.

HEP (the Homer Encapsulation Protocol, version 3) wraps one captured message in a
header of typed chunks: the IP family and protocol, the real source and destination
addresses and ports, the time in seconds and microseconds, the payload type (SIP),
the capture agent's id, an optional password and the Call-ID as correlation id.
heplify-server, Homer and Wireshark/tshark (``-d udp.port==9060,hep``) read it.

Over UDP a copy is sent and forgotten: one non-blocking ``send`` on a UDP socket
connected to the collector. Over TCP (``tcp:HOST:PORT``, heplify-server's
``HEPTCPAddr``) the copies of 10 ms are written together, one write per batch on one
connection, which costs a fraction of a datagram each. A collector that is slow, absent
or unreachable costs counted drops, never a delay of the SIP it copies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from typing import Any, Final, cast

from sipdispatch.sip.memo import remember
from sipdispatch.transport.handoff import call_id_of

log: Final = logging.getLogger("sipdispatch.capture")

HEP_MAGIC: Final = b"HEP3"
GENERIC: Final = 0
"""Vendor id of the chunks the HEP specification defines."""

CHUNK_FAMILY: Final = 1
CHUNK_PROTO: Final = 2
CHUNK_SRC4: Final = 3
CHUNK_DST4: Final = 4
CHUNK_SRC6: Final = 5
CHUNK_DST6: Final = 6
CHUNK_SRC_PORT: Final = 7
CHUNK_DST_PORT: Final = 8
CHUNK_SECONDS: Final = 9
CHUNK_MICROSECONDS: Final = 10
CHUNK_PAYLOAD_TYPE: Final = 11
CHUNK_AGENT_ID: Final = 12
CHUNK_PASSWORD: Final = 14
CHUNK_PAYLOAD: Final = 15
CHUNK_CORRELATION: Final = 17

PAYLOAD_SIP: Final = 1
IPPROTO_UDP: Final = 17
IPPROTO_TCP: Final = 6
AF_INET_HEP: Final = 2
AF_INET6_HEP: Final = 10

PING_BRANCH: Final = b"z9hG4bKsdo."
"""The branch prefix of the requests the proxy originates (its OPTIONS pings): their
answers carry it in the top Via."""

_u8: Final = struct.Struct("!HHHB")
_u32: Final = struct.Struct("!HHHI")
_head: Final = struct.Struct("!HHH")


def _chunk(kind: int, value: bytes) -> bytes:
    return _head.pack(GENERIC, kind, 6 + len(value)) + value


_packed: Final[dict[str, bytes]] = {}


def packed_ip(host: str) -> bytes:
    """The address's bytes (memoised: the same few peers send every message)."""
    packed = _packed.get(host)
    if packed is None:
        packed = ipaddress.ip_address(host.strip("[]")).packed
        remember(_packed, host, packed)
    return packed


def _fixed(v6: bool, proto: int) -> bytes:
    return _u8.pack(GENERIC, CHUNK_FAMILY, 7, AF_INET6_HEP if v6 else AF_INET_HEP) + _u8.pack(
        GENERIC, CHUNK_PROTO, 7, proto
    )


_FIXED: Final = {
    (False, IPPROTO_UDP): _fixed(False, IPPROTO_UDP),
    (False, IPPROTO_TCP): _fixed(False, IPPROTO_TCP),
    (True, IPPROTO_UDP): _fixed(True, IPPROTO_UDP),
    (True, IPPROTO_TCP): _fixed(True, IPPROTO_TCP),
}
"""The family and protocol chunks, made once."""


def _agent(agent_id: int, password: bytes) -> bytes:
    """The payload type, agent id and password chunks: the same in every copy."""
    out = _u8.pack(GENERIC, CHUNK_PAYLOAD_TYPE, 7, PAYLOAD_SIP)
    out += _u32.pack(GENERIC, CHUNK_AGENT_ID, 10, agent_id)
    if password:
        out += _chunk(CHUNK_PASSWORD, password)
    return out


def encode(
    transport: str,
    src: tuple[str, int],
    dst: tuple[str, int],
    seconds: int,
    micros: int,
    payload: bytes,
    agent_id: int,
    password: bytes = b"",
    correlation: bytes | None = None,
) -> bytes:
    """One HEPv3 packet for ``payload`` sent from ``src`` to ``dst`` over
    ``transport`` (``udp``, ``tcp``, ``tls``) at ``seconds`` + ``micros``.
    Raises ValueError when an address is not an IP address."""
    return packet(transport, src, dst, seconds, micros, payload, _agent(agent_id, password),
                  correlation)  # fmt: skip


_ports: Final = struct.Struct("!HHHHHHHH")
_times: Final = struct.Struct("!HHHIHHHI")
_TIME_CHUNKS: Final = 20
_PREFIX_CAP: Final = 4096
"""Routes whose fixed chunks are kept made (the same few peers send every message)."""


def _prefix(transport: str, src: tuple[str, int], dst: tuple[str, int], agent: bytes) -> bytes:
    """The chunks that are the same in every copy between ``src`` and ``dst``: family,
    protocol, addresses, ports, payload type, agent id and password."""
    s_ip, d_ip = packed_ip(src[0]), packed_ip(dst[0])
    if len(s_ip) != len(d_ip):  # one family each side; an IPv4 peer of a v6 socket
        s_ip, d_ip = as_v6(s_ip), as_v6(d_ip)
    v6 = len(s_ip) == 16
    head = _FIXED[v6, IPPROTO_UDP if transport == "udp" else IPPROTO_TCP]
    addresses = _head.pack(GENERIC, CHUNK_SRC6 if v6 else CHUNK_SRC4, 6 + len(s_ip)) + s_ip
    addresses += _head.pack(GENERIC, CHUNK_DST6 if v6 else CHUNK_DST4, 6 + len(d_ip)) + d_ip
    ports = _ports.pack(GENERIC, CHUNK_SRC_PORT, 8, src[1], GENERIC, CHUNK_DST_PORT, 8, dst[1])
    return head + addresses + ports + agent


def packet(
    transport: str,
    src: tuple[str, int],
    dst: tuple[str, int],
    seconds: int,
    micros: int,
    payload: bytes,
    agent: bytes,
    correlation: bytes | None,
    prefixes: dict[tuple[str, tuple[str, int], tuple[str, int]], bytes] | None = None,
) -> bytes:
    """:func:`encode` with the agent's chunks made already (:func:`_agent`), and the
    fixed chunks of each route kept in ``prefixes`` when given."""
    if prefixes is None:
        fixed = _prefix(transport, src, dst, agent)
    else:
        route = (transport, src, dst)
        got = prefixes.get(route)
        if got is None:
            got = _prefix(transport, src, dst, agent)
            if len(prefixes) >= _PREFIX_CAP:
                prefixes.clear()
            prefixes[route] = got
        fixed = got
    times = _times.pack(GENERIC, CHUNK_SECONDS, 10, seconds, GENERIC, CHUNK_MICROSECONDS, 10,
                        micros)  # fmt: skip
    size = 6 + len(fixed) + _TIME_CHUNKS + 6 + len(payload)
    if correlation:
        size += 6 + len(correlation)
        return b"".join((
            HEP_MAGIC, _size.pack(size), fixed, times,
            _head.pack(GENERIC, CHUNK_CORRELATION, 6 + len(correlation)), correlation,
            _head.pack(GENERIC, CHUNK_PAYLOAD, 6 + len(payload)), payload,
        ))  # fmt: skip
    return b"".join((HEP_MAGIC, _size.pack(size), fixed, times,
                     _head.pack(GENERIC, CHUNK_PAYLOAD, 6 + len(payload)), payload))  # fmt: skip


_size: Final = struct.Struct("!H")


def as_v6(packed: bytes) -> bytes:
    if len(packed) == 16:
        return packed
    return b"\x00" * 10 + b"\xff\xff" + packed  # IPv4-mapped


def decode(packet: bytes) -> dict[int, bytes]:
    """The generic chunks of a HEPv3 packet by type (for tests and tools).
    Raises ValueError for what is not one."""
    if packet[:4] != HEP_MAGIC:
        raise ValueError("not HEPv3")
    (total,) = struct.unpack("!H", packet[4:6])
    if total != len(packet):
        raise ValueError(f"length {total} for {len(packet)} bytes")
    chunks: dict[int, bytes] = {}
    at = 6
    while at < total:
        if at + 6 > total:
            raise ValueError("truncated chunk header")
        vendor, kind, length = _head.unpack(packet[at : at + 6])
        if length < 6 or at + length > total:
            raise ValueError(f"bad chunk length {length}")
        if vendor == GENERIC:
            chunks[kind] = packet[at + 6 : at + length]
        at += length
    return chunks


class HepStats:
    """What the capture counts."""

    __slots__ = ("dropped", "sent")

    def __init__(self) -> None:
        self.sent = 0
        """Copies sent to the collector."""
        self.dropped = 0
        """Copies not sent: the socket was full or the collector unreachable."""


class _Copier:
    """What both senders share: which messages are copied and how one is encoded."""

    def __init__(self, agent_id: int, password: str, pings: bool) -> None:
        self.agent_id = agent_id
        self.password = password.encode()
        self._agent = _agent(agent_id, self.password)
        self.pings = pings
        """Copy the proxy's own OPTIONS pings and their answers too."""
        self.stats = HepStats()
        self._prefixes: dict[tuple[str, tuple[str, int], tuple[str, int]], bytes] = {}

    def _encode(
        self, transport: str, src: tuple[str, int], dst: tuple[str, int], data: bytes, now: float
    ) -> bytes | None:
        """The copy of ``data``, or None when it is not copied (a ping) or cannot be (a
        name not yet resolved: counted as dropped)."""
        if not self.pings and data.find(PING_BRANCH, 0, 512) >= 0 and _is_ping(data):
            return None
        whole = int(now)
        try:
            return packet(
                transport, src, dst, whole, int((now - whole) * 1_000_000), data,
                self._agent, call_id_of(data), self._prefixes,
            )  # fmt: skip
        except ValueError:
            self.stats.dropped += 1  # not an IP address
            return None


class HepSender(_Copier):
    """Sends a HEPv3 copy of each message to one collector over UDP, forgetting it."""

    def __init__(
        self,
        collector: tuple[str, int],
        agent_id: int,
        password: str = "",
        pings: bool = False,
    ) -> None:
        super().__init__(agent_id, password, pings)
        self.collector = collector
        family = socket.AF_INET6 if ":" in collector[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(collector)

    def close(self) -> None:
        self.sock.close()

    def copy(
        self, transport: str, src: tuple[str, int], dst: tuple[str, int], data: bytes, now: float
    ) -> None:
        """A copy of ``data`` (one SIP message) going from ``src`` to ``dst``; ``now``
        is the wall-clock time."""
        copy = self._encode(transport, src, dst, data, now)
        if copy is None:
            return
        try:
            self.sock.send(copy)
        except OSError:  # full, refused (ICMP from an absent collector), unreachable
            self.stats.dropped += 1
            return
        self.stats.sent += 1


STREAM_FLUSH: Final = 0.01
"""Seconds the copies wait to be written together over TCP."""
STREAM_BUFFER: Final = 4 << 20
"""Bytes of copies waiting (not yet written, or written and not yet taken by the
kernel) at most: past that a collector that does not read loses copies, counted."""
RECONNECT_FIRST: Final = 1.0
RECONNECT_MOST: Final = 30.0
"""Seconds between two tries to connect to the collector (doubling)."""


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, sender: HepStreamSender) -> None:
        self.sender = sender

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sender.connected(cast_transport(transport))

    def data_received(self, data: bytes) -> None:
        pass  # a collector says nothing

    def connection_lost(self, exc: Exception | None) -> None:
        self.sender.lost(exc)


def cast_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """uvloop's TCP transport is one in all but its class."""
    return cast(asyncio.Transport, transport)


class HepStreamSender(_Copier):
    """Sends HEPv3 copies to one collector over a TCP connection, the copies of
    :data:`STREAM_FLUSH` seconds in one write; reconnects when the connection breaks."""

    def __init__(
        self,
        collector: tuple[str, int],
        agent_id: int,
        password: str = "",
        pings: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(agent_id, password, pings)
        self.collector = collector
        self.loop = loop or asyncio.get_running_loop()
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.transport: asyncio.Transport | None = None
        self._flush: asyncio.TimerHandle | None = None
        self._retry = RECONNECT_FIRST
        self._closed = False
        self._connecting: asyncio.Task[Any] | None = None
        self._failing = False
        self._connect()

    def _connect(self) -> None:
        if self._closed:
            return
        self._connecting = self.loop.create_task(self._open())

    async def _open(self) -> None:
        host, port = self.collector
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: _StreamProtocol(self), host, port), 10.0
            )
        except (OSError, TimeoutError) as exc:
            if not self._failing:
                log.warning("HEP collector tcp:%s:%d: cannot connect (%s); copies are "
                            "dropped until it answers", host, port, exc)  # fmt: skip
                self._failing = True
            self._drop_pending()
            self.loop.call_later(self._retry, self._connect)
            self._retry = min(self._retry * 2, RECONNECT_MOST)

    def connected(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._retry = RECONNECT_FIRST
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._failing:
            log.warning("HEP collector tcp:%s:%d: connected again", *self.collector)
            self._failing = False
        if self.pending:
            self.flush()

    def lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._closed:
            return
        if not self._failing:
            log.warning("HEP collector tcp:%s:%d: connection lost (%s); reconnecting",
                        self.collector[0], self.collector[1], exc or "closed")  # fmt: skip
            self._failing = True
        self.loop.call_later(self._retry, self._connect)
        self._retry = min(self._retry * 2, RECONNECT_MOST)

    def copy(
        self, transport: str, src: tuple[str, int], dst: tuple[str, int], data: bytes, now: float
    ) -> None:
        """A copy of ``data`` going from ``src`` to ``dst``, written with the others of
        its batch."""
        copy = self._encode(transport, src, dst, data, now)
        if copy is None:
            return
        if self.pending_size + len(copy) > STREAM_BUFFER:
            self.stats.dropped += 1
            return
        self.pending.append(copy)
        self.pending_size += len(copy)
        if self._flush is None:
            self._flush = self.loop.call_later(STREAM_FLUSH, self.flush)

    def flush(self) -> None:
        """Write the waiting copies in one write (or drop them, counted, when the
        collector is not connected or does not read)."""
        self._flush = None
        t = self.transport
        if not self.pending:
            return
        if t is None or t.is_closing():
            if self._connecting is not None and not self._connecting.done():
                return  # connecting: they wait (within the buffer's bound)
            self._drop_pending()
            return
        if t.get_write_buffer_size() + self.pending_size > STREAM_BUFFER:
            self._drop_pending()  # the collector does not keep up
            return
        t.write(b"".join(self.pending))
        self.stats.sent += len(self.pending)
        self.pending.clear()
        self.pending_size = 0

    def _drop_pending(self) -> None:
        self.stats.dropped += len(self.pending)
        self.pending.clear()
        self.pending_size = 0

    def close(self) -> None:
        self.flush()
        self._closed = True
        if self._flush is not None:
            self._flush.cancel()
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self.transport is not None:
            self.transport.close()


def _is_ping(data: bytes) -> bool:
    """A ping of ours (its top Via carries our originate branch) or its answer."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    at = head.find(b"\nVia:")
    if at < 0:
        at = head.lower().find(b"\nvia:")
    if at < 0:
        return False
    stop = head.find(b"\n", at + 1)
    line = head[at : stop if stop > 0 else len(head)]
    return PING_BRANCH in line and (data.startswith(b"OPTIONS ") or data.startswith(b"SIP/"))
