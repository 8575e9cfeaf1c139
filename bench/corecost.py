"""CPU per call of the sans-IO proxy core alone, in memory (no sockets, no event loop).

The calls are those of bench/sipp: the caller's INVITE (with SDP), the gateway's 180
and 200 (echoing Via, From, To with a tag, Call-ID, CSeq and Record-Route), the
caller's ACK and BYE along the route set, the gateway's 200 to the BYE; round-robin
over two gateways through the real dispatcher router. Virtual time advances 2 ms per
call (500 calls/s) and every timer runs when due, so transactions end as they would
in the proxy. Only the core's own work is timed (thread CPU time around each call
into it); building the peers' messages is not.

    .venv/bin/python bench/corecost.py                 # 20 000 calls, 3 rounds
    .venv/bin/python bench/corecost.py --profile 20    # cProfile, top 20 by own time
    .venv/bin/python bench/corecost.py --call-log all  # with the call log's records made
    .venv/bin/python bench/corecost.py --hook hookcost:route   # the rule as a Python hook
    .venv/bin/python bench/corecost.py --user-prefix serv      # the same rule with a match
    .venv/bin/python bench/corecost.py --dns one       # gateways located by DNS, 1 address
    .venv/bin/python bench/corecost.py --dns srv       # ... 2 SRV targets each (a backup)
    .venv/bin/python bench/corecost.py --memory 5000           # bytes per call in progress

``--hook MODULE:FUNCTION`` routes through a Python routing hook (modules are looked
for in bench/ too: ``hookcost:route`` decides nothing, ``hookcost:by_prefix`` compares
the user's prefix); without it the rule is the same one in TOML (set 1, round-robin),
with ``--dns one`` the two gateways are destinations located by DNS
(``sip:gw1.bench``) whose answer has one address each (an A record, or one SRV target),
with ``--dns srv`` two SRV targets each, the second a backup of lower priority (the
router then orders the addresses for every call); the answers are set in memory, as a
finished lookup leaves them (the router never does DNS),
with ``--user-prefix P`` as its ``match``. A hook's cost is below the noise of whole
calls on a shared machine; ``--decisions N`` times the router's decision alone (one
parsed INVITE routed N times), where the difference shows:

    .venv/bin/python bench/corecost.py --decisions 200000 --hook hookcost:route
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sipdispatch.config import parse_config
from sipdispatch.dispatcher import DispatcherSets, parse_list
from sipdispatch.dispatcher.addresses import DnsAddress, LocatedAddresses
from sipdispatch.hooks import HookLoader
from sipdispatch.routing import DispatchRouter
from sipdispatch.service import make_router
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import parse_datagram
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.timers import Timers

PROXY = ("127.0.0.1", 5060)
CALLER = Addr("udp", "127.0.0.1", 5090)
GW = {5071: Addr("udp", "127.0.0.1", 5071), 5072: Addr("udp", "127.0.0.1", 5072)}
SDP = b"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"  # noqa: E501


def make_core(
    hook: str | None = None, user_prefix: str | None = None, dns: str = "none"
) -> ProxyCore:
    rule: dict[str, Any] = {"set": 1, "algorithm": 4}
    if hook is not None:
        rule["python"] = hook
    if user_prefix is not None:
        rule["match"] = {"user_prefix": user_prefix}
    cfg = parse_config(
        {
            "dispatcher": {"ping_interval": 0},
            "transaction": {"fr_timer": 3, "fr_inv_timer": 30},
            "route": [rule],
        },
        "bench.toml",
    )
    hooks = HookLoader(cfg.routes, [str(Path(__file__).resolve().parent)]).load()
    if dns == "none":
        dests = parse_list("1 sip:127.0.0.1:5071 0 0\n1 sip:127.0.0.1:5072 0 0\n", "bench.list")
        for d in dests:
            d.addr = (d.host, d.port)
    else:
        dests = parse_list("1 sip:gw1.bench 0 0\n1 sip:gw2.bench 0 0\n", "bench.list")
        for d, port in zip(dests, (5071, 5072), strict=True):
            assert d.by_dns
            found = [DnsAddress("127.0.0.1", port, "udp", 10, 0, d.host)]
            if dns == "srv":
                found.append(DnsAddress("127.0.0.1", port + 100, "udp", 20, 0, "backup." + d.host))
            d.use_located(LocatedAddresses(tuple(found)))
    rng = random.Random(1)
    sets = DispatcherSets(dests, rng)
    router = make_router(cfg, sets, rng, hooks=hooks)
    return ProxyCore(
        ProxySettings(local={"udp": PROXY}),
        router,
        Timers(fr_timer=3.0, fr_inv_timer=30.0, wait_timer=5.0),
    )


def header_lines(data: bytes, names: tuple[bytes, ...]) -> list[bytes]:
    """The header lines of ``data`` whose name is one of ``names`` (lower case)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    out = []
    for line in head.split(b"\r\n")[1:]:
        if line.split(b":", 1)[0].strip().lower() in names:
            out.append(line)
    return out


