"""The state log: every destination state change, in one place.

A ping's result (the prober), a failed call (the router's ``mark_failed``), an
operator's ``dispatcher.set_state``: each change is recorded here, once. The log
writes its line, counts it, keeps the latest changes for whoever asks (the admin
API, the console) and tells its subscribers (metrics, the console's live view, the
cluster). Pure: no clock (the change carries its time), no I/O but the log line.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from sipdispatch.health.state import ORIGIN_WORKER, StateChange

log = logging.getLogger("sipdispatch.health")

HISTORY = 256
"""State changes kept (the newest)."""

Subscriber = Callable[[StateChange], None]


class StateLog:
    """Records state changes, counts them, keeps the latest and tells subscribers."""

    __slots__ = ("_subscribers", "by_new_state", "changes", "events", "went_down", "went_up")

    def __init__(self, history: int = HISTORY) -> None:
        self.events: deque[StateChange] = deque(maxlen=history)
        """The latest changes, oldest first."""
        self.changes = 0
        """Changes recorded since start."""
        self.by_new_state: dict[str, int] = {}
        """Changes by the new FLAGS letters (``IP``, ``AP``, ...)."""
        self.went_down = 0
        """Changes that stopped a destination getting calls."""
        self.went_up = 0
        """Changes that made a destination get calls again."""
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(change)`` for every change from now on; returns the
        function that stops it."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def record(self, change: StateChange) -> None:
        """Log, count and keep ``change``, then tell the subscribers."""
        if change.origin == ORIGIN_WORKER:
            level = logging.DEBUG  # the worker that made it wrote the line
        else:
            level = logging.WARNING if change.went_down else logging.INFO
        log.log(level, "%s", change.describe())
        self.changes += 1
        letters = change.new
        self.by_new_state[letters] = self.by_new_state.get(letters, 0) + 1
        if change.went_down:
            self.went_down += 1
        elif change.went_up:
            self.went_up += 1
        self.events.append(change)
        for subscriber in list(self._subscribers):
            try:
                subscriber(change)
            except Exception:  # a subscriber's bug must not stop probing or routing
                log.exception("state log subscriber failed")
