"""The max-rate search: the highest rate (calls/s) at which a run has no failed call,
no retransmission and reaches 95 % of the asked rate; found by stepping up by 1.5x,
then bisecting."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .common import log
from .fixedrate import CpuRun, cpu_run, describe_run
from .harness import Bench

MIN_ACHIEVED = 0.95
"""A max-rate trial must reach this share of the asked rate."""


@dataclass
class MaxRate:
    proxy: str
    good: int | None
    bad: int | None
    run: CpuRun | None
    capped: bool


def trial(bench: Bench, name: str, rate: int, seconds: float) -> tuple[bool, CpuRun]:
    calls = max(50, int(rate * seconds))
    run = cpu_run(bench, name, rate, calls, 0.0, False)
    u = run.uac
    good = u.failed == 0 and u.retrans == 0 and u.ok == calls and u.achieved >= MIN_ACHIEVED * rate
    log(f"  {name} {rate} calls/s: {'ok' if good else 'FAIL'}: {describe_run(run)}")
    # Let the gateways' calls in timewait finish before the next trial.
    time.sleep(3.0)
    return good, run


def max_rate(bench: Bench, name: str, start: int, cap: int, seconds: float) -> MaxRate:
    """Step up by 1.5x until a trial fails, then bisect to within 5 %."""
    good: int | None = None
    bad: int | None = None
    good_run: CpuRun | None = None
    rate = start
    while rate <= cap:
        ok, run = trial(bench, name, rate, seconds)
        if ok:
            good, good_run = rate, run
            rate = int(round(rate * 1.5, -1))
        else:
            bad = rate
            break
    if good is None:
        # Even the start rate fails: halve until one passes.
        rate = start // 2
        while rate >= 10:
            ok, run = trial(bench, name, rate, seconds)
            if ok:
                good, good_run = rate, run
                break
            bad = rate
            rate //= 2
    if good is not None and bad is not None:
        while bad - good > max(10, good // 20):
            mid = int(round((good + bad) / 2, -1 if bad - good > 40 else 0))
            if mid in (good, bad):
                break
            ok, run = trial(bench, name, mid, seconds)
            if ok:
                good, good_run = mid, run
            else:
                bad = mid
    return MaxRate(name, good, bad, good_run, capped=bad is None)