def gateway_reply(invite: bytes, status: bytes, tag: bytes, body: bytes = b"") -> bytes:
    """A sipp gateway's answer: the Via set on one line, as sipp writes it."""
    vias = [line.split(b":", 1)[1].strip() for line in header_lines(invite, (b"via", b"v"))]
    lines = [b"SIP/2.0 " + status, b"Via: " + b", ".join(vias)]
    for line in header_lines(invite, (b"from", b"f")):
        lines.append(line)
    for line in header_lines(invite, (b"to", b"t")):
        lines.append(line + b";tag=" + tag)
    lines += header_lines(invite, (b"call-id", b"i", b"cseq", b"record-route"))
    lines.append(b"Contact: <sip:gw@127.0.0.1:5071;transport=UDP>")
    if body:
        lines.append(b"Content-Type: application/sdp")
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def caller_request(method: bytes, n: int, cseq: int, to_tag: bytes, routes: list[bytes]) -> bytes:
    lines = [
        method + b" sip:gw@127.0.0.1:5071 SIP/2.0",
        b"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-c%d-%d" % (n, cseq),
        b"From: caller <sip:caller@127.0.0.1:5090>;tag=1uac%d" % n,
        b"To: service <sip:service@127.0.0.1:5060>;tag=" + to_tag,
        b"Call-ID: %d-bench@127.0.0.1" % n,
        b"CSeq: %d %s" % (cseq, method),
        *(b"Route: " + r for r in routes),
        b"Contact: <sip:caller@127.0.0.1:5090>",
        b"Max-Forwards: 70",
        b"Content-Length: 0",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def invite(n: int) -> bytes:
    lines = [
        b"INVITE sip:service@127.0.0.1:5060 SIP/2.0",
        b"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-c%d-1" % n,
        b"From: caller <sip:caller@127.0.0.1:5090>;tag=1uac%d" % n,
        b"To: service <sip:service@127.0.0.1:5060>",
        b"Call-ID: %d-bench@127.0.0.1" % n,
        b"CSeq: 1 INVITE",
        b"Contact: <sip:caller@127.0.0.1:5090>",
        b"Max-Forwards: 70",
        b"Subject: sipdispatch bench",
        b"Content-Type: application/sdp",
        b"Content-Length: %d" % len(SDP),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + SDP


class Driver:
    """Plays caller and gateways around one core; times only the core."""

    def __init__(
        self,
        call_log: str = "none",
        hook: str | None = None,
        user_prefix: str | None = None,
        dns: str = "none",
    ) -> None:
        self.core = make_core(hook, user_prefix, dns)
        self.records: list[object] = []
        if call_log != "none":
            # As [log] calls = "failures" / "all": the records go to a sink (a list here,
            # the logging handler in the proxy); these calls all simply succeed.
            router = self.core.router
            assert isinstance(router, DispatchRouter)
            self.core.call_log = router.call_log = self.records.append
            router.log_all = call_log == "all"
        self.now = 1000.0
        self.spent = 0
        self.messages = 0

    def feed(self, data: bytes, src: Addr) -> list[tuple[Addr, bytes]]:
        core = self.core
        t0 = time.thread_time_ns()
        core.receive(data, src, self.now)
        self.spent += time.thread_time_ns() - t0
        self.messages += 1
        return [(a, d) for a, d, _ in core.datagrams_to_send()]

    def tick(self) -> None:
        core = self.core
        deadline = core.get_timer()
        if deadline is not None and deadline <= self.now:
            t0 = time.thread_time_ns()
            core.handle_timer(self.now)
            core.get_timer()
            self.spent += time.thread_time_ns() - t0
            core.datagrams_to_send()

    def call(self, n: int) -> None:
        out = self.feed(invite(n), CALLER)
        fwd = [(a, d) for a, d in out if d.startswith(b"INVITE")]
        assert len(fwd) == 1, out
        gw, inv = fwd[0]
        tag = b"gw%d" % n
        self.feed(gateway_reply(inv, b"180 Ringing", tag), GW[gw.port])
        out = self.feed(gateway_reply(inv, b"200 OK", tag, SDP), GW[gw.port])
        assert out and out[0][1].startswith(b"SIP/2.0 200"), out
        ok = out[0][1]
        # The route set as the caller gets it: Record-Route in order.
        routes = [line.split(b":", 1)[1].strip() for line in header_lines(ok, (b"record-route",))]
        ack = self.feed(caller_request(b"ACK", n, 1, tag, routes), CALLER)
        assert ack and ack[0][1].startswith(b"ACK"), ack
        out = self.feed(caller_request(b"BYE", n, 2, tag, routes), CALLER)
        assert out and out[0][1].startswith(b"BYE"), out
        self.feed(gateway_reply(out[0][1], b"200 OK", tag), GW[gw.port])

    def establish(self, n: int) -> None:
        """Call ``n`` up to its ACK (no BYE): a call in progress, nothing of it kept here."""
        out = self.feed(invite(n), CALLER)
        gw, inv = next((a, d) for a, d in out if d.startswith(b"INVITE"))
        tag = b"gw%d" % n
        self.feed(gateway_reply(inv, b"180 Ringing", tag), GW[gw.port])
        out = self.feed(gateway_reply(inv, b"200 OK", tag, SDP), GW[gw.port])
        ok = out[0][1]
        routes = [line.split(b":", 1)[1].strip() for line in header_lines(ok, (b"record-route",))]
        ack = self.feed(caller_request(b"ACK", n, 1, tag, routes), CALLER)
        assert ack and ack[0][1].startswith(b"ACK"), ack

    def run(self, calls: int, start: int = 0) -> None:
        for n in range(start, start + calls):
            self.call(n)
            self.now += 0.002
            self.tick()


def decisions(core: ProxyCore, n: int, rounds: int) -> list[float]:
    """Nanoseconds per routing decision (``router.route`` of one parsed INVITE, the plan's
    first target and its end), best of ``rounds`` runs of ``n``."""
    request = parse_datagram(invite(1))
    router = core.router
    route = router.route
    results = []
    for _ in range(rounds):
        t0 = time.thread_time_ns()
        for _ in range(n):
            plan = route(request, CALLER, 1000.0)  # type: ignore[arg-type]
            plan.first()  # type: ignore[union-attr]
            plan.finished(200, 1000.0)  # type: ignore[union-attr]
        results.append((time.thread_time_ns() - t0) / n)
    return results


def memory(d: Driver, calls: int, start: int) -> tuple[float, float, float]:
    """Bytes the core holds per call in progress (Python allocations, tracemalloc), as
    bench/memory.py measures the proxy's: ``calls`` calls set up (INVITE to ACK, no
    BYE) at 500 calls/s with the timers run, then 2 s after the last one (the
    transactions of the last ``wait_timer`` seconds still there), and 40 s later (only
    what an established call keeps). Also the memory blocks per call in the first case."""
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    blocks_before = sum(stat.count for stat in tracemalloc.take_snapshot().statistics("filename"))
    for n in range(start, start + calls):
        d.establish(n)
        d.now += 0.002
        d.tick()
    d.now += 2.0
    d.tick()
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    blocks = sum(stat.count for stat in tracemalloc.take_snapshot().statistics("filename"))
    d.now += 40.0  # past every transaction timer (fr_inv_timer 30 s, wait_timer 5 s)
    d.tick()
    gc.collect()
    settled, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (held - before) / calls, (blocks - blocks_before) / calls, (settled - before) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", type=int, metavar="N", help="cProfile, print top N")
    ap.add_argument(
        "--call-log", choices=("none", "failures", "all"), default="none",
        help="make call records as [log] calls does (default none)",
    )  # fmt: skip
    ap.add_argument("--hook", metavar="MODULE:FUNCTION", help="route through a Python hook")
    ap.add_argument("--user-prefix", metavar="P", help="the TOML rule's match.user_prefix")
    ap.add_argument("--decisions", type=int, metavar="N", help="time N routing decisions only")
    ap.add_argument(
        "--dns", choices=("none", "one", "srv"), default="none",
        help="gateways located by DNS: one address each, or two SRV targets each",
    )  # fmt: skip
    ap.add_argument(
        "--memory", type=int, metavar="N", help="bytes held per call in progress, N calls"
    )
    args = ap.parse_args()
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 10, 10)
    d = Driver(args.call_log, args.hook, args.user_prefix, args.dns)
    if args.decisions:
        results = decisions(d.core, args.decisions, args.rounds)
        print(
            "routing decision: "
            + ", ".join(f"{r / 1000:.2f}" for r in results)
            + f" µs (median {sorted(results)[len(results) // 2] / 1000:.2f}, "
            + f"best {min(results) / 1000:.2f} µs)"
        )
        return
    d.run(2000)  # warm-up: caches filled, transactions in steady state
    if args.memory:
        d.now += 40.0
        d.tick()  # the warm-up's transactions gone: only the calls measured are held
        per_call, blocks, settled = memory(d, args.memory, 2000)
        print(
            f"core memory per call in progress: {per_call:.0f} bytes ({blocks:.1f} blocks); "
            f"{settled:.0f} bytes 40 s later ({args.memory} calls at 500 calls/s)"
        )
        return
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        d.run(args.calls, 2000)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
        return
    results = []
    start = 2000
    for _ in range(args.rounds):
        d.spent = 0
        d.run(args.calls, start)
        start += args.calls
        results.append(d.spent / args.calls / 1000)
    print(
        "core CPU per call: "
        + ", ".join(f"{r:.0f}" for r in results)
        + f" µs (median {sorted(results)[len(results) // 2]:.0f}, best {min(results):.0f} µs); "
        + f"{len(d.core.server_txs)} server / {len(d.core.client_txs)} client transactions held"
    )


if __name__ == "__main__":
    main()
