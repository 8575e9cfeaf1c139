"""Every algorithm: choice, distribution, stickiness and the failover list."""

from __future__ import annotations

import random

import pytest

from sipdispatch.dispatcher import (
    DS_DISABLED_DST,
    DS_INACTIVE_DST,
    DS_TRYING_DST,
    REGISTRY,
    DispatcherSets,
    UnknownAlgorithmError,
    ds_get_hash,
    get_algorithm,
    select,
)
from sipdispatch.dispatcher.hashing import hash_callid

from .helpers import build, ctx, pick, spread, uris

FOUR = """\
1 sip:d:5060
1 sip:c:5060
1 sip:b:5060
1 sip:a:5060
"""
"""Four equal-priority destinations; Kamailio order is a, b, c, d (reverse file)."""

ABCD = ["sip:a:5060", "sip:b:5060", "sip:c:5060", "sip:d:5060"]


def mark(sets: DispatcherSets, uri: str, state: int) -> None:
    dest = sets.find(1, uri)
    assert dest is not None
    sets.set_state(dest, state)


def call_id_for_index(index: int, n: int) -> str:
    """A Call-ID whose hash lands on ``index`` of ``n``."""
    for k in range(10000):
        cid = f"cid-{k}@host"
        if hash_callid(cid) % n == index:
            return cid
    raise AssertionError("no call-id found")


# --- registry --------------------------------------------------------------


def test_registry_has_kamailios_0_to_15_and_64_and_our_114_115() -> None:
    assert sorted(REGISTRY) == [*range(16), 64, 114, 115]
    assert all(REGISTRY[n].kamailio for n in (*range(16), 64))
    assert not REGISTRY[114].kamailio and not REGISTRY[115].kamailio


def test_algorithms_are_found_by_number_numeric_string_or_name() -> None:
    assert get_algorithm(9).name == "weight"
    assert get_algorithm("4").number == 4
    assert get_algorithm("round-robin").number == 4
    assert get_algorithm("Serial").number == 8
    with pytest.raises(UnknownAlgorithmError, match="allowed: 0 "):
        get_algorithm(65)
    with pytest.raises(UnknownAlgorithmError):
        get_algorithm("fastest")
    with pytest.raises(UnknownAlgorithmError):
        get_algorithm("\u00b9")  # str.isdigit() says yes, int() does not


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("round-robin-or-serial", 14),
        ("rr-or-serial", 14),
        ("priority-weight", 15),
        ("round-robin-tiers", 114),
        ("round-robin-serial", 114),
        ("rr-serial", 114),
        ("srv", 115),
        ("srv-random", 115),
    ],
)
def test_names_of_14_15_and_the_former_ones_now_at_114_115(name: str, number: int) -> None:
    assert get_algorithm(name).number == number


def test_unknown_setid_gives_empty_selection() -> None:
    sets = build(FOUR)
    sel = pick(sets, 99, 4)
    assert not sel
    assert sel.selected is None


def test_unknown_algorithm_number_raises() -> None:
    with pytest.raises(UnknownAlgorithmError):
        pick(build(FOUR), 1, 65)


# --- hashing algorithms ----------------------------------------------------


def test_callid_hash_picks_hash_modulo_set_size() -> None:
    sets = build(FOUR)
    cid = "a84b4c76e66710@pc33.atlanta.com"
    sel = pick(sets, 1, 0, context=ctx(cid))
    assert uris(sel)[0] == ABCD[ds_get_hash(cid) % 4]


def test_same_callid_always_goes_to_the_same_destination() -> None:
    sets = build(FOUR)
    first = {cid: uris(pick(sets, 1, 0, context=ctx(cid)))[0] for cid in ("x1", "x2", "x3")}
    for _ in range(20):
        for cid, uri in first.items():
            assert uris(pick(sets, 1, 0, context=ctx(cid)))[0] == uri


