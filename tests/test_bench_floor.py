"""bench/floor.py, the bench's bare stateless forwarder, still relays the bench's calls.

It is a measuring tool (the floor of a Python proxy's CPU per call); this keeps it
honest on real loopback sockets: an INVITE reaches the gateway chosen by its Call-ID
with our Via and Record-Route on top, the answer reaches the caller without our Via,
and the ACK along the route set reaches the same gateway without its Route.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

FLOOR = Path(__file__).resolve().parent.parent / "bench" / "floor.py"
DEADLINE = 20.0


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(DEADLINE)
    return s


def free_udp_port() -> int:
    with udp() as s:
        return int(s.getsockname()[1])


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    caller, gw1, gw2 = udp(), udp(), udp()
    yield caller, gw1, gw2
    for s in (caller, gw1, gw2):
        s.close()


def start_floor(port: int, gateways: list[int]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(FLOOR),
            "--port",
            str(port),
            "--gateways",
            ",".join(map(str, gateways)),
        ],
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # blocks until ready (or exit: empty line)
    assert b"floor ready" in line, line
    return proc


def test_floor_relays_invite_answer_and_ack_of_one_call(
    sockets: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    caller, gw1, gw2 = sockets
    gws = [gw1, gw2]
    gw_ports = [s.getsockname()[1] for s in gws]
    caller_port = caller.getsockname()[1]
    port = free_udp_port()
    proc = start_floor(port, gw_ports)
    try:
        call_id = b"floor-test-1@127.0.0.1"
        gw = gws[zlib.crc32(call_id) % 2]
        invite = (
            b"INVITE sip:service@127.0.0.1:%d SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-1-1\r\n"
            b"From: caller <sip:caller@127.0.0.1>;tag=1\r\n"
            b"To: service <sip:service@127.0.0.1>\r\n"
            b"Call-ID: %s\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ) % (port, caller_port, call_id)
        caller.sendto(invite, ("127.0.0.1", port))
        got, _ = gw.recvfrom(65535)
        lines = got.split(b"\r\n")
        assert lines[0] == invite.split(b"\r\n")[0]
        assert lines[1] == b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKfl-1-1" % port
        assert lines[2] == b"Record-Route: <sip:127.0.0.1:%d;lr>" % port
        assert lines[3].startswith(b"Via: SIP/2.0/UDP 127.0.0.1:%d" % caller_port)

        # sipp answers with the Via set on one comma-separated line
        ok = (
            b"SIP/2.0 200 OK\r\nVia: %s, %s\r\n%s\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"
            b"Content-Length: 0\r\n\r\n"
        ) % (lines[1][5:], lines[3][5:], lines[2], call_id)
        gw.sendto(ok, ("127.0.0.1", port))
        answer, _ = caller.recvfrom(65535)
        assert answer.split(b"\r\n")[1] == lines[3]
        assert b"z9hG4bKfl" not in answer

        ack = (
            b"ACK sip:gw@127.0.0.1:%d SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-1-2\r\n"
            b"Route: <sip:127.0.0.1:%d;lr>\r\n"
            b"Call-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        ) % (gw.getsockname()[1], caller_port, port, call_id)
        caller.sendto(ack, ("127.0.0.1", port))
        got, _ = gw.recvfrom(65535)
        assert got.startswith(b"ACK ") and b"Route:" not in got and b"Record-Route" not in got
        deadline = time.monotonic() + 0.2
        other = gws[1 - gws.index(gw)]
        other.settimeout(max(0.0, deadline - time.monotonic()))
        with pytest.raises(TimeoutError):
            other.recvfrom(65535)  # nothing went to the other gateway
    finally:
        proc.terminate()
        proc.wait(DEADLINE)
