"""Operating the proxy day to day, seen from outside: the call log, timestamps on every
line, the outcome metrics, ``GET /health`` and the warnings at load.

sipp is the caller, scripted gateways answer; every wait polls with a generous deadline.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import GatewayFactory, ProxyFactory
from .proxyctl import ProxyProcess, basic_config, write_list_file
from .sippctl import SippResult, free_port, run_sipp

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
    assert rec["attempts"] == [{"destination": mg1.uri, "status": 486, "timeout": False}]
    assert rec["ruri"] == f"sip:1111111@127.0.0.1:{proxy.port}" and rec["set"] == 1