def test_callid_hash_spreads_calls_over_the_set() -> None:
    counts = spread(build(FOUR), 1, 0, 400)
    assert set(counts) == set(ABCD)
    assert all(60 <= c <= 140 for c in counts.values())


def test_hashed_slot_inactive_moves_to_next_usable() -> None:
    sets = build(FOUR)
    cid = call_id_for_index(1, 4)
    assert uris(pick(sets, 1, 0, context=ctx(cid)))[0] == "sip:b:5060"
    mark(sets, "sip:b:5060", DS_INACTIVE_DST)
    assert uris(pick(sets, 1, 0, context=ctx(cid)))[0] == "sip:c:5060"
    mark(sets, "sip:c:5060", DS_DISABLED_DST)
    assert uris(pick(sets, 1, 0, context=ctx(cid)))[0] == "sip:d:5060"
    mark(sets, "sip:d:5060", DS_TRYING_DST)  # trying is still usable
    assert uris(pick(sets, 1, 0, context=ctx(cid)))[0] == "sip:d:5060"


def test_step_over_wraps_around_the_set() -> None:
    sets = build(FOUR)
    cid = call_id_for_index(3, 4)
    mark(sets, "sip:d:5060", DS_INACTIVE_DST)
    assert uris(pick(sets, 1, 0, context=ctx(cid)))[0] == "sip:a:5060"


def test_no_usable_destination_gives_empty_selection() -> None:
    sets = build(FOUR)
    for uri in ABCD:
        mark(sets, uri, DS_INACTIVE_DST)
    for alg in sorted(REGISTRY):
        assert not pick(sets, 1, alg, hash_header="X-Key"), alg


@pytest.mark.parametrize(("alg", "field"), [(1, "from_uri"), (2, "to_uri"), (3, "ruri")])
def test_uri_hashes_use_user_host_and_port(alg: int, field: str) -> None:
    sets = build(FOUR)
    uri = "sip:bob@server.com"
    other = "sip:someone@elsewhere.example.com:5090"
    c = ctx(
        from_uri=uri if field == "from_uri" else other,
        to_uri=uri if field == "to_uri" else other,
        ruri=uri if field == "ruri" else other,
    )
    sel = pick(sets, 1, alg, context=c)
    assert uris(sel)[0] == ABCD[3883463682 % 4]  # slot 2 -> sip:c


def test_hash_user_only_sends_a_user_to_one_destination_whatever_the_host() -> None:
    sets = build(FOUR)
    hosts = [f"sip:bob@host{n}.example.com:50{n}0" for n in range(1, 8)]
    picked = {
        uris(pick(sets, 1, 1, context=ctx(from_uri=h), hash_user_only=True))[0] for h in hosts
    }
    assert picked == {ABCD[ds_get_hash("bob") % 4]}
    spread_hosts = {uris(pick(sets, 1, 1, context=ctx(from_uri=h)))[0] for h in hosts}
    assert len(spread_hosts) > 1


def test_unparsable_uri_gives_empty_selection() -> None:
    assert not pick(build(FOUR), 1, 1, context=ctx(from_uri="garbage"))


def test_auth_username_hash_is_sticky() -> None:
    sets = build(FOUR)
    c = ctx(auth_username="alice@example.com")
    expected = ABCD[ds_get_hash("alice") % 4]
    for _ in range(5):
        assert uris(pick(sets, 1, 5, context=c))[0] == expected


def test_auth_username_missing_falls_back_to_round_robin() -> None:
    sets = build(FOUR)
    got = [uris(pick(sets, 1, 5, context=ctx(auth_username=None)))[0] for _ in range(5)]
    assert got == [*ABCD, ABCD[0]]


def test_header_hash_uses_configured_header() -> None:
    sets = build(FOUR)
    c = ctx(headers={"X-Account": " acct-42 "})
    sel = pick(sets, 1, 7, context=c, hash_header="x-account")
    assert uris(sel)[0] == ABCD[ds_get_hash("acct-42") % 4]


