"""The order a request tries the addresses of a destination located by DNS: RFC 2782's
priority and weight rules, and the addresses the pings found down last."""

from __future__ import annotations

import random
from collections import Counter

from sipdispatch.dispatcher.addresses import DnsAddress, LocatedAddresses, srv_order


def srv(target: str, port: int, priority: int, weight: int, ip: str = "192.0.2.1") -> DnsAddress:
    return DnsAddress(ip, port, "udp", priority, weight, target)


def test_rfc2782_lower_priority_is_always_tried_first() -> None:
    backup = srv("b.example", 5070, 20, 100)
    main = srv("a.example", 5060, 10, 1)
    rng = random.Random(1)
    for _ in range(200):
        assert srv_order([backup, main], rng) == [main, backup]


def test_rfc2782_weights_share_the_first_choice_among_equal_priorities() -> None:
    heavy = srv("a.example", 5060, 10, 80)
    light = srv("b.example", 5062, 10, 20)
    rng = random.Random(42)
    firsts = Counter(srv_order([heavy, light], rng)[0].target for _ in range(10_000))
    # 80/20 give first place about 80 % and 20 % of the time (RFC 2782 running sums:
    # a draw in 0..100, so the heavy one takes 81 of the 101 draws).
    assert 7800 <= firsts["a.example"] <= 8250, firsts
    assert firsts["a.example"] + firsts["b.example"] == 10_000


def test_rfc2782_a_zero_weight_target_is_rarely_first_but_never_dropped() -> None:
    zero = srv("z.example", 5060, 10, 0)
    weighted = srv("w.example", 5062, 10, 10)
    rng = random.Random(3)
    orders = [srv_order([weighted, zero], rng) for _ in range(5500)]
    assert all(sorted(a.target for a in o) == ["w.example", "z.example"] for o in orders)
    zero_first = sum(1 for o in orders if o[0] is zero)
    # Only a draw of 0 (1 in 11) picks the zero-weight target first.
    assert 350 <= zero_first <= 650, zero_first


def test_all_zero_weights_keep_every_target() -> None:
    targets = [srv(f"t{i}.example", 5060 + i, 0, 0) for i in range(4)]
    order = srv_order(targets, random.Random(0))
    assert sorted(a.port for a in order) == [5060, 5061, 5062, 5063]


def test_the_addresses_of_one_target_stay_together_and_share_its_weight() -> None:
    a1 = srv("a.example", 5060, 10, 50, ip="192.0.2.1")
    a2 = srv("a.example", 5060, 10, 50, ip="192.0.2.2")
    b = srv("b.example", 5060, 10, 50, ip="192.0.2.9")
    rng = random.Random(5)
    firsts: Counter[str] = Counter()
    for _ in range(4000):
        order = srv_order([a1, a2, b], rng)
        assert order in ([a1, a2, b], [b, a1, a2])
        firsts[order[0].target] += 1
    # Two addresses do not double a target's share.
    assert 1800 <= firsts["a.example"] <= 2200, firsts


def test_the_order_is_the_same_for_the_same_seed() -> None:
    targets = [srv(f"t{i}.example", 5060, 10, 10 * (i + 1)) for i in range(5)]
    first = [srv_order(targets, random.Random(9)) for _ in range(3)]
    assert first[0] == first[1] == first[2]


def test_addresses_found_down_are_tried_after_the_others() -> None:
    main = srv("a.example", 5060, 10, 0)
    backup = srv("b.example", 5062, 20, 0)
    located = LocatedAddresses((backup, main))
    assert located.first == main  # sorted by priority
    rng = random.Random(0)
    assert located.order(rng) == [main, backup]
    assert located.set_down(main.addr, True)
    assert not located.set_down(main.addr, True)  # no change the second time
    assert located.order(rng) == [backup, main]
    assert located.any_up()
    located.set_down(backup.addr, True)
    assert not located.any_up()
    assert located.order(rng) == [main, backup]  # all down: still every one, in order
    located.set_down(main.addr, False)
    assert located.order(rng) == [main, backup]


def test_a_new_answer_keeps_the_down_marks_of_the_addresses_still_in_it() -> None:
    main = srv("a.example", 5060, 10, 0)
    gone = srv("c.example", 5064, 10, 0)
    old = LocatedAddresses((main, gone))
    old.set_down(main.addr, True)
    old.set_down(gone.addr, True)
    new = LocatedAddresses((main, srv("b.example", 5062, 20, 0)))
    new.carry_down(old)
    assert new.down == {main.addr}
    assert new.same_as(LocatedAddresses(tuple(reversed(new.addresses))))
    assert not new.same_as(old)
