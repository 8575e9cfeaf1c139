"""The two example hooks of examples/hooks/, through the real router.

``carriers``: longest prefix of the dialled number from a CSV read at import;
``business_hours``: office hours to the rule's set, nights and weekends to another,
on a clock the test sets.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from sipdispatch.config import parse_config
from sipdispatch.dispatcher import DispatcherSets, parse_list
from sipdispatch.health.statelog import StateLog
from sipdispatch.hooks import Hook, HookLoader, HookLoadError, RequestView
from sipdispatch.routing import DispatchPlan, DispatchRouter
from sipdispatch.service import make_router
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import Request, parse_datagram

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "hooks"
CALLER = Addr("udp", "192.0.2.1", 5062)
LINES = "".join(f"{n} sip:10.0.0.{n}:5060 0 0\n" for n in range(1, 6))


@pytest.fixture
def examples() -> Iterator[None]:
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


def imported(name: str) -> ModuleType:
    loader = HookLoader(parse_config({"route": [{"python": f"{name}:route", "set": 1}]}).routes)
    loader.load()
    return sys.modules[name]


def request(ruri: str) -> Request:
    text = (
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-1\r\n"
        "From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:x@example.com>\r\n"
        "Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_datagram(text.encode())
    assert isinstance(msg, Request)
    return msg


def router(fn: Callable[[RequestView], object]) -> DispatchRouter:
    cfg = parse_config({"route": [{"python": "example:route", "set": 1}, {"set": 1}]})
    rng = random.Random(1)
    dests = parse_list(LINES, "t.list")
    for d in dests:
        d.addr = (d.host, d.port)
    hook = Hook("route[0].python", "example:route", fn)
    return make_router(cfg, DispatcherSets(dests, rng), rng, StateLog(), {0: hook})


def goes_to(r: DispatchRouter, ruri: str) -> tuple[int, str | None]:
    plan = r.route(request(ruri), CALLER, 0.0)
    assert isinstance(plan, DispatchPlan), plan
    [target] = plan.first()
    carrier = dict((name, value) for _key, name, value in target.headers).get("X-Carrier")
    return target.handle.setid, carrier


# -- carriers ----------------------------------------------------------------------------


@pytest.mark.usefixtures("examples")
def test_carriers_route_by_the_longest_prefix_and_name_the_carrier() -> None:
    r = router(imported("carriers").route)
    assert goes_to(r, "sip:442071234567@proxy") == (3, "uk-london")  # 4420 beats 44
    assert goes_to(r, "sip:+447700900123@proxy") == (4, "uk-mobile")
    assert goes_to(r, "sip:441611234567@proxy") == (2, "uk-wholesale")
    assert goes_to(r, "tel:+12025550123") == (5, "us-carrier")
    # No prefix covers it: the next rule (set 1, no header).
    assert goes_to(r, "sip:33123456789@proxy") == (1, None)
    assert goes_to(r, "sip:proxy.example.com") == (1, None)


@pytest.mark.usefixtures("examples")
def test_carriers_table_is_read_at_import_and_a_bad_row_refuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "carriers.csv"
    table.write_text("prefix,set,carrier\n33,2,fr-carrier\n")
    monkeypatch.setenv("SIPDISPATCH_CARRIERS", str(table))
    r = router(imported("carriers").route)
    assert goes_to(r, "sip:33123456789@proxy") == (2, "fr-carrier")
    assert goes_to(r, "sip:442071234567@proxy") == (1, None)
    table.write_text("prefix,set,carrier\n33,2,fr-carrier\n3x,2,nope\n")
    loader = HookLoader(parse_config({"route": [{"python": "carriers:route", "set": 1}]}).routes)
    with pytest.raises(
        HookLoadError, match=r"carriers.csv:3: '3x,2,nope': prefix '3x' is not digits"
    ):
        loader.load()


# -- business hours ----------------------------------------------------------------------

LONDON_WINTER = UTC  # in December London is on UTC


@pytest.mark.usefixtures("examples")
@pytest.mark.parametrize(
    ("when", "setid"),
    [
        (datetime(2026, 12, 7, 8, 0, tzinfo=LONDON_WINTER), 1),  # Monday, opening time
        (datetime(2026, 12, 7, 7, 59, tzinfo=LONDON_WINTER), 2),  # a minute before
        (datetime(2026, 12, 11, 17, 59, tzinfo=LONDON_WINTER), 1),  # Friday, last minute
        (datetime(2026, 12, 11, 18, 0, tzinfo=LONDON_WINTER), 2),  # closed
        (datetime(2026, 12, 12, 11, 0, tzinfo=LONDON_WINTER), 2),  # Saturday
        (datetime(2026, 6, 8, 7, 30, tzinfo=UTC), 1),  # Monday 08:30 in London (BST)
        (datetime(2026, 6, 8, 17, 30, tzinfo=UTC), 2),  # 18:30 in London
    ],
)
def test_business_hours_go_to_the_rules_set_and_nights_to_the_night_set(
    when: datetime, setid: int
) -> None:
    module = imported("business_hours")
    r = router(module.make_route(lambda: when))
    plan = r.route(request("sip:100@office"), CALLER, 0.0)
    assert isinstance(plan, DispatchPlan)
    [target] = plan.first()
    assert target.handle.setid == setid
    assert (("x-office", "X-Office", "closed") in target.headers) == (setid == 2)
