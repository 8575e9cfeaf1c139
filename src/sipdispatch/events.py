"""Destination events: Kamailio's ``event_route[dispatcher:dst-down]`` and
``event_route[dispatcher:dst-up]``, told to an operator's Python hooks, a command and a
webhook (``[events]``; docs/hooks.md, "Destination events").

**When.** Every state change goes through the state log (:mod:`sipdispatch.health.statelog`),
once, in the process that made it; this module listens there. A change raises ``dst-down``
when the destination stops getting calls (its new state is inactive or disabled and its
old one was neither) and ``dst-up`` when it gets calls again, as Kamailio's
``ds_update_state`` decides with ``ds_skip_dst``. Which changes may raise one is
Kamailio's ``event_callback_mode`` (``[events] mode``): a ping's result always, a failed
call's ``mark_failed`` (Kamailio's ``ds_mark_dst``) in modes 0 and 2; mode 2 also raises
``dst-up`` for a destination with no state bits yet (``AX``) whose new state keeps it up.
Never an operator's ``dispatcher.set_state`` (Kamailio's ``ds_reinit_state`` raises
nothing), a reload, a DNS answer, nor a change another worker process or cluster node
made and this one applied (origin ``worker`` / ``cluster``): that process raised it. So an
event is raised once per proxy, by the process whose ping or call changed the state.

**How it is told.** Each outlet -- the ``on_destination_down`` / ``on_destination_up``
hooks, the ``command``, the ``webhook`` -- runs off the SIP path in tasks of its own,
bounded: a hook or command past its timeout, a webhook that does not answer, is logged
and counted, never waited for by the proxy. The events of one destination reach each
outlet in the order they were raised; at most :data:`MAX_PENDING` wait per outlet, the
rest are dropped and counted.

:func:`event_kind` is the decision, pure; :class:`DestinationEvents` stamps the time
(a clock it is given) and hands the event to the outlets.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import aiohttp

from sipdispatch import __version__
from sipdispatch.config import EventsConfig
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.states import DS_SKIP_MASK
from sipdispatch.health.state import ORIGIN_CALL, ORIGIN_PROBE, StateChange
from sipdispatch.health.statelog import StateLog
from sipdispatch.hooks import (
    EVENT_DOWN,
    EVENT_UP,
    DestinationEvent,
    HookLoader,
    Throttle,
    more_since,
    raised_at,
)

__all__ = [
    "EVENT_DOWN",
    "EVENT_UP",
    "MAX_PENDING",
    "OUTCOMES",
    "CommandOutlet",
    "DestinationEvents",
    "HookOutlet",
    "Outlet",
    "WebhookOutlet",
    "event_kind",
]

log = logging.getLogger("sipdispatch.events")

MODE_ALL: Final = 0
"""Kamailio ``event_callback_mode`` 0: pings' results and failed calls (``ds_mark_dst``)."""
MODE_PINGS: Final = 1
"""Kamailio ``event_callback_mode`` 1: pings' results only."""
MODE_INIT: Final = 2
"""Kamailio ``event_callback_mode`` 2: as 0, and ``dst-up`` for a first state that keeps
a destination without state bits up."""

OUTCOMES: Final = ("sent", "failed", "timeout", "dropped")
"""What became of an event at one outlet."""
MAX_PENDING: Final = 1000
"""Events waiting at one outlet at most; more are dropped (and counted)."""
HOOK_THREADS: Final = 2
"""Threads that run plain (not ``async``) event hooks."""
WEBHOOK_CONCURRENCY: Final = 4
"""POSTs under way at once at most."""
OUTPUT_LIMIT: Final = 16384
"""Bytes of a command's output kept for the log; the rest is read and dropped."""
OUTPUT_LINES: Final = 20
"""Lines of a command's output logged at most."""
CLOSE_GRACE: Final = 2.0
"""Seconds the events still being told get when the proxy stops."""


def event_kind(change: StateChange, mode: int, *, probes: bool = True) -> str | None:
    """The event ``change`` raises: ``"dst-down"``, ``"dst-up"`` or None.

    ``mode`` is Kamailio's ``event_callback_mode`` (see the module). ``probes`` False: this
    process does not raise the events of its pings' results (a worker of several that
    each ping every destination, in a cluster pinging with ``probing = "all"``: the admin
    worker raises them for the proxy).
    """
    origin = change.origin
    if origin == ORIGIN_PROBE:
        if not probes:
            return None
    elif origin != ORIGIN_CALL or mode == MODE_PINGS:
        return None
    if change.went_down:
        return EVENT_DOWN
    if change.went_up:
        return EVENT_UP
    if mode == MODE_INIT and change.old_state == 0 and not change.new_state & DS_SKIP_MASK:
        return EVENT_UP
    return None


