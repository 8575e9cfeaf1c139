"""The prober on a virtual clock: rounds, the ping request, results through the
state machine, events, ping_active/ping_now, reloads and marked destinations."""

from __future__ import annotations

import logging

import pytest

from sipdispatch.dispatcher import parse_list
from sipdispatch.dispatcher.states import DS_INACTIVE_DST, DS_PROBING_DST
from sipdispatch.health.prober import latency_ms

from .harness import Gateway, Net

GW1 = "sip:127.0.0.1:5071"
GW2 = "sip:127.0.0.1:5072"
GW3 = "sip:127.0.0.1:5073"
GW4 = "sip:127.0.0.1:5074"


def compress(letters: list[str]) -> list[str]:
    out: list[str] = []
    for x in letters:
        if not out or out[-1] != x:
            out.append(x)
    return out


# -- rounds -------------------------------------------------------------------------


def test_first_round_comes_one_interval_after_start_and_is_spread_evenly() -> None:
    net = Net("\n".join(f"1 {u}" for u in (GW1, GW2, GW3, GW4)), probing_mode=1)
    net.advance(9.99)
    assert all(not g.pings for g in net.gateways.values())
    net.advance(10.0)
    times = sorted(t for g in net.gateways.values() for t, _ in g.pings)
    assert times == [10.0, 12.5, 15.0, 17.5]
    net.advance(10.0)
    assert sorted(t for g in net.gateways.values() for t, _ in g.pings)[4:] == [
        20.0, 22.5, 25.0, 27.5,
    ]  # fmt: skip


def test_no_pings_when_ping_interval_is_zero() -> None:
    net = Net(f"1 {GW1} 8", ping_interval=0, probing_mode=1)
    net.advance(100)
    assert net.gw(GW1).pings == []
    assert net.core.get_timer() is None


def test_ping_request_is_options_from_ping_from_to_the_destination() -> None:
    net = Net(f"1 {GW1}\n1 {GW2} 0 0 ping_from=sip:probe@lb.example.com", probing_mode=1)
    net.advance(29)
    req1 = net.gw(GW1).pings[0][1]
    assert (req1.method, req1.uri_text) == ("OPTIONS", GW1)
    assert (req1.get("from") or "").startswith("<sip:dispatcher@localhost>;tag=")
    assert req1.get("to") == f"<{GW1}>"
    assert req1.get("cseq") == "1 OPTIONS"
    assert req1.get("max-forwards") == "70"  # RFC 3261 §8.1.1.6, as Kamailio tm
    assert req1.get("content-length") == "0"
    assert len(req1.vias()) == 1 and req1.top_via.transport == "UDP"
    req2 = net.gw(GW2).pings[0][1]
    assert (req2.get("from") or "").startswith("<sip:probe@lb.example.com>;tag=")
    pings = [r for g in net.gateways.values() for _, r in g.pings]
    assert len({r.call_id for r in pings}) == len(pings) == 4
    assert len({r.from_tag for r in pings}) == 4


def test_pings_go_through_outbound_proxy_or_the_destinations_obproxy_with_its_uri() -> None:
    # Kamailio's ds_outbound_proxy and the obproxy attr: pings only, the R-URI unchanged.
    obp, own = Gateway(), Gateway()
    net = Net(
        f"1 {GW1}\n1 {GW2} 0 0 obproxy=sip:10.0.0.8:5070",
        probing_mode=1,
        outbound_proxy="sip:10.0.0.7;transport=udp",
    )
    net.gateways[("10.0.0.7", 5060)] = obp
    net.gateways[("10.0.0.8", 5070)] = own
    net.advance(19.9)  # the first round, spread over the interval
    assert [r.uri_text for _, r in obp.pings] == [GW1]
    assert [r.uri_text for _, r in own.pings] == [GW2]
    assert net.gw(GW1).pings == [] and net.gw(GW2).pings == []
    assert net.letters(GW1) == net.letters(GW2) == "AP"  # answered through the proxies


