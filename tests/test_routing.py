"""``[[route]]`` rules over the dispatcher (``sipdispatch.routing``), in memory.

Destinations come from dispatcher.list text with their address set by hand (no
DNS); requests are parsed from text; rules from TOML-shaped dicts through the
real config parser, so each test reads like the configuration it checks. The
last tests drive the sans-IO proxy core with the router on a virtual clock.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from sipdispatch.config import Config, ConfigError, parse_config
from sipdispatch.dispatcher import DispatcherSets, parse_list
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.routing import DEFAULT_ROUTE, DispatchPlan, DispatchRouter
from sipdispatch.service import make_router
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import Request, Response, parse_datagram
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.router import Reject, Target
from sipdispatch.sip.timers import Timers
from tests.corepump import CorePump, parsed

CALLER = Addr("udp", "192.0.2.1", 5060)

MG1 = "sip:10.0.0.1:5060"
MG2 = "sip:10.0.0.2:5060"
MG3 = "sip:10.0.0.3:5060"


# -- builders --------------------------------------------------------------------------


def destinations(text: str) -> list[Destination]:
    """Destinations of a dispatcher.list text, each 'resolved' to its URI's host:port."""
    dests = parse_list(text, "test.list")
    for d in dests:
        d.addr = (d.host, d.port)
    return dests


def config(routes: list[dict[str, Any]] | None = None, **dispatcher: Any) -> Config:
    data: dict[str, Any] = {"dispatcher": dispatcher}
    if routes is not None:
        data["route"] = routes
    return parse_config(data, "test.toml")


def router(
    list_text: str, routes: list[dict[str, Any]] | None = None, **dispatcher: Any
) -> DispatchRouter:
    """A router over in-memory sets, with seeded randomness."""
    cfg = config(routes, **dispatcher)
    rng = random.Random(7)
    sets = DispatcherSets(destinations(list_text), rng)
    return make_router(cfg, sets, rng)


def request(
    ruri: str = "sip:1111111@proxy.example.com",
    *,
    method: str = "INVITE",
    call_id: str = "call-1",
    from_uri: str = "sip:alice@example.com",
    to_tag: str | None = None,
) -> Request:
    to = f"<{ruri}>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{call_id}-{method}\r\n"
        f"From: <{from_uri}>;tag=f1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_datagram(text.encode())
    assert isinstance(msg, Request)
    return msg


def plan_for(r: DispatchRouter, req: Request | None = None, src: Addr = CALLER) -> DispatchPlan:
    result = r.route(req or request(), src, 0.0)
    assert isinstance(result, DispatchPlan), result
    return result


def dest(r: DispatchRouter, uri: str, setid: int = 1) -> Destination:
    found = r.sets.find(setid, uri)
    assert found is not None, uri
    return found


def uri_of(t: Target | None) -> str:
    assert t is not None
    assert isinstance(t.handle, Destination)
    return t.handle.uri


def first_uri(r: DispatchRouter, req: Request | None = None, src: Addr = CALLER) -> str:
    return uri_of(plan_for(r, req, src).first()[0])


TWO = f"1 {MG1} 0 0\n1 {MG2} 0 0\n"
SERIAL = f"1 {MG1} 0 10\n1 {MG2} 0 5\n1 {MG3} 0 1\n"


# -- rules -----------------------------------------------------------------------------


def test_without_route_rules_set_1_is_used_round_robin() -> None:
    r = router(TWO)
    assert r.routes == (DEFAULT_ROUTE,)
    picks = [first_uri(r, request(call_id=f"c{i}")) for i in range(4)]
    # Kamailio order for equal priorities: the last line first.
    assert picks == [MG2, MG1, MG2, MG1]


def test_target_is_the_resolved_address_and_the_ruri_is_kept_in_dst_mode() -> None:
    r = router("1 sip:mg1.example.com:5070;transport=tcp 0 0\n")
    only = r.sets.destinations()[0]
    only.addr = ("10.9.9.9", 5070)
    [target] = plan_for(r).first()
    assert target.addr == Addr("tcp", "10.9.9.9", 5070)
    assert target.ruri is None
    assert target.handle is only


def test_first_rule_matching_the_method_wins() -> None:
    r = router(
        f"{TWO}2 {MG3} 0 0\n",
        [
            {"match": {"method": ["MESSAGE", "OPTIONS"]}, "set": 2},
            {"set": 1, "algorithm": "priority"},
        ],
    )
    assert first_uri(r, request(method="MESSAGE")) == MG3
    assert first_uri(r, request(method="OPTIONS")) == MG3
    assert first_uri(r, request(method="INVITE")) in (MG1, MG2)


