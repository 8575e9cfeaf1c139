"""Fallback sets (``[[route]] fallback``, Kamailio's ``ds_select_routes``), in memory.

The failover list of a call is its rule's set's, followed by each fallback set's list
selected by that set's algorithm; ``limit`` caps the whole list; failover walks across
the sets, and a call whose set has nothing usable starts in the first fallback set that
has something. Plans are driven by hand on a virtual clock (``now`` passed in), and the
last tests through the sans-IO proxy core, as ``tests/test_routing.py`` does.
"""

from __future__ import annotations

import pytest

from sipdispatch.dispatcher.states import DS_DISABLED_DST
from sipdispatch.logs import call_fields, call_text
from sipdispatch.routing import DispatchPlan, DispatchRouter
from sipdispatch.service import route_rules
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.calls import CallRecord
from sipdispatch.sip.router import Reject, Target
from tests.test_routing import (
    CALLER,
    GW1,
    GW2,
    MG1,
    MG2,
    MG3,
    Core,
    answer,
    caller_invite,
    config,
    dest,
    destinations,
    plan_for,
    request,
    requests_to,
    responses_to_caller,
    router,
    uri_of,
)

MG4 = "sip:10.0.0.4:5060"
MG5 = "sip:10.0.0.5:5060"
GW3 = Addr("udp", "10.0.0.3", 5060)

# Set 1: MG1 then MG2 (priority); set 2: MG3; set 3: MG4 then MG5.
SETS = f"1 {MG1} 0 10\n1 {MG2} 0 5\n2 {MG3} 0 0\n3 {MG4} 0 10\n3 {MG5} 0 5\n"
SERIAL_WITH_FALLBACK = [{"set": 1, "algorithm": 8, "fallback": [2, 3]}]


def walk(plan: DispatchPlan, status: int = 503, now: float = 0.0) -> list[str]:
    """The destinations a call is sent to when every one answers ``status``."""
    target: Target | None = plan.first()[0]
    tried = []
    while target is not None:
        tried.append(uri_of(target))
        target = plan.next_target(target, status, False, now)
    return tried


def test_the_failover_list_goes_on_with_each_fallback_set_in_order() -> None:
    r = router(SETS, SERIAL_WITH_FALLBACK)
    assert walk(plan_for(r)) == [MG1, MG2, MG3, MG4, MG5]


def test_the_router_rule_carries_the_fallback_sets_with_their_algorithms() -> None:
    cfg = config(
        [{"set": 1, "algorithm": "round-robin", "fallback": [2, {"set": 3, "algorithm": 8}]}]
    )
    [rule] = route_rules(cfg.routes)
    assert rule.fallback == ((2, 4), (3, 8))


def test_fallback_sets_are_listed_in_the_order_given_not_by_set_id() -> None:
    r = router(SETS, [{"set": 1, "algorithm": 8, "fallback": [3, 2]}])
    assert walk(plan_for(r)) == [MG1, MG2, MG4, MG5, MG3]


def test_a_fallback_table_selects_its_set_with_its_own_algorithm() -> None:
    # Set 3 by round-robin for the rule, but priority for the fallback entry: MG4 first
    # every time, where round-robin would alternate.
    rules = [{"set": 1, "algorithm": 8, "fallback": [{"set": 3, "algorithm": 8}]}]
    r = router(SETS, [{**rules[0], "mark_failed": ""}])  # every call walks the whole list
    for i in range(3):
        assert walk(plan_for(r, request(call_id=f"c{i}"))) == [MG1, MG2, MG4, MG5]


def test_a_bare_fallback_id_takes_the_rules_algorithm() -> None:
    # Round-robin in both sets: the fallback set's start moves with each call that
    # reaches it.
    r = router(SETS, [{"set": 1, "algorithm": 4, "fallback": [3], "mark_failed": ""}])
    starts = [walk(plan_for(r, request(call_id=f"c{i}")))[2] for i in range(4)]
    assert sorted(starts) == [MG4, MG4, MG5, MG5]
    assert starts[0] != starts[1]


def test_a_fallback_set_is_selected_only_when_the_walk_reaches_it() -> None:
    # Calls answered in set 1 leave set 3's round-robin position alone: the first call
    # that reaches it gets what the first call to it would have got.
    reached = router(SETS, [{"set": 1, "algorithm": 4, "fallback": [3]}])
    first_reaching = walk(plan_for(reached, request(call_id="x")))[2]
    r = router(SETS, [{"set": 1, "algorithm": 4, "fallback": [3]}])
    for i in range(5):
        assert uri_of(plan_for(r, request(call_id=f"ok{i}")).first()[0]) in (MG1, MG2)
    assert walk(plan_for(r, request(call_id="x")))[2] == first_reaching


