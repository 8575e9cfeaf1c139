"""The cyclic garbage collector, kept off the hot path.

Calls leave no reference cycles behind: the proxy core breaks the links between a
request's context, its branches and their transactions when the last of them ends, so
everything a call made is freed by reference counting the moment it is done (tests
run calls of every kind through the real core and router with the collector off and
check that a collection then finds nothing). CPython 3.11's collector has no
incremental mode: each young collection walks the objects of the calls in flight
that were made since the last one, and every tenth also walks the older ones -- at
1 000 calls/s that was one pause of 178 ms in a 10-second run, the whole p99 of the
calls' set-up time. So once the proxy has started:

* what start-up loaded (modules, configuration, destinations) is frozen out of the
  collector's sight (``gc.freeze``) and automatic collection is off;
* every ``CHECK_INTERVAL`` the number of objects the collector tracks that were made
  since its last collection and are still alive is read (``gc.get_count()[0]``: it
  counts allocations less deallocations, so it follows the calls in flight and does
  not grow while they are steady) -- that is a metric, which shows a leak of cycles
  the day it appears as a number that climbs while the calls in flight do not;
* only when it passes ``SAFETY_OBJECTS`` -- some twelve thousand calls in flight at
  about 85 objects each, or a leak -- is a full collection run, logged with what it
  found, and counted.

The same look also gives the C allocator's free memory back to the system
(``malloc_trim``, where the C library is glibc). Messages, their bytes and the
transaction tables' arrays are mostly larger than Python's own small-object
allocator takes, so they come from ``malloc``; when a burst of them is freed -- the
transactions piled up towards a gateway that died, failed over when their timers
ran out -- glibc keeps the pages, and the process's RSS stays at the burst's high
water mark. One trim took 0.3 ms on average in a soak at 1 900 calls/s.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("sipdispatch.server")

CHECK_INTERVAL = 10.0
"""Seconds between two looks at the collector's count."""
SAFETY_OBJECTS = 1_000_000
"""Tracked objects made since the last collection and still alive above which a full
collection runs anyway."""


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trimmer: Callable[[int], int] = trim
    return trimmer


class Collector:
    """Holds the garbage collector off and watches what it would have to do."""

    def __init__(self, safety_objects: int = SAFETY_OBJECTS) -> None:
        self.safety_objects = safety_objects
        self.collections = 0
        """Safety collections run."""
        self.collected = 0
        """Unreachable objects they found (0 on a proxy without a leak)."""
        self._was_enabled = gc.isenabled()
        self._trim = _malloc_trim()
        self.trims = 0
        """Times the C allocator was asked to give its free memory back."""
        self.trim_seconds = 0.0
        """Time those took, in all."""

    @property
    def pending(self) -> int:
        """Tracked objects made since the last collection and still alive."""
        return gc.get_count()[0]

    def start(self) -> None:
        """Collect and freeze what start-up made, then turn automatic collection off."""
        self._was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()

    def stop(self) -> None:
        """Give the collector back as it was (the process may go on, in tests)."""
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()

    def trim(self) -> bool:
        """Give the C allocator's free memory back to the system; False where there is
        no ``malloc_trim``."""
        if self._trim is None:
            return False
        started = time.perf_counter()
        self._trim(0)
        self.trim_seconds += time.perf_counter() - started
        self.trims += 1
        return True

    def check(self) -> int | None:
        """Run a full collection if too many objects are pending; return what it found,
        or None when none ran."""
        pending = self.pending
        if pending <= self.safety_objects:
            return None
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        self.collections += 1
        self.collected += found
        log.warning(
            "garbage collection: %d objects pending, %d unreachable found in %d ms%s",
            pending, found, round(took * 1000),
            " (a leak of reference cycles: please report it)" if found else "",
        )  # fmt: skip
        return found