def test_domain_match_is_case_insensitive_and_exact() -> None:
    r = router(
        f"1 {MG1} 0 0\n2 {MG2} 0 0\n",
        [{"match": {"domain": "pbx1.example.com"}, "set": 1}, {"set": 2}],
    )
    assert first_uri(r, request("sip:100@PBX1.Example.COM")) == MG1
    assert first_uri(r, request("sip:100@pbx1.example.com:5080;user=phone")) == MG1
    assert first_uri(r, request("sip:100@pbx2.example.com")) == MG2
    assert first_uri(r, request("sip:100@sub.pbx1.example.com")) == MG2


def test_user_prefix_matches_the_start_of_the_ruri_user_also_for_tel_uris() -> None:
    r = router(
        f"1 {MG1} 0 0\n2 {MG2} 0 0\n",
        [{"match": {"user_prefix": "44"}, "set": 2}, {"set": 1}],
    )
    assert first_uri(r, request("sip:4420123@proxy")) == MG2
    assert first_uri(r, request("sip:3344@proxy")) == MG1
    assert first_uri(r, request("sip:proxy.example.com")) == MG1  # no user at all
    assert first_uri(r, request("tel:4420123;phone-context=example.com")) == MG2


def test_all_conditions_of_a_match_must_hold() -> None:
    r = router(
        f"1 {MG1} 0 0\n2 {MG2} 0 0\n",
        [
            {"match": {"method": "INVITE", "domain": "a.example", "user_prefix": "9"}, "set": 2},
            {"set": 1},
        ],
    )
    assert first_uri(r, request("sip:9001@a.example")) == MG2
    assert first_uri(r, request("sip:9001@a.example", method="MESSAGE")) == MG1
    assert first_uri(r, request("sip:8001@a.example")) == MG1
    assert first_uri(r, request("sip:9001@b.example")) == MG1


def test_source_set_matches_a_request_from_a_destination_address() -> None:
    # Set 2 are the carriers calling in; their calls go to the PBXs of set 1.
    carriers = "2 sip:10.1.0.1:5060 0 0\n2 sip:10.1.0.2 0 0\n"
    r = router(
        TWO + carriers,
        [{"match": {"source_set": 2}, "set": 1, "algorithm": 8}, {"set": 2}],
    )
    inbound = first_uri
    # Exact IP and port.
    assert inbound(r, src=Addr("udp", "10.1.0.1", 5060)) == MG2
    # Same IP, other port: not that destination (Kamailio compares the port) ...
    assert inbound(r, src=Addr("udp", "10.1.0.1", 5999)).startswith("sip:10.1.0.")
    # ... unless the destination URI names no port (Kamailio: port 0 matches any).
    assert inbound(r, src=Addr("udp", "10.1.0.2", 5999)) == MG2
    # Over TCP the source port is ephemeral: the IP decides.
    assert inbound(r, src=Addr("tcp", "10.1.0.1", 40001)) == MG2
    # A stranger falls through to the next rule.
    assert inbound(r, src=Addr("udp", "198.51.100.7", 5060)).startswith("sip:10.1.0.")


def test_source_set_works_for_an_address_that_is_in_several_sets() -> None:
    r = router(
        f"1 {MG1} 0 0\n2 {MG1} 0 0\n3 {MG3} 0 0\n",
        [{"match": {"source_set": 2}, "set": 3}, {"set": 1}],
    )
    assert first_uri(r, src=Addr("udp", "10.0.0.1", 5060)) == MG3


def test_source_set_ignores_unresolved_destinations() -> None:
    # Flag 16: not resolved at load, so no address to match (as Kamailio).
    dests = parse_list("2 sip:10.0.0.9 16 0\n1 sip:10.0.0.1 0 0\n", "test.list")
    dests[1].addr = ("10.0.0.1", 5060)
    cfg = config([{"match": {"source_set": 2}, "set": 2}, {"set": 1}])
    rng = random.Random(1)
    sets = DispatcherSets(dests, rng)
    r = make_router(cfg, sets, rng)
    assert first_uri(r, src=Addr("udp", "10.0.0.9", 5060)) == "sip:10.0.0.1"


def test_no_matching_rule_is_a_404() -> None:
    r = router(TWO, [{"match": {"method": "INVITE"}, "set": 1}])
    result = r.route(request(method="MESSAGE"), CALLER, 0.0)
    assert result == Reject(404, "No route")


