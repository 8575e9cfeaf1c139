"""Call load accounting (algorithm 10) on a virtual clock."""

from __future__ import annotations

from sipdispatch.dispatcher import CallLoadTable, Destination, DispatcherSets
from sipdispatch.dispatcher.callload import LANE_SLACK

from .helpers import build, pick, uris

LOAD = """\
1 sip:gw2:5060 0 0 duid=gw2;maxload=2
1 sip:gw1:5060 0 0 duid=gw1;maxload=2
"""


def gateways(sets: DispatcherSets) -> tuple[Destination, Destination]:
    gw1 = sets.find(1, "sip:gw1:5060")
    gw2 = sets.find(1, "sip:gw2:5060")
    assert gw1 is not None and gw2 is not None
    return gw1, gw2


def test_invite_sent_counts_one_call() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets)
    gw1, _ = gateways(sets)
    assert table.on_invite_sent("c1", gw1, now=0.0)
    assert gw1.dlg_load == 1
    assert "c1" in table and len(table) == 1


def test_retransmitted_invite_is_not_counted_twice() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets)
    gw1, _ = gateways(sets)
    table.on_invite_sent("c1", gw1, now=0.0)
    assert not table.on_invite_sent("c1", gw1, now=0.5)
    assert gw1.dlg_load == 1


def test_failover_moves_the_call_to_the_next_destination() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets)
    gw1, gw2 = gateways(sets)
    table.on_invite_sent("c1", gw1, now=0.0)
    table.on_invite_sent("c1", gw2, now=1.0)
    assert (gw1.dlg_load, gw2.dlg_load) == (0, 1)


def test_release_never_goes_below_zero() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets)
    gw1, _ = gateways(sets)
    table.on_invite_sent("c1", gw1, now=0.0)
    assert table.on_released("c1")
    assert not table.on_released("c1")
    assert gw1.dlg_load == 0
    gw1.dlg_load = 0
    table.on_invite_sent("c2", gw1, now=0.0)
    gw1.dlg_load = 0  # drifted by someone else
    table.on_released("c2")
    assert gw1.dlg_load == 0


def test_selection_refuses_at_maxload_and_accepts_again_after_release() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets)
    for n in range(4):
        sel = pick(sets, 1, 10)
        assert sel.selected is not None
        table.on_invite_sent(f"c{n}", sel.selected, now=0.0)
    gw1, gw2 = gateways(sets)
    assert (gw1.dlg_load, gw2.dlg_load) == (2, 2)
    assert not pick(sets, 1, 10)
    table.on_released("c2")
    assert uris(pick(sets, 1, 10)) != []


def test_unconfirmed_call_expires_after_initexpire() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets, hash_expire=7200, hash_initexpire=30)
    gw1, _ = gateways(sets)
    table.on_invite_sent("c1", gw1, now=100.0)
    assert table.next_deadline() == 130.0
    assert table.expire(129.9) == []
    assert gw1.dlg_load == 1
    assert table.expire(130.0) == ["c1"]
    assert gw1.dlg_load == 0
    assert table.next_deadline() is None


def test_confirmed_call_lives_until_hash_expire_from_the_invite() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets, hash_expire=3600, hash_initexpire=30)
    gw1, _ = gateways(sets)
    table.on_invite_sent("c1", gw1, now=0.0)
    assert table.on_confirmed("c1", now=5.0)
    assert table.next_deadline() == 3600.0
    assert table.expire(1000.0) == []
    assert gw1.dlg_load == 1
    assert table.expire(3600.0) == ["c1"]
    assert gw1.dlg_load == 0


def test_confirming_a_call_whose_deadline_stays_keeps_one_expiry_entry() -> None:
    # hash_initexpire equal to hash_expire (the defaults): the 2xx does not move the
    # deadline, so the call keeps the one expiry entry it had -- and still expires then.
    sets = build(LOAD)
    table = CallLoadTable(sets, hash_expire=7200, hash_initexpire=7200)
    gw1, _ = gateways(sets)
    table.on_invite_sent("c1", gw1, now=10.0)
    assert table.on_confirmed("c1", now=11.0)
    assert [len(lane) for lane in table._lanes] == [1, 0]
    assert table.next_deadline() == 7210.0
    assert table.expire(7209.9) == []
    assert table.expire(7210.0) == ["c1"]
    assert gw1.dlg_load == 0 and table.next_deadline() is None


def test_full_gateway_is_usable_again_after_expiry() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets, hash_initexpire=10)
    gw1, gw2 = gateways(sets)
    for n, gw in enumerate([gw1, gw1, gw2, gw2]):
        table.on_invite_sent(f"c{n}", gw, now=float(n))
    assert not pick(sets, 1, 10)
    table.expire(10.0)  # c0 (sent at 0) expires
    assert uris(pick(sets, 1, 10)) == ["sip:gw1:5060"]