# -- outlets ------------------------------------------------------------------------------


class Outlet:
    """One place events are told (a hook, the command, the webhook): its own tasks, its
    bound on concurrency and on waiting events, its counters (``stats`` by
    :data:`OUTCOMES`)."""

    label = "outlet"
    """The metric label (``hook``, ``command``, ``webhook``)."""

    def __init__(self, name: str, concurrency: int, clock: Callable[[], float]) -> None:
        self.name = name
        """For the log: the configuration key and its value."""
        self.clock = clock
        self.stats: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
        self.pending = 0
        """Events submitted and not finished (waiting or being told)."""
        self._concurrency = asyncio.Semaphore(concurrency)
        self._last: dict[tuple[int, str], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: dict[str, Throttle] = {}
        self._drops = Throttle()

    def wants(self, event: DestinationEvent) -> bool:
        """Whether this outlet is told of ``event``."""
        return True

    def submit(self, event: DestinationEvent) -> bool:
        """Start telling ``event`` (returns at once); False when it was dropped."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.pending >= MAX_PENDING:
            self.stats["dropped"] += 1
            held = self._drops.due(self.clock())
            if held is not None:
                why = "no event loop" if loop is None else f"{self.pending} events waiting"
                log.error(
                    "%s: %s dropped (%s)%s", self.name, event.describe(), why, more_since(held)
                )
            return False
        self.pending += 1
        key = (event.set, event.uri.lower())
        task = loop.create_task(self._run(event, self._last.get(key)))
        self._last[key] = task
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, key))
        return True

    def _finished(self, key: tuple[int, str], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._last.get(key) is task:
            del self._last[key]

    async def _run(self, event: DestinationEvent, previous: asyncio.Task[None] | None) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])  # the destination's events in order
            async with self._concurrency:
                try:
                    outcome = await self.deliver(event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # an outlet's bug must not stop the others
                    self.failed(event, f"{type(exc).__name__}: {exc}{raised_at(exc)}")
                    outcome = "failed"
            self.stats[outcome] += 1
        finally:
            self.pending -= 1

    async def deliver(self, event: DestinationEvent) -> str:
        """Tell ``event``; the outcome (``sent``, ``failed``, ``timeout``). Logs its own
        failures (:meth:`failed`)."""
        raise NotImplementedError

    def failed(
        self,
        event: DestinationEvent,
        why: str,
        level: int = logging.ERROR,
        outcome: str = "failed",
    ) -> None:
        """Log that ``event`` could not be told (one line per :data:`LOG_INTERVAL` for
        each ``outcome``, ``failed`` or ``timeout``)."""
        held = self._failures.setdefault(outcome, Throttle()).due(self.clock())
        if held is not None:
            log.log(level, "%s: %s: %s%s", self.who(event), event.describe(), why, more_since(held))

    def who(self, event: DestinationEvent) -> str:
        """Who tells ``event``, for the log."""
        return self.name

    async def close(self, grace: float) -> None:
        """Give the events being told ``grace`` seconds, then cancel what is left."""
        tasks = list(self._tasks)
        if tasks:
            _done, left = await asyncio.wait(tasks, timeout=grace)
            for task in left:
                task.cancel()
            if left:
                log.warning("%s: %d events not told: the proxy stops", self.name, len(left))
                await asyncio.wait(left)


class HookOutlet(Outlet):
    """``on_destination_down`` / ``on_destination_up``: the running function of the event's
    kind (imported afresh by a reload), called with the event, one call at a time (so the
    hooks see one destination's ``dst-down`` before its ``dst-up``), bounded by
    ``timeout``. A plain function runs in one of the ``executor``'s threads (it may block;
    past the timeout it is left to finish there), an ``async def`` one on the event loop
    (cancelled at the timeout)."""

    label = "hook"
    KEYS: Final = {EVENT_DOWN: "events.on_destination_down", EVENT_UP: "events.on_destination_up"}
    """The configuration key of each event's hook."""

    def __init__(
        self,
        loader: HookLoader,
        timeout: float,
        executor: Callable[[], ThreadPoolExecutor],
        clock: Callable[[], float],
    ) -> None:
        super().__init__("events hook", 1, clock)
        self.loader = loader
        self.timeout = timeout
        self.executor = executor

    def key(self, event: DestinationEvent) -> str:
        """The configuration key of ``event``'s hook."""
        return self.KEYS[event.event]

    def wants(self, event: DestinationEvent) -> bool:
        return self.key(event) in self.loader.event_specs

    def who(self, event: DestinationEvent) -> str:
        key = self.key(event)
        return f"{key} = {self.loader.event_specs.get(key, '?')!r}"

    async def deliver(self, event: DestinationEvent) -> str:
        function = self.loader.event_hooks.get(self.key(event))
        if function is None:
            self.failed(event, "the hook is not imported")
            return "failed"
        try:
            if inspect.iscoroutinefunction(function):
                await asyncio.wait_for(function(event), self.timeout)
            else:
                loop = asyncio.get_running_loop()
                call = loop.run_in_executor(self.executor(), function, event)
                await asyncio.wait_for(call, self.timeout)
        except TimeoutError:
            self.failed(
                event,
                f"took longer than {self.timeout:g} s (hook_timeout); not waited for",
                logging.WARNING,
                "timeout",
            )
            return "timeout"
        except Exception as exc:  # the hook's bug must not stop the proxy
            self.failed(event, f"raised {type(exc).__name__}: {exc}{raised_at(exc)}")
            return "failed"
        return "sent"


def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL to the command and whatever it started (its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


async def _finish(process: asyncio.subprocess.Process) -> tuple[bytes, int]:
    """The command's output (its first :data:`OUTPUT_LIMIT` bytes) and exit status."""
    stream = process.stdout
    assert stream is not None
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < OUTPUT_LIMIT:
            kept += chunk[: OUTPUT_LIMIT - len(kept)]
    return bytes(kept), await process.wait()


class CommandOutlet(Outlet):
    """``command``: the program run for every event without a shell, the event in its
    environment (``SIPDISPATCH_*`` beside the proxy's own variables), its standard
    output and error logged, at most ``concurrency`` at once, killed (with its process
    group) after ``timeout``. Exit status 0 is ``sent``."""

    label = "command"

    def __init__(
        self,
        argv: Sequence[str],
        timeout: float,
        concurrency: int,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(f"events.command {argv[0]}", concurrency, clock)
        self.argv = tuple(argv)
        self.timeout = timeout

    async def deliver(self, event: DestinationEvent) -> str:
        env = {**os.environ, **event.environment()}
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self.failed(event, f"cannot run {self.argv[0]}: {exc.strerror or exc}")
            return "failed"
        try:
            output, status = await asyncio.wait_for(_finish(process), self.timeout)
        except TimeoutError:
            _kill(process)
            await process.wait()
            self.failed(
                event, f"still running after {self.timeout:g} s (command_timeout): killed",
                logging.WARNING, "timeout",
            )  # fmt: skip
            return "timeout"
        except asyncio.CancelledError:
            _kill(process)
            raise
        self._log_output(event, output, status)
        if status != 0:
            why = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
            self.failed(event, why, logging.WARNING)
            return "failed"
        return "sent"

    def _log_output(self, event: DestinationEvent, output: bytes, status: int) -> None:
        lines = output.decode("utf-8", "replace").splitlines()
        level = logging.INFO if status == 0 else logging.WARNING
        head = f"{self.name} ({event.event} set {event.set} {event.uri})"
        for line in lines[:OUTPUT_LINES]:
            log.log(level, "%s: %s", head, line)
        if len(lines) > OUTPUT_LINES:
            log.log(level, "%s: ... %d more lines", head, len(lines) - OUTPUT_LINES)


class WebhookOutlet(Outlet):
    """``webhook``: each event POSTed as JSON (:meth:`DestinationEvent.as_dict`), each try
    bounded by ``timeout``; a reply other than 2xx, or none, is tried again ``retries``
    times, ``retry_delay`` seconds later, then twice that... At most
    :data:`WEBHOOK_CONCURRENCY` POSTs at once."""

    label = "webhook"
    retry_delay = 1.0
    """Seconds before the first retry (doubled for each next one)."""

    def __init__(self, url: str, timeout: float, retries: int, clock: Callable[[], float]) -> None:
        super().__init__(f"events.webhook {url}", WEBHOOK_CONCURRENCY, clock)
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": f"sipdispatch/{__version__}"},
            )
        return self._session

    async def deliver(self, event: DestinationEvent) -> str:
        body = event.as_dict()
        why = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
            try:
                async with self._client().post(self.url, json=body) as reply:
                    await reply.read()
                    if 200 <= reply.status <= 299:
                        return "sent"
                    why = f"answered {reply.status} {reply.reason or ''}".rstrip()
            except TimeoutError:
                why = f"no answer within {self.timeout:g} s (webhook_timeout)"
            except (aiohttp.ClientError, OSError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                log.info("%s: %s: %s; trying again", self.name, event.describe(), why)
        tries = self.retries + 1
        self.failed(event, f"{why}; gave up after {tries} {'try' if tries == 1 else 'tries'}")
        return "failed"

    async def close(self, grace: float) -> None:
        await super().close(grace)
        if self._session is not None:
            await self._session.close()


# -- the events ---------------------------------------------------------------------------


class DestinationEvents:
    """Raises the destination events of the state changes it is told (see the module)
    and hands each to the outlets ``[events]`` configures.

    ``find`` gives the live destination of a set and URI (for its ``duid``); ``node`` is
    named in each event; ``clock`` (Unix seconds) stamps them; ``probes`` False: this
    process does not raise its pings' events (:func:`event_kind`).
    """

    def __init__(
        self,
        settings: EventsConfig,
        hooks: HookLoader,
        *,
        find: Callable[[int, str], Destination | None] | None = None,
        node: str = "",
        clock: Callable[[], float] = time.time,
        probes: bool = True,
    ) -> None:
        self.settings = settings
        self.mode = settings.mode
        self.node = node
        self.clock = clock
        self.probes = probes
        self.find = find
        self.raised: Counter[str] = Counter({EVENT_DOWN: 0, EVENT_UP: 0})
        """Events raised here, by kind."""
        self.latest: DestinationEvent | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.outlets: list[Outlet] = []
        monotonic = time.monotonic
        if hooks.event_specs:
            self.outlets.append(HookOutlet(hooks, settings.hook_timeout, self._threads, monotonic))
        if settings.command:
            self.outlets.append(
                CommandOutlet(
                    settings.command, settings.command_timeout, settings.command_concurrency,
                    monotonic,
                )
            )  # fmt: skip
        if settings.webhook:
            self.outlets.append(
                WebhookOutlet(
                    settings.webhook, settings.webhook_timeout, settings.webhook_retries,
                    monotonic,
                )
            )  # fmt: skip
        self._unsubscribe: Callable[[], None] | None = None

    def _threads(self) -> ThreadPoolExecutor:
        """The threads of the plain event hooks (made when first needed)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(HOOK_THREADS, thread_name_prefix="event-hook")
        return self._executor

    def attach(self, state_log: StateLog) -> None:
        """Listen to ``state_log`` from now on."""
        if self._unsubscribe is None:
            self._unsubscribe = state_log.subscribe(self._told)

    def _told(self, change: StateChange) -> None:
        self.on_change(change)

    def on_change(self, change: StateChange) -> DestinationEvent | None:
        """A state change was recorded: raise its event, if it has one, and start
        telling it. Returns the event."""
        kind = event_kind(change, self.mode, probes=self.probes)
        if kind is None:
            return None
        dest = self.find(change.setid, change.uri) if self.find is not None else None
        duid = dest.attrs.duid if dest is not None and dest.attrs.duid else ""
        event = DestinationEvent(
            event=kind,
            set=change.setid,
            uri=change.uri,
            old_state=change.old,
            new_state=change.new,
            reason=change.reason,
            code=change.code,
            origin=change.origin,
            time=self.clock(),
            duid=duid,
            node=self.node,
        )
        self.raised[kind] += 1
        self.latest = event
        log.info("event %s raised: %s", event.route, event.describe())
        for outlet in self.outlets:
            if outlet.wants(event):
                outlet.submit(event)
        return event

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Stop listening; give the events being told ``grace`` seconds, then cancel."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for outlet in self.outlets:
            await outlet.close(grace)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