@pytest.mark.parametrize(
    ("list_text", "setid"),
    [
        (f"1 {MG1} 4 0\n1 {MG2} 5 0\n", 1),  # disabled, and inactive+disabled
        (f"1 {MG1} 1 0\n", 1),  # inactive
        (TWO, 9),  # no such set
    ],
)
def test_nothing_usable_gets_the_no_destination_code(list_text: str, setid: int) -> None:
    r = router(list_text, [{"set": setid, "no_destination": 480}])
    assert r.route(request(), CALLER, 0.0) == Reject(480, "No destination")
    r = router(list_text, [{"set": setid}])
    assert r.route(request(), CALLER, 0.0) == Reject(503, "No destination")


# -- R-URI rewriting -------------------------------------------------------------------


def test_domain_mode_rewrites_ruri_host_and_port() -> None:
    r = router(
        "1 sip:mg1.example.com:5070 0 0\n1 sip:mg2.example.com 0 0\n",
        [{"set": 1, "algorithm": 8, "mode": "domain"}],
    )
    req = request("sip:1111111@proxy.example.com:5060;user=phone")
    plan = plan_for(r, req)
    [target] = plan.first()
    # Equal priorities: the last line first.
    assert target.ruri == "sip:1111111@mg2.example.com;user=phone"
    nxt = plan.next_target(target, 503, False, 1.0)
    assert nxt is not None
    assert nxt.ruri == "sip:1111111@mg1.example.com:5070;user=phone"
    assert req.uri_text == "sip:1111111@proxy.example.com:5060;user=phone"  # untouched


def test_domain_mode_takes_the_destination_transport() -> None:
    r = router("1 sip:10.0.0.1:5070;transport=tcp 0 0\n", [{"set": 1, "mode": "domain"}])
    [target] = plan_for(r, request("sip:42@proxy")).first()
    assert target.ruri == "sip:42@10.0.0.1:5070;transport=tcp"
    assert target.addr.transport == "tcp"


def test_tech_prefix_per_gateway_on_the_same_sbc() -> None:
    # The seed article's question: one provider, one SBC address, three quality
    # levels chosen by a tech prefix; serial (8) tries Gold, then Silver, Bronze.
    r = router(
        "1 sip:10.0.0.9:5060 0 30 prefix=011;duid=gold\n"
        "1 sip:10.0.0.9:5060 0 20 prefix=022;duid=silver\n"
        "1 sip:10.0.0.9:5060 0 10 strip=2;prefix=033;duid=bronze\n",
        [{"set": 1, "algorithm": 8, "mark_failed": ""}],
    )
    plan = plan_for(r, request("sip:0012345@proxy.example.com"))
    [gold] = plan.first()
    assert gold.ruri == "sip:0110012345@proxy.example.com"
    silver = plan.next_target(gold, 503, False, 1.0)
    assert silver is not None and silver.ruri == "sip:0220012345@proxy.example.com"
    bronze = plan.next_target(silver, 503, False, 2.0)
    assert bronze is not None and bronze.ruri == "sip:03312345@proxy.example.com"
    assert {gold.addr, silver.addr, bronze.addr} == {Addr("udp", "10.0.0.9", 5060)}
    assert plan.next_target(bronze, 503, False, 3.0) is None


def test_prefix_and_strip_apply_to_tel_uris_and_combine_with_domain_mode() -> None:
    r = router("1 sip:10.0.0.1 0 0 strip=1;prefix=00\n", [{"set": 1, "mode": "domain"}])
    [t] = plan_for(r, request("tel:+4420123;phone-context=x")).first()
    assert t.ruri == "tel:004420123;phone-context=x"
    [t] = plan_for(r, request("sip:+4420123@proxy:5060")).first()
    assert t.ruri == "sip:004420123@10.0.0.1"


def test_strip_longer_than_the_user_leaves_no_user_part() -> None:
    r = router("1 sip:10.0.0.1 0 0 strip=9\n")
    [t] = plan_for(r, request("sip:123@proxy")).first()
    assert t.ruri == "sip:proxy"


# -- failover --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failover_on", "status", "timeout", "fails_over"),
    [
        (["5xx", "404", "408"], 503, False, True),
        (["5xx", "404", "408"], 500, False, True),
        (["5xx", "404", "408"], 404, False, True),
        (["5xx", "404", "408"], 408, False, True),
        (["5xx", "404", "408"], 486, False, False),
        (["5xx", "404", "408"], 403, False, False),
        (["5xx", "404", "408"], 603, False, False),
        (["503"], 500, False, False),
        (["4xx"], 486, False, True),
        ([], 503, False, False),
        ([], 408, True, True),  # a branch that never answered always fails over
    ],
)
def test_failover_only_on_failover_on_codes_classes_and_timeouts(
    failover_on: list[str], status: int, timeout: bool, fails_over: bool
) -> None:
    r = router(SERIAL, [{"set": 1, "algorithm": 8, "failover_on": failover_on}])
    plan = plan_for(r)
    [first] = plan.first()
    assert uri_of(first) == MG1
    nxt = plan.next_target(first, status, timeout, 1.0)
    if fails_over:
        assert uri_of(nxt) == MG2
        assert dest(r, MG1).flags_text() == "IP"
    else:
        assert nxt is None
        assert dest(r, MG1).flags_text() == "AX"  # not a failure: not marked


