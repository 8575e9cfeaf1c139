"""Business hours to one destination set, nights and weekends to another.

    [[route]]
    python = "business_hours:route"   # this file next to the config (or on sys.path)
    set = 1                            # the office's set (the rule's default)

Monday to Friday, 08:00 to 18:00 in the office's time zone, calls go to the rule's
own set (the office PBXs); otherwise to ``NIGHT_SET`` (the answering service).

The clock is a parameter: :func:`make_route` takes any function that tells the time,
so a test asks "what happens at 07:59 on a Monday" without waiting for one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sipdispatch.hooks import RequestView, Route

OFFICE = ZoneInfo("Europe/London")
OPENS = time(8, 0)
CLOSES = time(18, 0)
WORKDAYS = frozenset(range(5))  # Monday (0) to Friday (4)
NIGHT_SET = 2

DAY = Route()  # the rule's own set and algorithm
NIGHT = Route(set=NIGHT_SET, headers={"X-Office": "closed"})


def is_open(now: datetime) -> bool:
    """Whether the office is open at ``now`` (any time zone: compared in the office's)."""
    local = now.astimezone(OFFICE)
    return local.weekday() in WORKDAYS and OPENS <= local.time() < CLOSES


def make_route(clock: Callable[[], datetime]) -> Callable[[RequestView], Route | None]:
    """A hook that reads the time from ``clock``."""

    def route(request: RequestView) -> Route | None:
        return DAY if is_open(clock()) else NIGHT

    return route


route = make_route(lambda: datetime.now(OFFICE))
