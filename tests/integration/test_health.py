"""Destination health through ``sipdispatch run`` on loopback: OPTIONS pings,
Kamailio's state letters in the log, and calls following the state.

The story's third step: a gateway stops answering pings, is shown trying then ``IP``
after ``probing_threshold`` misses and gets no calls while the other takes them
all; when it answers ``inactive_threshold`` pings again it is back to ``AP``.
Probing mode 1 (probe everything), as the seed article configures it. State
changes are read from the proxy's log line ``set N URI: OLD -> NEW (why)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import GatewayFactory, ProxyFactory
from .gateway import GatewayThread, wait_until
from .proxyctl import ProxyProcess, basic_config, toml_str
from .sippctl import free_port, run_sipp

pytestmark = pytest.mark.timeout(180)

WAIT = 30.0
"""Generous deadline for anything that takes a few ping intervals."""
SIPP_TIMEOUT = 60


def health_config(
    port: int,
    admin: int,
    list_file: Path,
    *,
    probing_mode: int = 1,
    probing_threshold: int = 2,
    inactive_threshold: int = 2,
    ping_reply_codes: str = "",
) -> str:
    """Pings every second, a miss after fr_timer 2 s (slack for a loaded machine;
    pings overlap as in Kamailio), round-robin over set 1."""
    toml = basic_config(port, admin, list_file, algorithm=4, ping_interval=1, fr_timer=2000)
    probing = (
        f"probing_mode = {probing_mode}\n"
        f"probing_threshold = {probing_threshold}\n"
        f"inactive_threshold = {inactive_threshold}\n"
        f"ping_reply_codes = {toml_str(ping_reply_codes)}\n"
    )
    return toml.replace("ping_interval = 1\n", "ping_interval = 1\n" + probing, 1)


def start(
    tmp_path: Path, proxy_factory: ProxyFactory, gws: list[GatewayThread], **config: object
) -> tuple[int, ProxyProcess]:
    port, admin = free_port(), free_port()
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text("".join(f"1 {gw.uri} 0 0\n" for gw in gws))
    toml = health_config(port, admin, list_file, **config)  # type: ignore[arg-type]
    return port, proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def change(gw: GatewayThread, old: str, new: str) -> str:
    """The start of the log line of a state change of ``gw`` in set 1."""
    return f"set 1 {gw.uri}: {old} -> {new} ("


def wait_log(proxy: ProxyProcess, text: str, timeout: float = WAIT) -> int:
    """Wait until the proxy logged ``text``; return the line's index."""

    def find() -> int | None:
        for i, line in enumerate(proxy.log_text().splitlines()):
            if text in line:
                return i + 1
        return None

    try:
        return wait_until(find, timeout, f"log line {text!r}") - 1
    except TimeoutError:
        raise AssertionError(
            f"no {text!r} within {timeout:.0f}s; log:\n{proxy.log_text()}"
        ) from None


def calls(tmp_path: Path, port: int, n: int, name: str) -> None:
    result = run_sipp(
        "uac_call", "127.0.0.1", port, calls=n, rate=20, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / name,
    )  # fmt: skip
    assert result.ok, result.report()
    assert result.successful == n


def test_gateway_that_stops_answering_pings_goes_inactive_gets_no_calls_and_comes_back(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1 = gateways("mg1", "udp")
    mg2 = gateways("mg2", "udp")
    port, proxy = start(tmp_path, proxy_factory, [mg1, mg2])
    # Mode 1 pings everything: loaded as AX (flags 0), AP on the first answer.
    wait_log(proxy, change(mg1, "AX", "AP"))
    wait_log(proxy, change(mg2, "AX", "AP"))

    mg1.set_behaviour(options_code=None)
    trying = wait_log(proxy, change(mg1, "AP", "TP"))
    inactive = wait_log(proxy, change(mg1, "TP", "IP"))
    assert trying < inactive
    log = proxy.log_text()
    assert "1/2 missed" in log and "2 missed in a row" in log

    mg1.clear()
    mg2.clear()
    calls(tmp_path, port, 10, "sipp-down")
    mg2.wait_for(lambda: mg2.byes == 10, timeout=WAIT)
    assert (mg1.invites, mg2.invites) == (0, 10), mg1.describe()

    mg1.set_behaviour(options_code=200)
    wait_log(proxy, change(mg1, "IP", "AP"))
    assert "2 answered in a row" in proxy.log_text()

    mg1.clear()
    mg2.clear()
    calls(tmp_path, port, 4, "sipp-up")
    mg1.wait_for(lambda: mg1.byes == 2, timeout=WAIT)
    assert (mg1.invites, mg2.invites) == (2, 2)


@pytest.mark.parametrize(
    ("reply_codes", "alive"), [("", False), ("code=404", True), ("class=4", True)]
)
def test_gateway_answering_pings_with_404_is_alive_only_by_ping_reply_codes(
    tmp_path: Path,
    gateways: GatewayFactory,
    proxy_factory: ProxyFactory,
    reply_codes: str,
    alive: bool,
) -> None:
    gw = gateways("mg404", "udp", options_code=404)
    _, proxy = start(tmp_path, proxy_factory, [gw], ping_reply_codes=reply_codes)
    if alive:
        wait_log(proxy, change(gw, "AX", "AP"))
        gw.wait_for(lambda: gw.options >= 4, timeout=WAIT)
        log = proxy.log_text()
        assert "alive by ping_reply_codes" in log
        assert " -> TP (" not in log and " -> IP (" not in log, log
    else:
        wait_log(proxy, change(gw, "AX", "TP"))
        wait_log(proxy, change(gw, "TP", "IP"))
        assert "OPTIONS answered 404" in proxy.log_text()


def test_tcp_gateway_is_pinged_over_tcp(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    gw = gateways("mgtcp", "tcp")
    _, proxy = start(tmp_path, proxy_factory, [gw])
    wait_log(proxy, change(gw, "AX", "AP"))
    ping = gw.requests("OPTIONS")[0]
    assert ping.transport == "tcp"
    assert ping.uri == gw.uri and ping.get("to") == f"<{gw.uri}>"
    assert (ping.get("from") or "").startswith("<sip:dispatcher@localhost>;tag=")
    assert ping.get("max-forwards") == "70" and ping.cseq == (1, "OPTIONS")
    gw.set_behaviour(options_code=None)
    wait_log(proxy, change(gw, "TP", "IP"))
