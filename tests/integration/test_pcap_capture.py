"""pcap on demand and the ladder of failed calls, end to end: sipp calls through a
running proxy to scripted gateways (mg1 rejects with 404, mg2 answers), the capture
started and stopped over JSON-RPC, and the file read by tshark, an independent
reader of pcap and SIP."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import GatewayFactory, ProxyFactory, in_ci
from .gateway import GatewayThread
from .proxyctl import ProxyProcess, basic_config, toml_str, write_list_file
from .sippctl import free_port, run_sipp
from .test_admin import result as rpc
from .test_admin import rpc as rpc_response
from .test_admin import wait_for

pytestmark = pytest.mark.timeout(180)

DEADLINE = 20.0
SIPP_TIMEOUT = 60.0


def error(proxy: ProxyProcess, method: str, *params: object) -> str:
    response = rpc_response(proxy, method, *params)
    assert "error" in response, response
    return str(response["error"]["message"])


def need_tshark() -> None:
    if shutil.which("tshark") is None:
        if in_ci():
            pytest.fail("tshark is needed: apt-get install tshark")
        pytest.skip("tshark is not installed")


def start(
    tmp_path: Path, proxy_factory: ProxyFactory, mg1: GatewayThread, mg2: GatewayThread,
    capture: str = "",
) -> ProxyProcess:  # fmt: skip
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(
        tmp_path / "dispatcher.list", [f"1 {mg1.uri} 0 20", f"1 {mg2.uri} 0 10"]
    )
    extra = f"\n[capture]\ndir = {toml_str(str(tmp_path / 'captures'))}\n{capture}"
    toml = basic_config(port, admin, list_file, algorithm=8, extra=extra)
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def call(proxy: ProxyProcess, tmp_path: Path, name: str, call_id: str = "") -> None:
    extra = ["-cid_str", call_id] if call_id else []
    res = run_sipp(
        "uac_call", "127.0.0.1", proxy.port, calls=1, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / name, extra_args=extra,
    )  # fmt: skip
    assert res.ok and res.successful == 1, res.report()


def tshark(path: Path, port: int) -> list[list[str]]:
    """The SIP messages of a pcap as tshark reads them; ``port`` (the proxy's, in every
    message) is decoded as SIP whatever other protocol tshark knows for the other port
    (its SIP heuristics alone would depend on the free ports the test was given)."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-d", f"udp.port=={port},sip", "-T", "fields",
         "-e", "sip.Method", "-e", "sip.Status-Code",
         "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport",
         "-e", "sip.Call-ID", "-e", "udp.checksum.status", "-o", "udp.check_checksum:TRUE"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def test_a_capture_of_all_writes_a_pcap_tshark_reads_with_both_legs_and_real_ports(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    need_tshark()
    mg1, mg2 = gateways("mg1", reject=404), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, mg1, mg2)
    started = rpc(proxy, "capture.start", "all", 60, "failing")
    assert started["NAME"] == "failing" and started["STATE"] == "running", started
    call(proxy, tmp_path, "c1")
    stopped = rpc(proxy, "capture.stop", "failing")
    assert stopped[0]["STATE"] == "stopped" and stopped[0]["PACKETS"] >= 10, stopped
    listed = rpc(proxy, "capture.list")
    assert [c["NAME"] for c in listed] == ["failing"], listed
    path = Path(listed[0]["FILES"][0])
    assert path.parent == tmp_path / "captures" and listed[0]["BYTES"] == path.stat().st_size
    rows = tshark(path, proxy.port)
    p, g1, g2 = str(proxy.port), str(mg1.port), str(mg2.port)

    def hop(what: str, src: str, dst: str) -> bool:
        return any(
            what in (r[0], r[1]) and r[3] == src and r[5] == dst and r[2] == r[4] == "127.0.0.1"
            for r in rows
        )

    assert hop("INVITE", p, g1) and hop("404", g1, p), rows
    assert hop("INVITE", p, g2) and hop("200", g2, p), rows
    assert hop("ACK", p, g2) and hop("BYE", p, g2), rows
    caller = next(r[3] for r in rows if r[0] == "INVITE" and r[5] == p)
    assert hop("200", p, caller) and hop("BYE", caller, p), rows
    assert len({r[6] for r in rows}) == 1, rows  # one call
    assert {r[7] for r in rows} == {"1"}, rows  # every UDP checksum verified good


