"""Operating the proxy day to day, seen from outside: the call log, timestamps on every
line, the outcome metrics, ``GET /health`` and the warnings at load.

sipp is the caller, scripted gateways answer; every wait polls with a generous deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import GatewayFactory, ProxyFactory
from .proxyctl import ProxyProcess, basic_config, proxy_env, write_list_file
from .sippctl import SippResult, free_port, run_sipp, start_sipp
from .test_admin import http, rpc

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def start(
    tmp_path: Path, proxy_factory: ProxyFactory, lines: list[str], extra: str = "", **kw: object
) -> ProxyProcess:
    port, admin = free_port(), free_port()
    list_file = write_list_file(tmp_path / "dispatcher.list", lines)
    toml = basic_config(port, admin, list_file, extra=extra, **kw)  # type: ignore[arg-type]
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def call(proxy: ProxyProcess, tmp_path: Path, name: str, **kw: object) -> SippResult:
    return run_sipp(
        "uac_call",
        "127.0.0.1",
        proxy.port,
        timeout=60,
        workdir=tmp_path / f"sipp-{name}",
        **kw,  # type: ignore[arg-type]
    )


def wait_for(what: Callable[[], object], timeout: float = WAIT) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout:.0f} s")
        time.sleep(0.05)


def call_lines(proxy: ProxyProcess) -> list[str]:
    return [line for line in proxy.log_text().splitlines() if "sipdispatch.calls" in line]


def test_a_failed_over_call_is_one_info_line_and_a_simple_success_none(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1, mg2 = gateways("mg1", reject=404), gateways("mg2")
    proxy = start(
        tmp_path,
        proxy_factory,
        [f"1 {mg1.uri} 0 10", f"1 {mg2.uri} 0 5"],
        algorithm=8,
        extra='mark_failed = "ip"\n',
    )
    first = call(proxy, tmp_path, "first")
    assert first.ok, first.report()
    [line] = wait_for(lambda: call_lines(proxy))  # type: ignore[misc]
    mg1_hp, mg2_hp = mg1.uri.removeprefix("sip:"), mg2.uri.removeprefix("sip:")
    pattern = (
        r"INFO sipdispatch\.calls: call \S+ from 127\.0\.0\.1:\d+ "
        rf"sip:1111111@127\.0\.0\.1:{proxy.port}: "
        rf"{re.escape(mg1_hp)} 404 -> {re.escape(mg2_hp)} 200 \(\d+\.\d\d s\)$"
    )
    assert re.search(pattern, line), line
    # MG1 is now IP: the next call simply succeeds on MG2 and writes no line.
    more = call(proxy, tmp_path, "more", calls=2)
    assert more.ok, more.report()
    wait_for(lambda: mg2.invites == 3)
    assert len(call_lines(proxy)) == 1
    # Every line of the log has its time, the ready line included.
    lines = proxy.log_text().splitlines()
    assert any("sipdispatch ready" in x for x in lines)
    assert all(TIMESTAMP.match(x) for x in lines), lines


def test_log_format_json_writes_every_line_as_one_json_object(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1 = gateways("mg1", reject=486)
    proxy = start(
        tmp_path,
        proxy_factory,
        [f"1 {mg1.uri} 0 0"],
        extra='\n[log]\nformat = "json"\ncalls = "all"\n',
    )
    result = call(proxy, tmp_path, "rejected", extra_args=["-aa"])
    assert not result.ok  # sipp's scenario wants a 200
    wait_for(lambda: any('"event": "call"' in x for x in proxy.log_text().splitlines()))
    objects = [json.loads(x) for x in proxy.log_text().splitlines()]
    assert any(o["message"].startswith("sipdispatch ready") for o in objects)
    [rec] = [o for o in objects if o.get("event") == "call"]
    assert rec["status"] == 486 and rec["outcome"] == "rejected"
    assert rec["attempts"] == [{"destination": mg1.uri, "status": 486, "timeout": False, "set": 1}]
    assert rec["ruri"] == f"sip:1111111@127.0.0.1:{proxy.port}" and rec["set"] == 1


# -- metrics, /health, stats -------------------------------------------------------------------


def get(url: str) -> tuple[int, bytes]:
    status, _, body = http(url, None, method="GET")
    return status, body


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_outcomes_set_up_times_health_and_stats_after_real_calls(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1, mg2 = gateways("mg1", reject=503), gateways("mg2")
    proxy = start(
        tmp_path,
        proxy_factory,
        [f"1 {mg1.uri} 0 10", f"1 {mg2.uri} 0 5"],
        algorithm=8,
        extra='mark_failed = ""\n',
    )
    status, body = get(f"{proxy.admin_url}/health")
    assert status == 200, body
    summary = json.loads(body)
    assert body.count(b"\n") == 1 and summary["status"] == "ok"
    assert summary["sets"] == {"1": {"destinations": 2, "usable": 2}}
    result = call(proxy, tmp_path, "calls", calls=3, rate=20)
    assert result.ok, result.report()
    wait_for(lambda: mg2.byes == 3)
    _, raw = get(f"{proxy.admin_url}/metrics")
    text = raw.decode()
    calls = "sipdispatch_destination_calls_total"
    assert metric(text, calls, uri=mg1.uri, outcome="rejected", code_class="5xx") == 3
    assert metric(text, calls, uri=mg2.uri, outcome="answered") == 3
    assert metric(text, calls, uri=mg1.uri, outcome="answered") == 0
    assert metric(text, "sipdispatch_call_setup_seconds_count") == 3
    assert metric(text, "sipdispatch_call_setup_seconds_bucket", le="+Inf") == 3
    assert metric(text, "sipdispatch_calls_in_progress") == 0  # every call ended by BYE
    assert metric(text, "sipdispatch_set_calls_no_destination_total", set="1") == 0
    stats = rpc(proxy, "stats.get_statistics", "all")["result"]
    assert "dispatcher:calls_answered = 3" in stats
    assert "dispatcher:calls_rejected_5xx = 3" in stats
    assert any(line.startswith("core:rcv_requests = ") for line in stats)
    assert rpc(proxy, "stats.get_statistics", "dispatcher:failovers")["result"] == [
        "dispatcher:failovers = 3"
    ]
    # Both gateways disabled: the routed set has nothing usable -> 503, and new calls
    # are counted as having no destination.
    for uri in (mg1.uri, mg2.uri):
        assert "result" in rpc(proxy, "dispatcher.set_state", "dx", 1, uri)
    status, body = get(f"{proxy.admin_url}/health")
    assert status == 503
    assert json.loads(body)["problems"] == ["set 1 has no usable destination"]
    refused = call(proxy, tmp_path, "refused")
    assert not refused.ok
    _, raw = get(f"{proxy.admin_url}/metrics")
    assert metric(raw.decode(), "sipdispatch_set_calls_no_destination_total", set="1") == 1


# -- start-up with a host that does not resolve ------------------------------------------------


def test_the_proxy_starts_with_an_unresolvable_destination_and_never_routes_to_it(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg2 = gateways("mg2")
    proxy = start(
        tmp_path,
        proxy_factory,
        ["1 sip:mg1.invalid:5060 0 10", f"1 {mg2.uri} 0 5"],
        algorithm=8,
    )
    assert re.search(
        r"WARNING sipdispatch\.health: set 1 sip:mg1\.invalid:5060: AX -> IP "
        r"\(could not resolve mg1\.invalid: .+; retried every ping interval\)",
        proxy.log_text(),
    ), proxy.log_text()
    listed = rpc(proxy, "dispatcher.list")["result"]
    [target1, target2] = listed["RECORDS"][0]["SET"]["TARGETS"]
    assert target1["DEST"]["URI"] == "sip:mg1.invalid:5060"
    assert target1["DEST"]["FLAGS"] == "IP"
    assert target1["DEST"]["REASON"].startswith("could not resolve mg1.invalid")
    assert target2["DEST"]["FLAGS"] == "AX" and "REASON" not in target2["DEST"]
    result = call(proxy, tmp_path, "calls", calls=2)
    assert result.ok, result.report()
    assert mg2.invites == 2
    assert get(f"{proxy.admin_url}/health")[0] == 200


def test_dispatcher_add_warns_when_the_host_does_not_resolve_now(tmp_path: Path) -> None:
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "sipdispatch", "dispatcher", "--list-file", str(list_file),
         "add", "1", "sip:mg9.invalid:5060"],
        cwd=tmp_path, env=proxy_env(), capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sip:mg9.invalid:5060" in list_file.read_text()
    [warning] = done.stderr.splitlines()
    assert warning.startswith("sipdispatch: warning: mg9.invalid does not resolve now (")
    quiet = subprocess.run(
        [sys.executable, "-m", "sipdispatch", "dispatcher", "--list-file", str(list_file),
         "add", "1", "sip:127.0.0.1:5070"],
        cwd=tmp_path, env=proxy_env(), capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert quiet.returncode == 0 and quiet.stderr == ""


# -- SIGTERM drains ------------------------------------------------------------------------------


def test_sigterm_refuses_new_calls_with_503_and_lets_the_one_in_flight_finish(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1 = gateways("mg1", answer_delay_ms=3000)  # rings 3 s, then answers
    proxy = start(tmp_path, proxy_factory, [f"1 {mg1.uri} 0 0"], extra='\n[log]\ncalls = "all"\n')
    ringing = start_sipp("uac_call", "127.0.0.1", proxy.port, workdir=tmp_path / "sipp-ringing")
    try:
        wait_for(lambda: mg1.invites == 1)
        proxy.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM: new calls get 503" in proxy.log_text())
        refused = run_sipp(
            "uac_expect_503", "127.0.0.1", proxy.port, timeout=30, workdir=tmp_path / "sipp-503"
        )
        assert refused.ok, refused.report()
        assert proxy.proc.wait(30) == 0  # it stopped by itself once the call was answered
    finally:
        ringing.stop()
    log = proxy.log_text()
    assert re.search(r"sipdispatch\.calls: call \S+ from .*: 503 Stopping \(0\.00 s\)", log), log
    answered = [x for x in log.splitlines() if "calls: call" in x and f"{mg1.uri[4:]} 200" in x]
    assert len(answered) == 1, log
    assert mg1.invites == 1  # the refused call never reached the gateway


def test_sighup_reloads_the_destinations(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, [f"1 {mg1.uri} 0 0"])
    write_list_file(tmp_path / "dispatcher.list", [f"1 {mg1.uri} 0 0", f"1 {mg2.uri} 0 0"])
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: "SIGHUP: dispatcher.reload: 1 destinations kept their state" in proxy.log_text()
    )
    listed = rpc(proxy, "dispatcher.list")["result"]["RECORDS"][0]["SET"]["TARGETS"]
    assert sorted(t["DEST"]["URI"] for t in listed) == sorted([mg1.uri, mg2.uri])
    # A list that does not load leaves the running one, and the proxy runs on.
    (tmp_path / "dispatcher.list").write_text("1 not-a-uri:: 0 0\n")
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: reload refused, the running list is unchanged" in proxy.log_text())
    assert proxy.alive()
    listed = rpc(proxy, "dispatcher.list")["result"]["RECORDS"][0]["SET"]["TARGETS"]
    assert len(listed) == 2


def test_ready_and_stopping_are_told_to_systemd(tmp_path: Path) -> None:
    import socket

    from sipdispatch.systemd import notify

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        old = os.environ.get("NOTIFY_SOCKET")
        os.environ["NOTIFY_SOCKET"] = str(path)
        try:
            assert notify("READY=1")
        finally:
            if old is None:
                del os.environ["NOTIFY_SOCKET"]
            else:
                os.environ["NOTIFY_SOCKET"] = old
        assert sock.recv(100) == b"READY=1"
    assert not notify("READY=1") or os.environ.get("NOTIFY_SOCKET")