@pytest.mark.parametrize(
    ("limit", "tried"),
    [
        (0, [MG1, MG2, MG3, MG4, MG5]),
        (1, [MG1]),
        (2, [MG1, MG2]),
        (3, [MG1, MG2, MG3]),
        (4, [MG1, MG2, MG3, MG4]),
        (9, [MG1, MG2, MG3, MG4, MG5]),
    ],
)
def test_limit_caps_the_whole_list_across_the_sets(limit: int, tried: list[str]) -> None:
    r = router(SETS, [{"set": 1, "algorithm": 8, "fallback": [2, 3], "limit": limit}])
    assert walk(plan_for(r)) == tried


def test_a_fallback_set_the_limit_leaves_no_room_for_is_not_selected() -> None:
    r = router(SETS, [{"set": 1, "algorithm": 4, "fallback": [3], "limit": 2}])
    fallback_set = r.sets.get(3)
    assert fallback_set is not None
    assert sorted(walk(plan_for(r))) == [MG1, MG2]
    assert fallback_set.last == 0  # its round-robin position never moved
    assert r.fallback_calls == {}


def test_a_set_with_nothing_usable_sends_the_call_to_the_first_fallback_set_that_has_one() -> None:
    # Set 1 inactive, set 2 disabled, set 3 usable.
    r = router(
        f"1 {MG1} 1 10\n1 {MG2} 1 5\n2 {MG3} 4 0\n3 {MG4} 0 10\n3 {MG5} 0 5\n",
        SERIAL_WITH_FALLBACK,
    )
    plan = plan_for(r)
    assert walk(plan) == [MG4, MG5]
    assert plan.fell_back
    assert r.no_destination == {}
    assert r.fallback_calls == {(1, 3): 1}


def test_a_set_missing_from_the_list_falls_back_as_an_empty_one() -> None:
    r = router(f"2 {MG3} 0 0\n", [{"set": 7, "fallback": [2]}])
    assert walk(plan_for(r)) == [MG3]


def test_no_destination_only_when_every_set_has_nothing_usable() -> None:
    r = router(
        f"1 {MG1} 1 0\n2 {MG3} 4 0\n",
        [{"set": 1, "fallback": [2, 3], "no_destination": 480}],
    )
    assert r.route(request(), CALLER, 0.0) == Reject(480, "No destination")
    assert r.no_destination == {1: 1}  # counted on the rule's set
    assert r.fallback_calls == {}


def test_failover_skips_a_fallback_destination_that_went_down_since_its_selection() -> None:
    r = router(SETS, [{"set": 1, "algorithm": 8, "fallback": [3]}])
    plan = plan_for(r)
    t = plan.first()[0]
    t = plan.next_target(t, 503, False, 0.0)  # MG2
    t = plan.next_target(t, 503, False, 0.0)  # MG4: set 3 selected now
    assert uri_of(t) == MG4
    r.set_state(dest(r, MG5, 3), DS_DISABLED_DST, "maintenance", 1.0)
    assert t is not None
    assert plan.next_target(t, 503, False, 1.0) is None


def test_a_fallback_set_selected_late_leaves_out_what_is_down_by_then() -> None:
    r = router(SETS, [{"set": 1, "algorithm": 8, "fallback": [3]}])
    plan = plan_for(r)
    t = plan.first()[0]
    r.set_state(dest(r, MG4, 3), DS_DISABLED_DST, "maintenance", 0.5)
    t = plan.next_target(t, 503, False, 1.0)
    assert uri_of(t) == MG2
    assert uri_of(plan.next_target(t, 503, False, 1.0)) == MG5


def test_mark_failed_marks_the_destination_in_its_own_set() -> None:
    # The same gateway is in set 1 and in set 2: failing in set 1 marks set 1's entry;
    # set 2's entry is tried (and then marked) on its own.
    r = router(f"1 {MG1} 0 0\n2 {MG1} 0 0\n", [{"set": 1, "fallback": [2], "mark_failed": "ip"}])
    plan = plan_for(r)
    t = plan.first()[0]
    assert t.handle is dest(r, MG1, 1)
    t2 = plan.next_target(t, 503, False, 0.0)
    assert t2 is not None and t2.handle is dest(r, MG1, 2)
    assert (dest(r, MG1, 1).flags_text(), dest(r, MG1, 2).flags_text()) == ("IP", "AX")
    assert plan.next_target(t2, 503, False, 0.0) is None
    assert dest(r, MG1, 2).flags_text() == "IP"


def test_a_deliberate_answer_in_set_1_does_not_reach_the_fallback_sets() -> None:
    r = router(SETS, SERIAL_WITH_FALLBACK)
    plan = plan_for(r)
    assert plan.next_target(plan.first()[0], 486, False, 0.0) is None
    assert r.fallback_calls == {}