def test_a_capture_of_one_call_id_or_one_gateway_holds_nothing_else(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    need_tshark()
    mg1, mg2 = gateways("mg1", reject=404), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, mg1, mg2)
    rpc(proxy, "capture.start", "wanted-call@test", 60, "one-call")
    rpc(proxy, "capture.start", f"127.0.0.1:{mg1.port}", 60, "mg1")
    call(proxy, tmp_path, "other", "other-call@test")
    call(proxy, tmp_path, "wanted", "wanted-call@test")
    rpc(proxy, "capture.stop", "all")
    files = {c["NAME"]: Path(c["FILES"][0]) for c in rpc(proxy, "capture.list")}
    rows = tshark(files["one-call"], proxy.port)
    assert {r[6] for r in rows} == {"wanted-call@test"}, rows
    assert {"INVITE", "ACK", "BYE"} <= {r[0] for r in rows}, rows
    gw_rows = tshark(files["mg1"], proxy.port)
    # mg1's 404 marked it inactive (mark_failed "ip"): the second call went to mg2 alone.
    assert {r[6] for r in gw_rows} == {"other-call@test"}, gw_rows
    assert {r[0] or r[1] for r in gw_rows} == {"INVITE", "100", "404", "ACK"}, gw_rows
    assert all(str(mg1.port) in (r[3], r[5]) for r in gw_rows), gw_rows


def test_a_capture_ends_at_its_time_and_at_its_size_cap(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    mg1, mg2 = gateways("mg1", reject=404), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, mg1, mg2, capture="max_bytes = 10000\n")
    rpc(proxy, "capture.start", "all", 1, "short")
    wait_for(
        lambda: any(c["STATE"] == "time" for c in rpc(proxy, "capture.list")),
        DEADLINE, "the capture ended on time with no traffic",
    )  # fmt: skip
    rpc(proxy, "capture.start", "all", 60, "small")
    for k in range(3):
        call(proxy, tmp_path, f"c{k}")
    small = next(c for c in rpc(proxy, "capture.list") if c["NAME"] == "small")
    assert small["STATE"] == "size" and 10000 <= small["BYTES"] < 14000, small


def test_capture_start_refuses_what_it_cannot_do_with_a_reason(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, mg1, mg2, capture="max_seconds = 600\n")
    for params, text in [
        (("all", 601), "Capture Failed: SECONDS must be 1..600"),
        (("all", 10, "../etc"), "Capture Failed: NAME must be"),
        (("all", "ten"), "SECONDS must be an integer"),
    ]:
        assert text in error(proxy, "capture.start", *params)
    rpc(proxy, "capture.start", "all", 10, "twice")
    assert "running already" in error(proxy, "capture.start", "all", 10, "twice")
    assert "no capture named nothing" in error(proxy, "capture.stop", "nothing")


def test_the_ladder_keeps_a_failed_over_calls_messages_and_forgets_an_answered_one(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    mg1, mg2 = gateways("mg1", reject=404), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, mg1, mg2)
    call(proxy, tmp_path, "c1", "failed-over@test")
    rpc(proxy, "dispatcher.set_state", "ip", 1, mg1.uri)
    call(proxy, tmp_path, "c2", "answered@test")
    kept = rpc(proxy, "capture.calls")
    assert [c["call_id"] for c in kept] == ["failed-over@test"], kept
    assert kept[0]["outcome"] == "failed_over" and kept[0]["status"] == 200, kept
    ladder: dict[str, Any] = rpc(proxy, "capture.ladder", "failed-over@test")
    lines = [(m["first"], m["src"], m["dst"]) for m in ladder["messages"]]
    p = f"127.0.0.1:{proxy.port}"
    assert ("SIP/2.0 404 Not Found", f"127.0.0.1:{mg1.port}", p) in lines, lines
    assert any(f.startswith("SIP/2.0 200") and s == f"127.0.0.1:{mg2.port}" for f, s, _ in lines)
    assert lines[0][0].startswith("INVITE ") and lines[0][2] == p, lines
    assert "Call-ID: failed-over@test" in ladder["messages"][0]["text"]
    assert "no failed call" in error(proxy, "capture.ladder", "answered@test")


def test_the_console_downloads_a_capture_as_one_pcap(
    tmp_path: Path, proxy_factory: ProxyFactory, gateways: GatewayFactory
) -> None:
    mg1, mg2 = gateways("mg1", reject=404), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, mg1, mg2)
    rpc(proxy, "capture.start", "all", 60, "dl")
    call(proxy, tmp_path, "c1")
    rpc(proxy, "capture.stop", "dl")
    with urllib.request.urlopen(f"{proxy.admin_url}/console/capture/dl.pcap", timeout=10) as r:
        assert r.headers["Content-Type"] == "application/vnd.tcpdump.pcap"
        assert "dl.pcap" in r.headers["Content-Disposition"]
        body = r.read()
    assert body == (tmp_path / "captures" / "sipdispatch-dl.pcap").read_bytes()
