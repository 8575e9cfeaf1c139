"""The garbage collector is held off once the proxy runs; a safety collection runs
only when objects pile up, and says what it found."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
from pathlib import Path

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


TRIMMED_BURST = """
from sipdispatch.collector import Collector

def rss_kib():
    with open("/proc/self/status") as status:
        return int(next(l for l in status if l.startswith("VmRSS")).split()[1])

kept = [bytes(600 + i % 900) for i in range(20_000)]
burst = [bytes(600 + i % 900) for i in range(60_000)]  # some 60 MB, as from malloc
tail = [bytes(600 + i % 900) for i in range(2_000)]  # made after: the heap's top stays
del burst
before = rss_kib()
collector = Collector()
assert collector.trim()
after = rss_kib()
print(before, after, collector.trims, collector.trim_seconds)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_memory_a_burst_freed_goes_back_to_the_system_at_the_next_trim() -> None:
    # In a process of its own: the test runner's heap is not what is measured.
    done = subprocess.run(
        [sys.executable, "-c", TRIMMED_BURST], capture_output=True, text=True, check=True
    )
    before, after, trims, seconds = done.stdout.split()
    assert int(before) - int(after) > 30_000, done.stdout  # KiB given back
    assert int(trims) == 1 and float(seconds) < 1.0