def test_a_timeout_fails_over_into_the_fallback_set() -> None:
    r = router(f"1 {MG1} 0 0\n2 {MG3} 0 0\n", [{"set": 1, "fallback": [2], "failover_on": []}])
    plan = plan_for(r)
    assert uri_of(plan.next_target(plan.first()[0], 408, True, 30.0)) == MG3


def test_without_failover_a_failed_call_stops_but_an_empty_set_still_falls_back() -> None:
    rules = [{"set": 1, "fallback": [2]}]
    r = router(f"1 {MG1} 0 0\n2 {MG3} 0 0\n", rules, failover=False)
    plan = plan_for(r)
    assert plan.next_target(plan.first()[0], 503, False, 0.0) is None
    r = router(f"1 {MG1} 1 0\n2 {MG3} 0 0\n", rules, failover=False)
    assert uri_of(plan_for(r).first()[0]) == MG3


def test_use_default_keeps_each_sets_default_last_in_its_own_part() -> None:
    # use_default: the last destination of each set in set order is its default.
    r = router(
        f"1 {MG1} 0 10\n1 {MG2} 0 1\n2 {MG3} 0 10\n2 {MG4} 0 1\n",
        [{"set": 1, "algorithm": 8, "fallback": [2]}],
        use_default=True,
    )
    assert walk(plan_for(r)) == [MG1, MG2, MG3, MG4]


def test_calls_to_a_fallback_set_are_counted_once_per_call_and_set() -> None:
    r = router(SETS, [{**SERIAL_WITH_FALLBACK[0], "mark_failed": ""}])
    walk(plan_for(r, request(call_id="a")))  # reaches sets 2 and 3
    plan = plan_for(r, request(call_id="b"))
    t = plan.next_target(plan.first()[0], 503, False, 0.0)
    assert t is not None
    assert uri_of(plan.next_target(t, 503, False, 0.0)) == MG3  # reaches set 2 only
    assert r.fallback_calls == {(1, 2): 2, (1, 3): 1}


def test_requests_other_than_invite_fall_back_without_being_counted_as_calls() -> None:
    r = router(f"1 {MG1} 1 0\n2 {MG3} 0 0\n", [{"set": 1, "fallback": [2]}])
    assert walk(plan_for(r, request(method="MESSAGE"))) == [MG3]
    assert r.fallback_calls == {}


def test_parallel_forking_then_the_fallback_sets_one_destination_at_a_time() -> None:
    r = router(SETS, [{"set": 1, "algorithm": 12, "fallback": [{"set": 3, "algorithm": 8}]}])
    plan = plan_for(r)
    forked = plan.first()
    assert [uri_of(t) for t in forked] == [MG1, MG2]
    assert plan.next_target(forked[1], 503, False, 0.0) is None  # MG1 still rings
    t = plan.next_target(forked[0], 503, False, 0.0)
    assert uri_of(t) == MG4
    assert uri_of(plan.next_target(t, 503, False, 0.0)) == MG5  # serial from here
    assert r.fallback_calls == {(1, 3): 1}


def test_a_forked_branch_that_answers_deliberately_keeps_the_call_from_the_fallback() -> None:
    r = router(SETS, [{"set": 1, "algorithm": 12, "fallback": [{"set": 3, "algorithm": 8}]}])
    plan = plan_for(r)
    forked = plan.first()
    assert plan.next_target(forked[0], 486, False, 0.0) is None
    assert plan.next_target(forked[1], 503, False, 0.0) is None
    assert r.fallback_calls == {}


def test_parallel_rule_with_its_set_empty_starts_serially_in_the_fallback_set() -> None:
    r = router(
        f"1 {MG1} 1 0\n3 {MG4} 0 10\n3 {MG5} 0 5\n",
        [{"set": 1, "algorithm": 12, "fallback": [{"set": 3, "algorithm": 8}]}],
    )
    plan = plan_for(r)
    assert not plan.parallel
    assert walk(plan) == [MG4, MG5]


def test_call_load_in_a_fallback_set_skips_a_destination_at_its_maxload() -> None:
    r = router(
        f"1 {MG1} 0 0\n2 {MG3} 0 0 duid=mg3;maxload=1\n2 {MG4} 0 0 duid=mg4;maxload=1\n",
        [{"set": 1, "fallback": [{"set": 2, "algorithm": "call-load"}]}],
    )
    dest(r, MG3, 2).dlg_load = 1  # full
    plan = plan_for(r, request(call_id="c1"))
    t = plan.next_target(plan.first()[0], 503, False, 0.0)
    assert uri_of(t) == MG4
    assert dest(r, MG4, 2).dlg_load == 1  # the call's load moved there
    assert dest(r, MG1, 1).dlg_load == 0