def test_header_hash_without_header_or_config_gives_empty_selection() -> None:
    sets = build(FOUR)
    assert not pick(sets, 1, 7, context=ctx(headers={}), hash_header="X-Account")
    assert not pick(sets, 1, 7, context=ctx(headers={"X-Account": "1"}))


# --- round-robin -----------------------------------------------------------


def test_round_robin_cycles_through_the_set() -> None:
    sets = build(FOUR)
    got = [uris(pick(sets, 1, 4))[0] for _ in range(9)]
    assert got == ABCD + ABCD + ABCD[:1]


def test_round_robin_skips_unusable_and_continues_after_the_one_used() -> None:
    sets = build(FOUR)
    mark(sets, "sip:b:5060", DS_INACTIVE_DST)
    got = [uris(pick(sets, 1, 4))[0] for _ in range(6)]
    assert got == ["sip:a:5060", "sip:c:5060", "sip:d:5060"] * 2


def test_round_robin_failover_list_is_the_rest_in_order() -> None:
    sets = build(FOUR)
    pick(sets, 1, 4)
    assert uris(pick(sets, 1, 4)) == ["sip:b:5060", "sip:c:5060", "sip:d:5060", "sip:a:5060"]


# --- random ----------------------------------------------------------------


def test_random_spreads_evenly_and_is_reproducible_with_a_seed() -> None:
    sets = build(FOUR)
    counts = spread(sets, 1, 6, 400, seed=5)
    assert all(70 <= c <= 130 for c in counts.values())
    assert spread(sets, 1, 6, 50, seed=9) == spread(sets, 1, 6, 50, seed=9)


# --- priority / serial -----------------------------------------------------

PRIO = """\
1 sip:mg2:5060 0 5
1 sip:mg1:5060 0 10
1 sip:mg3:5060 0 1
"""


def test_priority_always_picks_highest_priority_usable() -> None:
    sets = build(PRIO)
    for _ in range(3):
        assert uris(pick(sets, 1, 8)) == ["sip:mg1:5060", "sip:mg2:5060", "sip:mg3:5060"]
    mark(sets, "sip:mg1:5060", DS_INACTIVE_DST)
    assert uris(pick(sets, 1, 8)) == ["sip:mg2:5060", "sip:mg3:5060"]


# --- failover list, limit, use_default -------------------------------------


def test_failover_list_is_selected_then_after_then_before_skipping_unusable() -> None:
    sets = build(FOUR)
    mark(sets, "sip:d:5060", DS_DISABLED_DST)
    cid = call_id_for_index(2, 4)
    assert uris(pick(sets, 1, 0, context=ctx(cid))) == ["sip:c:5060", "sip:a:5060", "sip:b:5060"]


def test_limit_caps_the_failover_list() -> None:
    sets = build(FOUR)
    assert uris(pick(sets, 1, 8, limit=2)) == ["sip:a:5060", "sip:b:5060"]
    assert uris(pick(sets, 1, 8, limit=1)) == ["sip:a:5060"]
    assert len(pick(sets, 1, 8, limit=0).targets) == 4


def test_use_default_keeps_the_last_destination_out_of_rotation_and_appends_it() -> None:
    sets = build(FOUR)  # d is the default (last in Kamailio order)
    got = [uris(pick(sets, 1, 4, use_default=True)) for _ in range(4)]
    assert [g[0] for g in got] == ["sip:a:5060", "sip:b:5060", "sip:c:5060", "sip:a:5060"]
    assert got[0] == ["sip:a:5060", "sip:b:5060", "sip:c:5060", "sip:d:5060"]
    assert got[1] == ["sip:b:5060", "sip:c:5060", "sip:a:5060", "sip:d:5060"]


def test_use_default_hash_is_modulo_set_size_minus_one() -> None:
    sets = build(FOUR)
    cid = "some-call@host"
    sel = pick(sets, 1, 0, context=ctx(cid), use_default=True)
    assert uris(sel)[0] == ABCD[hash_callid(cid) % 3]


