"""Timer values and the virtual-time TimerQueue: no clock, no sleeps."""

from __future__ import annotations

from typing import Any

import pytest

from sipdispatch.sip.timers import (
    COMPACT_MIN_CANCELLED,
    MAX_LANES,
    T1_DEFAULT,
    T2_DEFAULT,
    T4_DEFAULT,
    TimerQueue,
    Timers,
)


class Log:
    """Records every callback as (label, *args, now)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def cb(self, label: str) -> Any:
        def run(*args: Any) -> None:
            self.calls.append((label, *args))

        return run


# -- Timers values -------------------------------------------------------------------


def test_17_1_1_1_default_t1_t2_t4_are_the_rfc_values() -> None:
    # RFC 3261 table 4: T1 500 ms, T2 4 s, T4 5 s.
    assert (T1_DEFAULT, T2_DEFAULT, T4_DEFAULT) == (0.5, 4.0, 5.0)
    t = Timers()
    assert (t.t1, t.t2, t.t4) == (0.5, 4.0, 5.0)


def test_17_timers_b_f_h_j_l_m_are_64_times_t1() -> None:
    assert Timers(t1=0.25).timer_64t1 == 16.0
    assert Timers(t1=1.0).timer_64t1 == 64.0


def test_17_1_1_2_timer_d_is_at_least_32_seconds() -> None:
    # "a value of at least 32 seconds for unreliable transports": with a small T1,
    # 64*T1 (16 s) would be too short, so D stays at 32 s.
    assert Timers(t1=0.25).timer_d == 32.0
    assert Timers(t1=0.5).timer_d == 32.0
    assert Timers(t1=1.0).timer_d == 64.0


def test_timers_is_frozen() -> None:
    t = Timers()
    with pytest.raises(AttributeError):
        t.t1 = 1.0  # type: ignore[misc]


# -- TimerQueue ----------------------------------------------------------------------


def test_empty_queue_has_no_deadline_and_runs_nothing() -> None:
    tq = TimerQueue()
    assert tq.next_deadline() is None
    assert tq.run_due(1e9) == 0
    assert len(tq) == 0


def test_timers_run_in_deadline_order_not_insertion_order() -> None:
    tq, log = TimerQueue(), Log()
    tq.call_at(3.0, log.cb("c"))
    tq.call_at(1.0, log.cb("a"))
    tq.call_at(2.0, log.cb("b"))
    assert tq.next_deadline() == 1.0
    assert tq.run_due(10.0) == 3
    assert [c[0] for c in log.calls] == ["a", "b", "c"]


def test_callback_gets_its_args_then_the_now_passed_to_run_due() -> None:
    tq, log = TimerQueue(), Log()
    tq.call_at(1.0, log.cb("x"), "arg1", 2)
    tq.run_due(1.5)
    # The callback sees the run_due ``now``, not its own deadline.
    assert log.calls == [("x", "arg1", 2, 1.5)]


def test_run_due_runs_a_timer_at_exactly_its_deadline_and_not_before() -> None:
    tq, log = TimerQueue(), Log()
    tq.call_at(2.0, log.cb("t"))
    assert tq.run_due(1.999) == 0
    assert log.calls == []
    assert tq.run_due(2.0) == 1
    assert log.calls == [("t", 2.0)]
    # Ran once: a later run_due does not run it again.
    assert tq.run_due(5.0) == 0
    assert tq.next_deadline() is None


def test_run_due_leaves_later_timers_queued() -> None:
    tq, log = TimerQueue(), Log()
    tq.call_at(1.0, log.cb("a"))
    tq.call_at(4.0, log.cb("b"))
    assert tq.run_due(2.0) == 1
    assert tq.next_deadline() == 4.0
    assert len(tq) == 1


def test_equal_deadlines_run_in_insertion_order() -> None:
    tq, log = TimerQueue(), Log()
    for label in "abcde":
        tq.call_at(1.0, log.cb(label))
    tq.call_at(0.5, log.cb("first"))
    tq.run_due(1.0)
    assert [c[0] for c in log.calls] == ["first", "a", "b", "c", "d", "e"]


def test_cancelled_timer_does_not_run_and_is_not_counted() -> None:
    tq, log = TimerQueue(), Log()
    h = tq.call_at(1.0, log.cb("cancelled"))
    tq.call_at(1.0, log.cb("kept"))
    assert not h.cancelled
    h.cancel()
    assert h.cancelled
    assert len(tq) == 1
    assert tq.run_due(1.0) == 1
    assert log.calls == [("kept", 1.0)]


def test_handle_reports_cancelled_once_run_and_cancel_after_run_is_harmless() -> None:
    tq, log = TimerQueue(), Log()
    h = tq.call_at(1.0, log.cb("x"))
    tq.run_due(1.0)
    assert h.cancelled
    h.cancel()
    assert log.calls == [("x", 1.0)]


def test_next_deadline_skips_cancelled_timers() -> None:
    tq, log = TimerQueue(), Log()
    a = tq.call_at(1.0, log.cb("a"))
    b = tq.call_at(2.0, log.cb("b"))
    tq.call_at(3.0, log.cb("c"))
    a.cancel()
    b.cancel()
    assert tq.next_deadline() == 3.0
    assert len(tq) == 1


def test_next_deadline_is_none_when_every_timer_is_cancelled() -> None:
    tq, log = TimerQueue(), Log()
    tq.call_at(1.0, log.cb("a")).cancel()
    tq.call_at(2.0, log.cb("b")).cancel()
    assert tq.next_deadline() is None
    assert tq.run_due(10.0) == 0
    assert log.calls == []


def test_callback_may_schedule_a_timer_due_now_which_runs_in_the_same_pass() -> None:
    # A zero wait (timer K, J, I, D over a reliable transport) ends the transaction
    # within the same run_due.
    tq, log = TimerQueue(), Log()

    def first(now: float) -> None:
        log.calls.append(("first", now))
        tq.call_at(now, log.cb("chained"))

    tq.call_at(1.0, first)
    assert tq.run_due(1.0) == 2
    assert log.calls == [("first", 1.0), ("chained", 1.0)]


def test_callback_scheduling_a_later_timer_does_not_run_it_early() -> None:
    tq, log = TimerQueue(), Log()

    def rearm(when: float, now: float) -> None:
        log.calls.append(("tick", when, now))
        tq.call_at(when + 1.0, rearm, when + 1.0)

    tq.call_at(1.0, rearm, 1.0)
    assert tq.run_due(1.5) == 1
    assert tq.next_deadline() == 2.0
    # One run_due catches up a chain of timers that fall due up to ``now``.
    assert tq.run_due(4.0) == 3
    assert log.calls == [
        ("tick", 1.0, 1.5),
        ("tick", 2.0, 4.0),
        ("tick", 3.0, 4.0),
        ("tick", 4.0, 4.0),
    ]
    assert tq.next_deadline() == 5.0


def test_callback_may_cancel_another_timer_due_in_the_same_pass() -> None:
    tq, log = TimerQueue(), Log()
    victim = tq.call_at(2.0, log.cb("victim"))
    tq.call_at(1.0, lambda now: victim.cancel())
    assert tq.run_due(2.0) == 1
    assert log.calls == []


def test_stepping_deadline_by_deadline_gives_each_timer_its_own_now() -> None:
    # How the shell drives the queue: one call per deadline.
    tq, log = TimerQueue(), Log()
    for when in (0.25, 0.75, 1.75):
        tq.call_at(when, log.cb("t"))
    while (deadline := tq.next_deadline()) is not None:
        tq.run_due(deadline)
    assert log.calls == [("t", 0.25), ("t", 0.75), ("t", 1.75)]


def test_cancelled_entries_are_dropped_once_they_are_most_of_the_heap() -> None:
    q = TimerQueue()
    ran: list[int] = []
    keep = [q.call_at(100.0 + i, lambda now, i=i: ran.append(i)) for i in range(10)]
    dead = [q.call_at(50.0 + i, lambda now: ran.append(-1)) for i in range(COMPACT_MIN_CANCELLED)]
    for h in dead[:-1]:
        h.cancel()
    assert len(q._heap) == 10 + COMPACT_MIN_CANCELLED  # not yet: below the minimum
    dead[-1].cancel()
    assert len(q._heap) == 10 and q.cancelled == 0
    dead[0].cancel()  # cancelling twice counts once
    assert q.cancelled == 0
    assert q.next_deadline() == 100.0
    assert q.run_due(200.0) == 10
    assert ran == list(range(10)) and all(h.cancelled for h in keep)


def test_a_callback_that_compacts_the_heap_does_not_lose_the_timers_still_due() -> None:
    q = TimerQueue()
    ran: list[str] = []
    dead = [q.call_at(50.0, lambda now: ran.append("dead")) for _ in range(COMPACT_MIN_CANCELLED)]

    def cancel_all(now: float) -> None:
        ran.append("first")
        for h in dead:
            h.cancel()

    q.call_at(1.0, cancel_all)
    q.call_at(2.0, lambda now: ran.append("second"))
    q.call_at(60.0, lambda now: ran.append("third"))
    assert q.run_due(100.0) == 3
    assert ran == ["first", "second", "third"]
    assert q.cancelled == 0 and q.next_deadline() is None


def test_cancelled_count_follows_lazy_removal() -> None:
    q = TimerQueue()
    a = q.call_at(1.0, lambda now: None)
    q.call_at(2.0, lambda now: None)
    a.cancel()
    assert q.cancelled == 1
    assert q.next_deadline() == 2.0  # pops the cancelled one
    assert q.cancelled == 0
    assert len(q) == 1


# -- call_later: a lane per delay, one order with the heap ----------------------------


def test_call_later_timers_of_several_delays_and_call_at_run_in_one_deadline_order() -> None:
    tq, log = TimerQueue(), Log()
    tq.call_later(0.0, 3.0, log.cb("a3"))  # due 3.0
    tq.call_later(0.0, 0.5, log.cb("b05"))  # due 0.5
    tq.call_at(2.0, log.cb("heap2"))
    tq.call_later(1.0, 0.5, log.cb("c15"))  # due 1.5
    tq.call_later(1.0, 3.0, log.cb("d4"))  # due 4.0
    assert tq.next_deadline() == 0.5
    assert len(tq) == 5
    assert tq.run_due(10.0) == 5
    assert log.calls == [("b05", 10.0), ("c15", 10.0), ("heap2", 10.0), ("a3", 10.0), ("d4", 10.0)]


def test_equal_deadlines_from_lanes_and_heap_run_in_the_order_they_were_scheduled() -> None:
    tq, log = TimerQueue(), Log()
    tq.call_later(0.5, 0.5, log.cb("a"))  # due 1.0
    tq.call_at(1.0, log.cb("b"))
    tq.call_later(0.0, 1.0, log.cb("c"))  # due 1.0, another lane
    tq.call_later(0.75, 0.25, log.cb("d"))  # due 1.0, a third
    tq.call_later(0.5, 0.5, log.cb("e"))
    tq.run_due(1.0)
    assert [c[0] for c in log.calls] == ["a", "b", "c", "d", "e"]


def test_call_later_runs_at_exactly_now_plus_delay_with_its_args() -> None:
    tq, log = TimerQueue(), Log()
    tq.call_later(1.0, 0.5, log.cb("t"), "x")
    assert tq.run_due(1.499) == 0
    assert tq.run_due(1.5) == 1
    assert log.calls == [("t", "x", 1.5)]
    assert tq.next_deadline() is None and len(tq) == 0


def test_a_timer_scheduled_earlier_than_its_lane_allows_still_runs_in_order() -> None:
    # Time given out of order (a caller's clock went back): the lane would be out of
    # order, so that timer is kept elsewhere and still runs at its deadline.
    tq, log = TimerQueue(), Log()
    tq.call_later(5.0, 1.0, log.cb("late"))  # due 6.0
    tq.call_later(1.0, 1.0, log.cb("early"))  # due 2.0
    assert tq.next_deadline() == 2.0
    assert tq.run_due(3.0) == 1
    assert tq.run_due(6.0) == 1
    assert [c[0] for c in log.calls] == ["early", "late"]


def test_delays_beyond_the_lane_limit_are_still_run_in_order() -> None:
    tq, log = TimerQueue(), Log()
    for i in range(MAX_LANES + 5):
        tq.call_later(0.0, 100.0 - i, log.cb(f"t{i}"))
    assert tq.run_due(1000.0) == MAX_LANES + 5
    assert [c[0] for c in log.calls] == [f"t{i}" for i in reversed(range(MAX_LANES + 5))]


def test_cancelled_call_later_timers_do_not_run_and_are_compacted_away() -> None:
    tq, log = TimerQueue(), Log()
    keep = [tq.call_later(float(i), 100.0, log.cb(f"k{i}")) for i in range(10)]
    dead = [tq.call_later(0.0, 50.0, log.cb("dead")) for _ in range(COMPACT_MIN_CANCELLED)]
    for h in dead[:-1]:
        h.cancel()
    assert tq.cancelled == COMPACT_MIN_CANCELLED - 1
    assert tq.size() == 10 + COMPACT_MIN_CANCELLED
    dead[-1].cancel()  # now most of the queue: dropped
    assert tq.cancelled == 0 and tq.size() == 10
    assert tq.next_deadline() == 100.0
    assert tq.run_due(200.0) == 10
    assert [c[0] for c in log.calls] == [f"k{i}" for i in range(10)]
    assert all(h.cancelled for h in keep)


def test_cancelled_lane_timers_are_dropped_as_they_come_to_the_front() -> None:
    tq, log = TimerQueue(), Log()
    a = tq.call_later(0.0, 1.0, log.cb("a"))
    tq.call_later(1.0, 1.0, log.cb("b"))
    a.cancel()
    assert tq.cancelled == 1
    assert tq.next_deadline() == 2.0
    assert tq.cancelled == 0 and len(tq) == 1


def test_a_callback_may_schedule_on_a_lane_a_timer_due_in_the_same_pass() -> None:
    tq, log = TimerQueue(), Log()

    def first(now: float) -> None:
        log.calls.append(("first", now))
        tq.call_later(now, 0.0, log.cb("again"))
        tq.call_later(now, 5.0, log.cb("later"))

    tq.call_later(0.0, 1.0, first)
    assert tq.run_due(2.0) == 2
    assert log.calls == [("first", 2.0), ("again", 2.0)]
    assert tq.next_deadline() == 7.0
