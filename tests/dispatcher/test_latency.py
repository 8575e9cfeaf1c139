"""Latency statistics and congestion control as Kamailio computes them."""

from __future__ import annotations

import math
import statistics

import pytest

from sipdispatch.dispatcher import (
    DS_PROBING_DST,
    LatencyStats,
    alpha_from_permille,
)
from sipdispatch.dispatcher.congestion import latency_priority, record_ping

from .helpers import build


def test_alpha_is_per_mille_with_kamailio_default_for_bad_values() -> None:
    assert alpha_from_permille(100) == pytest.approx(0.1)
    assert alpha_from_permille(900) == pytest.approx(0.9)
    assert alpha_from_permille(0) == pytest.approx(0.9)
    assert alpha_from_permille(1000) == pytest.approx(0.9)


def test_first_samples_give_welford_mean_and_sample_deviation() -> None:
    samples = [10, 20, 30, 25, 15]
    stats = LatencyStats()
    for s in samples:
        stats.add_sample(s, 0.9)
    assert stats.count == 5
    assert stats.average == pytest.approx(statistics.mean(samples))
    assert stats.stdev == pytest.approx(statistics.stdev(samples))
    assert (stats.min, stats.max) == (10, 30)
    assert stats.estimate == pytest.approx(stats.average)  # fewer than 10 samples


def test_estimate_becomes_ewma_from_the_tenth_sample() -> None:
    stats = LatencyStats()
    samples = [10, 30] * 4 + [10]  # 9 samples, noisy so no training jump
    for s in samples:
        stats.add_sample(s, 0.9)
    assert stats.count == 9
    before = stats.estimate
    stats.add_sample(100, 0.9)
    assert stats.count == 10
    assert stats.estimate == pytest.approx(before * 0.9 + 100 * 0.1)


def test_stable_latency_trains_the_estimator() -> None:
    stats = LatencyStats()
    for _ in range(11):
        stats.add_sample(20, 0.9)
    assert stats.count == 10000
    assert stats.stdev == 0.0


def test_timeout_is_counted_not_sampled() -> None:
    sets = build("1 sip:a 8 0\n1 sip:b 8 0\n")
    dest = sets.find(1, "sip:a")
    assert dest is not None
    sets.record_ping(dest, 408, 5000, 0.9)
    assert dest.latency.timeout == 1
    assert dest.latency.count == 0
    sets.record_ping(dest, 200, 12, 0.9)
    assert dest.latency.count == 1
    assert dest.latency.max == 12


def test_destination_not_probing_is_not_measured() -> None:
    sets = build("1 sip:a 0 0\n")
    dest = sets.find(1, "sip:a")
    assert dest is not None
    sets.record_ping(dest, 200, 12, 0.9)
    assert dest.latency.count == 0


def test_congestion_control_lowers_rweight_by_congestion_ms() -> None:
    sets = build("1 sip:a 8 0 weight=50;rweight=50;cc=1\n1 sip:b 8 0 weight=50;rweight=50;cc=1\n")
    a = sets.find(1, "sip:a")
    assert a is not None
    a.latency.seed(20, 10000)  # avg 20, est 20
    a.latency.estimate = 50.0  # 30 ms of congestion
    changed = record_ping(sets.get(1).dests, a, 200, None, 0.9)  # type: ignore[union-attr]
    assert not changed  # no sample (no start time): Kamailio skips the rest
    sets.record_ping(a, 200, 50, 0.9)
    assert a.rweight == 50 - a.latency.congestion_ms
    assert 0 < a.rweight < 50


def test_congestion_control_all_congested_shares_by_congestion() -> None:
    sets = build("1 sip:a 8 0 weight=10;cc=1\n1 sip:b 8 0 weight=10;cc=1\n")
    dset = sets.get(1)
    assert dset is not None
    b, a = dset.dests  # Kamailio order: b first
    for dest, congestion in ((a, 40), (b, 20)):
        dest.latency.seed(100, 10000)
        dest.latency.estimate = 100.0 + congestion
    sets.record_ping(a, 200, 140, 0.9)
    # total congestion shifted by 4 bits, divided by each one's congestion
    total = a.latency.congestion_ms + b.latency.congestion_ms
    assert a.rweight == (total << 4) // a.latency.congestion_ms
    assert b.rweight == (total << 4) // b.latency.congestion_ms
    assert b.rweight > a.rweight


def test_latency_priority_handicap() -> None:
    sets = build("1 sip:a 0 10\n1 sip:b 0 0\n")
    a = sets.find(1, "sip:a")
    b = sets.find(1, "sip:b")
    assert a is not None and b is not None
    a.latency.seed(35, 10000)
    assert latency_priority(a) == 10 - 3
    a.latency.seed(5, 10000)
    assert latency_priority(a) == 10
    b.latency.seed(500, 10000)
    assert latency_priority(b) == 0  # priority 0 is never handicapped


def test_weighted_average_after_two_to_the_21_samples_decays_m2() -> None:
    stats = LatencyStats(count=2097152, average=10.0, estimate=10.0, m2=1000.0, stdev=1.0)
    stats.add_sample(10, 0.9)
    assert stats.count == 2097152
    assert stats.m2 == pytest.approx(1000.0 - 1000.0 / 2097152)
    assert math.isfinite(stats.stdev)


def test_probing_bit_constant() -> None:
    assert DS_PROBING_DST == 8