def test_use_default_is_used_only_when_nothing_else_is_usable() -> None:
    sets = build(FOUR)
    for uri in ABCD[:3]:
        mark(sets, uri, DS_INACTIVE_DST)
    assert uris(pick(sets, 1, 8, use_default=True)) == ["sip:d:5060"]
    mark(sets, "sip:d:5060", DS_INACTIVE_DST)
    assert not pick(sets, 1, 8, use_default=True)


def test_use_default_is_appended_whatever_its_state_as_kamailio() -> None:
    sets = build(FOUR)
    mark(sets, "sip:d:5060", DS_DISABLED_DST)
    assert uris(pick(sets, 1, 8, use_default=True))[-1] == "sip:d:5060"


def test_use_default_respects_limit() -> None:
    sets = build(FOUR)
    assert uris(pick(sets, 1, 8, use_default=True, limit=2)) == ["sip:a:5060", "sip:b:5060"]


# --- weight ------------------------------------------------------------------

WEIGHTS = """\
1 sip:mg1:5060 0 0 weight=25
1 sip:mg2:5060 0 0 weight=75
"""


def test_weight_75_25_splits_75_25_over_400_calls() -> None:
    counts = spread(build(WEIGHTS, seed=42), 1, 9, 400)
    assert abs(counts["sip:mg2:5060"] - 300) <= 20
    assert abs(counts["sip:mg1:5060"] - 100) <= 20


def test_weight_table_gives_exact_shares_every_100_calls() -> None:
    counts = spread(build(WEIGHTS, seed=3), 1, 9, 100)
    assert counts == {"sip:mg2:5060": 75, "sip:mg1:5060": 25}


def test_weight_with_one_destination_down_sends_everything_to_the_other() -> None:
    sets = build(WEIGHTS)
    mark(sets, "sip:mg2:5060", DS_INACTIVE_DST | 8)
    assert spread(sets, 1, 9, 100) == {"sip:mg1:5060": 100}


# --- call load ---------------------------------------------------------------

LOAD = """\
1 sip:gw2:5060 0 0 duid=gw2;maxload=2
1 sip:gw1:5060 0 0 duid=gw1;maxload=2
"""


def test_call_load_picks_least_loaded_first_in_order_on_ties() -> None:
    sets = build(LOAD)
    gw1 = sets.find(1, "sip:gw1:5060")
    gw2 = sets.find(1, "sip:gw2:5060")
    assert gw1 is not None and gw2 is not None
    assert uris(pick(sets, 1, 10))[0] == "sip:gw1:5060"
    gw1.dlg_load = 1
    assert uris(pick(sets, 1, 10)) == ["sip:gw2:5060", "sip:gw1:5060"]


def test_call_load_leaves_full_destinations_out_and_refuses_when_all_full() -> None:
    sets = build(LOAD)
    gw1 = sets.find(1, "sip:gw1:5060")
    gw2 = sets.find(1, "sip:gw2:5060")
    assert gw1 is not None and gw2 is not None
    gw1.dlg_load = 2
    assert uris(pick(sets, 1, 10)) == ["sip:gw2:5060"]
    gw2.dlg_load = 2
    assert not pick(sets, 1, 10)


def test_call_load_for_non_invite_uses_first_usable() -> None:
    sets = build(LOAD)
    for dest in sets.destinations():
        dest.dlg_load = 2
    assert uris(pick(sets, 1, 10, context=ctx(method="OPTIONS")))[0] == "sip:gw1:5060"


# --- relative weight -------------------------------------------------------

RWEIGHTS = """\
1 sip:c:5060 0 0 rweight=50
1 sip:b:5060 0 0 rweight=30
1 sip:a:5060 0 0 rweight=20
"""


def test_relative_weight_distribution_over_100_calls_is_exact() -> None:
    counts = spread(build(RWEIGHTS, seed=8), 1, 11, 100)
    assert counts == {"sip:a:5060": 20, "sip:b:5060": 30, "sip:c:5060": 50}


