"""Python routing hooks (``[[route]] python = "module:function"``), in memory.

The hook API (the request view, Route, Reject, None), what the router does with each
answer, a hook's exception or bad answer (500 and one log line, rate-limited), its
timing (the histogram, the slow-call warning) on a virtual clock, and importing
hooks from files: at start-up (a config error naming the rule) and afresh on
``dispatcher.reload`` (an import error refuses the reload and keeps the running hook).
"""

from __future__ import annotations

import asyncio
import logging
import random
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sipdispatch.config import ConfigError, parse_config
from sipdispatch.dispatcher import DispatcherSets, parse_list
from sipdispatch.dispatcher.states import DS_INACTIVE_DST
from sipdispatch.health.statelog import StateLog
from sipdispatch.hooks import (
    BUCKETS,
    HOOK_FAILED,
    LOG_INTERVAL,
    Hook,
    HookLoader,
    HookLoadError,
    Reject,
    RequestView,
    Route,
    import_function,
)
from sipdispatch.routing import DispatchPlan, DispatchRouter
from sipdispatch.service import DispatcherService, make_router
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import Request, parse_datagram
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.router import Reject as CoreReject
from sipdispatch.sip.router import Target
from sipdispatch.sip.timers import Timers
from tests.corepump import CorePump, parsed

CALLER = Addr("udp", "192.0.2.1", 5062)
MG1 = "sip:10.0.0.1:5060"
MG2 = "sip:10.0.0.2:5060"
MG3 = "sip:10.0.0.3:5060"
SETS = f"1 {MG1} 0 0\n2 {MG2} 0 0\n3 {MG3} 0 0\n"