def test_ping_method_and_global_ping_from_come_from_the_config() -> None:
    net = Net(f"1 {GW1} 8", ping_method="INFO", ping_from="sip:lb@example.net")
    net.advance(10)
    req = net.gw(GW1).pings[0][1]
    assert req.method == "INFO" and req.get("cseq") == "1 INFO"
    assert (req.get("from") or "").startswith("<sip:lb@example.net>;")


def test_disabled_no_ping_and_no_dns_destinations_are_never_pinged() -> None:
    net = Net(f"1 {GW1} 4\n1 {GW2} 32\n1 {GW3} 16\n1 {GW4} 0", probing_mode=1)
    net.advance(35)
    counts = [len(net.gw(u).pings) for u in (GW1, GW2, GW3, GW4)]
    assert counts == [0, 0, 0, 3]


def test_destination_disabled_during_a_ping_is_left_disabled() -> None:
    net = Net(f"1 {GW1}", probing_mode=1, fr_timer=2.0)
    net.gw(GW1).code = None
    net.advance(10.5)  # ping sent at 10, times out at 12
    net.router.mark(net.dest(GW1), "d", "operator")
    net.advance(5)
    assert net.letters(GW1) == "DX"
    assert net.prober.stats["state_changes"] == 0


# -- every mode and threshold over a virtual clock ---------------------------------------


@pytest.mark.parametrize("ithr", [1, 2, 3])
@pytest.mark.parametrize("pthr", [1, 2, 3])
@pytest.mark.parametrize(("mode", "flags"), [(1, 0), (3, 8)])
def test_gateway_that_stops_and_starts_answering(
    mode: int, flags: int, pthr: int, ithr: int
) -> None:
    net = Net(
        f"1 {GW1} {flags}\n1 {GW2} {flags}",
        probing_mode=mode,
        probing_threshold=pthr,
        inactive_threshold=ithr,
        ping_interval=1,
        fr_timer=0.5,
    )
    start = net.letters(GW1)
    seen = [start, *net.timeline(GW1, 3)]
    net.gw(GW1).code = None
    seen += net.timeline(GW1, pthr + 3)
    assert net.dest(GW1).state & DS_INACTIVE_DST
    net.gw(GW1).code = 200
    seen += net.timeline(GW1, ithr + 3)
    expected = ["AX", "AP"] if mode == 1 else ["AP"]
    expected += (["TP"] if pthr > 1 else []) + ["IP", "AP"]
    assert compress(seen) == expected
    assert net.letters(GW2) == "AP"


def test_mode_1_misses_are_counted_at_fr_timer_one_per_round() -> None:
    net = Net(f"1 {GW1}", probing_mode=1, probing_threshold=3, ping_interval=1, fr_timer=0.5)
    net.gw(GW1).code = None
    net.advance(1.49)
    assert net.letters(GW1) == "AX"  # sent at 1.0, no verdict before fr_timer
    net.advance(0.02)
    assert (net.letters(GW1), net.dest(GW1).probing_count) == ("TP", 1)
    net.advance(1.0)
    assert (net.letters(GW1), net.dest(GW1).probing_count) == ("TP", 2)
    net.advance(1.0)
    assert (net.letters(GW1), net.dest(GW1).probing_count) == ("IP", 0)


def test_ping_fr_timer_bounds_the_pings_wait_and_not_the_calls() -> None:
    # Kamailio's ds_ping_fr_timer: the pings' transactions get their own fr_timer.
    net = Net(f"1 {GW1}", probing_mode=1, ping_interval=10, fr_timer=30, ping_fr_timer=1500)
    net.gw(GW1).code = None
    net.advance(11.49)  # the first ping left at 10.0
    assert net.letters(GW1) == "AX"
    net.advance(0.02)
    assert net.letters(GW1) == "IP"
    assert net.core.timers.fr_timer == 30  # the calls' own timer is the core's