def test_failover_walks_the_whole_list_then_gives_up() -> None:
    r = router(SERIAL, [{"set": 1, "algorithm": 8, "mark_failed": ""}])
    plan = plan_for(r)
    t = plan.first()[0]
    seen = [uri_of(t)]
    while (t2 := plan.next_target(t, 500, False, 0.0)) is not None:
        seen.append(uri_of(t2))
        t = t2
    assert seen == [MG1, MG2, MG3]


def test_limit_shortens_the_failover_list() -> None:
    r = router(SERIAL, [{"set": 1, "algorithm": 8, "limit": 2}])
    plan = plan_for(r)
    t = plan.first()[0]
    t2 = plan.next_target(t, 503, False, 0.0)
    assert uri_of(t2) == MG2
    assert t2 is not None and plan.next_target(t2, 503, False, 0.0) is None


@pytest.mark.parametrize(
    ("letters", "flags"),
    [
        ("ip", "IP"), ("i", "IX"), ("d", "DX"), ("t", "IX"), ("tp", "IP"), ("a", "AX"),
        ("ap", "AP"), ("IP", "IP"), ("pi", "IP"), ("ipa", "AX"), ("", "AX"),
    ],
)  # fmt: skip
def test_mark_failed_takes_kamailios_ds_mark_dst_letters(letters: str, flags: str) -> None:
    # probing_threshold 1 (default): one "t" mark is enough to make it inactive.
    r = router(SERIAL, [{"set": 1, "algorithm": 8, "mark_failed": letters}])
    plan = plan_for(r)
    plan.next_target(plan.first()[0], 503, False, 0.0)
    assert dest(r, MG1).flags_text() == flags
    assert dest(r, MG2).flags_text() == "AX"
    if flags[0] in "ID":
        assert first_uri(r, request(call_id="next")) == MG2  # no more calls for MG1


def test_mark_t_counts_up_to_the_probing_threshold_as_kamailio() -> None:
    r = router(SERIAL, [{"set": 1, "algorithm": 8, "mark_failed": "t"}], probing_threshold=2)
    mg1 = dest(r, MG1)
    for i, expected in enumerate(["TX", "IX"]):
        plan = plan_for(r, request(call_id=f"c{i}"))
        assert uri_of(plan.first()[0]) == MG1  # trying is still usable
        plan.next_target(plan.first()[0], 500, False, 0.0)
        assert mg1.flags_text() == expected
    assert first_uri(r, request(call_id="c9")) == MG2


def test_mark_t_keeps_an_inactive_destination_inactive() -> None:
    r = router(f"1 {MG1} 9 0\n")  # flags 9: IP
    change = r.mark(dest(r, MG1), "t", "test")
    # Not trying: Kamailio keeps it inactive (the probing bit goes, as requested).
    assert change is not None and (change.old, change.new) == ("IP", "IX")


def test_state_changes_of_failed_calls_go_to_the_state_log_with_kamailio_letters() -> None:
    r = router(SERIAL, [{"set": 1, "algorithm": 8}])
    seen: list[str] = []
    r.state_log.subscribe(lambda change: seen.append(f"{change.origin}: {change.describe()}"))
    plan = plan_for(r)
    plan.next_target(plan.first()[0], 503, False, 5.0)
    plan2 = plan_for(r, request(call_id="c2"))
    plan2.next_target(plan2.first()[0], 0, True, 6.0)
    assert seen == [
        f"call: set 1 {MG1}: AX -> IP (call failed with 503)",
        f"call: set 1 {MG2}: AX -> IP (no answer)",
    ]


def test_a_failed_call_does_not_undo_an_operators_disable() -> None:
    r = router(SERIAL, [{"set": 1, "algorithm": 8}])
    plan = plan_for(r)
    [first] = plan.first()
    r.sets.set_state(dest(r, MG1), 4)  # dispatcher.set_state dx meanwhile
    plan.next_target(first, 503, False, 0.0)
    assert dest(r, MG1).flags_text() == "DX"


def test_failover_false_stops_failover_but_still_marks() -> None:
    r = router(SERIAL, [{"set": 1, "algorithm": 8}], failover=False)
    plan = plan_for(r)
    assert plan.next_target(plan.first()[0], 503, False, 0.0) is None
    assert dest(r, MG1).flags_text() == "IP"


