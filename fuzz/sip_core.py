"""Coverage-guided fuzzing of the SIP parser and of the proxy core in memory (atheris).

    fuzz/run.sh                      # 1 000 000 inputs, corpus in fuzz/corpus (see run.sh)
    fuzz/run.sh -runs=20000          # any libFuzzer option

Each input is cut at NUL-NUL pairs into up to eight messages. The first byte chooses
the path: datagrams from a caller or one of two gateways into a real ProxyCore with the
real round-robin router (virtual clock, 50 ms between messages), or one TCP stream fed
to the stream parser in pieces. What must hold, whatever the bytes:

- the parser gives a message or a ParseError, never another exception;
- the core never raises, and everything it sends parses again;
- once every timer has run out (200 s of virtual time later) the core holds no
  transaction: nothing a peer sends is retained.

The harness needs the pure-Python build to see coverage: run.sh puts a copy of src/
without the compiled modules first on the path (a compiled module is opaque to atheris).
"""

from __future__ import annotations

import logging
import random
import sys

import atheris

with atheris.instrument_imports(include=["sipdispatch"]):
    from sipdispatch.config import parse_config
    from sipdispatch.dispatcher import DispatcherSets, parse_list
    from sipdispatch.service import make_router
    from sipdispatch.sip.addr import Addr
    from sipdispatch.sip.errors import ParseError
    from sipdispatch.sip.message import StreamParser, parse_datagram
    from sipdispatch.sip.proxy import ProxyCore, ProxySettings
    from sipdispatch.sip.timers import Timers

PROXY = ("127.0.0.1", 5060)
SOURCES = (
    Addr("udp", "127.0.0.1", 5090),
    Addr("udp", "127.0.0.1", 5071),
    Addr("udp", "127.0.0.1", 5072),
    Addr("tcp", "127.0.0.1", 5090, 1),
)
LIST = "1 sip:127.0.0.1:5071 0 0\n1 sip:127.0.0.1:5072 0 0\n"
MAX_MESSAGE = 65535


def make_core() -> ProxyCore:
    cfg = parse_config(
        {
            "dispatcher": {"ping_interval": 0},
            "route": [{"set": 1, "algorithm": 4}],
            "transaction": {"fr_timer": 2000, "fr_inv_timer": 10000},
        },
        "fuzz.toml",
    )
    dests = parse_list(LIST, "fuzz.list")
    for d in dests:
        d.addr = (d.host, d.port)
    rng = random.Random(1)
    router = make_router(cfg, DispatcherSets(dests, rng), rng)
    settings = ProxySettings(local={"udp": PROXY, "tcp": PROXY})
    return ProxyCore(settings, router, Timers(fr_timer=2.0, fr_inv_timer=10.0))


def check_sent(core: ProxyCore) -> None:
    for _addr, data, _owner in core.datagrams_to_send():
        try:
            parse_datagram(data)
        except ParseError as exc:
            raise AssertionError(f"the core sent what does not parse ({exc}): {data!r}") from None


def run_timers(core: ProxyCore, now: float, until: float) -> None:
    while True:
        deadline = core.get_timer()
        if deadline is None or deadline > until:
            return
        now = max(now, deadline)
        core.handle_timer(now)
        check_sent(core)


def one_stream(pieces: list[bytes]) -> None:
    parser = StreamParser(MAX_MESSAGE)
    for piece in pieces:
        try:
            items = parser.feed(piece)
        except ParseError:
            return  # the framing broke: the shell closes the connection
        for item in items:
            assert isinstance(item, ParseError) or hasattr(item, "headers"), item


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    pieces = rest.split(b"\x00\x00")[:8]
    if mode % 4 == 3:
        one_stream(pieces)
        return
    core = make_core()
    now = 1.0
    for i, piece in enumerate(pieces):
        src = SOURCES[(mode + i) % 3]
        core.receive(piece, src, now)
        check_sent(core)
        now += 0.05
        run_timers(core, now, now)
    run_timers(core, now, now + 200.0)
    servers, clients = core.transactions_in_flight()
    assert servers == 0 and clients == 0, (servers, clients)


def main() -> None:
    logging.disable(logging.CRITICAL)  # state changes of the destinations, by the thousand
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
