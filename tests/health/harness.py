"""A virtual network for the prober: the real proxy core and router, scripted
gateways that answer pings after a virtual delay, and a virtual clock."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from sipdispatch.config import DispatcherConfig
from sipdispatch.dispatcher import DispatcherSets, parse_list
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.health.prober import Prober
from sipdispatch.health.statelog import StateLog
from sipdispatch.routing import DispatchRouter
from sipdispatch.service import router_settings
from sipdispatch.sip.message import Request, make_response, parse_datagram
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.timers import Timers
from tests.corepump import CorePump, Sent

PROXY = ("127.0.0.1", 5060)


@dataclass
class Gateway:
    """How one address answers pings: ``code`` None = never; ``delay`` seconds."""

    code: int | None = 200
    delay: float = 0.01
    delays: list[float] = field(default_factory=list)
    """Per-ping delays, used first to last before ``delay``."""
    pings: list[tuple[float, Request]] = field(default_factory=list)
    """(virtual time, request) of every distinct ping received (retransmissions dropped)."""


def dconf(**kw: object) -> DispatcherConfig:
    """A [dispatcher] section for tests: list file store, pings every 10 s."""
    values: dict[str, object] = {"list_file": "test.list", "ping_interval": 10}
    values.update(kw)
    return DispatcherConfig(**values)  # type: ignore[arg-type]


class Net:
    """Runs the prober and the core on a virtual clock against scripted gateways."""

    def __init__(
        self,
        list_text: str,
        *,
        fr_timer: float = 2.0,
        start: bool = True,
        **config: object,
    ) -> None:
        self.conf = dconf(**config)
        dests = parse_list(list_text, "test.list")
        for d in dests:
            d.addr = (d.host, d.port)
        self.sets = DispatcherSets(dests, random.Random(1))
        self.state_log = StateLog()
        rng = random.Random(1)
        self.router = DispatchRouter((), router_settings(self.conf), self.sets, rng, self.state_log)
        settings = ProxySettings(local={"udp": PROXY, "tcp": PROXY})
        self.core = ProxyCore(settings, self.router, Timers(fr_timer=fr_timer))
        self.pump = CorePump(self.core)
        self.prober = Prober(
            self.router, self.core, self.conf, self.state_log, clock=lambda: self.pump.now
        )
        self.gateways: dict[tuple[str, int], Gateway] = {}
        for d in dests:
            self.gateways.setdefault((d.host, d.port), Gateway())
        self._seen: set[str] = set()
        self._answered: set[str] = set()
        if start:
            self.prober.start(self.now)

    @property
    def now(self) -> float:
        return self.pump.now

    # -- access ----------------------------------------------------------------

    def dest(self, uri: str, setid: int = 1) -> Destination:
        found = self.router.sets.find(setid, uri)
        assert found is not None, uri
        return found

    def gw(self, uri: str) -> Gateway:
        d = self.dest(uri)
        return self.gateways[(d.host, d.port)]

    def letters(self, uri: str, setid: int = 1) -> str:
        return self.dest(uri, setid).flags_text()

    # -- running ----------------------------------------------------------------

    def _deliver(self, sent: Sent) -> None:
        for addr, data in sent:
            msg = parse_datagram(data)
            assert isinstance(msg, Request), msg
            gw = self.gateways.get((addr.host, addr.port))
            if gw is None:
                continue
            branch = msg.top_via.params.get("branch") or ""
            if branch not in self._seen:
                self._seen.add(branch)
                gw.pings.append((self.now, msg))
            if gw.code is None:
                continue
            if msg.method == "OPTIONS" and branch in self._answered:
                continue  # a retransmission: the first answer is on its way
            self._answered.add(branch)
            delay = gw.delays.pop(0) if gw.delays else gw.delay
            reply = make_response(msg, gw.code, "Scripted", to_tag="gw")
            self.pump.arrive_at(self.now + delay, reply.to_bytes(), addr)

    def advance(self, seconds: float) -> None:
        """Run everything due until ``now + seconds``."""
        self.pump.advance(seconds, on_sent=self._deliver)

    def timeline(self, uri: str, seconds: float, step: float = 0.25) -> Iterator[str]:
        """Letters of ``uri`` after each ``step`` of virtual time."""
        t = 0.0
        while t < seconds:
            self.advance(step)
            t += step
            yield self.letters(uri)
