"""Calls through ``sipdispatch run``: sipp is the caller, scripted gateways answer.

Each test starts a real proxy process on loopback with a dispatcher.list naming
the gateways, drives calls with sipp, and checks both what sipp saw and what the
gateways received.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from .conftest import GatewayFactory, ProxyFactory
from .gateway import GatewayThread
from .proxyctl import basic_config, write_list_file
from .sippctl import free_port, run_sipp

pytestmark = pytest.mark.timeout(120)

SIPP_TIMEOUT = 60


def start(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gws: list[GatewayThread],
    *,
    priorities: list[int] | None = None,
    **config: object,
) -> tuple[int, object]:
    port, admin = free_port(), free_port()
    prio = priorities or [0] * len(gws)
    lines = [f"1 {gw.uri} 0 {p}" for gw, p in zip(gws, prio, strict=True)]
    list_file = write_list_file(tmp_path / "dispatcher.list", lines)
    toml = basic_config(port, admin, list_file, **config)  # type: ignore[arg-type]
    proxy = proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)
    return port, proxy


@pytest.mark.parametrize("caller", ["udp", "tcp"])
@pytest.mark.parametrize("gateway", ["udp", "tcp"])
def test_calls_complete_through_the_proxy_round_robin(
    sipp: str,
    tmp_path: Path,
    gateways: GatewayFactory,
    proxy_factory: ProxyFactory,
    caller: str,
    gateway: str,
) -> None:
    gw1 = gateways("mg1", gateway)  # type: ignore[arg-type]
    gw2 = gateways("mg2", gateway)  # type: ignore[arg-type]
    port, _ = start(tmp_path, proxy_factory, [gw1, gw2])
    result = run_sipp(
        "uac_call",
        "127.0.0.1",
        port,
        transport=caller,  # type: ignore[arg-type]
        calls=10,
        rate=20,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
    )
    assert result.ok, result.report()
    assert result.successful == 10
    for gw in (gw1, gw2):
        gw.wait_for(lambda gw=gw: gw.byes == 5, timeout=20)
        assert (gw.invites, gw.acks, gw.byes) == (5, 5, 5), gw.describe()
        invite = gw.requests("INVITE")[0]
        vias = invite.vias
        assert len(vias) == 2, vias
        assert f"127.0.0.1:{port}" in vias[0]
        assert invite.get("max-forwards") == "69"
        rr = ", ".join(invite.get_all("record-route"))
        assert f"127.0.0.1:{port}" in rr and ";lr" in rr
        if caller != gateway:
            # Double Record-Route: one entry per transport.
            assert len(invite.values("record-route")) == 2, rr
        bye = gw.requests("BYE")[0]
        assert bye.get("route") is None  # our Route was consumed


def test_cancel_gets_200_then_487_through_the_proxy(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg1", "udp", answer_delay_ms=10_000)
    port, _ = start(tmp_path, proxy_factory, [gw])
    result = run_sipp(
        "uac_cancel", "127.0.0.1", port, calls=3, rate=5, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
    )  # fmt: skip
    assert result.ok, result.report()
    gw.wait_for(lambda: gw.cancels == 3 and gw.acks == 3, timeout=20)
    assert all(o.cancelled for o in gw.outcomes()), gw.describe()


def test_gateway_that_never_answers_gives_408_after_fr_timer(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg1", "udp", silent=True)
    port, _ = start(tmp_path, proxy_factory, [gw], fr_timer=1500, failover_on=())
    began = time.monotonic()
    result = run_sipp(
        "uac_expect_408", "127.0.0.1", port, calls=1, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
    )  # fmt: skip
    assert result.ok, result.report()
    assert time.monotonic() - began >= 1.4
    assert gw.invites == 1


def test_180_and_200_sent_back_to_back_arrive_in_order(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg1", "udp", back_to_back=True)
    port, _ = start(tmp_path, proxy_factory, [gw])
    result = run_sipp(
        "uac_call", "127.0.0.1", port, calls=20, rate=50, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
    )  # fmt: skip
    # sipp fails a call on a 180 that comes after the 200 (unexpected message).
    assert result.ok, result.report()
    assert result.successful == 20


def test_404_from_first_gateway_fails_over_and_caller_never_sees_it(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1 = gateways("mg1", "udp", reject=404)
    mg2 = gateways("mg2", "udp")
    port, _ = start(tmp_path, proxy_factory, [mg1, mg2], priorities=[10, 5], algorithm=8)
    result = run_sipp(
        "uac_call", "127.0.0.1", port, calls=1, timeout=SIPP_TIMEOUT, workdir=tmp_path / "sipp"
    )
    assert result.ok, result.report()
    mg1.wait_for(lambda: mg1.acks == 1)
    assert mg1.invites == 1 and mg2.invites == 1
    # No 404 status line reached the caller (sipp's trace also holds timestamps,
    # ports and tags, so look at status lines only).
    statuses = re.findall(r"^SIP/2\.0 (\d{3})", result.messages, re.MULTILINE)
    assert "200" in statuses and "404" not in statuses, statuses


def test_no_usable_destination_gets_503(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg1", "udp")
    port, admin = free_port(), free_port()
    # Flag 4: the only destination is disabled.
    list_file = write_list_file(tmp_path / "dispatcher.list", [f"1 {gw.uri} 4 0"])
    proxy_factory(basic_config(port, admin, list_file), port=port, admin_port=admin)
    result = run_sipp(
        "uac_expect_503", "127.0.0.1", port, calls=1, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
    )  # fmt: skip
    assert result.ok, result.report()
    assert gw.invites == 0


def _udp_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        return s.recv(65535)


def test_malformed_request_gets_400_and_proxy_keeps_running(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mg1", "udp")
    port, proxy = start(tmp_path, proxy_factory, [gw])
    # No Call-ID. `rport` makes the 400 come back to this socket (RFC 3581)
    # rather than to the Via's port 9.
    bad = (
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad1;rport\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    answer = _udp_exchange(port, bad)
    assert answer.startswith(b"SIP/2.0 400 Missing Call-ID header"), answer
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"\x00\xff" * 50, b"INVITE\r\n\r\n", b"SIP/2.0 200\r\n\r\n", b"\r\n\r\n"):
            s.sendto(junk, ("127.0.0.1", port))
    good = bad.replace(b"CSeq: 1", b"Call-ID: ok1\r\nCSeq: 1").replace(b"bad1", b"good1")
    answer = _udp_exchange(port, good)
    assert answer.startswith(b"SIP/2.0 200"), answer  # relayed to the gateway and back
    assert proxy.alive()  # type: ignore[attr-defined]
