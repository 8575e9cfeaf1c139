"""Start-up never fails over one destination whose host does not resolve: it is loaded
inactive with its reason, gets no calls nor pings, and is resolved again later; a reload
stays all or nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sipdispatch.config import parse_config
from sipdispatch.dispatcher.errors import DispatcherLoadError
from sipdispatch.health.statelog import StateLog
from sipdispatch.service import DispatcherService
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.router import Reject
from tests.test_routing import CALLER, request

MISSING = "sip:mg1.invalid:5060"
GOOD = "sip:127.0.0.1:5072"


def service(tmp_path: Path, *lines: str) -> tuple[DispatcherService, StateLog]:
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text("\n".join(lines) + "\n")
    config = parse_config({"dispatcher": {"list_file": str(list_file)}})
    log = StateLog()
    return DispatcherService.from_config(config, log), log


def test_an_unresolvable_host_is_loaded_inactive_with_its_reason(tmp_path: Path) -> None:
    svc, log = service(tmp_path, f"1 {MISSING} 0 0", f"1 {GOOD} 0 0")
    mg1 = svc.sets.find(1, MISSING)
    assert mg1 is not None and mg1.flags_text() == "IP" and mg1.addr is None
    assert mg1.unresolved is not None and "could not resolve mg1.invalid" in mg1.unresolved
    [change] = log.events
    assert (change.uri, change.old, change.new, change.origin) == (MISSING, "AX", "IP", "dns")
    # Never routed to: every call goes to the other destination.
    for i in range(6):
        plan = svc.router.route(request(call_id=f"c{i}"), CALLER, 0.0)
        assert not isinstance(plan, Reject)
        [target] = plan.first()
        assert target.addr == Addr("udp", "127.0.0.1", 5072)
    assert svc.unresolved() == [mg1]


def test_a_disabled_unresolvable_destination_stays_disabled(tmp_path: Path) -> None:
    svc, log = service(tmp_path, f"1 {MISSING} 4 0", f"1 {GOOD} 0 0")
    mg1 = svc.sets.find(1, MISSING)
    assert mg1 is not None and mg1.flags_text() == "DX" and mg1.unresolved is not None
    assert list(log.events) == []


@pytest.mark.parametrize(("probing", "after"), [(False, "AX"), (True, "IP")])
def test_a_host_that_resolves_later_gets_its_address(
    tmp_path: Path, probing: bool, after: str
) -> None:
    svc, log = service(tmp_path, f"1 {MISSING} 0 0", f"1 {GOOD} 0 0")
    answers: list[str] = []

    def resolver(host: str, port: int, transport: str) -> tuple[str, int]:
        answers.append(host)
        if len(answers) == 1:
            raise OSError("still not there")
        return "127.0.0.9", port

    svc.resolver = resolver
    assert asyncio.run(svc.retry_unresolved(probing)) == 0  # first retry: still failing
    assert asyncio.run(svc.retry_unresolved(probing)) == 1
    mg1 = svc.sets.find(1, MISSING)
    assert mg1 is not None and mg1.addr == ("127.0.0.9", 5060) and mg1.unresolved is None
    # Without pings it is usable at once; with pings, they bring it back.
    assert mg1.flags_text() == after
    assert svc.router.is_destination_ip("127.0.0.9")
    assert svc.unresolved() == [] and answers == ["mg1.invalid", "mg1.invalid"]
    if not probing:
        assert log.events[-1].reason == "mg1.invalid resolved to 127.0.0.9"


def test_a_reload_with_an_unresolvable_host_is_still_refused(tmp_path: Path) -> None:
    svc, _ = service(tmp_path, f"1 {GOOD} 0 0")
    (tmp_path / "dispatcher.list").write_text(f"1 {GOOD} 0 0\n1 {MISSING} 0 0\n")
    with pytest.raises(DispatcherLoadError, match=r"could not resolve mg1\.invalid"):
        asyncio.run(svc.reload())
    assert [d.uri for d in svc.sets.destinations()] == [GOOD]
