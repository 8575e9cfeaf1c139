"""When a destination event is raised: Kamailio's ``dispatcher:dst-down`` /
``dispatcher:dst-up`` decision (``ds_update_state`` with ``event_callback_mode``), on
the real prober and router over a virtual clock, and the decision itself per origin of
the change."""

from __future__ import annotations

import pytest

from sipdispatch.config import EventsConfig
from sipdispatch.dispatcher.states import (
    DS_DISABLED_DST,
    DS_INACTIVE_DST,
    DS_PROBING_DST,
    DS_TRYING_DST,
)
from sipdispatch.events import DestinationEvents, event_kind
from sipdispatch.health.state import (
    ORIGIN_ADMIN,
    ORIGIN_CALL,
    ORIGIN_CLUSTER,
    ORIGIN_DNS,
    ORIGIN_PROBE,
    ORIGIN_WORKER,
    StateChange,
)
from sipdispatch.hooks import DestinationEvent, HookLoader

from .harness import Net

GW1 = "sip:127.0.0.1:5071"
GW2 = "sip:127.0.0.1:5072"
EPOCH = 1_764_633_600.0
"""The Unix time the virtual clock's 0 stands for."""

AX = 0
AP = DS_PROBING_DST
TP = DS_TRYING_DST | DS_PROBING_DST
IP = DS_INACTIVE_DST | DS_PROBING_DST
DX = DS_DISABLED_DST


def listening(net: Net, mode: int = 0, *, probes: bool = True) -> list[DestinationEvent]:
    """The events raised for ``net``'s state changes, stamped by its virtual clock."""
    events = DestinationEvents(
        EventsConfig(mode=mode),
        HookLoader(()),
        find=net.router.sets.find,
        node="lb1",
        clock=lambda: EPOCH + net.now,
        probes=probes,
    )
    seen: list[DestinationEvent] = []

    def told(change: StateChange) -> None:
        event = events.on_change(change)
        if event is not None:
            seen.append(event)

    net.state_log.subscribe(told)
    return seen


def test_gateway_that_stops_answering_raises_dst_down_once_and_dst_up_when_back() -> None:
    net = Net(
        f"1 {GW1} 0 0 duid=mg1\n1 {GW2}\n",
        probing_mode=1, probing_threshold=2, inactive_threshold=2,
    )  # fmt: skip
    seen = listening(net)
    net.advance(20)  # AX -> AP: the first answer is not an event (it never was down)
    assert net.letters(GW1) == "AP" and seen == []
    net.gw(GW1).code = None
    while net.letters(GW1) != "IP":
        net.advance(1)
    went_down_at = net.state_log.events[-1].at
    (down,) = seen
    assert (down.event, down.set, down.uri, down.duid) == ("dst-down", 1, GW1, "mg1")
    assert (down.old_state, down.new_state, down.code, down.origin) == ("TP", "IP", 408, "probe")
    assert down.reason == "no reply to OPTIONS (408), 2 missed in a row"
    assert down.time == EPOCH + went_down_at and down.node == "lb1"
    assert down.route == "dispatcher:dst-down"
    net.advance(60)  # still silent: IP stays IP, nothing more
    assert len(seen) == 1
    net.gw(GW1).code = 200
    while net.letters(GW1) != "AP":
        net.advance(1)
    up = seen[-1]
    assert [e.event for e in seen] == ["dst-down", "dst-up"]
    assert (up.old_state, up.new_state, up.code) == ("IP", "AP", 200)
    assert up.time == EPOCH + net.state_log.events[-1].at  # when the answer came
    assert all(e.uri == GW1 for e in seen)


def test_trying_is_not_down_and_one_miss_below_the_threshold_raises_nothing() -> None:
    net = Net(f"1 {GW1}\n", probing_mode=1, probing_threshold=3)
    seen = listening(net)
    net.advance(20)
    net.gw(GW1).code = None
    while net.letters(GW1) != "TP":
        net.advance(1)
    net.gw(GW1).code = 200
    net.advance(30)
    assert net.letters(GW1) == "AP"
    assert seen == []


def test_a_failed_call_raises_dst_down_in_mode_0_but_not_in_mode_1() -> None:
    for mode, expected in ((0, ["dst-down"]), (1, [])):
        net = Net(f"1 {GW1}\n1 {GW2}\n")
        seen = listening(net, mode)
        net.router.mark(net.dest(GW1), "ip", "503 from the gateway", net.now)
        assert net.letters(GW1) == "IP"
        assert [e.event for e in seen] == expected, mode
        if expected:
            assert (seen[0].origin, seen[0].code) == ("call", None)


def test_an_operators_set_state_raises_nothing_as_in_kamailio() -> None:
    net = Net(f"1 {GW1}\n")
    seen = listening(net)
    dest = net.dest(GW1)
    net.router.set_state(dest, DX, "dispatcher.set_state dx", net.now)
    net.router.set_state(dest, AX, "dispatcher.set_state ax", net.now)
    assert seen == []