def test_pings_overlap_when_fr_timer_exceeds_the_interval_and_each_miss_counts() -> None:
    # Kamailio's timer does not wait for the previous ping; neither do we.
    net = Net(f"1 {GW1}", probing_mode=1, probing_threshold=2, ping_interval=1, fr_timer=3)
    net.gw(GW1).code = None
    net.advance(3.9)
    assert len(net.gw(GW1).pings) == 3 and net.letters(GW1) == "AX"
    net.advance(0.2)  # the ping of t=1 times out at t=4
    assert net.letters(GW1) == "TP"
    net.advance(1.0)
    assert net.letters(GW1) == "IP"


@pytest.mark.parametrize("pthr", [1, 2])
def test_mode_0_probes_a_flagged_destination_once(pthr: int) -> None:
    net = Net(
        f"1 {GW1} 8\n1 {GW2} 8", probing_mode=0, probing_threshold=pthr, ping_interval=1,
        fr_timer=0.5,
    )  # fmt: skip
    net.gw(GW2).code = None
    net.advance(10)
    assert net.letters(GW1) == "AX"
    assert net.letters(GW2) == ("TX" if pthr > 1 else "IX")
    assert len(net.gw(GW1).pings) == 1 and len(net.gw(GW2).pings) == 1


def test_mode_0_does_not_ping_unflagged_destinations() -> None:
    net = Net(f"1 {GW1}", probing_mode=0, ping_interval=1)
    net.advance(10)
    assert net.gw(GW1).pings == [] and net.letters(GW1) == "AX"


@pytest.mark.parametrize("ithr", [1, 2, 3])
def test_mode_2_pings_only_inactive_probing_until_back(ithr: int) -> None:
    net = Net(
        f"1 {GW1} 9\n1 {GW2} 8", probing_mode=2, inactive_threshold=ithr, ping_interval=1,
        fr_timer=0.5,
    )  # fmt: skip
    seen = compress([net.letters(GW1), *net.timeline(GW1, ithr + 3)])
    assert seen == ["IP", "AX"]
    assert len(net.gw(GW1).pings) == ithr
    assert net.gw(GW2).pings == []


# -- reply codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply_codes", "classes", "alive"),
    [((), (), False), ((404,), (), True), ((), (4,), True), ((480,), (5,), False)],
)
def test_a_404_answer_is_alive_only_when_ping_reply_codes_say_so(
    reply_codes: tuple[int, ...], classes: tuple[int, ...], alive: bool
) -> None:
    net = Net(
        f"1 {GW1}", probing_mode=1, ping_interval=1, fr_timer=0.5,
        ping_reply_codes=reply_codes, ping_reply_classes=classes,
    )  # fmt: skip
    net.gw(GW1).code = 404
    net.advance(5)
    assert net.letters(GW1) == ("AP" if alive else "IP")


def test_class_4_makes_even_a_timeout_alive_as_kamailio_warns() -> None:
    # Kamailio doc: "setting code=408 or class=4 will never set a backend down".
    net = Net(f"1 {GW1}", probing_mode=1, ping_interval=1, fr_timer=0.5, ping_reply_classes=(4,))
    net.gw(GW1).code = None
    net.advance(5)
    assert net.letters(GW1) == "AP"


# -- events -----------------------------------------------------------------------------


def test_every_state_change_is_logged_on_one_line_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sipdispatch.health")
    net = Net(
        f"1 {GW1}", probing_mode=1, probing_threshold=2, inactive_threshold=2,
        ping_interval=1, fr_timer=0.5,
    )  # fmt: skip
    seen = []
    net.state_log.subscribe(seen.append)
    net.advance(1.5)
    net.gw(GW1).code = None
    net.advance(3)
    net.gw(GW1).code = 200
    net.advance(3)
    lines = [r.getMessage() for r in caplog.records if r.name == "sipdispatch.health"]
    assert lines == [
        f"set 1 {GW1}: AX -> AP (OPTIONS answered 200)",
        f"set 1 {GW1}: AP -> TP (no reply to OPTIONS (408), 1/2 missed)",
        f"set 1 {GW1}: TP -> IP (no reply to OPTIONS (408), 2 missed in a row)",
        f"set 1 {GW1}: IP -> AP (OPTIONS answered 200, 2 answered in a row)",
    ]
    levels = [r.levelno for r in caplog.records if r.name == "sipdispatch.health"]
    assert levels == [logging.INFO, logging.INFO, logging.WARNING, logging.INFO]
    state_log = net.state_log
    assert state_log.changes == 4 and state_log.went_down == 1 and state_log.went_up == 1
    assert state_log.by_new_state["IP"] == 1
    assert [(e.old, e.new) for e in state_log.events] == [(e.old, e.new) for e in seen]
    assert seen[1].code == 408 and seen[1].at == pytest.approx(2.5)
    assert {e.origin for e in seen} == {"probe"}


