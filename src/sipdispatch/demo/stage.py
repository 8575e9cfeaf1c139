"""The demo's stage: the proxy, two simulated gateways and a caller on one event loop.

:class:`Stage` starts and stops them, follows the gateways' states as the proxy's
prober reports them, waits for a state, and runs a batch of calls counting who
answered; the story (:mod:`sipdispatch.demo.story`) is told over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sipdispatch.demo.caller import BYE_TIMEOUT, INVITE_TIMEOUT, Caller
from sipdispatch.demo.config import (
    DESCRIPTIONS,
    FR_TIMER_MS,
    INACTIVE_THRESHOLD,
    LABELS,
    PING_INTERVAL,
    PROBING_THRESHOLD,
    SET_ID,
    WEIGHTS,
    build_config,
)
from sipdispatch.demo.display import Display
from sipdispatch.demo.gateway import Gateway

if TYPE_CHECKING:
    from sipdispatch.dispatcher.destination import Destination
    from sipdispatch.health.state import StateChange
    from sipdispatch.server import Server

# The proxy itself (sipdispatch.server: aiohttp, SQLAlchemy) is imported when the demo
# starts, inside the event loop: importing it takes a good part of a second, and a
# Ctrl-C then must still end in "demo interrupted", not in a traceback.

CONCURRENCY: Final = 16
"""Calls in progress at once."""
POLL: Final = 0.05
"""Seconds between two looks at a destination's state while waiting for it."""
STATE_WAIT_SLACK: Final = 8.0
"""Seconds added to every computed wait for a state (a loaded machine is slow)."""


class StepFailed(Exception):
    """A step's expectation failed; ``str()`` is the reason."""


@dataclass(slots=True)
class StepResult:
    """One row of the final table."""

    number: int
    title: str
    short: str
    calls: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    note: str = ""


@dataclass(frozen=True, slots=True)
class SeenChange:
    """A state change as the demo saw it (from the prober's listeners)."""

    at: float
    label: str
    old: str
    new: str
    reason: str


class Stage:
    """The proxy, two gateways and a caller on one loop."""

    def __init__(self, display: Display, workdir: Path) -> None:
        self.display = display
        self.workdir = workdir
        self.gateways = {label: Gateway(label) for label in LABELS}
        self.server: Server | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.caller: Caller | None = None
        self.by_uri: dict[str, str] = {}
        self.changes: list[SeenChange] = []
        self.list_lines: list[str] = []

    # -- setting up and tearing down ------------------------------------------------

    async def start(self) -> None:
        for gateway in self.gateways.values():
            await gateway.start()
        self.by_uri = {gw.uri: label for label, gw in self.gateways.items()}
        self.list_lines = [
            f"{SET_ID} {gw.uri} 0 0 weight={WEIGHTS[label]} {DESCRIPTIONS[label]}"
            for label, gw in self.gateways.items()
        ]
        list_file = self.workdir / "dispatcher.list"
        list_file.write_text(
            "# setid destination flags priority attrs description\n"
            + "\n".join(self.list_lines)
            + "\n",
            encoding="utf-8",
        )
        from sipdispatch.server import Server

        server = Server(build_config(list_file))
        self.server = server
        # The ready line is for scripts waiting on `sipdispatch run`; the demo says it itself.
        with contextlib.redirect_stderr(io.StringIO()):
            await server.start()
        assert server.prober is not None and server.core is not None
        self._unsubscribe = server.state_log.subscribe(self._on_change)
        proxy = server.core.settings.local["udp"]
        caller = Caller(proxy, {gw.user: label for label, gw in self.gateways.items()})
        await caller.start()
        self.caller = caller

    async def stop(self) -> None:
        if self.caller is not None:
            self.caller.close()
        for gateway in self.gateways.values():
            gateway.close()
        if self.server is not None:
            server, self.server = self.server, None
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            await server.stop()

    # -- watching states -----------------------------------------------------------

    def _on_change(self, change: StateChange) -> None:
        label = self.by_uri.get(change.uri, change.uri)
        seen = SeenChange(self.display.elapsed(), label, change.old, change.new, change.reason)
        self.changes.append(seen)
        self.display.event(f"{label}  {change.old} -> {change.new}  ({change.reason})")

    def dest(self, label: str) -> Destination:
        assert self.server is not None
        found = self.server.router.sets.find(SET_ID, self.gateways[label].uri)
        if found is None:
            raise StepFailed(f"{label} is not in set {SET_ID} any more")
        return found

    async def wait_state(self, label: str, wanted: str, limit: float) -> None:
        """Wait until ``label`` shows ``wanted`` (e.g. ``IP``), at most ``limit`` s.
        While it is ``IP``, show its count of answered pings as it grows (the state
        changes themselves are shown by :meth:`_on_change`)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        shown = self.dest(label).probing_count
        while True:
            dest = self.dest(label)
            if dest.flags_text() == wanted:
                return
            count = dest.probing_count
            if count != shown and count > 0 and dest.flags_text() == "IP":
                self.display.event(f"{label}  IP  (OPTIONS answered, {count}/{INACTIVE_THRESHOLD})")
            shown = count
            if loop.time() >= end:
                raise StepFailed(
                    f"{label} did not reach {wanted} within {limit:.0f} s "
                    f"(it is {dest.flags_text()})"
                )
            await asyncio.sleep(POLL)

    def down_wait(self) -> float:
        """Longest a gateway that stopped answering should take to be ``IP``."""
        return PING_INTERVAL * (PROBING_THRESHOLD + 1) + FR_TIMER_MS / 1000 + STATE_WAIT_SLACK

    def up_wait(self) -> float:
        """Longest a gateway that answers again should take to be ``AP``."""
        return PING_INTERVAL * (INACTIVE_THRESHOLD + 1) + FR_TIMER_MS / 1000 + STATE_WAIT_SLACK

    # -- calls ---------------------------------------------------------------------

    async def run_calls(self, step: StepResult, n: int, rate: float | None) -> None:
        """Make ``n`` calls (at ``rate`` per second, None = as fast as allowed),
        ``CONCURRENCY`` at most at once, counting who answered."""
        caller = self.caller
        assert caller is not None
        display = self.display
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(CONCURRENCY)
        started = loop.time()
        failures: Counter[str] = Counter()
        step.calls = n
        display.begin_progress()
        display.progress(0, n, step.counts)

        async def one(index: int) -> None:
            if rate is not None:
                await asyncio.sleep(max(0.0, started + index / rate - loop.time()))
            async with gate:
                result = await caller.call()
            if result.ok and result.gateway is not None:
                step.counts[result.gateway] += 1
            else:
                step.counts["failed"] += 1
                failures[result.failure] += 1
            done = step.counts["MG1"] + step.counts["MG2"] + step.counts["failed"]
            display.progress(done, n, step.counts)

        # Every call is bounded by INVITE_TIMEOUT + BYE_TIMEOUT; this bounds the step.
        limit = (n / rate if rate else 0) + (n / CONCURRENCY + 1) * (INVITE_TIMEOUT + BYE_TIMEOUT)
        try:
            async with asyncio.timeout(limit), asyncio.TaskGroup() as group:
                for index in range(n):
                    group.create_task(one(index))
        except TimeoutError:
            raise StepFailed(f"the calls did not finish within {limit:.0f} s") from None
        finally:
            display.end_progress()
        if failures:
            why = ", ".join(f"{count} x {what}" for what, count in failures.most_common())
            raise StepFailed(f"{step.counts['failed']} of {n} calls failed ({why})")
