"""The pure core's seams the cluster uses, on a virtual clock and without Redis: a
state from another node is applied and recorded with origin ``cluster``; the call-load
table tells its ledger of every call and takes the cluster's count; a BYE of a call
another node counted still reaches the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field

from sipdispatch.dispatcher.callload import LoadEntry
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.states import DS_DISABLED_DST
from sipdispatch.health.state import ORIGIN_CLUSTER, StateChange
from sipdispatch.routing import DispatchRouter
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import Request, Response, parse_datagram
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.timers import Timers
from tests.test_routing import MG1, MG2, TWO, dest, plan_for, request, router


@dataclass
class Ledger:
    """A LoadShare that keeps what it was told, in order (the Redis one does the same
    calls over the network)."""

    told: list[tuple[str, str, float]] = field(default_factory=list)
    rebinds: int = 0

    def reserved(self, entry: LoadEntry, maxload: int, ttl: float) -> None:
        self.told.append(("reserved", f"{entry.call_id}@{entry.key}/{maxload}", ttl))

    def confirmed(self, entry: LoadEntry, ttl: float) -> None:
        self.told.append(("confirmed", entry.call_id, ttl))

    def released(self, call_id: str) -> None:
        self.told.append(("released", call_id, 0.0))

    def rebound(self) -> None:
        self.rebinds += 1


LOAD_ROUTE = [{"set": 1, "algorithm": "call-load"}]
LOADED = f"1 {MG1} 0 0 maxload=2\n1 {MG2} 0 0 maxload=2\n"


def test_a_state_from_another_node_is_applied_with_origin_cluster() -> None:
    r = router(TWO)
    seen: list[StateChange] = []
    r.state_log.subscribe(seen.append)
    change = r.adopt_state(1, MG1.upper(), DS_DISABLED_DST, "dispatcher.set_state dx, on lb2", 5.0)
    assert change is not None and change.origin == ORIGIN_CLUSTER
    assert dest(r, MG1).state == DS_DISABLED_DST
    assert seen == [change]
    assert change.describe() == f"set 1 {MG1}: AX -> DX (dispatcher.set_state dx, on lb2)"
    # The same state again, or a destination not here: nothing recorded.
    assert r.adopt_state(1, MG1, DS_DISABLED_DST, "again", 6.0) is None
    assert r.adopt_state(1, "sip:10.9.9.9:5060", 0, "elsewhere", 6.0) is None
    assert len(seen) == 1


def test_the_ledger_is_told_of_a_call_counted_answered_and_ended() -> None:
    r = router(LOADED, LOAD_ROUTE, hash_initexpire=30, hash_expire=600)
    ledger = Ledger()
    r.calls.share = ledger
    plan = plan_for(r, request(call_id="c1"))
    target = plan.first()[0]
    chosen = target.handle
    assert isinstance(chosen, Destination)
    plan.answered(target, 10.0)
    r.in_dialog(request(method="BYE", call_id="c1"), 20.0)
    assert ledger.told == [
        ("reserved", f"c1@{chosen.uri}/2", 30.0),
        ("confirmed", "c1", 590.0),
        ("released", "c1", 0.0),
    ]
    assert chosen.dlg_load == 0


def test_an_answer_that_leaves_the_expiry_where_it_was_is_not_sent_to_the_ledger() -> None:
    # hash_initexpire equal to hash_expire (the defaults): the call expires at the same
    # time answered or not, so the 2xx changes nothing in Redis.
    r = router(LOADED, LOAD_ROUTE, hash_initexpire=600, hash_expire=600)
    ledger = Ledger()
    r.calls.share = ledger
    plan = plan_for(r, request(call_id="c1"))
    target = plan.first()[0]
    plan.answered(target, 10.0)
    r.in_dialog(request(method="BYE", call_id="c1"), 20.0)
    assert [what for what, _, _ in ledger.told] == ["reserved", "released"]


def test_a_bye_of_a_call_another_node_counted_reaches_the_ledger() -> None:
    r = router(LOADED, LOAD_ROUTE)
    ledger = Ledger()
    r.calls.share = ledger
    r.in_dialog(request(method="BYE", call_id="from-lb2"), 1.0)
    assert ledger.told == [("released", "from-lb2", 0.0)]


def test_without_algorithm_10_nothing_goes_to_the_ledger() -> None:
    r = router(TWO)
    ledger = Ledger()
    r.calls.share = ledger
    plan_for(r, request(call_id="c1"))
    r.in_dialog(request(method="BYE", call_id="c1"), 1.0)
    assert ledger.told == []


def test_the_cluster_count_decides_the_selection_and_survives_a_reload() -> None:
    r = router(LOADED, LOAD_ROUTE)
    ledger = Ledger()
    r.calls.share = ledger
    # Another node has two calls on MG1: it is full, MG2 gets the call.
    assert r.calls.set_load(1, MG1.upper(), 2)
    assert not r.calls.set_load(1, "sip:10.9.9.9:5060", 1)
    assert plan_for(r, request(call_id="c1")).first()[0].handle is dest(r, MG2)
    r.replace(list(r.sets.destinations()))
    assert ledger.rebinds == 1
    assert r.calls.local_count(1, MG2) == 1 and r.calls.local_count(1, MG1) == 0


def test_a_call_released_elsewhere_is_forgotten_without_a_count_change() -> None:
    r = router(LOADED, LOAD_ROUTE)
    chosen = plan_for(r, request(call_id="c1")).first()[0].handle
    assert isinstance(chosen, Destination) and chosen.dlg_load == 1
    assert r.calls.forget("c1") and not r.calls.forget("c1")
    assert chosen.dlg_load == 1  # the cluster's count comes with set_load
    assert r.calls.entries() == []


# -- a held INVITE: the cluster's ledger answers before it goes -------------------------


@dataclass
class HoldingLedger(Ledger):
    """A LoadShare whose every reservation is a hold (a strict ledger with a maxload)."""

    holds: list[str] = field(default_factory=list)

    def reserved(self, entry: LoadEntry, maxload: int, ttl: float) -> str:  # type: ignore[override]
        super().reserved(entry, maxload, ttl)
        hold = f"hold:{entry.call_id}@{entry.key}"
        self.holds.append(hold)
        return hold


CALLER_ADDR = Addr("udp", "192.0.2.1", 5060)


def held_core(ledger: Ledger) -> tuple[ProxyCore, DispatchRouter]:
    r = router(LOADED, LOAD_ROUTE)
    r.calls.share = ledger
    core = ProxyCore(ProxySettings(local={"udp": ("127.0.0.1", 5060)}), r, Timers())
    return core, r


def sent(core: ProxyCore) -> list[tuple[Addr, Request | Response]]:
    return [(addr, parse_datagram(data)) for addr, data, _ in core.datagrams_to_send()]


def hop_of(hold: str) -> tuple[str, int]:
    """The address of the destination a HoldingLedger hold names."""
    host, port = hold.split("@", 1)[1].removeprefix("sip:").split(":")
    return host, int(port)


def invites_to(out: list[tuple[Addr, Request | Response]]) -> list[tuple[str, int]]:
    return [
        (addr.host, addr.port)
        for addr, msg in out
        if isinstance(msg, Request) and msg.method == "INVITE"
    ]


def test_a_held_invite_is_sent_only_when_the_ledger_says_it_fits() -> None:
    ledger = HoldingLedger()
    core, _ = held_core(ledger)
    core.receive(request(call_id="c1").to_bytes(), CALLER_ADDR, 0.0)
    out = sent(core)
    assert invites_to(out) == []  # only the 100 Trying
    assert [m.status for _, m in out if isinstance(m, Response)] == [100]
    assert core.awaiting_final() == 1  # a drain waits for it
    held = core.take_held()
    assert len(held) == 1 and core.take_held() == []
    [(ticket, hold)] = held
    assert hold in (f"hold:c1@{MG1}", f"hold:c1@{MG2}")
    core.admitted(ticket, True, 0.001)
    assert invites_to(sent(core)) == [hop_of(hold)]
    core.admitted(ticket, True, 0.002)  # settled once: a second answer does nothing
    assert sent(core) == []


def test_a_call_the_ledger_finds_full_goes_to_the_next_destination_without_a_failure() -> None:
    ledger = HoldingLedger()
    core, r = held_core(ledger)
    core.receive(request(call_id="c1").to_bytes(), CALLER_ADDR, 0.0)
    sent(core)
    [(ticket, hold)] = core.take_held()
    full, other = (MG1, MG2) if hold.endswith(MG1) else (MG2, MG1)
    core.admitted(ticket, False, 0.001)
    assert invites_to(sent(core)) == []  # the other one is held in its turn
    [(ticket2, hold2)] = core.take_held()
    assert hold2 == f"hold:c1@{other}"
    core.admitted(ticket2, True, 0.002)
    assert invites_to(sent(core)) == [hop_of(hold2)]
    refused = dest(r, full)
    assert (refused.flags_text(), refused.dispatched, refused.dlg_load) == ("AX", 0, 0)
    assert refused.calls_rejected == [0, 0, 0, 0] and refused.calls_timeout == 0
    assert r.calls.local_count(1, other) == 1


def test_a_call_that_fits_nowhere_is_answered_503_and_released() -> None:
    ledger = HoldingLedger()
    core, r = held_core(ledger)
    core.receive(request(call_id="c1").to_bytes(), CALLER_ADDR, 0.0)
    sent(core)
    for n in range(2):
        [(ticket, _)] = core.take_held()
        core.admitted(ticket, False, 0.001 * (n + 1))
    out = sent(core)
    assert invites_to(out) == []
    assert [m.status for _, m in out if isinstance(m, Response)] == [503]
    assert ledger.told[-1] == ("released", "c1", 0.0)
    assert r.calls.entries() == [] and core.awaiting_final() == 0


def test_a_cancel_while_held_answers_487_and_the_late_answer_sends_nothing() -> None:
    ledger = HoldingLedger()
    core, r = held_core(ledger)
    invite = request(call_id="c1")
    core.receive(invite.to_bytes(), CALLER_ADDR, 0.0)
    sent(core)
    [(ticket, _)] = core.take_held()
    cancel = invite.to_bytes().replace(b"INVITE sip:", b"CANCEL sip:", 1)
    cancel = cancel.replace(b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL")
    core.receive(cancel, CALLER_ADDR, 0.01)
    statuses = sorted(m.status for _, m in sent(core) if isinstance(m, Response))
    assert statuses == [200, 487]
    assert ledger.told[-1] == ("released", "c1", 0.0)
    core.admitted(ticket, True, 0.02)
    assert sent(core) == []
    assert r.calls.entries() == []