def test_failover_skips_destinations_that_went_down_after_the_selection() -> None:
    r = router(SERIAL, [{"set": 1, "algorithm": 8}])
    plan = plan_for(r)
    r.mark(dest(r, MG2), "ip", "probing")
    nxt = plan.next_target(plan.first()[0], 503, False, 0.0)
    assert uri_of(nxt) == MG3


def test_use_default_destination_is_tried_last_whatever_its_state() -> None:
    r = router(f"{SERIAL}", [{"set": 1, "algorithm": 8}], use_default=True)
    r.sets.set_state(dest(r, MG3), 1)  # the default (last in set order) is inactive
    plan = plan_for(r)
    t = plan.first()[0]
    t2 = plan.next_target(t, 503, False, 0.0)
    assert uri_of(t2) == MG2
    assert t2 is not None
    assert uri_of(plan.next_target(t2, 503, False, 0.0)) == MG3


def test_parallel_forking_sends_to_every_usable_destination_and_never_fails_over() -> None:
    r = router(f"{SERIAL}1 sip:10.0.0.4 4 0\n", [{"set": 1, "algorithm": 12}])
    plan = plan_for(r)
    assert plan.parallel
    targets = plan.first()
    assert [uri_of(t) for t in targets] == [MG1, MG2, MG3]
    assert plan.next_target(targets[1], 503, False, 0.0) is None
    assert dest(r, MG2).flags_text() == "IP"  # the failed branch is still marked


def test_hash_algorithms_read_their_own_header() -> None:
    r = router(f"{SERIAL}1 sip:10.0.0.4 0 0\n", [{"set": 1, "algorithm": "hash-from"}])
    alice = {first_uri(r, request(call_id=f"a{i}", from_uri="sip:alice@x")) for i in range(5)}
    bob = {first_uri(r, request(call_id=f"b{i}", from_uri="sip:bob@x")) for i in range(5)}
    assert len(alice) == 1 and len(bob) == 1
    r = router(f"{SERIAL}1 sip:10.0.0.4 0 0\n", [{"set": 1, "algorithm": "hash-callid"}])
    same = {first_uri(r, request(call_id="same", from_uri=f"sip:u{i}@x")) for i in range(5)}
    assert len(same) == 1


# -- algorithm 10: call load -----------------------------------------------------------

LOADED = f"1 {MG1} 0 0 duid=mg1;maxload=2\n1 {MG2} 0 0 duid=mg2;maxload=2\n"


def test_call_load_counts_each_invite_and_spreads_to_the_least_loaded() -> None:
    r = router(LOADED, [{"set": 1, "algorithm": "call-load"}])
    mg1, mg2 = dest(r, MG1), dest(r, MG2)
    picks = [first_uri(r, request(call_id=f"c{i}")) for i in range(4)]
    # Ties go to the first in set order (the last line: MG2).
    assert picks == [MG2, MG1, MG2, MG1]
    assert (mg1.dlg_load, mg2.dlg_load) == (2, 2)
    # Everything at maxload: no destination.
    assert r.route(request(call_id="c5"), CALLER, 0.0) == Reject(503, "No destination")


def test_call_load_confirmed_on_2xx_and_released_by_bye() -> None:
    r = router(LOADED, [{"set": 1, "algorithm": 10}])
    plan = plan_for(r, request(call_id="call-a"))
    [t] = plan.first()
    d = t.handle
    assert isinstance(d, Destination) and d.dlg_load == 1
    plan.answered(t, 1.0)
    plan.finished(200, 1.0)
    entry = r.calls.entry("call-a")
    assert entry is not None and entry.state == 1  # confirmed
    assert d.dlg_load == 1  # a 2xx keeps the call counted
    # Other in-dialog requests do not end it.
    r.in_dialog(request(call_id="call-a", method="ACK", to_tag="t"), 2.0)
    r.in_dialog(request(call_id="call-a", method="INVITE", to_tag="t"), 2.0)
    assert d.dlg_load == 1
    r.in_dialog(request(call_id="call-a", method="BYE", to_tag="t"), 3.0)
    assert d.dlg_load == 0
    # A retransmitted or second BYE never takes it below zero.
    r.in_dialog(request(call_id="call-a", method="BYE", to_tag="t"), 3.5)
    assert d.dlg_load == 0
    assert len(r.calls) == 0