def test_relative_weight_redistributes_when_a_destination_goes_down() -> None:
    sets = build(RWEIGHTS, seed=8)
    mark(sets, "sip:c:5060", DS_INACTIVE_DST)
    counts = spread(sets, 1, 11, 100)
    assert counts == {"sip:a:5060": 40, "sip:b:5060": 60}


# --- parallel ----------------------------------------------------------------


def test_parallel_returns_all_usable_destinations() -> None:
    sets = build(FOUR)
    mark(sets, "sip:b:5060", DS_INACTIVE_DST)
    sel = pick(sets, 1, 12, limit=1)
    assert sel.parallel
    assert uris(sel) == ["sip:a:5060", "sip:c:5060", "sip:d:5060"]


# --- latency optimised -----------------------------------------------------


def test_latency_lowers_priority_of_slow_destination() -> None:
    sets = build("1 sip:slow:5060 0 10\n1 sip:fast:5060 0 10\n")
    slow = sets.find(1, "sip:slow:5060")
    fast = sets.find(1, "sip:fast:5060")
    assert slow is not None and fast is not None
    slow.latency.seed(200, 10000)  # 200 // 10 = 20 -> priority 10 - 20 -> floor 1
    fast.latency.seed(15, 10000)  # 15 // 10 = 1 -> priority 9
    for _ in range(4):
        sel = pick(sets, 1, 13)
        assert uris(sel) == ["sip:fast:5060", "sip:slow:5060"]
    assert (fast.rpriority, slow.rpriority) == (9, 1)


def test_latency_round_robins_among_equal_priorities() -> None:
    sets = build(FOUR)
    got = [uris(pick(sets, 1, 13))[0] for _ in range(5)]
    assert got == [*ABCD, ABCD[0]]


def test_latency_skips_unusable_and_keeps_default_last() -> None:
    sets = build(FOUR)
    mark(sets, "sip:a:5060", DS_INACTIVE_DST)
    sel = pick(sets, 1, 13, use_default=True)
    assert uris(sel) == ["sip:b:5060", "sip:c:5060", "sip:d:5060"]


def test_latency_uses_default_when_nothing_else_is_usable() -> None:
    sets = build(FOUR)
    for uri in ABCD[:3]:
        mark(sets, uri, DS_INACTIVE_DST)
    for _ in range(4):
        assert uris(pick(sets, 1, 13, use_default=True)) == ["sip:d:5060"]


# --- 14: round-robin or serial, decided per set (Kamailio) -----------------

SAME5 = """\
1 sip:d:5060 0 5
1 sip:c:5060 0 5
1 sip:b:5060 0 5
1 sip:a:5060 0 5
"""
"""Four destinations of priority 5; order a, b, c, d."""


def twice(text: str, alg: int, other: int, calls: int) -> tuple[list[list[str]], list[list[str]]]:
    """The failover lists of ``calls`` selections by ``alg`` and by ``other``, each on its
    own copy of the same list."""
    first, second = build(text), build(text)
    return (
        [uris(pick(first, 1, alg)) for _ in range(calls)],
        [uris(pick(second, 1, other)) for _ in range(calls)],
    )


def test_14_is_round_robin_when_every_priority_is_the_same_and_above_0() -> None:
    got, round_robin = twice(SAME5, 14, 4, 4)
    assert got == round_robin
    assert [g[0] for g in got] == ABCD
    assert got[1] == ["sip:b:5060", "sip:c:5060", "sip:d:5060", "sip:a:5060"]


def test_14_is_serial_when_every_priority_is_0() -> None:
    got, serial = twice(FOUR, 14, 8, 4)
    assert got == serial
    assert got == [ABCD] * 4


def test_14_is_serial_when_priorities_differ() -> None:
    got, serial = twice(PRIO, 14, 8, 3)
    assert got == serial
    assert got == [["sip:mg1:5060", "sip:mg2:5060", "sip:mg3:5060"]] * 3


