"""HEPv3 copies (the HEP specification's generic chunks), encoded and sent."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from sipdispatch.transport.hep import (
    CHUNK_AGENT_ID,
    CHUNK_CORRELATION,
    CHUNK_DST4,
    CHUNK_DST6,
    CHUNK_DST_PORT,
    CHUNK_FAMILY,
    CHUNK_MICROSECONDS,
    CHUNK_PASSWORD,
    CHUNK_PAYLOAD,
    CHUNK_PAYLOAD_TYPE,
    CHUNK_PROTO,
    CHUNK_SECONDS,
    CHUNK_SRC4,
    CHUNK_SRC6,
    CHUNK_SRC_PORT,
    HepSender,
    HepStats,
    HepStreamSender,
    decode,
    encode,
)

INVITE = (
    b"INVITE sip:bob@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1\r\n"
    b"From: <sip:alice@192.0.2.1>;tag=1\r\nTo: <sip:bob@192.0.2.10>\r\n"
    b"Call-ID: hep-1@192.0.2.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def test_hepv3_packet_carries_addresses_ports_time_protocol_agent_and_call_id() -> None:
    packet = encode(
        "udp", ("192.0.2.1", 5060), ("198.51.100.7", 5080), 1_700_000_000, 123_456, INVITE,
        2001, b"secret", b"hep-1@192.0.2.1",
    )  # fmt: skip
    assert packet[:4] == b"HEP3"
    assert struct.unpack("!H", packet[4:6])[0] == len(packet)
    c = decode(packet)
    assert c[CHUNK_FAMILY] == b"\x02" and c[CHUNK_PROTO] == b"\x11"  # IPv4, UDP
    assert socket.inet_ntoa(c[CHUNK_SRC4]) == "192.0.2.1"
    assert socket.inet_ntoa(c[CHUNK_DST4]) == "198.51.100.7"
    assert struct.unpack("!H", c[CHUNK_SRC_PORT])[0] == 5060
    assert struct.unpack("!H", c[CHUNK_DST_PORT])[0] == 5080
    assert struct.unpack("!I", c[CHUNK_SECONDS])[0] == 1_700_000_000
    assert struct.unpack("!I", c[CHUNK_MICROSECONDS])[0] == 123_456
    assert c[CHUNK_PAYLOAD_TYPE] == b"\x01"  # SIP
    assert struct.unpack("!I", c[CHUNK_AGENT_ID])[0] == 2001
    assert c[CHUNK_PASSWORD] == b"secret"
    assert c[CHUNK_CORRELATION] == b"hep-1@192.0.2.1"
    assert c[CHUNK_PAYLOAD] == INVITE


def test_hepv3_over_tcp_and_ipv6() -> None:
    c = decode(encode("tls", ("2001:db8::1", 5061), ("[2001:db8::2]", 5061), 1, 0, INVITE, 1))
    assert c[CHUNK_FAMILY] == b"\x0a" and c[CHUNK_PROTO] == b"\x06"
    assert socket.inet_ntop(socket.AF_INET6, c[CHUNK_SRC6]) == "2001:db8::1"
    assert socket.inet_ntop(socket.AF_INET6, c[CHUNK_DST6]) == "2001:db8::2"
    assert CHUNK_PASSWORD not in c


def test_an_ipv4_peer_of_an_ipv6_socket_is_written_ipv4_mapped() -> None:
    c = decode(encode("udp", ("192.0.2.1", 5060), ("::", 5060), 1, 0, INVITE, 1))
    assert c[CHUNK_SRC6] == b"\x00" * 10 + b"\xff\xff" + socket.inet_aton("192.0.2.1")


def test_a_name_instead_of_an_address_is_refused() -> None:
    with pytest.raises(ValueError):
        encode("udp", ("gw.example.com", 5060), ("192.0.2.1", 5060), 1, 0, INVITE, 1)


@pytest.fixture
def collector() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock  # type: ignore[misc]
    sock.close()


def test_each_copy_reaches_the_collector(collector: socket.socket) -> None:
    sender = HepSender(collector.getsockname(), 7, "pw")
    sender.copy("udp", ("192.0.2.1", 5060), ("127.0.0.1", 5060), INVITE, time.time())
    c = decode(collector.recv(65535))
    assert c[CHUNK_PAYLOAD] == INVITE and c[CHUNK_CORRELATION] == b"hep-1@192.0.2.1"
    assert (sender.stats.sent, sender.stats.dropped) == (1, 0)
    sender.close()


PING = (
    b"OPTIONS sip:gw@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsdo.p1\r\n"
    b"From: <sip:ping@127.0.0.1>;tag=1\r\nTo: <sip:gw@192.0.2.10>\r\n"
    b"Call-ID: ping-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
PING_ANSWER = PING.replace(b"OPTIONS sip:gw@192.0.2.10 SIP/2.0", b"SIP/2.0 200 OK")
RELAYED_OPTIONS = PING.replace(b"z9hG4bKsdo.p1", b"z9hG4bKcaller")


def test_the_proxys_own_pings_and_their_answers_are_left_out_unless_asked(
    collector: socket.socket,
) -> None:
    quiet = HepSender(collector.getsockname(), 1)
    for data in (PING, PING_ANSWER, RELAYED_OPTIONS):
        quiet.copy("udp", ("127.0.0.1", 5060), ("192.0.2.10", 5060), data, time.time())
    assert decode(collector.recv(65535))[CHUNK_PAYLOAD] == RELAYED_OPTIONS  # a caller's
    assert quiet.stats.sent == 1
    loud = HepSender(collector.getsockname(), 1, pings=True)
    loud.copy("udp", ("127.0.0.1", 5060), ("192.0.2.10", 5060), PING, time.time())
    assert decode(collector.recv(65535))[CHUNK_PAYLOAD] == PING


def test_an_absent_collector_costs_counted_drops_never_an_exception() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nobody listens
    sender = HepSender(("127.0.0.1", port), 1)
    for _ in range(20):  # the ICMP port unreachable of one send fails a later one
        sender.copy("udp", ("192.0.2.1", 5060), ("127.0.0.1", 5060), INVITE, time.time())
    assert sender.stats.sent + sender.stats.dropped == 20
    assert sender.stats.dropped >= 1


def test_malformed_hep_is_refused_by_the_decoder() -> None:
    good = encode("udp", ("192.0.2.1", 1), ("192.0.2.2", 2), 1, 0, INVITE, 1)
    for bad in (b"HEP2" + good[4:], good[:-1], good[:6] + b"\x00\x00\x00\x01\x00\x02"):
        with pytest.raises(ValueError):
            decode(bad)


# -- over TCP: batched writes on one connection -------------------------------------------------


def _split_stream(data: bytes) -> list[dict[int, bytes]]:
    """The HEPv3 packets of a TCP stream (each says its own length)."""
    out = []
    at = 0
    while at + 6 <= len(data):
        (size,) = struct.unpack("!H", data[at + 4 : at + 6])
        out.append(decode(data[at : at + size]))
        at += size
    assert at == len(data), "a packet cut short"
    return out


def _whole(buf: bytearray) -> bool:
    at = 0
    while at + 6 <= len(buf):
        (size,) = struct.unpack("!H", bytes(buf[at + 4 : at + 6]))
        at += size
    return at == len(buf)


def test_over_tcp_the_copies_of_a_moment_go_in_one_write_and_each_decodes() -> None:
    async def run() -> tuple[list[dict[int, bytes]], HepStats, int]:
        got = bytearray()
        reads = 0
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal reads
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                reads += 1
                got.extend(chunk)
                if _whole(got) and len(_split_stream(bytes(got))) >= 50:
                    done.set()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sender = HepStreamSender(("127.0.0.1", port), 7)
        for _ in range(200):  # connected, with a deadline
            if sender.transport is not None:
                break
            await asyncio.sleep(0.01)
        for k in range(50):
            sender.copy("udp", ("192.0.2.1", 5060), ("192.0.2.10", 5060),
                        INVITE.replace(b"hep-1", f"hep-{k}".encode()), time.time())  # fmt: skip
        assert sender.stats.sent == 0  # waiting for the batch
        await asyncio.wait_for(done.wait(), 30)
        stats = sender.stats
        sender.close()
        server.close()
        await server.wait_closed()
        return _split_stream(bytes(got)), stats, reads

    copies, stats, reads = asyncio.run(run())
    assert [c[CHUNK_CORRELATION] for c in copies] == [f"hep-{k}@192.0.2.1".encode()
                                                     for k in range(50)]  # fmt: skip
    assert all(int.from_bytes(c[CHUNK_AGENT_ID], "big") == 7 for c in copies)
    assert stats.sent == 50 and stats.dropped == 0
    assert reads <= 5  # one write for the batch (the kernel may split a read)


def test_over_tcp_an_absent_collector_costs_counted_drops_and_is_reconnected() -> None:
    async def run() -> tuple[int, int, int]:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nobody listens there now
        sender = HepStreamSender(("127.0.0.1", port), 1)
        await asyncio.sleep(0.2)
        for _ in range(10):
            sender.copy("udp", ("192.0.2.1", 5060), ("192.0.2.10", 5060), INVITE, time.time())
        await asyncio.sleep(0.1)
        dropped = sender.stats.dropped
        got = bytearray()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while chunk := await reader.read(65536):
                got.extend(chunk)

        server = await asyncio.start_server(serve, "127.0.0.1", port)
        for _ in range(600):  # the retry after 1 s (then 2 s...) finds it
            if sender.transport is not None:
                break
            await asyncio.sleep(0.01)
        sender.copy("udp", ("192.0.2.1", 5060), ("192.0.2.10", 5060), INVITE, time.time())
        for _ in range(600):
            if got:
                break
            await asyncio.sleep(0.01)
        sender.close()
        server.close()
        await server.wait_closed()
        return dropped, sender.stats.sent, len(_split_stream(bytes(got)))

    dropped, sent, received = asyncio.run(run())
    assert dropped == 10 and sent == 1 and received == 1
