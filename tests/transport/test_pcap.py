"""pcap records of SIP messages: synthesized IPv4/IPv6 packets with the real
addresses, right checksums, TCP sequence numbers per direction; merging the files
of several workers in time order. tshark (an independent reader) checks the file."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from sipdispatch.transport.pcap import (
    LINKTYPE_RAW,
    MAX_SEGMENT,
    PcapWriter,
    checksum,
    merge,
    read_records,
)

INVITE = (
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1\r\n"
    b"Call-ID: abc@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def test_rfc1071_checksum_of_a_known_ipv4_header_is_zero_once_filled_in() -> None:
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    value = checksum(header)
    assert value == 0xB861  # the classic example header
    filled = header[:10] + struct.pack("!H", value) + header[12:]
    assert checksum(filled) == 0


def test_the_file_header_says_microseconds_and_raw_ip() -> None:
    out = io.BytesIO()
    PcapWriter(out)
    magic, major, minor, _, _, _, link = struct.unpack("<IHHiIII", out.getvalue())
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, LINKTYPE_RAW)


def test_a_udp_message_is_one_ipv4_packet_with_the_real_ports_and_time() -> None:
    out = io.BytesIO()
    writer = PcapWriter(out)
    writer.write("udp", ("10.0.0.1", 5070), ("10.0.0.2", 5060), INVITE, 1700000000.25)
    [(seconds, micros, packet)] = read_records(out.getvalue())
    assert (seconds, micros) == (1700000000, 250000)
    assert packet[0] >> 4 == 4 and packet[9] == 17  # IPv4, UDP
    assert packet[12:16] == bytes([10, 0, 0, 1]) and packet[16:20] == bytes([10, 0, 0, 2])
    assert checksum(packet[:20]) == 0
    sport, dport, length, _ = struct.unpack("!HHHH", packet[20:28])
    assert (sport, dport, length) == (5070, 5060, 8 + len(INVITE))
    assert packet[28:] == INVITE
    pseudo = packet[12:20] + struct.pack("!BBH", 0, 17, length)
    assert checksum(pseudo + packet[20:]) == 0  # the UDP checksum verifies


def test_an_ipv6_message_is_an_ipv6_packet_and_a_mixed_pair_is_mapped() -> None:
    out = io.BytesIO()
    writer = PcapWriter(out)
    writer.write("udp", ("2001:db8::1", 5060), ("[2001:db8::2]", 5060), INVITE, 1.0)
    writer.write("udp", ("127.0.0.1", 5060), ("::1", 5060), INVITE, 2.0)
    (_, _, v6), (_, _, mapped) = read_records(out.getvalue())
    assert v6[0] >> 4 == 6 and v6[6] == 17 and v6[40 + 8 :] == INVITE
    assert mapped[8:24] == b"\x00" * 10 + b"\xff\xff" + bytes([127, 0, 0, 1])


def test_tcp_segments_carry_sequence_numbers_that_run_on_per_direction() -> None:
    out = io.BytesIO()
    writer = PcapWriter(out)
    a, b = ("10.0.0.1", 40000), ("10.0.0.2", 5060)
    writer.write("tcp", a, b, INVITE, 1.0)
    writer.write("tcp", b, a, b"SIP/2.0 100 Trying\r\n\r\n", 1.1)
    writer.write("tls", a, b, INVITE, 1.2)
    records = [p for _, _, p in read_records(out.getvalue())]
    seqs = [struct.unpack("!II", p[24:32]) for p in records]
    assert seqs[0] == (1, 1)
    assert seqs[1] == (1, 1 + len(INVITE))
    assert seqs[2] == (1 + len(INVITE), 1 + 22)


def test_a_message_longer_than_a_packet_is_split_into_segments() -> None:
    out = io.BytesIO()
    writer = PcapWriter(out)
    big = INVITE + b"x" * (MAX_SEGMENT + 10)
    writer.write("tcp", ("10.0.0.1", 40000), ("10.0.0.2", 5060), big, 1.0)
    parts = [p[40:] for _, _, p in read_records(out.getvalue())]
    assert len(parts) == 2 and b"".join(parts) == big


def test_a_name_instead_of_an_address_is_refused() -> None:
    writer = PcapWriter(io.BytesIO())
    with pytest.raises(ValueError):
        writer.write("udp", ("mg1.example", 5060), ("10.0.0.2", 5060), INVITE, 1.0)


def test_merging_workers_files_keeps_time_order() -> None:
    one, two = io.BytesIO(), io.BytesIO()
    w1, w2 = PcapWriter(one), PcapWriter(two)
    w1.write("udp", ("10.0.0.1", 1), ("10.0.0.2", 2), b"a", 3.0)
    w2.write("udp", ("10.0.0.1", 1), ("10.0.0.2", 2), b"b", 1.5)
    w1.write("udp", ("10.0.0.1", 1), ("10.0.0.2", 2), b"c", 4.0)
    merged = read_records(merge([one.getvalue(), two.getvalue()]))
    assert [p[-1:] for _, _, p in merged] == [b"b", b"a", b"c"]
    assert [(s, u) for s, u, _ in merged] == [(1, 500000), (3, 0), (4, 0)]


def test_tshark_reads_the_file_as_sip_with_good_checksums(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    path = tmp_path / "one.pcap"
    with open(path, "wb") as out:
        writer = PcapWriter(out)
        writer.write("udp", ("10.0.0.1", 5070), ("10.0.0.2", 5060), INVITE, 1.0)
        writer.write("udp", ("2001:db8::1", 5060), ("2001:db8::2", 5062), INVITE, 2.0)
        writer.write("tcp", ("10.0.0.1", 40000), ("10.0.0.2", 5060), INVITE, 3.0)
    rows = subprocess.run(
        ["tshark", "-r", str(path), "-o", "udp.check_checksum:TRUE",
         "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
         "-T", "fields", "-e", "sip.Method", "-e", "sip.Call-ID",
         "-e", "udp.checksum.status", "-e", "tcp.checksum.status", "-e", "ip.checksum.status"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.splitlines()  # fmt: skip
    fields = [r.split("\t") for r in rows]
    assert [f[:2] for f in fields] == [["INVITE", "abc@test"]] * 3, rows
    good = "1"  # tshark's checksum status: 0 bad, 1 good, 2 unverified
    assert fields[0][2] == good and fields[1][2] == good and fields[2][3] == good, rows
    assert fields[0][4] == good and fields[2][4] == good, rows