def test_a_broken_state_log_subscriber_does_not_stop_probing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net = Net(f"1 {GW1}", probing_mode=1, ping_interval=1)

    def boom(_change: object) -> None:
        raise RuntimeError("listener bug")

    net.state_log.subscribe(boom)
    net.advance(3)
    assert net.letters(GW1) == "AP" and len(net.gw(GW1).pings) == 3


# -- ping_active, ping_now, stop -----------------------------------------------------------


def test_inactive_prober_sends_nothing_until_reactivated() -> None:
    net = Net(f"1 {GW1}", probing_mode=1, ping_interval=1)
    net.prober.active = False
    net.advance(5)
    assert net.gw(GW1).pings == [] and net.prober.stats["rounds_inactive"] == 5
    net.prober.active = True
    net.advance(1)
    assert len(net.gw(GW1).pings) == 1


def test_ping_now_sends_a_round_at_once_and_restarts_the_schedule() -> None:
    net = Net(f"1 {GW1}\n1 {GW2}", probing_mode=1, ping_interval=10)
    net.advance(3)
    assert net.prober.ping_now() == 2
    net.advance(0)
    assert sorted(t for g in net.gateways.values() for t, _ in g.pings) == [3.0]
    net.advance(9)  # the round is spread over the interval; the next starts at 3 + 10
    assert sorted(t for g in net.gateways.values() for t, _ in g.pings) == [3.0, 8.0]
    net.advance(1)
    assert sorted(t for g in net.gateways.values() for t, _ in g.pings) == [3.0, 8.0, 13.0]


def test_ping_now_works_even_when_pings_are_switched_off() -> None:
    net = Net(f"1 {GW1}", probing_mode=1, ping_interval=0)
    net.prober.active = False
    assert net.prober.ping_now(net.now) == 1
    net.advance(1)
    assert len(net.gw(GW1).pings) == 1 and net.letters(GW1) == "AP"


def test_probe_pings_one_destination_at_once_and_reports_code_latency_and_change() -> None:
    net = Net(f"1 {GW1}\n1 {GW2}", probing_mode=0, ping_interval=0, fr_timer=2.0)
    results: list[tuple[int, int, str | None]] = []

    def done(status: int, response: object, ms: int, change: object) -> None:
        reason = getattr(change, "reason", None)
        results.append((status, ms, reason))

    # Mode 0 pings nobody without the probing bit; an operator's probe goes anyway.
    assert net.prober.probe(net.dest(GW1), net.now, "console", done)
    net.advance(1)
    assert [len(net.gw(u).pings) for u in (GW1, GW2)] == [1, 0]
    assert results == [(200, 10, None)] and net.letters(GW1) == "AX"  # nothing to change
    net.gw(GW1).code = None
    net.prober.probe(net.dest(GW1), net.now, "console", done)
    net.advance(3)
    status, ms, reason = results[-1]
    assert (status, ms) == (408, 2000)
    # The state machine as for any ping (mode 0, threshold 1: inactive at once).
    assert reason == "no reply to OPTIONS (408), 1 missed in a row; dispatcher.ping by console"
    assert net.letters(GW1) == "IX"
    assert net.prober.state_log.events[-1].reason == reason


def test_probe_of_a_disabled_destination_pings_it_and_keeps_it_disabled() -> None:
    net = Net(f"1 {GW1} 4", probing_mode=1, ping_interval=0)
    got: list[int] = []
    assert net.prober.probe(net.dest(GW1), net.now, "rpc", lambda s, r, ms, c: got.append(s))
    net.advance(1)
    assert got == [200] and len(net.gw(GW1).pings) == 1
    assert net.letters(GW1) == "DX"


