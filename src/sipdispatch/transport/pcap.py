"""pcap files of the SIP messages the proxy receives and sends (``capture.start``).

Each message is written as one synthesized IP packet (pcap link type 101, raw IP: no
made-up MAC addresses) with the real addresses and ports: a UDP datagram, or a TCP
segment of the connection it travelled on (TLS included, in clear), with sequence
numbers that run on per direction so that tshark and Wireshark reassemble the stream.
The checksums are right, so no tool flags the packets. Nothing here touches the
network: a :class:`PcapWriter` turns ``(transport, source, destination, time,
bytes)`` into records of a file.
"""

from __future__ import annotations

import array
import struct
import sys
from typing import BinaryIO, Final

from sipdispatch.transport.hep import as_v6, packed_ip

LINKTYPE_RAW: Final = 101
"""pcap link type of raw IPv4/IPv6 packets (the version nibble tells which)."""
SNAPLEN: Final = 262144
PCAP_HEADER: Final = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW)
"""The file header: microsecond timestamps, little-endian, raw IP."""
_record: Final = struct.Struct("<IIII")
_ipv4: Final = struct.Struct("!BBHHHBBH4s4s")
_ipv6: Final = struct.Struct("!IHBB16s16s")
_udp: Final = struct.Struct("!HHHH")
_tcp: Final = struct.Struct("!HHIIBBHHH")
PROTO_UDP: Final = 17
PROTO_TCP: Final = 6
TCP_PSH_ACK: Final = 0x18
MAX_SEGMENT: Final = 65000
"""Bytes of SIP per synthesized packet: an IPv4 packet holds at most 65535 bytes, so
a longer message over TCP is written as several segments (over UDP it cannot exist)."""
_LITTLE: Final = sys.byteorder == "little"


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    words = array.array("H", data)
    if _LITTLE:
        words.byteswap()
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_packet(
    proto: int, src_ip: bytes, dst_ip: bytes, transport_header: bytes, payload: bytes
) -> bytes:
    """An IPv4 or IPv6 packet around a UDP or TCP header (checksum field zero: it is
    filled in here) and its payload."""
    segment_len = len(transport_header) + len(payload)
    if len(src_ip) == 4:
        pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, proto, segment_len)
    else:
        pseudo = src_ip + dst_ip + struct.pack("!IxxxB", segment_len, proto)
    at = 6 if proto == PROTO_UDP else 16
    value = checksum(pseudo + transport_header + payload)
    if proto == PROTO_UDP and value == 0:
        value = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    header = transport_header[:at] + struct.pack("!H", value) + transport_header[at + 2 :]
    if len(src_ip) == 4:
        ip = _ipv4.pack(0x45, 0, 20 + segment_len, 0, 0x4000, 64, proto, 0, src_ip, dst_ip)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    else:
        ip = _ipv6.pack(6 << 28, segment_len, proto, 64, src_ip, dst_ip)
    return ip + header + payload


class PcapWriter:
    """Writes the messages to one open pcap file; counts what it wrote."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.size = 0
        """Bytes written so far, the file header included."""
        self.packets = 0
        self.seq: dict[tuple[str, int, str, int], int] = {}
        """The next TCP sequence number of each direction of each connection."""
        out.write(PCAP_HEADER)
        self.size = len(PCAP_HEADER)

    def write(
        self,
        transport: str,
        src: tuple[str, int],
        dst: tuple[str, int],
        data: bytes,
        now: float,
    ) -> int:
        """Write one message; the number of bytes added to the file. Raises ValueError
        when an address is not an IP address (a name not resolved yet)."""
        s_ip, d_ip = packed_ip(src[0]), packed_ip(dst[0])
        if len(s_ip) != len(d_ip):
            s_ip, d_ip = as_v6(s_ip), as_v6(d_ip)
        whole = int(now)
        micros = round((now - whole) * 1_000_000)
        if micros >= 1_000_000:
            whole, micros = whole + 1, micros - 1_000_000
        added = 0
        if transport == "udp":
            head = _udp.pack(src[1], dst[1], 8 + len(data), 0)
            added += self._record(whole, micros, ip_packet(PROTO_UDP, s_ip, d_ip, head, data))
            return added
        key = (src[0], src[1], dst[0], dst[1])
        back = (dst[0], dst[1], src[0], src[1])
        for at in range(0, max(len(data), 1), MAX_SEGMENT):
            part = data[at : at + MAX_SEGMENT]
            seq = self.seq.get(key, 1)
            ack = self.seq.get(back, 1)
            head = _tcp.pack(src[1], dst[1], seq, ack, 5 << 4, TCP_PSH_ACK, 65535, 0, 0)
            added += self._record(whole, micros, ip_packet(PROTO_TCP, s_ip, d_ip, head, part))
            self.seq[key] = (seq + len(part)) & 0xFFFFFFFF
        return added

    def _record(self, seconds: int, micros: int, packet: bytes) -> int:
        record = _record.pack(seconds, micros, len(packet), len(packet)) + packet
        self.out.write(record)
        self.size += len(record)
        self.packets += 1
        return len(record)


def read_records(data: bytes) -> list[tuple[int, int, bytes]]:
    """The records of a pcap file written here: (seconds, microseconds, packet) each
    (for merging the files of several workers, and for tests). Raises ValueError for
    another format."""
    if len(data) < 24 or data[:4] != PCAP_HEADER[:4]:
        raise ValueError("not a little-endian microsecond pcap file")
    out: list[tuple[int, int, bytes]] = []
    at = 24
    while at + 16 <= len(data):
        seconds, micros, length, _ = _record.unpack_from(data, at)
        at += 16
        if at + length > len(data):
            break  # a record cut short (the file is being written)
        out.append((seconds, micros, data[at : at + length]))
        at += length
    return out


def merge(files: list[bytes]) -> bytes:
    """One pcap file of the records of several, in time order (a stable sort: two
    records of the same microsecond keep their file's order)."""
    records = [record for data in files for record in read_records(data)]
    records.sort(key=lambda r: (r[0], r[1]))
    parts = [PCAP_HEADER]
    for seconds, micros, packet in records:
        parts.append(_record.pack(seconds, micros, len(packet), len(packet)) + packet)
    return b"".join(parts)