def test_a_change_applied_from_another_worker_or_node_raises_nothing_here() -> None:
    net = Net(f"1 {GW1}\n")
    seen = listening(net)
    net.router.adopt_state(1, GW1, IP, "no reply, on worker 1", net.now, origin=ORIGIN_WORKER)
    net.router.adopt_state(1, GW1, AP, "answered, on lb2", net.now, origin=ORIGIN_CLUSTER)
    assert [net.letters(GW1), seen] == ["AP", []]


def test_a_worker_that_does_not_raise_its_pings_events_still_raises_its_calls() -> None:
    net = Net(f"1 {GW1}\n", probing_mode=1)
    seen = listening(net, probes=False)
    net.advance(20)
    net.gw(GW1).code = None
    while net.letters(GW1) != "IP":
        net.advance(1)
    assert seen == []
    net.router.set_state(net.dest(GW1), AX, "dispatcher.set_state ax", net.now)
    net.router.mark(net.dest(GW1), "ip", "408 from the gateway", net.now)
    assert [(e.event, e.origin) for e in seen] == [("dst-down", "call")]


def change(old: int, new: int, origin: str = ORIGIN_PROBE) -> StateChange:
    return StateChange(1, GW1, old, new, "why", 5.0, 408, origin)


@pytest.mark.parametrize(
    ("old", "new", "origin", "modes"),
    [
        # went down / came up: every mode for pings, modes 0 and 2 for calls
        (AP, IP, ORIGIN_PROBE, {0: "dst-down", 1: "dst-down", 2: "dst-down"}),
        (TP, IP, ORIGIN_PROBE, {0: "dst-down", 1: "dst-down", 2: "dst-down"}),
        (IP, AP, ORIGIN_PROBE, {0: "dst-up", 1: "dst-up", 2: "dst-up"}),
        (AX, IP, ORIGIN_CALL, {0: "dst-down", 1: None, 2: "dst-down"}),
        (IP, AX, ORIGIN_CALL, {0: "dst-up", 1: None, 2: "dst-up"}),
        # trying is still up; disabled and inactive are both down
        (AP, TP, ORIGIN_PROBE, {0: None, 1: None, 2: None}),
        (IP, DX, ORIGIN_CALL, {0: None, 1: None, 2: None}),
        # mode 2: a destination with no state bits yet whose first state keeps it up
        (AX, AP, ORIGIN_PROBE, {0: None, 1: None, 2: "dst-up"}),
        (AX, TP, ORIGIN_PROBE, {0: None, 1: None, 2: "dst-up"}),
        (AP | 32, AP | DS_TRYING_DST | 32, ORIGIN_PROBE, {0: None, 1: None, 2: None}),
        # never: an operator, DNS, another worker or node
        (AP, DX, ORIGIN_ADMIN, {0: None, 1: None, 2: None}),
        (DX, AP, ORIGIN_ADMIN, {0: None, 1: None, 2: None}),
        (AX, IP, ORIGIN_DNS, {0: None, 1: None, 2: None}),
        (AP, IP, ORIGIN_WORKER, {0: None, 1: None, 2: None}),
        (IP, AP, ORIGIN_CLUSTER, {0: None, 1: None, 2: None}),
    ],
)
def test_which_changes_raise_which_event_in_each_mode(
    old: int, new: int, origin: str, modes: dict[int, str | None]
) -> None:
    for mode, expected in modes.items():
        assert event_kind(change(old, new, origin), mode) == expected, mode


def test_event_carries_the_same_fields_as_json_and_as_environment() -> None:
    event = DestinationEvent(
        "dst-down", 1, GW1, "TP", "IP", "no reply", 408, "probe", EPOCH + 0.25, "mg1", "lb1"
    )
    assert event.as_dict() == {
        "event": "dst-down", "set": 1, "uri": GW1, "duid": "mg1", "old_state": "TP",
        "new_state": "IP", "reason": "no reply", "code": 408, "origin": "probe",
        "time": EPOCH + 0.25, "node": "lb1",
    }  # fmt: skip
    env = event.environment()
    assert env["SIPDISPATCH_EVENT"] == "dst-down" and env["SIPDISPATCH_SET"] == "1"
    assert env["SIPDISPATCH_URI"] == GW1 and env["SIPDISPATCH_CODE"] == "408"
    assert env["SIPDISPATCH_TIME"] == "1764633600.250"
    assert set(env) == {f"SIPDISPATCH_{k.upper()}" for k in event.as_dict()}
    called = DestinationEvent("dst-up", 1, GW1, "IP", "AX", "x", None, "call", EPOCH)
    assert called.environment()["SIPDISPATCH_CODE"] == "" and called.as_dict()["code"] is None
    assert called.up and not called.down
