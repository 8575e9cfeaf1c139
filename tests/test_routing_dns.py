"""Routing to a destination located by DNS: the request goes to its first usable
address, fails over to its next address (RFC 3263 §4.3: timeout, transport error, 503)
before the next destination, and spreads over equal-priority targets by SRV weight.
The router reads the addresses the destination holds; it never asks the DNS."""

from __future__ import annotations

from collections import Counter

from sipdispatch.dispatcher.addresses import DnsAddress, LocatedAddresses
from sipdispatch.sip.addr import Addr
from tests.test_routing import MG2, dest, plan_for, request, router

CARRIER = "sip:carrier.test"


def locate(r, uri: str, *addresses: DnsAddress) -> None:  # type: ignore[no-untyped-def]
    dest(r, uri).use_located(LocatedAddresses(addresses))


A = DnsAddress("192.0.2.10", 5070, "udp", 10, 0, "a.carrier.test")
B = DnsAddress("192.0.2.20", 5080, "udp", 20, 0, "b.carrier.test")


def test_a_host_without_a_port_is_located_by_dns_one_with_a_port_or_an_ip_is_not() -> None:
    r = router(
        f"1 {CARRIER} 0 0\n1 sip:carrier.test;transport=tcp 0 0\n"
        "1 sip:carrier.test:5060 0 0\n1 sip:192.0.2.1 0 0\n1 sip:[2001:db8::1] 0 0\n"
        "1 sips:carrier.test 0 0\n1 sip:carrier.test 16 0\n"
    )
    flags = [(d.uri, d.flags, d.by_dns) for d in r.sets.destinations()]
    by_dns = {(u, f) for u, f, b in flags if b}
    assert by_dns == {(CARRIER, 0), ("sip:carrier.test;transport=tcp", 0)}


def test_the_request_goes_to_the_first_address_and_a_timeout_tries_the_next_one() -> None:
    r = router(f"1 {CARRIER} 0 10\n1 {MG2} 0 5\n", [{"set": 1, "algorithm": "priority"}])
    locate(r, CARRIER, B, A)
    plan = plan_for(r)
    [first] = plan.first()
    assert first.addr == Addr("udp", "192.0.2.10", 5070)
    nxt = plan.next_target(first, 408, True, 1.0)
    assert nxt is not None and nxt.addr == Addr("udp", "192.0.2.20", 5080)
    assert nxt.handle is dest(r, CARRIER)
    # Failing over inside the destination does not mark it failed.
    assert dest(r, CARRIER).flags_text() == "AX"
    # Its last address failing: it is marked, and the next destination is tried.
    last = plan.next_target(nxt, 503, False, 2.0)
    assert last is not None and last.handle is dest(r, MG2)
    assert dest(r, CARRIER).flags_text() == "IP"


def test_a_failover_code_other_than_503_goes_to_the_next_destination_at_once() -> None:
    r = router(f"1 {CARRIER} 0 10\n1 {MG2} 0 5\n", [{"set": 1, "algorithm": "priority"}])
    locate(r, CARRIER, A, B)
    plan = plan_for(r)
    [first] = plan.first()
    nxt = plan.next_target(first, 500, False, 1.0)
    assert nxt is not None and nxt.handle is dest(r, MG2)


def test_with_failover_off_no_other_address_is_tried() -> None:
    r = router(f"1 {CARRIER} 0 0\n", failover=False)
    locate(r, CARRIER, A, B)
    plan = plan_for(r)
    [first] = plan.first()
    assert plan.next_target(first, 408, True, 1.0) is None


def test_an_address_found_down_by_the_pings_is_tried_last() -> None:
    r = router(f"1 {CARRIER} 0 0\n")
    locate(r, CARRIER, A, B)
    carrier = dest(r, CARRIER)
    assert carrier.located is not None
    carrier.located.set_down(A.addr, True)
    [first] = plan_for(r).first()
    assert first.addr == Addr("udp", "192.0.2.20", 5080)


def test_equal_priority_targets_share_the_calls_by_weight() -> None:
    r = router(f"1 {CARRIER} 0 0\n")
    heavy = DnsAddress("192.0.2.10", 5070, "udp", 10, 75, "a.carrier.test")
    light = DnsAddress("192.0.2.20", 5080, "udp", 10, 25, "b.carrier.test")
    locate(r, CARRIER, heavy, light)
    seen = Counter(plan_for(r, request(call_id=f"c{i}")).first()[0].addr.port for i in range(4000))
    assert 2800 <= seen[5070] <= 3250 and seen[5070] + seen[5080] == 4000, seen


def test_naptr_chosen_transport_is_the_one_used_and_sources_match_every_address() -> None:
    r = router(f"1 {CARRIER} 0 0\n", [{"set": 1, "match": {"source_set": 1}}, {"set": 1}])
    a = DnsAddress("192.0.2.10", 5080, "tcp", 10, 0, "a.carrier.test")
    b = DnsAddress("192.0.2.20", 5080, "tcp", 20, 0, "b.carrier.test")
    locate(r, CARRIER, a, b)
    r.addresses_changed()
    [first] = plan_for(r).first()
    assert first.addr == Addr("tcp", "192.0.2.10", 5080)
    assert r.source_sets(Addr("udp", "192.0.2.20", 5999)) == frozenset({1})
    assert r.is_destination_ip("192.0.2.20")


def test_a_single_address_destination_takes_the_plain_path() -> None:
    r = router(f"1 {CARRIER} 0 0\n")
    locate(r, CARRIER, A)
    plan = plan_for(r)
    [first] = plan.first()
    assert first.addr == Addr("udp", "192.0.2.10", 5070)
    assert plan.next_target(first, 408, True, 1.0) is None