@pytest.mark.parametrize(("text", "same_as"), [(SAME5, 4), (FOUR, 8)])
def test_14_steps_over_a_down_first_destination_as_4_and_8_do(text: str, same_as: int) -> None:
    first, second = build(text), build(text)
    for sets in (first, second):
        mark(sets, "sip:a:5060", DS_INACTIVE_DST)
    got = [uris(pick(first, 1, 14)) for _ in range(4)]
    assert got == [uris(pick(second, 1, same_as)) for _ in range(4)]
    assert got[0][0] == "sip:b:5060"
    assert "sip:a:5060" not in {u for g in got for u in g}


def test_14_decides_at_load_from_the_priorities() -> None:
    assert [dset.rrserial for dset in build(SAME5)] == [5]
    assert [dset.rrserial for dset in build(FOUR)] == [0]
    assert [dset.rrserial for dset in build(PRIO)] == [0]
    assert [dset.rrserial for dset in build("1 sip:a:5060 0 5\n1 sip:b:5060 0 0\n")] == [0]


# --- 15: best (lowest) priority, then weight (Kamailio) ----------------------

KAMAILIO_15 = """\
1 sip:p10a:5060 0 10 weight=70
1 sip:p10b:5060 0 10 weight=30
1 sip:p20a:5060 0 20 weight=50
1 sip:p20b:5060 0 20 weight=50
"""
"""Kamailio's example for algorithm 15: priority 10 is the best (lowest value)."""


def test_15_shares_the_lowest_priority_value_by_weight_exactly_every_100_calls() -> None:
    counts = spread(build(KAMAILIO_15), 1, 15, 100)
    assert counts == {"sip:p10a:5060": 70, "sip:p10b:5060": 30}


def test_15_goes_to_the_next_priority_by_weight_when_the_best_is_down() -> None:
    sets = build(KAMAILIO_15)
    spread(sets, 1, 15, 37)  # anywhere in the table
    mark(sets, "sip:p10a:5060", DS_INACTIVE_DST)
    mark(sets, "sip:p10b:5060", DS_DISABLED_DST)
    assert spread(sets, 1, 15, 100) == {"sip:p20a:5060": 50, "sip:p20b:5060": 50}
    mark(sets, "sip:p10a:5060", 0)
    assert spread(sets, 1, 15, 100) == {"sip:p10a:5060": 100}


def test_15_table_is_rebuilt_with_the_rweight_tables() -> None:
    sets = build(KAMAILIO_15)
    for uri in ("sip:p10a:5060", "sip:p10b:5060"):
        dest = sets.find(1, uri)
        assert dest is not None
        dest.state = DS_INACTIVE_DST  # not through set_state: nothing rebuilt yet
    # Their slots fall through to the next usable in set order (p20b, p20a, p10b, p10a).
    assert spread(sets, 1, 15, 100) == {"sip:p20b:5060": 100}
    sets.rebuild_rweights(1)
    assert spread(sets, 1, 15, 100) == {"sip:p20a:5060": 50, "sip:p20b:5060": 50}


def test_15_without_weights_shares_equally_the_last_getting_what_is_left() -> None:
    sets = build("1 sip:c:5060 0 1\n1 sip:b:5060 0 1\n1 sip:a:5060 0 1\n1 sip:z:5060 0 2\n")
    dset = sets.get(1)
    assert dset is not None
    assert [d.uri for d in dset.dests] == ["sip:z:5060", "sip:a:5060", "sip:b:5060", "sip:c:5060"]
    counts = spread(sets, 1, 15, 100)
    assert counts == {"sip:a:5060": 33, "sip:b:5060": 33, "sip:c:5060": 34}


def test_15_weights_that_do_not_make_100_leave_the_rest_to_the_last_written() -> None:
    counts = spread(build("1 sip:b:5060 0 1 weight=1\n1 sip:a:5060 0 1 weight=2\n"), 1, 15, 100)
    assert counts == {"sip:a:5060": 66, "sip:b:5060": 34}  # 2*100//3, 1*100//3 + 1