class Clock:
    """A virtual clock; each hook call may move it on by ``step``."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def request(
    ruri: str = "sip:4420123@proxy.example.com",
    *,
    method: str = "INVITE",
    call_id: str = "call-1",
    extra: str = "",
) -> Request:
    text = (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-{call_id}\r\n"
        'From: "Alice" <sip:alice@example.com;user=phone>;tag=f1\r\n'
        "To: <sip:4420123@proxy.example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"{extra}"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_datagram(text.encode())
    assert isinstance(msg, Request)
    return msg


def hooked_router(
    fn: Callable[[RequestView], object],
    routes: list[dict[str, Any]] | None = None,
    clock: Clock | None = None,
    lines: str = SETS,
) -> tuple[DispatchRouter, Hook]:
    """A router whose first rule has ``fn`` as its hook (wrapped as the shell wraps it)."""
    cfg = parse_config(
        {"route": routes or [{"python": "tests:hook", "set": 1}, {"set": 3}]}, "test.toml"
    )
    rng = random.Random(3)
    dests = parse_list(lines, "test.list")
    for d in dests:
        d.addr = (d.host, d.port)
    hook = Hook("route[0].python", "tests:hook", fn, clock=clock or Clock())
    return make_router(cfg, DispatcherSets(dests, rng), rng, StateLog(), {0: hook}), hook


def routed(r: DispatchRouter, req: Request | None = None) -> DispatchPlan | CoreReject:
    result = r.route(req or request(), CALLER, 0.0)
    assert isinstance(result, DispatchPlan | CoreReject), result
    return result


def first(r: DispatchRouter, req: Request | None = None) -> str:
    plan = routed(r, req)
    assert isinstance(plan, DispatchPlan), plan
    return plan.first()[0].handle.uri  # type: ignore[no-any-return]


# -- the request view ------------------------------------------------------------------


def test_the_hook_sees_the_request_through_a_read_only_view() -> None:
    seen: dict[str, object] = {}

    def hook(req: RequestView) -> None:
        seen.update(
            method=req.method,
            ruri=req.ruri,
            ruri_user=req.ruri_user,
            ruri_host=req.ruri_host,
            from_uri=req.from_uri,
            from_user=req.from_user,
            to_uri=req.to_uri,
            call_id=req.call_id,
            source_ip=req.source_ip,
            source_port=req.source_port,
            transport=req.transport,
            source_sets=req.source_sets,
            x_account=req.header("X-Account"),
            compact_call_id=req.header("i"),
            missing=req.header("X-Nothing"),
        )

    r, _ = hooked_router(hook)
    r.route(request(extra="x-account: 77\r\n"), CALLER, 0.0)
    assert seen == {
        "method": "INVITE",
        "ruri": "sip:4420123@proxy.example.com",
        "ruri_user": "4420123",
        "ruri_host": "proxy.example.com",
        "from_uri": "sip:alice@example.com;user=phone",
        "from_user": "alice",
        "to_uri": "sip:4420123@proxy.example.com",
        "call_id": "call-1",
        "source_ip": "192.0.2.1",
        "source_port": 5062,
        "transport": "udp",
        "source_sets": frozenset(),
        "x_account": "77",
        "compact_call_id": "call-1",
        "missing": None,
    }


def test_view_values_cannot_be_assigned() -> None:
    views: list[RequestView] = []
    r, _ = hooked_router(views.append)
    r.route(request(), CALLER, 0.0)
    with pytest.raises(AttributeError):
        views[0].ruri_user = "999"  # type: ignore[misc]


def test_view_of_a_tel_uri_has_the_number_as_user_and_no_host() -> None:
    seen: list[tuple[str, str]] = []
    r, _ = hooked_router(lambda req: seen.append((req.ruri_user, req.ruri_host)))
    r.route(request("tel:+4420123;phone-context=example.com"), CALLER, 0.0)
    assert seen == [("+4420123", "")]


def test_source_sets_name_the_sets_the_source_is_a_destination_of() -> None:
    seen: list[frozenset[int]] = []
    r, _ = hooked_router(lambda req: seen.append(req.source_sets))
    r.route(request(), Addr("udp", "10.0.0.2", 5060), 0.0)
    assert seen == [frozenset({2})]


def test_set_exists_and_set_active_answer_as_ds_list_exists_and_ds_is_active() -> None:
    seen: list[tuple[bool, ...]] = []

    def hook(req: RequestView) -> None:
        seen.append((
            req.set_exists(1), req.set_exists(9), req.set_active(1), req.set_active(9),
            req.set_active(2, MG2), req.set_active(2, "sip:10.9.9.9"),
        ))  # fmt: skip

    r, _ = hooked_router(hook)
    r.route(request(), CALLER, 0.0)
    for d in r.sets.destinations():
        if d.setid == 1:
            d.state |= DS_INACTIVE_DST
    r.route(request(call_id="c2"), CALLER, 0.0)
    assert seen == [
        (True, False, True, False, True, False),
        (True, False, False, False, True, False),
    ]


# -- what the hook answers -------------------------------------------------------------


def test_route_chooses_the_set_and_the_rules_set_is_the_default() -> None:
    r, _ = hooked_router(lambda req: Route(set=2) if req.ruri_user.startswith("44") else Route())
    assert first(r, request("sip:4420123@proxy")) == MG2
    assert first(r, request("sip:3320123@proxy")) == MG1


def test_none_falls_through_to_the_next_rule_and_past_the_last_one_is_404() -> None:
    r, _ = hooked_router(lambda req: None)
    assert first(r) == MG3
    alone, _ = hooked_router(lambda req: None, [{"python": "tests:hook", "set": 1}])
    assert routed(alone) == CoreReject(404, "No route")


def test_a_rules_match_is_checked_before_its_hook_is_called() -> None:
    calls: list[str] = []

    def hook(req: RequestView) -> Route:
        calls.append(req.method)
        return Route(set=2)

    r, _ = hooked_router(
        hook, [{"python": "tests:hook", "set": 1, "match": {"method": "INVITE"}}, {"set": 3}]
    )
    assert first(r, request(method="MESSAGE")) == MG3
    assert first(r, request()) == MG2
    assert calls == ["INVITE"]


def test_reject_answers_locally_with_its_code_and_reason() -> None:
    r, _ = hooked_router(lambda req: Reject(403, "Not your prefix"))
    assert routed(r) == CoreReject(403, "Not your prefix")
    r, _ = hooked_router(lambda req: Reject(486))
    assert routed(r) == CoreReject(486, None)


def test_route_chooses_the_algorithm_by_number_or_name() -> None:
    lines = f"1 {MG1} 0 10\n1 {MG2} 0 5\n"
    # The rule says round-robin; the hook asks for serial by priority (8): always MG1.
    r, _ = hooked_router(
        lambda req: Route(algorithm="serial"), [{"python": "t:h", "set": 1}], lines=lines
    )
    assert [first(r, request(call_id=f"c{i}")) for i in range(3)] == [MG1, MG1, MG1]
    r, _ = hooked_router(lambda req: Route(), [{"python": "t:h", "set": 1}], lines=lines)
    assert {first(r, request(call_id=f"c{i}")) for i in range(4)} == {MG1, MG2}


def test_route_to_a_set_that_does_not_exist_answers_the_rules_no_destination() -> None:
    r, _ = hooked_router(
        lambda req: Route(set=9), [{"python": "t:h", "set": 1, "no_destination": 480}]
    )
    assert routed(r) == CoreReject(480, "No destination")


def test_route_user_rewrites_the_ruri_user_before_the_destinations_prefix() -> None:
    lines = "1 sip:10.0.0.1:5060 0 0 strip=1;prefix=00\n"
    r, _ = hooked_router(
        lambda req: Route(user="4420123"), [{"python": "t:h", "set": 1}], lines=lines
    )
    plan = routed(r, request("sip:+999@proxy.example.com"))
    assert isinstance(plan, DispatchPlan)
    assert plan.first()[0].ruri == "sip:00420123@proxy.example.com"
    plan = routed(r, request("tel:+999;phone-context=x"))
    assert isinstance(plan, DispatchPlan)
    assert plan.first()[0].ruri == "tel:00420123;phone-context=x"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Route(set=-1), "set must be a destination set id"),
        (lambda: Route(set="2"), "set must be a destination set id"),
        (lambda: Route(algorithm="fastest"), "algorithm 'fastest'"),
        (lambda: Route(algorithm=99), "algorithm 99"),
        (lambda: Route(user="a b"), "not a SIP URI user part"),
        (lambda: Route(user=""), "not a SIP URI user part"),
        (lambda: Route(headers={"X Bad": "1"}), "is not a SIP header name"),
        (lambda: Route(headers={"Via": "SIP/2.0/UDP x"}), "is the proxy's own"),
        (lambda: Route(headers={"v": "SIP/2.0/UDP x"}), "is the proxy's own"),
        (lambda: Route(headers={"X-Ok": "a\r\nVia: evil"}), "on one line"),
        (lambda: Route(headers=[("X-A", "1")]), "mapping"),
        (lambda: Reject(200), "300..699"),
        (lambda: Reject(486, "Busy\r\nX: y"), "on one line"),
    ],
)
def test_a_bad_route_or_reject_raises_where_the_hook_makes_it(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# -- fallback sets (ds_select_routes) ----------------------------------------------------


def tried(r: DispatchRouter, req: Request | None = None) -> list[str]:
    """The destinations a call is sent to when each answers 503."""
    plan = routed(r, req)
    assert isinstance(plan, DispatchPlan), plan
    target: Target | None = plan.first()[0]
    uris = []
    while target is not None:
        uris.append(target.handle.uri)
        target = plan.next_target(target, 503, False, 0.0)
    return uris


def test_route_fallback_sets_are_tried_after_its_set_in_order() -> None:
    r, _ = hooked_router(lambda req: Route(set=1, fallback=[3, 2]), [{"python": "t:h", "set": 1}])
    assert tried(r) == [MG1, MG3, MG2]
    assert r.fallback_calls == {(1, 3): 1, (1, 2): 1}


def test_route_without_fallback_takes_the_rules_and_an_empty_one_has_none() -> None:
    rules = [{"python": "t:h", "set": 1, "fallback": [2]}]
    r, _ = hooked_router(lambda req: Route(), rules)
    assert tried(r) == [MG1, MG2]
    r, _ = hooked_router(lambda req: Route(fallback=[]), rules)
    assert tried(r) == [MG1]


def test_a_route_to_a_set_in_the_rules_fallback_leaves_that_set_out_of_it() -> None:
    r, _ = hooked_router(
        lambda req: Route(set=2), [{"python": "t:h", "set": 1, "fallback": [2, 3]}]
    )
    assert tried(r) == [MG2, MG3]


def test_a_route_fallback_id_takes_the_routes_algorithm_and_a_mapping_its_own() -> None:
    lines = f"1 {MG1} 0 0\n2 {MG2} 0 10\n2 {MG3} 0 5\n"
    # Set 2 by priority: MG2 first on every call (round-robin would alternate).
    by_priority = Route(set=1, algorithm="serial", fallback=[2])
    own = Route(set=1, fallback=[{"set": 2, "algorithm": 8}])
    for route in (by_priority, own):
        r, _ = hooked_router(
            lambda req, route=route: route,
            [{"python": "t:h", "set": 1, "mark_failed": ""}],
            lines=lines,
        )
        assert [tried(r, request(call_id=f"c{i}"))[1] for i in range(3)] == [MG2, MG2, MG2]


def test_a_route_to_a_set_with_nothing_usable_goes_to_its_first_usable_fallback() -> None:
    lines = f"1 {MG1} 1 0\n2 {MG2} 4 0\n3 {MG3} 0 0\n"
    r, _ = hooked_router(
        lambda req: Route(fallback=[2, 3]), [{"python": "t:h", "set": 1}], lines=lines
    )
    assert tried(r) == [MG3]
    r, _ = hooked_router(
        lambda req: Route(fallback=[2]), [{"python": "t:h", "set": 1}], lines=lines
    )
    assert routed(r) == CoreReject(503, "No destination")


def test_select_routes_reads_kamailios_rules() -> None:
    route = Route.select_routes("1=4;3=8; 2=serial", headers={"X-Carrier": "uk"})
    assert (route.set, route.algorithm) == (1, 4)
    assert route.fallback == ({"set": 3, "algorithm": 8}, {"set": 2, "algorithm": 8})
    assert route == Route(
        set=1,
        algorithm=4,
        headers={"X-Carrier": "uk"},
        fallback=({"set": 3, "algorithm": 8}, {"set": 2, "algorithm": 8}),
    )
    r, _ = hooked_router(lambda req: route, [{"python": "t:h", "set": 9}])
    assert tried(r) == [MG1, MG3, MG2]


def test_a_bare_fallback_id_under_a_parallel_rule_is_tried_one_destination_at_a_time() -> None:
    # The rule forks (algorithm 12); the hook's bare fallback id would take 12 from it:
    # a fallback set is walked serially, in set order.
    lines = f"1 {MG1} 0 0\n2 {MG2} 0 10\n2 {MG3} 0 5\n"
    r, _ = hooked_router(
        lambda req: Route(fallback=[2]), [{"python": "t:h", "set": 1, "algorithm": 12}], lines=lines
    )
    assert tried(r) == [MG1, MG2, MG3]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Route(fallback=2), "fallback must be a list"),  # type: ignore[arg-type]
        (lambda: Route(fallback="2;3"), "fallback must be a list"),
        (lambda: Route(fallback=[-1]), "is not a destination set id"),
        (lambda: Route(fallback=[True]), "is not a destination set id"),
        (lambda: Route(fallback=[{"algorithm": 8}]), "has no set"),
        (lambda: Route(fallback=[{"set": 2, "alg": 8}]), "unknown key 'alg'"),
        (lambda: Route(fallback=[{"set": 2, "algorithm": "fastest"}]), "algorithm 'fastest'"),
        (lambda: Route(fallback=[{"set": 2, "algorithm": 12}]), "parallel forking"),
        (lambda: Route(algorithm="parallel", fallback=[2]), "parallel forking"),
        (lambda: Route(set=2, fallback=[2]), "is the Route's own set"),
        (lambda: Route(fallback=[2, {"set": 2}]), "given twice"),
        (lambda: Route.select_routes(""), "no setid=algorithm rule"),
        (lambda: Route.select_routes("1:4"), "is not setid=algorithm"),
        (lambda: Route.select_routes("1=99"), "'1=99'"),
        (lambda: Route.select_routes("1=4;1=8"), "is the Route's own set"),
    ],
)
def test_a_bad_fallback_raises_where_the_hook_makes_it(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# -- through the proxy core: the hook's headers and user on the wire --------------------

TIMERS = Timers(t1=0.5, t2=4.0, t4=5.0, fr_timer=2.0, fr_inv_timer=10.0)


def invite(call_id: str) -> bytes:
    return (
        "INVITE sip:4420123@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK{call_id}\r\n"
        "From: <sip:ua@192.0.2.1>;tag=ua\r\nTo: <sip:4420123@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        "Contact: <sip:ua@192.0.2.1>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_forwarded_invite_carries_the_hooks_headers_and_user_on_every_attempt() -> None:
    lines = f"1 {MG1} 0 10\n1 {MG2} 0 5\n"
    route = Route(user="0044123", headers={"X-Carrier": "uk-1", "P-Hint": "hooked"})
    r, _ = hooked_router(
        lambda req: route, [{"python": "t:h", "set": 1, "algorithm": 8}], lines=lines
    )
    pump = CorePump(ProxyCore(ProxySettings(local={"udp": ("127.0.0.1", 5060)}), r, TIMERS))
    out = parsed(pump.receive(invite("h-1"), CALLER))
    [(to, fwd)] = [(a, m) for a, m in out if isinstance(m, Request)]
    assert to == Addr("udp", "10.0.0.1", 5060)
    assert fwd.uri_text == "sip:0044123@127.0.0.1:5060"
    assert fwd.get("x-carrier") == "uk-1" and fwd.get("p-hint") == "hooked"
    # MG1 never answers: the retry on MG2 carries them too, once.
    out = parsed(pump.advance(TIMERS.fr_timer + 1))
    retried = [m for a, m in out if isinstance(m, Request) and a.host == "10.0.0.2"]
    assert retried and retried[0].method == "INVITE"
    assert retried[0].get_all("x-carrier") == ["uk-1"]
    assert retried[0].uri_text == "sip:0044123@127.0.0.1:5060"


def test_hook_exception_through_the_core_is_a_500_to_the_caller() -> None:
    def hook(req: RequestView) -> Route:
        raise KeyError(req.ruri_user)

    r, _ = hooked_router(hook)
    pump = CorePump(ProxyCore(ProxySettings(local={"udp": ("127.0.0.1", 5060)}), r, TIMERS))
    out = parsed(pump.receive(invite("h-2"), CALLER))
    finals = [m.status for a, m in out if not isinstance(m, Request) and m.status >= 200]
    assert finals == [500]


# -- errors, timing, log lines -----------------------------------------------------------


def test_an_exception_is_a_500_and_one_log_line_per_interval_saying_how_many_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()

    def hook(req: RequestView) -> Route:
        return {"44": Route(set=2)}[req.ruri_user[:3]]

    r, h = hooked_router(hook, clock=clock)
    caplog.set_level(logging.ERROR, "sipdispatch.hooks")
    for _ in range(5):
        assert routed(r) == HOOK_FAILED
        clock.now += 0.1
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 1
    assert "route[0].python = 'tests:hook' raised KeyError: '442'" in lines[0]
    assert "test_hooks.py:" in lines[0] and "in hook" in lines[0]
    clock.now += LOG_INTERVAL
    routed(r)
    assert len(caplog.records) == 2
    assert "(and 4 more since the last line)" in caplog.records[1].getMessage()
    assert h.stats.outcomes["error"] == 6


def test_an_answer_that_is_not_route_reject_or_none_is_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r, h = hooked_router(lambda req: 2)
    caplog.set_level(logging.ERROR, "sipdispatch.hooks")
    failed = routed(r)
    assert failed == HOOK_FAILED
    assert isinstance(failed, CoreReject) and failed.outcome == "hook_failed"
    assert "returned 2: expected Route, Reject or None" in caplog.text
    assert h.stats.outcomes == {"route": 0, "reject": 0, "pass": 0, "error": 1}


def test_every_call_is_timed_into_the_histogram_by_outcome() -> None:
    clock = Clock()
    durations = iter([0.00002, 0.0004, 0.0004, 0.2])

    def hook(req: RequestView) -> Route | Reject | None:
        clock.now += next(durations)
        return {"c0": Route(), "c1": Reject(486), "c2": None}.get(req.call_id, Route())

    r, h = hooked_router(hook, clock=clock)
    for i in range(4):
        r.route(request(call_id=f"c{i}"), CALLER, 0.0)
    stats = h.stats
    assert stats.outcomes == {"route": 2, "reject": 1, "pass": 1, "error": 0}
    assert stats.calls == 4
    assert stats.seconds == pytest.approx(0.20082)
    assert stats.buckets[BUCKETS.index(0.000025)] == 1
    assert stats.buckets[BUCKETS.index(0.0005)] == 2
    assert stats.buckets[-1] == 1  # 200 ms: above every bound


def test_a_slow_call_is_counted_and_warned_about_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()

    def slow(req: RequestView) -> Route:
        clock.now += 0.010
        return Route()

    r, h = hooked_router(slow, clock=clock)
    caplog.set_level(logging.WARNING, "sipdispatch.hooks")
    for _ in range(3):
        routed(r)
    assert h.stats.slow == 3
    [line] = [rec.getMessage() for rec in caplog.records]
    assert "route[0].python = 'tests:hook' took 10.0 ms (over 3.0 ms)" in line
    assert "blocking I/O belongs elsewhere" in line


def test_a_fast_call_is_not_slow() -> None:
    clock = Clock()

    def fast(req: RequestView) -> Route:
        clock.now += 0.0005
        return Route()

    r, h = hooked_router(fast, clock=clock)
    routed(r)
    assert h.stats.slow == 0


# -- importing: start-up and reload -------------------------------------------------------


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def test_import_function_finds_a_module_in_a_search_directory(tmp_path: Path) -> None:
    write(
        tmp_path / "hk_found.py",
        """
        from sipdispatch.hooks import Route
        def route(request):
            return Route(set=2)
        """,
    )
    loader = HookLoader(
        parse_config({"route": [{"python": "hk_found:route", "set": 1}]}).routes, [str(tmp_path)]
    )
    hooks = loader.load()
    assert list(hooks) == [0]
    assert hooks[0].function.__module__ == "hk_found"


@pytest.mark.parametrize(
    ("source", "name", "reason"),
    [
        (None, "hk_absent:route", "cannot import hk_absent: ModuleNotFoundError"),
        ("def route(:\n", "hk_syntax:route", "cannot import hk_syntax: SyntaxError"),
        ("X = 1 / 0\n", "hk_raises:route", "ZeroDivisionError: division by zero at hk_raises.py:1"),
        ("def other(r): pass\n", "hk_nofunc:route", "module hk_nofunc has no route"),
        ("route = 3\n", "hk_notfn:route", "hk_notfn.route is not a function"),
        ("async def route(r):\n    pass\n", "hk_async:route", "hk_async.route is async"),
    ],
)
def test_a_hook_that_does_not_import_says_why(
    tmp_path: Path, source: str | None, name: str, reason: str
) -> None:
    module = name.split(":")[0]
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    loader = HookLoader(
        parse_config({"route": [{"set": 1}, {"python": name, "set": 1}]}).routes, [str(tmp_path)]
    )
    with pytest.raises(HookLoadError) as caught:
        loader.load()
    assert str(caught.value).startswith(f'route[1].python = "{name}": ')
    assert reason in str(caught.value)
    assert caught.value.key == "route[1].python"


def config_file(tmp_path: Path, hook: str) -> tuple[Any, list[str]]:
    listing = tmp_path / "dispatcher.list"
    listing.write_text(SETS)
    cfg = parse_config(
        {
            "dispatcher": {"list_file": str(listing), "ping_interval": 0},
            "route": [{"set": 1, "match": {"method": "OPTIONS"}}, {"python": hook, "set": 1}],
        }
    )
    return cfg, [str(tmp_path)]


def test_a_start_up_import_error_is_a_config_error_naming_the_rules_key(tmp_path: Path) -> None:
    write(tmp_path / "hk_broken_start.py", "import no_such_module_here\n")
    cfg, search = config_file(tmp_path, "hk_broken_start:route")
    with pytest.raises(ConfigError) as caught:
        DispatcherService.from_config(cfg, StateLog(), search)
    assert caught.value.key == "route[1].python"
    assert str(caught.value).startswith('config: route[1].python = "hk_broken_start:route": ')
    assert "No module named 'no_such_module_here'" in str(caught.value)


def test_reload_imports_the_hook_afresh_and_an_import_error_keeps_the_running_one(
    tmp_path: Path,
) -> None:
    module = tmp_path / "hk_reloaded.py"
    version = """
        from sipdispatch.hooks import Route
        SET = {n}
        def route(request):
            return Route(set=SET)
        """
    write(module, version.format(n=2))
    cfg, search = config_file(tmp_path, "hk_reloaded:route")
    service = DispatcherService.from_config(cfg, StateLog(), search)
    r = service.router
    assert first(r) == MG2

    async def reload() -> int:
        return await service.reload()

    write(module, version.format(n=3))
    asyncio.run(reload())
    assert first(r) == MG3
    assert service.reloads["ok"] == 1

    # Half-way through, the new version fails: nothing of it is seen.
    write(module, "SET = 1\nraise RuntimeError('carrier table missing')\n")
    with pytest.raises(HookLoadError, match="RuntimeError: carrier table missing"):
        asyncio.run(reload())
    assert first(r) == MG3  # the running hook, with its own SET
    assert service.reloads["failed"] == 1
    # The counters carry on across the re-import.
    assert service.hooks.hooks[1].stats.outcomes["route"] == 3


def test_reload_without_hooks_leaves_the_rules_alone(tmp_path: Path) -> None:
    listing = tmp_path / "dispatcher.list"
    listing.write_text(SETS)
    cfg = parse_config({"dispatcher": {"list_file": str(listing)}, "route": [{"set": 2}]})
    service = DispatcherService.from_config(cfg, StateLog())
    rules = service.router.routes
    asyncio.run(service.reload())
    assert service.router.routes is rules


def test_import_function_reads_an_edit_made_within_the_same_second(tmp_path: Path) -> None:
    # A .pyc's check is by whole seconds and size: the same size, a second apart at most.
    path = write(tmp_path / "hk_same_size.py", "def route(request):\n    return 'a'\n")
    import sys

    sys.path.append(str(tmp_path))
    try:
        assert import_function("k", "hk_same_size:route")(None) == "a"  # type: ignore[arg-type]
        path.write_text("def route(request):\n    return 'b'\n")
        assert import_function("k", "hk_same_size:route")(None) == "b"  # type: ignore[arg-type]
    finally:
        sys.path.remove(str(tmp_path))


def test_python_key_must_be_module_colon_function() -> None:
    for bad in ["myhooks", "myhooks:", ":route", "my hooks:route", "a..b:route", "m:f.g", 3]:
        with pytest.raises(ConfigError) as caught:
            parse_config({"route": [{"set": 1, "python": bad}]})
        assert caught.value.key == "route[0].python"
        assert 'must be "module:function"' in str(caught.value)
    rule = parse_config({"route": [{"set": 1, "python": "pkg.hooks:route"}]}).routes[0]
    assert rule.python == "pkg.hooks:route"


# -- the running server: RPC reload and /metrics ----------------------------------------


def server_with_hook(tmp_path: Path, source: str, module: str) -> Any:
    from sipdispatch.server import Server

    write(tmp_path / f"{module}.py", source)
    listing = tmp_path / "dispatcher.list"
    listing.write_text(SETS)
    config = tmp_path / "sipdispatch.toml"
    config.write_text(
        f'[dispatcher]\nlist_file = "{listing}"\nping_interval = 0\n'
        f'[[route]]\npython = "{module}:route"\nset = 1\n'
    )
    from sipdispatch.config import load_config

    # The module sits next to the config file: no search path given but the file's.
    return Server(load_config(config), str(config))


def test_rpc_reload_refuses_a_hook_that_no_longer_imports_and_says_why(tmp_path: Path) -> None:
    from sipdispatch.admin.rpc import Rpc, RpcError

    server = server_with_hook(
        tmp_path,
        "from sipdispatch.hooks import Route\ndef route(r):\n    return Route(set=2)\n",
        "hk_served",
    )
    assert first(server.router) == MG2
    write(
        tmp_path / "hk_served.py", "from sipdispatch.hooks import Route\ndef route(r):\n  x = (\n"
    )
    with pytest.raises(RpcError) as caught:
        asyncio.run(Rpc(server).call("dispatcher.reload", []))
    message = caught.value.message
    assert message.startswith('Reload Failed: route[0].python = "hk_served:route": cannot import')
    assert "SyntaxError" in message and "(hk_served.py, line 3)" in message
    assert message.endswith("the running hooks and list are unchanged")
    assert first(server.router) == MG2


def test_metrics_show_the_hooks_histogram_calls_by_outcome_and_slow_calls(
    tmp_path: Path,
) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from sipdispatch.admin.metrics import build_registry
    from sipdispatch.admin.rpc import Rpc

    server = server_with_hook(
        tmp_path,
        "from sipdispatch.hooks import Route, Reject\n"
        "def route(r):\n"
        "    return Reject(486) if r.call_id == 'busy' else Route(set=2)\n",
        "hk_metered",
    )
    for call_id in ("a", "b", "busy"):
        server.router.route(request(call_id=call_id), CALLER, 0.0)
    text = generate_latest(build_registry(server, Rpc(server))).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    hook = ("hook", "route[0] hk_metered:route")
    assert samples[("sipdispatch_hook_seconds_count", (hook,))] == 3
    assert samples[("sipdispatch_hook_seconds_bucket", (hook, ("le", "+Inf")))] == 3
    assert samples[("sipdispatch_hook_seconds_sum", (hook,))] > 0
    assert samples[("sipdispatch_hook_calls_total", (hook, ("outcome", "route")))] == 2
    assert samples[("sipdispatch_hook_calls_total", (hook, ("outcome", "reject")))] == 1
    assert samples[("sipdispatch_hook_calls_total", (hook, ("outcome", "error")))] == 0
    assert ("sipdispatch_hook_slow_calls_total", (hook,)) in samples
