"""Fallback sets through ``sipdispatch run`` (``[[route]] fallback``, Kamailio's
``ds_select_routes("1=8;2=4", "0")`` with ``ds_next_dst``): sipp calls, set 1 is two
scripted gateways, set 2 one sipp UAS gateway.

When set 1 has nothing usable (one gateway disabled, one inactive) every call is
answered by set 2's gateway; when both of set 1's gateways answer 503 the call fails
over across the sets and set 2's gateway answers it. Each is checked at the gateways,
in the call log and in ``/metrics``.

Nothing waits a fixed time: every wait polls a condition with a generous deadline.
"""

from __future__ import annotations

import re
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import GatewayFactory, ProxyFactory
from .proxyctl import ProxyProcess, basic_config, write_list_file
from .sippctl import SippProcess, SippResult, free_port, run_sipp, start_sipp_uas
from .test_admin import wait_for
from .test_dispatching import invite_finals

pytestmark = pytest.mark.timeout(120)

UAS = Path(__file__).resolve().parents[2] / "bench" / "sipp" / "uas.xml"
SIPP_TIMEOUT = 60
WAIT = 20.0
"""Seconds any single condition may take on a loaded machine."""


class SippGateway:
    """A sipp UAS on 127.0.0.1:``port`` (bench/sipp/uas.xml: 180, 200, then the BYE),
    counting the INVITEs it got from its message trace."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.uri = f"sip:127.0.0.1:{port}"
        self.workdir = workdir
        self.proc: SippProcess = start_sipp_uas(
            UAS,
            port,
            workdir=workdir,
            extra_args=["-aa", "-trace_msg", "-message_file", "messages.log"],
        )

    def invites(self) -> int:
        path = self.workdir / "messages.log"
        if not path.exists():
            return 0
        text = path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if line.startswith("INVITE sip:"))

    def kill(self) -> None:
        """Stop it (sipp's quit), killed when it has not ended within 5 s."""
        self.proc.stop()
        proc = self.proc.proc
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def sipp_gateway(sipp: str, tmp_path: Path) -> Iterator[Callable[[], SippGateway]]:
    """``gw = sipp_gateway()``: a sipp UAS gateway on a free port, stopped after."""
    started: list[SippGateway] = []

    def make() -> SippGateway:
        gw = SippGateway(free_port("both"), tmp_path / f"uas-{len(started)}")
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.kill()


def start(
    tmp_path: Path, proxy_factory: ProxyFactory, lines: list[str], *, mark_failed: str = "ip"
) -> ProxyProcess:
    """A proxy over ``lines``: set 1 by priority (8), falling back to set 2 round-robin."""
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(tmp_path / "dispatcher.list", lines)
    toml = basic_config(
        port,
        admin,
        list_file,
        algorithm=8,
        ping_interval=0,
        fr_timer=2000,
        extra=f'fallback = [{{ set = 2, algorithm = 4 }}]\nmark_failed = "{mark_failed}"\n',
    )
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def calls(proxy: ProxyProcess, tmp_path: Path, n: int, name: str) -> SippResult:
    result = run_sipp(
        "uac_call",
        "127.0.0.1",
        proxy.port,
        calls=n,
        rate=20,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / f"sipp-{name}",
    )
    assert result.ok, result.report()
    assert result.successful == n
    return result


def fallback_calls(proxy: ProxyProcess) -> float:
    """``sipdispatch_fallback_calls_total{rule_set="1", set="2"}``."""
    with urllib.request.urlopen(f"{proxy.admin_url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    m = re.search(r'^sipdispatch_fallback_calls_total\{rule_set="1",set="2"\} (\S+)$', text, re.M)
    assert m, text
    return float(m[1])


def call_lines(proxy: ProxyProcess) -> list[str]:
    return [line for line in proxy.log_text().splitlines() if "sipdispatch.calls: call " in line]


def short(uri: str) -> str:
    return uri.removeprefix("sip:")


def test_set_1_disabled_and_inactive_sends_every_call_to_set_2s_gateway(
    sipp: str,
    tmp_path: Path,
    gateways: GatewayFactory,
    sipp_gateway: Callable[[], SippGateway],
    proxy_factory: ProxyFactory,
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    backup = sipp_gateway()
    # mg1 disabled (DX, flag 4), mg2 inactive and probing (IP, flags 1 + 8).
    proxy = start(
        tmp_path, proxy_factory, [f"1 {mg1.uri} 4 10", f"1 {mg2.uri} 9 5", f"2 {backup.uri} 0 0"]
    )
    result = calls(proxy, tmp_path, 3, "calls")
    wait_for(lambda: backup.invites() == 3, WAIT, "three INVITEs at set 2's gateway")
    assert (mg1.invites, mg2.invites) == (0, 0)
    # Every final answer the caller got is a 200 of the sipp gateway (its To tag is
    # <pid>gw<call number>; a 200 retransmitted before the ACK arrived is seen twice).
    finals = set(invite_finals(result))
    assert {status for status, _ in finals} == {200}, finals
    assert len({tag for _, tag in finals}) == 3 and all("gw" in tag for _, tag in finals), finals
    # Answered at once in the fallback set, yet logged (calls = "failures"): set 1 had
    # nothing usable.
    wait_for(lambda: len(call_lines(proxy)) == 3, WAIT, "three call log lines")
    for line in call_lines(proxy):
        assert f": set 2 {short(backup.uri)} 200 (" in line, line
    assert fallback_calls(proxy) == 3
    assert "no_destination" not in proxy.log_text()


def test_both_set_1_gateways_answer_503_and_the_call_fails_over_to_set_2(
    sipp: str,
    tmp_path: Path,
    gateways: GatewayFactory,
    sipp_gateway: Callable[[], SippGateway],
    proxy_factory: ProxyFactory,
) -> None:
    mg1, mg2 = gateways("mg1", reject=503), gateways("mg2", reject=503)
    backup = sipp_gateway()
    proxy = start(
        tmp_path, proxy_factory, [f"1 {mg1.uri} 0 10", f"1 {mg2.uri} 0 5", f"2 {backup.uri} 0 0"]
    )
    first = calls(proxy, tmp_path, 1, "first")
    # Set 1 by priority: mg1, then mg2, each 503 ACKed hop by hop; then set 2.
    mg1.wait_for(lambda: mg1.acks == 1, timeout=WAIT)
    mg2.wait_for(lambda: mg2.acks == 1, timeout=WAIT)
    assert (mg1.invites, mg2.invites) == (1, 1)
    assert [(o.final_code, o.acked) for o in (*mg1.outcomes(), *mg2.outcomes())] == [
        (503, True),
        (503, True),
    ]
    wait_for(lambda: backup.invites() == 1, WAIT, "the INVITE at set 2's gateway")
    # The caller saw none of the 503s: only set 2's 200.
    finals = set(invite_finals(first))
    assert len(finals) == 1, finals
    [(status, tag)] = finals
    assert status == 200 and "gw" in tag, finals
    wait_for(lambda: len(call_lines(proxy)) == 1, WAIT, "the call log line")
    [line] = call_lines(proxy)
    assert (
        f": set 1 {short(mg1.uri)} 503 -> {short(mg2.uri)} 503 -> set 2 {short(backup.uri)} 200 ("
        in line
    ), line
    assert fallback_calls(proxy) == 1
    # mark_failed = "ip": set 1 has nothing usable left, the next calls start in set 2.
    calls(proxy, tmp_path, 2, "more")
    wait_for(lambda: backup.invites() == 3, WAIT, "two more INVITEs at set 2's gateway")
    assert (mg1.invites, mg2.invites) == (1, 1)
    assert fallback_calls(proxy) == 3
