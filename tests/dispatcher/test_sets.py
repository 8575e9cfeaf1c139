"""Set ordering and Kamailio's weight tables."""

from __future__ import annotations

import random
from collections import Counter

from sipdispatch.dispatcher import (
    DS_INACTIVE_DST,
    DispatcherSets,
    carry_runtime_state,
    make_destination,
    parse_list,
)
from sipdispatch.dispatcher.sets import kamailio_order, rweight_table, weight_table

from .helpers import build


def order(sets: DispatcherSets, setid: int) -> list[str]:
    dset = sets.get(setid)
    assert dset is not None
    return [d.uri for d in dset.dests]


def test_set_is_ordered_by_priority_descending() -> None:
    sets = build("1 sip:low:5060 0 1\n1 sip:high:5060 0 9\n1 sip:mid:5060 0 5\n")
    assert order(sets, 1) == ["sip:high:5060", "sip:mid:5060", "sip:low:5060"]


def test_equal_priorities_end_up_in_reverse_file_order_as_kamailio() -> None:
    sets = build("1 sip:a:5060\n1 sip:b:5060\n1 sip:c:5060\n")
    assert order(sets, 1) == ["sip:c:5060", "sip:b:5060", "sip:a:5060"]


def test_mixed_priorities_and_ties_follow_kamailio_insertion() -> None:
    # Kamailio: list ascending by priority, each new one after its ties, then reversed.
    sets = build("1 sip:a1:5060 0 1\n1 sip:b0:5060 0 0\n1 sip:c1:5060 0 1\n1 sip:d0:5060 0 0\n")
    assert order(sets, 1) == ["sip:c1:5060", "sip:a1:5060", "sip:d0:5060", "sip:b0:5060"]


def test_sets_are_keyed_by_setid_ascending() -> None:
    sets = build("5 sip:x:5060\n2 sip:y:5060\n")
    assert sets.setids == (2, 5)
    assert 5 in sets and 3 not in sets
    assert sets.get(3) is None


def test_find_is_case_insensitive_and_first_in_order() -> None:
    sets = build("1 sip:MG1:5060 0 0 duid=gw\n")
    assert sets.find(1, "sip:mg1:5060") is not None
    dset = sets.get(1)
    assert dset is not None and dset.find_key("GW") is not None


def test_weight_75_25_fills_75_and_25_slots() -> None:
    dests = kamailio_order(parse_list("1 sip:b 0 0 weight=25\n1 sip:a 0 0 weight=75\n", "x"))
    table = weight_table(dests, random.Random(3))
    assert Counter(table) == {0: 75, 1: 25}
    assert table != sorted(table)  # shuffled


def test_weights_below_100_give_the_rest_to_the_last_destination() -> None:
    dests = kamailio_order(parse_list("1 sip:b 0 0 weight=10\n1 sip:a 0 0 weight=20\n", "x"))
    assert Counter(weight_table(dests, random.Random(1))) == {0: 20, 1: 80}


def test_weights_over_100_drop_the_excess() -> None:
    dests = kamailio_order(parse_list("1 sip:b 0 0 weight=90\n1 sip:a 0 0 weight=30\n", "x"))
    assert Counter(weight_table(dests, random.Random(1))) == {0: 30, 1: 70}


def test_no_weight_on_first_destination_means_no_weight_table() -> None:
    dests = kamailio_order(parse_list("1 sip:b 0 0 weight=90\n1 sip:a\n", "x"))
    assert set(weight_table(dests, random.Random(1))) == {0}


def test_same_seed_gives_same_tables() -> None:
    text = "1 sip:b 0 0 weight=25\n1 sip:a 0 0 weight=75\n"
    a = build(text, seed=11).get(1)
    b = build(text, seed=11).get(1)
    assert a is not None and b is not None and a.wlist == b.wlist


def test_rweight_table_shares_slots_among_usable_destinations_only() -> None:
    dests = kamailio_order(
        parse_list("1 sip:c 0 0 rweight=50\n1 sip:b 0 0 rweight=30\n1 sip:a 0 0 rweight=20\n", "x")
    )
    assert Counter(rweight_table(dests, random.Random(1))) == {0: 20, 1: 30, 2: 50}
    dests[2].state = DS_INACTIVE_DST
    # 20*100//50 = 40, 30*100//50 = 60
    assert Counter(rweight_table(dests, random.Random(1))) == {0: 40, 1: 60}


def test_rweight_truncation_leftover_goes_to_last_written_destination() -> None:
    dests = kamailio_order(
        parse_list("1 sip:c 0 0 rweight=1\n1 sip:b 0 0 rweight=1\n1 sip:a 0 0 rweight=1\n", "x")
    )
    # 33 slots each, the last slot to the last index written (2)
    assert Counter(rweight_table(dests, random.Random(1))) == {0: 33, 1: 33, 2: 34}


def test_state_change_through_sets_rebuilds_rweight_table() -> None:
    sets = build("1 sip:b 0 0 rweight=50\n1 sip:a 0 0 rweight=50\n")
    dset = sets.get(1)
    assert dset is not None
    assert Counter(dset.rwlist) == {0: 50, 1: 50}
    old = sets.set_state(dset.dests[0], DS_INACTIVE_DST)
    assert old == 0
    assert Counter(dset.rwlist) == {1: 100}


def test_tiers_group_equal_priorities() -> None:
    sets = build("1 sip:a 0 5\n1 sip:b 0 5\n1 sip:c 0 1\n")
    dset = sets.get(1)
    assert dset is not None
    assert dset.tiers == ((0, 2), (2, 3))


def test_added_rebuilds_like_kamailio_rpc_add_flipping_ties() -> None:
    sets = build("1 sip:a 0 0\n1 sip:b 0 0\n")
    assert order(sets, 1) == ["sip:b", "sip:a"]
    bigger = sets.added(make_destination(1, "sip:c"))
    assert order(bigger, 1) == ["sip:c", "sip:a", "sip:b"]
    smaller = bigger.removed(1, "sip:a")
    assert order(smaller, 1) == ["sip:b", "sip:c"]


def test_carry_runtime_state_keeps_state_of_unchanged_destinations_only() -> None:
    old = build("1 sip:a 8 0\n1 sip:b 8 0\n")
    a_old = old.find(1, "sip:a")
    b_old = old.find(1, "sip:b")
    assert a_old is not None and b_old is not None
    a_old.state = DS_INACTIVE_DST | 8
    a_old.dlg_load = 3
    b_old.state = DS_INACTIVE_DST | 8
    new = build("1 sip:a 8 0\n1 sip:b 8 5\n")  # b's priority changed
    assert carry_runtime_state(old, new) == 1
    a_new = new.find(1, "sip:a")
    b_new = new.find(1, "sip:b")
    assert a_new is not None and b_new is not None
    assert a_new.flags_text() == "IP" and a_new.dlg_load == 3
    assert b_new.flags_text() == "AP"
