"""HEPv3 copies of a call's messages, end to end: sipp calls through a running proxy to
a scripted gateway, with ``[capture] hep`` pointing at a collector -- a UDP socket of
the test, and sngrep (``-L udp:...``, an independent HEP reader) writing a pcap that
tshark then reads as SIP."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from sipdispatch.transport.hep import (
    CHUNK_CORRELATION,
    CHUNK_DST4,
    CHUNK_DST_PORT,
    CHUNK_PAYLOAD,
    CHUNK_SRC4,
    CHUNK_SRC_PORT,
    decode,
)

from .conftest import GatewayFactory, ProxyFactory, in_ci
from .gateway import GatewayThread
from .proxyctl import ProxyProcess, basic_config, write_list_file
from .sippctl import free_port
from .test_admin import calls, wait_for

pytestmark = pytest.mark.timeout(180)

DEADLINE = 20.0


def start(
    tmp_path: Path, proxy_factory: ProxyFactory, gw: GatewayThread, hep_port: int, pings: bool
) -> ProxyProcess:
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(tmp_path / "dispatcher.list", [f"1 {gw.uri} 8"])  # probed
    extra = (
        f'\n[capture]\nhep = "udp:127.0.0.1:{hep_port}"\nhep_id = 2001\n'
        f"capture_pings = {'true' if pings else 'false'}\n"
    )
    toml = basic_config(port, admin, list_file, ping_interval=1, extra=extra)
    toml = toml.replace("[dispatcher]\n", "[dispatcher]\nprobing_mode = 1\n", 1)  # every second
    assert "probing_mode = 1" in toml
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def first_line(payload: bytes) -> str:
    line = payload.split(b"\r\n", 1)[0].decode()
    return line.split(" ", 1)[0] if not line.startswith("SIP/") else " ".join(line.split()[:2])


def received(sock: socket.socket, until: float) -> list[dict[int, bytes]]:
    out: list[dict[int, bytes]] = []
    while time.monotonic() < until:
        sock.settimeout(max(until - time.monotonic(), 0.01))
        try:
            out.append(decode(sock.recv(65535)))
        except TimeoutError:
            break
    return out


def test_every_message_of_a_call_is_copied_with_its_real_addresses_and_call_id(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    gw = gateways("gw1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        proxy = start(tmp_path, proxy_factory, gw, collector.getsockname()[1], pings=False)
        wait_for(lambda: gw.options >= 2, DEADLINE, "two pings")  # pings are left out
        calls(proxy, tmp_path, 1, "call")
        copies = received(collector, time.monotonic() + 3.0)
    call_ids = {c[CHUNK_CORRELATION] for c in copies}
    assert len(call_ids) == 1, call_ids  # the call's only: no ping copied
    seen = [
        (
            first_line(c[CHUNK_PAYLOAD]),
            socket.inet_ntoa(c[CHUNK_SRC4]), int.from_bytes(c[CHUNK_SRC_PORT], "big"),
            socket.inet_ntoa(c[CHUNK_DST4]), int.from_bytes(c[CHUNK_DST_PORT], "big"),
        )
        for c in copies
    ]  # fmt: skip
    p, g = proxy.port, gw.port
    caller = next(sport for what, _, sport, _, dport in seen if what == "INVITE" and dport == p)

    def hop(what: str, src: int, dst: int) -> bool:
        return (what, "127.0.0.1", src, "127.0.0.1", dst) in seen

    for what in ("INVITE", "ACK", "BYE"):
        assert hop(what, caller, p) and hop(what, p, g), (what, seen)
    for what in ("SIP/2.0 100", "SIP/2.0 200"):
        assert hop(what, p, caller), (what, seen)
    assert hop("SIP/2.0 200", g, p), seen
    assert all(c[CHUNK_PAYLOAD].endswith(b"\r\n") for c in copies)


def test_sngrep_reads_the_copies_and_tshark_sees_the_call_in_its_pcap(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    if shutil.which("sngrep") is None or shutil.which("tshark") is None:
        if in_ci():
            pytest.fail("sngrep and tshark are needed: apt-get install sngrep tshark")
        pytest.skip("sngrep or tshark is not installed")
    gw = gateways("gw1")
    hep_port = free_port("udp")
    pcap = tmp_path / "hep.pcap"
    sngrep = subprocess.Popen(
        ["sngrep", "-L", f"udp:127.0.0.1:{hep_port}", "-N", "-q", "-O", str(pcap)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)  # let it bind (a copy before that is merely lost)
        proxy = start(tmp_path, proxy_factory, gw, hep_port, pings=False)
        calls(proxy, tmp_path, 1, "call")
        time.sleep(1.0)
    finally:
        sngrep.send_signal(signal.SIGTERM)
        try:
            sngrep.wait(10)
        except subprocess.TimeoutExpired:
            sngrep.kill()
            sngrep.wait(10)
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"udp.port=={proxy.port},sip", "-T", "fields",
         "-e", "sip.Method", "-e", "sip.Status-Code",
         "-e", "udp.srcport", "-e", "udp.dstport", "-e", "sip.Call-ID"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    p, g = str(proxy.port), str(gw.port)
    to_gw = {r[0] for r in rows if r[2] == p and r[3] == g}
    assert {"INVITE", "ACK", "BYE"} <= to_gw, rows
    assert {r[1] for r in rows if r[2] == g and r[3] == p} >= {"200"}, rows
    assert len({r[4] for r in rows}) == 1, rows


def test_over_tcp_a_calls_copies_reach_the_collector_on_one_connection(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    import struct
    import threading

    gw = gateways("gw1")
    got = bytearray()
    connections: list[object] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)

        def serve() -> None:
            conn, _ = listener.accept()
            connections.append(conn)
            with conn:
                while chunk := conn.recv(65536):
                    got.extend(chunk)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        port, admin = free_port(), free_port("tcp")
        list_file = write_list_file(tmp_path / "dispatcher.list", [f"1 {gw.uri}"])
        extra = f'\n[capture]\nhep = "tcp:127.0.0.1:{listener.getsockname()[1]}"\n'
        proxy = proxy_factory(
            basic_config(port, admin, list_file, extra=extra), port=port, admin_port=admin,
            expect_clean_exit=True,
        )  # fmt: skip
        calls(proxy, tmp_path, 2, "call")

        def packets() -> list[dict[int, bytes]]:
            out, at, data = [], 0, bytes(got)
            while at + 6 <= len(data):
                (size,) = struct.unpack("!H", data[at + 4 : at + 6])
                if at + size > len(data):
                    break
                out.append(decode(data[at : at + size]))
                at += size
            return out

        # 2 calls: INVITE, ACK, BYE on both legs, 100 up, 180, 200 and the BYE's 200 both ways.
        wait_for(lambda: len(packets()) >= 2 * 13, DEADLINE, "every copy over TCP")
        proxy.stop()
        thread.join(10)
    copies = packets()
    assert len(connections) == 1
    assert len({c[CHUNK_CORRELATION] for c in copies}) == 2
    firsts = [first_line(c[CHUNK_PAYLOAD]) for c in copies]
    assert firsts.count("INVITE") == 4 and firsts.count("BYE") == 4, firsts
