"""The console's own bookkeeping, on a virtual clock: the login attempt limit per
address, and the recent call outcomes and set-up times of a destination."""

from __future__ import annotations

from collections import deque

from sipdispatch.admin.console import LOGIN_FAILURES, LOGIN_WINDOW, LoginLimit
from sipdispatch.admin.figures import _count, recent
from sipdispatch.dispatcher.destination import SETUP_RING
from sipdispatch.dispatcher.listfile import make_destination


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_wrong_tokens_within_a_minute_lock_the_address_until_the_oldest_is_a_minute_old() -> (
    None
):
    clock = Clock()
    limit = LoginLimit(clock=clock)
    assert (LOGIN_FAILURES, LOGIN_WINDOW) == (5, 60.0)
    for _ in range(4):
        limit.failed("192.0.2.1")
        clock.now += 1
    assert limit.retry_after("192.0.2.1") == 0  # four: still allowed
    limit.failed("192.0.2.1")  # the fifth, at 1004
    assert limit.retry_after("192.0.2.1") == 60.0 - 4  # until the first (1000) is 60 s old
    assert limit.retry_after("192.0.2.2") == 0  # another address is not affected
    clock.now = 1000.0 + 59.9
    assert limit.retry_after("192.0.2.1") > 0
    clock.now = 1000.0 + 60.0
    assert limit.retry_after("192.0.2.1") == 0  # the window passed: one more try
    limit.failed("192.0.2.1")  # five within the last minute again
    assert limit.retry_after("192.0.2.1") == 1.0  # until 1001's is 60 s old


def test_a_right_token_forgets_the_address_failures() -> None:
    clock = Clock()
    limit = LoginLimit(clock=clock)
    for _ in range(4):
        limit.failed("192.0.2.1")
    limit.succeeded("192.0.2.1")
    limit.failed("192.0.2.1")
    assert limit.retry_after("192.0.2.1") == 0


def test_failures_spread_over_more_than_a_minute_never_lock() -> None:
    clock = Clock()
    limit = LoginLimit(clock=clock)
    for _ in range(20):
        limit.failed("192.0.2.1")
        assert limit.retry_after("192.0.2.1") == 0
        clock.now += 15.0  # four a minute


def test_recent_outcomes_and_set_up_percentiles_over_the_window() -> None:
    dest = make_destination(1, "sip:192.0.2.10:5060", 0, 0, "", where="test")
    dest.calls_answered = 3
    dest.calls_timeout = 1
    for seconds in (0.5, 0.5):
        dest.observe_setup(seconds)
    window = deque([_count(dest, 0.0)])  # the window starts here
    dest.calls_answered += 9
    dest.count_rejected(503)
    dest.calls_timeout += 2
    for ms in range(10, 110, 10):  # ten calls: 10, 20, ... 100 ms
        dest.observe_setup(ms / 1000)
    figures = recent(dest, window)
    assert (figures["answered"], figures["rejected"], figures["timeout"]) == (9, 1, 2)
    assert figures["setup"] == {"n": 10, "p50": 50.0, "p90": 90.0}


def test_set_up_times_beyond_the_ring_count_the_newest_only() -> None:
    dest = make_destination(1, "sip:192.0.2.10:5060", 0, 0, "", where="test")
    window = deque([_count(dest, 0.0)])
    for _ in range(SETUP_RING):
        dest.observe_setup(9.0)  # pushed out of the ring by what follows
    for _ in range(SETUP_RING):
        dest.observe_setup(0.2)
    assert recent(dest, window)["setup"] == {"n": SETUP_RING, "p50": 200.0, "p90": 200.0}
    assert recent(dest, deque([_count(dest, 0.0)]))["setup"] is None  # nothing since
