"""Locating a destination by DNS (RFC 3263 NAPTR -> SRV -> A/AAAA) and the cache of the
answers (TTLs with a floor and a cap, background refresh keeping the last good answer),
over an in-memory zone of real dnspython records and a virtual clock."""

from __future__ import annotations

import asyncio
import logging

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from sipdispatch.dispatcher.addresses import DnsAddress
from sipdispatch.locator import (
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    TIMEOUT,
    TTL_CAP,
    TTL_FLOOR,
    DnsCache,
    DnsError,
    Records,
    locate,
)

SILENT = "silent"
"""A query nobody answers (it waits until the lookup's timeout)."""


class Zone:
    """Records by (name, type) with their TTL; ``down`` makes every query fail as a
    server that does not answer."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], tuple[list[str], float]] = {}
        self.asked: list[tuple[str, str]] = []
        self.down = False
        self.fail: dict[tuple[str, str], str] = {}
        """Queries that fail: REFUSED, SERVFAIL, or SILENT (never answered)."""
        self.hold: dict[tuple[str, str], tuple[str, str]] = {}
        """A query answered only once another has been asked (proof they run at once)."""
        self._asked_now = asyncio.Event()

    def add(self, name: str, rdtype: str, ttl: float, *texts: str) -> None:
        self.records[(name, rdtype)] = (list(texts), ttl)

    async def query(self, name: str, rdtype: str) -> Records:
        self.asked.append((name, rdtype))
        self._asked_now.set()
        if self.down:
            raise DnsError(f"{rdtype} {name}: timed out")
        waits_for = self.hold.get((name, rdtype))
        while waits_for is not None and waits_for not in self.asked:
            self._asked_now.clear()
            await self._asked_now.wait()
        failure = self.fail.get((name, rdtype))
        if failure == SILENT:
            await asyncio.Event().wait()
        if failure is not None:
            raise DnsError(f"{rdtype} {name}: answered {failure}", failure)
        found = self.records.get((name, rdtype))
        if found is None:
            return Records((), None)
        texts, ttl = found
        kind = dns.rdatatype.from_text(rdtype)
        rdata = tuple(dns.rdata.from_text(dns.rdataclass.IN, kind, t) for t in texts)
        return Records(rdata, ttl)


def carrier_zone() -> Zone:
    zone = Zone()
    zone.add(
        "carrier.test",
        "NAPTR",
        300,
        '10 50 "s" "SIP+D2U" "" _sip._udp.carrier.test.',
        '5 50 "s" "SIP+D2T" "" _sip._tcp.carrier.test.',
        '1 50 "s" "SIPS+D2T" "" _sips._tcp.carrier.test.',
    )
    zone.add("_sip._udp.carrier.test", "SRV", 120, "10 60 5070 u1.carrier.test.")
    zone.add(
        "_sip._tcp.carrier.test",
        "SRV",
        60,
        "10 60 5080 t1.carrier.test.",
        "20 0 5090 t2.carrier.test.",
    )
    zone.add("u1.carrier.test", "A", 100, "192.0.2.10")
    zone.add("t1.carrier.test", "A", 90, "192.0.2.20", "192.0.2.21")
    zone.add("t1.carrier.test", "AAAA", 30, "2001:db8::20")
    zone.add("t2.carrier.test", "A", 100, "192.0.2.30")
    zone.add("carrier.test", "A", 100, "192.0.2.99")
    return zone


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_rfc3263_naptr_order_chooses_tcp_and_srv_targets_become_the_addresses() -> None:
    zone = carrier_zone()
    answer = run(locate(zone.query, "carrier.test", "udp", False))
    assert answer.how == "NAPTR+SRV"
    # SIPS+D2T has the lowest order but TLS is not located by DNS; SIP+D2T (order 5) wins.
    assert [(a.ip, a.port, a.transport, a.priority, a.weight) for a in answer.addresses] == [
        ("192.0.2.20", 5080, "tcp", 10, 60),
        ("192.0.2.21", 5080, "tcp", 10, 60),
        ("2001:db8::20", 5080, "tcp", 10, 60),
        ("192.0.2.30", 5090, "tcp", 20, 0),
    ]
    # The TTL is the smallest of the records used (the AAAA's 30).
    assert answer.ttl == 30


def test_rfc3263_a_transport_given_restricts_naptr_to_it() -> None:
    zone = carrier_zone()
    answer = run(locate(zone.query, "carrier.test", "udp", True))
    assert answer.how == "NAPTR+SRV"
    assert [(a.ip, a.port, a.transport) for a in answer.addresses] == [("192.0.2.10", 5070, "udp")]


def test_rfc3263_without_naptr_srv_is_asked_for_udp_then_tcp() -> None:
    zone = carrier_zone()
    del zone.records[("carrier.test", "NAPTR")]
    answer = run(locate(zone.query, "carrier.test", "udp", False))
    assert answer.how == "SRV"
    assert [a.addr for a in answer.addresses] == [("192.0.2.10", 5070)]
    del zone.records[("_sip._udp.carrier.test", "SRV")]
    answer = run(locate(zone.query, "carrier.test", "udp", False))
    assert {a.transport for a in answer.addresses} == {"tcp"}
    # With ;transport=udp given, the TCP SRV is not used: A on the default port.
    answer = run(locate(zone.query, "carrier.test", "udp", True))
    assert answer.how == "A/AAAA"
    assert [a.addr for a in answer.addresses] == [("192.0.2.99", 5060)]


def test_rfc3263_without_srv_the_host_a_records_on_port_5060() -> None:
    zone = Zone()
    zone.add("pbx.test", "A", 50, "192.0.2.7")
    answer = run(locate(zone.query, "pbx.test", "tcp", True))
    assert answer.addresses == (DnsAddress("192.0.2.7", 5060, "tcp", 0, 0, "pbx.test"),)
    assert answer.ttl == 50
    assert ("_sip._udp.pbx.test", "SRV") not in zone.asked  # transport given: tcp only


def test_a_host_with_no_record_at_all_is_an_error() -> None:
    with pytest.raises(DnsError, match=r"no NAPTR, SRV or A/AAAA record for nothing\.test"):
        run(locate(Zone().query, "nothing.test", "udp", False))


def refused_aaaa_zone() -> Zone:
    """A carrier on NAPTR -> SRV -> A whose server refuses every AAAA query."""
    zone = Zone()
    zone.add("carrier.test", "NAPTR", 300, '10 50 "s" "SIP+D2U" "" _sip._udp.carrier.test.')
    zone.add("_sip._udp.carrier.test", "SRV", 120, "10 0 5070 gw1.carrier.test.")
    zone.add("gw1.carrier.test", "A", 100, "192.0.2.10")
    zone.fail[("gw1.carrier.test", "AAAA")] = REFUSED
    zone.fail[("carrier.test", "AAAA")] = REFUSED
    return zone


def test_a_refused_aaaa_keeps_the_a_answer_and_is_noted_as_a_problem() -> None:
    answer = run(locate(refused_aaaa_zone().query, "carrier.test", "udp", False))
    assert answer.how == "NAPTR+SRV"
    assert [a.addr for a in answer.addresses] == [("192.0.2.10", 5070)]
    assert answer.problems == ("AAAA gw1.carrier.test: answered REFUSED",)


@pytest.mark.parametrize("failure", [REFUSED, SERVFAIL])
def test_a_failed_a_query_keeps_the_aaaa_answer(failure: str) -> None:
    zone = Zone()
    zone.add("_sip._udp.v6.test", "SRV", 60, "10 0 5070 gw.v6.test.")
    zone.add("gw.v6.test", "AAAA", 60, "2001:db8::7")
    zone.fail[("gw.v6.test", "A")] = failure
    answer = run(locate(zone.query, "v6.test", "udp", True))
    assert [a.addr for a in answer.addresses] == [("2001:db8::7", 5070)]
    assert answer.problems == (f"A gw.v6.test: answered {failure}",)


def test_an_aaaa_query_nobody_answers_costs_one_timeout_and_keeps_the_a_answer() -> None:
    zone = refused_aaaa_zone()
    zone.fail[("gw1.carrier.test", "AAAA")] = SILENT
    zone.fail[("carrier.test", "NAPTR")] = SILENT
    answer = run(locate(zone.query, "carrier.test", "udp", False, timeout=0.5))
    # The NAPTR was never answered: the SRV asked meanwhile gives the answer.
    assert answer.how == "SRV"
    assert [a.addr for a in answer.addresses] == [("192.0.2.10", 5070)]
    assert answer.problems == (
        "NAPTR carrier.test: no answer within 0.5 s (timeout)",
        "AAAA gw1.carrier.test: no answer within 0.5 s (timeout)",
    )


def test_the_queries_of_one_name_run_at_once() -> None:
    zone = refused_aaaa_zone()
    zone.fail.pop(("gw1.carrier.test", "AAAA"))
    zone.add("gw2.carrier.test", "A", 100, "192.0.2.20")
    zone.add("_sip._udp.carrier.test", "SRV", 120, "10 0 5070 gw1.carrier.test.",
             "20 0 5070 gw2.carrier.test.")  # fmt: skip
    # Each answer waits for a query a one-at-a-time lookup would only ask after it.
    zone.hold[("carrier.test", "NAPTR")] = ("carrier.test", "AAAA")
    zone.hold[("gw1.carrier.test", "A")] = ("gw1.carrier.test", "AAAA")
    zone.hold[("gw1.carrier.test", "AAAA")] = ("gw2.carrier.test", "AAAA")
    answer = run(locate(zone.query, "carrier.test", "udp", False, timeout=5))
    assert [a.ip for a in answer.addresses] == ["192.0.2.10", "192.0.2.20"]
    assert answer.problems == ()


def test_a_name_without_an_address_in_either_family_names_both_failures() -> None:
    zone = refused_aaaa_zone()
    del zone.records[("gw1.carrier.test", "A")]
    with pytest.raises(DnsError) as caught:
        run(locate(zone.query, "carrier.test", "udp", True))
    text = str(caught.value)
    assert text.startswith("no address for carrier.test ("), text
    assert "A gw1.carrier.test: no A record (NODATA)" in text
    assert "AAAA gw1.carrier.test: answered REFUSED" in text
    assert caught.value.kind == REFUSED


def test_nxdomain_nodata_refused_servfail_and_timeout_are_told_apart() -> None:
    zone = Zone()
    zone.add("_sip._udp.mixed.test", "SRV", 60, "1 0 5070 gone.mixed.test.",
             "2 0 5070 refused.mixed.test.", "3 0 5070 broken.mixed.test.",
             "4 0 5070 silent.mixed.test.")  # fmt: skip
    zone.records[("gone.mixed.test", "AAAA")] = ([], 60)
    zone.fail[("refused.mixed.test", "A")] = REFUSED
    zone.fail[("broken.mixed.test", "A")] = SERVFAIL
    zone.fail[("silent.mixed.test", "A")] = SILENT

    async def nxdomain_too(name: str, rdtype: str) -> Records:
        if name == "gone.mixed.test" and rdtype == "A":
            return Records((), None, NXDOMAIN)
        return await zone.query(name, rdtype)

    with pytest.raises(DnsError) as caught:
        run(locate(nxdomain_too, "mixed.test", "udp", True, timeout=0.5))
    text = str(caught.value)
    for part in (
        "A gone.mixed.test: no such name (NXDOMAIN)",
        "AAAA gone.mixed.test: no AAAA record (NODATA)",
        "A refused.mixed.test: answered REFUSED",
        "A broken.mixed.test: answered SERVFAIL",
        "A silent.mixed.test: no answer within 0.5 s (timeout)",
    ):
        assert part in text, text
    assert TIMEOUT in text


def test_a_first_srv_target_without_address_leaves_the_second() -> None:
    zone = Zone()
    zone.add("_sip._udp.carrier.test", "SRV", 60, "10 0 5070 gw1.carrier.test.",
             "20 0 5071 gw2.carrier.test.")  # fmt: skip
    zone.fail[("gw1.carrier.test", "A")] = REFUSED
    zone.fail[("gw1.carrier.test", "AAAA")] = REFUSED
    zone.add("gw2.carrier.test", "A", 60, "192.0.2.22")
    answer = run(locate(zone.query, "carrier.test", "udp", True))
    assert [a.addr for a in answer.addresses] == [("192.0.2.22", 5071)]
    assert answer.problems == (
        "A gw1.carrier.test: answered REFUSED",
        "AAAA gw1.carrier.test: answered REFUSED",
    )


def test_a_refused_naptr_goes_on_to_srv() -> None:
    zone = refused_aaaa_zone()
    del zone.records[("carrier.test", "NAPTR")]
    zone.fail[("carrier.test", "NAPTR")] = REFUSED
    answer = run(locate(zone.query, "carrier.test", "udp", False))
    assert answer.how == "SRV"
    assert answer.problems[0] == "NAPTR carrier.test: answered REFUSED"


def test_an_srv_target_of_dot_means_no_service_there() -> None:
    zone = Zone()
    zone.add("_sip._udp.dot.test", "SRV", 60, "0 0 0 .")
    zone.add("dot.test", "A", 60, "192.0.2.5")
    answer = run(locate(zone.query, "dot.test", "udp", False))
    assert answer.how == "A/AAAA"


# -- the cache ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEY = ("carrier.test", "udp", True)


def udp_zone(ttl: float) -> Zone:
    zone = Zone()
    zone.add("_sip._udp.carrier.test", "SRV", ttl, "10 0 5070 u1.carrier.test.")
    zone.add("u1.carrier.test", "A", ttl, "192.0.2.10")
    return zone


def test_an_answer_is_served_from_the_cache_for_its_ttl() -> None:
    zone, clock = udp_zone(60), Clock()
    cache = DnsCache(zone.query, clock)
    entry = run(cache.resolve(KEY))
    assert entry.expires == 1060 and entry.refresh_at == pytest.approx(1048)
    asked = len(zone.asked)
    clock.now = 1059
    assert run(cache.resolve(KEY)) is entry
    assert len(zone.asked) == asked  # no query while it holds
    clock.now = 1060
    run(cache.resolve(KEY))
    assert len(zone.asked) > asked


@pytest.mark.parametrize(("ttl", "kept"), [(0, TTL_FLOOR), (1, TTL_FLOOR), (86400, TTL_CAP)])
def test_ttls_have_a_floor_and_a_cap(ttl: float, kept: float) -> None:
    clock = Clock()
    cache = DnsCache(udp_zone(ttl).query, clock)
    assert run(cache.resolve(KEY)).expires == clock.now + kept


def test_a_refresh_before_expiry_picks_up_a_changed_answer() -> None:
    zone, clock = udp_zone(10), Clock()
    cache = DnsCache(zone.query, clock)
    run(cache.resolve(KEY))
    clock.now += 7.9
    assert run(cache.refresh_due()) == []  # not due yet (80 % of the TTL)
    assert cache.stats["refreshes"] == 0
    zone.add("u1.carrier.test", "A", 10, "192.0.2.11")
    clock.now += 0.1
    assert cache.next_refresh() == pytest.approx(clock.now)
    assert run(cache.refresh_due()) == [KEY]
    entry = cache.entries[KEY]
    assert [a.ip for a in entry.answer.addresses] == ["192.0.2.11"]
    assert entry.expires == pytest.approx(clock.now + 10)
    assert cache.stats["changes"] == 1


def test_a_failed_or_empty_refresh_keeps_the_last_good_answer_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    zone, clock = udp_zone(10), Clock()
    cache = DnsCache(zone.query, clock)
    good = run(cache.resolve(KEY)).answer
    zone.down = True
    caplog.set_level(logging.INFO, logger="sipdispatch.dns")
    for _ in range(4):
        clock.now += 10
        assert run(cache.refresh_due()) == []
        assert cache.entries[KEY].answer == good
        # Asked for by a reload meanwhile: the last good answer too, not an error.
        assert run(cache.resolve(KEY)).answer == good
    assert cache.stats["refresh_failures"] == 4
    failures = [r for r in caplog.records if "refresh of carrier.test failed" in r.message]
    assert len(failures) == 1
    # An empty answer (the records gone) is no better than none: the last good one stays.
    zone.down = False
    zone.records.clear()
    clock.now += 10
    run(cache.refresh_due())
    assert cache.entries[KEY].answer == good and cache.stats["refresh_failures"] == 5
    zone.records.update(udp_zone(10).records)
    clock.now += 10
    run(cache.refresh_due())
    assert any("answers again" in r.message for r in caplog.records)


def test_a_failing_family_is_logged_once_while_it_fails_and_once_when_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    zone, clock = refused_aaaa_zone(), Clock()
    cache = DnsCache(zone.query, clock)
    caplog.set_level(logging.INFO, logger="sipdispatch.dns")
    key = ("carrier.test", "udp", False)
    run(cache.resolve(key))
    for _ in range(3):
        clock.now += 300
        run(cache.refresh_due())
    warned = [r.message for r in caplog.records if "AAAA gw1.carrier.test" in r.message]
    assert warned == [
        "DNS lookup of carrier.test: AAAA gw1.carrier.test: answered REFUSED; "
        "using what answered (udp:192.0.2.10:5070)"
    ]
    zone.fail.pop(("gw1.carrier.test", "AAAA"))
    for _ in range(2):
        clock.now += 300
        run(cache.refresh_due())
    again = [r.message for r in caplog.records if "every query answers again" in r.message]
    assert again == ["DNS lookup of carrier.test: every query answers again"]
    assert cache.stats["refresh_failures"] == 0


def test_a_failed_refresh_is_tried_again_soon_not_at_every_look() -> None:
    zone, clock = udp_zone(100), Clock()
    cache = DnsCache(zone.query, clock)
    run(cache.resolve(KEY))
    zone.down = True
    clock.now += 80
    run(cache.refresh_due())
    asked = len(zone.asked)
    clock.now += 1
    run(cache.refresh_due())
    assert len(zone.asked) == asked
    clock.now += 5
    run(cache.refresh_due())
    assert len(zone.asked) > asked


def test_an_unknown_host_is_an_error_and_a_fallback_may_answer_it() -> None:
    cache = DnsCache(Zone().query, Clock())
    with pytest.raises(DnsError):
        run(cache.resolve(("localhost", "udp", False)))

    async def hosts(host: str) -> list[str]:
        return ["127.0.0.1"] if host == "localhost" else []

    cache = DnsCache(Zone().query, Clock(), fallback=hosts)
    entry = run(cache.resolve(("localhost", "udp", False)))
    assert [a.addr for a in entry.answer.addresses] == [("127.0.0.1", 5060)]


def test_answers_no_destination_uses_any_more_are_dropped() -> None:
    zone, clock = udp_zone(10), Clock()
    cache = DnsCache(zone.query, clock)
    run(cache.resolve(KEY))
    run(cache.refresh_due(keep=set()))
    assert cache.entries == {} and cache.next_refresh() is None