def test_after_stop_no_rounds_and_late_results_are_ignored() -> None:
    net = Net(f"1 {GW1}", probing_mode=1, ping_interval=1)
    net.gw(GW1).delay = 0.5
    net.advance(1.2)
    net.prober.stop()
    net.advance(10)
    assert len(net.gw(GW1).pings) == 1 and net.letters(GW1) == "AX"


# -- latency statistics -------------------------------------------------------------------


def test_latency_is_measured_from_send_to_result_in_whole_ms() -> None:
    assert latency_ms(1.0, 1.0205) == 20
    assert latency_ms(0.1, 0.3) == 200
    assert latency_ms(5.0, 4.0) == 0


def test_latency_statistics_match_hand_computed_values() -> None:
    net = Net(f"1 {GW1} 8", probing_mode=1, ping_interval=1, fr_timer=0.5, ping_latency_stats=True)
    net.gw(GW1).delays = [0.010, 0.020, 0.030]
    net.advance(3.5)
    stats = net.dest(GW1).latency
    # Welford: 10 -> avg 10; 20 -> avg 15, M2 50; 30 -> avg 20, M2 200, std sqrt(200/2).
    assert (stats.count, stats.min, stats.max) == (3, 10, 30)
    assert stats.average == pytest.approx(20.0)
    assert stats.stdev == pytest.approx(10.0)
    assert stats.estimate == pytest.approx(20.0)  # EST = AVG below 10 samples
    net.gw(GW1).code = None
    net.advance(1.0)
    assert (stats.timeout, stats.count, stats.max) == (1, 3, 30)  # a timeout is no sample


@pytest.mark.parametrize(("permille", "estimate"), [(100, 11.0), (900, 19.0), (500, 15.0)])
def test_estimate_weighs_the_new_sample_by_latency_estimator_alpha(
    permille: int, estimate: float
) -> None:
    net = Net(
        f"1 {GW1} 8", probing_mode=1, ping_interval=1, fr_timer=0.5, ping_latency_stats=True,
        latency_estimator_alpha=permille,
    )  # fmt: skip
    net.gw(GW1).delays = [0.010] * 9 + [0.020]
    net.advance(10.5)
    stats = net.dest(GW1).latency
    # 10th sample: AVG 10 + 10/10 = 11, M2 = 10*9, STD sqrt(90/9);
    # EST = 10*(1-a) + 20*a with a = permille/1000 (Kamailio's current meaning).
    assert stats.count == 10
    assert stats.average == pytest.approx(11.0)
    assert stats.stdev == pytest.approx(10**0.5)
    assert stats.estimate == pytest.approx(estimate)


def test_a_destination_without_the_probing_bit_is_not_measured() -> None:
    # ds_update_latency runs before the state update and skips non-probing
    # destinations: in mode 1 the first answer of an AX destination is not a sample.
    net = Net(f"1 {GW1}", probing_mode=1, ping_interval=1, fr_timer=0.5, ping_latency_stats=True)
    net.advance(1.5)
    assert net.letters(GW1) == "AP" and net.dest(GW1).latency.count == 0
    net.advance(1.0)
    assert net.dest(GW1).latency.count == 1


def test_no_statistics_without_ping_latency_stats() -> None:
    net = Net(f"1 {GW1}", probing_mode=1, ping_interval=1)
    net.advance(5)
    assert net.dest(GW1).latency.count == 0


