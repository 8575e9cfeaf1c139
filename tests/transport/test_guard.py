"""The source ACL and the flood limit decide per request, by source IP."""

from __future__ import annotations

import logging

import pytest

from sipdispatch.transport.guard import ADMIT, DROP, REJECT, GuardSettings, SourceGuard

GATEWAY = "192.0.2.50"


def guard(**settings: object) -> SourceGuard:
    return SourceGuard(GuardSettings(**settings), lambda ip: ip == GATEWAY)  # type: ignore[arg-type]


def test_only_allowed_networks_and_addresses_get_through() -> None:
    g = guard(allow=("10.0.0.0/8", "192.0.2.7"))
    assert g.check_request("10.1.2.3", 0.0) == ADMIT
    assert g.check_request("192.0.2.7", 0.0) == ADMIT
    assert g.check_request("192.0.2.8", 0.0) == REJECT
    assert g.check_request("2001:db8::1", 0.0) == REJECT
    assert g.refused == 2


def test_deny_wins_over_allow_and_drop_drops() -> None:
    g = guard(allow=("10.0.0.0/8",), deny=("10.9.0.0/16",), reject=False)
    assert g.check_request("10.1.0.1", 0.0) == ADMIT
    assert g.check_request("10.9.0.1", 0.0) == DROP


def test_destinations_are_never_refused_nor_limited() -> None:
    g = guard(allow=("10.0.0.0/8",), flood_limit=1)
    assert all(g.check_request(GATEWAY, 0.0) == ADMIT for _ in range(100))
    assert (g.refused, g.flooded) == (0, 0)


def test_the_flood_limit_lets_a_burst_through_then_refills_at_its_rate() -> None:
    g = guard(flood_limit=30, flood_window=2.0)  # 15 per second
    burst = [g.check_request("198.51.100.1", 0.0) for _ in range(40)]
    assert burst.count(ADMIT) == 30 and burst.count(DROP) == 10
    # Another source is not affected.
    assert g.check_request("198.51.100.2", 0.0) == ADMIT
    # One second later, 15 more are allowed.
    later = [g.check_request("198.51.100.1", 1.0) for _ in range(20)]
    assert later.count(ADMIT) == 15
    assert g.flooded == 15 and g.hot() == [("198.51.100.1", 15)]


def test_a_steady_source_under_the_limit_is_never_dropped() -> None:
    g = guard(flood_limit=30, flood_window=2.0)
    verdicts = [g.check_request("198.51.100.3", i * 0.1) for i in range(1000)]  # 10/s
    assert set(verdicts) == {ADMIT}


def test_quiet_sources_are_forgotten() -> None:
    g = guard(flood_limit=2, flood_window=1.0)
    for i in range(100):
        g.check_request(f"198.51.100.{i}", 0.0)
    g.check_request("198.51.100.200", 5.0)  # a sweep: the others were quiet
    assert len(g._buckets) == 1


def test_refusals_and_drops_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sipdispatch.security")
    g = guard(allow=("10.0.0.0/8",), flood_limit=1)
    for i in range(50):
        g.check_request("192.0.2.1", i * 0.01)  # refused
        g.check_request("10.0.0.1", i * 0.01)  # over the flood limit
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "1 refused by security.allow/deny" in lines[0]
    g.check_request("192.0.2.1", 20.0)
    assert len(caplog.records) == 2
    assert "refused" in caplog.records[-1].getMessage()
    assert (
        "dropped over security.flood_limit (most from 10.0.0.1" in caplog.records[-1].getMessage()
    )
