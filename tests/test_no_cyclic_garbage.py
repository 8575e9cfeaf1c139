"""The call path leaves no cyclic garbage: reference counting frees everything.

The running proxy turns the cyclic garbage collector off (its pauses walk every call
in flight; see sipdispatch/collector.py), which is safe only if nothing a call, a
ping or a bad message does leaves a reference cycle behind. Here every kind of them
goes through the real proxy core, the real router and the real prober on a virtual
clock, with the collector off; then a collection must find nothing at all.
"""

from __future__ import annotations

import gc
import importlib.util
import random
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from sipdispatch.config import parse_config
from sipdispatch.dispatcher import DispatcherSets, parse_list
from sipdispatch.service import make_router
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.timers import Timers
from tests.corepump import CorePump
from tests.health.harness import Net

BENCH = Path(__file__).resolve().parent.parent / "bench" / "corecost.py"
PROXY = ("127.0.0.1", 5060)
CALLER = Addr("udp", "127.0.0.1", 5090)
GATEWAYS = (Addr("udp", "127.0.0.1", 5071), Addr("udp", "127.0.0.1", 5072))
GW1, GW2 = "sip:127.0.0.1:5071", "sip:127.0.0.1:5072"


def corecost() -> ModuleType:
    """bench/corecost.py: its builders write the messages of sipp's calls."""
    spec = importlib.util.spec_from_file_location("corecost", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["corecost"] = module
    spec.loader.exec_module(module)
    return module


CC = corecost()


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The collector off for the test, everything made before it collected."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def assert_no_cyclic_garbage() -> None:
    """A collection, keeping what it finds, finds nothing. Called while the test's
    own objects (core, harness) are still alive: only what they dropped counts."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        found = gc.collect()
        kinds = Counter(type(o).__qualname__ for o in gc.garbage)
        assert found == 0, f"cyclic garbage: {kinds.most_common(10)}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def core_over(algorithm: int, list_text: str) -> CorePump:
    cfg = parse_config(
        {
            "dispatcher": {"ping_interval": 0},
            "route": [{"set": 1, "algorithm": algorithm, "mark_failed": ""}],
            "transaction": {"fr_timer": 2000, "fr_inv_timer": 10000},
        },
        "gc.toml",
    )
    dests = parse_list(list_text, "gc.list")
    for d in dests:
        d.addr = (d.host, d.port)
    rng = random.Random(1)
    sets = DispatcherSets(dests, rng)
    router = make_router(cfg, sets, rng)
    settings = ProxySettings(local={"udp": PROXY, "tcp": PROXY})
    return CorePump(ProxyCore(settings, router, Timers(fr_timer=2.0, fr_inv_timer=10.0)))


TWO = "1 sip:127.0.0.1:5071 0 0\n1 sip:127.0.0.1:5072 0 0\n"


def sent_to(out: list[tuple[Addr, bytes]], prefix: bytes) -> list[tuple[Addr, bytes]]:
    return [(a, d) for a, d in out if d.startswith(prefix)]


@pytest.mark.usefixtures("collector_off")
def test_answered_calls_leave_no_cyclic_garbage() -> None:
    driver = CC.Driver()
    driver.run(200)
    driver.now += 60
    driver.tick()
    assert not driver.core.server_txs and not driver.core.client_txs
    assert_no_cyclic_garbage()


@pytest.mark.usefixtures("collector_off")
def test_failed_over_cancelled_timed_out_and_forked_calls_leave_no_cyclic_garbage() -> None:
    cc = CC
    pumps = []
    for algorithm in (4, 10, 12):  # round-robin, call load, parallel forking
        pump = core_over(algorithm, TWO)
        for n in range(20):
            invites = sent_to(pump.receive(cc.invite(n), CALLER), b"INVITE")
            gw, inv = invites[0]
            tag = b"t%d" % n
            kind = n % 4
            if kind == 0:  # rejected with 503: the next gateway, or the final, goes on
                pump.receive(cc.gateway_reply(inv, b"503 Busy", tag), gw)
            elif kind == 1:  # ringing, then the caller cancels
                pump.receive(cc.gateway_reply(inv, b"180 Ringing", tag), gw)
                cancel = cc.invite(n).replace(b"INVITE", b"CANCEL", 1)
                cancel = cancel.replace(b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL")
                out = pump.receive(cancel.split(b"\r\n\r\n")[0] + b"\r\n\r\n", CALLER)
                for addr, data in sent_to(out, b"CANCEL"):
                    pump.receive(cc.gateway_reply(data, b"200 OK", tag), addr)
                    pump.receive(cc.gateway_reply(inv, b"487 Request Terminated", tag), addr)
            elif kind == 2:  # nobody answers: 408 after the timer
                pass
            else:  # answered, then the caller's ACK and BYE along the route set
                ok = pump.receive(cc.gateway_reply(inv, b"200 OK", tag), gw)
                routes = [
                    line.split(b":", 1)[1].strip()
                    for line in cc.header_lines(ok[0][1], (b"record-route",))
                ]
                pump.receive(cc.caller_request(b"ACK", n, 1, tag, routes), CALLER)
                for addr, bye in sent_to(
                    pump.receive(cc.caller_request(b"BYE", n, 2, tag, routes), CALLER), b"BYE"
                ):
                    pump.receive(cc.gateway_reply(bye, b"200 OK", tag), addr)
        pump.advance(300)
        assert not pump.core.server_txs and not pump.core.client_txs
        pumps.append(pump)
    assert_no_cyclic_garbage()


@pytest.mark.usefixtures("collector_off")
def test_bad_messages_and_stray_responses_leave_no_cyclic_garbage() -> None:
    cc = CC
    pump = core_over(4, TWO)
    good = cc.invite(1)
    broken = [
        good.replace(b"Call-ID", b"X-Call-ID"),  # 400: missing Call-ID
        good.replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"),  # 400
        good.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1),  # 505
        good.replace(b"Contact:", b"Bad Name:"),  # 400: bad header name
        b"garbage\r\n\r\n",  # dropped
        good[:-2] + b"x" * 70000,  # 513
        b"\r\n\r\n",  # keep-alive
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKnone\r\n\r\n",  # stray
    ]
    for i in range(30):
        for data in broken:
            pump.receive(data, CALLER)
        pump.receive(cc.gateway_reply(good, b"200 OK", b"x%d" % i), GATEWAYS[0])
    pump.advance(300)
    assert pump.core.stats.parse_errors > 0
    assert_no_cyclic_garbage()


@pytest.mark.usefixtures("collector_off")
def test_pings_answered_and_missed_leave_no_cyclic_garbage() -> None:
    net = Net(
        f"1 {GW1}\n1 {GW2}", probing_mode=1, ping_interval=1, probing_threshold=2, fr_timer=0.5
    )
    net.gw(GW2).code = None  # never answers: misses, IP, and pings on
    net.advance(30)
    net.gw(GW2).code = 200
    net.advance(30)
    net.prober.stop()
    net.advance(60)
    assert net.letters(GW1) == "AP" and net.letters(GW2) == "AP"
    assert net.state_log.went_down == 1 and net.state_log.went_up == 1
    assert_no_cyclic_garbage()


@pytest.mark.usefixtures("collector_off")
def test_the_check_finds_a_cycle_left_behind() -> None:
    loop: list[object] = []
    loop.append(loop)
    del loop
    with pytest.raises(AssertionError, match="cyclic garbage"):
        assert_no_cyclic_garbage()
