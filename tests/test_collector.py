"""The garbage collector is held off once the proxy runs; a safety collection runs
only when objects pile up, and says what it found."""

from __future__ import annotations

import gc
import logging

import pytest

from sipdispatch.collector import Collector


def test_start_turns_automatic_collection_off_and_stop_gives_it_back() -> None:
    collector = Collector()
    assert gc.isenabled()
    collector.start()
    try:
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0  # what start-up made is out of sight
    finally:
        collector.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_pending_follows_objects_made_and_still_alive() -> None:
    collector = Collector()
    collector.start()
    try:
        before = collector.pending
        kept = [[i] for i in range(5000)]
        assert collector.pending >= before + 5000
        del kept  # freed by reference counting: the count goes back down
        assert collector.pending < before + 100
    finally:
        collector.stop()


def test_no_safety_collection_below_the_threshold() -> None:
    collector = Collector(safety_objects=10**9)
    collector.start()
    try:
        assert collector.check() is None
        assert collector.collections == 0
    finally:
        collector.stop()


def test_a_safety_collection_above_the_threshold_finds_cycles_and_logs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sipdispatch.server")
    collector = Collector(safety_objects=1000)
    collector.start()
    try:
        for _ in range(2000):  # a leak: cycles nobody refers to
            loop: list[object] = []
            loop.append(loop)
        del loop
        found = collector.check()
        assert found is not None and found >= 2000
        assert (collector.collections, collector.collected) == (1, found)
        assert collector.pending < 1000
        [line] = [r.getMessage() for r in caplog.records]
        assert "unreachable found" in line and "leak of reference cycles" in line
    finally:
        collector.stop()