@pytest.mark.parametrize("status", [486, 487, 603, 408])
def test_call_load_released_when_the_call_fails_or_is_cancelled(status: int) -> None:
    r = router(LOADED, [{"set": 1, "algorithm": 10}])
    plan = plan_for(r)
    [t] = plan.first()
    assert isinstance(t.handle, Destination) and t.handle.dlg_load == 1
    plan.finished(status, 1.0)
    assert t.handle.dlg_load == 0
    plan.finished(status, 1.0)  # told twice: still zero
    assert t.handle.dlg_load == 0


def test_call_load_moves_with_failover() -> None:
    r = router(LOADED, [{"set": 1, "algorithm": 10, "mark_failed": ""}])
    plan = plan_for(r)
    [t] = plan.first()
    nxt = plan.next_target(t, 503, False, 1.0)
    assert nxt is not None
    assert isinstance(t.handle, Destination) and isinstance(nxt.handle, Destination)
    assert (t.handle.dlg_load, nxt.handle.dlg_load) == (0, 1)
    plan.finished(500, 2.0)
    assert nxt.handle.dlg_load == 0


def test_call_load_failover_skips_a_destination_that_filled_up_meanwhile() -> None:
    r = router(
        f"{LOADED}1 {MG3} 0 0 duid=mg3;maxload=1\n",
        [{"set": 1, "algorithm": 10, "mark_failed": ""}],
    )
    plan = plan_for(r, request(call_id="a"))  # MG3 (the last line comes first)
    [t] = plan.first()
    assert uri_of(t) == MG3
    assert uri_of(plan_for(r, request(call_id="b")).first()[0]) == MG2  # MG3 is full
    dest(r, MG2).dlg_load = 2  # MG2 fills up with calls from elsewhere
    nxt = plan.next_target(t, 503, False, 1.0)
    assert uri_of(nxt) == MG1
    assert [dest(r, u).dlg_load for u in (MG1, MG3)] == [1, 0]


def test_call_load_only_counts_invites_also_on_failover() -> None:
    r = router(LOADED, [{"set": 1, "algorithm": 10, "mark_failed": ""}])
    plan = plan_for(r, request(method="MESSAGE"))
    nxt = plan.next_target(plan.first()[0], 503, False, 0.0)
    assert nxt is not None
    plan.answered(nxt, 0.0)
    plan.finished(200, 0.0)
    assert len(r.calls) == 0
    assert [d.dlg_load for d in r.sets.destinations()] == [0, 0]


def test_call_load_of_an_unanswered_call_expires_after_hash_initexpire() -> None:
    r = router(LOADED, [{"set": 1, "algorithm": 10}], hash_initexpire=30, hash_expire=300)
    plan_for(r, request(call_id="lost"))
    assert sum(d.dlg_load for d in r.sets.destinations()) == 1
    r.route(request(call_id="later"), CALLER, 31.0)
    assert "lost" not in r.calls
    assert sum(d.dlg_load for d in r.sets.destinations()) == 1  # only "later"
    assert r.expire_calls(400.0) == ["later"]


# -- reload ----------------------------------------------------------------------------


@pytest.mark.parametrize(("keep", "flags"), [(True, "IP"), (False, "AX")])
def test_replace_keeps_state_only_with_keep_state_on_reload(keep: bool, flags: str) -> None:
    r = router(LOADED, [{"set": 1, "algorithm": 10}], keep_state_on_reload=keep)
    plan_for(r, request(call_id="up"))  # one call in progress on MG2
    r.mark(dest(r, MG1), "ip", "test")
    carried = r.replace(destinations(LOADED))
    assert carried == (2 if keep else 0)
    assert dest(r, MG1).flags_text() == flags
    # The call in progress stays counted either way (the table is rebound).
    assert dest(r, MG2).dlg_load == 1
    r.in_dialog(request(call_id="up", method="BYE", to_tag="t"), 1.0)
    assert dest(r, MG2).dlg_load == 0


def test_a_changed_destination_starts_fresh_on_reload() -> None:
    r = router(TWO)
    r.mark(dest(r, MG1), "ip", "test")
    r.replace(destinations(f"1 {MG1} 0 7\n1 {MG2} 0 0\n"))  # MG1's priority changed
    assert dest(r, MG1).flags_text() == "AX"


def test_a_plan_made_before_a_reload_fails_over_to_the_reloaded_destinations() -> None:
    r = router(SERIAL, [{"set": 1, "algorithm": 8}])
    plan = plan_for(r)
    [t] = plan.first()
    r.replace(destinations(SERIAL))
    nxt = plan.next_target(t, 503, False, 0.0)
    assert nxt is not None and nxt.handle is dest(r, MG2)
    assert dest(r, MG1).flags_text() == "IP"  # the new MG1 is marked
    r.replace(destinations(f"1 {MG1} 0 10\n"))  # MG2 and MG3 removed
    assert plan.next_target(nxt, 503, False, 0.0) is None