def test_a_plan_made_before_a_reload_selects_its_fallback_set_from_the_new_list() -> None:
    r = router(SETS, [{"set": 1, "algorithm": 8, "fallback": [3]}])
    plan = plan_for(r)
    t = plan.first()[0]
    r.replace(destinations(f"1 {MG1} 0 10\n1 {MG2} 0 5\n3 {MG5} 0 0\n"))
    t = plan.next_target(t, 503, False, 1.0)
    assert uri_of(t) == MG2
    t = plan.next_target(t, 503, False, 1.0)
    assert t is not None and t.handle is dest(r, MG5, 3)


# -- the call log --------------------------------------------------------------------


def record_of(r: DispatchRouter, plan: DispatchPlan, status: int, now: float) -> CallRecord:
    records: list[CallRecord] = []
    r.call_log = records.append
    plan.finished(status, now)
    [rec] = records
    return rec


def test_each_attempt_of_the_call_record_names_its_set() -> None:
    r = router(SETS, SERIAL_WITH_FALLBACK)
    plan = plan_for(r)
    t: Target | None = plan.first()[0]
    for _ in range(2):
        assert t is not None
        t = plan.next_target(t, 503, False, 0.1)
    assert t is not None and uri_of(t) == MG3
    plan.answered(t, 0.2)
    rec = record_of(r, plan, 200, 0.2)
    assert rec.outcome == "failed_over"
    assert rec.set_id == 1
    assert [(a.destination, a.status, a.set_id) for a in rec.attempts] == [
        (MG1, 503, 1),
        (MG2, 503, 1),
        (MG3, 200, 2),
    ]
    assert call_text(rec) == (
        "call call-1 from 192.0.2.1:5060 sip:1111111@proxy.example.com: set 1 10.0.0.1:5060 "
        "503 -> 10.0.0.2:5060 503 -> set 2 10.0.0.3:5060 200 (0.20 s)"
    )
    assert [a["set"] for a in call_fields(rec)["attempts"]] == [1, 1, 2]


def test_a_call_answered_in_a_fallback_set_is_logged_though_nothing_failed() -> None:
    r = router(f"1 {MG1} 1 0\n2 {MG3} 0 0\n", [{"set": 1, "fallback": [2]}])
    plan = plan_for(r)
    t = plan.first()[0]
    plan.answered(t, 0.05)
    rec = record_of(r, plan, 200, 0.05)
    assert rec.outcome == "failed_over"
    assert call_text(rec).endswith(": set 2 10.0.0.3:5060 200 (0.05 s)")


def test_a_call_that_stays_in_its_set_is_logged_as_before() -> None:
    r = router(SETS, SERIAL_WITH_FALLBACK)
    plan = plan_for(r)
    t = plan.next_target(plan.first()[0], 503, False, 0.1)
    assert t is not None
    plan.answered(t, 0.2)
    rec = record_of(r, plan, 200, 0.2)
    assert call_text(rec).endswith(": 10.0.0.1:5060 503 -> 10.0.0.2:5060 200 (0.20 s)")


# -- through the proxy core (sans-IO, virtual clock) -----------------------------------


def test_seam_both_set_1_gateways_answer_503_and_set_2s_gateway_answers_the_call() -> None:
    r = router(
        f"1 {MG1} 0 10\n1 {MG2} 0 5\n2 {MG3} 0 0\n", [{"set": 1, "algorithm": 8, "fallback": [2]}]
    )
    c = Core(r)
    records: list[CallRecord] = []
    r.call_log = records.append
    [inv1] = requests_to(c.send(caller_invite(), CALLER), GW1, "INVITE")
    out = c.send(answer(inv1, 503, "mg1"), GW1)
    [inv2] = requests_to(out, GW2, "INVITE")
    out = c.send(answer(inv2, 503, "mg2"), GW2)
    [inv3] = requests_to(out, GW3, "INVITE")
    assert responses_to_caller(out) == []
    c.pump.now = 0.4
    assert responses_to_caller(c.send(answer(inv3, 200, "mg3"), GW3)) == [200]
    [rec] = records
    assert [(a.status, a.set_id) for a in rec.attempts] == [(503, 1), (503, 1), (200, 2)]
    assert (dest(r, MG1).flags_text(), dest(r, MG2).flags_text()) == ("IP", "IP")
    assert r.fallback_calls == {(1, 2): 1}
    # The next call starts in set 2 at once: set 1 has nothing usable left.
    out = c.send(caller_invite("seam-2"), CALLER)
    assert requests_to(out, GW3, "INVITE") and not requests_to(out, GW1, "INVITE")
    assert r.fallback_calls == {(1, 2): 2}
