"""The integration test tools checked against each other, without the proxy.

sipp (the caller) talks straight to a scripted gateway; raw sockets check the
gateway's SIP details (Via echo, retransmission, TCP framing). If these pass, a
failing proxy test is about the proxy, not the harness.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from .conftest import GatewayFactory
from .gateway import GatewayThread, SipRecord, Transport, parse_message
from .sippctl import free_port, free_ports, parse_counts, run_sipp

pytestmark = pytest.mark.timeout(30)

TRANSPORTS = ["udp", "tcp"]
CALLS = 5
SIPP_TIMEOUT = 25


def _assert_ok(result_ok: bool, report: str) -> None:
    assert result_ok, report


# -- sipp against the gateway ---------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_uac_call_completes_invite_ack_bye(
    sipp: str, gateways: GatewayFactory, transport: Transport
) -> None:
    gw = gateways("gw1", transport)
    result = run_sipp(
        "uac_call",
        "127.0.0.1",
        gw.port,
        transport=transport,
        calls=CALLS,
        rate=20,
        timeout=SIPP_TIMEOUT,
    )
    _assert_ok(result.ok and result.successful == CALLS, result.report())
    gw.wait_for(lambda: gw.invites == CALLS and gw.acks == CALLS and gw.byes == CALLS)
    outcomes = gw.outcomes()
    assert len(outcomes) == CALLS
    assert all(o.final_code == 200 and o.acked for o in outcomes), outcomes
    for invite in gw.requests("INVITE"):
        assert invite.uri is not None and invite.uri.startswith("sip:1111111@")
        assert invite.transport == transport
    # ACK and BYE are in-dialog: they carry the gateway's To-tag and go to its Contact.
    for req in gw.requests("ACK") + gw.requests("BYE"):
        assert req.to_tag is not None and req.to_tag.startswith("gw1-")
        assert req.uri == f"sip:gw1@127.0.0.1:{gw.port};transport={transport}"


@pytest.mark.parametrize(
    ("code", "transport"),
    [(404, "udp"), (404, "tcp"), (408, "udp"), (503, "udp"), (503, "tcp")],
)
def test_rejected_invite_is_acked_hop_by_hop(
    sipp: str, gateways: GatewayFactory, code: int, transport: Transport
) -> None:
    gw = gateways("gw1", transport, reject=code)
    result = run_sipp(
        f"uac_expect_{code}",
        "127.0.0.1",
        gw.port,
        transport=transport,
        calls=3,
        rate=20,
        timeout=SIPP_TIMEOUT,
    )
    _assert_ok(result.ok and result.successful == 3, result.report())
    gw.wait_for(lambda: gw.acks == 3)
    assert all(o.final_code == code and o.acked for o in gw.outcomes()), gw.outcomes()
    # RFC 3261 §17.1.1.3: the ACK for a non-2xx response reuses the INVITE's branch.
    invites = {r.call_id: r for r in gw.requests("INVITE")}
    for ack in gw.requests("ACK"):
        assert ack.branch == invites[ack.call_id].branch
        assert ack.uri == invites[ack.call_id].uri
        assert ack.to_tag is not None


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_during_ringing_gets_200_then_487(
    sipp: str, gateways: GatewayFactory, transport: Transport
) -> None:
    # The answer would come long after the scenario's 300 ms pause: CANCEL wins.
    gw = gateways("gw1", transport, answer_delay_ms=20_000)
    result = run_sipp(
        "uac_cancel",
        "127.0.0.1",
        gw.port,
        transport=transport,
        calls=3,
        rate=20,
        timeout=SIPP_TIMEOUT,
    )
    _assert_ok(result.ok and result.successful == 3, result.report())
    gw.wait_for(lambda: gw.cancels == 3 and gw.acks == 3)
    outcomes = gw.outcomes()
    assert all(o.cancelled and o.final_code == 487 and o.acked for o in outcomes), outcomes
    invites = {r.call_id: r for r in gw.requests("INVITE")}
    for cancel in gw.requests("CANCEL"):
        assert cancel.branch == invites[cancel.call_id].branch


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_back_to_back_180_and_200_complete_calls(
    sipp: str, gateways: GatewayFactory, transport: Transport
) -> None:
    gw = gateways("gw1", transport, back_to_back=True)
    result = run_sipp(
        "uac_call",
        "127.0.0.1",
        gw.port,
        transport=transport,
        calls=CALLS,
        rate=20,
        timeout=SIPP_TIMEOUT,
    )
    _assert_ok(result.ok and result.successful == CALLS, result.report())
    gw.wait_for(lambda: gw.byes == CALLS)
    assert all(o.final_code == 200 and o.acked for o in gw.outcomes())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_options_answered(sipp: str, gateways: GatewayFactory, transport: Transport) -> None:
    gw = gateways("gw1", transport)
    result = run_sipp(
        "uac_options",
        "127.0.0.1",
        gw.port,
        transport=transport,
        calls=2,
        rate=20,
        timeout=SIPP_TIMEOUT,
    )
    _assert_ok(result.ok and result.successful == 2, result.report())
    gw.wait_for(lambda: gw.options == 2)


def test_unexpected_final_is_reported_as_failed_call(sipp: str, gateways: GatewayFactory) -> None:
    gw = gateways("gw1", "udp", options_code=503)
    result = run_sipp("uac_options", "127.0.0.1", gw.port, calls=1, timeout=SIPP_TIMEOUT)
    assert result.returncode == 1, result.report()
    assert (result.successful, result.failed) == (0, 1), result.report()
    assert not result.ok


def test_sipp_cut_short_is_not_ok(sipp: str, gateways: GatewayFactory) -> None:
    # sipp's -timeout only stops new calls; an unanswered INVITE keeps it running, so
    # run_sipp terminates it -- and sipp then exits 0 or 97 with nothing counted.
    gw = gateways("gw1", "udp", silent=True)
    result = run_sipp("uac_call", "127.0.0.1", gw.port, calls=1, timeout=1)
    assert result.timed_out, result.report()
    assert not result.ok
    assert result.successful == 0
    assert gw.invites == 1


def test_behaviour_change_applies_to_next_call(sipp: str, gateways: GatewayFactory) -> None:
    gw = gateways("gw1", "udp")
    first = run_sipp("uac_call", "127.0.0.1", gw.port, calls=1, timeout=SIPP_TIMEOUT)
    _assert_ok(first.ok, first.report())
    gw.set_behaviour(reject=503)
    second = run_sipp("uac_expect_503", "127.0.0.1", gw.port, calls=1, timeout=SIPP_TIMEOUT)
    _assert_ok(second.ok, second.report())
    gw.wait_for(lambda: gw.acks == 2)
    assert sorted(o.final_code or 0 for o in gw.outcomes()) == [200, 503]


# -- the gateway's SIP details, with raw sockets ------------------------------------


def _invite(port: int, call_id: str, vias: list[str], extra: str = "") -> bytes:
    via_lines = "".join(f"Via: {v}\r\n" for v in vias)
    return (
        f"INVITE sip:1111111@127.0.0.1:{port} SIP/2.0\r\n"
        f"{via_lines}"
        "From: <sip:caller@127.0.0.1>;tag=abc\r\n"
        f"To: <sip:1111111@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 7 INVITE\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _request(method: str, port: int, call_id: str, branch: str, to_tag: str = "") -> bytes:
    tag = f";tag={to_tag}" if to_tag else ""
    return (
        f"{method} sip:1111111@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch}\r\n"
        "From: <sip:caller@127.0.0.1>;tag=abc\r\n"
        f"To: <sip:1111111@127.0.0.1:{port}>{tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 7 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
def udp_client() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10.0)
    yield sock
    sock.close()


def _recv_udp(sock: socket.socket) -> SipRecord:
    data, addr = sock.recvfrom(65535)
    return parse_message(data, addr)


def test_response_echoes_every_via_and_record_route_verbatim(
    gateways: GatewayFactory, udp_client: socket.socket
) -> None:
    gw = gateways("gw1", "udp")
    vias = [
        # A proxy may fold its Via and the one below into one comma-separated line.
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKtop;rport=5999,"
        " SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKmid",
        "SIP/2.0/UDP 10.0.0.2:5070;received=10.0.0.9;branch=z9hG4bKlow",
    ]
    rr = "Record-Route: <sip:127.0.0.1:5999;lr>\r\nRecord-Route: <sip:10.0.0.1;lr;r2=on>\r\n"
    udp_client.sendto(_invite(gw.port, "via-echo", vias, rr), ("127.0.0.1", gw.port))
    codes: list[int] = []
    while 200 not in codes:
        resp = _recv_udp(udp_client)
        assert resp.status is not None
        codes.append(resp.status)
        assert resp.get_all("via") == vias
        assert resp.call_id == "via-echo" and resp.cseq == (7, "INVITE")
        if resp.status >= 180:
            assert resp.get_all("record-route") == [
                "<sip:127.0.0.1:5999;lr>",
                "<sip:10.0.0.1;lr;r2=on>",
            ]
            assert resp.to_tag is not None
            assert resp.get("contact") == f"<sip:gw1@127.0.0.1:{gw.port};transport=udp>"
    assert codes == [100, 180, 200]
    assert resp.body.startswith(b"v=0") and resp.get("content-type") == "application/sdp"
    invite = gw.requests("INVITE")[0]
    assert invite.vias[:2] == [
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKtop;rport=5999",
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKmid",
    ]
    assert invite.branch == "z9hG4bKtop"


def test_udp_200_is_retransmitted_until_ack(udp_client: socket.socket) -> None:
    # Short timers keep the test fast; the schedule is T1, 2*T1, 4*T1 ... capped at T2.
    with GatewayThread("gw1", "udp", t1=0.05, t2=0.2, send_trying=False) as gw:
        udp_client.sendto(
            _invite(gw.port, "retrans", ["SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKr1"]),
            ("127.0.0.1", gw.port),
        )
        oks: list[float] = []
        to_tag = ""
        while len(oks) < 4:
            resp = _recv_udp(udp_client)
            if resp.status == 200:
                oks.append(time.monotonic())
                to_tag = resp.to_tag or ""
        # Retransmissions are spaced out, not a burst (loose bound: a loaded box is slow).
        assert oks[-1] - oks[0] >= 0.05 + 0.1 + 0.2 - 0.05
        udp_client.sendto(
            _request("ACK", gw.port, "retrans", "z9hG4bKack", to_tag), ("127.0.0.1", gw.port)
        )
        gw.wait_for(lambda: any(o.acked for o in gw.outcomes()))
        assert gw.outcomes()[0].final_code == 200


def test_silent_gateway_records_invite_but_answers_options(
    gateways: GatewayFactory, udp_client: socket.socket
) -> None:
    gw = gateways("gw1", "udp", silent=True)
    addr = ("127.0.0.1", gw.port)
    udp_client.sendto(_invite(gw.port, "quiet", ["SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKq"]), addr)
    udp_client.sendto(_request("OPTIONS", gw.port, "ping", "z9hG4bKp"), addr)
    # One socket, one gateway thread: the INVITE was handled before the OPTIONS, so
    # the first datagram back being the OPTIONS answer proves the INVITE got none.
    first = _recv_udp(udp_client)
    assert first.status == 200 and first.cseq == (7, "OPTIONS")
    assert gw.invites == 1 and gw.outcomes()[0].final_code is None


def test_retransmitted_request_is_counted_once(
    gateways: GatewayFactory, udp_client: socket.socket
) -> None:
    gw = gateways("gw1", "udp", options_code=None)
    addr = ("127.0.0.1", gw.port)
    for _ in range(3):
        udp_client.sendto(_request("OPTIONS", gw.port, "dup", "z9hG4bKdup"), addr)
    gw.wait_for(lambda: len(gw.received) == 3)
    assert gw.options == 1
    assert [r.retransmission for r in gw.received] == [False, True, True]


def test_tcp_framing_split_and_coalesced_messages(gateways: GatewayFactory) -> None:
    gw = gateways("gw1", "tcp", back_to_back=True, send_trying=False)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10.0) as conn:
        invite = _invite(gw.port, "tcp-1", ["SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKt1"])
        options = _request("OPTIONS", gw.port, "tcp-2", "z9hG4bKt2")
        # Split mid-headers, then the rest glued to a second message, after a keep-alive.
        conn.sendall(b"\r\n\r\n" + invite[:40])
        conn.sendall(invite[40:] + options)
        buffer = b""
        responses: list[SipRecord] = []
        while len(responses) < 3:
            chunk = conn.recv(65535)
            assert chunk, "gateway closed the connection"
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = parse_message(head + b"\r\n\r\n").get("content-length") or "0"
                if len(rest) < int(length):
                    break
                responses.append(parse_message(head + b"\r\n\r\n" + rest[: int(length)]))
                buffer = rest[int(length) :]
    got = sorted((r.status or 0, r.cseq[1]) for r in responses)
    assert got == [(180, "INVITE"), (200, "INVITE"), (200, "OPTIONS")]
    assert gw.invites == 1 and gw.options == 1


def test_free_port_is_free_for_udp_and_tcp() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in [*ports, free_port("udp"), free_port("tcp")]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", port))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", port))


def test_parse_counts_reads_stat_csv_then_screen() -> None:
    csv_text = "StartTime;SuccessfulCall(C);FailedCall(C)\nx;1;0\ny;4;2\n"
    assert parse_counts(csv_text, "") == (4, 2)
    screen = (
        "  Successful call        |        0                  |        7   \n"
        "  Failed call            |        0                  |        1   \n"
    )
    assert parse_counts("", screen) == (7, 1)
    assert parse_counts("", "") == (-1, -1)
