"""The dispatcher service with destinations located by DNS, on an in-memory zone and a
virtual clock: a name that does not resolve at start is retried, a refreshed answer
gives the destination its new addresses without a reload, a reload stays all or
nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sipdispatch.config import parse_config
from sipdispatch.dispatcher.errors import DispatcherLoadError
from sipdispatch.health.statelog import StateLog
from sipdispatch.locator import DnsCache
from sipdispatch.service import DispatcherService
from sipdispatch.sip.addr import Addr
from tests.test_locator import Clock, Zone
from tests.test_routing import CALLER, request

CARRIER = "sip:carrier.test"


def zone_for(port: int) -> Zone:
    zone = Zone()
    zone.add("_sip._udp.carrier.test", "SRV", 10, f"10 0 {port} gw.carrier.test.")
    zone.add("gw.carrier.test", "A", 10, "192.0.2.10")
    return zone


def service(tmp_path: Path, zone: Zone, clock: Clock, *lines: str) -> DispatcherService:
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text("\n".join(lines) + "\n")
    # A nameserver nobody answers on: start-up finds nothing, the zone below takes over.
    config = parse_config(
        {
            "dispatcher": {"list_file": str(list_file)},
            "dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.2},
        }
    )
    svc = DispatcherService.from_config(config, StateLog())
    svc.dns = DnsCache(zone.query, clock)
    return svc


def target_addr(svc: DispatcherService) -> Addr:
    plan = svc.router.route(request(), CALLER, 0.0)
    return plan.first()[0].addr  # type: ignore[union-attr]


def test_a_name_that_did_not_resolve_at_start_is_located_when_retried(tmp_path: Path) -> None:
    clock = Clock()
    svc = service(tmp_path, zone_for(5070), clock, f"1 {CARRIER} 0 0")
    [carrier] = svc.sets.destinations()
    assert carrier.flags_text() == "IP" and carrier.unresolved is not None
    assert asyncio.run(svc.retry_unresolved(probing=False)) == 1
    assert carrier.unresolved is None and carrier.flags_text() == "AX"
    assert carrier.located is not None and carrier.addr == ("192.0.2.10", 5070)
    assert target_addr(svc) == Addr("udp", "192.0.2.10", 5070)


def test_a_refreshed_answer_changes_the_addresses_without_a_reload(tmp_path: Path) -> None:
    clock = Clock()
    zone = zone_for(5070)
    svc = service(tmp_path, zone, clock, f"1 {CARRIER} 0 0")
    asyncio.run(svc.retry_unresolved(probing=False))
    assert asyncio.run(svc.refresh_dns()) == 0  # not due yet
    zone.add("_sip._udp.carrier.test", "SRV", 10, "10 0 5099 gw.carrier.test.")
    clock.now += 8
    assert asyncio.run(svc.refresh_dns()) == 1
    assert target_addr(svc) == Addr("udp", "192.0.2.10", 5099)
    assert svc.reloads == {}
    # The DNS stops answering: the last good answer stays in use.
    zone.down = True
    clock.now += 20
    assert asyncio.run(svc.refresh_dns()) == 0
    assert target_addr(svc) == Addr("udp", "192.0.2.10", 5099)
    assert svc.dns is not None and svc.dns.stats["refresh_failures"] == 1


def test_a_reload_with_a_name_that_does_not_resolve_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    svc = service(tmp_path, zone_for(5070), clock, f"1 {CARRIER} 0 0")
    asyncio.run(svc.retry_unresolved(probing=False))
    (tmp_path / "dispatcher.list").write_text(f"1 {CARRIER} 0 0\n1 sip:other.test 0 0\n")
    with pytest.raises(DispatcherLoadError, match=r"could not resolve other\.test"):
        asyncio.run(svc.reload())
    assert [d.uri for d in svc.sets.destinations()] == [CARRIER]
    # Without the bad line the reload goes through, from the cached answer.
    (tmp_path / "dispatcher.list").write_text(f"1 {CARRIER} 0 0\n")
    asyncio.run(svc.reload())
    [carrier] = svc.sets.destinations()
    assert carrier.addr == ("192.0.2.10", 5070)