def test_released_call_does_not_expire_later() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets, hash_initexpire=10)
    gw1, _ = gateways(sets)
    table.on_invite_sent("c1", gw1, now=0.0)
    table.on_released("c1")
    table.on_invite_sent("c2", gw1, now=5.0)
    assert table.next_deadline() == 15.0
    assert table.expire(20.0) == ["c2"]
    assert gw1.dlg_load == 0


def test_unknown_call_confirm_and_release_are_ignored() -> None:
    table = CallLoadTable(build(LOAD))
    assert not table.on_confirmed("nope", now=0.0)
    assert not table.on_released("nope")


def test_zero_timeouts_disable_expiry() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets, hash_expire=0, hash_initexpire=0)
    gw1, _ = gateways(sets)
    table.on_invite_sent("c1", gw1, now=0.0)
    assert table.next_deadline() is None
    assert table.expire(1e9) == []


def test_rebind_after_reload_recounts_loads_by_duid() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets)
    gw1, gw2 = gateways(sets)
    table.on_invite_sent("c1", gw1, now=0.0)
    table.on_invite_sent("c2", gw1, now=0.0)
    table.on_invite_sent("c3", gw2, now=0.0)
    reloaded = build("1 sip:gw1-new:5060 0 0 duid=gw1;maxload=2\n")
    table.rebind(reloaded)
    new_gw1 = reloaded.find(1, "sip:gw1-new:5060")
    assert new_gw1 is not None and new_gw1.dlg_load == 2
    table.on_released("c3")  # its destination is gone: nothing to decrement
    table.on_released("c1")
    assert new_gw1.dlg_load == 1


def test_calls_answered_out_of_order_expire_by_the_later_ones_deadline() -> None:
    # The answered calls' lane is in answer order: c1 (INVITE at 0) answered after c2
    # (INVITE at 5) expires with c2, 5 s after its own deadline -- never before it.
    sets = build(LOAD)
    table = CallLoadTable(sets, hash_expire=100, hash_initexpire=30)
    gw1, _ = gateways(sets)
    table.on_invite_sent("c1", gw1, now=0.0)
    table.on_invite_sent("c2", gw1, now=5.0)
    assert table.on_confirmed("c2", now=6.0)
    assert table.on_confirmed("c1", now=10.0)
    assert table.deadline_of(table.entry("c1")) == 100.0  # type: ignore[arg-type]
    assert table.expire(99.9) == []
    assert table.next_deadline() == 105.0
    assert table.expire(105.0) == ["c2", "c1"]
    assert gw1.dlg_load == 0 and table.next_deadline() is None


def test_a_call_moved_to_another_destination_expires_once_from_its_new_invite() -> None:
    sets = build(LOAD)
    table = CallLoadTable(sets, hash_expire=7200, hash_initexpire=10)
    gw1, gw2 = gateways(sets)
    table.on_invite_sent("c1", gw1, now=0.0)
    table.on_invite_sent("c1", gw2, now=4.0)  # failover: the count moves
    assert table.next_deadline() == 14.0
    assert table.expire(13.9) == []
    assert table.expire(14.0) == ["c1"]
    assert (gw1.dlg_load, gw2.dlg_load) == (0, 0)


def test_memory_a_call_that_stays_does_not_keep_the_calls_that_came_and_went_after_it() -> None:
    # A call whose BYE never comes stays at the front of its lanes for hash_expire
    # (two hours by default); the hundreds of thousands of calls that start and end
    # meanwhile must not stay queued behind it.
    sets = build(LOAD)
    table = CallLoadTable(sets, hash_expire=7200, hash_initexpire=30)
    gw1, gw2 = gateways(sets)
    table.on_invite_sent("stays", gw1, now=0.0)
    table.on_confirmed("stays", now=0.1)
    for i in range(20_000):
        now = 1.0 + i / 1000
        table.on_invite_sent(f"c{i}", gw2, now)
        table.on_confirmed(f"c{i}", now)
        table.on_released(f"c{i}")
        assert table.queued <= 2 * (LANE_SLACK + 8)  # two lanes, a few calls each
    assert len(table) == 1 and (gw1.dlg_load, gw2.dlg_load) == (1, 0)
    # What is left still expires on time, in order.
    assert table.next_deadline() == 7200.0
    table.on_invite_sent("late", gw2, now=30.0)
    table.on_confirmed("late", now=30.5)
    assert table.expire(7200.0) == ["stays"]
    assert table.expire(7230.0) == ["late"] and table.queued == 0