# -- through the proxy core (sans-IO, virtual clock) -----------------------------------

TIMERS = Timers(t1=0.5, t2=4.0, t4=5.0, fr_timer=2.0, fr_inv_timer=10.0)
PROXY = ("127.0.0.1", 5060)
GW1 = Addr("udp", "10.0.0.1", 5060)
GW2 = Addr("udp", "10.0.0.2", 5060)


class Core:
    def __init__(self, r: DispatchRouter) -> None:
        self.core = ProxyCore(ProxySettings(local={"udp": PROXY}), r, TIMERS)
        self.pump = CorePump(self.core)

    def send(self, data: bytes, src: Addr) -> list[tuple[Addr, Request | Response]]:
        return parsed(self.pump.receive(data, src))

    def advance(self, seconds: float) -> list[tuple[Addr, Request | Response]]:
        return parsed(self.pump.advance(seconds))


def caller_invite(call_id: str = "seam-1") -> bytes:
    return (
        "INVITE sip:1111111@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{call_id}\r\n"
        "From: <sip:ua@192.0.2.1>;tag=ua\r\nTo: <sip:1111111@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        "Contact: <sip:ua@192.0.2.1>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def answer(req: Request, status: int, tag: str) -> bytes:
    lines = [f"SIP/2.0 {status} X"]
    for key, name, value in req.headers:
        if key in ("via", "from", "call-id", "cseq", "record-route"):
            lines.append(f"{name}: {value}")
        elif key == "to":
            lines.append(f"To: {value};tag={tag}")
    lines += ["Contact: <sip:gw@10.0.0.2>", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def requests_to(out: list[tuple[Addr, Any]], addr: Addr, method: str) -> list[Request]:
    return [m for a, m in out if a == addr and isinstance(m, Request) and m.method == method]


def responses_to_caller(out: list[tuple[Addr, Any]]) -> list[int]:
    return [m.status for a, m in out if isinstance(m, Response) and a.host == "192.0.2.1"]


def test_seam_404_from_mg1_fails_over_and_the_caller_only_sees_mg2s_200() -> None:
    r = router(f"1 {MG1} 0 10\n1 {MG2} 0 5\n", [{"set": 1, "algorithm": 8}])
    c = Core(r)
    out = c.send(caller_invite(), CALLER)
    [inv1] = requests_to(out, GW1, "INVITE")
    out = c.send(answer(inv1, 404, "mg1"), GW1)
    assert requests_to(out, GW1, "ACK")  # hop-by-hop ACK for the 404
    [inv2] = requests_to(out, GW2, "INVITE")
    assert responses_to_caller(out) == []
    out = c.send(answer(inv2, 200, "mg2"), GW2)
    assert responses_to_caller(out) == [200]
    assert dest(r, MG1).flags_text() == "IP"
    # The next call does not even try MG1.
    out = c.send(caller_invite("seam-2"), CALLER)
    assert requests_to(out, GW1, "INVITE") == [] and requests_to(out, GW2, "INVITE")


def test_seam_silent_mg1_times_out_after_fr_timer_and_mg2_answers() -> None:
    r = router(f"1 {MG1} 0 10\n1 {MG2} 0 5\n", [{"set": 1, "algorithm": 8, "failover_on": []}])
    c = Core(r)
    c.send(caller_invite(), CALLER)
    out = c.advance(TIMERS.fr_timer + 0.1)
    [inv2] = requests_to(out, GW2, "INVITE")
    assert dest(r, MG1).flags_text() == "IP"
    out = c.send(answer(inv2, 200, "mg2"), GW2)
    assert responses_to_caller(out) == [200]


def test_seam_call_load_released_by_the_bye_through_the_proxy() -> None:
    r = router(LOADED, [{"set": 1, "algorithm": 10}])
    c = Core(r)
    out = c.send(caller_invite(), CALLER)
    [(gw, inv)] = [(a, m) for a, m in out if isinstance(m, Request) and m.method == "INVITE"]
    d = r.sets.find(1, f"sip:{gw.host}:{gw.port}")
    assert d is not None and d.dlg_load == 1
    out = c.send(answer(inv, 200, "gw"), gw)
    assert responses_to_caller(out) == [200]
    bye = (
        f"BYE sip:gw@{gw.host} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbye1\r\n"
        "Route: <sip:127.0.0.1:5060;lr>\r\n"
        "From: <sip:ua@192.0.2.1>;tag=ua\r\nTo: <sip:1111111@127.0.0.1>;tag=gw\r\n"
        "Call-ID: seam-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    out = c.send(bye, CALLER)
    assert requests_to(out, Addr("udp", gw.host, 5060), "BYE")
    assert d.dlg_load == 0


# -- algorithm 64: round-robin with overload control (RFC 7339) -----------------------


def answer_with_oc(req: Request, status: int, tag: str, oc: str) -> bytes:
    """A response whose top Via (the proxy's) carries the destination's control."""
    text = answer(req, status, tag).decode()
    top = req.get("via") or ""
    return text.replace(top, top + oc, 1).encode()


def test_algorithm_64_is_round_robin_until_a_destination_asks_for_less() -> None:
    r = router(TWO, [{"set": 1, "algorithm": 64}])
    picks = [first_uri(r, request(call_id=f"c{i}")) for i in range(4)]
    assert picks == [MG2, MG1, MG2, MG1]  # as algorithm 4
    r.set_overload(dest(r, MG1), 100, 5.0, 1, 0.0)
    assert {first_uri(r, request(call_id=f"d{i}")) for i in range(6)} == {MG2}
    r.set_overload(dest(r, MG1), 50, 5.0, 2, 0.0)
    picks = [first_uri(r, request(call_id=f"e{i}")) for i in range(200)]
    # As Kamailio's: MG1 is offered after each call MG2 took and takes half its offers
    # (a skip goes to MG2 and offers MG1 again): a third of the calls, not a half.
    assert 60 <= picks.count(MG1) <= 75 and picks.count(MG1) + picks.count(MG2) == 200
    r.set_overload(dest(r, MG2), 100, 5.0, 1, 0.0)
    r.set_overload(dest(r, MG1), 100, 5.0, 3, 0.0)
    rejected = r.route(request(call_id="f"), CALLER, 0.0)
    assert isinstance(rejected, Reject) and rejected.status == 503  # no_destination


def test_seam_a_destinations_oc_in_our_via_moves_its_calls_to_the_others() -> None:
    r = router(TWO, [{"set": 1, "algorithm": 64}])
    c = Core(r)
    r.on_overload = lambda on: c.core.overload_control(r.overload if on else None)
    r.replace_routes(r.routes)  # as the server wires it
    out = c.send(caller_invite("oc-1"), CALLER)
    [(gw, inv)] = [(a, m) for a, m in out if isinstance(m, Request) and m.method == "INVITE"]
    assert (inv.get("via") or "").endswith(";oc")  # RFC 7339 section 5.1: we support it
    out = c.send(answer_with_oc(inv, 200, "g", ";oc=100;oc-validity=60000;oc-seq=1"), gw)
    assert responses_to_caller(out) == [200]
    loaded = dest(r, f"sip:{gw.host}:{gw.port}")
    assert loaded.oc is not None and loaded.oc.rate == 100
    for i in range(4):  # every next call goes to the other one
        out = c.send(caller_invite(f"oc-{i + 2}"), CALLER)
        [(to, _)] = [(a, m) for a, m in out if isinstance(m, Request) and m.method == "INVITE"]
        assert to != gw


def test_algorithm_7_hashes_a_template_of_several_values_as_kamailios_hash_pvar() -> None:
    # hash_pvar = "$hdr(X-Tenant)$fU": the same tenant and caller, the same destination.
    four = "".join(f"1 sip:10.0.0.{i}:5060 0 0\n" for i in range(1, 5))
    r = router(four, [{"set": 1, "algorithm": 7}], hash_header="{hdr:X-Tenant}/{from_user}")

    def pick(tenant: str | None, caller: str, call_id: str) -> str:
        req = request(call_id=call_id, from_uri=f"sip:{caller}@example.com")
        if tenant is not None:
            req.append("x-tenant", "X-Tenant", tenant)
        return first_uri(r, req)

    assert len({pick("acme", "alice", f"a{i}") for i in range(8)}) == 1
    spread = {pick(f"t{i}", "alice", f"b{i}") for i in range(40)}
    assert len(spread) > 1  # other tenants, other destinations
    assert pick(None, "alice", "c1") == pick(None, "alice", "c2")  # a missing part is empty
    # Nothing of the template in the request: no destination (Kamailio: empty hash).
    rejected = r.route(request(call_id="d", from_uri="sip:example.com"), CALLER, 0.0)
    assert isinstance(rejected, Reject) and rejected.status == 503


def test_a_hash_template_that_names_an_unknown_part_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        config([{"set": 1, "algorithm": 7}], hash_header="{hdr:X-Tenant}{fU}")
    assert info.value.key == "dispatcher.hash_header"
    assert "unknown part {fU}: use {hdr:Name} or one of {call_id}" in str(info.value)
