"""HEPv3 copies of the SIP messages the proxy receives and sends, for Homer.

HEP (the Homer Encapsulation Protocol, version 3) wraps one captured message in a
header of typed chunks: the IP family and protocol, the real source and destination
addresses and ports, the time in seconds and microseconds, the payload type (SIP),
the capture agent's id, an optional password and the Call-ID as correlation id.
heplify-server, Homer and Wireshark/tshark (``-d udp.port==9060,hep``) read it.

A copy is sent and forgotten: one non-blocking ``send`` on a UDP socket connected to
the collector. A collector that is slow, absent or unreachable costs a counted drop,
never a delay of the SIP it copies.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Final

from sipdispatch.sip.memo import remember
from sipdispatch.transport.handoff import call_id_of

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
_numbers: Final = struct.Struct("!HHHHHHHHHHHIHHHI")
"""The source and destination port, seconds and microseconds chunks, in one."""
_u32: Final = struct.Struct("!HHHI")
_head: Final = struct.Struct("!HHH")


def _chunk(kind: int, value: bytes) -> bytes:
    return _head.pack(GENERIC, kind, 6 + len(value)) + value


_packed: Final[dict[str, bytes]] = {}


def _packed_ip(host: str) -> bytes:
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


def packet(
    transport: str,
    src: tuple[str, int],
    dst: tuple[str, int],
    seconds: int,
    micros: int,
    payload: bytes,
    agent: bytes,
    correlation: bytes | None,
) -> bytes:
    """:func:`encode` with the agent's chunks made already (:func:`_agent`)."""
    s_ip, d_ip = _packed_ip(src[0]), _packed_ip(dst[0])
    if len(s_ip) != len(d_ip):  # one family each side; an IPv4 peer of a v6 socket
        s_ip, d_ip = _as_v6(s_ip), _as_v6(d_ip)
    v6 = len(s_ip) == 16
    head = _FIXED[v6, IPPROTO_UDP if transport == "udp" else IPPROTO_TCP]
    addresses = _head.pack(GENERIC, CHUNK_SRC6 if v6 else CHUNK_SRC4, 6 + len(s_ip)) + s_ip
    addresses += _head.pack(GENERIC, CHUNK_DST6 if v6 else CHUNK_DST4, 6 + len(d_ip)) + d_ip
    numbers = _numbers.pack(
        GENERIC, CHUNK_SRC_PORT, 8, src[1], GENERIC, CHUNK_DST_PORT, 8, dst[1],
        GENERIC, CHUNK_SECONDS, 10, seconds, GENERIC, CHUNK_MICROSECONDS, 10, micros,
    )  # fmt: skip
    tail = _head.pack(GENERIC, CHUNK_PAYLOAD, 6 + len(payload))
    corr = _head.pack(GENERIC, CHUNK_CORRELATION, 6 + len(correlation)) if correlation else b""
    size = 6 + len(head) + len(addresses) + len(numbers) + len(agent) + len(tail) + len(payload)
    if correlation:
        size += len(corr) + len(correlation)
        return b"".join((HEP_MAGIC, struct.pack("!H", size), head, addresses, numbers, agent,
                         corr, correlation, tail, payload))  # fmt: skip
    return b"".join(
        (HEP_MAGIC, struct.pack("!H", size), head, addresses, numbers, agent, tail, payload)
    )


def _as_v6(packed: bytes) -> bytes:
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


class HepSender:
    """Sends a HEPv3 copy of each message to one collector, forgetting it."""

    def __init__(
        self,
        collector: tuple[str, int],
        agent_id: int,
        password: str = "",
        pings: bool = False,
    ) -> None:
        self.collector = collector
        self.agent_id = agent_id
        self.password = password.encode()
        self._agent = _agent(agent_id, self.password)
        self.pings = pings
        """Copy the proxy's own OPTIONS pings and their answers too."""
        self.stats = HepStats()
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
        if not self.pings and PING_BRANCH in data[:512] and _is_ping(data):
            return
        whole = int(now)
        try:
            copy = packet(
                transport, src, dst, whole, int((now - whole) * 1_000_000), data,
                self._agent, call_id_of(data),
            )  # fmt: skip
        except ValueError:
            self.stats.dropped += 1  # not an IP address (a name not yet resolved)
            return
        try:
            self.sock.send(copy)
        except OSError:  # full, refused (ICMP from an absent collector), unreachable
            self.stats.dropped += 1
            return
        self.stats.sent += 1


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