def test_congestion_control_lowers_the_rweight_and_rebuilds_the_table() -> None:
    attrs = "weight=50;cc=1"
    net = Net(
        f"1 {GW1} 8 0 {attrs}\n1 {GW2} 8 0 {attrs}", probing_mode=1, ping_interval=1,
        fr_timer=0.5, ping_latency_stats=True, latency_estimator_alpha=500,
    )  # fmt: skip
    net.gw(GW1).delays = [0.010] * 9 + [0.110]
    net.gw(GW2).delay = 0.010
    net.advance(10.9)
    gw1, gw2 = net.dest(GW1), net.dest(GW2)
    # GW1's 10th sample: AVG 10 + 100/10 = 20, EST 10*0.5 + 110*0.5 = 60 -> congestion 40.
    assert gw1.latency.congestion_ms == 40
    assert (gw1.rweight, gw2.rweight) == (10, 50)
    dset = net.router.sets.get(1)
    assert dset is not None
    i1 = dset.dests.index(gw1)
    slots = dset.rwlist.count(i1)
    assert slots in (16, 17)  # 10*100//60, plus the fill slot when it is written last
    assert len(dset.rwlist) == 100


def test_going_inactive_removes_the_destination_from_the_rweight_table() -> None:
    net = Net(
        f"1 {GW1} 0 0 rweight=50\n1 {GW2} 0 0 rweight=50", probing_mode=1, ping_interval=1,
        fr_timer=0.5,
    )  # fmt: skip
    dset = net.router.sets.get(1)
    assert dset is not None
    i1 = dset.dests.index(net.dest(GW1))
    assert dset.rwlist.count(i1) == 50
    net.gw(GW1).code = None
    net.advance(3)
    assert net.letters(GW1) == "IP" and dset.rwlist.count(i1) == 0
    net.gw(GW1).code = 200
    net.advance(3)
    assert net.letters(GW1) == "AP" and dset.rwlist.count(i1) == 50


# -- marked destinations and reloads --------------------------------------------------------


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_destination_marked_ip_after_a_failed_call_is_probed_back(mode: int) -> None:
    net = Net(f"1 {GW1}", probing_mode=mode, ping_interval=1, fr_timer=0.5)
    net.advance(0.5)
    net.router.mark(net.dest(GW1), "ip", "call failed with 503")
    assert net.letters(GW1) == "IP"
    net.advance(2)
    assert len(net.gw(GW1).pings) >= 1
    assert net.letters(GW1) == ("AP" if mode in (1, 3) else "AX")


def test_mode_0_marked_destination_that_misses_its_probe_is_left_ix() -> None:
    # Kamailio: the failed probe asks for trying without the probing bit (mode 0);
    # trying while inactive stays inactive -> IX, which mode 0 never pings again.
    net = Net(f"1 {GW1}", probing_mode=0, ping_interval=1, fr_timer=0.5)
    net.gw(GW1).code = None
    net.router.mark(net.dest(GW1), "ip", "call failed")
    net.advance(10)
    assert net.letters(GW1) == "IX" and len(net.gw(GW1).pings) == 1


def test_result_after_a_reload_applies_to_the_reloaded_destination() -> None:
    net = Net(f"1 {GW2}\n1 {GW1}", probing_mode=1, ping_interval=10, fr_timer=2)
    net.gw(GW1).code = None
    net.advance(10.5)  # GW1 pinged at 10, times out at 12
    fresh = parse_list(f"1 {GW1}\n1 {GW3}", "test.list")
    for d in fresh:
        d.addr = (d.host, d.port)
    net.gateways[("127.0.0.1", 5073)] = net.gateways[("127.0.0.1", 5072)]
    net.router.replace(fresh)
    assert net.dest(GW1) is fresh[0]
    net.advance(2)
    assert net.letters(GW1) == "IP"  # the new object got the verdict


def test_result_for_a_destination_removed_by_reload_is_dropped() -> None:
    net = Net(f"1 {GW2}\n1 {GW1}", probing_mode=1, ping_interval=10, fr_timer=2)
    net.gw(GW1).code = None
    net.advance(10.5)
    fresh = parse_list(f"1 {GW2}", "test.list")
    for d in fresh:
        d.addr = (d.host, d.port)
    net.router.replace(fresh)
    net.advance(2)
    assert net.prober.stats["ping_results_orphaned"] == 1


def test_probing_bit_in_state_reaches_the_rpc_letters() -> None:
    net = Net(f"1 {GW1}", probing_mode=1, ping_interval=1)
    net.advance(2)
    assert net.dest(GW1).state == DS_PROBING_DST and net.letters(GW1) == "AP"