def test_15_with_nothing_usable_gives_empty_selection() -> None:
    sets = build(KAMAILIO_15)
    for dest in sets.destinations():
        sets.set_state(dest, DS_INACTIVE_DST)
    assert not pick(sets, 1, 15)
    dset = sets.get(1)
    assert dset is not None
    assert dset.pwlist == [0] * 100


def test_15_failover_list_and_use_default_are_the_common_ones() -> None:
    sets = build(KAMAILIO_15)  # order p20b, p20a, p10b, p10a: p10a is the default
    for sel in (pick(sets, 1, 15, use_default=True) for _ in range(20)):
        assert uris(sel)[-1] == "sip:p10a:5060"
        assert uris(sel)[0] != "sip:p10a:5060"
        assert len(uris(sel)) == 4
    for uri in ("sip:p20a:5060", "sip:p20b:5060", "sip:p10b:5060"):
        mark(sets, uri, DS_INACTIVE_DST)
    assert uris(pick(sets, 1, 15, use_default=True)) == ["sip:p10a:5060"]
    assert uris(pick(sets, 1, 15)) == ["sip:p10a:5060"]


# --- 114: round-robin within priority, serial across (ours) -----------------

TIERS = """\
1 sip:b1:5060 0 1
1 sip:a2:5060 0 10
1 sip:a1:5060 0 10
"""


def test_114_round_robins_the_top_priority_then_fails_over_down() -> None:
    sets = build(TIERS)
    got = [uris(pick(sets, 1, 114)) for _ in range(3)]
    assert got[0] == ["sip:a1:5060", "sip:a2:5060", "sip:b1:5060"]
    assert got[1] == ["sip:a2:5060", "sip:a1:5060", "sip:b1:5060"]
    assert got[2] == got[0]
    mark(sets, "sip:a1:5060", DS_INACTIVE_DST)
    mark(sets, "sip:a2:5060", DS_INACTIVE_DST)
    assert uris(pick(sets, 1, 114)) == ["sip:b1:5060"]


def test_114_with_equal_priorities_is_round_robin() -> None:
    sets = build(FOUR)
    assert [uris(pick(sets, 1, 114))[0] for _ in range(5)] == [*ABCD, ABCD[0]]


# --- 115: priority + weight (SRV-like, ours) --------------------------------

SRV = """\
1 sip:backup:5060 0 1 weight=100
1 sip:small:5060 0 10 weight=20
1 sip:big:5060 0 10 weight=80
"""


def test_115_uses_top_priority_by_weight_and_lower_as_failover() -> None:
    sets = build(SRV)
    counts = spread(sets, 1, 115, 400, seed=4)
    assert set(counts) == {"sip:big:5060", "sip:small:5060"}
    assert abs(counts["sip:big:5060"] - 320) <= 30
    sel = pick(sets, 1, 115)
    assert uris(sel)[-1] == "sip:backup:5060"
    assert sorted(uris(sel)[:2]) == ["sip:big:5060", "sip:small:5060"]


def test_115_falls_to_lower_priority_when_top_is_down() -> None:
    sets = build(SRV)
    mark(sets, "sip:big:5060", DS_INACTIVE_DST)
    mark(sets, "sip:small:5060", DS_DISABLED_DST)
    assert uris(pick(sets, 1, 115)) == ["sip:backup:5060"]


# --- purity ------------------------------------------------------------------


def test_selection_uses_only_the_injected_rng() -> None:
    state = random.getstate()
    sets = build(SRV)
    for alg in (6, 15, 115):
        pick(sets, 1, alg)
    assert random.getstate() == state


def test_select_signature_accepts_every_option() -> None:
    sets = build(FOUR)
    sel = select(
        sets, 1, 4, ctx(), limit=2, use_default=True, hash_user_only=True, rng=random.Random(1)
    )
    assert len(sel.targets) == 2
